/*
 * What the AVX-512 micro-kernel templates (gemm_avx512.h, gemm_cols_avx512.h)
 * share over `real`: the dtype's vector, lane mask and intrinsics (V(fmadd)
 * is _mm512_fmadd_ps or _mm512_fmadd_pd), and its lanes per vector.
 */
#ifndef AI3_AVX512_REAL_H
#define AI3_AVX512_REAL_H

#include <immintrin.h>

#include "real.h"

#if defined(AI3_REAL_DOUBLE)
typedef __m512d vec;
typedef __mmask8 vmask;
#define V(op) _mm512_##op##_pd
#else
typedef __m512 vec;
typedef __mmask16 vmask;
#define V(op) _mm512_##op##_ps
#endif

#define LANES ((int)(64 / sizeof(real)))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

#endif
