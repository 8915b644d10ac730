/*
 * The register tiles of conv2d_blocked_f32.c, included once per ISA with
 *
 *     BK_ISA(name)  the name with the ISA's suffix
 *     BK_TARGET     the target attribute of its functions
 *     BK_LANES      floats per vector: the block width cb
 *     BK_SET1(x)    the float x in every lane (a broadcast, where (vec){0} + x
 *                   would add the zero first)
 *     BK_MR         output pixels per tile of the convolution (two vectors each)
 *     BK_DW_MR      output pixels per tile of the depthwise convolution (one vector each)
 *
 * A tile keeps mr output pixels × one or two channel blocks in registers
 * through its whole sum, then adds the bias and residual, applies the
 * activation and stores (gelu's are applied to what it just stored, in L1,
 * as they call libm). Tiles are
 * specialised on mr, on the number of blocks and on the input pixel step
 * (one or two blocks, or a run-time step), so the broadcasts address the
 * pixels with constant displacements and an edge tile of 3 pixels costs 3
 * pixels' FMAs.
 */

#include "blocked_vec.h"

/* Where a tile stores pixel r, from its y (past its jump from y_split on).
 * The tile's fields are read into locals before its stores: a store through
 * the vector type (may_alias) could change any of them, and GCC reloaded
 * them (and broadcast the clamp's bounds anew) after each store. */
static inline __attribute__((always_inline)) int64_t BK_ISA(y_at)(int y_split, int64_t y_jump,
                                                                  int r) {
    return r * BK_LANES + (r >= y_split ? y_jump : 0);
}

/* Gelu, on the nv stored vectors of tile t's mr pixels (blocks `plane`
 * apart); the residual is already in. */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(activate)(const run_ctx *c, const tile_args *t, int mr, int nv) {
    if (!c->act_after) return;
    const int head = t->y_jump ? t->y_split : mr; /* the pixels before the jump */
    for (int v = 0; v < nv; v++) {
        float *y = t->y + v * c->out_plane;
        ai3_epilogue_apply_f32(y, 0, NULL, 0, 1, (int64_t)head * BK_LANES, c->e);
        if (head < mr)
            ai3_epilogue_apply_f32(y + BK_ISA(y_at)(t->y_split, t->y_jump, head), 0, NULL, 0, 1,
                                   (int64_t)(mr - head) * BK_LANES, c->e);
    }
}

/* acc[r·ld + v] (pixel r < mr, block v < nv) made final and stored at t->y,
 * with act a constant (bias and residual of t). */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(store_act)(const run_ctx *c, const tile_args *t, const BK_VEC *acc, const int ld,
                  const int mr, const int nv, const ai3_activation act) {
    const BK_VEC b0 = BK_LOAD(t->bias), b1 = nv > 1 ? BK_LOAD(t->bias + BK_LANES) : b0;
    float *const y = t->y;
    const float *const res = t->res;
    const int64_t plane = c->out_plane, y_jump = t->y_jump;
    const int y_split = t->y_split;
    const float lo = c->lo, hi = c->hi;
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            const int64_t at = v * plane + BK_ISA(y_at)(y_split, y_jump, r);
            BK_STORE(y + at, BK_ISA(finish)(acc[r * ld + v], v ? b1 : b0, res ? res + at : NULL,
                                            act, lo, hi));
        }
}

/* Sigmoid or silu (act) on the nv stored vectors of tile t's mr pixels: a
 * loop (not unrolled) whose constants stay in registers, where applied to
 * the accumulators in registers their temporaries and constants spilled
 * (about 13 cycles a vector on Zen 3 against 8 in a loop). */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(act_stored)(const run_ctx *c, const tile_args *t, const int mr, const int nv,
                   const ai3_activation act) {
    float *const y = t->y;
    const int64_t plane = c->out_plane, y_jump = t->y_jump;
    const int y_split = t->y_split;
#pragma GCC unroll 1
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            float *const at = y + v * plane + BK_ISA(y_at)(y_split, y_jump, r);
            BK_STORE(at, BK_ISA(act)(BK_LOAD(at), act));
        }
}

