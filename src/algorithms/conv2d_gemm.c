/*
 * conv2d "gemm": im2col, then one GEMM per (image, group).
 *
 * Image by image, the (padded, any mode) input is unrolled into the
 * workspace as the K×N matrix B, K = C_in/groups·KH·KW rows per group (row
 * (c, ky, kx) holds, for every output position, the input element that tap
 * meets), N = OH·OW columns; then C_out/groups × N = (weights, packed once
 * at prepare) · B, with the bias, straight into the output. A 1×1 stride-1
 * unpadded convolution needs no unrolling: B is the input itself.
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
    return AI3_TYPED(ai3_conv2d_pack_weights)(pb, false);
}

/* Workspace: one padded image (if padded), one unrolled image. */
static void carve(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                  real **padded, real **col) {
    *padded = *col = NULL;
    if (no_unrolling(&pb->params, d)) return;
    if (is_padded(&pb->params))
        *padded = ai3_arena_take(a, (size_t)(d->c_in * d->hp * d->wp) * sizeof(real));
    *col = ai3_arena_take(a, (size_t)(d->c_in * d->kh * d->kw * d->oh * d->ow) * sizeof(real));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    ai3_arena a = {NULL, 0};
    real *padded, *col;
    carve(pb, d, &a, &padded, &col);
    return a.used;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    ai3_arena a = {workspace, 0};
    real *padded, *col;
    carve(pb, d, &a, &padded, &col);
    const bool unroll = !no_unrolling(&pb->params, d);
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
        const int64_t y_offset = n * d->c_out * d->oh * d->ow;
        group_ctx gc = {pb->state, b, pb->bias ? pb->bias->data : NULL,
                        (real *)output->data + y_offset, y_offset, d};
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
