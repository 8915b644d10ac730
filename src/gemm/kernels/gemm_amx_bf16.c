/*
 * bfloat16 GEMM micro-kernel on AMX tiles, 32×32 (see gemm_bf16.h).
 * Compiled with the AMX-TILE, AMX-BF16 and AVX-512 BF16 flags
 * (CMakeLists.txt); used only where ai3_cpu_has_amx_bf16().
 *
 * The C block is 2×2 tiles of 16×16 float32 (tmm0–tmm3); per step of 16
 * pairs of k (32 bfloat16), two A tiles (tmm4, tmm5: 16 rows × 16 pairs)
 * and two B tiles (tmm6, tmm7: 16 pairs × 16 columns) and four tdpbf16ps,
 * each adding the 16×16×32 products to its C tile in float32. Every tile
 * is 16 rows of 64 bytes, so one configuration (ai3_gemm_bf16_amx_begin)
 * serves the whole product.
 *
 *   A panel (32 rows, k2 padded to a multiple of 16 with zeros): step s is
 *     two 16×16-word tiles, rows 0–15 then 16–31, row-major: word (p, i)
 *     at [s·512 + (i / 16)·256 + (i % 16)·16 + p % 16], s = p / 16.
 *   B strip: the engine's pair format (k2·NR words, word (p, j) at
 *     [p·NR + j]), read as tiles with a row stride of NR words; the last
 *     k2 % 16 pairs are copied into a zero-padded step first (the strip
 *     ends at k2).
 *
 * The C tiles are stored to a float32 block and finished by the epilogue
 * shared with the AVX-512 kernel (bf16_epilogue.h). Tiles past mr rows or
 * nr columns (16 or fewer) are neither computed nor stored.
 */
#include <immintrin.h>
#include <string.h>

#include "bf16_epilogue.h"
#include "gemm_bf16.h"

#define MR AI3_GEMM_BF16_AMX_MR
#define NR AI3_GEMM_BF16_NR
#define STEP AI3_GEMM_BF16_AMX_STEP
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The tile configuration's memory format (palette 1). */
typedef struct __attribute__((aligned(64))) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Eight tiles of 16 rows × 64 bytes. (A static configuration: GCC 12 drops
 * stores to a local one as dead before ldtilecfg reads it.) */
static const tile_config config = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

void ai3_gemm_bf16_amx_begin(void) { _tile_loadconfig(&config); }

void ai3_gemm_bf16_amx_end(void) { _tile_release(); }

/* One step of 16 pairs: A tiles at a (256 words apart), B tiles at b and
 * b + 16 with rows ldb bytes apart. */
ALWAYS_INLINE void step(const uint32_t *a, const uint32_t *b, const int ldb, const int mt,
                        const int nt) {
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, ldb);
    if (nt > 1) _tile_loadd(7, b + 16, ldb);
    _tile_dpbf16ps(0, 4, 6);
    if (nt > 1) _tile_dpbf16ps(1, 4, 7);
    if (mt > 1) {
        _tile_loadd(5, a + 256, 64);
        _tile_dpbf16ps(2, 5, 6);
        if (nt > 1) _tile_dpbf16ps(3, 5, 7);
    }
}

/* mt × nt C tiles (1 or 2 each). */
ALWAYS_INLINE void tiles(int64_t k2, const uint32_t *a, const uint32_t *b, void *c, int64_t rsc,
                         int64_t csc, const int mt, const int nt, int mr, int nr,
                         const ai3_gemm_bf16_epilogue *e, bool out_bf16) {
    _tile_zero(0);
    if (nt > 1) _tile_zero(1);
    if (mt > 1) _tile_zero(2);
    if (mt > 1 && nt > 1) _tile_zero(3);
    const int64_t steps = k2 / STEP, rest = k2 % STEP;
    for (int64_t s = 0; s < steps; s++) step(a + s * STEP * MR, b + s * STEP * NR, NR * 4, mt, nt);
    if (rest) {
        uint32_t last[STEP * NR] __attribute__((aligned(64)));
        memcpy(last, b + steps * STEP * NR, (size_t)rest * NR * sizeof *last);
        memset(last + rest * NR, 0, (size_t)(STEP - rest) * NR * sizeof *last);
        step(a + steps * STEP * MR, last, NR * 4, mt, nt);
    }
    float t[MR * NR] __attribute__((aligned(64)));
    _tile_stored(0, t, NR * 4);
    if (nt > 1) _tile_stored(1, t + 16, NR * 4);
    if (mt > 1) _tile_stored(2, t + 16 * NR, NR * 4);
    if (mt > 1 && nt > 1) _tile_stored(3, t + 16 * NR + 16, NR * 4);

    if (csc != 1) { /* C transposed (or strided): element by element */
        ai3_bf16_finish_strided(t, NR, c, rsc, csc, mr, nr, e, out_bf16);
        return;
    }
    __m512 lo, hi;
    ai3_bf16_bounds(e, &lo, &hi);
    const __mmask16 m[2] = {ai3_bf16_lanes(nr, 0), ai3_bf16_lanes(nr, 1)};
    const bool full = nr == 16 * nt;
    for (int i = 0; i < mr; i++) {
        __m512 br = e->bias_row ? _mm512_set1_ps(e->bias_row[i]) : _mm512_setzero_ps();
        for (int v = 0; v < nt; v++)
            ai3_bf16_finish(_mm512_load_ps(t + i * NR + 16 * v), br, lo, hi, e, c,
                            i * rsc + 16 * v, m[v], full, out_bf16);
    }
}

void ai3_gemm_bf16_kernel_amx(int64_t k2, const uint32_t *a, const uint32_t *b, void *c,
                              int64_t rsc, int64_t csc, int mr, int nr,
                              const ai3_gemm_bf16_epilogue *e, bool out_bf16) {
    if (mr > 16) {
        if (nr > 16) tiles(k2, a, b, c, rsc, csc, 2, 2, mr, nr, e, out_bf16);
        else tiles(k2, a, b, c, rsc, csc, 2, 1, mr, nr, e, out_bf16);
    } else {
        if (nr > 16) tiles(k2, a, b, c, rsc, csc, 1, 2, mr, nr, e, out_bf16);
        else tiles(k2, a, b, c, rsc, csc, 1, 1, mr, nr, e, out_bf16);
    }
}
