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
 *
 * With AVX2 or AVX-512 the column kernel (gemm/kernels/gemm_cols_*.h)
 * runs over tiles of up to 6 or 14 positions of an output row, and the
 * buffer indexes a padded copy of the input (as XNNPACK's points padding at
 * a zero row), so that no tile has to leave out a padding element. Where the buffer
 * says that a tile's offsets are, for every tap, consecutive and tap 0's
 * shifted by the tap's place in the kernel (stride 1), the kernel reads B
 * in the copy itself; other tiles are gathered through the buffer into a
 * tile of the task's own, once per run of panels.
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
    const ai3_gemm_cols_config *cols = AI3_TYPED(ai3_gemm_get_cols_config)();
    return cols ? AI3_TYPED(ai3_conv2d_pack_weights_cols)(pb, cols)
                : AI3_TYPED(ai3_conv2d_pack_weights)(pb, false);
}

/* --- the column path ---------------------------------------------------------- */

/* A gathered tile: row k at k·TILE_ROW (a whole cache line of floats). */
#define TILE_ROW 16

typedef struct {
    const ai3_conv2d_dims *d;
    const real *x;
    ai3_conv2d_indirection ind;
    const int64_t *shift;     /* [tap]: its offset from tap 0's, away from the padding */
    const int64_t *in_place;  /* B's row offsets, read in the input */
    const int64_t *gathered;  /* B's row offsets in a gathered tile */
    bool unit_stride;
} tiles_ctx;

/* Whether every tap's nr offsets from position pos are tap 0's first plus
 * the tap's shift, plus the position. A tile lies in one output row, where
 * a tap's offsets grow by the stride: its ends tell. */
static bool reads_in_place(const tiles_ctx *c, int64_t pos, int nr) {
    const int64_t n_cols = c->d->oh * c->d->ow, taps = c->d->kh * c->d->kw;
    const int64_t first = c->ind.offset[pos];
    if (!c->unit_stride) return false;
    for (int64_t t = 0; t < taps; t++) {
        const int32_t *o = c->ind.offset + t * n_cols + pos;
        if (o[0] != first + c->shift[t] || o[nr - 1] != first + c->shift[t] + nr - 1)
            return false;
    }
    return true;
}

/* Rows of tile dst (TILE_ROW apart) for the taps of one group: tap t of
 * channel ch is row ch·taps + t, its offsets evenly spaced (by the stride)
 * in the padded copy. */
AI3_MULTIVERSION_ATTR(AI3_NO_MEMCPY, gather_tile, const tiles_ctx *, c, const real *, src,
                      int64_t, pos, int, nr, real *, dst) {
    const ai3_conv2d_dims *d = c->d;
    const int64_t n_cols = d->oh * d->ow, taps = d->kh * d->kw, hw = d->h * d->w;
    const int64_t step = nr > 1 ? c->ind.offset[pos + 1] - c->ind.offset[pos] : 0;
    for (int64_t t = 0; t < taps; t++) {
        const int64_t first = c->ind.offset[t * n_cols + pos];
        real *restrict row = dst + t * TILE_ROW;
        for (int64_t ch = 0; ch < d->c_in_g; ch++, row += taps * TILE_ROW) {
            const real *restrict s = src + ch * hw + first;
            for (int j = 0; j < nr; j++) row[j] = s[j * step];
        }
    }
}

/* ai3_conv2d_cols_tile_fn */
static const real *tile_b(void *vctx, int64_t n, int64_t g, int64_t pos, int nr,
                          const int64_t **off) {
    const tiles_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const real *src = c->x + (n * d->c_in + g * d->c_in_g) * d->h * d->w;
    if (reads_in_place(c, pos, nr)) {
        *off = c->in_place;
        return src + c->ind.offset[pos];
    }
    const size_t rows = (size_t)(d->c_in_g * d->kh * d->kw);
    real *tile = ai3_thread_buffer(AI3_BUFFER_GATHERED_TILE, rows * TILE_ROW * sizeof(real));
    if (tile) gather_tile(c, src, pos, nr, tile);
    *off = c->gathered;
    return tile;
}

/* Column path workspace: the indirection buffer (of the padded copy), the
 * taps' shifts, both sets of row offsets (each with the kernel's look-ahead
 * past K), the padded copy (if there is padding). */
static void carve_cols(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                       int64_t **shift, int64_t **in_place, int64_t **gathered, real **padded) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    const size_t rows = (size_t)(pw->k + pw->cols->lookahead);
    ai3_conv2d_dims dp = *d;
    dp.h = d->hp;
    dp.w = d->wp;
    a->used += ai3_conv2d_indirection_size(&dp, 0); /* no run flags */
    *shift = ai3_arena_take(a, (size_t)(d->kh * d->kw) * sizeof **shift);
    *in_place = ai3_arena_take(a, rows * sizeof **in_place);
    *gathered = ai3_arena_take(a, rows * sizeof **gathered);
    *padded = ai3_conv2d_is_padded(&pb->params)
                  ? ai3_arena_take(a, (size_t)(d->n * d->c_in * d->hp * d->wp) * sizeof(real))
                  : NULL;
}

static ai3_status run_cols(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                           const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    /* The convolution of the padded copy, which has no padding. */
    ai3_conv2d_params p = pb->params;
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 0;
    p.padding_mode = AI3_PADDING_ZEROS;
    ai3_conv2d_dims dp = *d;
    dp.h = dp.hp = d->hp;
    dp.w = dp.wp = d->wp;
    ai3_arena a = {workspace, 0};
    int64_t *shift, *in_place, *gathered;
    real *padded;
    carve_cols(pb, d, &a, &shift, &in_place, &gathered, &padded);
    tiles_ctx c = {.d = &dp, .x = input->data, .shift = shift, .in_place = in_place,
                   .gathered = gathered, .unit_stride = p.stride_w == 1};
    ai3_status s = ai3_conv2d_indirection_build(&p, &dp, 0, workspace, &c.ind);
    if (s != AI3_OK) return s;
    if (padded) {
        ai3_conv2d_pad_input(input, &pb->params, d, padded);
        c.x = padded;
    }
    const int64_t taps = d->kh * d->kw;
    for (int64_t t = 0; t < taps; t++)
        shift[t] = t / d->kw * p.dilation_h * dp.w + t % d->kw * p.dilation_w;
    for (int64_t k = 0; k < pw->k + pw->cols->lookahead; k++) {
        /* the look-ahead rows are prefetched only: any row will do */
        const int64_t r = k < pw->k ? k : 0;
        in_place[k] = r / taps * dp.h * dp.w + shift[r % taps];
        gathered[k] = r * TILE_ROW;
    }
    ai3_conv2d_cols_b b = {.rows = d->oh, .width = d->ow, .tile = tile_b, .tile_ctx = &c};
    return AI3_TYPED(ai3_conv2d_run_cols)(pb, d, &b, output->data, 0);
}

/* --- entry points ------------------------------------------------------------- */

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    if (pw->cols) {
        ai3_arena a = {NULL, 0};
        int64_t *shift, *in_place, *gathered;
        real *padded;
        carve_cols(pb, d, &a, &shift, &in_place, &gathered, &padded);
        return a.used;
    }
    return ai3_conv2d_indirection_size(d, pw->cfg->nr);
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    if (pw->cols) return run_cols(pb, d, input, output, workspace);
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
