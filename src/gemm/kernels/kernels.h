/*
 * GEMM micro-kernels, one template per instruction-set family, written once
 * over `real` (runtime/real.h): gemm_<family>.h. CMake instantiates each for
 * float and double (ai3_gemm_kernel_<family>_f32, _f64), compiled with the
 * flags of the family (see CMakeLists.txt); gemm.c describes them in its
 * configs and picks one at run time by the ISA each config declares.
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

/* The signature of a micro-kernel over element type T, to declare or define it. */
#define AI3_GEMM_UKERNEL(name, T)                                                        \
    void name(int64_t kc, const T *a, const T *b, int64_t ldb, T *c, int64_t ldc, int mr, \
              int nr, const T *bias_r, const T *bias_c, bool accumulate)

#define AI3_DECLARE_GEMM_KERNELS(family)                    \
    AI3_GEMM_UKERNEL(ai3_gemm_kernel_##family##_f32, float); \
    AI3_GEMM_UKERNEL(ai3_gemm_kernel_##family##_f64, double)

AI3_DECLARE_GEMM_KERNELS(scalar);
#if defined(__x86_64__)
AI3_DECLARE_GEMM_KERNELS(avx2);
AI3_DECLARE_GEMM_KERNELS(avx512);
#endif

/* The column kernels (gemm_cols_<family>.h): the tile held as vectors
 * along the rows of C, MR = 2 vectors × NR columns (AVX-512: 32×14 floats,
 * 16×14 doubles; AVX2: 16×6 floats, 8×6 doubles), with B read in place at
 * row offsets:
 *
 *   C[i][j] = (accumulate ? C[i][j] : 0) + Σ_p a[p·MR + i] · b[off[p] + j]
 *             (+ bias_r[i] if bias_r)
 *
 * for i < mr <= MR, j < nr <= NR, C[i][j] at c[i·ldc + j]. a is a packed
 * A panel as above (MR rows, zero-padded); b[off[p] + j] is read for j < nr
 * only. off must have the kernel's AI3_GEMM_COLS_LOOKAHEAD_<family> entries
 * past its kc, of any value: they only say where to prefetch (far enough
 * ahead to hide L3's latency, about 80 cycles of FMAs). For conv2d: A the weights, b a
 * (padded) input, off[p] where input row p (channel, tap) starts, the
 * columns consecutive output positions. */
#define AI3_GEMM_COLS_NR_AVX512 14
#define AI3_GEMM_COLS_NR_AVX2 6
#define AI3_GEMM_COLS_LOOKAHEAD_AVX512 6
#define AI3_GEMM_COLS_LOOKAHEAD_AVX2 16
#define AI3_GEMM_COLS_UKERNEL(name, T)                                                        \
    void name(int64_t kc, const T *a, const T *b, const int64_t *off, T *c, int64_t ldc, int mr, \
              int nr, const T *bias_r, bool accumulate)
#if defined(__x86_64__)
AI3_GEMM_COLS_UKERNEL(ai3_gemm_cols_kernel_avx2_f32, float);
AI3_GEMM_COLS_UKERNEL(ai3_gemm_cols_kernel_avx2_f64, double);
AI3_GEMM_COLS_UKERNEL(ai3_gemm_cols_kernel_avx512_f32, float);
AI3_GEMM_COLS_UKERNEL(ai3_gemm_cols_kernel_avx512_f64, double);
#endif

#endif
