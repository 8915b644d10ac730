/*
 * The loops of algorithms/blocked_ops_f32.c for one block width, written
 * over GCC vectors of one block (cb floats: a pixel's channels of a block).
 * blocked_ops_f32.c includes this file once per width; each loop is an
 * AI3_MULTIVERSION function (AVX-512, AVX2, baseline variants). Define
 * before including:
 *
 *   BK_CB      the block width: 16 or 8
 *   BK(name)   name with the width's suffix
 *   BK_LO      lanes of the interleave of the low halves of two vectors
 *   BK_HI      the same for the high halves
 *   BK_IOTA    0, 1, ..., BK_CB - 1
 *
 * The file undefines them.
 */

typedef float BK(vec) __attribute__((vector_size(BK_CB * 4), aligned(4), may_alias));
typedef int32_t BK(mask) __attribute__((vector_size(BK_CB * 4)));

#define BK_LOAD(p) (*(const BK(vec) *)(p))
#define BK_STORE(p, v) (*(BK(vec) *)(p) = (v))
/* v with the lanes outside `keep` zero (bitwise, so any value becomes 0) */
#define BK_KEEP(v, keep) ((BK(vec))((BK(mask))(v) & (keep)))

/* The lanes of block `block` that are real channels (all ones) rather than
 * pad channels (zero): the outputs' pad channels are zero, whatever the
 * inputs' hold. */
static inline __attribute__((always_inline)) void BK(real_lanes)(int64_t c, int64_t block,
                                                                  BK(mask) *keep) {
    const BK(mask) lane = {BK_IOTA};
    *keep = lane < (int32_t)AI3_MIN(c - block * BK_CB, BK_CB);
}

/* Transposes the cb × cb matrix whose rows are r[0..cb-1], in registers:
 * log2(cb) rounds of interleaving row i with row i + cb/2 (the perfect
 * shuffle), each a two-source permute per row. */
static inline __attribute__((always_inline)) void BK(transpose)(BK(vec) *r) {
#if !defined(__clang__)
    const BK(mask) lo = {BK_LO}, hi = {BK_HI};
#endif
#pragma GCC unroll 4
    for (int round = 1; round < BK_CB; round *= 2) {
        BK(vec) t[BK_CB];
#pragma GCC unroll 8
        for (int i = 0; i < BK_CB / 2; i++) {
#if defined(__clang__) /* (the fuzzer's build) */
            t[2 * i] = __builtin_shufflevector(r[i], r[i + BK_CB / 2], BK_LO);
            t[2 * i + 1] = __builtin_shufflevector(r[i], r[i + BK_CB / 2], BK_HI);
#else
            t[2 * i] = __builtin_shuffle(r[i], r[i + BK_CB / 2], lo);
            t[2 * i + 1] = __builtin_shuffle(r[i], r[i + BK_CB / 2], hi);
#endif
        }
#pragma GCC unroll 16
        for (int i = 0; i < BK_CB; i++) r[i] = t[i];
    }
}

/* --- conversions: items are (image · block, chunk of pixels) ---------------
 * cb plain rows are read cb pixels at a time and transposed into cb blocked
 * pixels (and back); channels past c read as zero (are not written). */
AI3_MULTIVERSION(BK(from_plain_items), void *, ctx, int64_t, begin, int64_t, end) {
    const convert_ctx *cx = ctx;
    for (int64_t item = begin; item < end; item++) {
        const convert_item it = convert_item_of(cx, item, BK_CB);
        const int valid = it.valid;
        const float *pln = cx->src + it.plain;
        float *blk = cx->dst + it.blocked;
        int64_t p = it.p0;
        for (; p + BK_CB <= it.p1; p += BK_CB) {
            BK(vec) r[BK_CB];
#pragma GCC unroll 16
            for (int k = 0; k < BK_CB; k++)
                r[k] = k < valid ? BK_LOAD(pln + k * cx->hw + p) : (BK(vec)){0};
            BK(transpose)(r);
#pragma GCC unroll 16
            for (int j = 0; j < BK_CB; j++) BK_STORE(blk + (p + j) * BK_CB, r[j]);
        }
        for (; p < it.p1; p++)
            for (int k = 0; k < BK_CB; k++)
                blk[p * BK_CB + k] = k < valid ? pln[k * cx->hw + p] : 0.0f;
    }
}

