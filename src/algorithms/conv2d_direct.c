/*
 * conv2d "direct": a register-blocked direct loop nest.
 *
 * The input is padded (and phase-split for strides) once into the wide
 * layout of conv2d_wide.h, where every kernel tap is a contiguous shifted
 * window. The micro-kernel keeps a block of output channels × TILE
 * consecutive output positions in registers, loops over input channels and
 * taps, and broadcasts one weight per output channel. Depthwise layers take
 * a path of their own (below).
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
 * One input channel per group (depthwise layers, with any channel
 * multiplier), zero padding. Such a layer does few multiply-adds per byte
 * moved, so each output must be stored once, straight from registers, and
 * no loop may end in a scalar remainder. A task copies each input plane once
 * into a zero-bordered buffer split into stride_h · stride_w phases (phase
 * (q, r): padded rows q, q + sh, ..., of them the columns r, r + sw, ...),
 * so that every tap of an output row reads one contiguous run. The borders
 * are zeroed once per task: every plane writes the same interior.
 *
 * A tile of DW_ROWS output rows × TW columns stays in registers through all
 * the taps (a weight broadcast per tap), then is stored with the run's
 * epilogue (a plain clamp in registers, anything else on the stored row).
 * Rows at least TW wide are covered by tiles whose last one overlaps the one
 * before it (recomputing a few outputs); narrower rows by one tile each that
 * runs on into the next row (or plane), whose own tile, stored later,
 * overwrites the excess; no store passes the end of the task's planes. Row
 * groups likewise: the last one overlaps the one before. */

/* Output rows per tile. */
#define DW_ROWS 4
/* Elements of the widest vector: a tile is at most two wide. */
#define DW_V ((int64_t)(64 / sizeof(real)))
/* Planes are split into at most this many slices, each a task's unit, with
 * a buffer of its own in the workspace. */
#define DEPTHWISE_SLICES 64
/* ... and fewer where their buffers would pass this many bytes in all. */
#define DEPTHWISE_WORKSPACE_BYTES ((int64_t)64 << 20)

static bool depthwise(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    return d->c_in_g == 1 && p->padding_mode == AI3_PADDING_ZEROS;
}

typedef struct {
    const real *x, *w, *b;
    real *y;
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
    int64_t wq;          /* row width of a phase: ceil(wp / stride_w), and a vector */
    int64_t phase_elems; /* ceil(hp / stride_h) · wq, and what a tile reads past it */
    int64_t taps;
    const int64_t *off;  /* per tap: where it reads in the buffer, from the output's position */
    /* the epilogue: a clamp to [lo, hi] of the tile (clamp), or another
     * applied to each stored row (epilogue); or none */
    bool clamp;
    real lo, hi;
    const ai3_epilogue *epilogue;
    int64_t slices, slice_elems;
    real *buffers;
} depthwise_ctx;

static depthwise_ctx depthwise_layout(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    depthwise_ctx c = {.p = p, .d = d, .taps = d->kh * d->kw};
    /* (a row may be copied in whole vectors, and zeros stored after it) */
    c.wq = (d->wp + p->stride_w - 1) / p->stride_w + DW_V;
    const int64_t hq = (d->hp + p->stride_h - 1) / p->stride_h;
    /* a narrow row's tile reads up to 2 · DW_V columns, plus the last tap's
     * shift (not kw · dilation: a 1-wide kernel with a huge dilation
     * reserved gigabytes) */
    c.phase_elems = hq * c.wq + 2 * DW_V + (d->kw - 1) * p->dilation_w;
    c.slice_elems = (p->stride_h * p->stride_w * c.phase_elems + 15) & ~(int64_t)15;
    const int64_t fit = DEPTHWISE_WORKSPACE_BYTES / (c.slice_elems * (int64_t)sizeof(real));
    c.slices = AI3_MIN(d->n * d->c_out, AI3_MAX(1, AI3_MIN(DEPTHWISE_SLICES, fit)));
    return c;
}

/* Workspace: the tap offsets, then the slices' buffers. */
static size_t depthwise_carve(const depthwise_ctx *c, ai3_arena *a, int64_t **off, real **buffers) {
    *off = ai3_arena_take(a, (size_t)c->taps * sizeof **off);
    *buffers = ai3_arena_take(a, (size_t)(c->slices * c->slice_elems) * sizeof(real));
    return a->used;
}

/* Tap (ky, kx) of the output at phase position i reads phase
 * ((ky·dh) % sh, (kx·dw) % sw) at i + (ky·dh / sh)·wq + kx·dw / sw. */
static void depthwise_offsets(const depthwise_ctx *c, int64_t *off) {
    const ai3_conv2d_params *p = c->p;
    for (int64_t ky = 0; ky < c->d->kh; ky++)
        for (int64_t kx = 0; kx < c->d->kw; kx++) {
            const int64_t row = ky * p->dilation_h, col = kx * p->dilation_w;
            off[ky * c->d->kw + kx] =
                ((row % p->stride_h) * p->stride_w + col % p->stride_w) * c->phase_elems +
                row / p->stride_h * c->wq + col / p->stride_w;
        }
}

