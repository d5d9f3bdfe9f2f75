"""A native CPU kernel for decode attention over the paged KV cache, built on first use with the system C compiler.

Why: with pure torch, decode attention must first gather each sequence's blocks into a padded dense tensor
(``index_select``) and then run SDPA over it, so every layer reads the context twice and writes it once, padded to the
longest sequence. This kernel walks each sequence's block table and reads every K/V row exactly once, like vLLM's
PagedAttention kernels (Kwon et al. 2023) and its CPU backend do; nothing is padded or copied.

Per (sequence, kv head) it computes the G = num_heads / num_kv_heads query heads that share that KV head (GQA) in two
passes: scores q.k * scale for the whole context, then a softmax (max-subtracted, as SDPA does) and the weighted sum
of V. On CPUs with AVX-512 (head_dim 64 or 128, blocks a multiple of 16 tokens), pass 1 scores 16 tokens at a time
and reduces their 16 partial-sum vectors with one shuffle tree, and pass 2 keeps its accumulators in registers
(``vector_path()``); elsewhere portable loops the compiler vectorises do the same. The batch is split over ``torch.get_num_threads()`` threads: where torch runs GNU OpenMP (Linux builds), the
library is built with ``-fopenmp`` against that same loaded runtime and the kernel runs on torch's own worker team,
so no second thread pool competes with torch's spinning workers (``torch_uses_gnu_openmp``); elsewhere, Python
threads each take a contiguous range of sequences (ctypes releases the GIL).

The C source (``paged_attention.c``, shipped beside this module) is compiled once per machine (``-O3 -march=native``) by ``aisd.core.native`` into ``$AISD_HOME/kernels``
(default ``~/.aisd/kernels``), keyed by a hash of the source, the flags and the CPU's feature flags. Without a C compiler, or
when ``AISD_NATIVE_KERNELS=0``, ``available()`` is False and the engine uses the pure-torch path (same results up to
float rounding).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from aisd.core.native import NativeLibrary, compile_library

log = logging.getLogger(__name__)

# C11; kernel_math.h (bfloat16 conversions, exp) is prepended, so the library's cache key covers both files
_SOURCE = "\n".join((Path(__file__).parent / f).read_text() for f in ("kernel_math.h", "paged_attention.c"))

KV_DTYPES = (torch.float32, torch.bfloat16)  # cache dtypes the kernel reads (q and out are always float32)
_FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c11"]
_lock = threading.Lock()  # guards the Python-threads pool
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_USE_OPENMP = True  # tests switch it off to check the Python-threads path on the same machine


def torch_uses_gnu_openmp() -> bool:
    """Whether this process already runs GNU OpenMP (``libgomp.so.1``, which Linux builds of torch load): then a
    library built with ``-fopenmp`` binds to that same runtime - the dynamic loader reuses a loaded soname - and its
    parallel loop runs on torch's idle worker threads. With any other runtime (LLVM's libomp, Intel's libiomp5) it
    would load a second pool and oversubscribe the cores."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:  # not Linux
        return False


def compile_on_torch_openmp(name: str, source: str, flags: list[str]) -> Path | None:
    """Build ``source`` with ``-fopenmp`` when torch runs GNU OpenMP (its parallel loops then run on torch's own
    team), else without (``#pragma omp`` ignored: serial, or split by the caller)."""
    path = None
    if torch_uses_gnu_openmp():
        path = compile_library(f"{name}_omp", source, [*flags, "-fopenmp"], libs=("-lm",))
    return path or compile_library(name, source, flags, libs=("-lm",))


def _build() -> ctypes.CDLL | None:
    path = compile_on_torch_openmp("paged_attention", _SOURCE, _FLAGS)
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    # the serial entries take a [b0, b1) range of sequences, the OpenMP ones (built with -fopenmp only) the count B
    entries = {"paged_decode_attention": 7, "paged_decode_attention_bf16": 7,
               "paged_decode_attention_omp": 6, "paged_decode_attention_omp_bf16": 6}
    for name, n_ints in entries.items():
        if hasattr(lib, name):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * n_ints + [ctypes.c_float] \
                + [ctypes.c_int64] * name.count("_omp")  # the OpenMP entries end with the team size
    return lib


_LIB = NativeLibrary("native attention kernel", _build)


def _openmp() -> bool:
    """The loaded kernel has the OpenMP entry points (and tests have not switched them off)."""
    return _USE_OPENMP and hasattr(_LIB.get(), "paged_decode_attention_omp")


