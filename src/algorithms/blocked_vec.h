/*
 * The vector of a channel block and an output vector's last steps, shared
 * by the templates of the blocked convolutions (conv2d_blocked_kernels.h,
 * conv2d_blocked_winograd_kernels.h); included by them once per ISA, with
 *
 *     BK_ISA(name)  the name with the ISA's suffix
 *     BK_TARGET     the target attribute of its functions
 *     BK_LANES      floats per vector: the block width cb
 *     BK_SET1(x)    the float x in every lane (a broadcast, where (vec){0} + x
 *                   would add the zero first)
 */

/* (this header's macros, as defined for the previous ISA) */
#undef BK_VEC
#undef BK_LOAD
#undef BK_STORE
#undef BK_MAX
#undef BK_MIN

typedef float BK_ISA(vec) __attribute__((vector_size(BK_LANES * sizeof(float))));
/* memory as a vector: any float address (the caller's input, residual) */
typedef float BK_ISA(uvec)
    __attribute__((vector_size(BK_LANES * sizeof(float)), aligned(4), may_alias));

#define BK_VEC BK_ISA(vec)
#define BK_LOAD(p) ((BK_VEC)(*(const BK_ISA(uvec) *)(p)))
#define BK_STORE(p, v) (*(BK_ISA(uvec) *)(p) = (v))

/* max(a, b) and min(a, b) lane by lane, b where either is NaN (vmaxps,
 * vminps): with the bound as a, the NaN-keeping clamp of ai3_clamp_of
 * (x < lo ? lo : x) in one instruction, with the same bits (-0 stays -0). */
#if BK_LANES == 16
#define BK_MAX(a, b) ((BK_VEC)_mm512_max_ps((__m512)(a), (__m512)(b)))
#define BK_MIN(a, b) ((BK_VEC)_mm512_min_ps((__m512)(a), (__m512)(b)))
#else
#define BK_MAX(a, b) ((BK_VEC)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define BK_MIN(a, b) ((BK_VEC)_mm256_min_ps((__m256)(a), (__m256)(b)))
#endif

/* vexp.h's ai3_exp_clamped on a vector, step for step, so that its bits
 * are those of the scalar function (which the separate operations run). */
static inline __attribute__((always_inline)) BK_TARGET BK_VEC BK_ISA(exp_clamped)(BK_VEC x) {
    typedef uint32_t bits __attribute__((vector_size(BK_LANES * sizeof(float))));
    const BK_VEC xc = BK_MIN((BK_VEC)BK_SET1(89.0f), BK_MAX((BK_VEC)BK_SET1(-86.0f), x));
    const BK_VEC t = xc * 1.44269504f + 0x1.8p23f, n = t - 0x1.8p23f;
    const BK_VEC r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    const BK_VEC r2 = r * r, r4 = r2 * r2;
    const BK_VEC p = ((1.0f + r) + r2 * (0.5f + r * (1.0f / 6))) +
                     r4 * ((1.0f / 24 + r * (1.0f / 120)) + r2 * (1.0f / 720 + r * (1.0f / 5040)));
    const BK_VEC scale = (BK_VEC)(((bits)t - 0x4B400000u + 127u - 1u) << 23); /* 2^(n - 1) */
    return p * scale * 2;
}

/* activation.h's functions on a vector, step for step (the same bits). */
static inline __attribute__((always_inline)) BK_TARGET BK_VEC BK_ISA(act)(BK_VEC x,
                                                                          ai3_activation act) {
    const BK_VEC zero = {0}, six = (BK_VEC)BK_SET1(6.0f);
    switch (act) {
    case AI3_ACT_SIGMOID: return 1 / (1 + BK_ISA(exp_clamped)(-x));
    case AI3_ACT_SILU: return x / (1 + BK_ISA(exp_clamped)(-x));
    case AI3_ACT_HARDSIGMOID:
    case AI3_ACT_HARDSWISH: {
        const BK_VEC t = BK_MIN(six, BK_MAX(zero, x + 3));
        return act == AI3_ACT_HARDSWISH ? x * t / 6 : t / 6;
    }
    default: return x;
    }
}

/* An output vector made final: + bias, + residual (if res), then the
 * activation act: the clamp to [lo, hi] (NaN kept, as ai3_clamp_of), or one
 * of BK_ISA(act)'s; gelu's are left to ai3_epilogue_apply_f32 on the stored
 * output (they call libm). */
static inline __attribute__((always_inline)) BK_TARGET BK_VEC
BK_ISA(finish)(BK_VEC v, BK_VEC bias, const float *res, ai3_activation act, float lo, float hi) {
    v += bias;
    if (res) v += BK_LOAD(res);
    if (act == AI3_ACT_CLAMP) {
        v = BK_MIN((BK_VEC)BK_SET1(hi), BK_MAX((BK_VEC)BK_SET1(lo), v));
    }
    return BK_ISA(act)(v, act);
}
