"""A native CPU kernel for decode attention over the paged KV cache, built on first use with the system C compiler.

Why: with pure torch, decode attention must first gather each sequence's blocks into a padded dense tensor
(``index_select``) and then run SDPA over it, so every layer reads the context twice and writes it once, padded to the
longest sequence. This kernel walks each sequence's block table and reads every K/V row exactly once, like vLLM's
PagedAttention kernels (Kwon et al. 2023) and its CPU backend do; nothing is padded or copied.

Per (sequence, kv head) it computes the G = num_heads / num_kv_heads query heads that share that KV head (GQA) in two
passes: scores q.k * scale for the whole context, then a softmax (max-subtracted, as SDPA does) and the weighted sum
of V. The batch is split over ``torch.get_num_threads()`` threads: where torch runs GNU OpenMP (Linux builds), the
library is built with ``-fopenmp`` against that same loaded runtime and the kernel runs on torch's own worker team,
so no second thread pool competes with torch's spinning workers (``torch_uses_gnu_openmp``); elsewhere, Python
threads each take a contiguous range of sequences (ctypes releases the GIL).

The C source is compiled once per machine (``-O3 -march=native``) by ``aisd.core.native`` into ``$AISD_HOME/kernels``
(default ``~/.aisd/kernels``), keyed by a hash of the source, the flags and the CPU's feature flags. Without a C compiler, or
when ``AISD_NATIVE_KERNELS=0``, ``available()`` is False and the engine uses the pure-torch path (same results up to
float rounding).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from aisd.core.native import compile_library, native_enabled

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define MAXG 16  /* query heads per kv head */
#define MAXD 256 /* head_dim */

/* exp(x) for x <= 0 (scores minus their max): 2^n p(r) with x = n ln2 + r, |r| <= ln2 / 2, p the degree-6 Taylor
   polynomial (relative error < 2e-7, glibc's expf < 1 ulp). Branch-free, so the softmax loop vectorises; a scalar
   expf call per score cost ~15% of the kernel. Below -87 the result would be subnormal: clamped (weight ~1e-38). */
static inline float exp_neg(float x) {
    x = x < -87.f ? -87.f : x;
    const float n = __builtin_roundf(x * 1.44269504088896341f);
    const float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;  /* ln2 split hi + lo: exact n ln2 */
    float p = 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    union { int32_t i; float f; } two_n = { .i = ((int32_t)n + 127) << 23 };
    return p * two_n.f;
}

/* A cache row as floats: float32 rows are used in place; bfloat16 ones - the top half of a float32, so widening is
   an exact 16-bit shift - are widened into ``buf`` once, then read by each of the G query heads (1.15x faster than
   widening inside each head's dot product). */
static inline const float *widen_f32(const float *row, float *buf, int64_t D) { (void)buf; (void)D; return row; }
static inline const float *widen_bf16(const uint16_t *restrict row, float *restrict buf, int64_t D) {
    #pragma omp simd
    for (int64_t d = 0; d < D; ++d) {
        union { uint32_t u; float f; } x = { .u = (uint32_t)row[d] << 16 };  /* type punning through a union */
        buf[d] = x.f;
    }
    return buf;
}

static inline void prefetch(const void *p, int64_t bytes, int locality) {
    for (int64_t c = 0; c < bytes; c += 64) __builtin_prefetch((const char *)p + c, 0, locality);
}

/* One (sequence, kv head): G query rows q [G, D] (float32) against the sequence's L cached tokens, walked block by
   block. k_cache / v_cache point at this kv head's rows of block 0; blocks are ``row * bs`` elements apart and, the
   cache being head-major ([num_blocks, KVH, bs, D]), the bs rows of one (block, head) are contiguous (4 KiB for
   D = 64 in float32). Blocks sit anywhere in memory, so the hardware prefetcher stops at each block's end: the next
   K block and this block's V rows are prefetched by hand (1.3-1.4x faster at ~200 tokens of context).
   T is the cache's element type, WIDEN gives a row of it as floats. */
#define DEFINE_ATTEND(NAME, T, WIDEN)                                                                                \
static inline void NAME(const float *restrict q, const T *restrict k_cache, const T *restrict v_cache,              \
                        const int64_t *restrict table, int64_t L, float *restrict out, float *restrict scores,      \
                        int64_t G, const int64_t D, int64_t bs, int64_t row, float scale) {                         \
    float row_f[MAXD];  /* one K or V row widened to float (bfloat16 caches only) */                                \
    /* pass 1: scores[g, j] = q_g . k_j * scale (each K row read once for the G heads) */                          \
    int64_t j = 0;                                                                                                  \
    for (int64_t blk = 0; j < L; ++blk) {                                                                           \
        const T *kb = k_cache + table[blk] * bs * row;                                                              \
        const int64_t n = L - j < bs ? L - j : bs;                                                                  \
        if (j + n < L) prefetch(k_cache + table[blk + 1] * bs * row, bs * D * (int64_t)sizeof(T), 3);               \
        prefetch(v_cache + table[blk] * bs * row, n * D * (int64_t)sizeof(T), 2);  /* read in pass 2, from L2 */    \
        for (int64_t t = 0; t < n; ++t, ++j) {                                                                      \
            const float *kj = WIDEN(kb + t * D, row_f, D);  /* bfloat16: widened once for the G heads */            \
            for (int64_t g = 0; g < G; ++g) {                                                                       \
                const float *qg = q + g * D;                                                                        \
                float s = 0.f;                                                                                      \
                _Pragma("omp simd reduction(+:s)")                                                                  \
                for (int64_t d = 0; d < D; ++d) s += qg[d] * kj[d];                                                 \
                scores[g * L + j] = s * scale;                                                                      \
            }                                                                                                       \
        }                                                                                                           \
    }                                                                                                               \
    /* softmax over j, per g (max-subtracted, like SDPA) */                                                         \
    for (int64_t g = 0; g < G; ++g) {                                                                               \
        float *sg = scores + g * L;                                                                                 \
        float m = -INFINITY;                                                                                        \
        for (int64_t i = 0; i < L; ++i) m = sg[i] > m ? sg[i] : m;                                                  \
        float sum = 0.f;                                                                                            \
        _Pragma("omp simd reduction(+:sum)")                                                                        \
        for (int64_t i = 0; i < L; ++i) { sg[i] = exp_neg(sg[i] - m); sum += sg[i]; }                               \
        const float inv = 1.f / sum;                                                                                \
        _Pragma("omp simd")                                                                                         \
        for (int64_t i = 0; i < L; ++i) sg[i] *= inv;                                                               \
    }                                                                                                               \
    /* pass 2: out_g = sum_j p[g, j] v_j */                                                                         \
    float acc[MAXG * MAXD];                                                                                         \
    memset(acc, 0, sizeof(float) * G * D);                                                                          \
    j = 0;                                                                                                          \
    for (int64_t blk = 0; j < L; ++blk) {                                                                           \
        const T *vb = v_cache + table[blk] * bs * row;                                                              \
        const int64_t n = L - j < bs ? L - j : bs;                                                                  \
        for (int64_t t = 0; t < n; ++t, ++j) {                                                                      \
            const float *vj = WIDEN(vb + t * D, row_f, D);                                                          \
            for (int64_t g = 0; g < G; ++g) {                                                                       \
                const float p = scores[g * L + j];                                                                  \
                float *ag = acc + g * D;                                                                            \
                _Pragma("omp simd")                                                                                 \
                for (int64_t d = 0; d < D; ++d) ag[d] += p * vj[d];                                                 \
            }                                                                                                       \
        }                                                                                                           \
    }                                                                                                               \
    memcpy(out, acc, sizeof(float) * G * D);                                                                        \
}

/* One work item: sequence b, kv head h (its G query heads), from the batch's flat arrays. */
#define DEFINE_ITEM(NAME, ATTEND, T)                                                                                 \
static inline void NAME(const float *q, const T *k_cache, const T *v_cache, const int64_t *block_tables,            \
                        const int64_t *context_lens, float *out, float *scores, int64_t b, int64_t h, int64_t H,    \
                        int64_t KVH, int64_t D, int64_t bs, int64_t max_blocks, float scale) {                      \
    const int64_t G = H / KVH, off = (b * H + h * G) * D;                                                           \
    if (D == 64)  /* the common head size, with a constant trip count the compiler unrolls */                       \
        ATTEND(q + off, k_cache + h * bs * D, v_cache + h * bs * D, block_tables + b * max_blocks, context_lens[b], \
               out + off, scores, G, 64, bs, KVH * D, scale);                                                       \
    else                                                                                                            \
        ATTEND(q + off, k_cache + h * bs * D, v_cache + h * bs * D, block_tables + b * max_blocks, context_lens[b], \
               out + off, scores, G, D, bs, KVH * D, scale);                                                        \
}

/* Decode attention for sequences [b0, b1), one query token each. q [B, H, D] float32; k/v cache [num_blocks, KVH,
   bs, D] of T; block_tables [B, max_blocks]; context_lens [B]; out [B, H, D] float32. Returns 0, 1 (out of memory)
   or 2 (shape too big). */
#define DEFINE_ENTRY(NAME, ITEM, T)                                                                                \
int NAME(const float *q, const T *k_cache, const T *v_cache, const int64_t *block_tables,                           \
         const int64_t *context_lens, float *out, int64_t b0, int64_t b1, int64_t H, int64_t KVH,                   \
         int64_t D, int64_t bs, int64_t max_blocks, float scale) {                                                  \
    const int64_t G = H / KVH;                                                                                      \
    if (G > MAXG || D > MAXD) return 2;                                                                             \
    int64_t max_ctx = 1;                                                                                            \
    for (int64_t b = b0; b < b1; ++b) if (context_lens[b] > max_ctx) max_ctx = context_lens[b];                     \
    float *scores = (float *)malloc(sizeof(float) * (size_t)(G * max_ctx));                                         \
    if (!scores) return 1;                                                                                          \
    for (int64_t b = b0; b < b1; ++b)                                                                               \
        for (int64_t h = 0; h < KVH; ++h)                                                                           \
            ITEM(q, k_cache, v_cache, block_tables, context_lens, out, scores, b, h, H, KVH, D, bs, max_blocks,      \
                 scale);                                                                                            \
    free(scores);                                                                                                   \
    return 0;                                                                                                       \
}

DEFINE_ATTEND(attend_f32, float, widen_f32)
DEFINE_ATTEND(attend_bf16, uint16_t, widen_bf16)
DEFINE_ITEM(item_f32, attend_f32, float)
DEFINE_ITEM(item_bf16, attend_bf16, uint16_t)
DEFINE_ENTRY(paged_decode_attention, item_f32, float)
DEFINE_ENTRY(paged_decode_attention_bf16, item_bf16, uint16_t)

#ifdef _OPENMP
/* The whole batch on the OpenMP team of the calling thread: torch's own threads when this library resolves
   libgomp.so.1 to the copy torch loaded (see _build). Work items are (sequence, kv head) pairs, handed out one at a
   time (contexts differ in length). Same return codes; every thread takes part in the loop even if its scratch
   allocation failed (a worksharing loop must be met by the whole team). */
#define DEFINE_PARALLEL(NAME, ITEM, T)                                                                             \
int NAME(const float *q, const T *k_cache, const T *v_cache, const int64_t *block_tables,                           \
         const int64_t *context_lens, float *out, int64_t B, int64_t H, int64_t KVH,                                 \
         int64_t D, int64_t bs, int64_t max_blocks, float scale) {                                                  \
    const int64_t G = H / KVH;                                                                                      \
    if (G > MAXG || D > MAXD) return 2;                                                                             \
    int64_t max_ctx = 1;                                                                                            \
    for (int64_t b = 0; b < B; ++b) if (context_lens[b] > max_ctx) max_ctx = context_lens[b];                       \
    int failed = 0;                                                                                                 \
    _Pragma("omp parallel")                                                                                         \
    {                                                                                                               \
        float *scores = (float *)malloc(sizeof(float) * (size_t)(G * max_ctx));                                     \
        if (!scores) {                                                                                              \
            _Pragma("omp atomic write")                                                                             \
            failed = 1;                                                                                             \
        }                                                                                                           \
        _Pragma("omp for schedule(dynamic, 1)")                                                                     \
        for (int64_t w = 0; w < B * KVH; ++w) {                                                                     \
            if (!scores) continue;                                                                                  \
            ITEM(q, k_cache, v_cache, block_tables, context_lens, out, scores, w / KVH, w % KVH, H, KVH, D, bs,      \
                 max_blocks, scale);                                                                                \
        }                                                                                                           \
        free(scores);                                                                                               \
    }                                                                                                               \
    return failed;                                                                                                  \
}
DEFINE_PARALLEL(paged_decode_attention_omp, item_f32, float)
DEFINE_PARALLEL(paged_decode_attention_omp_bf16, item_bf16, uint16_t)
#endif
"""

