/*
 * conv2d on channel-blocked activations (blocked.h), direct. A tile of up to
 * BK_MR output pixels of one row × two channel blocks (a "pair", 2·cb output
 * channels) stays in registers while it sums over input blocks, taps and the
 * channels of a block: a broadcast per pixel, two weight vectors per
 * channel. Depthwise tiles are pixels × one block, a weight vector per tap.
 * Weights are packed once, in the order the tiles read them.
 *
 * Edges: pixels whose taps reach into the left or right padding are computed
 * one at a time over their valid taps, so that the tiles of a row's interior
 * need no bounds checks; rows' taps are clipped per row. To keep such slow
 * pixels rare, blocked input of a convolution over all channels is first
 * copied with its padding (and a strided 1×1's pixels gathered, to run as one
 * long row), and a depthwise task copies a small plane with its padding into
 * L1. A 1×1 at stride 1 runs each plane as one long row, so 7×7 planes get
 * full tiles.
 */
#include "blocked.h"
#include "epilogue.h"

#include <stdatomic.h>
#include <string.h>

#if AI3_MV_ENABLED
#include <immintrin.h>
#endif

struct ai3_blocked_conv2d {
    int cb;
    bool depthwise;
    int64_t c_in, c_out, kh, kw;
    ai3_conv2d_params p;
    int64_t in_blocks, out_blocks;
    /* one group: per pair [ib][kh][kw][channel of block][nv·cb] (nv: the
     * pair's blocks, 2, or 1 for a last odd block), pair q at 2q·block_w;
     * depthwise: [block][kh][kw][cb]. Zero for pad channels. */
    float *w;
    int64_t block_w; /* weights per output block */
    float *bias;     /* Cp_out, zero where there is none */
    /* F(2×2) and F(4×4) Winograd weights, once prepared (3×3 stride 1) */
    ai3_blocked_winograd *_Atomic winograd[2];
};

/* n pixels in tiles of near-equal widths, each at most mr (7 pixels in
 * tiles of at most 6: 4 + 3, not 6 + 1): `tiles` tiles of `width` pixels,
 * the first `wide` of them one wider. The tiles are walked by adding their
 * widths: no division per tile (a 1×1 tile over 16 input channels is about
 * 100 cycles of FMAs). */
typedef struct {
    int64_t tiles, width, wide;
} even_tiles;

static even_tiles split_evenly(int64_t n, int64_t mr) {
    const int64_t tiles = (n + mr - 1) / mr;
    return tiles ? (even_tiles){tiles, n / tiles, n % tiles} : (even_tiles){0, 0, 0};
}

static inline int tile_width(const even_tiles *s, int64_t i) {
    return (int)(s->width + (i < s->wide));
}

/* What every tile of a run shares. Offsets are in floats. */
typedef struct {
    const ai3_blocked_conv2d *k;
    const ai3_conv2d_params *p; /* the padding as in x */
    const float *x;
    float *y;
    const float *res;
    const ai3_epilogue *e;
    ai3_activation act; /* in registers (blocked_vec.h's finish) */
    bool act_after;     /* gelu: applied after the store instead */
    float lo, hi;
    int64_t h, w, oh, ow;      /* as computed: a flattened 1×1 is one row of h·w */
    int64_t ps, cs, bs;        /* input pixel, channel and block strides */
    int64_t in_image;          /* input floats per image */
    int64_t kh_step, kw_step;  /* input offset of one tap down, one tap right */
    int64_t xs;                /* input offset between neighbouring output pixels */
    int xsk; /* constant in the tiles: xs in blocks when 1 or 2, minus xs in floats for plain
                input when 1 or 2 (then in whole tiles only), else 0 */
    int64_t out_plane;         /* floats of one output block plane */
    int64_t ow_lo, ow_hi;      /* interior pixels [ow_lo, max(ow_lo, ow_hi)): all kw taps valid */
    even_tiles row_tiles;      /* a whole row's interior in tiles */
    int64_t groups_per_image;  /* output pairs (or depthwise blocks) */
    int64_t chunks, chunk_px;  /* row chunks (or pixel chunks of a flattened row) per group */
    int64_t k_blocks;          /* input blocks per pass over a chunk: their weights fit L1 */
    /* rows of at most half a tile, all pixels interior (7×7 planes, their
     * input padded first): a tile takes two whole rows, row_step apart in
     * the input and adjacent in the output */
    bool two_rows;
    int64_t row_step;
    /* rows that tile into narrow tiles (7 pixels: 4 + 3 on AVX2), all
     * pixels interior: a chunk's rows run as one run of pixels (run_wrapped) */
    bool wrap;
    bool flat;
    /* depthwise on small padded planes: each task copies its plane with the
     * padding into L1 (local), and runs on it with `unpadded` */
    bool local;
    ai3_conv2d_params unpadded;
} run_ctx;

/* One tile's position. */
typedef struct {
    const float *w, *bias;
    float *y;
    const float *res;
    int64_t x_off, kh0, kh1, kw0, kw1;
    int64_t ib0, ib1; /* the input blocks summed now: the first start at zero,
                         the others add to what the tile stored before */
    int split; /* 0, or a tile of two rows: pixels from split on are the next row's */
    /* the input: pixels from x_split on are read x_jump floats further on
     * (0: none; a tile across the end of an output row, run_wrapped) */
    int x_split;
    int64_t x_jump;
    /* the output: pixels from y_split on are stored y_jump floats further
     * on (0: none; a tile across a row end of a padded buffer) */
    int y_split;
    int64_t y_jump;
} tile_args;

typedef void (*tile_fn)(const run_ctx *c, const tile_args *t, int mr, int nv);

/* Pixels per tile. 32 zmm registers: 14 pixels × 2 vectors, two weights and
 * a broadcast; 16 ymm: 6 × 2 + 3. A depthwise tile needs a register per
 * pixel and one for the weight. */
#define MR_AVX512 14
#define DW_MR_AVX512 14
#define MR_AVX2 6
#define DW_MR_AVX2 12

/* How many tiles ahead a 1×1 tile asks for its input's next pixels: the
 * plane streams from L3 or memory in in_blocks streams at once, more than
 * the hardware prefetchers follow (AVX2 on Zen 3, batch 8: ResNet-50's and
 * MobileNetV2's 1×1 layers 1.4-1.9× faster so). */
#define PFX_TILES 2

