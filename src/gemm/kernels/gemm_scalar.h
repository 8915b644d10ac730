/*
 * GEMM micro-kernel, plain C (see kernels.h): 4×8 for float, 4×4 for
 * double, the fallback for CPUs without AVX2. A template over `real`,
 * instantiated once per dtype (CMakeLists.txt).
 *
 * The accumulator tile is a local array the compiler keeps in registers
 * (SSE on x86-64: 32 bytes a row); edge tiles compute the full tile (or its
 * left half when at most NR/2 columns are wanted) and store their part.
 */
#include "kernels.h"
#include "real.h"

#define MR 4
#define NR ((int)(32 / sizeof(real)))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void tile(int64_t kc, const real *restrict a, const real *restrict b, int64_t ldb,
                        real *restrict c, int64_t ldc, int mr, const int nb, int nr,
                        const real *bias_r, const real *bias_c, bool accumulate) {
    real acc[MR][NR] = {{0}};
    for (int64_t p = 0; p < kc; p++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < nb; j++) acc[i][j] += a[i] * b[j];
        a += MR;
        b += ldb;
    }
    for (int i = 0; i < mr; i++) {
        real *ci = c + i * ldc;
        for (int j = 0; j < nr; j++) {
            real r = acc[i][j];
            if (bias_r) r += bias_r[i];
            if (bias_c) r += bias_c[j];
            ci[j] = accumulate ? ci[j] + r : r;
        }
    }
}

AI3_GEMM_UKERNEL(AI3_TYPED(ai3_gemm_kernel_scalar), real) {
    if (nr > NR / 2)
        tile(kc, a, b, ldb, c, ldc, mr, NR, nr, bias_r, bias_c, accumulate);
    else
        tile(kc, a, b, ldb, c, ldc, mr, NR / 2, nr, bias_r, bias_c, accumulate);
}
