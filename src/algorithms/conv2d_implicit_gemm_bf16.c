/*
 * conv2d "implicit gemm" in bfloat16: the bfloat16 GEMM of "gemm"
 * (conv2d_gemm_bf16.c) whose B is never unrolled: the engine's callback
 * gathers each block of B from the (padded) input straight into the pair
 * format (gemm/gemm_bf16.h). The workspace holds only the padded input,
 * and only when there is padding. See conv2d_implicit_gemm.c for the float
 * version.
 *
 * Row k = (c, ky, kx) of B, column n = (oy, ox), is element
 * (c, oy·sh + ky·dh, ox·sw + kx·dw) of the padded image: per strip of NR
 * columns the offsets oy·sh·wp + ox·sw are found once, and each row adds
 * its tap's offset.
 */
#include "conv2d_gemm_bf16.h"

#define NR AI3_GEMM_BF16_NR

typedef struct {
    const ai3_bf16 *src; /* the group's first channel of the padded image */
    int64_t plane, wp;   /* channel and row strides of the padded image */
    int64_t taps, kw, dh, dw, sh, sw, ow;
} pack_ctx;

/* The B callback (gemm_bf16.h). */
AI3_MULTIVERSION(pack_b, void *, vctx, int64_t, k0, int64_t, kc, int64_t, n0, int64_t, nc,
                 uint32_t *, dst) {
    const pack_ctx *c = vctx;
    const int64_t k2 = (kc + 1) / 2;
    for (int64_t s = 0; s < nc; s += NR, dst += NR * k2) {
        const int cnt = (int)AI3_MIN(NR, nc - s);
        int32_t col[NR], off0[NR], off1[NR];
        for (int j = 0; j < cnt; j++) {
            const int64_t n = n0 + s + j, oy = n / c->ow, ox = n % c->ow;
            col[j] = (int32_t)(oy * c->sh * c->wp + ox * c->sw);
        }
        bool runs = cnt == NR;
        for (int j = 1; j < cnt && runs; j++) runs = col[j] == col[0] + j;
        for (int64_t p = 0; p < k2; p++) {
            const int64_t k = k0 + 2 * p;
            const bool pair = k + 1 < k0 + kc;
            int32_t tap[2] = {0, 0};
            for (int h = 0; h < 1 + pair; h++) {
                const int64_t t = (k + h) % c->taps, ch = (k + h) / c->taps;
                tap[h] = (int32_t)(ch * c->plane + t / c->kw * c->dh * c->wp + t % c->kw * c->dw);
            }
            for (int j = 0; j < cnt; j++) {
                off0[j] = tap[0] + col[j];
                off1[j] = tap[1] + col[j];
            }
            ai3_conv2d_bf16_pair_row(c->src, off0, pair ? c->src : NULL, off1, cnt, runs && pair,
                                     dst + p * NR);
        }
    }
}

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const ai3_bf16 *x; /* the (padded) input: N × C_in × hp × wp */
    ai3_bf16 *y;
} run_ctx;

/* Job i = (image, group). */
static ai3_status job(void *vctx, int64_t i, unsigned flags) {
    const run_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const ai3_conv2d_params *p = &c->pb->params;
    const int64_t n = i / d->groups, g = i % d->groups, n_cols = d->oh * d->ow;
    const int64_t plane = d->hp * d->wp;
    pack_ctx pc = {.src = c->x + (n * d->c_in + g * d->c_in_g) * plane, .plane = plane,
                   .wp = d->wp, .taps = d->kh * d->kw, .kw = d->kw, .dh = p->dilation_h,
                   .dw = p->dilation_w, .sh = p->stride_h, .sw = p->stride_w, .ow = d->ow};
    const ai3_gemm_bf16_operand b = ai3_gemm_bf16_callback(pack_b, &pc);
    return ai3_conv2d_bf16_gemm(c->pb->state, d, g, &b, c->y,
                                (n * d->c_out + g * d->c_out_g) * n_cols, flags);
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    return ai3_conv2d_is_padded(&pb->params) ? (size_t)(d->n * d->c_in * d->hp * d->wp) * sizeof(ai3_bf16)
                                  : 0;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    /* offsets within a group's channels are int32 */
    if (d->c_in_g * d->hp * d->wp > INT32_MAX)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "implicit gemm: bfloat16 groups of more than 2^31 padded input "
                             "elements");
    const ai3_bf16 *x = input->data;
    if (ai3_conv2d_is_padded(&pb->params)) {
        ai3_conv2d_pad_input(input, &pb->params, d, workspace);
        x = workspace;
    }
    run_ctx c = {pb, d, x, output->data};
    return ai3_conv2d_run_gemm_jobs_f32(d->n * d->groups, job, &c);
}

const ai3_conv2d_algorithm ai3_conv2d_implicit_gemm_bf16 = {
    .prepare = ai3_conv2d_bf16_prepare,
    .release = ai3_conv2d_bf16_release,
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* a residual and a clamp, in the GEMM's tiles */
};
