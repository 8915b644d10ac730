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
 * output, adding the bias. */
static void store_tile(const direct_ctx *c, const real *tile, int ocb, int64_t n, int64_t oc,
                       int64_t q0) {
    const ai3_conv2d_dims *d = c->d;
    for (int j = 0; j < ocb; j++)
        AI3_TYPED(ai3_conv2d_wide_store)(tile + j * c->tile_w, q0, c->tile_w,
                                         c->b ? c->b[oc + j] : 0, d,
                                         c->s, c->y + (n * d->c_out + oc + j) * d->oh * d->ow);
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
 * One input and one output channel per group, zero padding, unit horizontal
 * stride (most depthwise layers): straight from the input, with no padded
 * copy, since such a layer is bound by memory traffic rather than
 * arithmetic. Each output row starts at the bias; every tap adds its
 * weight times the input row it meets, over the columns that land inside
 * the input. */

static bool plain_depthwise(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    return d->c_in_g == 1 && d->c_out_g == 1 && p->padding_mode == AI3_PADDING_ZEROS &&
           p->stride_w == 1;
}

typedef struct {
    const real *x, *w, *b;
    real *y;
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
} depthwise_ctx;

AI3_MULTIVERSION(depthwise_planes, void *, vctx, int64_t, begin, int64_t, end) {
    const depthwise_ctx *c = vctx;
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    for (int64_t plane = begin; plane < end; plane++) {
        const int64_t ch = plane % d->c_out;
        const real *x = c->x + plane * d->h * d->w;
        const real *wk = c->w + ch * d->kh * d->kw;
        const real bias = c->b ? c->b[ch] : 0;
        for (int64_t oy = 0; oy < d->oh; oy++) {
            real *restrict yr = c->y + (plane * d->oh + oy) * d->ow;
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
        }
    }
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
    if (plain_depthwise(&pb->params, d)) return 0;
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
        depthwise_ctx dc = {input->data, pb->weight.data, pb->bias ? pb->bias->data : NULL,
                            output->data, &pb->params, d};
        ai3_parallel_for(d->n * d->c_out, 1, depthwise_planes, &dc);
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
};
