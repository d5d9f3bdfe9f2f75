/* Paged decode attention (aisd.engine.cpu_kernels); kernel_math.h is prepended by the loader. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define MAXG 16  /* query heads per kv head */
#define MAXD 256 /* head_dim */

/* A cache row as floats: float32 rows are used in place; bfloat16 ones - the top half of a float32, so widening is
   an exact 16-bit shift - are widened into ``buf`` once, then read by each of the G query heads (1.15x faster than
   widening inside each head's dot product). */
static inline const float *widen_f32(const float *row, float *buf, int64_t D) { (void)buf; (void)D; return row; }
static inline const float *widen_bf16(const uint16_t *restrict row, float *restrict buf, int64_t D) {
    #pragma omp simd
    for (int64_t d = 0; d < D; ++d) {
        buf[d] = bf16_f32(row[d]);
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
        for (int64_t i = 0; i < L; ++i) { sg[i] = exp_poly(sg[i] - m); sum += sg[i]; }                               \
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

#if defined(__AVX512F__)
/* ---- AVX-512 path for head_dim 64 or 128 and block sizes that are multiples of 16 (the defaults) ----
   The scalar-loop kernel above spends most of its time on one horizontal sum per (token, query head) in pass 1 and on
   reloading its accumulators from memory in pass 2 (~90 ns per K/V row pair per thread, against ~10 ns of loads and
   FMAs). Here pass 1 takes 16 tokens at a time: one 16-lane partial sum per token, then a 4-level shuffle tree turns
   the 16 vectors into one vector of 16 scores (hsum16). Pass 2 keeps the G x D accumulators in registers (GC query
   heads x NV vectors at a time, GC * NV <= 16 of the 32 zmm registers). D = 16 NV. */
#include <immintrin.h>
#define AI static inline __attribute__((always_inline))

/* hsum16's shuffle tree leaves the sum of input slot 4p + L in output lane 4L + p (a 4 x 4 transpose), so slot s is
   fed token 4 (s % 4) + s / 4 and the output lanes come out in token order. */
static const int TILE_ORDER[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

/* v[16] -> lane s of the result = sum of the 16 lanes of v[TILE_ORDER[s]]: fold 512 -> 256 -> 128 bits across
   pairs of vectors (shuffle_f32x4), then 128 -> 64 -> 32 within 128-bit lanes (shuffle_ps); 15 adds, 30 shuffles. */
AI __m512 hsum16(const __m512 *v) {
    __m512 w[8], x[4], y[2];
    for (int i = 0; i < 8; ++i)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; ++i)
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; ++i)
        y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xDD));
}

/* exp_poly on 16 lanes: same polynomial; round-to-nearest-even n (as exp_poly: r stays
   within ln2 / 2 either way) and scalef for the 2^n. */
AI __m512 exp512_neg(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.f / 720.f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, n);
}

AI __m512 load16_f32(const float *p) { return _mm512_loadu_ps(p); }
AI __m512 load16_bf16(const uint16_t *p) {  /* 16 bfloat16 -> float32: zero-extend to 32 bits, shift into the top */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
/* A 16-token tile of K rows as floats: float32 in place; bfloat16 widened once into buf for the G query heads. */
AI const float *tile_f32(const float *rows, float *buf, int64_t n) { (void)buf; (void)n; return rows; }
AI const float *tile_bf16(const uint16_t *rows, float *buf, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(buf + i, load16_bf16(rows + i));
    return buf;
}

/* Pass 1 for one tile and one query head: the 16 dot products q . k_t (rows [16, 16 NV] floats, q as NV vectors). */
AI __m512 tile_scores(const __m512 *qv, const float *rows, const int NV) {
    __m512 acc[16];
    _Pragma("GCC unroll 16")
    for (int s = 0; s < 16; ++s) {
        const float *r = rows + TILE_ORDER[s] * 16 * NV;
        __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(r));
        _Pragma("GCC unroll 8")
        for (int c = 1; c < NV; ++c) a = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(r + 16 * c), a);
        acc[s] = a;
    }
    return hsum16(acc);
}

/* In-place softmax of one head's L scores; returns 1 / sum (pass 2 scales its output by it). */
AI float softmax512(float *s, int64_t L) {
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < L; i += 16) {
        const __mmask16 m = L - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (L - i)) - 1);
        mv = _mm512_mask_max_ps(mv, m, mv, _mm512_maskz_loadu_ps(m, s + i));
    }
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < L; i += 16) {
        const __mmask16 m = L - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (L - i)) - 1);
        const __m512 e = exp512_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), mx));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return 1.f / _mm512_reduce_add_ps(sum);
}

