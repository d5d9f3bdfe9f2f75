"""Sampler maths against naive reference implementations, and seeded reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from aisd.core.errors import InvalidRequestError
from aisd.engine.sampler import Sampler, apply_min_p, apply_penalties, apply_top_k_top_p
from aisd.engine.sampling import SamplingParams
from aisd.engine.sequence import Request, Sequence


def naive_top_k_top_p(row: list[float], k: int, p: float) -> set[int]:
    order = sorted(range(len(row)), key=lambda i: -row[i])
    if k > 0:
        order = order[:k]
    z = sum(math.exp(row[i]) for i in order)
    kept, mass = [], 0.0
    for i in order:
        kept.append(i)
        mass += math.exp(row[i]) / z
        if mass >= p - 1e-9:
            break
    return set(kept)


@pytest.mark.parametrize("k,p", [(0, 0.5), (5, 1.0), (3, 0.9), (10, 0.3), (0, 1.0), (1, 0.99)])
def test_top_k_top_p_keep_the_same_tokens_as_a_naive_loop(k: int, p: float) -> None:
    g = torch.Generator().manual_seed(k * 100 + int(p * 10))
    logits = torch.randn(4, 50, generator=g) * 3
    out = apply_top_k_top_p(logits, torch.full((4,), k), torch.full((4,), p))
    for r in range(4):
        kept = {i for i in range(50) if out[r, i] > float("-inf")}
        assert kept == naive_top_k_top_p(logits[r].tolist(), k, p)
        assert torch.equal(out[r][list(kept)], logits[r][list(kept)])


def test_min_p_keeps_tokens_above_the_scaled_max_probability() -> None:
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(1)) * 2
    min_p = torch.tensor([0.0, 0.1, 0.5])
    out = apply_min_p(logits, min_p)
    probs = torch.softmax(logits, -1)
    for r in range(3):
        expect = {i for i in range(40) if probs[r, i] >= min_p[r] * probs[r].max()}
        assert {i for i in range(40) if out[r, i] > float("-inf")} == expect


def test_penalties_match_the_formula() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, -2.0])
    out = apply_penalties(logits.clone(), prompt_ids=[0], output_ids=[1, 1, 3], repetition=2.0, frequency=0.5,
                          presence=0.25)
    expect = [2.0 / 2, -1.0 * 2 - 0.5 * 2 - 0.25, 0.5, 3.0 / 2 - 0.5 - 0.25, -2.0]
    assert out.tolist() == pytest.approx(expect)


def _seq(params: SamplingParams, prompt: list[int], seed_index: int = 0) -> Sequence:
    seq = Sequence(Request("r", None, prompt, params), prompt)
    seq.generator = torch.Generator().manual_seed(1000 + seed_index)
    return seq


def test_seeded_sampling_is_reproducible_and_follows_the_distribution() -> None:
    sampler = Sampler(eos_token_id=None)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 1e-9]]))
    params = SamplingParams(temperature=1.0, seed=7)
    a = [_seq(params, [0]) for _ in range(2)]
    draws = [[sampler(logits, [[s]])[0][0].token_id for _ in range(50)] for s in a]
    assert draws[0] == draws[1]
    seq = _seq(params, [0])
    counts = torch.bincount(torch.tensor([sampler(logits, [[seq]])[0][0].token_id for _ in range(3000)]),
                            minlength=4).float() / 3000
    assert counts.tolist() == pytest.approx([0.5, 0.3, 0.2, 0.0], abs=0.04)


def test_greedy_logprobs_are_log_softmax_with_ranks() -> None:
    sampler = Sampler(eos_token_id=None)
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    tok = sampler(logits, [[_seq(SamplingParams(temperature=0, logprobs=2), [0])]])[0][0]
    lp = torch.log_softmax(logits[0], -1)
    assert tok.token_id == 1 and tok.rank == 1
    assert tok.logprob == pytest.approx(float(lp[1]))
    assert [t for t, _ in tok.top] == [1, 2] and tok.top[1][1] == pytest.approx(float(lp[2]))


def test_min_tokens_masks_eos() -> None:
    sampler = Sampler(eos_token_id=0)
    logits = torch.tensor([[5.0, 1.0, 0.0]])
    assert sampler(logits, [[_seq(SamplingParams(temperature=0, min_tokens=2, max_tokens=4), [2])]])[0][0].token_id == 1


@pytest.mark.parametrize("field,value", [("temperature", -1), ("top_p", 0), ("top_k", -5), ("min_p", 2),
                                         ("n", 0), ("max_tokens", 0), ("presence_penalty", 3), ("stop", [""])])
def test_bad_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as e:
        SamplingParams(**{field: value})
    assert e.value.param == field