def parallel_backend() -> str:
    """How a batch is split over threads: "openmp" (torch's OpenMP team, inside the kernel) or "threads" (Python
    threads, one contiguous range of sequences each); "none" when the kernel is unavailable."""
    if not available():
        return "none"
    return "openmp" if _openmp() else "threads"


def vector_path() -> str:
    """Which inner loops the kernel runs: "avx512" (hand-vectorised, for head_dim 64 or 128 and block sizes that are
    multiples of 16; other shapes use the portable loops), "portable" (compiler-vectorised C) or "none"."""
    if not available():
        return "none"
    return "avx512" if _LIB.get().paged_attention_simd_bits() == 512 else "portable"  # type: ignore[union-attr]


def available() -> bool:
    """True when the native kernel is built (or could be built now) and not disabled by AISD_NATIVE_KERNELS=0."""
    return _LIB.get() is not None


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="aisd-attn")
            _pool_size = n
        return _pool


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor, scale: float,
                           out: torch.Tensor | None = None) -> torch.Tensor:
    """q [B, H, D] float32; caches [num_blocks, KVH, block_size, D] float32 or bfloat16 (head-major blocks; both the
    same dtype); block_tables [B, max_blocks] int64; context_lens [B] int64 (tokens each query attends to, itself
    included) -> out [B, H, D] float32."""
    if not available():
        raise RuntimeError("native attention kernel is not available")
    if q.dtype != torch.float32 or k_cache.dtype not in KV_DTYPES or v_cache.dtype != k_cache.dtype:
        raise TypeError(f"the native kernel takes a float32 q and float32 or bfloat16 caches of one dtype; got q "
                        f"{q.dtype}, k_cache {k_cache.dtype}, v_cache {v_cache.dtype}")
    B, H, D = q.shape
    nb, KVH, bs, _ = k_cache.shape
    q = q.contiguous()
    bt = block_tables.contiguous()
    cl = context_lens.contiguous()
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("the KV caches must be contiguous")
    out = torch.empty_like(q) if out is None else out
    if not out.is_contiguous() or out.shape != q.shape:
        raise ValueError("out must be a contiguous tensor shaped like q")
    bf16 = k_cache.dtype == torch.bfloat16
    args = (q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), bt.data_ptr(), cl.data_ptr(), out.data_ptr())
    rest = (H, KVH, D, bs, bt.shape[1], scale)
    n = max(1, min(torch.get_num_threads(), B))
    lib = _LIB.get()
    fn = lib.paged_decode_attention_bf16 if bf16 else lib.paged_decode_attention  # type: ignore[union-attr]
    if n > 1 and _openmp():
        # Python threads here would compete with torch's OpenMP workers, which keep spinning for a while after each
        # matmul: measured in the engine, the two-thread split then ran no faster than one thread (2.1 ms per layer
        # at 60 sequences x 211 tokens), on torch's team 1.0 ms
        omp = lib.paged_decode_attention_omp_bf16 if bf16 else lib.paged_decode_attention_omp  # type: ignore[union-attr]
        codes = [omp(*args, B, *rest, n)]
    elif n == 1:
        codes = [fn(*args, 0, B, *rest)]
    else:
        pool = _executor(n)
        parts = split_by_work(cl.tolist(), n)
        futures = [pool.submit(fn, *args, a, b, *rest) for a, b in parts[1:]]
        codes = [fn(*args, *parts[0], *rest)] + [f.result() for f in futures]
    if 1 in codes:
        raise MemoryError("native attention kernel could not allocate its scratch buffer")
    if 2 in codes:
        raise ValueError(f"native attention kernel supports up to 16 query heads per kv head and head_dim <= 256; "
                         f"got {H // KVH} and {D}")
    return out


def split_by_work(lengths: list[int], n: int) -> list[tuple[int, int]]:
    """Cut [0, len(lengths)) into at most n contiguous non-empty ranges of about equal total length (the work)."""
    total = sum(lengths)
    parts: list[tuple[int, int]] = []
    start, acc = 0, 0
    for i, length in enumerate(lengths):
        acc += length
        if len(parts) < n - 1 and acc * n >= total * (len(parts) + 1) and i + 1 < len(lengths):
            parts.append((start, i + 1))
            start = i + 1
    parts.append((start, len(lengths)))
    return parts
