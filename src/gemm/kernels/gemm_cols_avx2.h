/*
 * The column micro-kernel, AVX2 + FMA (see kernels.h): a tile of C held as
 * vectors along its rows, 2 ymm of rows × 6 columns (16×6 for float, 8×6
 * for double), with B read in place at row offsets. A template over `real`,
 * instantiated once per dtype with the AVX2 flags.
 *
 * 2 × 6 = 12 accumulators, the two A vectors and one broadcast: 15 of the
 * 16 registers. Each step of k loads the A panel's two vectors and
 * broadcasts the 6 values of B's row: 12 FMAs from 8 loads, as the row
 * kernel (gemm_avx2.h). A's next lines and B's row are prefetched a few
 * steps ahead, as in gemm_cols_avx512.h. The finished tile is transposed in
 * registers into rows of C, each stored in pieces of 4, 2 and 1 values
 * (AVX2's masked stores are slow on some cores). Tiles of fewer columns use
 * the same code specialised for their column count, and a tile of at most
 * one vector of rows one vector per column.
 */
#include <immintrin.h>

#include "kernels.h"
#include "real.h"

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
#define MR (2 * LANES)
#define NR AI3_GEMM_COLS_NR_AVX2
/* Steps of k between a prefetch of A (or of B's row) and its use. */
#define PREFETCH_STEPS AI3_GEMM_COLS_LOOKAHEAD_AVX2
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The first n (< 8 floats, or < 4 doubles) values of r at c. */
#if defined(AI3_REAL_DOUBLE)
ALWAYS_INLINE void store_part(real *c, vec r, int n) {
    __m128d lo = _mm256_castpd256_pd128(r);
    if (n >= 2) {
        _mm_storeu_pd(c, lo);
        c += 2;
        n -= 2;
        lo = _mm256_extractf128_pd(r, 1);
    }
    if (n) _mm_store_sd(c, lo);
}
#else
ALWAYS_INLINE void store_part(real *c, vec r, int n) {
    __m128 lo = _mm256_castps256_ps128(r);
    if (n >= 4) {
        _mm_storeu_ps(c, lo);
        c += 4;
        n -= 4;
        lo = _mm256_extractf128_ps(r, 1);
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)c, lo);
        c += 2;
        n -= 2;
        lo = _mm_movehl_ps(lo, lo);
    }
    if (n) _mm_store_ss(c, lo);
}
#endif

/* The first n (<= 8 floats, or <= 4 doubles) values at c, zeros after them
 * (a masked load: unlike the masked store, fast on every AVX2 core). */
