/*
 * conv2d "implicit gemm": the GEMM of "gemm" (weights packed at prepare,
 * one GEMM per image and group), but B is never unrolled.
 *
 * Row k = (c, ky, kx) of B, column n = (oy, ox), is input element
 * (c, oy·sh + ky·dh, ox·sw + kx·dw) of the padded image.
 *
 * With AVX2 or AVX-512, the column kernel (gemm/kernels/gemm_cols_*.h)
 * reads B in place: the input is padded and phase-split into the wide
 * layout of conv2d_wide.h, where row k of B over a run of consecutive
 * output positions of one output row is a contiguous slice at a fixed
 * offset, off[k] = c·(channel stride) + the tap's offset. A tile is up to
 * 32 output channels × 14 positions of an output row (AVX2: 16 × 6), so
 * no FLOP is spent on padding rows or columns of the tile: 64 channels are
 * whole panels, and with AVX-512 rows of 14, 28, 56 or 112 positions whole
 * tiles (with AVX2 they split into tiles of 5 to 6). The workspace holds
 * the offsets and, unless the convolution is stride 1 with no padding, the
 * prepared input.
 *
 * Otherwise the engine's row kernel runs, and the engine asks a callback
 * for each kc×nc block of B as it packs: the callback gathers it straight
 * from the (padded) input. A strip of NR consecutive columns is one or a
 * few runs of consecutive ox, each a contiguous (stride 1) or strided
 * piece of one input row: the runs are found once per strip and copied
 * for each of the kc rows. The workspace holds only the padded input, and
 * only when there is padding.
 */
#include "conv2d_gemm.h"
#include "conv2d_wide.h"
#include "epilogue.h"

/* The widest B strip of any config. */
#define MAX_NR 64

typedef struct {
    const real *src;            /* the group's first channel of the padded image */
    int64_t plane, wp;          /* channel and row strides of the padded image */
    int64_t taps, kw, dh, dw, sh, sw, ow;
} gather_ctx;

/* One strip: cnt <= NR columns from column col, rows [k0, k0 + kc). */
AI3_ALWAYS_INLINE void gather_strip(const gather_ctx *c, int64_t k0, int64_t kc, int64_t col,
                                    int cnt, const int NR, real *restrict dst) {
    /* The runs: dst columns [at, at + len) from src offset off (+ i·sw). */
    int at[MAX_NR], len[MAX_NR];
    int64_t off[MAX_NR];
    int runs = 0;
    int64_t oy = col / c->ow, ox = col % c->ow;
    for (int j = 0; j < cnt; runs++) {
        at[runs] = j;
        len[runs] = (int)AI3_MIN(cnt - j, c->ow - ox);
        off[runs] = oy * c->sh * c->wp + ox * c->sw;
        j += len[runs];
        oy++;
        ox = 0;
    }
    const bool full = runs == 1 && cnt == NR && c->sw == 1;
    int64_t ch = k0 / c->taps, t = k0 % c->taps, ky = t / c->kw, kx = t % c->kw;
    for (int64_t p = 0; p < kc; p++) {
        const real *restrict base = c->src + ch * c->plane + ky * c->dh * c->wp + kx * c->dw;
        real *restrict row = dst + p * NR;
        if (full) {
            const real *restrict s = base + off[0];
            for (int j = 0; j < NR; j++) row[j] = s[j];
        } else {
            for (int r = 0; r < runs; r++) {
                const real *restrict s = base + off[r];
                real *restrict o = row + at[r];
                if (c->sw == 1)
                    for (int i = 0; i < len[r]; i++) o[i] = s[i];
                else
                    for (int i = 0; i < len[r]; i++) o[i] = s[i * c->sw];
            }
            for (int j = cnt; j < NR; j++) row[j] = 0;
        }
        if (++kx == c->kw) {
            kx = 0;
            if (++ky == c->taps / c->kw) {
                ky = 0;
                ch++;
            }
        }
    }
}

AI3_ALWAYS_INLINE void gather_block(const gather_ctx *c, int64_t k0, int64_t kc, int64_t n0,
                                    int64_t nc, const int NR, real *dst) {
    for (int64_t s = 0; s < nc; s += NR, dst += NR * kc)
        gather_strip(c, k0, kc, n0 + s, (int)AI3_MIN(NR, nc - s), NR, dst);
}

typedef struct {
    gather_ctx g;
    int nr;
} pack_ctx;

/* The B callback (gemm.h): NR a constant for the tiles the kernels use. */
AI3_MULTIVERSION_ATTR(AI3_NO_MEMCPY, pack_b, void *, vctx, int64_t, k0, int64_t, kc, int64_t, n0,
                      int64_t, nc, real *, dst) {
    const pack_ctx *c = vctx;
    switch (c->nr) {
    case 8: gather_block(&c->g, k0, kc, n0, nc, 8, dst); break;
    case 16: gather_block(&c->g, k0, kc, n0, nc, 16, dst); break;
    case 32: gather_block(&c->g, k0, kc, n0, nc, 32, dst); break;
    default: gather_block(&c->g, k0, kc, n0, nc, c->nr, dst); break;
    }
}

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const real *x;  /* the (padded) input: N × C_in × hp × wp */
    real *y;
} run_ctx;