#if AI3_MV_ENABLED
#define BK_ISA(name) name##_avx512
#define BK_TARGET __attribute__((target("arch=x86-64-v4")))
#define BK_LANES 16
#define BK_SET1(x) _mm512_set1_ps(x)
#define BK_MR MR_AVX512
#define BK_DW_MR DW_MR_AVX512
#include "conv2d_blocked_kernels.h"
#define BK_ISA(name) name##_avx2
#define BK_TARGET __attribute__((target("arch=x86-64-v3")))
#define BK_LANES 8
#define BK_SET1(x) _mm256_set1_ps(x)
#define BK_MR MR_AVX2
#define BK_DW_MR DW_MR_AVX2
#include "conv2d_blocked_kernels.h"
#endif

/* The widest tile of conv k, in pixels. */
static int tile_pixels(const ai3_blocked_conv2d *k) {
    if (k->cb == 16) return k->depthwise ? DW_MR_AVX512 : MR_AVX512;
    return k->depthwise ? DW_MR_AVX2 : MR_AVX2;
}

int ai3_blocked_conv2d_tile_pixels(const ai3_blocked_conv2d *k) { return tile_pixels(k); }

int ai3_blocked_width(void) {
#if AI3_MV_ENABLED
    switch (ai3_cpu_isa()) {
    case AI3_ISA_AVX512: return 16;
    case AI3_ISA_AVX2: return 8;
    default: break;
    }
#endif
    return 0;
}

/* --- creation ---------------------------------------------------------------- */

static ai3_status check_params(const ai3_tensor *weight, const ai3_tensor *bias,
                               const ai3_conv2d_params *p, int cb) {
    if (!weight || !weight->data || !p)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "blocked conv2d: NULL weight or params");
    if (weight->dtype != AI3_FLOAT32 || (bias && bias->dtype != AI3_FLOAT32))
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "blocked conv2d: weight and bias must be float32");
    if (weight->ndim != 4 || weight->shape[0] < 1 || weight->shape[1] < 1 ||
        weight->shape[2] < 1 || weight->shape[3] < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "blocked conv2d: weight must be (C_out, C_in/groups, KH, KW)");
    if (bias && (!bias->data || bias->ndim != 1 || bias->shape[0] != weight->shape[0]))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "blocked conv2d: bias must be (C_out) = (%lld)",
                             (long long)weight->shape[0]);
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 ||
        p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "blocked conv2d: strides and dilations must be >= 1, padding >= 0");
    if (p->padding_mode != AI3_PADDING_ZEROS)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "blocked conv2d: padding_mode must be zeros");
    if (p->groups != 1 && !(weight->shape[1] == 1 && weight->shape[0] == p->groups))
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "blocked conv2d: groups = %lld must be 1, or C_in = C_out = groups "
                             "(depthwise)",
                             (long long)p->groups);
    /* a width the CPU runs: its tiles are compiled for that ISA */
    const ai3_isa need = cb == 16 ? AI3_ISA_AVX512 : AI3_ISA_AVX2;
    if (!AI3_MV_ENABLED || (cb != 8 && cb != 16) || ai3_cpu_best_isa() < need)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "blocked conv2d: block width %d is not one this CPU runs", cb);
    return AI3_OK;
}

/* Where weight (oc, ic, tap t) of a convolution over all channels is
 * packed in k->w. */
static inline int64_t packed_at(const ai3_blocked_conv2d *k, int64_t oc, int64_t ic, int64_t t) {
    const int64_t cb = k->cb, ob = oc / cb, nv = AI3_MIN(2, k->out_blocks - ob / 2 * 2);
    const int64_t at = ((ic / cb * k->kh * k->kw + t) * cb + ic % cb) * nv + ob % 2;
    return ob / 2 * 2 * k->block_w + at * cb + oc % cb;
}

/* The packed weights and bias (zeros outside the real channels). */
static void pack(ai3_blocked_conv2d *k, const float *w, const float *b) {
    const int64_t cb = k->cb, taps = k->kh * k->kw;
    if (k->depthwise) {
        for (int64_t c = 0; c < k->c_out; c++)
            for (int64_t t = 0; t < taps; t++)
                k->w[(c / cb * taps + t) * cb + c % cb] = w[c * taps + t];
    } else {
        for (int64_t oc = 0; oc < k->c_out; oc++)
            for (int64_t ic = 0; ic < k->c_in; ic++)
                for (int64_t t = 0; t < taps; t++)
                    k->w[packed_at(k, oc, ic, t)] = w[(oc * k->c_in + ic) * taps + t];
    }
    if (b) memcpy(k->bias, b, (size_t)k->c_out * sizeof(float));
}

ai3_status ai3_blocked_conv2d_create(const ai3_tensor *weight, const ai3_tensor *bias,
                                     const ai3_conv2d_params *params, int cb,
                                     ai3_blocked_conv2d **out) {
    if (!out) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "blocked conv2d: NULL out");
    *out = NULL;
    ai3_status st = check_params(weight, bias, params, cb);
    if (st != AI3_OK) return st;
    ai3_blocked_conv2d *k = ai3_alloc(sizeof *k);
    if (!k) return AI3_ERROR_OUT_OF_MEMORY;
    *k = (ai3_blocked_conv2d){.cb = cb,
                              .depthwise = params->groups != 1,
                              .c_out = weight->shape[0],
                              .kh = weight->shape[2],
                              .kw = weight->shape[3],
                              .p = *params};
    k->c_in = k->depthwise ? k->c_out : weight->shape[1];
    k->in_blocks = ai3_blocked_channels(k->c_in, cb) / cb;
    k->out_blocks = ai3_blocked_channels(k->c_out, cb) / cb;
    k->block_w = (k->depthwise ? 1 : k->in_blocks * cb) * k->kh * k->kw * cb;
    const int64_t w_elems = ai3_size_mul(k->out_blocks, k->block_w);
    if (w_elems < 0) {
        ai3_free(k);
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "blocked conv2d: weight too large");
    }
    k->w = ai3_alloc((size_t)w_elems * sizeof(float));
    k->bias = ai3_alloc((size_t)(k->out_blocks * cb) * sizeof(float));
    if (!k->w || !k->bias) {
        ai3_blocked_conv2d_destroy(k);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    memset(k->w, 0, (size_t)w_elems * sizeof(float));
    memset(k->bias, 0, (size_t)(k->out_blocks * cb) * sizeof(float));
    pack(k, weight->data, bias ? bias->data : NULL);
    *out = k;
    return AI3_OK;
}

void ai3_blocked_conv2d_destroy(ai3_blocked_conv2d *conv) {
    if (!conv) return;
    for (int i = 0; i < 2; i++) ai3_blocked_winograd_destroy(atomic_load(&conv->winograd[i]));
    ai3_free(conv->w);
    ai3_free(conv->bias);
    ai3_free(conv);
}