/* Pass 2 for GC query heads: out_g = inv_g * sum_j p[g, j] v_j, the GC x NV accumulators in registers. */
#define DEFINE_PV(NAME, T, LOAD16)                                                                                   \
AI void NAME(const T *restrict v_cache, const int64_t *restrict table, int64_t L, const float *restrict p,          \
             const float *inv, float *restrict out, int64_t bs, int64_t row, const int NV, const int GC) {          \
    __m512 acc[4][8];                                                                                               \
    _Pragma("GCC unroll 4")                                                                                         \
    for (int g = 0; g < GC; ++g)                                                                                    \
        _Pragma("GCC unroll 8")                                                                                     \
        for (int c = 0; c < NV; ++c) acc[g][c] = _mm512_setzero_ps();                                               \
    for (int64_t j0 = 0, blk = 0; j0 < L; j0 += bs, ++blk) {                                                         \
        const T *vb = v_cache + table[blk] * bs * row;                                                              \
        const int64_t n = L - j0 < bs ? L - j0 : bs;                                                                \
        for (int64_t t = 0; t < n; ++t) {                                                                           \
            __m512 v[8];                                                                                            \
            _Pragma("GCC unroll 8")                                                                                 \
            for (int c = 0; c < NV; ++c) v[c] = LOAD16(vb + t * 16 * NV + 16 * c);                                   \
            _Pragma("GCC unroll 4")                                                                                 \
            for (int g = 0; g < GC; ++g) {                                                                          \
                const __m512 pg = _mm512_set1_ps(p[g * L + j0 + t]);                                                \
                _Pragma("GCC unroll 8")                                                                             \
                for (int c = 0; c < NV; ++c) acc[g][c] = _mm512_fmadd_ps(pg, v[c], acc[g][c]);                      \
            }                                                                                                       \
        }                                                                                                           \
    }                                                                                                               \
    _Pragma("GCC unroll 4")                                                                                         \
    for (int g = 0; g < GC; ++g)                                                                                    \
        _Pragma("GCC unroll 8")                                                                                     \
        for (int c = 0; c < NV; ++c)                                                                                \
            _mm512_storeu_ps(out + g * 16 * NV + 16 * c, _mm512_mul_ps(acc[g][c], _mm512_set1_ps(inv[g])));          \
}

/* One (sequence, kv head), as DEFINE_ATTEND, for D = 16 NV and bs % 16 == 0. */
#define DEFINE_ATTEND512(NAME, T, TILE, PV)                                                                          \
AI void NAME(const float *restrict q, const T *restrict k_cache, const T *restrict v_cache,                         \
             const int64_t *restrict table, int64_t L, float *restrict out, float *restrict scores, int64_t G,     \
             int64_t bs, int64_t row, float scale, const int NV) {                                                  \
    const int64_t D = 16 * NV;                                                                                      \
    float buf[16 * 128];  /* one bfloat16 tile widened (unused for float32) */                                      \
    const __m512 vscale = _mm512_set1_ps(scale);                                                                    \
    for (int64_t j = 0; j < L; j += 16) {                                                                           \
        const int64_t blk = j / bs, r0 = j % bs;                                                                    \
        const T *kb = k_cache + table[blk] * bs * row;                                                              \
        if (r0 == 0) {  /* K two blocks ahead (one block of compute is shorter than a miss), V for pass 2 */          \
            if (j == 0 && bs < L) prefetch(k_cache + table[1] * bs * row, bs * D * (int64_t)sizeof(T), 3);          \
            if (j + 2 * bs < L) prefetch(k_cache + table[blk + 2] * bs * row, bs * D * (int64_t)sizeof(T), 3);      \
            const int64_t nv = L - j < bs ? L - j : bs;                                                             \
            prefetch(v_cache + table[blk] * bs * row, nv * D * (int64_t)sizeof(T), 2);                              \
        }                                                                                                           \
        /* the whole 16-row tile is read even past L: the rows exist (bs % 16 == 0); their lanes are not stored */  \
        const float *rows = TILE(kb + r0 * D, buf, 16 * D);                                                         \
        const __mmask16 m = L - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (L - j)) - 1);                    \
        for (int64_t g = 0; g < G; ++g) {                                                                           \
            __m512 qv[8];                                                                                           \
            _Pragma("GCC unroll 8")                                                                                 \
            for (int c = 0; c < NV; ++c) qv[c] = _mm512_loadu_ps(q + g * D + 16 * c);                               \
            _mm512_mask_storeu_ps(scores + g * L + j, m, _mm512_mul_ps(tile_scores(qv, rows, NV), vscale));          \
        }                                                                                                           \
    }                                                                                                               \
    float inv[MAXG];                                                                                                \
    for (int64_t g = 0; g < G; ++g) inv[g] = softmax512(scores + g * L, L);                                         \
    const int GC = 16 / NV;  /* query heads per pass over V */                                                      \
    for (int64_t g0 = 0; g0 < G; g0 += GC) {                                                                        \
        const float *p = scores + g0 * L;                                                                           \
        float *o = out + g0 * D;                                                                                    \
        switch (G - g0 < GC ? G - g0 : GC) {  /* constant head counts, so the accumulators stay in registers */     \
            case 1: PV(v_cache, table, L, p, inv + g0, o, bs, row, NV, 1); break;                                   \
            case 2: PV(v_cache, table, L, p, inv + g0, o, bs, row, NV, 2); break;                                   \
            case 3: PV(v_cache, table, L, p, inv + g0, o, bs, row, NV, 3); break;                                   \
            default: PV(v_cache, table, L, p, inv + g0, o, bs, row, NV, 4); break;                                  \
        }                                                                                                           \
    }                                                                                                               \
}

