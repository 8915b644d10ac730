/*
 * conv2d "gemm": im2col, then one GEMM per (image, group).
 *
 * Image by image, the (padded, any mode) input is unrolled into the
 * workspace as the K×N matrix B, K = C_in/groups·KH·KW rows per group (row
 * (c, ky, kx) holds, for every output position, the input element that tap
 * meets), N = OH·OW columns; then C_out/groups × N = (weights, packed once
 * at prepare) · B, with the bias, straight into the output. A 1×1 stride-1
 * unpadded convolution needs no unrolling: B is the input itself. With
 * AVX-512 the column kernel reads B where it lies (tiles of 14 consecutive
 * positions); otherwise the engine packs it.
 *
 * This file also holds what the GEMM-based algorithms share
 * (conv2d_gemm.h).
 */
#include "conv2d_gemm.h"
#include "epilogue.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* --- shared: packed weights ---------------------------------------------- */

void AI3_TYPED(ai3_conv2d_packed_weights_release)(void *state) {
    ai3_conv2d_packed_weights *pw = state;
    if (!pw) return;
    ai3_free(pw->packed);
    ai3_free(pw);
}

ai3_status AI3_TYPED(ai3_conv2d_pack_weights)(ai3_conv2d_problem *pb, bool per_tap) {
    const ai3_tensor *w = &pb->weight;
    const int64_t groups = pb->params.groups, m = w->shape[0] / groups, c_in_g = w->shape[1];
    const int64_t taps = w->shape[2] * w->shape[3];
    ai3_conv2d_packed_weights *pw = ai3_alloc(sizeof *pw);
    if (!pw) return AI3_ERROR_OUT_OF_MEMORY;
    pw->cfg = AI3_TYPED(ai3_gemm_get_config)();
    pw->cols = NULL;
    pw->m = m;
    pw->k = per_tap ? c_in_g : c_in_g * taps;
    pw->blocks = per_tap ? groups * taps : groups;
    /* Rounded so that every block starts 64-byte aligned. */
    pw->block_elems = (AI3_TYPED(ai3_gemm_packed_a_size)(pw->cfg, m, pw->k) + 15) & ~(size_t)15;
    pw->packed = ai3_alloc(pw->block_elems * (size_t)pw->blocks * sizeof(real));
    if (!pw->packed) {
        ai3_free(pw);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    const real *wd = w->data;
    for (int64_t b = 0; b < pw->blocks; b++) {
        real *dst = pw->packed + (size_t)b * pw->block_elems;
        if (per_tap) {
            const int64_t g = b / taps, t = b % taps;
            AI3_TYPED(ai3_gemm_pack_a)(pw->cfg, m, c_in_g, wd + g * m * c_in_g * taps + t,
                                       c_in_g * taps, taps, dst);
        } else {
            AI3_TYPED(ai3_gemm_pack_a)(pw->cfg, m, pw->k, wd + b * m * pw->k, pw->k, 1, dst);
        }
    }
    pb->state = pw;
    return AI3_OK;
}

/* --- shared: running the jobs --------------------------------------------- */

typedef struct {
    ai3_conv2d_gemm_job job;
    void *ctx;
    atomic_int failed;
    ai3_status status;
    char message[256];
} jobs_ctx;

static void job_range(void *vctx, int64_t begin, int64_t end) {
    jobs_ctx *c = vctx;
    for (int64_t i = begin; i < end && !atomic_load(&c->failed); i++) {
        ai3_status s = c->job(c->ctx, i, AI3_GEMM_SINGLE_THREAD);
        if (s != AI3_OK && !atomic_exchange(&c->failed, 1)) {
            c->status = s;
            snprintf(c->message, sizeof c->message, "%s", ai3_last_error());
        }
    }
}

ai3_status AI3_TYPED(ai3_conv2d_run_gemm_jobs)(int64_t jobs, ai3_conv2d_gemm_job job, void *ctx) {
    const int64_t threads = ai3_get_num_threads();
    if (threads > 1 && jobs >= threads && (jobs % threads == 0 || jobs >= 4 * threads)) {
        jobs_ctx c = {.job = job, .ctx = ctx};
        atomic_init(&c.failed, 0);
        ai3_parallel_for(jobs, 1, job_range, &c);
        if (atomic_load(&c.failed)) return ai3_set_error(c.status, "%s", c.message);
        return AI3_OK;
    }
    for (int64_t i = 0; i < jobs; i++) {
        ai3_status s = job(ctx, i, 0);
        if (s != AI3_OK) return s;
    }
    return AI3_OK;
}

/* --- shared: the column kernel's path -------------------------------------- */

ai3_status AI3_TYPED(ai3_conv2d_pack_weights_cols)(ai3_conv2d_problem *pb,
                                                   const ai3_gemm_cols_config *cols) {
    const ai3_tensor *w = &pb->weight;
    const int64_t groups = pb->params.groups, m = w->shape[0] / groups;
    const int64_t k = w->shape[1] * w->shape[2] * w->shape[3], mr = cols->mr;
    const int64_t panels = (m + mr - 1) / mr;
    ai3_conv2d_packed_weights *pw = ai3_alloc(sizeof *pw);
    if (!pw) return AI3_ERROR_OUT_OF_MEMORY;
    *pw = (ai3_conv2d_packed_weights){.cols = cols, .m = m, .k = k, .blocks = groups,
                                      .block_elems = (size_t)(panels * mr * k)};
    pw->packed = ai3_alloc(pw->block_elems * (size_t)groups * sizeof(real));
    if (!pw->packed) {
        ai3_free(pw);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    const real *wd = w->data;
    real *dst = pw->packed;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t s = 0; s < panels; s++)
            for (int64_t p = 0; p < k; p++)
                for (int64_t i = 0; i < mr; i++) {
                    const int64_t row = s * mr + i;
                    *dst++ = row < m ? wd[(g * m + row) * k + p] : 0;
                }
    pb->state = pw;
    return AI3_OK;
}

/* Rows of A a task keeps for its run of tiles: panels up to this many bytes
 * (at least one), so that they stay in L2 with the input they meet. */
#define COLS_CHUNK_BYTES (256 * 1024)

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const ai3_conv2d_cols_b *b;
    real *y;
    int64_t y_offset, chunk_panels, chunks, tiles_per_run, tiles;
} cols_ctx;