bool ai3_blocked_conv2d_depthwise(const ai3_blocked_conv2d *conv) { return conv->depthwise; }

/* --- running ------------------------------------------------------------------ */

/* Taps [*t0, *t1) of `taps` (dilation dil) whose input position base + t·dil
 * lies in [0, size). */
static void valid_taps(int64_t base, int64_t taps, int64_t dil, int64_t size, int64_t *t0,
                       int64_t *t1) {
    /* (no division without dilation, nor for all taps inside: it is per row
     * and per edge pixel) */
    if (dil == 1) {
        *t0 = AI3_MIN(taps, AI3_MAX(0, -base));
        *t1 = AI3_MAX(*t0, AI3_MIN(taps, size - base));
        return;
    }
    *t0 = base >= 0 ? 0 : (-base + dil - 1) / dil;
    const int64_t end = size - base;
    *t1 = end > (taps - 1) * dil ? taps : end <= 0 ? 0 : (end + dil - 1) / dil;
    if (*t1 < *t0) *t1 = *t0;
}

/* m of the Winograd F(m×m, 3×3) conv k runs by for an output of n × oh × ow,
 * or 0 (direct). */
static int winograd_tile(const ai3_blocked_conv2d *k, int64_t n, int64_t oh, int64_t ow) {
    const ai3_conv2d_params *p = &k->p;
    if (k->depthwise || k->kh != 3 || k->kw != 3 || p->stride_h != 1 || p->stride_w != 1 ||
        p->dilation_h != 1 || p->dilation_w != 1)
        return 0;
    return ai3_blocked_winograd_tile(k->c_in, k->c_out, n, oh, ow);
}

bool ai3_blocked_conv2d_preferred(const ai3_blocked_conv2d *k, int64_t n, int64_t oh,
                                  int64_t ow) {
    if (winograd_tile(k, n, oh, ow)) return true;
    /* 3×3 stride-1 layers over >= 128 channels go faster by plain Winograd,
     * two conversions included, from 392 output pixels of a batch on (the
     * transformed weights are 16/9 as large, so small outputs at batch 1
     * stay here): measured at batch 1, 10-35% on 28×28 planes and more
     * (VGG16's; ResNet-50's within 10% either way); at batch 8, ResNet-50's
     * 14×14 and 7×7 layers made the network 12% faster, VGG16 8%. AVX-512,
     * 2 threads. */
    const ai3_conv2d_params *p = &k->p;
    bool winograd = !k->depthwise && k->kh == 3 && k->kw == 3 && p->stride_h == 1 &&
                    p->stride_w == 1 && p->dilation_h == 1 && p->dilation_w == 1;
    return !(winograd && k->c_in >= 128 && k->c_out >= 128 && n * oh * ow >= 392);
}

const char *ai3_blocked_conv2d_algorithm(const ai3_blocked_conv2d *k, int64_t n, int64_t oh,
                                         int64_t ow) {
    const int m = winograd_tile(k, n, oh, ow);
    if (m && atomic_load(&k->winograd[m / 4]))
        return k->cb == 16 ? "winograd (NCHW16c)" : "winograd (NCHW8c)";
    return k->cb == 16 ? "direct (NCHW16c)" : "direct (NCHW8c)";
}

ai3_status ai3_blocked_conv2d_prepare(ai3_blocked_conv2d *k, int64_t n, int64_t oh, int64_t ow) {
    const int m = winograd_tile(k, n, oh, ow);
    if (!m || atomic_load(&k->winograd[m / 4])) return AI3_OK;
    /* the layer's weights back from their packing */
    float *w = ai3_alloc((size_t)(k->c_out * k->c_in * 9) * sizeof(float));
    if (!w) return AI3_ERROR_OUT_OF_MEMORY;
    for (int64_t oc = 0; oc < k->c_out; oc++)
        for (int64_t ic = 0; ic < k->c_in; ic++)
            for (int64_t t = 0; t < 9; t++)
                w[(oc * k->c_in + ic) * 9 + t] = k->w[packed_at(k, oc, ic, t)];
    ai3_tensor weight = {.dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU, .ndim = 4,
                         .shape = {k->c_out, k->c_in, 3, 3}, .data = w};
    ai3_tensor bias = {.dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU, .ndim = 1,
                       .shape = {k->c_out}, .data = k->bias};
    ai3_blocked_winograd *wg;
    ai3_status st = ai3_blocked_winograd_create(&weight, &bias, m, k->cb, &wg);
    ai3_free(w);
    if (st == AI3_OK) atomic_store(&k->winograd[m / 4], wg);
    return st;
}

/* The tile of pixels [ow, ow + mr) of the row at x_row, y_row. */
static inline void row_tile(const run_ctx *c, tile_fn tile, tile_args *t, int64_t x_row,
                            int64_t y_row, int64_t ow, int mr, int nv) {
    const int64_t iw0 = c->flat ? ow : ow * c->p->stride_w - c->p->pad_left;
    t->x_off = x_row + iw0 * c->ps;
    t->y = c->y + y_row + ow * c->k->cb;
    t->res = c->res ? c->res + y_row + ow * c->k->cb : NULL;
    tile(c, t, mr, nv);
}

/* Output pixels [ow0, ow1) of output row oh, for output group g (a pair, or
 * a depthwise block) of image img: edge pixels one by one over their valid
 * taps, the interior in tiles of up to mr_max. */
