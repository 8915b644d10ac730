/*
 * conv2d "gemm" in bfloat16: im2col of the bfloat16 input, then one
 * bfloat16 GEMM per (image, group) with float32 sums (gemm/gemm_bf16.h),
 * the bias, a fused residual and the clamp applied in float32 before the
 * output is rounded to bfloat16. A 1×1 stride-1 unpadded convolution reads
 * the input itself as B. See conv2d_gemm.c for the float version.
 *
 * This file also holds what the bfloat16 GEMM-based algorithms share
 * (conv2d_gemm_bf16.h).
 */
#include "conv2d_gemm_bf16.h"

#include <string.h>

/* --- shared: packed weights ---------------------------------------------- */

void ai3_conv2d_bf16_release(void *state) {
    ai3_conv2d_bf16_weights *w = state;
    if (!w) return;
    ai3_free(w->packed);
    ai3_free(w->bias);
    ai3_free(w);
}

ai3_status ai3_conv2d_bf16_prepare(ai3_conv2d_problem *pb) {
    ai3_status s = ai3_require_cpu_bf16("conv2d");
    if (s != AI3_OK) return s;
    const ai3_tensor *wt = &pb->weight;
    ai3_conv2d_bf16_weights *w = ai3_alloc(sizeof *w);
    if (!w) return AI3_ERROR_OUT_OF_MEMORY;
    memset(w, 0, sizeof *w);
    w->groups = pb->params.groups;
    w->m = wt->shape[0] / w->groups;
    w->k = wt->shape[1] * wt->shape[2] * wt->shape[3];
    /* rounded so that every block starts 64-byte aligned */
    w->block_words = (ai3_gemm_bf16_packed_a_size(w->m, w->k) + 15) & ~(size_t)15;
    w->packed = ai3_alloc(w->block_words * (size_t)w->groups * sizeof(uint32_t));
    if (pb->bias) w->bias = ai3_alloc(sizeof(float) * (size_t)wt->shape[0]);
    if (!w->packed || (pb->bias && !w->bias)) {
        ai3_conv2d_bf16_release(w);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    const ai3_bf16 *src = wt->data;
    for (int64_t g = 0; g < w->groups; g++)
        ai3_gemm_bf16_pack_a(w->m, w->k, src + g * w->m * w->k, w->k, 1,
                             w->packed + (size_t)g * w->block_words);
    if (pb->bias) ai3_bf16_to_float_n(pb->bias->data, w->bias, wt->shape[0]);
    pb->state = w;
    return AI3_OK;
}

ai3_status ai3_conv2d_bf16_gemm(const ai3_conv2d_bf16_weights *w, const ai3_conv2d_dims *d,
                                int64_t g, const ai3_gemm_bf16_operand *b, ai3_bf16 *output,
                                int64_t offset, unsigned flags) {
    const int64_t n_cols = d->oh * d->ow;
    const ai3_gemm_bf16_operand a = ai3_gemm_bf16_packed(w->packed + (size_t)g * w->block_words);
    const ai3_epilogue *e = d->epilogue;
    if (e && e->act != AI3_ACT_CLAMP && e->act != AI3_ACT_NONE)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "conv2d: in bfloat16 the fused activation is a clamp only");
    const float clamp[2] = {e ? (float)e->lo : 0, e ? (float)e->hi : 0};
    const ai3_gemm_bf16_epilogue ge = {
        .bias_row = w->bias ? w->bias + g * w->m : NULL,
        .residual = e && e->residual ? (const ai3_bf16 *)e->residual + offset : NULL,
        .clamp = e && e->act == AI3_ACT_CLAMP ? clamp : NULL};
    return ai3_gemm_bf16(w->m, n_cols, w->k, &a, b, output + offset, n_cols, 1, &ge,
                         flags | AI3_GEMM_BF16_OUT);
}

/* --- gemm ------------------------------------------------------------------ */

/* B is the input itself. */
static bool no_unrolling(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    return d->kh == 1 && d->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && !ai3_conv2d_is_padded(p);
}

