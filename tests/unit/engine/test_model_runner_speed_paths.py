"""The model runner's fast paths give the same model: the native decode kernel vs the pure-torch path, and oneDNN
pre-packed linear weights vs plain ones (same greedy tokens, logits equal to float rounding)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from aisd.engine import LLM, SamplingParams
from aisd.engine.loader import load_model
from aisd.engine.models.llama import LlamaModel

torch.set_num_threads(1)
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=0)


def prompts(n: int, seed: int = 3) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(256) for _ in range(rng.randint(1, 60))] for _ in range(n)]


def generate(path: Path, **kw) -> list:
    return LLM(str(path), num_gpu_blocks=256, block_size=4, **kw).generate(prompts(12), GREEDY)


def test_native_kernel_and_torch_path_generate_the_same_tokens(tiny_llama: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    native = generate(tiny_llama)
    monkeypatch.setenv("AISD_NATIVE_KERNELS", "0")
    fallback = generate(tiny_llama)
    for a, b in zip(native, fallback, strict=True):
        assert a.outputs[0].token_ids == b.outputs[0].token_ids
        lp_a = [e[t].logprob for t, e in zip(a.outputs[0].token_ids, a.outputs[0].logprobs, strict=True)]
        lp_b = [e[t].logprob for t, e in zip(b.outputs[0].token_ids, b.outputs[0].logprobs, strict=True)]
        assert lp_a == pytest.approx(lp_b, abs=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])
def test_prepacked_weights_give_the_same_logits_and_tokens(fixture: str, request: pytest.FixtureRequest,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = request.getfixturevalue(fixture)  # qwen2: q/k/v biases added after the packed matmul
    loaded = load_model(path)
    plain = LlamaModel(loaded.config, dict(loaded.weights), torch.float32)
    packed = LlamaModel(loaded.config, dict(loaded.weights), torch.float32)
    # the pinned torch (2.13.0, CPU build, installed first by the Makefile) has oneDNN: packing must happen
    assert packed.pack_weights(), "pre-packing for oneDNN failed on the pinned torch build"
    h = torch.randn(7, loaded.config.hidden_size)
    assert torch.allclose(packed.compute_logits(h), plain.compute_logits(h), atol=1e-4, rtol=1e-4)
    tokens = [o.outputs[0].token_ids for o in generate(path)]
    monkeypatch.setenv("AISD_PACKED_WEIGHTS", "0")
    runner_plain = LLM(str(path), num_gpu_blocks=256, block_size=4)
    assert not runner_plain.engine.model.packed
    assert [o.outputs[0].token_ids for o in runner_plain.generate(prompts(12), GREEDY)] == tokens


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])
def test_bfloat16_runs_mixed_precision_and_follows_float32(fixture: str, request: pytest.FixtureRequest) -> None:
    """dtype="bfloat16": matmul weights and the KV cache in bfloat16, activations (residual stream, norms, RoPE,
    attention, logits) in float32. The logits stay within bfloat16's rounding of float32's and, on these models whose
    logits are far from ties, every greedy token is the same (on the bundled model the throughput bench reports the
    agreement)."""
    path = request.getfixturevalue(fixture)
    full = LLM(str(path), num_gpu_blocks=256, block_size=4)
    mixed = LLM(str(path), num_gpu_blocks=256, block_size=4, dtype="bfloat16")
    model = mixed.engine.model
    assert model.dtype == torch.bfloat16 and model.act_dtype == torch.float32
    assert model.embed.dtype == torch.bfloat16 and model.layers[0].input_norm.dtype == torch.float32
    assert all(k.dtype == v.dtype == torch.bfloat16 for k, v in mixed.engine.runner.kv_caches)
    h = torch.randn(7, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    want, got = full.engine.model.compute_logits(h), model.compute_logits(h)
    assert got.dtype == torch.float32
    assert not torch.equal(got, want)  # the matmuls really ran in bfloat16
    assert (got - want).abs().max() <= 0.03 * want.abs().max()  # bfloat16 keeps 8 significant bits
    tokens = [o.outputs[0].token_ids for o in mixed.generate(prompts(12), GREEDY)]
    assert tokens == [o.outputs[0].token_ids for o in full.generate(prompts(12), GREEDY)]
