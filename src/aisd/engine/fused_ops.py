"""Fused elementwise steps of the Llama forward, in native code built on first use (like ``cpu_kernels``).

Why: at decode batch sizes (64 rows x 576 columns for SmolLM2) the elementwise work between the matmuls is tiny,
and its cost is the number of torch ops - each a dispatch, an OpenMP fork and a pass over memory. A layer in
bfloat16 mixed precision ran ~25 of them; three fused passes replace most:

- ``rope_qkv_store``: the fused Q/K/V projection's output widened to float32, its bias added, q and k rotated by
  RoPE and k, v written into the paged KV cache (was: cast, bias add, slice, cat, neg, 2 mul, add, 2 cache writes).
  The same float32 operations in the same order as the torch path (built with ``-ffp-contract=off``), so its output
  is bit-identical, float32 mode included.
- ``add_rms_norm``: the residual add and the next RMSNorm, emitting the bfloat16 input of the next matmul (was: cast,
  add, pow, mean, add, rsqrt, 2 mul, cast). Its sum of squares runs in another order than torch's ``mean``: used in
  the bfloat16 mode only, whose tokens already follow float32 up to rounding.
- ``silu_mul_bf16``: SwiGLU's ``silu(gate) * up`` from the bfloat16 gate/up projection to the bfloat16 input of the
  down projection (was: cast, chunk, silu, mul, cast); exp from a polynomial (relative error < 2e-7), bfloat16 only.

Sources: ``fused_ops.c`` beside this module; compiled with ``aisd.core.native`` (``-O3 -march=native``, with
``-fopenmp`` on torch's own GNU OpenMP runtime when torch uses it, as ``cpu_kernels`` does). ``available()`` is
False without a C compiler or with ``AISD_NATIVE_KERNELS=0``; the model then runs its torch ops.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from aisd.core.native import NativeLibrary
from aisd.engine.cpu_kernels import compile_on_torch_openmp

_SOURCE = "\n".join((Path(__file__).parent / f).read_text() for f in ("kernel_math.h", "fused_ops.c"))
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp-simd", "-fPIC", "-shared", "-std=c11"]
MAX_HEAD_DIM = 256

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {
    "rope_qkv_store": [_P, ctypes.c_int, _P, _P, _P, _P, _P, _P, _P, ctypes.c_int, _P, _P, *[_I] * 7, ctypes.c_int],
    "add_rms_norm": [_P, _P, ctypes.c_int, _P, _F, _P, _I, _I, ctypes.c_int],
    "silu_mul_bf16": [_P, _P, _I, _I, ctypes.c_int],
}


def _build() -> ctypes.CDLL | None:
    path = compile_on_torch_openmp("fused_ops", _SOURCE, _FLAGS)
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int if name == "rope_qkv_store" else None
        fn.argtypes = argtypes
    return lib


_LIB = NativeLibrary("fused native ops", _build)


def available() -> bool:
    """True when the library is built (or could be built now) and native code is not disabled."""
    return _LIB.get() is not None


def _check(t: torch.Tensor, name: str, dtypes: tuple[torch.dtype, ...], shape: tuple[int, ...] | None = None) -> None:
    if t.dtype not in dtypes or not t.is_contiguous() or t.device.type != "cpu":
        raise TypeError(f"{name}: expected a contiguous CPU tensor of {'/'.join(map(str, dtypes))}, got {t.dtype}"
                        f"{'' if t.is_contiguous() else ' (not contiguous)'} on {t.device}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")


def rope_qkv_store(qkv: torch.Tensor, bias: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                   positions: torch.Tensor, num_heads: int, num_kv_heads: int, k_cache: torch.Tensor,
                   v_cache: torch.Tensor, slot_blocks: torch.Tensor, slot_offsets: torch.Tensor) -> torch.Tensor:
    """qkv [T, (H + 2 KVH) * D] float32 or bfloat16; bias [(H + 2 KVH) * D] float32 or None; cos, sin [npos, D]
    float32; positions, slot_blocks, slot_offsets [T] int64; caches [num_blocks, KVH, bs, D] float32 or bfloat16
    -> [T, H + 2 KVH, D] float32: q and k heads rotated, v as is; k and v also stored in the caches."""
    if not available():
        raise RuntimeError("fused native ops are not available")
    T, W = qkv.shape
    nb, KVH, bs, D = k_cache.shape
    if KVH != num_kv_heads or W != (num_heads + 2 * KVH) * D or D % 2 or D > MAX_HEAD_DIM:
        raise ValueError(f"rope_qkv_store: qkv width {W} does not match {num_heads} + 2 x {num_kv_heads} heads of "
                         f"the cache's head_dim {D} (even, <= {MAX_HEAD_DIM})")
    _check(qkv, "qkv", (torch.float32, torch.bfloat16))
    _check(k_cache, "k_cache", (torch.float32, torch.bfloat16))
    _check(v_cache, "v_cache", (k_cache.dtype,), tuple(k_cache.shape))
    _check(cos, "cos", (torch.float32,))
    _check(sin, "sin", (torch.float32,), tuple(cos.shape))
    if cos.shape[1] != D:
        raise ValueError(f"rope tables have {cos.shape[1]} columns, head_dim is {D}")
    for name, t in (("positions", positions), ("slot_blocks", slot_blocks), ("slot_offsets", slot_offsets)):
        _check(t, name, (torch.int64,), (T,))
    if bias is not None:
        _check(bias, "bias", (torch.float32,), (W,))
    out = torch.empty(T, num_heads + 2 * KVH, D, dtype=torch.float32)
    code = _LIB.get().rope_qkv_store(  # type: ignore[union-attr]
        qkv.data_ptr(), int(qkv.dtype == torch.bfloat16), None if bias is None else bias.data_ptr(), cos.data_ptr(),
        sin.data_ptr(), positions.data_ptr(), out.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(),
        int(k_cache.dtype == torch.bfloat16), slot_blocks.data_ptr(), slot_offsets.data_ptr(), T, num_heads, KVH, D,
        bs, cos.shape[0], nb, torch.get_num_threads())
    if code:
        raise IndexError(f"rope_qkv_store: a position is outside the {cos.shape[0]}-row RoPE tables or a slot outside "
                         f"the cache ({nb} blocks x {bs}); nothing was written")
    return out


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor | None,
                 eps: float) -> torch.Tensor | None:
    """x [T, N] float32, updated in place to x + delta (delta [T, N] float32 or bfloat16, or None); returns
    RMSNorm(x) * weight as bfloat16 [T, N] (weight [N] float32), or None when weight is None (the add only)."""
    if not available():
        raise RuntimeError("fused native ops are not available")
    _check(x, "x", (torch.float32,))
    T, N = x.shape
    if delta is not None:
        _check(delta, "delta", (torch.float32, torch.bfloat16), (T, N))
    out = None
    if weight is not None:
        _check(weight, "weight", (torch.float32,), (N,))
        out = torch.empty(T, N, dtype=torch.bfloat16)
    _LIB.get().add_rms_norm(x.data_ptr(), None if delta is None else delta.data_ptr(),  # type: ignore[union-attr]
                      int(delta is not None and delta.dtype == torch.bfloat16),
                      None if weight is None else weight.data_ptr(), eps,
                      None if out is None else out.data_ptr(), T, N, torch.get_num_threads())
    return out


def silu_mul_bf16(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up [T, 2I] bfloat16 (gate columns first) -> silu(gate) * up [T, I] bfloat16, computed in float32."""
    if not available():
        raise RuntimeError("fused native ops are not available")
    _check(gate_up, "gate_up", (torch.bfloat16,))
    T, W = gate_up.shape
    if W % 2:
        raise ValueError(f"gate_up has an odd width {W}: expected gate and up columns side by side")
    out = torch.empty(T, W // 2, dtype=torch.bfloat16)
    _LIB.get().silu_mul_bf16(gate_up.data_ptr(), out.data_ptr(), T, W // 2,  # type: ignore[union-attr]
                             torch.get_num_threads())
    return out
