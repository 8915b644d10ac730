/*
 * conv2d "smm": SMM-Conv (Ofir & Ben-Artzi, CVPRW 2022).
 *
 * The output is the sum over the KH·KW kernel taps of (that tap's weights,
 * C_out/groups × C_in/groups) times (a shifted view of the padded input,
 * C_in/groups × positions): one GEMM per tap, accumulated, with no im2col
 * buffer. The taps' weights are packed for the GEMM engine once, at
 * prepare; the first tap's GEMM adds the bias, the others accumulate.
 *
 * In the wide layout of conv2d_wide.h each shifted view is a plain strided
 * matrix (every row a contiguous slice of one input channel), which a B
 * callback copies into the engine's strips. The GEMMs write the wide result, whose valid positions
 * then go to the output. Work is split into blocks of positions small
 * enough that a block of the result stays in cache across the taps.
 * Workspace: the padded input and the wide result (about the input's and
 * the output's sizes).
 */
#include "conv2d_gemm.h"
#include "conv2d_wide.h"
#include "epilogue.h"

/* Bytes of the result block a task keeps in cache over the taps. */
#define RESULT_BLOCK_BYTES (256 * 1024)

/* A tap's shifted view: element (c, q) at src[c·cs + q]. */
typedef struct {
    const real *src;
    int64_t cs;
    int nr;
} view_ctx;

AI3_ALWAYS_INLINE void copy_block(const view_ctx *c, int64_t k0, int64_t kc, int64_t n0,
                                  int64_t nc, const int NR, real *dst) {
    for (int64_t s = 0; s < nc; s += NR, dst += NR * kc) {
        const int cnt = (int)AI3_MIN(NR, nc - s);
        const real *src = c->src + k0 * c->cs + n0 + s;
        for (int64_t p = 0; p < kc; p++) {
            const real *restrict from = src + p * c->cs;
            real *restrict row = dst + p * NR;
            if (cnt == NR) {
                for (int j = 0; j < NR; j++) row[j] = from[j];
            } else {
                for (int j = 0; j < cnt; j++) row[j] = from[j];
                for (int j = cnt; j < NR; j++) row[j] = 0;
            }
        }
    }
}

/* The B callback (gemm.h): NR a constant for the tiles the kernels use. */
AI3_MULTIVERSION_ATTR(AI3_NO_MEMCPY, pack_b, void *, vctx, int64_t, k0, int64_t, kc, int64_t, n0,
                      int64_t, nc, real *, dst) {
    const view_ctx *c = vctx;
    switch (c->nr) {
    case 8: copy_block(c, k0, kc, n0, nc, 8, dst); break;
    case 16: copy_block(c, k0, kc, n0, nc, 16, dst); break;
    case 32: copy_block(c, k0, kc, n0, nc, 32, dst); break;
    default: copy_block(c, k0, kc, n0, nc, c->nr, dst); break;
    }
}

typedef struct {
    const ai3_conv2d_packed_weights *pw;
    const real *in, *bias;
    real *wide, *y;
    const ai3_conv2d_dims *d;
    const ai3_conv2d_wide *s;
    const int64_t *off;  /* per tap */
    int64_t taps;
    int64_t q_block, q_blocks;
} smm_ctx;

/* Job i = (image, group, block of positions): one GEMM per tap into the
 * wide result, then its valid positions to the output. */
