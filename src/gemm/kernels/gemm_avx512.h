/*
 * GEMM micro-kernel, 14 rows × 2 zmm, AVX-512F (see kernels.h): 14×32 for
 * float, 14×16 for double. A template over `real`, instantiated once per
 * dtype with the AVX-512 flags (CMakeLists.txt).
 *
 * The tile is 14 rows × 2 zmm = 28 accumulators; with the two B vectors and
 * one broadcast of A that is 31 of the 32 registers. Each step of k loads
 * two B vectors and does 14 broadcast-FMAs per vector. Smaller tiles (the
 * edges of C) use the same code specialised for their row count, so an edge
 * of 3 rows costs 3 rows of FMAs, and a tile at most one vector wide uses
 * one vector per row. Columns past nr are masked off.
 */
#include "avx512_real.h"
#include "kernels.h"

#define MR 14
#define NR (2 * LANES)

ALWAYS_INLINE void tile(int64_t kc, const real *restrict a, const real *restrict b, int64_t ldb,
                        real *restrict c, int64_t ldc, const int mr, const int nv, int nr,
                        const real *bias_r, const real *bias_c, bool accumulate) {
    vec acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = V(setzero)();
    /* Two steps per iteration: half the loop overhead (counter, branch)
     * next to the FMAs, about +3% with A and B in L1/L2 */
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        /* A panels come straight from pre-packed weights, often from memory:
         * ask for them 8 steps of k ahead */
        _mm_prefetch((const char *)(a + 8 * MR), _MM_HINT_T0);
        vec b0 = V(loadu)(b);
        vec b1 = nv > 1 ? V(loadu)(b + LANES) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < mr; i++) {
            vec ai = V(set1)(a[i]);
            acc[i][0] = V(fmadd)(ai, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = V(fmadd)(ai, b1, acc[i][1]);
        }
        a += MR;
        b += ldb;
    }
    /* Lanes to store per vector. */
    const vmask all = (vmask)((1u << LANES) - 1);
    vmask m[2];
    m[0] = nr >= LANES ? all : (vmask)((1u << nr) - 1);
    m[1] = nr >= 2 * LANES ? all : nr > LANES ? (vmask)((1u << (nr - LANES)) - 1) : 0;
    bool full = nr == LANES * nv;
    vec bc[2] = {V(setzero)(), V(setzero)()};
    if (bias_c)
        for (int v = 0; v < nv; v++) bc[v] = V(maskz_loadu)(m[v], bias_c + LANES * v);
#pragma GCC unroll 14
    for (int i = 0; i < mr; i++) {
        real *ci = c + i * ldc;
        vec br = bias_r ? V(set1)(bias_r[i]) : V(setzero)();
        for (int v = 0; v < nv; v++) {
            vec r = V(add)(acc[i][v], V(add)(br, bc[v]));
            if (full) {
                if (accumulate) r = V(add)(r, V(loadu)(ci + LANES * v));
                V(storeu)(ci + LANES * v, r);
            } else {
                if (accumulate) r = V(add)(r, V(maskz_loadu)(m[v], ci + LANES * v));
                V(mask_storeu)(ci + LANES * v, m[v], r);
            }
        }
    }
}

#define ROWS(nv)                                                                           \
    switch (mr) {                                                                          \
    case 1: tile(kc, a, b, ldb, c, ldc, 1, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 2: tile(kc, a, b, ldb, c, ldc, 2, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 3: tile(kc, a, b, ldb, c, ldc, 3, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 4: tile(kc, a, b, ldb, c, ldc, 4, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 5: tile(kc, a, b, ldb, c, ldc, 5, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 6: tile(kc, a, b, ldb, c, ldc, 6, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 7: tile(kc, a, b, ldb, c, ldc, 7, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 8: tile(kc, a, b, ldb, c, ldc, 8, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 9: tile(kc, a, b, ldb, c, ldc, 9, nv, nr, bias_r, bias_c, accumulate); break;    \
    case 10: tile(kc, a, b, ldb, c, ldc, 10, nv, nr, bias_r, bias_c, accumulate); break;  \
    case 11: tile(kc, a, b, ldb, c, ldc, 11, nv, nr, bias_r, bias_c, accumulate); break;  \
    case 12: tile(kc, a, b, ldb, c, ldc, 12, nv, nr, bias_r, bias_c, accumulate); break;  \
    case 13: tile(kc, a, b, ldb, c, ldc, 13, nv, nr, bias_r, bias_c, accumulate); break;  \
    default: tile(kc, a, b, ldb, c, ldc, 14, nv, nr, bias_r, bias_c, accumulate); break;  \
    }

AI3_GEMM_UKERNEL(AI3_TYPED(ai3_gemm_kernel_avx512), real) {
    if (nr > NR / 2) {
        ROWS(2)
    } else {
        ROWS(1)
    }
}
