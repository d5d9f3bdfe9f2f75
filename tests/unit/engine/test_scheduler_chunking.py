"""Cost-capped chunked prefill: the FLOP model against a brute-force sum and transformers' parameter count, the cap's
maximality, and the scheduler keeping every step within one budget while decodes keep running."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aisd.engine import EngineConfig, SamplingParams
from aisd.engine.block_manager import BlockManager
from aisd.engine.scheduler import PrefillCost, Scheduler, chunk_flops, cost_capped_chunk
from aisd.engine.sequence import Request, Sequence

from .test_scheduler_priority import step

SMOLLM2 = PrefillCost.for_llama(576, 1536, 30, 9, 3, 64)  # SmolLM2-135M's shapes


def cfg_params() -> SamplingParams:
    return SamplingParams(max_tokens=50)


def test_prefill_cost_counts_the_non_embedding_parameters_of_transformers_llama(hf_tiny_llama) -> None:
    c = hf_tiny_llama.config
    weights = sum(p.numel() for n, p in hf_tiny_llama.named_parameters()
                  if p.dim() == 2 and "embed_tokens" not in n and "lm_head" not in n)  # matmul weights only
    cost = PrefillCost.for_llama(c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
                                 c.num_key_value_heads, c.hidden_size // c.num_attention_heads)
    assert cost.per_token == 2 * weights
    assert cost.per_context_token == 2 * c.num_hidden_layers * c.hidden_size


@given(st.integers(0, 5000), st.integers(1, 2048))
def test_chunk_flops_equals_the_per_token_sum(start: int, n: int) -> None:
    brute = sum(SMOLLM2.per_token + SMOLLM2.per_context_token * (start + i + 1) for i in range(n))
    assert chunk_flops(SMOLLM2, start, n) == pytest.approx(brute, rel=1e-12)


@given(st.integers(0, 8000), st.sampled_from([16, 64, 256, 512, 2048]))
def test_the_cap_is_the_largest_chunk_within_the_allowance(start: int, budget: int) -> None:
    target = chunk_flops(SMOLLM2, 0, budget)
    n = cost_capped_chunk(SMOLLM2, start, target, 10**6)
    assert chunk_flops(SMOLLM2, start, n) <= target * (1 + 1e-9)
    assert chunk_flops(SMOLLM2, start, n + 1) > target
    assert n <= budget and cost_capped_chunk(SMOLLM2, start + 100, target, 10**6) <= n  # shrinks with context
    assert cost_capped_chunk(SMOLLM2, start, target, 7) == min(7, n)  # never more than what is left
    assert cost_capped_chunk(SMOLLM2, start, 0.0, 100) == 0


def test_no_context_means_a_full_budget_chunk() -> None:
    assert cost_capped_chunk(SMOLLM2, 0, chunk_flops(SMOLLM2, 0, 512), 10**6) == 512
    free_attention = PrefillCost(1.0, 0.0)
    assert cost_capped_chunk(free_attention, 3000, chunk_flops(free_attention, 0, 512), 10**6) == 512


def test_scheduler_keeps_each_step_within_the_budget_and_decodes_every_step(tiny_llama: Path) -> None:
    cfg = EngineConfig(model=str(tiny_llama), max_num_batched_tokens=512, block_size=16, max_num_seqs=8,
                       enable_prefix_caching=False)
    s = Scheduler(cfg, BlockManager(400, 16, False), max_model_len=4096, prefill_cost=SMOLLM2)
    streams = []
    for i in range(4):
        req = Request(f"s{i}", None, [1, 2, 3], cfg_params(), 0, float(i), i)
        streams.append(Sequence(req, req.prompt_token_ids))
        s.add(streams[-1])
    step(s)
    req = Request("long", None, list(range(3000)), cfg_params(), 0, 9.0, 9)
    long = Sequence(req, req.prompt_token_ids)
    s.add(long)
    chunks, target = [], chunk_flops(SMOLLM2, 0, 512)
    while long.num_computed_tokens < long.num_prompt_tokens:
        out = step(s)
        got = {i.seq.request.request_id: i.num_new_tokens for i in out.scheduled}
        assert all(got[f"s{i}"] == 1 for i in range(4))  # every stream decodes in every step
        chunks.append(got["long"])
        spent = sum(chunk_flops(SMOLLM2, i.seq.num_computed_tokens - i.num_new_tokens, i.num_new_tokens)
                    for i in out.scheduled)  # ``step`` has advanced num_computed_tokens already
        assert spent <= target * (1 + 1e-9)  # the whole step (decodes + chunk) stays within one allowance
    assert chunks[0] == 512 - 4 and chunks == sorted(chunks, reverse=True) and chunks[-2] < chunks[0]
    assert sum(chunks) == 3000


def test_two_prompts_share_one_steps_allowance(tiny_llama: Path) -> None:
    cfg = EngineConfig(model=str(tiny_llama), max_num_batched_tokens=512, block_size=16, max_num_seqs=8,
                       enable_prefix_caching=False)
    s = Scheduler(cfg, BlockManager(400, 16, False), max_model_len=4096, prefill_cost=SMOLLM2)
    for i in range(2):
        req = Request(f"p{i}", None, list(range(1500)), cfg_params(), 0, float(i), i)
        s.add(Sequence(req, req.prompt_token_ids))
    target = chunk_flops(SMOLLM2, 0, 512)
    for _ in range(8):
        out = step(s)
        spent = sum(chunk_flops(SMOLLM2, i.seq.num_computed_tokens - i.num_new_tokens, i.num_new_tokens)
                    for i in out.scheduled)
        assert spent <= target * (1 + 1e-9) and out.scheduled


def test_without_chunked_prefill_the_cost_model_is_ignored(tiny_llama: Path) -> None:
    cfg = EngineConfig(model=str(tiny_llama), max_num_batched_tokens=4096, enable_chunked_prefill=False,
                       block_size=16, enable_prefix_caching=False)
    s = Scheduler(cfg, BlockManager(400, 16, False), max_model_len=4096, prefill_cost=SMOLLM2)
    req = Request("long", None, list(range(3000)), cfg_params(), 0, 0.0, 0)
    s.add(Sequence(req, req.prompt_token_ids))
    assert [i.num_new_tokens for i in step(s).scheduled] == [3000]
