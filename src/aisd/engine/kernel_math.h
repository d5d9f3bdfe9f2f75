/* Scalar helpers shared by the engine's C sources (paged_attention.c, fused_ops.c); the Python loaders prepend this
   file to each source before compiling, so a library's cache key covers it. */
#include <math.h>
#include <stdint.h>

/* bfloat16 is the top half of a float32: widening is an exact 16-bit shift (type punning through a union). */
static inline float bf16_f32(uint16_t h) {
    union { uint32_t u; float f; } x = { .u = (uint32_t)h << 16 };
    return x.f;
}

/* float32 -> bfloat16, round to nearest even, NaN made quiet (0x7FC0): c10::BFloat16's round_to_nearest_even, so
   values stored here equal torch's ``.to(torch.bfloat16)``. */
static inline uint16_t f32_bf16(float f) {
    union { float f; uint32_t u; } x = { .f = f };
    if ((x.u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return (uint16_t)((x.u + 0x7fffu + ((x.u >> 16) & 1u)) >> 16);
}

/* exp(x) for x in [-87, 88] (clamped; below -87 the result would be subnormal, weight ~1e-38): 2^n p(r) with
   x = n ln2 + r, |r| <= ln2 / 2, p the degree-6 Taylor polynomial (relative error < 2e-7; glibc's expf < 1 ulp).
   Branch-free, and n is rounded by adding and subtracting 1.5 x 2^23 rather than by a roundf call, so loops over it
   vectorise (a scalar expf per softmax score cost ~15% of the attention kernel). */
static inline float exp_poly(float x) {
    x = x < -87.f ? -87.f : (x > 88.f ? 88.f : x);
    const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
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