/* Input row x (w long) into its phase rows: row points at the padded row's
 * start in phase (its row phase, column phase 0). */
static inline __attribute__((always_inline)) void
depthwise_fill_row(const depthwise_ctx *c, const real *restrict x, real *row) {
    const int64_t sw = c->p->stride_w, pad = c->p->pad_left, w = c->d->w;
    for (int64_t r = 0; r < sw; r++) { /* input columns ix with (ix + pad) % sw == r */
        const int64_t ix0 = ((r - pad) % sw + sw) % sw;
        real *restrict dst = row + r * c->phase_elems + (ix0 + pad) / sw;
        for (int64_t ix = ix0; ix < w; ix += sw) *dst++ = x[ix];
    }
}

/* The lanes of a vector comparison: an integer as wide as real. */
#if defined(AI3_REAL_DOUBLE)
typedef int64_t depthwise_lane;
#else
typedef int32_t depthwise_lane;
#endif

/* Lane indices of the even and odd elements of two vectors of n lanes
 * (DW_EVEN_n, DW_ODD_n). */
#define DW_EVEN_2 0, 2
#define DW_ODD_2 1, 3
#define DW_EVEN_4 0, 2, 4, 6
#define DW_ODD_4 1, 3, 5, 7
#define DW_EVEN_8 0, 2, 4, 6, 8, 10, 12, 14
#define DW_ODD_8 1, 3, 5, 7, 9, 11, 13, 15
#define DW_EVEN_16 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define DW_ODD_16 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
/* (lanes of 64-, 32- and 16-byte vectors) */
#if defined(AI3_REAL_DOUBLE)
#define DW_LANES_64 8
#define DW_LANES_32 4
#define DW_LANES_16 2
#else
#define DW_LANES_64 16
#define DW_LANES_32 8
#define DW_LANES_16 4
#endif

#if AI3_MV_ENABLED
#define DW_ISA(name) name##_avx512
#define DW_TARGET __attribute__((target("arch=x86-64-v4")))
#define DW_LANES DW_LANES_64
#define DW_NARROW_LANES DW_LANES_32
#include "conv2d_direct_depthwise.h"
#define DW_ISA(name) name##_avx2
#define DW_TARGET __attribute__((target("arch=x86-64-v3")))
#define DW_LANES DW_LANES_32
#define DW_NARROW_LANES DW_LANES_16
#include "conv2d_direct_depthwise.h"
#endif
#define DW_ISA(name) name##_generic
#define DW_TARGET
#define DW_LANES DW_LANES_16
#define DW_NARROW_LANES DW_LANES_16
#include "conv2d_direct_depthwise.h"

static void depthwise_planes(const depthwise_ctx *c, int64_t begin, int64_t end, real *buf) {
#if AI3_MV_ENABLED
    switch (ai3_multiversion_isa()) {
    case AI3_ISA_AVX512: depthwise_planes_avx512(c, begin, end, buf); return;
    case AI3_ISA_AVX2: depthwise_planes_avx2(c, begin, end, buf); return;
    default: break;
    }
#endif
    depthwise_planes_generic(c, begin, end, buf);
}

/* A task's slices [begin, end): one run of planes, in the first slice's
 * buffer. */
static void depthwise_slices(void *vctx, int64_t begin, int64_t end) {
    const depthwise_ctx *c = vctx;
    real *buf = c->buffers + begin * c->slice_elems;
    memset(buf, 0, (size_t)c->slice_elems * sizeof(real));
    const int64_t planes = c->d->n * c->d->c_out;
    depthwise_planes(c, planes * begin / c->slices, planes * end / c->slices, buf);
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
    if (depthwise(&pb->params, d)) {
        depthwise_ctx c = depthwise_layout(&pb->params, d);
        ai3_arena a = {NULL, 0};
        int64_t *off;
        real *buffers;
        return depthwise_carve(&c, &a, &off, &buffers);
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
    if (depthwise(&pb->params, d)) {
        depthwise_ctx c = depthwise_layout(&pb->params, d);
        ai3_arena a = {workspace, 0};
        int64_t *off;
        depthwise_carve(&c, &a, &off, &c.buffers);
        depthwise_offsets(&c, off);
        c.off = off;
        c.x = input->data;
        c.w = pb->weight.data;
        c.b = pb->bias ? pb->bias->data : NULL;
        c.y = output->data;
        const ai3_epilogue *e = d->epilogue;
        if (e && e->act == AI3_ACT_CLAMP && !e->residual) {
            c.clamp = true;
            c.lo = (real)e->lo;
            c.hi = (real)e->hi;
        } else if (e && (e->act != AI3_ACT_NONE || e->residual)) {
            c.epilogue = e;
        }
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