/* Unit u = (image, group, chunk of panels, tile of positions), the tile
 * fastest, so that a range of units reuses its chunk's panels. */
static void cols_units(void *vctx, int64_t begin, int64_t end) {
    const cols_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const ai3_conv2d_packed_weights *pw = c->pb->state;
    const ai3_gemm_cols_config *cols = pw->cols;
    const int64_t mr = cols->mr, k = pw->k, plane = d->oh * d->ow;
    const real *bias = c->pb->bias ? c->pb->bias->data : NULL;
    for (int64_t u = begin; u < end; u++) {
        int64_t rest = u;
        const int64_t tile = rest % c->tiles;
        rest /= c->tiles;
        const int64_t chunk = rest % c->chunks;
        rest /= c->chunks;
        const int64_t g = rest % d->groups, n = rest / d->groups;
        const int64_t run = tile / c->tiles_per_run;
        const int64_t x0 = tile % c->tiles_per_run * cols->nr;
        const int nr = (int)AI3_MIN(cols->nr, c->b->width - x0);
        const real *b = c->b->b + n * c->b->b_image + g * c->b->b_group + run * c->b->b_run + x0;
        const int64_t s_end = AI3_MIN((chunk + 1) * c->chunk_panels, (pw->m + mr - 1) / mr);
        for (int64_t s = chunk * c->chunk_panels; s < s_end; s++) {
            const int64_t oc = g * d->c_out_g + s * mr;
            const int mrs = (int)AI3_MIN(mr, pw->m - s * mr);
            const int64_t at = (n * d->c_out + oc) * plane + run * c->b->width + x0;
            cols->kernel(k, pw->packed + g * pw->block_elems + s * mr * k, b, c->b->off,
                         c->y + at, plane, mrs, nr, bias ? bias + oc : NULL);
            if (d->epilogue)
                AI3_TYPED(ai3_epilogue_apply)(
                    c->y + at, plane, ai3_epilogue_residual(d->epilogue, c->y_offset + at),
                    plane, mrs, nr, d->epilogue);
        }
    }
}

