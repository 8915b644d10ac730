/*
 * The epilogue the bfloat16 micro-kernels share (gemm_avx512_bf16.c,
 * gemm_amx_bf16.c; both compiled with the AVX-512 BF16 flags): a row of
 * float32 sums gets the row's bias, the clamp (NaN kept) and is stored as
 * float32 or rounded to bfloat16 (to nearest even), 16 columns at a time;
 * or, for a C that is not row-major, element by element from a float32
 * copy of the tile.
 */
#ifndef AI3_GEMM_BF16_EPILOGUE_H
#define AI3_GEMM_BF16_EPILOGUE_H

#include <immintrin.h>

#include "gemm_bf16.h"

#define AI3_BF16_INLINE static inline __attribute__((always_inline))

/* The lanes of vector v (0 or 1) of a row nr columns wide. */
AI3_BF16_INLINE __mmask16 ai3_bf16_lanes(int nr, int v) {
    const int n = nr - 16 * v;
    return n >= 16 ? 0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
}

/* Stores 16 float32 results (the lanes in m, all of them if full) at
 * element off of c. */
AI3_BF16_INLINE void ai3_bf16_store(__m512 r, void *c, int64_t off, __mmask16 m, bool full,
                                    bool out_bf16) {
    if (out_bf16) {
        __m256i h = (__m256i)_mm512_cvtneps_pbh(r);
        ai3_bf16 *p = (ai3_bf16 *)c + off;
        if (full) _mm256_storeu_si256((__m256i *)p, h);
        else _mm256_mask_storeu_epi16(p, m, h);
    } else {
        float *p = (float *)c + off;
        if (full) _mm512_storeu_ps(p, r);
        else _mm512_mask_storeu_ps(p, m, r);
    }
}

/* acc + bias (br), clamped to [lo, hi] if clamp, stored as ai3_bf16_store. */
AI3_BF16_INLINE void ai3_bf16_finish(__m512 acc, __m512 br, __m512 lo, __m512 hi,
                                     const float *clamp, void *c, int64_t off, __mmask16 m,
                                     bool full, bool out_bf16) {
    __m512 r = _mm512_add_ps(acc, br);
    if (clamp) r = _mm512_min_ps(hi, _mm512_max_ps(lo, r)); /* NaN kept */
    ai3_bf16_store(r, c, off, m, full, out_bf16);
}

/* The mr×nr tile t (row i at t + i·ldt) into a C with any strides. */
AI3_BF16_INLINE void ai3_bf16_finish_strided(const float *t, int ldt, void *c, int64_t rsc,
                                             int64_t csc, int mr, int nr, const float *bias_r,
                                             const float *clamp, bool out_bf16) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float x = t[i * ldt + j] + (bias_r ? bias_r[i] : 0);
            /* NaN kept */
            if (clamp) x = x < clamp[0] ? clamp[0] : x > clamp[1] ? clamp[1] : x;
            int64_t off = i * rsc + j * csc;
            if (out_bf16) ((ai3_bf16 *)c)[off] = ai3_float_to_bf16(x);
            else ((float *)c)[off] = x;
        }
}

#endif
