/*
 * bfloat16 GEMM micro-kernel, 14 rows × 2 zmm (14×32), AVX512_BF16 (see
 * gemm_bf16.h). Compiled with the AVX-512 BF16 flags (CMakeLists.txt).
 *
 * Each 32-bit lane of a B vector holds one column's pair of k; the A pair
 * of a row is broadcast to all lanes, and vdpbf16ps adds both products to
 * the row's float32 accumulator. 28 accumulators, two B vectors and one
 * broadcast take 31 of the 32 registers. Edge tiles use the same code
 * specialised for their row count and, at most 16 columns wide, one vector
 * per row.
 */
#include <immintrin.h>

#include "bf16_epilogue.h"
#include "gemm_bf16.h"

#define MR AI3_GEMM_BF16_MR
#define NR AI3_GEMM_BF16_NR
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void tile(int64_t k2, const uint32_t *restrict a, const uint32_t *restrict b,
                        void *c, int64_t rsc, int64_t csc, const int mr, const int nv, int nr,
                        const ai3_gemm_bf16_epilogue *e, bool out_bf16) {
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k2; p++) {
        /* A panels are pre-packed weights, streaming from memory */
        _mm_prefetch((const char *)(a + 16 * MR), _MM_HINT_T0);
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
        __m512bh b1 = nv > 1 ? (__m512bh)_mm512_loadu_si512(b + 16) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < mr; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            if (nv > 1) acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
        a += MR;
        b += NR;
    }
    if (csc != 1) { /* C transposed (or strided): element by element */
        float t[MR][NR];
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++) _mm512_storeu_ps(&t[i][16 * v], acc[i][v]);
        ai3_bf16_finish_strided(&t[0][0], NR, c, rsc, csc, mr, nr, e, out_bf16);
        return;
    }
    __m512 lo, hi;
    ai3_bf16_bounds(e, &lo, &hi);
    const __mmask16 m[2] = {ai3_bf16_lanes(nr, 0), ai3_bf16_lanes(nr, 1)};
    const bool full = nr == 16 * nv;
#pragma GCC unroll 14
    for (int i = 0; i < mr; i++) {
        __m512 br = e->bias_row ? _mm512_set1_ps(e->bias_row[i]) : _mm512_setzero_ps();
        for (int v = 0; v < nv; v++)
            ai3_bf16_finish(acc[i][v], br, lo, hi, e, c, i * rsc + 16 * v, m[v], full, out_bf16);
    }
}

/* The tile of mr rows (specialised per row count), nv vectors wide. */
#define ROWS_CASE(MR) \
    case MR: tile(k2, a, b, c, rsc, csc, MR, nv, nr, e, out_bf16); break;

ALWAYS_INLINE void rows(int64_t k2, const uint32_t *a, const uint32_t *b, void *c, int64_t rsc,
                        int64_t csc, int mr, const int nv, int nr,
                        const ai3_gemm_bf16_epilogue *e, bool out_bf16) {
    switch (mr) {
        ROWS_CASE(1) ROWS_CASE(2) ROWS_CASE(3) ROWS_CASE(4) ROWS_CASE(5) ROWS_CASE(6)
        ROWS_CASE(7) ROWS_CASE(8) ROWS_CASE(9) ROWS_CASE(10) ROWS_CASE(11) ROWS_CASE(12)
        ROWS_CASE(13)
    default: tile(k2, a, b, c, rsc, csc, MR, nv, nr, e, out_bf16); break;
    }
}

void ai3_gemm_bf16_kernel_avx512(int64_t k2, const uint32_t *a, const uint32_t *b, void *c,
                                 int64_t rsc, int64_t csc, int mr, int nr,
                                 const ai3_gemm_bf16_epilogue *e, bool out_bf16) {
    if (nr > NR / 2) rows(k2, a, b, c, rsc, csc, mr, 2, nr, e, out_bf16);
    else rows(k2, a, b, c, rsc, csc, mr, 1, nr, e, out_bf16);
}
