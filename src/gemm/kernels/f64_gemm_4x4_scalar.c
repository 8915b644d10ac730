/*
 * f64 GEMM micro-kernel, 4×4 tile, plain C (see kernels.h): the fallback
 * for CPUs without AVX2. The accumulator tile is a local array the compiler
 * keeps in registers (SSE on x86-64); edge tiles compute the full tile (or
 * its left half when at most NR/2 columns are wanted) and store their part.
 */
#include "kernels.h"

#define MR 4
#define NR 4
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void tile(int64_t kc, const double *restrict a, const double *restrict b, int64_t ldb,
                        double *restrict c, int64_t ldc, int mr, const int nb, int nr,
                        const double *bias_r, const double *bias_c, bool accumulate) {
    double acc[MR][NR] = {{0}};
    for (int64_t p = 0; p < kc; p++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < nb; j++) acc[i][j] += a[i] * b[j];
        a += MR;
        b += ldb;
    }
    for (int i = 0; i < mr; i++) {
        double *ci = c + i * ldc;
        for (int j = 0; j < nr; j++) {
            double r = acc[i][j];
            if (bias_r) r += bias_r[i];
            if (bias_c) r += bias_c[j];
            ci[j] = accumulate ? ci[j] + r : r;
        }
    }
}

void ai3_f64_gemm_4x4_scalar(int64_t kc, const double *a, const double *b, int64_t ldb, double *c,
                             int64_t ldc, int mr, int nr, const double *bias_r,
                             const double *bias_c, bool accumulate) {
    if (nr > NR / 2)
        tile(kc, a, b, ldb, c, ldc, mr, NR, nr, bias_r, bias_c, accumulate);
    else
        tile(kc, a, b, ldb, c, ldc, mr, NR / 2, nr, bias_r, bias_c, accumulate);
}