/* Job i = (image, group). */
static ai3_status job(void *vctx, int64_t i, unsigned flags) {
    const run_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const ai3_conv2d_params *p = &c->pb->params;
    const ai3_conv2d_packed_weights *pw = c->pb->state;
    const int64_t n = i / d->groups, g = i % d->groups, n_cols = d->oh * d->ow;
    const int64_t plane = d->hp * d->wp;
    pack_ctx pc = {
        .g = {.src = c->x + (n * d->c_in + g * d->c_in_g) * plane, .plane = plane, .wp = d->wp,
              .taps = d->kh * d->kw, .kw = d->kw, .dh = p->dilation_h, .dw = p->dilation_w,
              .sh = p->stride_h, .sw = p->stride_w, .ow = d->ow},
        .nr = pw->cfg->nr,
    };
    ai3_gemm_operand a = ai3_conv2d_packed_block(pw, g);
    ai3_gemm_operand b = ai3_gemm_callback(pack_b, &pc);
    const real *bias = c->pb->bias ? (const real *)c->pb->bias->data + g * d->c_out_g : NULL;
    const int64_t offset = (n * d->c_out + g * d->c_out_g) * n_cols;
    ai3_epilogue e;
    return AI3_TYPED(ai3_gemm_epilogue)(pw->cfg, d->c_out_g, n_cols, pw->k, &a, &b, c->y + offset,
                                        n_cols, bias, NULL, flags,
                                        ai3_epilogue_at(d->epilogue, offset, &e));
}

static ai3_status prepare(ai3_conv2d_problem *pb) {
    const ai3_gemm_cols_config *cols = AI3_TYPED(ai3_gemm_get_cols_config)();
    if (cols) return AI3_TYPED(ai3_conv2d_pack_weights_cols)(pb, cols);
    ai3_status s = AI3_TYPED(ai3_conv2d_pack_weights)(pb, false);
    if (s != AI3_OK) return s;
    const ai3_conv2d_packed_weights *pw = pb->state;
    if (pw->cfg->nr > MAX_NR)
        return ai3_set_error(AI3_ERROR_INTERNAL, "implicit gemm: GEMM strips of %d columns",
                             pw->cfg->nr);
    return AI3_OK;
}

/* --- the column path --------------------------------------------------------- */

/* The column path reads the input itself: stride 1, no padding. */
static bool in_place(const ai3_conv2d_params *p) {
    return p->stride_h == 1 && p->stride_w == 1 && !ai3_conv2d_is_padded(p);
}

/* Column path workspace: the taps' offsets, B's row offsets (and the
 * kernel's look-ahead past them), the prepared input (unless in place). */
static void carve_cols(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                       ai3_conv2d_wide *wide, int64_t **taps, int64_t **off, real **x) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    AI3_TYPED(ai3_conv2d_wide_layout)(&pb->params, d, wide, NULL);
    *taps = ai3_arena_take(a, (size_t)(d->kh * d->kw) * sizeof **taps);
    *off = ai3_arena_take(a, (size_t)(pw->k + pw->cols->lookahead) * sizeof **off);
    *x = in_place(&pb->params) ? NULL : ai3_arena_take(a, (size_t)wide->elems * sizeof(real));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    if (pw->cols) {
        ai3_arena a = {NULL, 0};
        ai3_conv2d_wide wide;
        int64_t *taps, *off;
        real *x;
        carve_cols(pb, d, &a, &wide, &taps, &off, &x);
        return a.used;
    }
    return ai3_conv2d_is_padded(&pb->params) ? (size_t)(d->n * d->c_in * d->hp * d->wp) * sizeof(real) : 0;
}

static ai3_status run_cols(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                     const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    ai3_arena a = {workspace, 0};
    ai3_conv2d_wide wide;
    int64_t *taps, *off;
    real *x;
    carve_cols(pb, d, &a, &wide, &taps, &off, &x);
    AI3_TYPED(ai3_conv2d_wide_layout)(&pb->params, d, &wide, taps);
    const int64_t n_taps = d->kh * d->kw;
    for (int64_t k = 0; k < d->c_in_g * n_taps; k++)
        off[k] = k / n_taps * wide.cs + taps[k % n_taps];
    const ai3_conv2d_packed_weights *pw = pb->state;
    for (int64_t k = 0; k < pw->cols->lookahead; k++) off[pw->k + k] = 0; /* prefetched only */
    if (x)
        AI3_TYPED(ai3_conv2d_wide_fill)(input, &pb->params, d, &wide, x);
    else
        x = input->data;
    /* Output row oy's positions are a run: from column oy·ws of the wide layout. */
    ai3_conv2d_cols_b b = {.b = x, .b_image = d->c_in * wide.cs, .b_group = d->c_in_g * wide.cs,
                           .b_run = wide.ws, .off = off, .rows = d->oh, .width = d->ow};
    return AI3_TYPED(ai3_conv2d_run_cols)(pb, d, &b, output->data, 0);
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    if (pw->cols) return run_cols(pb, d, input, output, workspace);
    const real *x = input->data;
    if (ai3_conv2d_is_padded(&pb->params)) {
        ai3_conv2d_pad_input(input, &pb->params, d, workspace);
        x = workspace;
    }
    run_ctx c = {pb, d, x, output->data};
    return AI3_TYPED(ai3_conv2d_run_gemm_jobs)(d->n * d->groups, job, &c);
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_implicit_gemm) = {
    .prepare = prepare,
    .release = AI3_TYPED(ai3_conv2d_packed_weights_release),
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* in the GEMM's tiles */
};
