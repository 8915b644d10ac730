/*
 * conv2d "smm": SMM-Conv (Ofir & Ben-Artzi, CVPRW 2022).
 *
 * The output is the sum over the KH·KW kernel taps of (that tap's weights,
 * C_out_g × C_in_g) times (a shifted view of the padded input, C_in_g ×
 * positions): one GEMM per tap, accumulated into the output, with no im2col
 * buffer. The workspace is the padded input, the weights re-laid out as
 * [tap][oc][ic] and the wide result.
 *
 * In the wide layout of conv2d_wide.h each shifted view is a plain matrix:
 * every row of a tap's B operand is a contiguous slice of one input channel.
 */
#include "algorithms/conv2d.h"
#include "conv2d_wide.h"
#include "gemm.h"

typedef struct {
    const real *w;
    real *wt;
    int64_t c_out, c_in_g, taps;
} relayout_ctx;

/* wt[t][oc][ic] = w[oc][ic][t] for output channels [begin, end): a
 * transpose of each (c_in_g × taps) row, read in order, written to `taps`
 * sequential streams. */
AI3_MULTIVERSION
static void relayout_weights(void *vctx, int64_t begin, int64_t end) {
    const relayout_ctx *c = vctx;
    const int64_t taps = c->taps, c_in_g = c->c_in_g, tap_stride = c->c_out * c_in_g;
    for (int64_t oc = begin; oc < end; oc++) {
        const real *restrict src = c->w + oc * c_in_g * taps;
        real *restrict dst = c->wt + oc * c_in_g;
        for (int64_t ic = 0; ic < c_in_g; ic++)
            for (int64_t t = 0; t < taps; t++) dst[t * tap_stride + ic] = src[ic * taps + t];
    }
}

typedef struct {
    const real *in, *wt, *b;
    real *wide, *y;
    const ai3_conv2d_dims *d;
    const ai3_conv2d_wide *s;
    const int64_t *off;                  /* per tap */
    int64_t taps;
    int64_t positions;                   /* wide positions per output channel */
    int64_t oc_block, oc_blocks;         /* per group */
    int64_t q_block, q_blocks;
} smm_ctx;

/* A task is (image, group, block of output channels, block of positions):
 * one GEMM per tap into the wide result, then the valid positions to the
 * output with the bias. */
static void smm_tasks(void *vctx, int64_t begin, int64_t end) {
    const smm_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    for (int64_t task = begin; task < end; task++) {
        int64_t rest = task;
        const int64_t qb = rest % c->q_blocks;
        rest /= c->q_blocks;
        const int64_t ob = rest % c->oc_blocks;
        rest /= c->oc_blocks;
        const int64_t g = rest % d->groups;
        const int64_t n = rest / d->groups;

        const int64_t q0 = qb * c->q_block, nq = AI3_MIN(c->q_block, c->positions - q0);
        const int64_t oc0 = g * d->c_out_g + ob * c->oc_block;
        const int64_t noc = AI3_MIN(c->oc_block, d->c_out_g - ob * c->oc_block);
        const real *in = c->in + (n * d->c_in + g * d->c_in_g) * c->s->cs + q0;
        real *wide = c->wide + (n * d->c_out + oc0) * c->positions + q0;
        for (int64_t t = 0; t < c->taps; t++) {
            AI3_TYPED(ai3_gemm_nn)(noc, nq, d->c_in_g, c->wt + (t * d->c_out + oc0) * d->c_in_g,
                                   d->c_in_g, in + c->off[t], c->s->cs, wide, c->positions,
                                   t > 0);
        }

        for (int64_t j = 0; j < noc; j++)
            AI3_TYPED(ai3_conv2d_wide_store)(wide + j * c->positions, q0, nq,
                                             c->b ? c->b[oc0 + j] : 0, d, c->s,
                                             c->y + (n * d->c_out + oc0 + j) * d->oh * d->ow);
    }
}

/* The weights as [tap][oc][ic], once per plan. */
static ai3_status prepare(ai3_conv2d_problem *pb) {
    const ai3_tensor *w = &pb->weight;
    const int64_t c_out = w->shape[0], c_in_g = w->shape[1], taps = w->shape[2] * w->shape[3];
    real *wt = ai3_alloc((size_t)(taps * c_out * c_in_g) * sizeof(real));
    if (!wt) return AI3_ERROR_OUT_OF_MEMORY;
    relayout_ctx rc = {w->data, wt, c_out, c_in_g, taps};
    ai3_parallel_for(c_out, 1, relayout_weights, &rc);
    pb->state = wt;
    return AI3_OK;
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

    /* Blocks big enough that packing pays, small enough to give every
     * thread a few tasks: positions are split first, then channels. */
    smm_ctx c = {
        .in = in, .wt = pb->state, .b = pb->bias ? pb->bias->data : NULL, .wide = wide,
        .y = output->data, .d = d, .s = &s, .off = off, .taps = d->kh * d->kw,
        .positions = s.positions,
        .oc_block = AI3_MIN(d->c_out_g, 128), .q_block = AI3_MIN(s.positions, 1024),
    };
    const int64_t want = 4 * (int64_t)ai3_get_num_threads();
    for (;;) {
        c.oc_blocks = (d->c_out_g + c.oc_block - 1) / c.oc_block;
        c.q_blocks = (s.positions + c.q_block - 1) / c.q_block;
        const int64_t tasks = d->n * d->groups * c.oc_blocks * c.q_blocks;
        if (tasks >= want) break;
        if (c.q_block >= 256) c.q_block = (c.q_block + 1) / 2;
        else if (c.oc_block >= 64) c.oc_block = (c.oc_block + 1) / 2;
        else break;
    }
    ai3_parallel_for(d->n * d->groups * c.oc_blocks * c.q_blocks, 1, smm_tasks, &c);
    return AI3_OK;
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_smm) = {
    .prepare = prepare,
    .release = ai3_free,
    .workspace_size = workspace_size,
    .run = run,
};