AI3_MULTIVERSION(BK(to_plain_items), void *, ctx, int64_t, begin, int64_t, end) {
    const convert_ctx *cx = ctx;
    for (int64_t item = begin; item < end; item++) {
        const convert_item it = convert_item_of(cx, item, BK_CB);
        const int valid = it.valid;
        float *pln = cx->dst + it.plain;
        const float *blk = cx->src + it.blocked;
        int64_t p = it.p0;
        for (; p + BK_CB <= it.p1; p += BK_CB) {
            BK(vec) r[BK_CB];
#pragma GCC unroll 16
            for (int j = 0; j < BK_CB; j++) r[j] = BK_LOAD(blk + (p + j) * BK_CB);
            BK(transpose)(r);
#pragma GCC unroll 16
            for (int k = 0; k < BK_CB; k++)
                if (k < valid) BK_STORE(pln + k * cx->hw + p, r[k]);
        }
        for (; p < it.p1; p++)
            for (int k = 0; k < valid; k++) pln[k * cx->hw + p] = blk[p * BK_CB + k];
    }
}

/* --- pooling: items are (image · block, output row) -------------------------
 * A window's taps are the block vectors of its pixels; the taps inside the
 * input are found per row and, for border columns only, per column. */

/* The max of the taps rows [ki0, ki1) × columns [kj0, kj1) of the window
 * whose top left pixel is (rs, cs), a NaN winning (as torch). */
static inline __attribute__((always_inline)) void BK(max_window)(
    const pool_ctx *pc, const float *xb, int64_t rs, int64_t cs, int64_t ki0, int64_t ki1,
    int64_t kj0, int64_t kj1, const BK(mask) *keep, float *out) {
    const int64_t dh = pc->p->dilation_h, dw = pc->p->dilation_w;
    BK(vec) acc = (BK(vec)){0} - INFINITY;
    /* the lanes that met a NaN, apart: GCC lowers the select of a mask
     * combining two comparisons to scalar code */
    BK(mask) nan = {0};
    for (int64_t ki = ki0; ki < ki1; ki++) {
        /* (from the first tap in the input: no pointer before the plane) */
        const float *xr = xb + ((rs + ki * dh) * pc->w + cs + kj0 * dw) * BK_CB;
        for (int64_t kj = 0; kj < kj1 - kj0; kj++) {
            BK(vec) v = BK_LOAD(xr + kj * dw * BK_CB);
            BK(mask) take = v > acc;
            nan |= v != v;
            acc = (BK(vec))(((BK(mask))v & take) | ((BK(mask))acc & ~take));
        }
    }
    /* all bits set: a NaN */
    BK_STORE(out, BK_KEEP((BK(vec))((BK(mask))acc | nan), *keep));
}

/* The sum of the same taps (no dilation) over `divisor`. */
static inline __attribute__((always_inline)) void BK(avg_window)(
    const pool_ctx *pc, const float *xb, int64_t rs, int64_t cs, int64_t ki0, int64_t ki1,
    int64_t kj0, int64_t kj1, float divisor, const BK(mask) *keep, float *out) {
    BK(vec) acc = {0};
    for (int64_t ki = ki0; ki < ki1; ki++) {
        const float *xr = xb + ((rs + ki) * pc->w + cs + kj0) * BK_CB;
        for (int64_t kj = 0; kj < kj1 - kj0; kj++) acc += BK_LOAD(xr + kj * BK_CB);
    }
    BK_STORE(out, BK_KEEP(acc / divisor, *keep));
}

