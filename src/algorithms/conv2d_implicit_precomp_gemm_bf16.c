/*
 * conv2d "implicit precomp gemm" in bfloat16: as the float version
 * (conv2d_implicit_precomp_gemm.c), an indirection buffer of input offsets
 * per (tap, output position), built per input shape in the workspace, from
 * which the B callback gathers the bfloat16 GEMM's B (gemm/gemm_bf16.h)
 * straight into its pair format; nothing is padded or unrolled. Sums in
 * float32; bias, residual and clamp before the output is rounded to
 * bfloat16.
 */
#include "conv2d_gemm_bf16.h"

#define NR AI3_GEMM_BF16_NR

typedef struct {
    const ai3_bf16 *src;   /* the group's first input channel */
    int64_t hw;            /* channel stride */
    const int32_t *offset; /* [tap][position], -1: a zero of zero padding */
    const uint8_t *run;    /* [tap][strip]: the strip's offsets are consecutive */
    int64_t taps, n_cols, strips;
} pack_ctx;

/* The B callback (gemm_bf16.h). */
AI3_MULTIVERSION(pack_b, void *, vctx, int64_t, k0, int64_t, kc, int64_t, n0, int64_t, nc,
                 uint32_t *, dst) {
    const pack_ctx *c = vctx;
    const int64_t k2 = (kc + 1) / 2;
    for (int64_t s = 0; s < nc; s += NR, dst += NR * k2) {
        const int64_t col = n0 + s, strip = col / NR;
        const int cnt = (int)AI3_MIN(NR, nc - s);
        for (int64_t p = 0; p < k2; p++) {
            const int64_t k = k0 + 2 * p, ch0 = k / c->taps, t0 = k % c->taps;
            const int64_t ch1 = (k + 1) / c->taps, t1 = (k + 1) % c->taps;
            const bool pair = k + 1 < k0 + kc;
            const ai3_bf16 *src0 = c->src + ch0 * c->hw;
            const ai3_bf16 *src1 = pair ? c->src + ch1 * c->hw : NULL;
            const bool runs = pair && c->run[t0 * c->strips + strip] &&
                              c->run[t1 * c->strips + strip];
            ai3_conv2d_bf16_pair_row(src0, c->offset + t0 * c->n_cols + col, src1,
                                     c->offset + t1 * c->n_cols + col, cnt, runs, dst + p * NR);
        }
    }
}

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const ai3_bf16 *x;
    ai3_bf16 *y;
    ai3_conv2d_indirection ind;
} run_ctx;

/* Job i = (image, group). */
static ai3_status job(void *vctx, int64_t i, unsigned flags) {
    const run_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const int64_t n = i / d->groups, g = i % d->groups, n_cols = d->oh * d->ow;
    pack_ctx pc = {.src = c->x + (n * d->c_in + g * d->c_in_g) * d->h * d->w, .hw = d->h * d->w,
                   .offset = c->ind.offset, .run = c->ind.run, .taps = d->kh * d->kw,
                   .n_cols = n_cols, .strips = c->ind.strips};
    const ai3_gemm_bf16_operand b = ai3_gemm_bf16_callback(pack_b, &pc);
    return ai3_conv2d_bf16_gemm(c->pb->state, d, g, &b, c->y,
                                (n * d->c_out + g * d->c_out_g) * n_cols, flags);
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    (void)pb;
    return ai3_conv2d_indirection_size(d, NR);
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    run_ctx c = {pb, d, input->data, output->data, {0}};
    ai3_status s = ai3_conv2d_indirection_build(&pb->params, d, NR, workspace, &c.ind);
    return s != AI3_OK ? s : ai3_conv2d_run_gemm_jobs_f32(d->n * d->groups, job, &c);
}

const ai3_conv2d_algorithm ai3_conv2d_implicit_precomp_gemm_bf16 = {
    .prepare = ai3_conv2d_bf16_prepare,
    .release = ai3_conv2d_bf16_release,
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* a residual and a clamp, in the GEMM's tiles */
};
