/*
 * Single-threaded GEMM over `real`, in the layered style of Goto's
 * algorithm: C is computed in NC-column slabs, K in KC-deep slices; each
 * slice of B is packed into NR-wide column panels and each MC-row block of A
 * into MR-tall row panels, and an MR×NR register tile of C is accumulated
 * by a micro-kernel that streams the two packed panels.
 *
 * The micro-kernel is written with GCC's generic 64-byte vector type (not
 * intrinsics): under AI3_MULTIVERSION each row of the accumulator tile is
 * one AVX-512 register (two AVX2 ones, four SSE ones), so the tile lives in
 * registers and every step is MR broadcast-FMAs.
 *
 * gemm_nt packs B transposed and reuses the same kernel when A has enough
 * rows to pay for packing; for few rows (linear with a small batch) it
 * computes dot products along K directly, keeping a vector of partial sums
 * per output so the reduction vectorises without reassociating the sum.
 *
 * The packing buffers are allocated per call; if that fails the unpacked
 * paths compute the same result more slowly (these functions return
 * nothing, so they cannot report it).
 */
#include "gemm.h"

#include <string.h>

#include "internal.h"

#define MR 6
#define NR ((int)(64 / sizeof(real)))
#define KC 256
#define MC (MR * 16)
#define NC (NR * 32)

/* Below this many multiply-adds packing does not pay; use a plain loop. */
#define SMALL_GEMM (32 * 32 * 32)
/* gemm_nt with fewer rows of A than this uses dot products. */
#define NT_DOT_ROWS 16

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Packs rows [0, m) × columns [0, kc) of A (row stride lda) into MR-row
 * panels, element (i, p) of a panel at p·MR + i; rows past m are zero. */
ALWAYS_INLINE void pack_a(int64_t m, int64_t kc, const real *A, int64_t lda, real *restrict dst) {
    for (int64_t i0 = 0; i0 < m; i0 += MR) {
        int64_t mr = AI3_MIN(MR, m - i0);
        for (int64_t i = 0; i < mr; i++) {
            const real *a = A + (i0 + i) * lda;
            for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = a[p];
        }
        for (int64_t i = mr; i < MR; i++)
            for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = 0;
        dst += MR * kc;
    }
}

/* Packs the kc×n block of B, stored row-major (k, n) with row stride ldb,
 * into NR-column panels, element (p, j) of a panel at p·NR + j; columns
 * past n are zero. */
ALWAYS_INLINE void pack_b_n(int64_t kc, int64_t n, const real *B, int64_t ldb, real *restrict dst) {
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
        int64_t nr = AI3_MIN(NR, n - j0);
        if (nr == NR) {
            for (int64_t p = 0; p < kc; p++) {
                const real *b = B + p * ldb + j0;
                for (int j = 0; j < NR; j++) dst[p * NR + j] = b[j];
            }
        } else {
            for (int64_t p = 0; p < kc; p++) {
                const real *b = B + p * ldb + j0;
                for (int64_t j = 0; j < nr; j++) dst[p * NR + j] = b[j];
                for (int64_t j = nr; j < NR; j++) dst[p * NR + j] = 0;
            }
        }
        dst += NR * kc;
    }
}

/* The same panels from B stored transposed, (n, k) with row stride ldb. */
ALWAYS_INLINE void pack_b_t(int64_t kc, int64_t n, const real *B, int64_t ldb, real *restrict dst) {
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
        int64_t nr = AI3_MIN(NR, n - j0);
        for (int64_t j = 0; j < nr; j++) {
            const real *b = B + (j0 + j) * ldb;
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = b[p];
        }
        for (int64_t j = nr; j < NR; j++)
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = 0;
        dst += NR * kc;
    }
}

/* A row of the register tile: 64 bytes, one AVX-512 register, two AVX2
 * ones. GCC's generic vectors (not intrinsics) keep the tile in registers
 * in every clone; plain loops get vectorised across the wrong axis. */
typedef real vreal __attribute__((vector_size(64)));
typedef real vreal_u __attribute__((vector_size(64), aligned(sizeof(real))));

/* C[mr×nr] (+)= Apanel · Bpanel over kc steps; b is 64-byte aligned. Full
 * tiles are written straight from the accumulators, edge tiles only their
 * valid part. */
ALWAYS_INLINE void micro_kernel(int64_t kc, const real *restrict a, const real *restrict b,
                                real *restrict C, int64_t ldc, int64_t mr, int64_t nr, bool add) {
    vreal acc[MR];
    for (int i = 0; i < MR; i++) acc[i] = (vreal){0};
    for (int64_t p = 0; p < kc; p++) {
        vreal bv = *(const vreal *)(b + p * NR);
        const real *ap = a + p * MR;
        for (int i = 0; i < MR; i++) acc[i] += ap[i] * bv;
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
            vreal_u *c = (vreal_u *)(C + i * ldc);
            *c = add ? *c + acc[i] : acc[i];
        }
    } else {
        for (int64_t i = 0; i < mr; i++) {
            real *c = C + i * ldc;
            for (int64_t j = 0; j < nr; j++) c[j] = add ? c[j] + acc[i][j] : acc[i][j];
        }
    }
}

/* The blocked driver; `b_transposed` selects how B is read. `work` comes
 * from gemm_workspace. */
