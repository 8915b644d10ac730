/*
 * The tasks of conv2d_blocked_winograd_f32.c, included once per ISA with the
 * macros of blocked_vec.h (BK_ISA, BK_TARGET, BK_LANES, BK_SET1). The
 * transforms work on one pixel's cb channels as one vector.
 */

#include "blocked_vec.h"

#define WT_VEC BK_VEC
#define WT_ELEM float
#define WT_NAME(f) BK_ISA(f)
#define WT_ATTR static inline __attribute__((always_inline)) BK_TARGET
#include "winograd_1d.h"

/* V of tiles [t0, t0 + gt) and input blocks [ib0, ib1), from the padded
 * input: per point, a blocked plane of vt tiles ([in block][tile][cb]) in
 * which tile t sits at t - v0. */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(input_tiles)(const wg_run *r, int64_t t0, int64_t gt, int64_t ib0, int64_t ib1, float *v,
                    int64_t vt, int64_t v0, const int m) {
    enum { L = BK_LANES, A = AI3_WINOGRAD_MAX_ALPHA };
    const ai3_blocked_winograd *wg = r->wg;
    const int alpha = m + 2;
    const int64_t plane = wg->in_blocks * vt * L, row = r->wq * L;
    for (int64_t i = 0; i < gt; i++) {
        const int64_t t = t0 + i, img = t / (r->th * r->tw);
        const int64_t ty = t / r->tw % r->th, tx = t % r->tw;
        for (int64_t ib = ib0; ib < ib1; ib++) {
            const float *x = r->padded + ((img * wg->in_blocks + ib) * r->hq + ty * m) * row +
                             tx * m * L;
            BK_VEC d[A][A], tmp[A][A], out[A][A];
            for (int a = 0; a < alpha; a++)
                for (int b = 0; b < alpha; b++) d[a][b] = BK_LOAD(x + a * row + b * L);
            for (int b = 0; b < alpha; b++) BK_ISA(input_1d)(m, &d[0][b], A, &tmp[0][b], A);
            for (int a = 0; a < alpha; a++) BK_ISA(input_1d)(m, tmp[a], 1, out[a], 1);
            float *dst = v + (ib * vt + t - v0) * L;
            for (int a = 0; a < alpha; a++)
                for (int b = 0; b < alpha; b++) BK_STORE(dst + (a * alpha + b) * plane, out[a][b]);
        }
    }
}

/* The output of tiles [t0, t0 + gt) in blocks [ob0, ob1) from M (per point a
 * blocked plane [out block][tile][cb]): Aᵀ M A, + bias, + residual, the
 * activation, stored (gelu's on what was stored). */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(output_tiles)(const wg_run *r, int64_t t0, int64_t gt, int64_t ob0, int64_t ob1,
                     const float *mm, const int m) {
    enum { L = BK_LANES, A = AI3_WINOGRAD_MAX_ALPHA };
    const ai3_blocked_winograd *wg = r->wg;
    const int alpha = m + 2;
    const int64_t plane = wg->out_blocks * gt * L;
    const ai3_epilogue *e = r->e;
    const ai3_activation act = e ? e->act : AI3_ACT_NONE;
    const bool act_after = ai3_blocked_act_after(e);
    const bool clamp = act == AI3_ACT_CLAMP;
    const float lo = clamp ? (float)e->lo : 0, hi = clamp ? (float)e->hi : 0;
    for (int64_t ob = ob0; ob < ob1; ob++) {
        const BK_VEC bias = BK_LOAD(wg->bias + ob * L);
        for (int64_t i = 0; i < gt; i++) {
            const int64_t t = t0 + i, img = t / (r->th * r->tw);
            const int64_t ty = t / r->tw % r->th, tx = t % r->tw;
            const float *src = mm + (ob * gt + i) * L;
            BK_VEC in[A][A], tmp[A][A], out[A][A];
            for (int a = 0; a < alpha; a++)
                for (int b = 0; b < alpha; b++) in[a][b] = BK_LOAD(src + (a * alpha + b) * plane);
            for (int b = 0; b < alpha; b++) BK_ISA(output_1d)(m, &in[0][b], A, &tmp[0][b], A);
            for (int a = 0; a < m; a++) BK_ISA(output_1d)(m, tmp[a], 1, out[a], 1);
            const int rows = (int)AI3_MIN(m, r->oh - ty * m);
            const int cols = (int)AI3_MIN(m, r->ow - tx * m);
            const int64_t at =
                ((img * wg->out_blocks + ob) * r->oh + ty * m) * r->ow * L + tx * m * L;
            for (int a = 0; a < rows; a++) {
                float *y = r->y + at + a * r->ow * L;
                const float *res =
                    e && e->residual ? (const float *)e->residual + at + a * r->ow * L : NULL;
                for (int b = 0; b < cols; b++)
                    BK_STORE(y + b * L, BK_ISA(finish)(out[a][b], bias, res ? res + b * L : NULL,
                                                       act, lo, hi));
                if (act_after) ai3_epilogue_apply_f32(y, 0, NULL, 0, 1, (int64_t)cols * L, e);
            }
        }
    }
}