static ai3_status job(void *vctx, int64_t i, unsigned flags) {
    const smm_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const ai3_conv2d_packed_weights *pw = c->pw;
    const int64_t qb = i % c->q_blocks, g = i / c->q_blocks % d->groups;
    const int64_t n = i / c->q_blocks / d->groups;
    const int64_t positions = c->s->positions, q0 = qb * c->q_block;
    const int64_t nq = AI3_MIN(c->q_block, positions - q0);
    const real *in = c->in + (n * d->c_in + g * d->c_in_g) * c->s->cs + q0;
    real *wide = c->wide + (n * d->c_out + g * d->c_out_g) * positions + q0;
    for (int64_t t = 0; t < c->taps; t++) {
        ai3_gemm_operand a = ai3_conv2d_packed_block(pw, g * c->taps + t);
        view_ctx view = {in + c->off[t], c->s->cs, pw->cfg->nr};
        ai3_gemm_operand b = ai3_gemm_callback(pack_b, &view);
        const real *bias = t == 0 && c->bias ? c->bias + g * d->c_out_g : NULL;
        ai3_status st = AI3_TYPED(ai3_gemm)(pw->cfg, d->c_out_g, nq, d->c_in_g, &a, &b, wide,
                                            positions, bias, NULL,
                                            flags | (t > 0 ? AI3_GEMM_ACCUMULATE : 0));
        if (st != AI3_OK) return st;
    }
    for (int64_t j = 0; j < d->c_out_g; j++) {
        const int64_t plane = (n * d->c_out + g * d->c_out_g + j) * d->oh * d->ow;
        AI3_TYPED(ai3_conv2d_wide_store)(wide + j * positions, q0, nq, 0, d, c->s, c->y + plane,
                                         d->epilogue, ai3_epilogue_residual(d->epilogue, plane));
    }
    return AI3_OK;
}

static ai3_status prepare(ai3_conv2d_problem *pb) {
    return AI3_TYPED(ai3_conv2d_pack_weights)(pb, true);
}

/* Workspace: tap offsets, the prepared input, the wide result. */
static void carve(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                  ai3_conv2d_wide *s, int64_t **off, real **in, real **wide) {
    AI3_TYPED(ai3_conv2d_wide_layout)(&pb->params, d, s, NULL);
    *off = ai3_arena_take(a, (size_t)(d->kh * d->kw) * sizeof **off);
    *in = ai3_arena_take(a, (size_t)s->elems * sizeof(real));
    *wide = ai3_arena_take(a, (size_t)(d->n * d->c_out * s->positions) * sizeof(real));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    ai3_arena a = {NULL, 0};
    ai3_conv2d_wide s;
    int64_t *off;
    real *in, *wide;
    carve(pb, d, &a, &s, &off, &in, &wide);
    return a.used;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    ai3_arena a = {workspace, 0};
    ai3_conv2d_wide s;
    int64_t *off;
    real *in, *wide;
    carve(pb, d, &a, &s, &off, &in, &wide);
    AI3_TYPED(ai3_conv2d_wide_layout)(&pb->params, d, &s, off);
    AI3_TYPED(ai3_conv2d_wide_fill)(input, &pb->params, d, &s, in);

    const ai3_conv2d_packed_weights *pw = pb->state;
    const int64_t nr = pw->cfg->nr, threads = ai3_get_num_threads();
    /* Blocks of whole strips that keep the result block in cache, cut
     * further (down to 4 strips) while there are fewer than 4 per thread. */
    int64_t q_block = RESULT_BLOCK_BYTES / (int64_t)sizeof(real) / d->c_out_g / nr * nr;
    q_block = AI3_MIN(AI3_MAX(q_block, 4 * nr), s.positions);
    int64_t q_blocks = (s.positions + q_block - 1) / q_block;
    const int64_t images = d->n * d->groups;
    for (int64_t want = q_blocks + 1; images * q_blocks < 4 * threads && q_block > 4 * nr;
         want++) {
        q_block = AI3_MAX(4 * nr, ((s.positions + want - 1) / want + nr - 1) / nr * nr);
        q_blocks = (s.positions + q_block - 1) / q_block;
    }
    smm_ctx c = {
        .pw = pw, .in = in, .bias = pb->bias ? pb->bias->data : NULL, .wide = wide,
        .y = output->data, .d = d, .s = &s, .off = off, .taps = d->kh * d->kw,
        .q_block = q_block, .q_blocks = q_blocks,
    };
    return AI3_TYPED(ai3_conv2d_run_gemm_jobs)(images * q_blocks, job, &c);
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_smm) = {
    .prepare = prepare,
    .release = AI3_TYPED(ai3_conv2d_packed_weights_release),
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* as it stores each block of positions */
};
