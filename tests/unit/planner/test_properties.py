"""Property tests over random architectures: the invariants every planner number must keep."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aisd.planner import (
    ModelConfig,
    count_parameters,
    decode_estimate,
    default_catalog,
    kv_bytes_per_token,
    kv_bytes_per_token_hidden,
    kv_cache_capacity,
    weight_bytes,
)


@st.composite
def configs(draw) -> ModelConfig:
    kv = draw(st.integers(1, 8))
    group = draw(st.integers(1, 8))
    head_dim = draw(st.sampled_from([32, 64, 128]))
    experts = draw(st.sampled_from([1, 1, 4, 8]))
    return ModelConfig(id="rand", num_layers=draw(st.integers(1, 80)), hidden_size=kv * group * head_dim,
                       num_heads=kv * group, num_kv_heads=kv, head_dim=head_dim,
                       intermediate_size=draw(st.integers(64, 30_000)), vocab_size=draw(st.integers(100, 200_000)),
                       tied_embeddings=draw(st.booleans()), num_experts=experts,
                       experts_per_token=draw(st.integers(1, experts)), qkv_bias=draw(st.booleans()))


@settings(max_examples=60, deadline=None)
@given(configs())
def test_gqa_factor_and_parameter_invariants(m: ModelConfig) -> None:
    assert kv_bytes_per_token_hidden(m) == kv_bytes_per_token(m) * m.gqa_group
    c = count_parameters(m)
    assert c.embedding <= c.active <= c.total
    assert (c.active == c.total) == (m.experts_per_token == m.num_experts)
    assert weight_bytes(m, "int4") < weight_bytes(m, "int8") < weight_bytes(m, "fp16") < weight_bytes(m, "fp32")


@settings(max_examples=30, deadline=None)
@given(util=st.floats(0.3, 0.95), batch=st.integers(1, 256), ctx=st.integers(1, 32_768))
def test_capacity_and_decode_are_monotone(util: float, batch: int, ctx: int) -> None:
    gpu = default_catalog().gpu("h100-80")
    low = kv_cache_capacity("llama-3-8b", gpu, gpu_memory_utilization=util, max_model_len=4096)
    high = kv_cache_capacity("llama-3-8b", gpu, gpu_memory_utilization=min(1.0, util + 0.05), max_model_len=4096)
    assert high.num_gpu_blocks >= low.num_gpu_blocks
    one = decode_estimate("llama-3-8b", gpu, batch=batch, context=ctx)
    more = decode_estimate("llama-3-8b", gpu, batch=batch + 1, context=ctx)
    assert more.step_time_s >= one.step_time_s  # a bigger batch never makes a step faster
    assert more.tokens_per_s_total >= one.tokens_per_s_total * 0.99  # ... nor the batch slower overall