/* input_tiles with m as a constant. */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(input_tiles_m)(const wg_run *r, int64_t t0, int64_t gt, int64_t ib0, int64_t ib1, float *v,
                      int64_t vt, int64_t v0) {
    if (r->wg->m == 2) BK_ISA(input_tiles)(r, t0, gt, ib0, ib1, v, vt, v0, 2);
    else BK_ISA(input_tiles)(r, t0, gt, ib0, ib1, v, vt, v0, 4);
}

/* The α² products of tiles [t0, t0 + gt), whose V is at v (per point a
 * plane of gt tiles), for the output pairs of range pc (of r->pchunks) into
 * M at mm (per point a plane of all output blocks, of which the range's
 * are written), then their outputs. */
static inline __attribute__((always_inline)) BK_TARGET void
BK_ISA(products)(const wg_run *r, const float *v, float *mm, int64_t t0, int64_t gt, int64_t pc) {
    const ai3_blocked_winograd *wg = r->wg;
    const int64_t q0 = r->pairs * pc / r->pchunks, q1 = r->pairs * (pc + 1) / r->pchunks;
    const int64_t vplane = wg->in_blocks * gt * BK_LANES, mplane = wg->out_blocks * gt * BK_LANES;
    for (int p = 0; p < wg->points; p++)
        ai3_blocked_conv2d_run_pairs(wg->point[p], v + p * vplane, gt, q0, q1, mm + p * mplane);
    const int64_t ob1 = AI3_MIN(wg->out_blocks, 2 * q1);
    if (wg->m == 2) BK_ISA(output_tiles)(r, t0, gt, 2 * q0, ob1, mm, 2);
    else BK_ISA(output_tiles)(r, t0, gt, 2 * q0, ob1, mm, 4);
}

/* Tasks [begin, end): (group of tiles, range of output pairs), see wg_run;
 * V and M are the thread's. */
static BK_TARGET void BK_ISA(tasks)(void *vctx, int64_t begin, int64_t end) {
    wg_run *r = vctx;
    const ai3_blocked_winograd *wg = r->wg;
    for (int64_t task = begin; task < end; task++) {
        const int64_t g = task / r->pchunks, pc = task % r->pchunks;
        const int64_t t0 = g * r->group, gt = AI3_MIN(r->tiles - t0, r->group);
        const int64_t vplane = wg->in_blocks * gt * BK_LANES;
        const int64_t mplane = wg->out_blocks * gt * BK_LANES;
        float *v = ai3_thread_buffer(AI3_BUFFER_WINOGRAD,
                                     (size_t)(wg->points * (vplane + mplane)) * sizeof(float));
        if (!v) {
            atomic_store(&r->failed, 1);
            return;
        }
        BK_ISA(input_tiles_m)(r, t0, gt, 0, wg->in_blocks, v, gt, t0);
        BK_ISA(products)(r, v, v + wg->points * vplane, t0, gt, pc);
    }
}

/* With V shared (all tiles, at r->v): first tasks [begin, end) of its
 * transform, each one input block of a range of tiles... */
static BK_TARGET void BK_ISA(shared_input_tasks)(void *vctx, int64_t begin, int64_t end) {
    const wg_run *r = vctx;
    for (int64_t task = begin; task < end; task++) {
        const int64_t ib = task / r->tchunks, tc = task % r->tchunks;
        const int64_t t0 = r->tiles * tc / r->tchunks, t1 = r->tiles * (tc + 1) / r->tchunks;
        BK_ISA(input_tiles_m)(r, t0, t1 - t0, ib, ib + 1, r->v, r->tiles, 0);
    }
}

/* ... then tasks [begin, end) of the products and outputs, a range of
 * output pairs over all tiles each, M the thread's. */
static BK_TARGET void BK_ISA(shared_product_tasks)(void *vctx, int64_t begin, int64_t end) {
    wg_run *r = vctx;
    const ai3_blocked_winograd *wg = r->wg;
    for (int64_t pc = begin; pc < end; pc++) {
        float *mm = ai3_thread_buffer(
            AI3_BUFFER_WINOGRAD,
            (size_t)(wg->points * wg->out_blocks * r->tiles * BK_LANES) * sizeof(float));
        if (!mm) {
            atomic_store(&r->failed, 1);
            return;
        }
        BK_ISA(products)(r, r->v, mm, 0, r->tiles, pc);
    }
}

#undef BK_ISA
#undef BK_TARGET
#undef BK_LANES
#undef BK_SET1