static void run_row(const run_ctx *c, tile_fn tile, int mr_max, int64_t img, int64_t g,
                    int64_t oh, int64_t ow0, int64_t ow1, int64_t ib0, bool two_rows) {
    const ai3_blocked_conv2d *k = c->k;
    const ai3_conv2d_params *p = c->p;
    const int64_t cb = k->cb;
    const int64_t ih0 = c->flat ? 0 : oh * p->stride_h - p->pad_top;
    /* the group's first output block, and where its input starts */
    const int64_t ob = k->depthwise ? g : 2 * g;
    const int nv = k->depthwise ? 1 : (int)AI3_MIN(2, k->out_blocks - ob);
    /* (field by field: a zeroing initializer became a 120-byte `rep stos`
     * per row, 1% of MobileNetV2's time in its depthwise rows) */
    tile_args t;
    t.w = k->w + ob * k->block_w;
    t.bias = k->bias + ob * cb;
    t.ib0 = ib0;
    t.ib1 = AI3_MIN(k->in_blocks, ib0 + c->k_blocks);
    t.split = t.x_split = t.y_split = 0;
    t.x_jump = t.y_jump = 0;
    valid_taps(ih0, k->kh, p->dilation_h, c->h, &t.kh0, &t.kh1);
    const int64_t x_row = img * c->in_image + (k->depthwise ? g * c->bs : 0) + ih0 * c->w * c->ps;
    const int64_t y_row = ((img * k->out_blocks + ob) * c->oh + oh) * c->ow * cb;

    if (two_rows) { /* rows oh and oh + 1, whole: one tile */
        t.kw0 = 0;
        t.kw1 = k->kw;
        t.split = (int)c->ow;
        row_tile(c, tile, &t, x_row, y_row, 0, (int)(2 * c->ow), nv);
        return;
    }
    const int64_t inner_end = AI3_MAX(c->ow_lo, c->ow_hi);
    const int64_t in0 = AI3_MAX(ow0, c->ow_lo), in1 = AI3_MIN(ow1, inner_end);
    for (int64_t ow = ow0; ow < ow1;) {
        if (ow == in0 && in0 < in1) {
            /* the interior in tiles of near-equal widths (a whole row's
             * worked out once per run: two divisions a row were a cost of
             * their own in depthwise rows of 7 and 14 pixels) */
            const even_tiles s = in0 == c->ow_lo && in1 == inner_end
                                     ? c->row_tiles
                                     : split_evenly(in1 - in0, mr_max);
            t.kw0 = 0;
            t.kw1 = k->kw;
            for (int64_t i = 0, at = in0; i < s.tiles; at += tile_width(&s, i), i++)
                row_tile(c, tile, &t, x_row, y_row, at, tile_width(&s, i), nv);
            ow = in1;
            continue;
        }
        const int64_t iw0 = c->flat ? ow : ow * p->stride_w - p->pad_left;
        valid_taps(iw0, k->kw, p->dilation_w, c->w, &t.kw0, &t.kw1);
        row_tile(c, tile, &t, x_row, y_row, ow, 1, nv);
        ow++;
    }
}

/* Output rows [oh0, oh1) of pair g of image img (c->wrap: no edges), input
 * blocks from ib0, in tiles of near-equal widths over all their pixels, as
 * if one row: a tile may run past a row end (at most one: ow >= mr_max), and
 * reads its pixels after it from the next input row. Rows of 7 and 14
 * pixels so run in tiles of 5-6 (AVX2), not 4 + 3 or 5 + 5 + 4 a row: 13%
 * faster on 512 channels at 7×7. False, and nothing done, where the rows are
 * too few for tiles of the widest or one less. */
static bool run_wrapped(const run_ctx *c, tile_fn tile, int mr_max, int64_t img, int64_t g,
                        int64_t oh0, int64_t oh1, int64_t ib0) {
    const ai3_blocked_conv2d *k = c->k;
    const even_tiles s = split_evenly((oh1 - oh0) * c->ow, mr_max);
    if (s.width < mr_max - 1) return false;
    const int64_t cb = k->cb, ob = 2 * g;
    const int nv = (int)AI3_MIN(2, k->out_blocks - ob);
    tile_args t = {.w = k->w + ob * k->block_w, .bias = k->bias + ob * cb, .kh1 = k->kh,
                   .kw1 = k->kw, .ib0 = ib0, .ib1 = AI3_MIN(k->in_blocks, ib0 + c->k_blocks)};
    const int64_t y0 = ((img * k->out_blocks + ob) * c->oh + oh0) * c->ow * cb;
    for (int64_t i = 0, at = 0, row = oh0, col = 0; i < s.tiles; i++) {
        const int len = tile_width(&s, i);
        t.x_off = img * c->in_image + row * c->row_step + col * c->xs;
        t.x_split = (int)AI3_MIN(len, c->ow - col);
        t.x_jump = t.x_split < len ? c->row_step - c->ow * c->xs : 0;
        t.y = c->y + y0 + at * cb;
        t.res = c->res ? c->res + y0 + at * cb : NULL;
        tile(c, &t, len, nv);
        at += len;
        col += len;
        if (col >= c->ow) col -= c->ow, row++;
    }
    return true;
}

/* Floats of a plane copied for a depthwise task (on the stack, in L1). */
#define LOCAL_PLANE_FLOATS 4096

/* Rows [oh0, oh1) of depthwise block g of image img from a copy of its plane
 * with the padding around it: with no edges, every row runs in whole tiles
 * with all taps, which matters where rows are short (7, 14 pixels). */
static void run_local(const run_ctx *c, tile_fn tile, int mr_max, int64_t img, int64_t g,
                      int64_t oh0, int64_t oh1) {
    const ai3_conv2d_params *p = c->p;
    const int64_t cb = c->k->cb, w = c->w;
    const int64_t hp = c->h + p->pad_top + p->pad_bottom, wp = w + p->pad_left + p->pad_right;
    float plane[LOCAL_PLANE_FLOATS] __attribute__((aligned(64)));
    const float *x = c->x + img * c->in_image + g * c->bs;
    for (int64_t r = 0; r < hp; r++) {
        float *dst = plane + r * wp * cb;
        const int64_t ih = r - p->pad_top;
        if (ih < 0 || ih >= c->h) {
            memset(dst, 0, (size_t)(wp * cb) * sizeof(float));
            continue;
        }
        memset(dst, 0, (size_t)(p->pad_left * cb) * sizeof(float));
        memcpy(dst + p->pad_left * cb, x + ih * w * cb, (size_t)(w * cb) * sizeof(float));
        memset(dst + (p->pad_left + w) * cb, 0, (size_t)(p->pad_right * cb) * sizeof(float));
    }
    run_ctx local = *c;
    local.x = plane;
    local.p = &c->unpadded;
    local.h = hp;
    local.w = wp;
    local.in_image = local.bs = 0;
    local.kh_step = p->dilation_h * wp * cb;
    local.ow_lo = 0;
    local.ow_hi = c->ow;
    local.row_tiles = split_evenly(c->ow, mr_max);
    for (int64_t oh = oh0; oh < oh1; oh++)
        run_row(&local, tile, mr_max, img, g, oh, 0, c->ow, 0, false);
}

/* Tasks [begin, end): (image, chunk of rows or of a flattened row's pixels,
 * group), the group fastest: where a plane is split in chunks (a small
 * batch), a thread's share of the tasks is a share of the pixels, all
 * channels, as in the layers before and after it (threadpool.c). (Unused where no ISA has tiles: ai3_blocked_width() is 0.) */
