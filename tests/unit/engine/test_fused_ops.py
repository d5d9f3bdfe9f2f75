"""The fused native steps of the Llama forward (aisd.engine.fused_ops) against the torch ops they replace: RoPE + bias +
cache store bit-identical (so float32 mode stays token-exact), residual add + RMSNorm and SiLU x up within one bfloat16
rounding step, errors that name the problem and touch nothing, and the model's fused path against its torch path."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aisd.engine import LLM, SamplingParams, fused_ops
from aisd.engine.models.llama import rms_norm

GEN = torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _built_and_two_threads():
    """Two threads, so the larger cases run the OpenMP split (another test module sets one thread per process)."""
    assert fused_ops.available(), "the fused native ops did not build (see the warning logged with the compiler error)"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in bfloat16 units in the last place (same-sign values: the bit patterns are ordered)."""
    return (a.view(torch.int16).int() - b.view(torch.int16).int()).abs()


def rope_reference(qkv: torch.Tensor, bias: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                   pos: torch.Tensor, H: int, KVH: int, D: int, kc: torch.Tensor, vc: torch.Tensor,
                   blocks: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The torch ops of LlamaModel.forward / paged_attention that rope_qkv_store replaces."""
    T = qkv.shape[0]
    x = qkv.float()
    x = x if bias is None else x + bias
    qk = x[:, :(H + KVH) * D].view(T, H + KVH, D)
    c, s = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)
    rotated = torch.cat([-qk[..., D // 2:], qk[..., :D // 2]], dim=-1)
    qk = qk * c + rotated * s
    v = x[:, (H + KVH) * D:].view(T, KVH, D)
    kc[blocks, :, offsets] = qk[:, H:].to(kc.dtype)
    vc[blocks, :, offsets] = v.to(vc.dtype)
    return torch.cat([qk, v], dim=1)


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("T, H, KVH, D", [(5, 4, 2, 16), (300, 9, 3, 64), (7, 8, 8, 128)])  # 300 rows: OpenMP
def test_rope_qkv_store_is_bit_identical_to_the_torch_ops(in_dtype: torch.dtype, cache_dtype: torch.dtype,
                                                          with_bias: bool, T: int, H: int, KVH: int, D: int) -> None:
    W, nb, bs, npos = (H + 2 * KVH) * D, 64, 8, 1024
    qkv = (torch.randn(T, W, generator=GEN) * 3).to(in_dtype)
    bias = torch.randn(W, generator=GEN) if with_bias else None
    ang = torch.rand(npos, D // 2, generator=GEN) * 50
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    pos = torch.randint(0, npos, (T,), generator=GEN)
    slots = torch.randperm(nb * bs, generator=GEN)[:T]  # distinct slots, as the block manager hands out
    blocks, offsets = slots // bs, slots % bs
    kc, vc = (torch.randn(nb, KVH, bs, D, generator=GEN).to(cache_dtype) for _ in range(2))
    kc_ref, vc_ref = kc.clone(), vc.clone()
    got = fused_ops.rope_qkv_store(qkv, bias, cos, sin, pos, H, KVH, kc, vc, blocks, offsets)
    want = rope_reference(qkv, bias, cos, sin, pos, H, KVH, D, kc_ref, vc_ref, blocks, offsets)
    assert got.shape == (T, H + 2 * KVH, D) and got.dtype == torch.float32
    assert torch.equal(got, want)
    assert torch.equal(kc, kc_ref) and torch.equal(vc, vc_ref)  # the stored rows, and every other row untouched


def test_rope_qkv_store_rejects_bad_input_and_writes_nothing() -> None:
    H, KVH, D, nb, bs = 4, 2, 16, 8, 4
    qkv = torch.randn(3, (H + 2 * KVH) * D)
    cos = sin = torch.ones(32, D)
    kc, vc = torch.zeros(nb, KVH, bs, D), torch.zeros(nb, KVH, bs, D)
    ok = torch.tensor([0, 1, 2])
    with pytest.raises(IndexError, match="RoPE tables"):
        fused_ops.rope_qkv_store(qkv, None, cos, sin, torch.tensor([0, 1, 32]), H, KVH, kc, vc, ok, ok)
    with pytest.raises(IndexError, match="8 blocks x 4"):
        fused_ops.rope_qkv_store(qkv, None, cos, sin, ok, H, KVH, kc, vc, torch.tensor([0, 8, 1]), ok)
    with pytest.raises(IndexError):
        fused_ops.rope_qkv_store(qkv, None, cos, sin, ok, H, KVH, kc, vc, ok, torch.tensor([0, -1, 1]))
    assert not kc.any() and not vc.any()  # a rejected call stores nothing
    with pytest.raises(ValueError, match="qkv width"):
        fused_ops.rope_qkv_store(qkv[:, :-D], None, cos, sin, ok, H, KVH, kc, vc, ok, ok)
    with pytest.raises(TypeError, match="k_cache"):
        fused_ops.rope_qkv_store(qkv, None, cos, sin, ok, H, KVH, kc.half(), vc.half(), ok, ok)
    with pytest.raises(TypeError, match="positions"):
        fused_ops.rope_qkv_store(qkv, None, cos, sin, ok.int(), H, KVH, kc, vc, ok, ok)
    with pytest.raises(TypeError, match="not contiguous"):
        fused_ops.rope_qkv_store(qkv.t().contiguous().t(), None, cos, sin, ok, H, KVH, kc, vc, ok, ok)


@pytest.mark.parametrize("delta_dtype", [torch.float32, torch.bfloat16, None])
@pytest.mark.parametrize("T, N", [(9, 64), (200, 576)])  # 200 x 576: split over OpenMP threads
def test_add_rms_norm_matches_torch_within_one_bfloat16_step(delta_dtype: torch.dtype | None, T: int, N: int) -> None:
    x = torch.randn(T, N, generator=GEN) * 5
    delta = None if delta_dtype is None else (torch.randn(T, N, generator=GEN) * 2).to(delta_dtype)
    w = torch.rand(N, generator=GEN) + 0.5
    summed = x if delta is None else x + delta.float()
    want = rms_norm(summed, w, 1e-5).to(torch.bfloat16)  # transformers' float32 RMSNorm, then the matmul's cast
    got = fused_ops.add_rms_norm(x, delta, w, 1e-5)
    assert torch.equal(x, summed)  # the residual add is exact and in place
    assert got is not None and got.dtype == torch.bfloat16 and got.shape == (T, N)
    ulps = bf16_ulps(got, want)
    assert int(ulps.max()) <= 1  # only the sum of squares' order differs: at most a rounding tie flips
    assert float((ulps > 0).float().mean()) < 0.01
    y = torch.randn(T, N, generator=GEN)
    y0 = y.clone()
    assert fused_ops.add_rms_norm(y, torch.ones(T, N, dtype=torch.bfloat16), None, 1e-5) is None  # add only
    assert torch.equal(y, y0 + 1)


@pytest.mark.parametrize("T, I", [(3, 40), (64, 1536)])  # 64 x 1536: split over OpenMP threads
def test_silu_mul_matches_torch_within_one_bfloat16_step(T: int, I: int) -> None:  # noqa: E741 - SwiGLU's I
    gate_up = (torch.randn(T, 2 * I, generator=GEN) * 6).to(torch.bfloat16)
    gate_up[0, :4] = torch.tensor([-100.0, 100.0, 0.0, -0.0])  # exp's clamp at both ends, and zero
    gate, up = gate_up.float().chunk(2, dim=-1)
    want = (F.silu(gate) * up).to(torch.bfloat16)
    got = fused_ops.silu_mul_bf16(gate_up)
    assert got.dtype == torch.bfloat16 and got.shape == (T, I)
    close = torch.isclose(got.float(), want.float(), rtol=0, atol=1e-30)  # silu(-100) ~ -4e-42: both ~0
    assert int(torch.where(close, 0, bf16_ulps(got, want)).max()) <= 1  # exp to 2e-7 relative: a tie may flip
    with pytest.raises(ValueError, match="odd width"):
        fused_ops.silu_mul_bf16(gate_up[:, :-1].contiguous())
    with pytest.raises(TypeError, match="gate_up"):
        fused_ops.silu_mul_bf16(gate_up.float())


def _prompts(n: int) -> list[list[int]]:
    rng = random.Random(5)
    return [[rng.randrange(256) for _ in range(rng.randint(1, 50))] for _ in range(n)]


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])  # qwen2: q/k/v biases added by the fused pass
def test_models_fused_path_gives_the_torch_paths_tokens(fixture: str, request: pytest.FixtureRequest) -> None:
    """float32: the fused forward (RoPE + cache store only) is bit-identical - same tokens and same logprobs.
    bfloat16: the fused norm / SiLU round within one bfloat16 step, far from these models' ties: same tokens, and
    the logprobs within bfloat16's noise."""
    path: Path = request.getfixturevalue(fixture)
    params = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True, logprobs=0)
    for dtype, tol in (("float32", 0.0), ("bfloat16", 0.05)):
        runs = []
        for fused in (True, False):
            llm = LLM(str(path), num_gpu_blocks=256, block_size=4, dtype=dtype, max_num_batched_tokens=64)
            llm.engine.model.fused = fused if fused is False else None  # None: decided on the first step
            outs = llm.generate(_prompts(10), params)
            assert llm.engine.model.fused is fused
            runs.append([(o.outputs[0].token_ids, [e[t].logprob for t, e in
                                                   zip(o.outputs[0].token_ids, o.outputs[0].logprobs, strict=True)])
                         for o in outs])
        for (tok_a, lp_a), (tok_b, lp_b) in zip(*runs, strict=True):
            assert tok_a == tok_b
            assert max(abs(a - b) for a, b in zip(lp_a, lp_b, strict=True)) <= tol
