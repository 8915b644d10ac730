/*
 * GEMM micro-kernels, one per file, named <dtype>_gemm_<MR>x<NR>_<isa>.
 * Each is compiled once, with the instruction-set flags its name says (see
 * CMakeLists.txt), and chosen at run time by gemm.c.
 *
 * Every kernel has the same contract. For an mr×nr tile of C (1 <= mr <= MR,
 * 1 <= nr <= NR):
 *
 *   C[i][j] = (accumulate ? C[i][j] : 0) + Σ_p a[p·MR + i] · b[p·ldb + j]
 *             (+ bias_r[i] if bias_r) (+ bias_c[j] if bias_c)
 *
 * for i < mr, j < nr, p < kc, where C[i][j] is c[i·ldc + j].
 *   a   a packed A micro-panel: MR values per step of k, rows >= mr ignored;
 *   b   NR values per step of k, ldb apart (ldb = NR for a packed strip, the
 *       row stride of B when it is read in place). All NR lanes must be
 *       readable when nr > NR/2 (a packed strip is zero-padded); when
 *       nr <= NR/2 only the first NR/2 are read.
 *   c   only the mr×nr tile is read (if accumulate) and written;
 *   kc  may be 0 (then C gets only the accumulate term and the biases).
 * Pointers need no particular alignment.
 */
#ifndef AI3_GEMM_KERNELS_H
#define AI3_GEMM_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#define AI3_DECLARE_GEMM_UKERNEL(name, real)                                                \
    void name(int64_t kc, const real *a, const real *b, int64_t ldb, real *c, int64_t ldc, \
              int mr, int nr, const real *bias_r, const real *bias_c, bool accumulate)

AI3_DECLARE_GEMM_UKERNEL(ai3_f32_gemm_4x8_scalar, float);
AI3_DECLARE_GEMM_UKERNEL(ai3_f64_gemm_4x4_scalar, double);
AI3_DECLARE_GEMM_UKERNEL(ai3_f32_gemm_6x16_avx2, float);
AI3_DECLARE_GEMM_UKERNEL(ai3_f64_gemm_6x8_avx2, double);
AI3_DECLARE_GEMM_UKERNEL(ai3_f32_gemm_14x32_avx512, float);
AI3_DECLARE_GEMM_UKERNEL(ai3_f64_gemm_14x16_avx512, double);

#endif