__attribute__((unused)) static void run_tasks(const run_ctx *c, tile_fn tile, int mr_max, int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; task++) {
        const int64_t g = task % c->groups_per_image, rest = task / c->groups_per_image;
        const int64_t chunk = rest % c->chunks, img = rest / c->chunks;
        if (c->local) {
            run_local(c, tile, mr_max, img, g, c->oh * chunk / c->chunks,
                      c->oh * (chunk + 1) / c->chunks);
            continue;
        }
        /* each pass over the chunk's outputs sums k_blocks input blocks,
         * whose weights stay in L1 through all its tiles */
        for (int64_t ib0 = 0; ib0 < c->k->in_blocks; ib0 += c->k_blocks) {
            if (c->flat) {
                run_row(c, tile, mr_max, img, g, 0, chunk * c->chunk_px,
                        AI3_MIN(c->ow, (chunk + 1) * c->chunk_px), ib0, false);
            } else {
                const int64_t oh0 = c->oh * chunk / c->chunks;
                const int64_t oh1 = c->oh * (chunk + 1) / c->chunks;
                if (c->wrap && run_wrapped(c, tile, mr_max, img, g, oh0, oh1, ib0)) continue;
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    const bool two = c->two_rows && oh + 1 < oh1;
                    run_row(c, tile, mr_max, img, g, oh, 0, c->ow, ib0, two);
                    oh += two;
                }
            }
        }
    }
}

#if AI3_MV_ENABLED
static void tasks_avx512(void *vctx, int64_t begin, int64_t end) {
    const run_ctx *c = vctx;
    run_tasks(c, c->k->depthwise ? dw_tile_any_avx512 : conv_tile_any_avx512,
              tile_pixels(c->k), begin, end);
}

static void tasks_avx2(void *vctx, int64_t begin, int64_t end) {
    const run_ctx *c = vctx;
    run_tasks(c, c->k->depthwise ? dw_tile_any_avx2 : conv_tile_any_avx2, tile_pixels(c->k),
              begin, end);
}
#endif

/* Tasks per thread aimed at, so that two threads end together; fewer when
 * that would split planes too small to be worth it. */
#define TASKS_PER_THREAD 8
/* Bytes of a pair's weights one pass of tiles reads (L1 is 32-48 KiB; the
 * tiles' inputs and outputs take the rest). */
#define L1_WEIGHT_BYTES (24 << 10)
/* Weights from which a layer's threads may split its output channels
 * rather than its pixels (launch): ResNet-50 at batch 1 ran 2-3% faster so
 * (its 1024→256 1×1 and 256-channel stride-2 3×3 layers), on an Intel Xeon
 * whose cores each read about 12 GB/s from L3; split so also below this
 * size, EfficientNet-B0 ran slower. */
#define SPLIT_WEIGHT_BYTES ((int64_t)1 << 20)

/* What every tile of the convolution with parameters p (the layer's, or
 * with the padding already in the input) on input (n, C_in, h, w) into
 * output (oh, ow) shares; the split into tasks is the caller's. */
static run_ctx make_ctx(const ai3_blocked_conv2d *k, const ai3_conv2d_params *p,
                        const float *input, bool in_blocked, int64_t h, int64_t w, int64_t oh,
                        int64_t ow, float *output, const ai3_epilogue *epilogue) {
    const int64_t cb = k->cb;
    const bool flat = k->kh == 1 && k->kw == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                      p->pad_top == 0 && p->pad_bottom == 0 && p->pad_left == 0 &&
                      p->pad_right == 0;
    run_ctx c = {.k = k, .p = p, .x = input, .y = output, .e = epilogue, .flat = flat};
    if (epilogue) {
        c.res = epilogue->residual;
        c.act = epilogue->act;
        c.act_after = ai3_blocked_act_after(epilogue);
        c.lo = (float)epilogue->lo;
        c.hi = (float)epilogue->hi;
    }
    c.h = flat ? 1 : h;
    c.w = flat ? h * w : w;
    c.oh = flat ? 1 : oh;
    c.ow = flat ? h * w : ow;
    c.ps = in_blocked ? cb : 1;
    c.cs = in_blocked ? 1 : h * w;
    c.bs = cb * h * w;
    c.in_image = in_blocked ? k->in_blocks * c.bs : k->c_in * h * w;
    c.kh_step = p->dilation_h * c.w * c.ps;
    c.kw_step = p->dilation_w * c.ps;
    c.xs = (flat ? 1 : p->stride_w) * c.ps;
    c.xsk = !in_blocked ? (c.xs == 1 ? -1 : c.xs == 2 ? -2 : 0)
                        : (c.xs == cb ? 1 : c.xs == 2 * cb ? 2 : 0);
    c.out_plane = c.oh * c.ow * cb;
    const int64_t sw = flat ? 1 : p->stride_w, pl = flat ? 0 : p->pad_left;
    c.ow_lo = (pl + sw - 1) / sw;
    /* the first pixel whose last tap passes the right edge */
    const int64_t last = c.w - 1 - (k->kw - 1) * p->dilation_w + pl;
    c.ow_hi = last < 0 ? 0 : AI3_MIN(c.ow, last / sw + 1);
    c.row_tiles = split_evenly(AI3_MAX(c.ow_lo, c.ow_hi) - c.ow_lo, tile_pixels(k));

    /* (a depthwise block has only its own input block) */
    const int64_t block_bytes = k->kh * k->kw * cb * 2 * cb * (int64_t)sizeof(float);
    const int64_t fit = AI3_MAX(1, L1_WEIGHT_BYTES / block_bytes);
    const int64_t passes = (k->in_blocks + fit - 1) / fit; /* near-equal: 8 + 8, not 12 + 4 */
    c.k_blocks = k->depthwise ? k->in_blocks : (k->in_blocks + passes - 1) / passes;
    c.two_rows = !flat && !k->depthwise && c.xsk > 0 && c.ow_lo == 0 && c.ow_hi >= c.ow &&
                 p->pad_top == 0 && p->pad_bottom == 0 && 2 * c.ow <= tile_pixels(k) &&
                 2 * c.ow >= tile_pixels(k) / 2;
    c.row_step = p->stride_h * c.w * c.ps;
    /* (the interior is then the whole row, row_tiles its tiles) */
    c.wrap = !flat && !k->depthwise && !c.two_rows && c.xsk > 0 && c.ow_lo == 0 &&
             c.ow_hi >= c.ow && p->pad_top == 0 && p->pad_bottom == 0 &&
             c.ow >= tile_pixels(k) && c.row_tiles.width < tile_pixels(k) - 1;
    c.unpadded = *p;
    c.unpadded.pad_top = c.unpadded.pad_bottom = c.unpadded.pad_left = c.unpadded.pad_right = 0;
    c.local = k->depthwise && !flat && (c.ow_lo > 0 || c.ow_hi < c.ow) &&
              (h + p->pad_top + p->pad_bottom) * (w + p->pad_left + p->pad_right) * cb <=
                  LOCAL_PLANE_FLOATS;
    c.groups_per_image = k->depthwise ? k->out_blocks : (k->out_blocks + 1) / 2;
    c.chunks = 1;
    c.chunk_px = c.ow;
    return c;
}