AI3_MULTIVERSION(BK(pool_items), void *, ctx, int64_t, begin, int64_t, end) {
    const pool_ctx *pc = ctx;
    const ai3_pool2d_params *p = pc->p;
    for (int64_t item = begin; item < end; item++) {
        int64_t plane = item / pc->oh, i = item % pc->oh;
        const float *xb = pc->x + plane * pc->h * pc->w * BK_CB;
        float *yr = pc->y + (plane * pc->oh + i) * pc->ow * BK_CB;
        BK(mask) keep;
        BK(real_lanes)(pc->c, plane % pc->nb, &keep);
        int64_t rs = i * p->stride_h - p->pad_h, ki0, ki1;
        tap_range(rs, p->dilation_h, pc->h, p->kernel_h, &ki0, &ki1);
        /* avgpool's divisor: the window's rows times its columns, each
         * clipped to the padded input, or to the input itself */
        int64_t rows = AI3_MIN(rs + p->kernel_h, pc->h + p->pad_h) - rs;
        if (!p->count_include_pad) rows = ki1 - ki0;
        for (int64_t j = 0; j < pc->ow; j++) {
            int64_t cs = j * p->stride_w - p->pad_w, kj0 = 0, kj1 = p->kernel_w;
            if (j < pc->interior_lo || j >= pc->interior_hi)
                tap_range(cs, p->dilation_w, pc->w, p->kernel_w, &kj0, &kj1);
            if (pc->max) {
                BK(max_window)(pc, xb, rs, cs, ki0, ki1, kj0, kj1, &keep, yr + j * BK_CB);
            } else {
                int64_t cols = AI3_MIN(cs + p->kernel_w, pc->w + p->pad_w) - cs;
                if (!p->count_include_pad) cols = kj1 - kj0;
                int64_t divisor = p->divisor_override ? p->divisor_override : rows * cols;
                BK(avg_window)(pc, xb, rs, cs, ki0, ki1, kj0, kj1, (float)divisor, &keep,
                               yr + j * BK_CB);
            }
        }
    }
}

/* --- global average pool: items are image · block ------------------------ */
AI3_MULTIVERSION(BK(mean_items), void *, ctx, int64_t, begin, int64_t, end) {
    const plane_ctx *mc = ctx;
    for (int64_t item = begin; item < end; item++) {
        const float *x = mc->x + item * mc->hw * BK_CB;
        /* four partial sums: independent adds, and a smaller rounding error
         * than one running sum */
        BK(vec) s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
        int64_t p = 0;
        for (; p + 4 <= mc->hw; p += 4) {
            s0 += BK_LOAD(x + p * BK_CB);
            s1 += BK_LOAD(x + (p + 1) * BK_CB);
            s2 += BK_LOAD(x + (p + 2) * BK_CB);
            s3 += BK_LOAD(x + (p + 3) * BK_CB);
        }
        for (; p < mc->hw; p++) s0 += BK_LOAD(x + p * BK_CB);
        BK(mask) keep;
        BK(real_lanes)(mc->c, item % mc->nb, &keep);
        BK_STORE(mc->y + item * BK_CB, BK_KEEP(((s0 + s1) + (s2 + s3)) / (float)mc->hw, keep));
    }
}

/* --- channel scale: items are (image · block, chunk of pixels) ------------ */
AI3_MULTIVERSION(BK(scale_items), void *, ctx, int64_t, begin, int64_t, end) {
    const plane_ctx *sc = ctx;
    for (int64_t item = begin; item < end; item++) {
        int64_t plane = item / sc->chunks, p0 = item % sc->chunks * CHUNK;
        int64_t p1 = AI3_MIN(sc->hw, p0 + CHUNK);
        BK(mask) keep;
        BK(real_lanes)(sc->c, plane % sc->nb, &keep);
        /* a zero scale for the pad channels: they become zero (finite x) */
        const BK(vec) s = BK_KEEP(BK_LOAD(sc->s + plane * BK_CB), keep);
        const float *x = sc->x + plane * sc->hw * BK_CB;
        float *y = sc->y + plane * sc->hw * BK_CB;
        for (int64_t p = p0; p < p1; p++) BK_STORE(y + p * BK_CB, BK_LOAD(x + p * BK_CB) * s);
    }
}

#undef BK_LOAD
#undef BK_STORE
#undef BK_KEEP
#undef BK_CB
#undef BK
#undef BK_LO
#undef BK_HI
#undef BK_IOTA
