"""Memory estimate and the vLLM-style KV capacity report, checked against hand arithmetic."""

from __future__ import annotations

import pytest

from aisd.core.errors import InvalidRequestError
from aisd.planner import (
    activation_bytes,
    default_catalog,
    estimate_memory,
    kv_bytes_per_request,
    kv_cache_capacity,
    kv_report,
    model_config,
    weight_bytes,
)

GiB = 2**30


def test_kv_report_per_request_and_batch() -> None:
    r = kv_report("llama-3-8b", context=8192, batch=16)
    assert r.kv_bytes_per_request == 8192 * 131_072 == 1 * GiB
    assert r.kv_bytes_per_batch == 16 * GiB
    assert r.overstatement == 4.0 and r.hidden_formula_bytes_per_token == 524_288


def test_sliding_window_caps_the_kv_a_request_holds() -> None:
    m = model_config("mistral-7b")
    assert m.sliding_window == 4096
    assert kv_bytes_per_request(m, 32_768) == kv_bytes_per_request(m, 4096) == 4096 * 131_072


def test_estimate_memory_adds_up() -> None:
    e = estimate_memory("llama-3-8b", "fp16", context=4096, batch=8)
    assert e.weights == 2 * 8_030_261_248
    assert e.kv_cache == 8 * 4096 * 131_072
    assert e.runtime_overhead == GiB
    assert e.total == e.weights + e.kv_cache + e.activations + e.runtime_overhead
    assert 0 < e.activations < 2e9


def test_vllm_style_capacity_matches_hand_arithmetic() -> None:
    gpu = default_catalog().gpu("a100-80")
    cap = kv_cache_capacity("llama-3-8b", gpu, "fp16", gpu_memory_utilization=0.9, max_model_len=8192)
    budget = int(81920 * 2**20 * 0.9)
    available = budget - 2 * 8_030_261_248 - activation_bytes("llama-3-8b", 8192, 256) - GiB
    assert cap.kv_available_per_gpu == available
    assert cap.num_gpu_blocks == available // (16 * 131_072)
    assert cap.kv_cache_tokens == cap.num_gpu_blocks * 16
    assert cap.max_concurrency == pytest.approx(cap.kv_cache_tokens / 8192, abs=0.01)
    assert cap.max_full_length_requests == cap.num_gpu_blocks // (8192 // 16)
    assert cap.fits
    # ~55 requests of 8k tokens on an A100-80GB: the order of magnitude vLLM logs for Llama-3-8B
    assert 45 < cap.max_concurrency < 65


def test_tensor_parallel_splits_weights_and_kv_heads_and_replicates_below_one_head() -> None:
    gpu = default_catalog().gpu("h100-80")
    tp2 = kv_cache_capacity("llama-3-8b", gpu, tensor_parallel=2, max_model_len=8192)
    tp8 = kv_cache_capacity("llama-3-8b", gpu, tensor_parallel=8, max_model_len=8192)
    tp16 = kv_cache_capacity("llama-3-8b", gpu, tensor_parallel=16, max_model_len=8192)
    assert tp2.weights_per_gpu == pytest.approx(weight_bytes("llama-3-8b") / 2, abs=1)
    assert tp2.kv_bytes_per_token_per_gpu == 131_072 // 2
    assert tp8.kv_bytes_per_token_per_gpu == 131_072 // 8
    # 8 KV heads over 16 GPUs: each GPU still holds one whole KV head (vLLM replicates)
    assert tp16.kv_bytes_per_token_per_gpu == tp8.kv_bytes_per_token_per_gpu


def test_pipeline_parallel_splits_layers() -> None:
    gpu = default_catalog().gpu("a100-80")
    pp3 = kv_cache_capacity("llama-3-70b", gpu, pipeline_parallel=3, max_model_len=8192)
    assert pp3.kv_bytes_per_token_per_gpu == 2 * 27 * 8 * 128 * 2  # ceil(80 / 3) = 27 layers on the fullest stage
    assert pp3.fits


def test_model_that_does_not_fit_says_why() -> None:
    l4 = default_catalog().gpu("l4")
    cap = kv_cache_capacity("llama-3-70b", l4, "fp16")
    assert not cap.fits and cap.num_gpu_blocks == 0 and "exceed" in cap.reason
    tight = kv_cache_capacity("llama-3-8b", l4, "fp16", max_model_len=131_072)
    assert not tight.fits and "max_model_len" in tight.reason


@pytest.mark.parametrize("kwargs,param", [
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ({"tensor_parallel": 3}, "tensor_parallel"),  # 32 heads are not divisible by 3
    ({"pipeline_parallel": 0}, "pipeline_parallel"),
    ({"kv_dtype": "fp12"}, "kv_dtype"),
    ({"precision": "int3"}, "precision"),
])
def test_bad_numbers_name_the_field(kwargs: dict, param: str) -> None:
    gpu = default_catalog().gpu("h100-80")
    with pytest.raises(InvalidRequestError) as e:
        kv_cache_capacity("llama-3-8b", gpu, **kwargs)
    assert e.value.param == param


def test_kv_dtype_fp8_halves_the_cache() -> None:
    assert kv_report("llama-3-70b", 4096, kv_dtype="fp8").kv_bytes_per_request * 2 == \
        kv_report("llama-3-70b", 4096).kv_bytes_per_request