/* The convolution over the thread pool (see make_ctx). */
static void launch(const ai3_blocked_conv2d *k, const ai3_conv2d_params *p, const float *input,
                   bool in_blocked, int64_t n, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   float *output, const ai3_epilogue *epilogue) {
    run_ctx c = make_ctx(k, p, input, in_blocked, h, w, oh, ow, output, epilogue);
    const int64_t groups = n * c.groups_per_image, threads = ai3_get_num_threads();
    const int64_t want = TASKS_PER_THREAD * threads;
    c.chunks = groups >= want ? 1 : (want + groups - 1) / groups;
    /* Where the weights are large and outweigh the input, each thread takes
     * whole groups of output channels (if they share out evenly), so that it
     * reads only its part of the weights rather than all of them for its
     * pixels: at batch 1 such layers wait on their weights. */
    const int64_t weight_bytes = k->out_blocks * k->block_w * (int64_t)sizeof(float);
    const bool split = !k->depthwise && weight_bytes >= SPLIT_WEIGHT_BYTES &&
                       weight_bytes > n * c.in_image * (int64_t)sizeof(float) &&
                       groups >= 2 * threads && (groups % threads == 0 || groups >= 4 * threads);
    if (split) c.chunks = 1;
    if (c.flat) {
        /* whole tiles per chunk */
        const int64_t mr = tile_pixels(k);
        const int64_t tiles = (c.ow + mr - 1) / mr;
        /* Chunks whose input stays in L2 while each pair (the task after)
         * reads it, rather than every pair reading all the plane from L3. */
        const int64_t chunk_bytes = c.in_image / c.ow * mr * (int64_t)sizeof(float);
        if (!split && c.groups_per_image > 1)
            c.chunks = AI3_MAX(c.chunks, tiles * chunk_bytes / (ai3_cpu_l2_bytes() / 2) + 1);
        c.chunks = AI3_MIN(c.chunks, tiles);
        c.chunk_px = (tiles + c.chunks - 1) / c.chunks * mr;
        c.chunks = (c.ow + c.chunk_px - 1) / c.chunk_px;
    } else {
        /* a chunk of at least a few pixels */
        c.chunks = AI3_MAX(1, AI3_MIN(c.chunks, c.oh * c.ow / 16));
        c.chunks = AI3_MIN(c.chunks, c.oh);
    }
#if AI3_MV_ENABLED
    ai3_parallel_for(groups * c.chunks, 1, k->cb == 16 ? tasks_avx512 : tasks_avx2, &c);
#endif
}

void ai3_blocked_conv2d_run_pairs(const ai3_blocked_conv2d *k, const float *x, int64_t pixels,
                                  int64_t pair0, int64_t pair1, float *y) {
    run_ctx c = make_ctx(k, &k->p, x, true, 1, pixels, 1, pixels, y, NULL);
#if AI3_MV_ENABLED
    (k->cb == 16 ? tasks_avx512 : tasks_avx2)(&c, pair0, pair1);
#else
    (void)c, (void)pair0, (void)pair1;
#endif
}

/* An input prepared for a convolution over all channels: pixel (i, j) of
 * each plane of (hq, wq) (a block's, cb floats a pixel, or a plain
 * channel's, one) is the input's (i·sy - top, j·sx - left), zero outside it. With steps 1, the input with its padding around it; with a
 * 1×1 kernel's strides, the pixels it reads. */
typedef struct {
    const float *x;
    float *y;
    int64_t h, w, cb, top, left, sy, sx, hq, wq;
} prep_ctx;

static void prepare_rows(void *vctx, int64_t begin, int64_t end) {
    const prep_ctx *c = vctx;
    const int64_t cb = c->cb;
    for (int64_t r = begin; r < end; r++) { /* r: a prepared row of all planes */
        float *restrict dst = c->y + r * c->wq * cb;
        const int64_t plane = r / c->hq, ih = r % c->hq * c->sy - c->top;
        if (ih < 0 || ih >= c->h) {
            memset(dst, 0, (size_t)(c->wq * cb) * sizeof(float));
            continue;
        }
        const float *restrict src = c->x + (plane * c->h + ih) * c->w * cb;
        if (c->sx == 1) { /* zeros, the row, zeros */
            const int64_t left = AI3_MIN(c->left, c->wq), right = AI3_MAX(0, c->wq - left - c->w);
            memset(dst, 0, (size_t)(left * cb) * sizeof(float));
            memcpy(dst + left * cb, src, (size_t)((c->wq - left - right) * cb) * sizeof(float));
            memset(dst + (c->wq - right) * cb, 0, (size_t)(right * cb) * sizeof(float));
            continue;
        }
        for (int64_t j = 0; j < c->wq; j++, dst += cb) {
            const int64_t iw = j * c->sx - c->left;
            if (iw < 0 || iw >= c->w) memset(dst, 0, (size_t)cb * sizeof(float));
            else memcpy(dst, src + iw * cb, (size_t)cb * sizeof(float));
        }
    }
}

void ai3_blocked_pad(const float *x, int64_t planes, int64_t h, int64_t w, int cb, int64_t top,
                     int64_t left, int64_t hq, int64_t wq, float *y) {
    prep_ctx pc = {.x = x, .y = y, .h = h, .w = w, .cb = cb, .top = top, .left = left,
                   .sy = 1, .sx = 1, .hq = hq, .wq = wq};
    ai3_parallel_for(planes * hq, 16, prepare_rows, &pc);
}

/* The output plane (oh, ow) of conv k on an input plane (h, w), or
 * AI3_ERROR_INVALID_ARGUMENT where it would be empty. */