#if defined(AI3_REAL_DOUBLE)
ALWAYS_INLINE vec load_part(const real *c, int n) {
    return _mm256_maskload_pd(c, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n),
                                                   _mm256_setr_epi64x(0, 1, 2, 3)));
}
#else
ALWAYS_INLINE vec load_part(const real *c, int n) {
    return _mm256_maskload_ps(c, _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}
#endif

/* Rows [0, rows) of the LANES × n block x[0..n) (vector j = column j, lane
 * i = row i) to c[i·ldc + j], j < n, added to what is there if acc; columns
 * past n are zeros the compiler drops. */
#if defined(AI3_REAL_DOUBLE)
ALWAYS_INLINE void store_rows(const vec *x, const int n, int rows, real *c, int64_t ldc,
                              bool acc) {
    for (int j0 = 0; j0 < n; j0 += 4) { /* 4×4 blocks */
        vec t[4];
        for (int j = 0; j < 4; j++) t[j] = j0 + j < n ? x[j0 + j] : V(setzero)();
        const vec u0 = V(unpacklo)(t[0], t[1]), u1 = V(unpackhi)(t[0], t[1]);
        const vec u2 = V(unpacklo)(t[2], t[3]), u3 = V(unpackhi)(t[2], t[3]);
        const vec r[4] = {_mm256_permute2f128_pd(u0, u2, 0x20), _mm256_permute2f128_pd(u1, u3, 0x20),
                          _mm256_permute2f128_pd(u0, u2, 0x31), _mm256_permute2f128_pd(u1, u3, 0x31)};
        const int cols = n - j0 < 4 ? n - j0 : 4;
        for (int i = 0; i < rows; i++) {
            real *ci = c + i * ldc + j0;
            const vec ri = acc ? V(add)(r[i], load_part(ci, cols)) : r[i];
            if (cols == 4)
                V(storeu)(ci, ri);
            else
                store_part(ci, ri, cols);
        }
    }
}
#else
ALWAYS_INLINE void store_rows(const vec *x, const int n, int rows, real *c, int64_t ldc,
                              bool acc) {
    /* 8×8: 32-bit pairs, 64-bit pairs, then 128-bit halves. */
    vec t[8], u[8], r[8];
    for (int j = 0; j < 8; j++) t[j] = j < n ? x[j] : V(setzero)();
    for (int j = 0; j < 8; j += 2) {
        u[j] = V(unpacklo)(t[j], t[j + 1]);     /* rows 0,1 | 4,5 of columns j, j+1 */
        u[j + 1] = V(unpackhi)(t[j], t[j + 1]); /* rows 2,3 | 6,7 */
    }
    for (int j = 0; j < 8; j += 4) { /* t[j + m]: row m | m + 4 of columns j..j+3 */
        t[j] = V(shuffle)(u[j], u[j + 2], 0x44);
        t[j + 1] = V(shuffle)(u[j], u[j + 2], 0xEE);
        t[j + 2] = V(shuffle)(u[j + 1], u[j + 3], 0x44);
        t[j + 3] = V(shuffle)(u[j + 1], u[j + 3], 0xEE);
    }
    for (int m = 0; m < 4; m++) {
        r[m] = _mm256_permute2f128_ps(t[m], t[m + 4], 0x20);
        r[m + 4] = _mm256_permute2f128_ps(t[m], t[m + 4], 0x31);
    }
    for (int i = 0; i < rows; i++)
        store_part(c + i * ldc, acc ? V(add)(r[i], load_part(c + i * ldc, n)) : r[i], n);
}
#endif

ALWAYS_INLINE void tile(int64_t kc, const real *restrict a, const real *restrict b,
                        const int64_t *restrict off, real *restrict c, int64_t ldc, int mr,
                        const int nv, const int nr, const real *bias_r, bool accumulate) {
    vec acc[2][NR];
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++)
#pragma GCC unroll 6
        for (int j = 0; j < nr; j++) acc[v][j] = V(setzero)();
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        _mm_prefetch((const char *)(a + PREFETCH_STEPS * MR), _MM_HINT_T0);
        vec a0 = V(loadu)(a);
        vec a1 = nv > 1 ? V(loadu)(a + LANES) : a0;
        const real *restrict bp = b + off[p];
        _mm_prefetch((const char *)(b + off[p + PREFETCH_STEPS]), _MM_HINT_T0);
#pragma GCC unroll 6
        for (int j = 0; j < nr; j++) {
            vec bj = BROADCAST(bp + j);
            acc[0][j] = V(fmadd)(a0, bj, acc[0][j]);
            if (nv > 1) acc[1][j] = V(fmadd)(a1, bj, acc[1][j]);
        }
        a += MR;
    }
#pragma GCC unroll 2
    for (int v = 0; v < nv; v++) {
        const int rows = mr - v * LANES < LANES ? mr - v * LANES : LANES;
        if (bias_r) {
            real br[LANES] = {0};
            for (int i = 0; i < rows; i++) br[i] = bias_r[v * LANES + i];
            const vec bias = V(loadu)(br);
#pragma GCC unroll 6
            for (int j = 0; j < nr; j++) acc[v][j] = V(add)(acc[v][j], bias);
        }
        store_rows(acc[v], nr, rows, c + v * LANES * ldc, ldc, accumulate);
    }
}

#define COLS_KERNEL AI3_TYPED(ai3_gemm_cols_kernel_avx2)
#include "cols_entry.h"