DEFINE_PV(pv_f32, float, load16_f32)
DEFINE_PV(pv_bf16, uint16_t, load16_bf16)
DEFINE_ATTEND512(attend512_f32, float, tile_f32, pv_f32)
DEFINE_ATTEND512(attend512_bf16, uint16_t, tile_bf16, pv_bf16)
#define HAVE_ATTEND512 1
#else
#define HAVE_ATTEND512 0
#define attend512_f32(...) ((void)0)
#define attend512_bf16(...) ((void)0)
#endif

/* One work item: sequence b, kv head h (its G query heads), from the batch's flat arrays. */
#define DEFINE_ITEM(NAME, ATTEND, ATTEND512, T)                                                                      \
static inline void NAME(const float *q, const T *k_cache, const T *v_cache, const int64_t *block_tables,            \
                        const int64_t *context_lens, float *out, float *scores, int64_t b, int64_t h, int64_t H,    \
                        int64_t KVH, int64_t D, int64_t bs, int64_t max_blocks, float scale) {                      \
    const int64_t G = H / KVH, off = (b * H + h * G) * D;                                                           \
    const float *qb = q + off;                                                                                      \
    const T *kc = k_cache + h * bs * D, *vc = v_cache + h * bs * D;                                                 \
    const int64_t *table = block_tables + b * max_blocks, L = context_lens[b];                                      \
    if (HAVE_ATTEND512 && bs % 16 == 0 && D == 64)                                                                  \
        ATTEND512(qb, kc, vc, table, L, out + off, scores, G, bs, KVH * D, scale, 4);                               \
    else if (HAVE_ATTEND512 && bs % 16 == 0 && D == 128)                                                            \
        ATTEND512(qb, kc, vc, table, L, out + off, scores, G, bs, KVH * D, scale, 8);                               \
    else if (D == 64)  /* the common head size, with a constant trip count the compiler unrolls */                  \
        ATTEND(qb, kc, vc, table, L, out + off, scores, G, 64, bs, KVH * D, scale);                                 \
    else                                                                                                            \
        ATTEND(qb, kc, vc, table, L, out + off, scores, G, D, bs, KVH * D, scale);                                  \
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
DEFINE_ITEM(item_f32, attend_f32, attend512_f32, float)
DEFINE_ITEM(item_bf16, attend_bf16, attend512_bf16, uint16_t)
DEFINE_ENTRY(paged_decode_attention, item_f32, float)
DEFINE_ENTRY(paged_decode_attention_bf16, item_bf16, uint16_t)

#ifdef _OPENMP
/* The whole batch on the OpenMP team of the calling thread: torch's own threads when this library resolves
   libgomp.so.1 to the copy torch loaded (see _build), ``nthreads`` of them (torch.get_num_threads(), at most B).
   Work items are (sequence, kv head) pairs, handed out one at a time (contexts differ in length). Same return
   codes; every thread takes part in the loop even if its scratch allocation failed (a worksharing loop must be met
   by the whole team). */
#define DEFINE_PARALLEL(NAME, ITEM, T)                                                                             \
int NAME(const float *q, const T *k_cache, const T *v_cache, const int64_t *block_tables,                           \
         const int64_t *context_lens, float *out, int64_t B, int64_t H, int64_t KVH,                                 \
         int64_t D, int64_t bs, int64_t max_blocks, float scale, int64_t nthreads) {                                \
    const int64_t G = H / KVH;                                                                                      \
    if (G > MAXG || D > MAXD) return 2;                                                                             \
    int64_t max_ctx = 1;                                                                                            \
    for (int64_t b = 0; b < B; ++b) if (context_lens[b] > max_ctx) max_ctx = context_lens[b];                       \
    int failed = 0;                                                                                                 \
    _Pragma("omp parallel num_threads(nthreads)")                                                                   \
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

/* 512 when the AVX-512 path was compiled in (-march=native on a CPU with AVX-512F), else 0. */
int paged_attention_simd_bits(void) { return HAVE_ATTEND512 ? 512 : 0; }
