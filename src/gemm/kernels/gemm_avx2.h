/*
 * GEMM micro-kernel, 6 rows × 2 ymm, AVX2 + FMA (see kernels.h): 6×16 for
 * float, 6×8 for double. A template over `real`, instantiated once per dtype
 * with the AVX2 flags (CMakeLists.txt).
 *
 * 6 rows × 2 ymm = 12 accumulators, two B vectors and one broadcast: 15 of
 * the 16 registers. Edge tiles use the same code specialised for their row
 * count (and one vector per row when at most one vector of columns is
 * wanted); partial columns go through a small buffer, as AVX2 has no cheap
 * masked store.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "real.h"

/* The dtype's vector and intrinsics: V(fmadd) is _mm256_fmadd_ps or
 * _mm256_fmadd_pd. */
#if defined(AI3_REAL_DOUBLE)
typedef __m256d vec;
#define V(op) _mm256_##op##_pd
#define BROADCAST _mm256_broadcast_sd
#else
typedef __m256 vec;
#define V(op) _mm256_##op##_ps
#define BROADCAST _mm256_broadcast_ss
#endif

#define LANES ((int)(32 / sizeof(real)))
#define MR 6
#define NR (2 * LANES)
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void tile(int64_t kc, const real *restrict a, const real *restrict b, int64_t ldb,
                        real *restrict c, int64_t ldc, const int mr, const int nv, int nr,
                        const real *bias_r, const real *bias_c, bool accumulate) {
    vec acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = V(setzero)();
    for (int64_t p = 0; p < kc; p++) {
        vec b0 = V(loadu)(b);
        vec b1 = nv > 1 ? V(loadu)(b + LANES) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            vec ai = BROADCAST(a + i);
            acc[i][0] = V(fmadd)(ai, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = V(fmadd)(ai, b1, acc[i][1]);
        }
        a += MR;
        b += ldb;
    }
    bool full = nr == LANES * nv;
    real cbuf[MR][NR], bbuf[NR] = {0};
    if (bias_c && !full) memcpy(bbuf, bias_c, sizeof(real) * (size_t)nr);
    const real *bcol = full ? bias_c : bbuf;
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        real *ci = c + i * ldc;
        if (!full) { /* work on a full-width copy of the row */
            if (accumulate) memcpy(cbuf[i], ci, sizeof(real) * (size_t)nr);
            ci = cbuf[i];
        }
        vec br = bias_r ? V(set1)(bias_r[i]) : V(setzero)();
        for (int v = 0; v < nv; v++) {
            vec r = V(add)(acc[i][v], br);
            if (bias_c) r = V(add)(r, V(loadu)(bcol + LANES * v));
            if (accumulate) r = V(add)(r, V(loadu)(ci + LANES * v));
            V(storeu)(ci + LANES * v, r);
        }
        if (!full) memcpy(c + i * ldc, cbuf[i], sizeof(real) * (size_t)nr);
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

AI3_GEMM_UKERNEL(AI3_TYPED(ai3_gemm_kernel_avx2), real) {
    if (nr > NR / 2) {
        ROWS(2)
    } else {
        ROWS(1)
    }
}