/* store_act with the run's activation, then any activation after the store. */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(store_final)(const run_ctx *c, const tile_args *t, const BK_VEC *acc, const int ld,
                    const int mr, const int nv) {
    switch (c->act) {
    case AI3_ACT_CLAMP: BK_ISA(store_act)(c, t, acc, ld, mr, nv, AI3_ACT_CLAMP); break;
    case AI3_ACT_SIGMOID:
    case AI3_ACT_SILU:
        BK_ISA(store_act)(c, t, acc, ld, mr, nv, AI3_ACT_NONE);
        BK_ISA(act_stored)(c, t, mr, nv, c->act);
        break;
    case AI3_ACT_HARDSIGMOID: BK_ISA(store_act)(c, t, acc, ld, mr, nv, AI3_ACT_HARDSIGMOID); break;
    case AI3_ACT_HARDSWISH: BK_ISA(store_act)(c, t, acc, ld, mr, nv, AI3_ACT_HARDSWISH); break;
    default: BK_ISA(store_act)(c, t, acc, ld, mr, nv, AI3_ACT_NONE); break;
    }
    BK_ISA(activate)(c, t, mr, nv);
}

/* One tile of the convolution: pixels r < mr at input offset x_off + r·xs
 * (xs: xsk blocks, -xsk floats, or c->xs when xsk is 0; with split > 0,
 * pixels r >= split at x_off + row_step + (r - split)·xs; with split -1,
 * pixels r >= t->x_split t->x_jump further on), taps kh0..kh1-1 ×
 * kw0..kw1-1, input blocks ib0..ib1-1; nv output blocks from the packed
 * weights w of its pair, stored at y: final (bias, epilogue) once the last
 * block is in. With one, the kernel is 1×1 and its one tap valid: no tap
 * loops (fewer registers for the loop nest). */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(conv_tile)(const run_ctx *c, const tile_args *t, const int mr, const int nv,
                  const int xsk, const int split, const bool one) {
    enum { L = BK_LANES };
    const ai3_blocked_conv2d *k = c->k;
    const int64_t xs = xsk > 0 ? xsk * L : xsk < 0 ? -xsk : c->xs, cs = c->cs;
    const int64_t wstep = nv * L; /* weights per input channel */
    /* At batch 1 the weights stream from memory and each is used by few
     * tiles: while a pass of tiles runs over these input blocks, ask for
     * the weights of the next (or of the next pair) into L2. */
    const int64_t ahead = (t->ib1 - t->ib0) * k->kh * k->kw * L * wstep;
    /* a split known at run time only: each pixel's offset, once per tile */
    int64_t off[BK_MR];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) off[r] = r * xs + (r >= t->x_split ? t->x_jump : 0);
    float *const y = t->y;
    const int64_t plane = c->out_plane, y_jump = t->y_jump;
    const int y_split = t->y_split;
    BK_VEC acc[BK_MR][2];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = t->ib0 ? BK_LOAD(y + v * plane + BK_ISA(y_at)(y_split, y_jump, r))
                               : (BK_VEC){0};
    for (int64_t ib = t->ib0; ib < t->ib1; ib++) {
        /* the real channels of the block only: plain input has no others,
         * and blocked input's pad channels hold anything */
        const int64_t nc = AI3_MIN((int64_t)L, k->c_in - ib * L);
        if (one) { /* this block's pixels PFX_TILES tiles on (conv2d_blocked_f32.c) */
            const float *next = c->x + t->x_off + ib * c->bs + PFX_TILES * mr * xs;
#pragma GCC unroll 16
            for (int o = 0; o < mr * L; o += 16) __builtin_prefetch(next + o, 0, 3);
        }
        for (int64_t kh = one ? 0 : t->kh0; kh < (one ? 1 : t->kh1); kh++)
            for (int64_t kw = one ? 0 : t->kw0; kw < (one ? 1 : t->kw1); kw++) {
                const float *restrict xp =
                    c->x + (t->x_off + ib * c->bs + kh * c->kh_step + kw * c->kw_step);
                const float *restrict xp2 = xp + (split > 0 ? c->row_step : 0);
                const float *restrict wp =
                    t->w + (one ? ib : (ib * k->kh + kh) * k->kw + kw) * L * wstep;
                /* two channels per iteration: half the loop's own
                 * instructions, 5% more FLOP/s with the weights in L2 */
#pragma GCC unroll 2
                for (int64_t ci = 0; ci < nc; ci++, xp += cs, xp2 += cs, wp += wstep) {
                    __builtin_prefetch(wp + ahead, 0, 2);
                    if (nv > 1 && L >= 16) /* (one line holds both with 8 lanes) */
                        __builtin_prefetch(wp + ahead + L, 0, 2);
                    const BK_VEC w0 = BK_LOAD(wp);
                    const BK_VEC w1 = nv > 1 ? BK_LOAD(wp + L) : w0;
#pragma GCC unroll 16
                    for (int r = 0; r < mr; r++) {
                        const BK_VEC xb = (BK_VEC)BK_SET1(
                            split < 0              ? xp[off[r]]
                            : split && r >= split ? xp2[(r - split) * xs]
                                                  : xp[r * xs]);
                        acc[r][0] += xb * w0;
                        if (nv > 1) acc[r][1] += xb * w1;
                    }
                }
            }
    }
    if (t->ib1 < k->in_blocks) { /* a partial sum, for the next pass */
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++)
            for (int v = 0; v < nv; v++)
                BK_STORE(y + v * plane + BK_ISA(y_at)(y_split, y_jump, r), acc[r][v]);
        return;
    }
    BK_ISA(store_final)(c, t, &acc[0][0], 2, mr, nv);
}