static ai3_status output_size(const ai3_blocked_conv2d *k, int64_t h, int64_t w, int64_t *oh,
                              int64_t *ow) {
    const ai3_conv2d_params *p = &k->p;
    const int64_t hspan = h + p->pad_top + p->pad_bottom - p->dilation_h * (k->kh - 1) - 1;
    const int64_t wspan = w + p->pad_left + p->pad_right - p->dilation_w * (k->kw - 1) - 1;
    if (hspan < 0 || wspan < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "blocked conv2d: output size below 1 for input %lldx%lld",
                             (long long)h, (long long)w);
    *oh = hspan / p->stride_h + 1;
    *ow = wspan / p->stride_w + 1;
    return AI3_OK;
}

ai3_status ai3_blocked_conv2d_run(const ai3_blocked_conv2d *conv, const float *input,
                                  bool in_blocked, int64_t n, int64_t h, int64_t w,
                                  float *output, const ai3_epilogue *epilogue) {
    if (!conv || !input || !output || n < 0 || h < 1 || w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "blocked conv2d: NULL pointer or bad input size");
    const ai3_blocked_conv2d *k = conv;
    const ai3_conv2d_params *p = &k->p;
    if (k->depthwise && !in_blocked)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "blocked conv2d: a depthwise convolution needs blocked input");
    int64_t oh = 0, ow = 0;
    const ai3_status size = output_size(k, h, w, &oh, &ow);
    if (size != AI3_OK || n == 0) return size;
    const int m = in_blocked ? winograd_tile(k, n, oh, ow) : 0;
    const ai3_blocked_winograd *wg = m ? atomic_load(&k->winograd[m / 4]) : NULL;
    if (wg) return ai3_blocked_winograd_run(wg, p, input, n, h, w, output, epilogue);
    const bool padded = p->pad_top || p->pad_bottom || p->pad_left || p->pad_right;
    const bool one = k->kh == 1 && k->kw == 1;
    /* The input is prepared in a pass over memory, small beside the
     * arithmetic of a convolution over all channels (not of a depthwise
     * one): copied with its padding, every output pixel has all its taps and
     * rows run in whole tiles, with no single-pixel edges; a strided 1×1
     * reads the pixels it needs gathered, as one long row of whole tiles.
     * Plain input (a network's first layer) is prepared plane by plane. */
    if (k->depthwise || !(padded || (one && (p->stride_h > 1 || p->stride_w > 1)))) {
        launch(k, p, input, in_blocked, n, h, w, oh, ow, output, epilogue);
        return AI3_OK;
    }
    const int64_t cb = in_blocked ? k->cb : 1; /* floats per pixel of a prepared plane */
    prep_ctx pc = {.x = input, .h = h, .w = w, .cb = cb, .top = p->pad_top,
                   .left = p->pad_left, .sy = one ? p->stride_h : 1, .sx = one ? p->stride_w : 1,
                   .hq = one ? oh : h + p->pad_top + p->pad_bottom,
                   .wq = one ? ow : w + p->pad_left + p->pad_right};
    const int64_t planes = n * (in_blocked ? k->in_blocks : k->c_in);
    const int64_t elems = ai3_size_mul(ai3_size_mul(planes, pc.hq), pc.wq * cb);
    if (elems < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "blocked conv2d: input too large");
    pc.y = ai3_thread_buffer(AI3_BUFFER_BLOCKED_CONV, (size_t)elems * sizeof(float));
    if (!pc.y) return AI3_ERROR_OUT_OF_MEMORY;
    ai3_parallel_for(planes * pc.hq, 16, prepare_rows, &pc);
    ai3_conv2d_params inner = *p;
    inner.pad_top = inner.pad_bottom = inner.pad_left = inner.pad_right = 0;
    if (one) inner.stride_h = inner.stride_w = 1;
    launch(k, &inner, pc.y, in_blocked, n, pc.hq, pc.wq, oh, ow, output, epilogue);
    return AI3_OK;
}

/* --- a 1×1 convolution inside the depthwise one that reads it ----------------- */

/* Bytes of a task's band buffer (a pair of blocks' expanded rows with the
 * depthwise padding): in L2 with the band's input. */
#define EXPAND_BAND_BYTES ((int64_t)128 << 10)

typedef struct {
    run_ctx e, d;          /* the 1×1's tiles (out_plane: the buffer's) and the depthwise's */
    int64_t h, w;          /* the 1×1's input and output planes */
    int64_t oh, ow;        /* the depthwise's output */
    int64_t band, bands;   /* output rows per task; bands per image */
    int64_t rows, wp;      /* the buffer: per block, rows × wp pixels (padded) */
    atomic_int failed;
} expand_ctx;

/* Input rows (padded) a band of `rows_out` output rows of dw reads. */
static int64_t band_rows(const ai3_blocked_conv2d *dw, int64_t rows_out) {
    return (rows_out - 1) * dw->p.stride_h + (dw->kh - 1) * dw->p.dilation_h + 1;
}

static int64_t padded_width(const ai3_blocked_conv2d *dw, int64_t w) {
    return w + dw->p.pad_left + dw->p.pad_right;
}

bool ai3_blocked_conv2d_expand_fusable(const ai3_blocked_conv2d *expand,
                                       const ai3_blocked_conv2d *dw, int64_t w) {
    const ai3_conv2d_params *p = &expand->p;
    return !expand->depthwise && dw->depthwise && expand->cb == dw->cb &&
           expand->kh == 1 && expand->kw == 1 && p->stride_h == 1 && p->stride_w == 1 &&
           !p->pad_top && !p->pad_bottom && !p->pad_left && !p->pad_right &&
           expand->c_out == dw->c_in && dw->kh * dw->kw > 1 &&
           2 * band_rows(dw, 1) * padded_width(dw, w) * dw->cb * (int64_t)sizeof(float) <=
               EXPAND_BAND_BYTES;
}

/* Task (image, band, pair): the pair's expanded rows for the band, padding
 * zeroed, then its depthwise output rows. (Unused where no ISA has tiles.) */
