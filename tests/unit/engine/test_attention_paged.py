"""Paged attention against a dense reference: the native decode kernel, the pure-torch fallback and the prefill path
(local and over cached context) all equal per-sequence causal attention with repeated K/V heads (transformers'
repeat_kv + softmax(QK^T / sqrt(d)) V)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from aisd.engine import cpu_kernels
from aisd.engine.attention import build_metadata, paged_attention

torch.set_num_threads(1)


def dense_reference(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """q [n, H, D] at absolute ``positions``; keys/values [ctx, KVH, D] of the whole sequence -> [n, H, D]."""
    H, KVH, D = q.shape[1], keys.shape[1], q.shape[2]
    k = keys.repeat_interleave(H // KVH, dim=1)  # head h reads kv head h // G (repeat_kv)
    v = values.repeat_interleave(H // KVH, dim=1)
    out = torch.empty_like(q)
    for i, pos in enumerate(positions):
        s = torch.einsum("hd,lhd->hl", q[i].double(), k[:pos + 1].double()) / math.sqrt(D)
        out[i] = torch.einsum("hl,lhd->hd", s.softmax(-1), v[:pos + 1].double()).float()
    return out


class Case:
    """Random sequences whose first ``cached`` tokens are already in a head-major paged cache."""

    def __init__(self, lengths: list[tuple[int, int]], heads: int = 9, kv_heads: int = 3, head_dim: int = 64,
                 block_size: int = 16, num_blocks: int = 256, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        self.bs, self.H, self.KVH, self.D = block_size, heads, kv_heads, head_dim
        self.k_cache = torch.randn(num_blocks, kv_heads, block_size, head_dim, generator=g)
        self.v_cache = torch.randn(num_blocks, kv_heads, block_size, head_dim, generator=g)
        free = list(range(num_blocks))
        rng.shuffle(free)  # scattered blocks, like a cache that has served many requests
        self.seqs = []
        for cached, new in lengths:
            total = cached + new
            table = [free.pop() for _ in range((total + block_size - 1) // block_size)]
            keys = torch.randn(total, kv_heads, head_dim, generator=g)
            values = torch.randn(total, kv_heads, head_dim, generator=g)
            for pos in range(cached):  # already cached tokens live in the paged cache only
                b, o = table[pos // block_size], pos % block_size
                self.k_cache[b, :, o], self.v_cache[b, :, o] = keys[pos], values[pos]
            q = torch.randn(new, heads, head_dim, generator=g)
            self.seqs.append((table, cached, new, keys, values, q))

    def run(self, native: bool | None, decode_count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``decode_count`` sequences decode one token; the rest are prefill chunks."""
        dec, pre = self.seqs[:decode_count], self.seqs[decode_count:]
        meta = build_metadata([(t, c) for t, c, n, *_ in dec], [(t, c, n) for t, c, n, *_ in pre], self.bs,
                              self.H // self.KVH, native=native)
        q = torch.cat([s[5] for s in dec + pre])
        k = torch.cat([s[3][s[1]:s[1] + s[2]] for s in dec + pre])
        v = torch.cat([s[4][s[1]:s[1] + s[2]] for s in dec + pre])
        got = paged_attention(q, k, v, self.k_cache, self.v_cache, meta)
        want = torch.cat([dense_reference(qq, kk, vv, list(range(c, c + n))) for _, c, n, kk, vv, qq in dec + pre])
        return got, want


@pytest.fixture
def needs_native() -> None:
    """Build the kernel (once per process, into this test's AISD_HOME). `make test` installs a C compiler when none is
    present, so a kernel that does not build is a failure here (the build error is in the log), not a skip."""
    assert cpu_kernels.available(), "the native decode kernel did not build (see the warning logged with the C error)"


@pytest.mark.usefixtures("needs_native")
@pytest.mark.parametrize("head_dim,block_size,heads,kv_heads", [
    (64, 16, 9, 3), (128, 16, 12, 2), (64, 32, 14, 2), (64, 16, 16, 1),  # the AVX-512 path (where the CPU has it):
    # G = 3, 6, 7, 16 query heads per kv head (register chunks of 4 or 2 heads plus a remainder), 1 or 2 tiles a block
    (32, 4, 4, 2), (16, 8, 4, 4), (64, 8, 9, 3)])  # the portable path (other head sizes, blocks not a multiple of 16)
def test_native_decode_kernel_matches_dense_attention(head_dim: int, block_size: int, heads: int,
                                                      kv_heads: int) -> None:
    rng = random.Random(1)
    lengths = [(rng.randint(0, 90), 1) for _ in range(12)] + [(1, 1), (block_size, 1), (block_size - 1, 1)]
    case = Case(lengths, heads, kv_heads, head_dim, block_size)
    got, want = case.run(native=True, decode_count=len(lengths))
    assert torch.allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.usefixtures("needs_native")
def test_kernel_uses_avx512_where_the_cpu_has_it() -> None:
    """-march=native builds the hand-vectorised path on an AVX-512 CPU, so the shapes above exercised it there."""
    with open("/proc/cpuinfo") as f:
        flags = next((line.split() for line in f if line.startswith("flags")), [])
    assert cpu_kernels.vector_path() == ("avx512" if "avx512f" in flags else "portable")


@pytest.mark.usefixtures("needs_native")
def test_native_and_torch_decode_paths_agree_and_split_over_threads() -> None:
    rng = random.Random(2)
    lengths = [(rng.randint(1, 200), 1) for _ in range(33)]
    case = Case(lengths, num_blocks=600)
    torch.set_num_threads(2)  # the kernel splits the batch over torch.get_num_threads() workers
    try:
        native, want = case.run(native=True, decode_count=33)
    finally:
        torch.set_num_threads(1)
    fallback, _ = case.run(native=False, decode_count=33)
    assert torch.allclose(native, fallback, atol=2e-5)
    assert torch.allclose(native, want, atol=2e-5)


@pytest.mark.parametrize("native,head_dim,block_size", [(True, 64, 16), (True, 128, 16), (True, 64, 8), (False, 64, 16)])
def test_bfloat16_cache_matches_dense_attention_over_the_rounded_keys_and_values(native: bool, head_dim: int,
                                                                                  block_size: int) -> None:
    """A bfloat16 KV cache (the engine's mixed-precision mode): float32 queries, K/V stored rounded to bfloat16 and
    widened exactly when read; decodes (native kernel or torch) and prefill chunks over cached context alike."""
    if native:
        assert cpu_kernels.available(), "the native decode kernel did not build"
    rng = random.Random(4)
    lengths = [(rng.randint(1, 70), 1) for _ in range(9)] + [(0, 13), (21, 6)]
    case = Case(lengths, head_dim=head_dim, block_size=block_size, num_blocks=128)
    case.k_cache, case.v_cache = case.k_cache.bfloat16(), case.v_cache.bfloat16()
    case.seqs = [(t, c, n, k.bfloat16().float(), v.bfloat16().float(), q) for t, c, n, k, v, q in case.seqs]
    got, want = case.run(native=native, decode_count=9)
    assert case.k_cache.dtype == torch.bfloat16 and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.usefixtures("needs_native")
def test_openmp_and_python_thread_splits_give_identical_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux torch runs GNU OpenMP, so the kernel is built to run on torch's own team; the Python-threads split
    (used elsewhere) computes every (sequence, head) with the same code, so the outputs are bit-identical."""
    if cpu_kernels.torch_uses_gnu_openmp():
        assert cpu_kernels.parallel_backend() == "openmp"
    rng = random.Random(5)
    case = Case([(rng.randint(1, 150), 1) for _ in range(21)], num_blocks=400)
    torch.set_num_threads(2)
    try:
        first, want = case.run(native=True, decode_count=21)
        monkeypatch.setattr(cpu_kernels, "_USE_OPENMP", False)
        assert cpu_kernels.parallel_backend() == "threads"
        second, _ = case.run(native=True, decode_count=21)
    finally:
        torch.set_num_threads(1)
    assert torch.equal(first, second)
    assert torch.allclose(first, want, atol=2e-5)


def test_torch_decode_fallback_matches_dense_attention() -> None:
    case = Case([(5, 1), (40, 1), (17, 1), (0, 1)], block_size=8)
    got, want = case.run(native=False, decode_count=4)
    assert torch.allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("native", [False, None])
def test_mixed_step_decodes_then_local_and_cached_prefill_chunks(native: bool | None) -> None:
    # two decodes, a fresh prompt (local causal path), a chunk continuing after 37 cached tokens (chunked prefill /
    # prefix-cache hit), and a one-token chunk after a cached prefix
    case = Case([(30, 1), (64, 1), (0, 23), (37, 20), (16, 1)], block_size=16)
    got, want = case.run(native=native, decode_count=2)
    assert torch.allclose(got, want, atol=2e-5)


def test_new_tokens_land_in_their_cache_slots() -> None:
    case = Case([(0, 10), (3, 1)], block_size=4)
    case.run(native=False, decode_count=0)
    for table, cached, new, keys, values, _ in case.seqs:
        for pos in range(cached, cached + new):
            b, o = table[pos // 4], pos % 4
            assert torch.equal(case.k_cache[b, :, o], keys[pos]) and torch.equal(case.v_cache[b, :, o], values[pos])


def test_split_by_work_balances_context_lengths() -> None:
    assert cpu_kernels.split_by_work([1] * 10, 2) == [(0, 5), (5, 10)]
    assert cpu_kernels.split_by_work([100, 1, 1, 1], 2) == [(0, 1), (1, 4)]
    assert cpu_kernels.split_by_work([7], 4) == [(0, 1)]
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(1, 400) for _ in range(rng.randint(1, 70))]
        n = rng.randint(1, 4)
        parts = cpu_kernels.split_by_work(lengths, n)
        assert parts[0][0] == 0 and parts[-1][1] == len(lengths) and len(parts) <= n
        assert all(a < b for a, b in parts) and all(p[1] == q[0] for p, q in zip(parts, parts[1:], strict=False))


@pytest.mark.usefixtures("needs_native")
def test_native_kernel_rejects_bad_inputs() -> None:
    q = torch.randn(2, 4, 16)
    cache = torch.zeros(4, 2, 4, 16)
    bt = torch.zeros(2, 1, dtype=torch.long)
    cl = torch.ones(2, dtype=torch.long)
    with pytest.raises(TypeError):
        cpu_kernels.paged_decode_attention(q.double(), cache, cache, bt, cl, 0.25)
    with pytest.raises(TypeError, match="one dtype"):
        cpu_kernels.paged_decode_attention(q, cache, cache.bfloat16(), bt, cl, 0.25)
    with pytest.raises(ValueError, match="contiguous"):
        cpu_kernels.paged_decode_attention(q, cache.transpose(1, 2), cache, bt, cl, 0.25)
    with pytest.raises(ValueError, match="out"):
        cpu_kernels.paged_decode_attention(q, cache, cache, bt, cl, 0.25, out=torch.empty(3, 4, 16))
    with pytest.raises(ValueError, match="head_dim"):
        big = torch.zeros(1, 1, 4, 512)
        cpu_kernels.paged_decode_attention(torch.randn(1, 1, 512), big, big, bt[:1], cl[:1], 0.1)


def test_kernel_can_be_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISD_NATIVE_KERNELS", "0")
    assert not cpu_kernels.available()
    meta = build_metadata([([0], 0)], [], 4, 1)
    assert not meta.native and meta.decode_mask is not None