void AI3_TYPED(ai3_conv2d_run_cols)(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                                    const ai3_conv2d_cols_b *b, real *output, int64_t y_offset) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    const int64_t mr = pw->cols->mr, panels = (pw->m + mr - 1) / mr;
    const int64_t panel_bytes = mr * pw->k * (int64_t)sizeof(real);
    cols_ctx c = {.pb = pb, .d = d, .b = b, .y = output, .y_offset = y_offset};
    c.chunk_panels = AI3_MAX(1, AI3_MIN(panels, COLS_CHUNK_BYTES / panel_bytes));
    c.chunks = (panels + c.chunk_panels - 1) / c.chunk_panels;
    c.tiles_per_run = (b->width + pw->cols->nr - 1) / pw->cols->nr;
    c.tiles = b->rows * c.tiles_per_run;
    ai3_parallel_for(d->n * d->groups * c.chunks * c.tiles, 1, cols_units, &c);
}

/* --- gemm ------------------------------------------------------------------ */

static bool is_padded(const ai3_conv2d_params *p) {
    return p->pad_top || p->pad_bottom || p->pad_left || p->pad_right;
}

/* B is the input itself. */
static bool no_unrolling(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    return d->kh == 1 && d->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && !is_padded(p);
}

typedef struct {
    const real *src; /* one image, padded: C_in × hp × wp */
    real *col;       /* C_in·KH·KW × OH·OW */
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
} im2col_ctx;

/* Rows [begin, end) of the unrolled matrix. */
AI3_MULTIVERSION(im2col_rows, void *, vctx, int64_t, begin, int64_t, end) {
    const im2col_ctx *c = vctx;
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t taps = d->kh * d->kw, sw = p->stride_w, ow = d->ow;
    for (int64_t row = begin; row < end; row++) {
        const int64_t ch = row / taps, ky = row % taps / d->kw, kx = row % d->kw;
        const real *src = c->src + ch * d->hp * d->wp + ky * p->dilation_h * d->wp +
                          kx * p->dilation_w;
        real *restrict dst = c->col + row * d->oh * ow;
        for (int64_t oy = 0; oy < d->oh; oy++) {
            const real *restrict s = src + oy * p->stride_h * d->wp;
            real *restrict o = dst + oy * ow;
            if (sw == 1) memcpy(o, s, (size_t)ow * sizeof(real));
            else
                for (int64_t ox = 0; ox < ow; ox++) o[ox] = s[ox * sw];
        }
    }
}

typedef struct {
    const ai3_conv2d_packed_weights *pw;
    const real *b;    /* the image's B: K rows per group, N columns */
    const real *bias;
    real *y;          /* the image's output */
    int64_t y_offset; /* y's offset in the output */
    const ai3_conv2d_dims *d;
} group_ctx;

static ai3_status group_gemm(void *vctx, int64_t g, unsigned flags) {
    const group_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const int64_t n_cols = d->oh * d->ow, k = c->pw->k;
    ai3_gemm_operand a = ai3_conv2d_packed_block(c->pw, g);
    ai3_gemm_operand b = ai3_gemm_strided(c->b + g * k * n_cols, n_cols, 1);
    const int64_t offset = g * d->c_out_g * n_cols;
    ai3_epilogue e;
    return AI3_TYPED(ai3_gemm_epilogue)(
        c->pw->cfg, d->c_out_g, n_cols, k, &a, &b, c->y + offset, n_cols,
        c->bias ? c->bias + g * d->c_out_g : NULL, NULL, flags,
        ai3_epilogue_at(d->epilogue, c->y_offset + offset, &e));
}

