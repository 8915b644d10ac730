/*
 * Single-threaded matrix-multiply kernels over `real` (see runtime/real.h);
 * callers split the work across the thread pool. Row-major throughout.
 *
 *   ai3_gemm_nn:  C[M×N] (+)= A[M×K] · B[K×N]      B rows are contiguous
 *   ai3_gemm_nt:  C[M×N] (+)= A[M×K] · B[N×K]ᵀ     both operands contiguous along K
 *
 * lda/ldb/ldc are row strides in elements. With accumulate false C is
 * overwritten, otherwise added to.
 */
#ifndef AI3_GEMM_H
#define AI3_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "real.h"

void AI3_TYPED(ai3_gemm_nn)(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                            const real *B, int64_t ldb, real *C, int64_t ldc, bool accumulate);
void AI3_TYPED(ai3_gemm_nt)(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                            const real *B, int64_t ldb, real *C, int64_t ldc, bool accumulate);

#endif