AI3_MULTIVERSION
static void gemm_packed(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                        const real *B, int64_t ldb, bool b_transposed, real *C, int64_t ldc,
                        bool accumulate, real *work) {
    /* pb first: its panels must stay 64-byte aligned. */
    real *pb = work;
    real *pa = work + AI3_MIN(K, KC) * ((AI3_MIN(N, NC) + NR - 1) / NR * NR);
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = AI3_MIN(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = AI3_MIN(KC, K - pc);
            bool add = accumulate || pc > 0;
            if (b_transposed)
                pack_b_t(kc, nc, B + jc * ldb + pc, ldb, pb);
            else
                pack_b_n(kc, nc, B + pc * ldb + jc, ldb, pb);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = AI3_MIN(MC, M - ic);
                pack_a(mc, kc, A + ic * lda + pc, lda, pa);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const real *bpanel = pb + jr * kc;
                    int64_t nr = AI3_MIN(NR, nc - jr);
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        micro_kernel(kc, pa + ir * kc, bpanel, C + (ic + ir) * ldc + jc + jr,
                                     ldc, AI3_MIN(MR, mc - ir), nr, add);
                    }
                }
            }
        }
    }
}

/* Unblocked C (+)= A·B for small problems (and if no workspace can be had):
 * the inner loop runs along a row of B and C, so it vectorises. */
AI3_MULTIVERSION
static void gemm_nn_simple(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                           const real *restrict B, int64_t ldb, real *restrict C, int64_t ldc,
                           bool accumulate) {
    for (int64_t i = 0; i < M; i++) {
        real *restrict c = C + i * ldc;
        if (!accumulate)
            for (int64_t j = 0; j < N; j++) c[j] = 0;
        for (int64_t p = 0; p < K; p++) {
            real a = A[i * lda + p];
            const real *restrict b = B + p * ldb;
            for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

/* Dot products are taken over K in slices this long: the few rows of A stay
 * in L2 while B (the weight, for linear) streams from memory once. */
#define NT_KC 16384

/* C (+)= A·Bᵀ as dot products for a few rows of A: a 4×4 block of outputs
 * at a time, each with NR partial sums (one vector) that are summed at the
 * end of every K slice. Four rows of B are used against every row of A
 * before moving on. Edge blocks repeat the last row of A or B and drop the
 * extra results. */
AI3_MULTIVERSION
static void gemm_nt_dot(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                        const real *B, int64_t ldb, real *C, int64_t ldc, bool accumulate) {
    for (int64_t pc = 0; pc < K; pc += NT_KC) {
        int64_t kc = AI3_MIN(NT_KC, K - pc);
        int64_t kv = kc - kc % NR;
        bool add = accumulate || pc > 0;
        for (int64_t j0 = 0; j0 < N; j0 += 4) {
            const real *b[4];
            for (int r = 0; r < 4; r++) b[r] = B + AI3_MIN(j0 + r, N - 1) * ldb + pc;
            for (int64_t i0 = 0; i0 < M; i0 += 4) {
                const real *a[4];
                for (int r = 0; r < 4; r++) a[r] = A + AI3_MIN(i0 + r, M - 1) * lda + pc;
                vreal s[4][4];
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++) s[r][q] = (vreal){0};
                for (int64_t p = 0; p < kv; p += NR) {
                    vreal bv[4];
                    for (int q = 0; q < 4; q++) bv[q] = *(const vreal_u *)(b[q] + p);
                    for (int r = 0; r < 4; r++) {
                        vreal av = *(const vreal_u *)(a[r] + p);
                        for (int q = 0; q < 4; q++) s[r][q] += av * bv[q];
                    }
                }
                int64_t mi = AI3_MIN(4, M - i0), nj = AI3_MIN(4, N - j0);
                for (int r = 0; r < mi; r++) {
                    for (int q = 0; q < nj; q++) {
                        real t = 0;
                        for (int l = 0; l < NR; l++) t += s[r][q][l];
                        for (int64_t p = kv; p < kc; p++) t += a[r][p] * b[q][p];
                        real *c = C + (i0 + r) * ldc + j0 + q;
                        *c = add ? *c + t : t;
                    }
                }
            }
        }
    }
}

/* Room for gemm_packed's packed blocks of an M×N×K product: MC·KC + KC·NC
 * elements at most, less for small problems. */
static real *gemm_workspace(int64_t M, int64_t N, int64_t K) {
    int64_t mc = (AI3_MIN(M, MC) + MR - 1) / MR * MR;
    int64_t nc = (AI3_MIN(N, NC) + NR - 1) / NR * NR;
    int64_t kc = AI3_MIN(K, KC);
    return ai3_alloc(sizeof(real) * (size_t)(mc * kc + kc * nc));
}

void AI3_TYPED(ai3_gemm_nn)(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                            const real *B, int64_t ldb, real *C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || M * N * K < SMALL_GEMM) {
        gemm_nn_simple(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
        return;
    }
    real *work = gemm_workspace(M, N, K);
    if (!work) {
        gemm_nn_simple(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
        return;
    }
    gemm_packed(M, N, K, A, lda, B, ldb, false, C, ldc, accumulate, work);
    ai3_free(work);
}

void AI3_TYPED(ai3_gemm_nt)(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                            const real *B, int64_t ldb, real *C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum */
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, sizeof(real) * (size_t)N);
        return;
    }
    real *work = NULL;
    if (M >= NT_DOT_ROWS && M * N * K >= SMALL_GEMM) work = gemm_workspace(M, N, K);
    if (!work) {
        gemm_nt_dot(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
        return;
    }
    gemm_packed(M, N, K, A, lda, B, ldb, true, C, ldc, accumulate, work);
    ai3_free(work);
}
