/*
 * f64 GEMM micro-kernel, 14×16 tile, AVX-512F (see kernels.h).
 *
 * The tile is 14 rows × 2 zmm = 28 accumulators; with the two B vectors and
 * one broadcast of A that is 31 of the 32 registers. Each step of k loads
 * two B vectors and does 14 broadcast-FMAs per vector. Smaller tiles (the
 * edges of C) use the same code specialised for their row count, so an edge
 * of 3 rows costs 3 rows of FMAs, and a tile at most 8 wide uses one
 * vector per row. Columns past nr are masked off.
 */
#include <immintrin.h>

#include "kernels.h"

#define MR 14
#define NR 16
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void tile(int64_t kc, const double *restrict a, const double *restrict b, int64_t ldb,
                        double *restrict c, int64_t ldc, const int mr, const int nv, int nr,
                        const double *bias_r, const double *bias_c, bool accumulate) {
    __m512d acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_pd();
    for (int64_t p = 0; p < kc; p++) {
        __m512d b0 = _mm512_loadu_pd(b);
        __m512d b1 = nv > 1 ? _mm512_loadu_pd(b + 8) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < mr; i++) {
            __m512d ai = _mm512_set1_pd(a[i]);
            acc[i][0] = _mm512_fmadd_pd(ai, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = _mm512_fmadd_pd(ai, b1, acc[i][1]);
        }
        a += MR;
        b += ldb;
    }
    /* Lanes to store per vector. */
    __mmask8 m[2];
    m[0] = nr >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << nr) - 1);
    m[1] = nr >= 16 ? (__mmask8)0xFF : nr > 8 ? (__mmask8)((1u << (nr - 8)) - 1) : 0;
    bool full = nr == 8 * nv;
    __m512d bc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    if (bias_c)
        for (int v = 0; v < nv; v++) bc[v] = _mm512_maskz_loadu_pd(m[v], bias_c + 8 * v);
#pragma GCC unroll 14
    for (int i = 0; i < mr; i++) {
        double *ci = c + i * ldc;
        __m512d br = bias_r ? _mm512_set1_pd(bias_r[i]) : _mm512_setzero_pd();
        for (int v = 0; v < nv; v++) {
            __m512d r = _mm512_add_pd(acc[i][v], _mm512_add_pd(br, bc[v]));
            if (full) {
                if (accumulate) r = _mm512_add_pd(r, _mm512_loadu_pd(ci + 8 * v));
                _mm512_storeu_pd(ci + 8 * v, r);
            } else {
                if (accumulate) r = _mm512_add_pd(r, _mm512_maskz_loadu_pd(m[v], ci + 8 * v));
                _mm512_mask_storeu_pd(ci + 8 * v, m[v], r);
            }
        }
    }
}

#define ROWS(nv)                                                                           \
    switch (mr) {                                                                          \
    case 1: tile(kc, a, b, ldb, c, ldc, 1, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 2: tile(kc, a, b, ldb, c, ldc, 2, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 3: tile(kc, a, b, ldb, c, ldc, 3, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 4: tile(kc, a, b, ldb, c, ldc, 4, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 5: tile(kc, a, b, ldb, c, ldc, 5, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 6: tile(kc, a, b, ldb, c, ldc, 6, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 7: tile(kc, a, b, ldb, c, ldc, 7, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 8: tile(kc, a, b, ldb, c, ldc, 8, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 9: tile(kc, a, b, ldb, c, ldc, 9, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 10: tile(kc, a, b, ldb, c, ldc, 10, nv, nr, bias_r, bias_c, accumulate); break;  \
    case 11: tile(kc, a, b, ldb, c, ldc, 11, nv, nr, bias_r, bias_c, accumulate); break;  \
    case 12: tile(kc, a, b, ldb, c, ldc, 12, nv, nr, bias_r, bias_c, accumulate); break;  \
    case 13: tile(kc, a, b, ldb, c, ldc, 13, nv, nr, bias_r, bias_c, accumulate); break;  \
    default: tile(kc, a, b, ldb, c, ldc, 14, nv, nr, bias_r, bias_c, accumulate); break;  \
    }

void ai3_f64_gemm_14x16_avx512(int64_t kc, const double *a, const double *b, int64_t ldb, double *c,
                               int64_t ldc, int mr, int nr, const double *bias_r,
                               const double *bias_c, bool accumulate) {
    if (nr > NR / 2) {
        ROWS(2)
    } else {
        ROWS(1)
    }
}
