"""n > 1: the fork fallback. When a prompt's last block is partly filled and no free block is left to copy it into,
the forked sequences cannot share the parent's KV cache; they are queued and prefill their prompt (plus the first
token they already sampled) on their own. Their outputs must equal separately run n = 1 requests whose seeds give
them the same per-sequence random streams."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aisd.engine import EngineConfig, LLMEngine, SamplingParams

torch.set_num_threads(1)

SEED_MULT, SEED_MOD = 1_000_003, 2**63  # the engine seeds sequence i of a request with (seed * MULT + i) mod 2^63


def seed_for_index(seed: int, index: int) -> int:
    """An n = 1 seed whose single sequence gets the same generator as sequence ``index`` of an n > 1 request."""
    return ((seed * SEED_MULT + index) * pow(SEED_MULT, -1, SEED_MOD)) % SEED_MOD


def run(eng: LLMEngine, rid: str, prompt: list[int], sp: SamplingParams) -> list[list[int]]:
    eng.add_request(rid, prompt, sp)
    done = {}
    while eng.has_unfinished_requests():
        done.update({o.request_id: o for o in eng.step() if o.finished})
    assert eng.block_manager.num_free_blocks == eng.block_manager.num_blocks
    return [o.token_ids for o in done[rid].outputs]


@pytest.fixture(scope="module")
def roomy(tiny_llama: Path) -> LLMEngine:
    return LLMEngine.from_config(EngineConfig(model=str(tiny_llama), num_gpu_blocks=64, block_size=4))


def tight_engine(tiny_llama: Path) -> tuple[LLMEngine, list]:
    """4 blocks of 4 tokens: a 14-token prompt fills them all, leaving nothing to copy its partial block into."""
    eng = LLMEngine.from_config(EngineConfig(model=str(tiny_llama), num_gpu_blocks=4, block_size=4))
    forks: list = []
    real_fork = eng.block_manager.fork

    def spy(parent, child):
        result = real_fork(parent, child)
        forks.append(result)
        return result

    eng.block_manager.fork = spy
    return eng, forks


def test_seed_for_index_reproduces_the_engine_seed() -> None:
    for seed, i in ((42, 1), (7, 2), (0, 3)):
        assert (seed_for_index(seed, i) * SEED_MULT) % SEED_MOD == (seed * SEED_MULT + i) % SEED_MOD


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_fork_fallback_equals_separate_requests(tiny_llama: Path, roomy: LLMEngine, temperature: float) -> None:
    prompt = [(i * 37 + 11) % 256 for i in range(14)]  # 14 = 3 full blocks + 2 tokens
    seed, n, max_tokens = 42, 3, 2  # 14 + 2 tokens = the whole 16-slot cache of the tight engine
    eng, forks = tight_engine(tiny_llama)
    sp = SamplingParams(n=n, temperature=temperature, seed=seed, max_tokens=max_tokens, ignore_eos=True)
    got = run(eng, "n3", prompt, sp)
    assert forks == [False] * (n - 1)  # the fallback path ran for every forked sequence
    assert all(len(t) == max_tokens for t in got)
    separate = [run(roomy, f"alone-{i}", prompt,
                    SamplingParams(temperature=temperature, seed=seed_for_index(seed, i), max_tokens=max_tokens,
                                   ignore_eos=True))[0]
                for i in range(n)]
    assert got == separate
    # and the shared-block path (enough room to copy the partial block) gives the same outputs
    assert run(roomy, "n3-shared", prompt, sp) == got
    if temperature == 0.0:
        assert all(t == got[0] for t in got)
    else:  # the seeds really give the sequences different streams, so the equality above is not trivial
        assert len({tuple(t) for t in got}) > 1
    eng.block_manager.check_invariants([])