typedef struct {
    const ai3_bf16 *src; /* one image, padded: C_in × hp × wp */
    ai3_bf16 *col;       /* C_in·KH·KW × OH·OW */
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
} im2col_ctx;

/* Rows [begin, end) of the unrolled matrix. */
static void im2col_rows(void *vctx, int64_t begin, int64_t end) {
    const im2col_ctx *c = vctx;
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t taps = d->kh * d->kw, sw = p->stride_w, ow = d->ow;
    for (int64_t row = begin; row < end; row++) {
        const int64_t ch = row / taps, ky = row % taps / d->kw, kx = row % d->kw;
        const ai3_bf16 *src = c->src + ch * d->hp * d->wp + ky * p->dilation_h * d->wp +
                              kx * p->dilation_w;
        ai3_bf16 *restrict dst = c->col + row * d->oh * ow;
        for (int64_t oy = 0; oy < d->oh; oy++) {
            const ai3_bf16 *restrict s = src + oy * p->stride_h * d->wp;
            ai3_bf16 *restrict o = dst + oy * ow;
            if (sw == 1) memcpy(o, s, (size_t)ow * sizeof *o);
            else
                for (int64_t ox = 0; ox < ow; ox++) o[ox] = s[ox * sw];
        }
    }
}

typedef struct {
    const ai3_conv2d_bf16_weights *w;
    const ai3_bf16 *b; /* the image's B: K rows per group, N columns */
    ai3_bf16 *y;       /* the output */
    int64_t image;     /* the image's first element in it */
    const ai3_conv2d_dims *d;
} group_ctx;

static ai3_status group_gemm(void *vctx, int64_t g, unsigned flags) {
    const group_ctx *c = vctx;
    const int64_t n_cols = c->d->oh * c->d->ow;
    const ai3_gemm_bf16_operand b = ai3_gemm_bf16_strided(c->b + g * c->w->k * n_cols, n_cols, 1);
    return ai3_conv2d_bf16_gemm(c->w, c->d, g, &b, c->y, c->image + g * c->w->m * n_cols, flags);
}

/* Workspace: one padded image (if padded), one unrolled image. */
static void carve(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                  ai3_bf16 **padded, ai3_bf16 **col) {
    *padded = *col = NULL;
    if (no_unrolling(&pb->params, d)) return;
    if (ai3_conv2d_is_padded(&pb->params))
        *padded = ai3_arena_take(a, (size_t)(d->c_in * d->hp * d->wp) * sizeof(ai3_bf16));
    *col = ai3_arena_take(a, (size_t)(d->c_in * d->kh * d->kw * d->oh * d->ow) * sizeof(ai3_bf16));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    ai3_arena a = {NULL, 0};
    ai3_bf16 *padded, *col;
    carve(pb, d, &a, &padded, &col);
    return a.used;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    ai3_arena a = {workspace, 0};
    ai3_bf16 *padded, *col;
    carve(pb, d, &a, &padded, &col);
    ai3_conv2d_dims d1 = *d;
    d1.n = 1;
    for (int64_t n = 0; n < d->n; n++) { /* one image at a time */
        const ai3_bf16 *x = (const ai3_bf16 *)input->data + n * d->c_in * d->h * d->w;
        const ai3_bf16 *b = x;
        if (col) {
            const ai3_bf16 *src = x;
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
        group_ctx gc = {pb->state, b, output->data, n * d->c_out * d->oh * d->ow, d};
        ai3_status s = ai3_conv2d_run_gemm_jobs_f32(d->groups, group_gemm, &gc);
        if (s != AI3_OK) return s;
    }
    return AI3_OK;
}

const ai3_conv2d_algorithm ai3_conv2d_gemm_bf16 = {
    .prepare = ai3_conv2d_bf16_prepare,
    .release = ai3_conv2d_bf16_release,
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* a residual and a clamp, in the GEMM's tiles */
};
