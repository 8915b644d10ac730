/*
 * conv2d "implicit precomp gemm" in bfloat16: as the float version
 * (conv2d_implicit_precomp_gemm.c), an indirection buffer of input offsets
 * per (tap, output position), built per input shape in the workspace, from
 * which the B callback gathers the bfloat16 GEMM's B (gemm/gemm_bf16.h)
 * straight into its pair format; nothing is padded or unrolled. Sums in
 * float32; bias and clamp before the output is rounded to bfloat16.
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
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
    int32_t *offset;
    uint8_t *run;
    int64_t strips;
} build_ctx;

/* The offsets and run flags of taps [begin, end). */
static void build_taps(void *vctx, int64_t begin, int64_t end) {
    const build_ctx *c = vctx;
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t n_cols = d->oh * d->ow;
    for (int64_t t = begin; t < end; t++) {
        const int64_t ky = t / d->kw, kx = t % d->kw;
        int32_t *off = c->offset + t * n_cols;
        for (int64_t oy = 0; oy < d->oh; oy++) {
            const int64_t r = ai3_pad_source_index(oy * p->stride_h + ky * p->dilation_h, d->h,
                                                   p->pad_top, p->padding_mode);
            for (int64_t ox = 0; ox < d->ow; ox++) {
                const int64_t col = ai3_pad_source_index(ox * p->stride_w + kx * p->dilation_w,
                                                         d->w, p->pad_left, p->padding_mode);
                off[oy * d->ow + ox] = r >= 0 && col >= 0 ? (int32_t)(r * d->w + col) : -1;
            }
        }
        for (int64_t s = 0; s < c->strips; s++) {
            const int64_t n0 = s * NR;
            bool run = n0 + NR <= n_cols;
            for (int64_t j = 0; j < NR && run; j++)
                run = off[n0 + j] >= 0 && off[n0 + j] == off[n0] + j;
            c->run[t * c->strips + s] = run;
        }
    }
}

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const ai3_bf16 *x;
    ai3_bf16 *y;
    const int32_t *offset;
    const uint8_t *run;
    int64_t strips;
} run_ctx;

/* Job i = (image, group). */
static ai3_status job(void *vctx, int64_t i, unsigned flags) {
    const run_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const int64_t n = i / d->groups, g = i % d->groups, n_cols = d->oh * d->ow;
    pack_ctx pc = {.src = c->x + (n * d->c_in + g * d->c_in_g) * d->h * d->w, .hw = d->h * d->w,
                   .offset = c->offset, .run = c->run, .taps = d->kh * d->kw,
                   .n_cols = n_cols, .strips = c->strips};
    const ai3_gemm_bf16_operand b = ai3_gemm_bf16_callback(pack_b, &pc);
    return ai3_conv2d_bf16_gemm(c->pb->state, d, g, &b,
                                c->y + (n * d->c_out + g * d->c_out_g) * n_cols, flags);
}

/* Workspace: the offsets, then the run flags. */
static void carve(const ai3_conv2d_dims *d, ai3_arena *a, int64_t *strips, int32_t **offset,
                  uint8_t **run) {
    const int64_t taps = d->kh * d->kw, n_cols = d->oh * d->ow;
    *strips = (n_cols + NR - 1) / NR;
    *offset = ai3_arena_take(a, (size_t)(taps * n_cols) * sizeof **offset);
    *run = ai3_arena_take(a, (size_t)(taps * *strips));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    ai3_arena a = {NULL, 0};
    int64_t strips;
    int32_t *offset;
    uint8_t *run;
    carve(d, &a, &strips, &offset, &run);
    return a.used;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    if (d->h * d->w > INT32_MAX)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "implicit precomp gemm: input planes of more than 2^31 elements");
    ai3_arena a = {workspace, 0};
    run_ctx c = {pb, d, input->data, output->data, NULL, NULL, 0};
    int32_t *offset;
    uint8_t *runs;
    carve(d, &a, &c.strips, &offset, &runs);
    build_ctx bc = {&pb->params, d, offset, runs, c.strips};
    ai3_parallel_for(d->kh * d->kw, 1, build_taps, &bc);
    c.offset = offset;
    c.run = runs;
    return ai3_conv2d_run_gemm_jobs_f32(d->n * d->groups, job, &c);
}

const ai3_conv2d_algorithm ai3_conv2d_implicit_precomp_gemm_bf16 = {
    .prepare = ai3_conv2d_bf16_prepare,
    .release = ai3_conv2d_bf16_release,
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* a clamp, in the GEMM's tiles */
};
