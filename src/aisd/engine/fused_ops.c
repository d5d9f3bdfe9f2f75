/* Fused elementwise steps of the Llama forward (aisd.engine.fused_ops): each replaces a chain of 4-8 small torch ops
   (each a pass over memory plus a dispatch and an OpenMP fork) with one pass. Compiled with -ffp-contract=off, so
   a * b + c is a rounded multiply then a rounded add, the float32 operations torch's eager ops do.

   kernel_math.h (bfloat16 conversions, exp) is prepended by the loader. */

/* Rows are split over ``nthreads`` threads (the caller passes torch.get_num_threads()) of the calling thread's
   OpenMP team - torch's, see cpu_kernels.torch_uses_gnu_openmp - only when the work pays for waking it (a few
   microseconds): from 64K elements for the memory-bound passes, 16K for SiLU (an exp and a division per element,
   ~0.5 ns each on one core). */
#define PARALLEL_MIN 65536
#define PARALLEL_MIN_SILU 16384

/* The attention input of one layer. qkv [T, (H + 2 KVH) * D] is the fused projection's output (float32, or bfloat16
   when in_bf16); bias [(H + 2 KVH) * D] float32 or NULL. For every row t: out[t] = qkv[t] + bias as float32, the
   first H + KVH heads (q and k) rotated by rotate-half RoPE at position pos[t] (x * cos + rotate_half(x) * sin,
   cos / sin [npos, D]), and the k and v heads also stored in the caches ([num_blocks, KVH, bs, D], float32 or
   bfloat16 when cache_bf16) at (slot_blocks[t], slot_offsets[t]). Returns 1, touching nothing, when a position is
   outside the tables (npos rows) or a slot outside the cache (num_blocks x bs), else 0. */
int rope_qkv_store(const void *qkv, int in_bf16, const float *bias, const float *cos_t, const float *sin_t,
                   const int64_t *pos, float *out, void *k_cache, void *v_cache, int cache_bf16,
                   const int64_t *slot_blocks, const int64_t *slot_offsets, int64_t T, int64_t H, int64_t KVH,
                   int64_t D, int64_t bs, int64_t npos, int64_t num_blocks, int nthreads) {
    (void)nthreads;  /* used by the pragma when built with -fopenmp */
    const int64_t W = (H + 2 * KVH) * D, half = D / 2;
    for (int64_t t = 0; t < T; ++t)
        if (pos[t] < 0 || pos[t] >= npos || slot_blocks[t] < 0 || slot_blocks[t] >= num_blocks ||
            slot_offsets[t] < 0 || slot_offsets[t] >= bs)
            return 1;
    #pragma omp parallel for if (T * W >= PARALLEL_MIN) num_threads(nthreads)
    for (int64_t t = 0; t < T; ++t) {
        float *o = out + t * W;
        if (in_bf16) {
            const uint16_t *x = (const uint16_t *)qkv + t * W;
            #pragma omp simd
            for (int64_t j = 0; j < W; ++j) o[j] = bf16_f32(x[j]);
        } else {
            const float *x = (const float *)qkv + t * W;
            #pragma omp simd
            for (int64_t j = 0; j < W; ++j) o[j] = x[j];
        }
        if (bias) {
            #pragma omp simd
            for (int64_t j = 0; j < W; ++j) o[j] = o[j] + bias[j];
        }
        const float *c = cos_t + pos[t] * D, *s = sin_t + pos[t] * D;
        for (int64_t h = 0; h < H + KVH; ++h) {
            float *x = o + h * D;
            float lo[128];  /* the first half, read after it is overwritten (D <= 256) */
            for (int64_t d = 0; d < half; ++d) lo[d] = x[d];
            #pragma omp simd
            for (int64_t d = 0; d < half; ++d) {  /* rotate_half(x)[d] = -x[d + half] */
                const float a = x[d] * c[d], b = -x[d + half] * s[d];
                x[d] = a + b;
            }
            #pragma omp simd
            for (int64_t d = half; d < D; ++d) {  /* rotate_half(x)[d] = x[d - half] */
                const float a = x[d] * c[d], b = lo[d - half] * s[d];
                x[d] = a + b;
            }
        }
        const int64_t base = (slot_blocks[t] * KVH * bs + slot_offsets[t]) * D;  /* row (blk, 0, off) */
        for (int64_t h = 0; h < KVH; ++h) {
            const float *k = o + (H + h) * D, *v = o + (H + KVH + h) * D;
            const int64_t at = base + h * bs * D;
            if (cache_bf16) {
                uint16_t *kc = (uint16_t *)k_cache + at, *vc = (uint16_t *)v_cache + at;
                for (int64_t d = 0; d < D; ++d) { kc[d] = f32_bf16(k[d]); vc[d] = f32_bf16(v[d]); }
            } else {
                float *kc = (float *)k_cache + at, *vc = (float *)v_cache + at;
                for (int64_t d = 0; d < D; ++d) { kc[d] = k[d]; vc[d] = v[d]; }
            }
        }
    }    return 0;
}

/* The residual add and the next RMSNorm (Zhang & Sennrich 2019) in one pass. x [T, N] float32 (the residual
   stream, updated in place); delta [T, N] (bfloat16 when delta_bf16, else float32) or NULL; when out is not NULL:
   out[t] = bfloat16(w * (x[t] * rsqrt(mean(x[t]^2) + eps))), the order of transformers' LlamaRMSNorm in float32. */
void add_rms_norm(float *x, const void *delta, int delta_bf16, const float *w, float eps, uint16_t *out, int64_t T,
                  int64_t N, int nthreads) {
    (void)nthreads;
    #pragma omp parallel for if (T * N >= PARALLEL_MIN) num_threads(nthreads)
    for (int64_t t = 0; t < T; ++t) {
        float *xr = x + t * N;
        if (delta && delta_bf16) {
            const uint16_t *dr = (const uint16_t *)delta + t * N;
            #pragma omp simd
            for (int64_t j = 0; j < N; ++j) xr[j] = xr[j] + bf16_f32(dr[j]);
        } else if (delta) {
            const float *dr = (const float *)delta + t * N;
            #pragma omp simd
            for (int64_t j = 0; j < N; ++j) xr[j] = xr[j] + dr[j];
        }
        if (!out) continue;
        float ss = 0.f;
        #pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < N; ++j) ss += xr[j] * xr[j];
        const float r = 1.f / sqrtf(ss / (float)N + eps);
        uint16_t *o = out + t * N;
        #pragma omp simd
        for (int64_t j = 0; j < N; ++j) o[j] = f32_bf16(w[j] * (xr[j] * r));
    }
}

/* SwiGLU's gate (Shazeer 2020): gate_up [T, 2I] bfloat16 (the fused gate / up projection) -> out [T, I] bfloat16,
   out = silu(gate) * up = gate / (1 + exp(-gate)) * up, in float32. */
void silu_mul_bf16(const uint16_t *gate_up, uint16_t *out, int64_t T, int64_t I, int nthreads) {
    (void)nthreads;
    #pragma omp parallel for if (T * I >= PARALLEL_MIN_SILU) num_threads(nthreads)
    for (int64_t t = 0; t < T; ++t) {
        const uint16_t *g = gate_up + t * 2 * I, *u = g + I;
        uint16_t *o = out + t * I;
        #pragma omp simd
        for (int64_t i = 0; i < I; ++i) {
            const float gf = bf16_f32(g[i]);
            o[i] = f32_bf16(gf / (1.f + exp_poly(-gf)) * bf16_f32(u[i]));
        }
    }
}
