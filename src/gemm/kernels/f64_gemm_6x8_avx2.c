/*
 * f64 GEMM micro-kernel, 6×8 tile, AVX2 + FMA (see kernels.h).
 *
 * 6 rows × 2 ymm = 12 accumulators, two B vectors and one broadcast: 15 of
 * the 16 registers. Edge tiles use the same code specialised for their row
 * count (and one vector per row when at most 4 columns are wanted); partial
 * columns go through a small buffer, as AVX2 has no cheap masked store.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"

#define MR 6
#define NR 8
#define LANES 4
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void tile(int64_t kc, const double *restrict a, const double *restrict b, int64_t ldb,
                        double *restrict c, int64_t ldc, const int mr, const int nv, int nr,
                        const double *bias_r, const double *bias_c, bool accumulate) {
    __m256d acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm256_setzero_pd();
    for (int64_t p = 0; p < kc; p++) {
        __m256d b0 = _mm256_loadu_pd(b);
        __m256d b1 = nv > 1 ? _mm256_loadu_pd(b + LANES) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m256d ai = _mm256_broadcast_sd(a + i);
            acc[i][0] = _mm256_fmadd_pd(ai, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = _mm256_fmadd_pd(ai, b1, acc[i][1]);
        }
        a += MR;
        b += ldb;
    }
    bool full = nr == LANES * nv;
    double cbuf[MR][NR], bbuf[NR] = {0};
    if (bias_c && !full) memcpy(bbuf, bias_c, sizeof(double) * (size_t)nr);
    const double *bcol = full ? bias_c : bbuf;
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        double *ci = c + i * ldc;
        if (!full) { /* work on a full-width copy of the row */
            if (accumulate) memcpy(cbuf[i], ci, sizeof(double) * (size_t)nr);
            ci = cbuf[i];
        }
        __m256d br = bias_r ? _mm256_set1_pd(bias_r[i]) : _mm256_setzero_pd();
        for (int v = 0; v < nv; v++) {
            __m256d r = _mm256_add_pd(acc[i][v], br);
            if (bias_c) r = _mm256_add_pd(r, _mm256_loadu_pd(bcol + LANES * v));
            if (accumulate) r = _mm256_add_pd(r, _mm256_loadu_pd(ci + LANES * v));
            _mm256_storeu_pd(ci + LANES * v, r);
        }
        if (!full) memcpy(c + i * ldc, cbuf[i], sizeof(double) * (size_t)nr);
    }
}

#define ROWS(nv)                                                                          \
    switch (mr) {                                                                         \
    case 1: tile(kc, a, b, ldb, c, ldc, 1, nv, nr, bias_r, bias_c, accumulate); break;   \
    case 2: tile(kc, a, b, ldb, c, ldc, 2, nv, nr, bias_r, bias_c, accumulate); break;   \
    case 3: tile(kc, a, b, ldb, c, ldc, 3, nv, nr, bias_r, bias_c, accumulate); break;   \
    case 4: tile(kc, a, b, ldb, c, ldc, 4, nv, nr, bias_r, bias_c, accumulate); break;   \
    case 5: tile(kc, a, b, ldb, c, ldc, 5, nv, nr, bias_r, bias_c, accumulate); break;   \
    default: tile(kc, a, b, ldb, c, ldc, 6, nv, nr, bias_r, bias_c, accumulate); break;  \
    }

void ai3_f64_gemm_6x8_avx2(int64_t kc, const double *a, const double *b, int64_t ldb, double *c,
                            int64_t ldc, int mr, int nr, const double *bias_r, const double *bias_c,
                            bool accumulate) {
    if (nr > NR / 2) {
        ROWS(2)
    } else {
        ROWS(1)
    }
}
