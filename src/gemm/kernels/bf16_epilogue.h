/*
 * The epilogue the bfloat16 micro-kernels share (gemm_avx512_bf16.c,
 * gemm_amx_bf16.c; both compiled with the AVX-512 BF16 flags): a row of
 * float32 sums gets the row's bias, the residual's row (read in C's type)
 * and the clamp (NaN kept), and is stored as float32 or rounded to
 * bfloat16 (to nearest even), 16 columns at a time; or, for a C that is
 * not row-major, element by element from a float32 copy of the tile.
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

/* 16 values of C's type at element off of p (the lanes in m), as float32. */
AI3_BF16_INLINE __m512 ai3_bf16_load(const void *p, int64_t off, __mmask16 m, bool full,
                                     bool bf16) {
    if (bf16) {
        const ai3_bf16 *q = (const ai3_bf16 *)p + off;
        __m256i h = full ? _mm256_loadu_si256((const __m256i *)q) : _mm256_maskz_loadu_epi16(m, q);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    const float *q = (const float *)p + off;
    return full ? _mm512_loadu_ps(q) : _mm512_maskz_loadu_ps(m, q);
}

/* acc + bias (br) + the residual at element off (if any), clamped to
 * [lo, hi] if e has a clamp, stored as ai3_bf16_store. */
AI3_BF16_INLINE void ai3_bf16_finish(__m512 acc, __m512 br, __m512 lo, __m512 hi,
                                     const ai3_gemm_bf16_epilogue *e, void *c, int64_t off,
                                     __mmask16 m, bool full, bool out_bf16) {
    __m512 r = _mm512_add_ps(acc, br);
    if (e->residual) r = _mm512_add_ps(r, ai3_bf16_load(e->residual, off, m, full, out_bf16));
    if (e->clamp) r = _mm512_min_ps(hi, _mm512_max_ps(lo, r)); /* NaN kept */
    ai3_bf16_store(r, c, off, m, full, out_bf16);
}

/* The clamp's bounds as vectors (zeros without one). */
AI3_BF16_INLINE void ai3_bf16_bounds(const ai3_gemm_bf16_epilogue *e, __m512 *lo, __m512 *hi) {
    *lo = _mm512_set1_ps(e->clamp ? e->clamp[0] : 0);
    *hi = _mm512_set1_ps(e->clamp ? e->clamp[1] : 0);
}

/* The mr×nr tile t (row i at t + i·ldt) into a C with any strides. */
AI3_BF16_INLINE void ai3_bf16_finish_strided(const float *t, int ldt, void *c, int64_t rsc,
                                             int64_t csc, int mr, int nr,
                                             const ai3_gemm_bf16_epilogue *e, bool out_bf16) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const int64_t off = i * rsc + j * csc;
            float x = t[i * ldt + j] + (e->bias_row ? e->bias_row[i] : 0);
            if (e->residual)
                x += out_bf16 ? ai3_bf16_to_float(((const ai3_bf16 *)e->residual)[off])
                              : ((const float *)e->residual)[off];
            /* NaN kept */
            if (e->clamp) x = x < e->clamp[0] ? e->clamp[0] : x > e->clamp[1] ? e->clamp[1] : x;
            if (out_bf16) ((ai3_bf16 *)c)[off] = ai3_float_to_bf16(x);
            else ((float *)c)[off] = x;
        }
}

#endif
