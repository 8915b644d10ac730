/*
 * conv2d "direct": a register-blocked direct loop nest.
 *
 * The input is padded (and phase-split for strides) once into the wide
 * layout of conv2d_wide.h, where every kernel tap is a contiguous shifted
 * window (plain depthwise layers skip that copy: see below). The micro-kernel keeps a block of output channels × TILE
 * consecutive output positions in registers, loops over input channels and
 * taps, and broadcasts one weight per output channel.
 */
#include "algorithms/conv2d.h"
#include "conv2d_wide.h"
#include "epilogue.h"

#include <string.h>

/* Positions per tile: two 64-byte vectors, or four (WIDE_TILE) when there
 * are at most WIDE_OC_BLOCK output channels per group (first layers), so
 * that a block still has enough independent accumulators. */
#define TILE ((int64_t)(128 / sizeof(real)))
#define WIDE_TILE (2 * TILE)
/* Output channels per register block. */
#define OC_BLOCK 8
#define WIDE_OC_BLOCK 4

/*
 * tile[j][i] = Σ_ic Σ_t w[j·w_oc + ic·taps + t] · in[ic·cs + off[t] + i]
 * for OCB output channels j and TILE positions i.
 */
#define DEFINE_TILE_KERNEL(OCB, TW, NAME)                                                \
    AI3_MULTIVERSION(NAME, const real *restrict, in, int64_t, cs,                        \
                     const int64_t *restrict, off, int64_t, taps, int64_t, c_in,         \
                     const real *restrict, w, int64_t, w_oc, real *restrict, tile) {     \
        real acc[OCB][TW];                                                             \
        for (int j = 0; j < OCB; j++)                                                    \
            for (int64_t i = 0; i < TW; i++) acc[j][i] = 0;                            \
        for (int64_t ic = 0; ic < c_in; ic++) {                                          \
            const real *restrict inc = in + ic * cs;                                     \
            const real *restrict wc = w + ic * taps;                                     \
            for (int64_t t = 0; t < taps; t++) {                                         \
                const real *restrict src = inc + off[t];                                 \
                for (int j = 0; j < OCB; j++) {                                          \
                    const real wv = wc[j * w_oc + t];                                    \
                    for (int64_t i = 0; i < TW; i++) acc[j][i] += wv * src[i];         \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        for (int j = 0; j < OCB; j++)                                                    \
            for (int64_t i = 0; i < TW; i++) tile[j * TW + i] = acc[j][i];           \
    }

DEFINE_TILE_KERNEL(1, TILE, tile_kernel_1)
DEFINE_TILE_KERNEL(2, TILE, tile_kernel_2)
DEFINE_TILE_KERNEL(3, TILE, tile_kernel_3)
DEFINE_TILE_KERNEL(4, TILE, tile_kernel_4)
DEFINE_TILE_KERNEL(5, TILE, tile_kernel_5)
DEFINE_TILE_KERNEL(6, TILE, tile_kernel_6)
DEFINE_TILE_KERNEL(7, TILE, tile_kernel_7)
DEFINE_TILE_KERNEL(8, TILE, tile_kernel_8)
DEFINE_TILE_KERNEL(1, WIDE_TILE, wide_tile_kernel_1)
DEFINE_TILE_KERNEL(2, WIDE_TILE, wide_tile_kernel_2)
DEFINE_TILE_KERNEL(3, WIDE_TILE, wide_tile_kernel_3)
DEFINE_TILE_KERNEL(4, WIDE_TILE, wide_tile_kernel_4)

typedef void (*tile_kernel_fn)(const real *, int64_t, const int64_t *, int64_t, int64_t,
                               const real *, int64_t, real *);
/* Indexed by the number of output channels in the block. */
static const tile_kernel_fn tile_kernels[OC_BLOCK + 1] = {
    NULL,          tile_kernel_1, tile_kernel_2, tile_kernel_3, tile_kernel_4,
    tile_kernel_5, tile_kernel_6, tile_kernel_7, tile_kernel_8,
};
static const tile_kernel_fn wide_tile_kernels[WIDE_OC_BLOCK + 1] = {
    NULL, wide_tile_kernel_1, wide_tile_kernel_2, wide_tile_kernel_3, wide_tile_kernel_4,
};

typedef struct {
    const real *in; /* padded, split input */
    const real *w, *b;
    real *y;
    const ai3_conv2d_dims *d;
    const ai3_conv2d_wide *s;
    const int64_t *off;       /* per tap */
    int64_t taps;
    int64_t tile_w;           /* TILE or WIDE_TILE */
    int64_t oc_block;         /* OC_BLOCK, or WIDE_OC_BLOCK with wide tiles */
    const tile_kernel_fn *kernels;
    int64_t tiles, chunks;    /* tiles per output channel; tile chunks per task */
    int64_t oc_blocks;        /* per group */
} direct_ctx;

/* Writes the valid positions of a computed tile (ocb channels from oc) to the
 * output, adding the bias, and applies the run's epilogue to them (in
 * cache). */
static void store_tile(const direct_ctx *c, real *tile, int ocb, int64_t n, int64_t oc,
                       int64_t q0) {
    const ai3_conv2d_dims *d = c->d;
    for (int j = 0; j < ocb; j++) {
        const int64_t plane = (n * d->c_out + oc + j) * d->oh * d->ow;
        AI3_TYPED(ai3_conv2d_wide_store)(tile + j * c->tile_w, q0, c->tile_w,
                                         c->b ? c->b[oc + j] : 0, d, c->s, c->y + plane,
                                         d->epilogue, ai3_epilogue_residual(d->epilogue, plane));
    }
}

/* A task is (image, group, block of output channels, chunk of tiles). */
static void direct_tasks(void *vctx, int64_t begin, int64_t end) {
    const direct_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const int64_t w_oc = d->c_in_g * c->taps;
    real tile[OC_BLOCK * TILE] __attribute__((aligned(64)));
    for (int64_t task = begin; task < end; task++) {
        int64_t rest = task;
        const int64_t chunk = rest % c->chunks;
        rest /= c->chunks;
        const int64_t ob = rest % c->oc_blocks;
        rest /= c->oc_blocks;
        const int64_t g = rest % d->groups;
        const int64_t n = rest / d->groups;

        const int64_t tile_begin = c->tiles * chunk / c->chunks;
        const int64_t tile_end = c->tiles * (chunk + 1) / c->chunks;
        const real *in = c->in + (n * d->c_in + g * d->c_in_g) * c->s->cs;
        const int64_t oc = g * d->c_out_g + ob * c->oc_block;
        const int ocb = (int)(AI3_MIN((ob + 1) * c->oc_block, d->c_out_g) - ob * c->oc_block);
        for (int64_t tl = tile_begin; tl < tile_end; tl++) {
            const int64_t q0 = tl * c->tile_w;
            c->kernels[ocb](in + q0, c->s->cs, c->off, c->taps, d->c_in_g, c->w + oc * w_oc,
                              w_oc, tile);
            store_tile(c, tile, ocb, n, oc, q0);
        }
    }
}

/* --- depthwise ------------------------------------------------------------
 * One input and one output channel per group, zero padding (most depthwise
 * layers): such a layer is bound by memory traffic and loop overhead rather
 * than arithmetic, so every tap must be a long vector loop. Stride 1 with
 * wide rows reads the input in place (depthwise_rows). Otherwise a task
 * copies each plane once into a zero-bordered buffer split into stride_h ·
 * stride_w phases (phase (q, r): padded rows q, q + sh, ..., columns r,
 * r + sw, ...), where every tap reads one contiguous run for the whole
 * output plane: a tap is a single multiply-add over it (rows computed over
 * the phase width, the extra columns dropped when storing). */

static bool plain_depthwise(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    return d->c_in_g == 1 && d->c_out_g == 1 && p->padding_mode == AI3_PADDING_ZEROS;
}

/* Planes are split into at most this many slices, each with its buffers in
 * the workspace. */
#define DEPTHWISE_SLICES 64

typedef struct {
    const real *x, *w, *b;
    real *y;
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
    int64_t wq;            /* width of a phase: ceil(wp / stride_w) */
    int64_t phase_elems;   /* ceil(hp / stride_h) · wq, plus a tail a tap may read past */
    int64_t out_elems;     /* oh · wq */
    int64_t slices, slice_elems;
    real *workspace;
} depthwise_ctx;

static depthwise_ctx depthwise_layout(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    depthwise_ctx c = {.p = p, .d = d};
    c.wq = (d->wp + p->stride_w - 1) / p->stride_w;
    const int64_t hq = (d->hp + p->stride_h - 1) / p->stride_h;
    /* a tap may read up to a row and a column shift past the last row */
    c.phase_elems = (hq + 1) * c.wq + (d->kw - 1) * p->dilation_w / p->stride_w + 1;
    c.out_elems = d->oh * c.wq;
    c.slices = AI3_MIN(d->n * d->c_out, DEPTHWISE_SLICES);
    c.slice_elems = (p->stride_h * p->stride_w * c.phase_elems + c.out_elems + 15) &
                    ~(int64_t)15;
    return c;
}

/* The padded plane x (h × w) split into sh · sw phases: phase (q, r) holds
 * the padded rows q, q + sh, ... and of them the columns r, r + sw, ...
 * (zero outside the input), wq wide. */
static inline __attribute__((always_inline)) void
depthwise_fill(const depthwise_ctx *c, const real *x, real *phases) {
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t sh = p->stride_h, sw = p->stride_w;
    memset(phases, 0, (size_t)(sh * sw * c->phase_elems) * sizeof(real));
    for (int64_t iy = 0; iy < d->h; iy++) {
        const int64_t py = iy + p->pad_top;
        const real *xr = x + iy * d->w;
        real *row = phases + (py % sh) * sw * c->phase_elems + py / sh * c->wq;
        if (sw == 1) {
            memcpy(row + p->pad_left, xr, (size_t)d->w * sizeof(real));
            continue;
        }
        for (int64_t r = 0; r < sw; r++) { /* input columns ix with (ix + pad_left) % sw == r */
            const int64_t ix0 = ((r - p->pad_left) % sw + sw) % sw;
            if (ix0 >= d->w) continue;
            const int64_t n = (d->w - ix0 + sw - 1) / sw;
            real *restrict dst = row + r * c->phase_elems + (ix0 + p->pad_left) / sw;
            const real *restrict src = xr + ix0;
            if (sw == 2) /* (a constant stride: the loop vectorises) */
                for (int64_t j = 0; j < n; j++) dst[j] = src[2 * j];
            else
                for (int64_t j = 0; j < n; j++) dst[j] = src[j * sw];
        }
    }
}

/* Stride 1 over wide planes: straight from the input, no copy (such a layer
 * is bound by memory traffic): each output row starts at the bias and every
 * tap adds its weight times the input row it meets, over the columns that
 * land inside the input; then the run's epilogue (r: the plane's residual). */
static inline __attribute__((always_inline)) void
depthwise_rows(const depthwise_ctx *c, const real *x, const real *wk, real bias, real *y,
               const real *r) {
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    for (int64_t oy = 0; oy < d->oh; oy++) {
        real *restrict yr = y + oy * d->ow;
        for (int64_t ox = 0; ox < d->ow; ox++) yr[ox] = bias;
        for (int64_t ky = 0; ky < d->kh; ky++) {
            const int64_t iy = oy * p->stride_h + ky * p->dilation_h - p->pad_top;
            if (iy < 0 || iy >= d->h) continue;
            for (int64_t kx = 0; kx < d->kw; kx++) {
                const int64_t shift = kx * p->dilation_w - p->pad_left;
                const int64_t lo = AI3_MAX(0, -shift), hi = AI3_MIN(d->ow, d->w - shift);
                const real wv = wk[ky * d->kw + kx];
                const real *restrict xr = x + iy * d->w + shift;
                for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xr[ox];
            }
        }
        if (d->epilogue)
            AI3_TYPED(ai3_epilogue_apply)(yr, 0, r ? r + oy * d->ow : NULL, 0, 1, d->ow,
                                          d->epilogue);
    }
}

static void depthwise_slice(const depthwise_ctx *c, int64_t slice, real *buf);

/* Tasks are slices: a contiguous run of planes, with buffers of its own. */
static void depthwise_slices(void *vctx, int64_t begin, int64_t end) {
    const depthwise_ctx *c = vctx;
    for (int64_t t = begin; t < end; t++) depthwise_slice(c, t, c->workspace + t * c->slice_elems);
}

AI3_MULTIVERSION(depthwise_planes, const depthwise_ctx *, c, int64_t, begin, int64_t, end,
                 real *, buf) {
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t sw = p->stride_w, wq = c->wq;
    real *restrict out = buf + p->stride_h * sw * c->phase_elems;
    /* rows of at least two vectors vectorise well as they are */
    const bool rows = sw == 1 && d->ow >= 128 / (int64_t)sizeof(real);
    for (int64_t plane = begin; plane < end; plane++) {
        const int64_t ch = plane % d->c_out;
        const real *wk = c->w + ch * d->kh * d->kw;
        const real bias = c->b ? c->b[ch] : 0;
        real *y = c->y + plane * d->oh * d->ow;
        const real *r = ai3_epilogue_residual(d->epilogue, plane * d->oh * d->ow);
        if (rows) {
            depthwise_rows(c, c->x + plane * d->h * d->w, wk, bias, y, r);
            continue;
        }
        depthwise_fill(c, c->x + plane * d->h * d->w, buf);
        for (int64_t i = 0; i < c->out_elems; i++) out[i] = bias;
        /* output row oy, phase column j reads phase row oy + ky·dh / sh */
        for (int64_t ky = 0; ky < d->kh; ky++)
            for (int64_t kx = 0; kx < d->kw; kx++) {
                const real wv = wk[ky * d->kw + kx];
                const int64_t row = ky * p->dilation_h, col = kx * p->dilation_w;
                const real *restrict src =
                    buf + ((row % p->stride_h) * sw + col % sw) * c->phase_elems +
                    row / p->stride_h * wq + col / sw;
                for (int64_t i = 0; i < c->out_elems; i++) out[i] += wv * src[i];
            }
        for (int64_t oy = 0; oy < d->oh; oy++)
            for (int64_t ox = 0; ox < d->ow; ox++) y[oy * d->ow + ox] = out[oy * wq + ox];
        if (d->epilogue) /* the plane is in cache */
            AI3_TYPED(ai3_epilogue_apply)(y, d->ow, r, d->ow, d->oh, d->ow, d->epilogue);
    }
}

static void depthwise_slice(const depthwise_ctx *c, int64_t slice, real *buf) {
    const int64_t planes = c->d->n * c->d->c_out;
    depthwise_planes(c, planes * slice / c->slices, planes * (slice + 1) / c->slices, buf);
}

/* --- everything else ---------------------------------------------------------- */

/* Workspace: the tap offsets, then the prepared input with WIDE_TILE zeros
 * after it (a tile may run past the last valid position, and the last
 * channel's tiles past the end of the input, by less than a tile). */
static void carve(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                  ai3_conv2d_wide *s, int64_t **off, real **in) {
    AI3_TYPED(ai3_conv2d_wide_layout)(&pb->params, d, s, NULL);
    *off = ai3_arena_take(a, (size_t)(d->kh * d->kw) * sizeof **off);
    *in = ai3_arena_take(a, (size_t)(s->elems + WIDE_TILE) * sizeof(real));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    if (plain_depthwise(&pb->params, d)) {
        depthwise_ctx c = depthwise_layout(&pb->params, d);
        return (size_t)(c.slices * c.slice_elems) * sizeof(real);
    }
    ai3_arena a = {NULL, 0};
    ai3_conv2d_wide s;
    int64_t *off;
    real *in;
    carve(pb, d, &a, &s, &off, &in);
    return a.used;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    if (plain_depthwise(&pb->params, d)) {
        depthwise_ctx c = depthwise_layout(&pb->params, d);
        c.x = input->data;
        c.w = pb->weight.data;
        c.b = pb->bias ? pb->bias->data : NULL;
        c.y = output->data;
        c.workspace = workspace;
        ai3_parallel_for(c.slices, 1, depthwise_slices, &c);
        return AI3_OK;
    }
    ai3_arena a = {workspace, 0};
    ai3_conv2d_wide s;
    int64_t *off;
    real *in;
    carve(pb, d, &a, &s, &off, &in);
    AI3_TYPED(ai3_conv2d_wide_layout)(&pb->params, d, &s, off);
    AI3_TYPED(ai3_conv2d_wide_fill)(input, &pb->params, d, &s, in);
    for (int64_t i = 0; i < WIDE_TILE; i++) in[s.elems + i] = 0;

    const bool wide = d->c_out_g <= WIDE_OC_BLOCK;
    direct_ctx c = {
        .in = in, .w = pb->weight.data, .b = pb->bias ? pb->bias->data : NULL,
        .y = output->data, .d = d, .s = &s, .off = off, .taps = d->kh * d->kw,
        .tile_w = wide ? WIDE_TILE : TILE, .oc_block = wide ? WIDE_OC_BLOCK : OC_BLOCK,
        .kernels = wide ? wide_tile_kernels : tile_kernels,
    };
    c.tiles = (s.positions + c.tile_w - 1) / c.tile_w;
    c.oc_blocks = (d->c_out_g + c.oc_block - 1) / c.oc_block;
    /* Enough tasks for an even static split over the pool. */
    const int64_t blocks = d->n * d->groups * c.oc_blocks;
    const int64_t want = 8 * (int64_t)ai3_get_num_threads();
    c.chunks = AI3_MAX(1, AI3_MIN(c.tiles, (want + blocks - 1) / blocks));
    ai3_parallel_for(blocks * c.chunks, 1, direct_tasks, &c);
    return AI3_OK;
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_direct) = {
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* in each tile, and each depthwise row or plane */
};
