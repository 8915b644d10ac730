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
#undef BK_MASK
#undef BK_LOAD
#undef BK_STORE

typedef float BK_ISA(vec) __attribute__((vector_size(BK_LANES * sizeof(float))));
/* memory as a vector: any float address (the caller's input, residual) */
typedef float BK_ISA(uvec)
    __attribute__((vector_size(BK_LANES * sizeof(float)), aligned(4), may_alias));
typedef int32_t BK_ISA(mask) __attribute__((vector_size(BK_LANES * sizeof(float))));

#define BK_VEC BK_ISA(vec)
#define BK_MASK BK_ISA(mask)
#define BK_LOAD(p) ((BK_VEC)(*(const BK_ISA(uvec) *)(p)))
#define BK_STORE(p, v) (*(BK_ISA(uvec) *)(p) = (v))

/* An output vector made final: + bias, + residual (if res), then, if clamp,
 * the clamp to [lo, hi] (NaN kept, as ai3_clamp_of). */
static inline __attribute__((always_inline)) BK_TARGET BK_VEC
BK_ISA(finish)(BK_VEC v, BK_VEC bias, const float *res, bool clamp, float lo, float hi) {
    v += bias;
    if (res) v += BK_LOAD(res);
    if (clamp) {
        const BK_VEC vlo = (BK_VEC)BK_SET1(lo), vhi = (BK_VEC)BK_SET1(hi);
        const BK_MASK below = v < vlo;
        v = (BK_VEC)(((BK_MASK)vlo & below) | ((BK_MASK)v & ~below));
        const BK_MASK above = v > vhi;
        v = (BK_VEC)(((BK_MASK)vhi & above) | ((BK_MASK)v & ~above));
    }
    return v;
}