/* Each specialisation of the tile is a function of its own. Inlined
 * together into one function, they shared its register allocation, and GCC
 * spilled two accumulators of the hot loop to the stack: a 1×1 layer ran at
 * 72-77% of the FMA peak on an Intel Xeon, 84-92% as functions of their own. */
#define BK_TILE_FN(NAME, MR, NV, XSK, SPLIT, ONE)                                     \
    static __attribute__((noinline)) BK_TARGET void BK_ISA(NAME)(const run_ctx *c,    \
                                                                 const tile_args *t) { \
        BK_ISA(conv_tile)(c, t, MR, NV, XSK, SPLIT, ONE);                             \
    }

/* mr pixels × nv blocks, with the pixel step of xsk (xsk 1: and a 1×1 kernel's
 * one tap, or any taps) */
#define BK_ROW_FNS(MR, NV)                                                            \
    BK_TILE_FN(tile_##MR##x##NV##_one, MR, NV, 1, 0, true)                            \
    BK_TILE_FN(tile_##MR##x##NV##_s1, MR, NV, 1, 0, false)                            \
    BK_TILE_FN(tile_##MR##x##NV##_s2, MR, NV, 2, 0, false)                            \
    BK_TILE_FN(tile_##MR##x##NV##_any, MR, NV, 0, 0, false)
#define BK_CONV_FNS(MR) BK_ROW_FNS(MR, 1) BK_ROW_FNS(MR, 2)

#define BK_ROW_CASE(MR, NV)                                                           \
    if (c->xsk == 1 && one) BK_ISA(tile_##MR##x##NV##_one)(c, t);                     \
    else if (c->xsk == 1) BK_ISA(tile_##MR##x##NV##_s1)(c, t);                        \
    else if (c->xsk == 2) BK_ISA(tile_##MR##x##NV##_s2)(c, t);                        \
    else BK_ISA(tile_##MR##x##NV##_any)(c, t);
#define BK_CONV_CASE(MR)                                                              \
    case MR:                                                                          \
        if (nv == 2) {                                                                \
            BK_ROW_CASE(MR, 2)                                                        \
        } else {                                                                      \
            BK_ROW_CASE(MR, 1)                                                        \
        }                                                                             \
        break;

/* Tiles of MR pixels with a split (xsk is 1 or 2 there): NAME##x<nv>_s<xsk>. */
#define BK_SPLIT_FNS(NAME, MR, SPLIT)                                                 \
    BK_TILE_FN(NAME##x1_s1, MR, 1, 1, SPLIT, false)                                   \
    BK_TILE_FN(NAME##x1_s2, MR, 1, 2, SPLIT, false)                                   \
    BK_TILE_FN(NAME##x2_s1, MR, 2, 1, SPLIT, false)                                   \
    BK_TILE_FN(NAME##x2_s2, MR, 2, 2, SPLIT, false)
#define BK_SPLIT_CASE(KEY, NAME)                                                      \
    case KEY:                                                                         \
        if (nv == 2) {                                                                \
            if (c->xsk == 1) BK_ISA(NAME##x2_s1)(c, t);                               \
            else BK_ISA(NAME##x2_s2)(c, t);                                           \
        } else {                                                                      \
            if (c->xsk == 1) BK_ISA(NAME##x1_s1)(c, t);                               \
            else BK_ISA(NAME##x1_s2)(c, t);                                           \
        }                                                                             \
        break;
/* Two rows of S pixels. */
#define BK_TWO_ROWS_FNS(S) BK_SPLIT_FNS(rows_##S, 2 * S, S)
#define BK_TWO_ROWS_CASE(S) BK_SPLIT_CASE(S, rows_##S)
/* MR pixels across a row end (the widest tiles and one less: run_wrapped). */
#define BK_WRAP_FNS(MR) BK_SPLIT_FNS(wrap_##MR, MR, -1)
#define BK_WRAP_CASE(MR) BK_SPLIT_CASE(MR, wrap_##MR)

/* Whole tiles on plain input (xsk -1 or -2). */
BK_TILE_FN(plain_x1_s1, BK_MR, 1, -1, 0, false)
BK_TILE_FN(plain_x1_s2, BK_MR, 1, -2, 0, false)
BK_TILE_FN(plain_x2_s1, BK_MR, 2, -1, 0, false)
BK_TILE_FN(plain_x2_s2, BK_MR, 2, -2, 0, false)

BK_CONV_FNS(1)
BK_CONV_FNS(2)
BK_CONV_FNS(3)
BK_CONV_FNS(4)
BK_CONV_FNS(5)
BK_CONV_FNS(6)
#if BK_MR > 6 /* (then 14) */
BK_CONV_FNS(7)
BK_CONV_FNS(8)
BK_CONV_FNS(9)
BK_CONV_FNS(10)
BK_CONV_FNS(11)
BK_CONV_FNS(12)
BK_CONV_FNS(13)
BK_CONV_FNS(14)
BK_TWO_ROWS_FNS(4)
BK_TWO_ROWS_FNS(5)
BK_TWO_ROWS_FNS(6)
BK_TWO_ROWS_FNS(7)
BK_WRAP_FNS(13)
BK_WRAP_FNS(14)
#else
BK_TWO_ROWS_FNS(2)
BK_TWO_ROWS_FNS(3)
BK_WRAP_FNS(5)
BK_WRAP_FNS(6)
#endif

static __attribute__((noinline)) BK_TARGET void BK_ISA(conv_tile_any)(const run_ctx *c,
                                                                        const tile_args *t,
                                                                        int mr, int nv) {
    const bool one = c->k->kh == 1 && c->k->kw == 1 && t->kh1 > t->kh0 && t->kw1 > t->kw0;
    if (c->xsk < 0 && mr == BK_MR) { /* whole tiles on plain input */
        if (nv == 2) {
            if (c->xsk == -1) BK_ISA(plain_x2_s1)(c, t);
            else BK_ISA(plain_x2_s2)(c, t);
        } else {
            if (c->xsk == -1) BK_ISA(plain_x1_s1)(c, t);
            else BK_ISA(plain_x1_s2)(c, t);
        }
        return;
    }
    if (t->x_jump) { /* (mr is the widest tile's or one less) */
        switch (mr) {
#if BK_MR > 6 /* (then 14) */
            BK_WRAP_CASE(13)
            BK_WRAP_CASE(14)
#else
            BK_WRAP_CASE(5)
            BK_WRAP_CASE(6)
#endif
        default: break;
        }
        return;
    }
    if (t->split) { /* (mr is 2·split, at least half the widest tile) */
        switch (t->split) {
#if BK_MR > 6 /* (then 14) */
            BK_TWO_ROWS_CASE(4)
            BK_TWO_ROWS_CASE(5)
            BK_TWO_ROWS_CASE(6)
            BK_TWO_ROWS_CASE(7)
#else
            BK_TWO_ROWS_CASE(2)
            BK_TWO_ROWS_CASE(3)
#endif
        default: break;
        }
        return;
    }
    switch (mr) {
        BK_CONV_CASE(1)
        BK_CONV_CASE(2)
        BK_CONV_CASE(3)
        BK_CONV_CASE(4)
        BK_CONV_CASE(5)
        BK_CONV_CASE(6)
#if BK_MR > 6 /* (then 14) */
        BK_CONV_CASE(7)
        BK_CONV_CASE(8)
        BK_CONV_CASE(9)
        BK_CONV_CASE(10)
        BK_CONV_CASE(11)
        BK_CONV_CASE(12)
        BK_CONV_CASE(13)
        BK_CONV_CASE(14)
#endif
    default: break;
    }
}

/* One tile of the depthwise convolution: pixels r < mr of one channel block,
 * acc[r] += x[tap, pixel r] · w[tap] lane by lane. */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(dw_tile)(const run_ctx *c, const tile_args *t, const int mr, const int xsk) {
    enum { L = BK_LANES };
    const ai3_blocked_conv2d *k = c->k;
    const int64_t xs = xsk ? xsk * L : c->xs;
    BK_VEC acc[BK_DW_MR];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) acc[r] = (BK_VEC){0};
    for (int64_t kh = t->kh0; kh < t->kh1; kh++)
        for (int64_t kw = t->kw0; kw < t->kw1; kw++) {
            const float *restrict xp = c->x + (t->x_off + kh * c->kh_step + kw * c->kw_step);
            const BK_VEC wv = BK_LOAD(t->w + (kh * k->kw + kw) * L);
#pragma GCC unroll 16
            for (int r = 0; r < mr; r++) acc[r] += BK_LOAD(xp + r * xs) * wv;
        }
    BK_ISA(store_final)(c, t, acc, 1, mr, 1);
}

#define BK_DW_CASE(MR)                                                                \
    case MR:                                                                          \
        if (c->xsk == 1) BK_ISA(dw_tile)(c, t, MR, 1);                                \
        else if (c->xsk == 2) BK_ISA(dw_tile)(c, t, MR, 2);                           \
        else BK_ISA(dw_tile)(c, t, MR, 0);                                            \
        break;

static __attribute__((noinline)) BK_TARGET void BK_ISA(dw_tile_any)(const run_ctx *c,
                                                                      const tile_args *t,
                                                                      int mr, int nv) {
    switch (mr) {
        BK_DW_CASE(1)
        BK_DW_CASE(2)
        BK_DW_CASE(3)
        BK_DW_CASE(4)
        BK_DW_CASE(5)
        BK_DW_CASE(6)
        BK_DW_CASE(7)
        BK_DW_CASE(8)
        BK_DW_CASE(9)
        BK_DW_CASE(10)
        BK_DW_CASE(11)
        BK_DW_CASE(12)
#if BK_DW_MR > 12 /* (then 14) */
        BK_DW_CASE(13)
        BK_DW_CASE(14)
#endif
    default: break;
    }
}

#undef BK_TILE_FN
#undef BK_ROW_FNS
#undef BK_CONV_FNS
#undef BK_ROW_CASE
#undef BK_CONV_CASE
#undef BK_SPLIT_FNS
#undef BK_SPLIT_CASE
#undef BK_TWO_ROWS_FNS
#undef BK_TWO_ROWS_CASE
#undef BK_WRAP_FNS
#undef BK_WRAP_CASE
#undef BK_DW_CASE
#undef BK_ISA
#undef BK_TARGET
#undef BK_LANES
#undef BK_MR
#undef BK_DW_MR
#undef BK_SET1