__attribute__((unused)) static void expand_task(expand_ctx *c, tile_fn conv_tile, int conv_mr,
                                                tile_fn dw_tile, int dw_mr, int64_t task) {
    const ai3_blocked_conv2d *ke = c->e.k, *kd = c->d.k;
    const ai3_conv2d_params *pd = &kd->p;
    const int64_t cb = ke->cb, pairs = (ke->out_blocks + 1) / 2;
    const int64_t q = task % pairs, b = task / pairs % c->bands, img = task / pairs / c->bands;
    const int64_t ob = 2 * q, nv = AI3_MIN(2, ke->out_blocks - ob);
    const int64_t oh0 = b * c->band, oh1 = AI3_MIN(c->oh, oh0 + c->band);
    const int64_t rows = band_rows(kd, oh1 - oh0), row0 = oh0 * pd->stride_h - pd->pad_top;
    const int64_t plane = c->rows * c->wp * cb; /* floats per block in the buffer */
    float *buf = ai3_thread_buffer(AI3_BUFFER_EXPAND_BAND,
                                   (size_t)(2 * plane) * sizeof(float));
    if (!buf) {
        atomic_store(&c->failed, 1);
        return;
    }
    /* the padding: rows outside the input, columns left and right */
    for (int64_t v = 0; v < nv; v++)
        for (int64_t r = 0; r < rows; r++) {
            float *dst = buf + v * plane + r * c->wp * cb;
            const int64_t ih = row0 + r;
            if (ih < 0 || ih >= c->h) {
                memset(dst, 0, (size_t)(c->wp * cb) * sizeof(float));
                continue;
            }
            memset(dst, 0, (size_t)(pd->pad_left * cb) * sizeof(float));
            memset(dst + (pd->pad_left + c->w) * cb, 0, (size_t)(pd->pad_right * cb) * sizeof(float));
        }
    /* the 1×1 into the rows inside the input, in tiles of near-equal widths
     * over all their pixels, which are consecutive in the input: a tile may
     * run past a row end (at most one: tiles of at most w pixels), its
     * pixels after it stored on the next row of the buffer, past the
     * padding. Rows of 7 and 14 pixels so run in whole tiles of 5-6 (AVX2),
     * not in tiles of 4 + 3 or 5 + 5 + 4 per row. */
    const int64_t r0 = AI3_MAX(0, -row0), r1 = AI3_MIN(rows, c->h - row0);
    const even_tiles s = split_evenly(AI3_MAX(0, r1 - r0) * c->w, AI3_MIN(conv_mr, c->w));
    tile_args t = {.w = ke->w + ob * ke->block_w, .bias = ke->bias + ob * cb, .kh1 = 1, .kw1 = 1};
    for (int64_t ib0 = 0; ib0 < ke->in_blocks; ib0 += c->e.k_blocks) {
        t.ib0 = ib0;
        t.ib1 = AI3_MIN(ke->in_blocks, ib0 + c->e.k_blocks);
        for (int64_t i = 0, at = 0, r = r0, col = 0; i < s.tiles; i++) {
            const int len = tile_width(&s, i);
            t.x_off = img * c->e.in_image + ((row0 + r0) * c->w + at) * cb;
            t.y = buf + (r * c->wp + pd->pad_left + col) * cb;
            t.y_split = AI3_MIN(len, (int)(c->w - col));
            t.y_jump = t.y_split < len ? (c->wp - c->w) * cb : 0;
            conv_tile(&c->e, &t, len, (int)nv);
            at += len;
            col += len;
            if (col >= c->w) col -= c->w, r++;
        }
    }
    /* the depthwise on the buffer: its output rows oh0.. as rows 0.. of a
     * convolution without padding whose output starts at row oh0 */
    run_ctx d = c->d;
    d.y = c->d.y + oh0 * c->ow * cb;
    d.res = c->d.res ? c->d.res + oh0 * c->ow * cb : NULL;
    for (int64_t v = 0; v < nv; v++) {
        d.x = buf + v * plane;
        for (int64_t oh = 0; oh < oh1 - oh0; oh++)
            run_row(&d, dw_tile, dw_mr, img, ob + v, oh, 0, c->ow, 0, false);
    }
}

#if AI3_MV_ENABLED
static void expand_tasks_avx512(void *vctx, int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; task++)
        expand_task(vctx, conv_tile_any_avx512, MR_AVX512, dw_tile_any_avx512, DW_MR_AVX512, task);
}

static void expand_tasks_avx2(void *vctx, int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; task++)
        expand_task(vctx, conv_tile_any_avx2, MR_AVX2, dw_tile_any_avx2, DW_MR_AVX2, task);
}
#endif

ai3_status ai3_blocked_conv2d_run_expand_dw(const ai3_blocked_conv2d *expand,
                                            const ai3_epilogue *e1, const ai3_blocked_conv2d *dw,
                                            const ai3_epilogue *e2, const float *input, int64_t n,
                                            int64_t h, int64_t w, float *output) {
    if (!expand || !dw || !input || !output || n < 0 || h < 1 || w < 1 ||
        !ai3_blocked_conv2d_expand_fusable(expand, dw, w) || (e1 && e1->residual))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "blocked conv2d: a 1x1 and depthwise pair that cannot run fused");
    const ai3_conv2d_params *p = &dw->p;
    expand_ctx c = {.h = h, .w = w, .wp = padded_width(dw, w)};
    const ai3_status size = output_size(dw, h, w, &c.oh, &c.ow);
    if (size != AI3_OK || n == 0) return size;
    c.e = make_ctx(expand, &expand->p, input, true, h, w, h, w, NULL, e1);
    /* the largest band in the buffer, fewer rows where that leaves the
     * threads too few tasks */
    const int64_t row_bytes = 2 * c.wp * dw->cb * (int64_t)sizeof(float);
    int64_t band = 1;
    while (band < c.oh && band_rows(dw, band + 1) * row_bytes <= EXPAND_BAND_BYTES) band++;
    const int64_t pairs = (expand->out_blocks + 1) / 2;
    const int64_t want = TASKS_PER_THREAD * ai3_get_num_threads();
    const int64_t bands_wanted = (want + n * pairs - 1) / (n * pairs);
    band = AI3_MAX(1, AI3_MIN(band, (c.oh + bands_wanted - 1) / bands_wanted));
    c.band = band;
    c.bands = (c.oh + band - 1) / band;
    c.rows = band_rows(dw, band);
    c.e.out_plane = c.rows * c.wp * dw->cb;
    ai3_conv2d_params unpadded = *p;
    unpadded.pad_top = unpadded.pad_bottom = unpadded.pad_left = unpadded.pad_right = 0;
    c.d = make_ctx(dw, &unpadded, NULL, true, c.rows, c.wp, c.oh, c.ow, output, e2);
    c.d.in_image = c.d.bs = 0; /* (each block's rows from its own part of the buffer) */
    atomic_init(&c.failed, 0);
#if AI3_MV_ENABLED
    ai3_parallel_for(n * c.bands * pairs, 1,
                     dw->cb == 16 ? expand_tasks_avx512 : expand_tasks_avx2, &c);
#endif
    if (atomic_load(&c.failed))
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "blocked conv2d: no band buffer");
    return AI3_OK;
}
