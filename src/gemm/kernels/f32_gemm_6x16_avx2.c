/*
 * f32 GEMM micro-kernel, 6×16 tile, AVX2 + FMA (see kernels.h).
 *
 * 6 rows × 2 ymm = 12 accumulators, two B vectors and one broadcast: 15 of
 * the 16 registers. Edge tiles use the same code specialised for their row
 * count (and one vector per row when at most 8 columns are wanted); partial
 * columns go through a small buffer, as AVX2 has no cheap masked store.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"

#define MR 6
#define NR 16
#define LANES 8
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void tile(int64_t kc, const float *restrict a, const float *restrict b, int64_t ldb,
                        float *restrict c, int64_t ldc, const int mr, const int nv, int nr,
                        const float *bias_r, const float *bias_c, bool accumulate) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = nv > 1 ? _mm256_loadu_ps(b + LANES) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += ldb;
    }
    bool full = nr == LANES * nv;
    float cbuf[MR][NR], bbuf[NR] = {0};
    if (bias_c && !full) memcpy(bbuf, bias_c, sizeof(float) * (size_t)nr);
    const float *bcol = full ? bias_c : bbuf;
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (!full) { /* work on a full-width copy of the row */
            if (accumulate) memcpy(cbuf[i], ci, sizeof(float) * (size_t)nr);
            ci = cbuf[i];
        }
        __m256 br = bias_r ? _mm256_set1_ps(bias_r[i]) : _mm256_setzero_ps();
        for (int v = 0; v < nv; v++) {
            __m256 r = _mm256_add_ps(acc[i][v], br);
            if (bias_c) r = _mm256_add_ps(r, _mm256_loadu_ps(bcol + LANES * v));
            if (accumulate) r = _mm256_add_ps(r, _mm256_loadu_ps(ci + LANES * v));
            _mm256_storeu_ps(ci + LANES * v, r);
        }
        if (!full) memcpy(c + i * ldc, cbuf[i], sizeof(float) * (size_t)nr);
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

void ai3_f32_gemm_6x16_avx2(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                            int64_t ldc, int mr, int nr, const float *bias_r, const float *bias_c,
                            bool accumulate) {
    if (nr > NR / 2) {
        ROWS(2)
    } else {
        ROWS(1)
    }
}