static ai3_status prepare(ai3_conv2d_problem *pb) {
    const ai3_gemm_cols_config *cols = AI3_TYPED(ai3_gemm_get_cols_config)();
    return cols ? AI3_TYPED(ai3_conv2d_pack_weights_cols)(pb, cols)
                : AI3_TYPED(ai3_conv2d_pack_weights)(pb, false);
}

/* Workspace: for the column kernel, B's row offsets (and its look-ahead
 * past them); one padded image (if padded), one unrolled image. */
static void carve(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                  int64_t **off, real **padded, real **col) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    *off = NULL;
    *padded = *col = NULL;
    if (pw->cols) *off = ai3_arena_take(a, (size_t)(pw->k + pw->cols->lookahead) * sizeof **off);
    if (no_unrolling(&pb->params, d)) return;
    if (is_padded(&pb->params))
        *padded = ai3_arena_take(a, (size_t)(d->c_in * d->hp * d->wp) * sizeof(real));
    *col = ai3_arena_take(a, (size_t)(d->c_in * d->kh * d->kw * d->oh * d->ow) * sizeof(real));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    ai3_arena a = {NULL, 0};
    int64_t *off;
    real *padded, *col;
    carve(pb, d, &a, &off, &padded, &col);
    return a.used;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    ai3_arena a = {workspace, 0};
    int64_t *off;
    real *padded, *col;
    carve(pb, d, &a, &off, &padded, &col);
    const bool unroll = !no_unrolling(&pb->params, d);
    const int64_t n_cols = d->oh * d->ow;
    if (off) {
        for (int64_t k = 0; k < pw->k; k++) off[k] = k * n_cols;
        for (int64_t k = 0; k < pw->cols->lookahead; k++) off[pw->k + k] = 0; /* prefetched only */
    }
    /* One image at a time. */
    ai3_conv2d_dims d1 = *d;
    d1.n = 1;
    for (int64_t n = 0; n < d->n; n++) {
        const real *x = (const real *)input->data + n * d->c_in * d->h * d->w;
        const real *b = x;
        if (unroll) {
            const real *src = x;
            if (padded) {
                ai3_tensor image = *input;
                image.shape[0] = 1;
                image.data = (void *)x;
                ai3_conv2d_pad_input(&image, &pb->params, &d1, padded);
                src = padded;
            }
            im2col_ctx ic = {src, col, &pb->params, d};
            ai3_parallel_for(d->c_in * d->kh * d->kw, 1, im2col_rows, &ic);
            b = col;
        }
        const int64_t y_offset = n * d->c_out * n_cols;
        real *y = (real *)output->data + y_offset;
        if (off) {
            /* All positions are one run; group g's rows from b + g·K·N. */
            ai3_conv2d_cols_b cb = {.b = b, .b_group = pw->k * n_cols, .off = off, .rows = 1,
                                    .width = n_cols};
            AI3_TYPED(ai3_conv2d_run_cols)(pb, &d1, &cb, y, y_offset);
            continue;
        }
        group_ctx gc = {pw, b, pb->bias ? pb->bias->data : NULL, y, y_offset, d};
        ai3_status s = AI3_TYPED(ai3_conv2d_run_gemm_jobs)(d->groups, group_gemm, &gc);
        if (s != AI3_OK) return s;
    }
    return AI3_OK;
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_gemm) = {
    .prepare = prepare,
    .release = AI3_TYPED(ai3_conv2d_packed_weights_release),
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* in the GEMM's tiles */
};
