/*
 * conv2d "implicit precomp gemm": implicit GEMM (see conv2d_implicit_gemm.c)
 * whose gather reads precomputed offsets, as XNNPACK's indirection buffer.
 *
 * Per input shape an indirection buffer is built in the workspace: for each
 * kernel tap t and output position n, the offset within an input channel
 * of the element the tap meets, with the padding mode already applied (the
 * mirrored, replicated or wrapped source element), or -1 for a zero of zero
 * padding. Row k = (c, t) of B, column n, is then channel c at offset[t][n]
 * of the unpadded input: nothing is padded or unrolled. The buffer has
 * KH·KW·OH·OW entries, C_in/groups times fewer than an im2col matrix. For
 * each tap and strip of NR columns a flag also says whether the strip's
 * offsets are consecutive, so it is a plain copy instead of a gather.
 */
#include "conv2d_gemm.h"
#include "epilogue.h"

typedef struct {
    const real *src;         /* the group's first input channel */
    int64_t hw;              /* channel stride */
    const int32_t *offset;   /* [tap][position] */
    const uint8_t *run;      /* [tap][strip]: the strip's offsets are consecutive */
    int64_t taps, n_cols, strips;
    int nr;
} pack_ctx;

AI3_ALWAYS_INLINE void gather_block(const pack_ctx *c, int64_t k0, int64_t kc, int64_t n0,
                                    int64_t nc, const int NR, real *dst) {
    for (int64_t s = 0; s < nc; s += NR, dst += NR * kc) {
        const int64_t col = n0 + s, strip = col / NR;
        const int cnt = (int)AI3_MIN(NR, nc - s);
        int64_t ch = k0 / c->taps, t = k0 % c->taps;
        for (int64_t p = 0; p < kc; p++) {
            const real *restrict base = c->src + ch * c->hw;
            const int32_t *restrict off = c->offset + t * c->n_cols + col;
            real *restrict row = dst + p * NR;
            if (c->run[t * c->strips + strip]) {
                const real *restrict s0 = base + off[0];
                for (int j = 0; j < NR; j++) row[j] = s0[j];
            } else {
                for (int j = 0; j < cnt; j++) row[j] = off[j] >= 0 ? base[off[j]] : 0;
                for (int j = cnt; j < NR; j++) row[j] = 0;
            }
            if (++t == c->taps) {
                t = 0;
                ch++;
            }
        }
    }
}

/* The B callback (gemm.h): NR a constant for the tiles the kernels use. */
AI3_MULTIVERSION_ATTR(AI3_NO_MEMCPY, pack_b, void *, vctx, int64_t, k0, int64_t, kc, int64_t, n0,
                      int64_t, nc, real *, dst) {
    const pack_ctx *c = vctx;
    switch (c->nr) {
    case 8: gather_block(c, k0, kc, n0, nc, 8, dst); break;
    case 16: gather_block(c, k0, kc, n0, nc, 16, dst); break;
    case 32: gather_block(c, k0, kc, n0, nc, 32, dst); break;
    default: gather_block(c, k0, kc, n0, nc, c->nr, dst); break;
    }
}

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const real *x;
    real *y;
    ai3_conv2d_indirection ind;
} run_ctx;

/* Job i = (image, group). */
static ai3_status job(void *vctx, int64_t i, unsigned flags) {
    const run_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const ai3_conv2d_packed_weights *pw = c->pb->state;
    const int64_t n = i / d->groups, g = i % d->groups, n_cols = d->oh * d->ow;
    pack_ctx pc = {.src = c->x + (n * d->c_in + g * d->c_in_g) * d->h * d->w, .hw = d->h * d->w,
                   .offset = c->ind.offset, .run = c->ind.run, .taps = d->kh * d->kw,
                   .n_cols = n_cols, .strips = c->ind.strips, .nr = pw->cfg->nr};
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
    return AI3_TYPED(ai3_conv2d_pack_weights)(pb, false);
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    return ai3_conv2d_indirection_size(d, pw->cfg->nr);
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    run_ctx c = {pb, d, input->data, output->data, {0}};
    ai3_status s = ai3_conv2d_indirection_build(&pb->params, d, pw->cfg->nr, workspace, &c.ind);
    return s != AI3_OK ? s : AI3_TYPED(ai3_conv2d_run_gemm_jobs)(d->n * d->groups, job, &c);
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_implicit_precomp_gemm) = {
    .prepare = prepare,
    .release = AI3_TYPED(ai3_conv2d_packed_weights_release),
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* in the GEMM's tiles */
};
