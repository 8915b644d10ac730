/*
 * The column micro-kernel, AVX-512F (see kernels.h): a tile of C held as
 * vectors along its rows, 2 zmm of rows × 14 columns (32×14 for float,
 * 16×14 for double), with B read in place at row offsets. A template over
 * `real`, instantiated once per dtype with the AVX-512 flags.
 *
 * Each step of k loads two vectors of the A panel (as the row kernel loads
 * B) and broadcasts the 14 values of B's row, which lie side by side in
 * one or two cache lines: 28 FMAs from 16 loads. The A panel (the layer's
 * weights) comes from L2, and so, for a conv input read in place, does
 * much of B (its rows are a channel plane apart): both lines of A's step
 * and B's row are prefetched a few steps ahead. The finished tile is
 * transposed in registers into rows of C. Tiles of fewer columns use the
 * same code specialised for their column count, so a column costs its own
 * FMAs only; a tile of at most one vector of rows uses one vector per
 * column.
 */
#include "avx512_real.h"
#include "kernels.h"

#define MR (2 * LANES)
#define NR AI3_GEMM_COLS_NR_AVX512
/* Steps of k between a prefetch of A (or of B's row) and its use. */
#define PREFETCH_STEPS AI3_GEMM_COLS_LOOKAHEAD_AVX512

/* The last step of a transpose: the 4×4 transpose of the 128-bit lanes of
 * x[m], x[m + s], x[m + 2s], x[m + 3s] into r[m], r[m + s], r[m + 2s],
 * r[m + 3s] (lane L of r[m + i·s] is lane i of x[m + L·s]). */
#if defined(AI3_REAL_DOUBLE)
#define SHUFFLE_LANES _mm512_shuffle_f64x2
#else
#define SHUFFLE_LANES _mm512_shuffle_f32x4
#endif
ALWAYS_INLINE void transpose_lanes(const vec *x, int m, int s, vec *r) {
    const vec v0 = SHUFFLE_LANES(x[m], x[m + s], 0x44); /* lanes 0, 1 of x0, then of x1 */
    const vec v1 = SHUFFLE_LANES(x[m], x[m + s], 0xEE); /* lanes 2, 3 */
    const vec v2 = SHUFFLE_LANES(x[m + 2 * s], x[m + 3 * s], 0x44);
    const vec v3 = SHUFFLE_LANES(x[m + 2 * s], x[m + 3 * s], 0xEE);
    r[m] = SHUFFLE_LANES(v0, v2, 0x88);
    r[m + s] = SHUFFLE_LANES(v0, v2, 0xDD);
    r[m + 2 * s] = SHUFFLE_LANES(v1, v3, 0x88);
    r[m + 3 * s] = SHUFFLE_LANES(v1, v3, 0xDD);
}

/* Rows [0, rows) of the LANES × n block x[0..n) (vector j = column j, lane i
 * = row i) to c[i·ldc + j], j < n, added to what is there if acc. */
#if defined(AI3_REAL_DOUBLE)
ALWAYS_INLINE void store_rows(const vec *x, const int n, int rows, real *c, int64_t ldc,
                              bool acc) {
    /* 8×8 blocks: pairs of columns interleaved, then 128-bit lanes. */
    for (int j0 = 0; j0 < n; j0 += 8) {
        vec t[8], u[8];
        for (int j = 0; j < 8; j++) t[j] = j0 + j < n ? x[j0 + j] : V(setzero)();
        for (int j = 0; j < 8; j += 2) {
            u[j] = V(unpacklo)(t[j], t[j + 1]);     /* lane L: rows 2L of cols j, j+1 */
            u[j + 1] = V(unpackhi)(t[j], t[j + 1]); /* rows 2L+1 */
        }
        vec r[8];
        for (int m = 0; m < 2; m++) transpose_lanes(u, m, 2, r);
        const int cols = n - j0 < 8 ? n - j0 : 8;
        const vmask keep = (vmask)((1u << cols) - 1);
        for (int i = 0; i < rows; i++) {
            if (acc) r[i] = V(add)(r[i], V(maskz_loadu)(keep, c + i * ldc + j0));
            V(mask_storeu)(c + i * ldc + j0, keep, r[i]);
        }
    }
}
#else
ALWAYS_INLINE void store_rows(const vec *x, const int n, int rows, real *c, int64_t ldc,
                              bool acc) {
    /* 16×16: 32-bit pairs, 64-bit pairs, then a 4×4 transpose of 128-bit
     * lanes; columns past n are zeros the compiler drops. */
    vec t[16], u[16], r[16];
    for (int j = 0; j < 16; j++) t[j] = j < n ? x[j] : V(setzero)();
    for (int j = 0; j < 16; j += 2) {
        u[j] = V(unpacklo)(t[j], t[j + 1]);
        u[j + 1] = V(unpackhi)(t[j], t[j + 1]);
    }
    for (int j = 0; j < 16; j += 4) { /* t[j + m]: lane L holds rows 4L + m of columns j..j+3 */
        __m512d a = _mm512_castps_pd(u[j]), b = _mm512_castps_pd(u[j + 1]);
        __m512d e = _mm512_castps_pd(u[j + 2]), f = _mm512_castps_pd(u[j + 3]);
        t[j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, e));
        t[j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, e));
        t[j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, f));
        t[j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, f));
    }
    for (int m = 0; m < 4; m++) transpose_lanes(t, m, 4, r);
    const vmask keep = (vmask)((1u << n) - 1);
    for (int i = 0; i < rows; i++) {
        if (acc) r[i] = V(add)(r[i], V(maskz_loadu)(keep, c + i * ldc));
        V(mask_storeu)(c + i * ldc, keep, r[i]);
    }
}
#endif

ALWAYS_INLINE void tile(int64_t kc, const real *restrict a, const real *restrict b,
                        const int64_t *restrict off, real *restrict c, int64_t ldc, int mr,
                        const int nv, const int nr, const real *bias_r, bool accumulate) {
    vec acc[2][NR];
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++)
#pragma GCC unroll 14
        for (int j = 0; j < nr; j++) acc[v][j] = V(setzero)();
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        _mm_prefetch((const char *)(a + PREFETCH_STEPS * MR), _MM_HINT_T0);
        if (nv > 1) _mm_prefetch((const char *)(a + PREFETCH_STEPS * MR + LANES), _MM_HINT_T0);
        vec a0 = V(loadu)(a);
        vec a1 = nv > 1 ? V(loadu)(a + LANES) : a0;
        const real *restrict bp = b + off[p];
        _mm_prefetch((const char *)(b + off[p + PREFETCH_STEPS]), _MM_HINT_T0);
#pragma GCC unroll 14
        for (int j = 0; j < nr; j++) {
            vec bj = V(set1)(bp[j]);
            acc[0][j] = V(fmadd)(a0, bj, acc[0][j]);
            if (nv > 1) acc[1][j] = V(fmadd)(a1, bj, acc[1][j]);
        }
        a += MR;
    }
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++) {
        const int rows = mr - v * LANES < LANES ? mr - v * LANES : LANES;
        if (bias_r) {
            const vec bias = V(maskz_loadu)((vmask)((1u << rows) - 1), bias_r + v * LANES);
#pragma GCC unroll 14
            for (int j = 0; j < nr; j++) acc[v][j] = V(add)(acc[v][j], bias);
        }
        store_rows(acc[v], nr, rows, c + v * LANES * ldc, ldc, accumulate);
    }
}

#define COLS_KERNEL AI3_TYPED(ai3_gemm_cols_kernel_avx512)
#include "cols_entry.h"