KV_DTYPES = (torch.float32, torch.bfloat16)  # cache dtypes the kernel reads (q and out are always float32)
_FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c11"]
_lib: ctypes.CDLL | None = None
_tried = False
_lock = threading.Lock()
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


def _build() -> ctypes.CDLL | None:
    path = None
    if torch_uses_gnu_openmp():
        path = compile_library("paged_attention_omp", _SOURCE, [*_FLAGS, "-fopenmp"], libs=("-lm",))
    path = path or compile_library("paged_attention", _SOURCE, _FLAGS, libs=("-lm",))
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
            fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * n_ints + [ctypes.c_float]
    return lib


def _openmp() -> bool:
    """The loaded kernel has the OpenMP entry points (and tests have not switched them off)."""
    return _USE_OPENMP and hasattr(_lib, "paged_decode_attention_omp")


def parallel_backend() -> str:
    """How a batch is split over threads: "openmp" (torch's OpenMP team, inside the kernel) or "threads" (Python
    threads, one contiguous range of sequences each); "none" when the kernel is unavailable."""
    if not available():
        return "none"
    return "openmp" if _openmp() else "threads"


def available() -> bool:
    """True when the native kernel is built (or could be built now) and not disabled by AISD_NATIVE_KERNELS=0."""
    global _lib, _tried
    if not native_enabled():
        return False
    with _lock:
        if not _tried:
            _tried = True
            try:
                _lib = _build()
            except OSError as e:
                log.warning("native attention kernel unavailable (%s); using the pure-torch path", e)
                _lib = None
        return _lib is not None


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
    fn = _lib.paged_decode_attention_bf16 if bf16 else _lib.paged_decode_attention  # type: ignore[union-attr]
    if n > 1 and _openmp():
        # Python threads here would compete with torch's OpenMP workers, which keep spinning for a while after each
        # matmul: measured in the engine, the two-thread split then ran no faster than one thread (2.1 ms per layer
        # at 60 sequences x 211 tokens), on torch's team 1.0 ms
        omp = _lib.paged_decode_attention_omp_bf16 if bf16 else _lib.paged_decode_attention_omp  # type: ignore[union-attr]
        codes = [omp(*args, B, *rest)]
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
