/*
 * conv2d "gemm": im2col, then one GEMM per (image, group).
 *
 * Image by image, the input is unrolled into the workspace as the K×N
 * matrix B (zero padding applied while unrolling, other modes from a
 * padded copy), K = C_in/groups·KH·KW rows per group (row
 * (c, ky, kx) holds, for every output position, the input element that tap
 * meets), N = OH·OW columns; then C_out/groups × N = (weights, packed once
 * at prepare) · B, with the bias, straight into the output. A 1×1 stride-1
 * unpadded convolution needs no unrolling: B is the input itself. With
 * AVX2 or AVX-512 the column kernel reads B where it lies (tiles of up to
 * 6 or 14 consecutive positions); otherwise the engine packs it. Where
 * the unrolled image would not fit half the L2 and the padding is zeros,
 * the unrolling goes band by band of output rows instead, each band laid
 * out tile by tile and consumed while in cache (banded).
 *
 * This file also holds what the GEMM-based algorithms share
 * (conv2d_gemm.h).
 */
#include "conv2d_gemm.h"
#include "epilogue.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* --- shared: packed weights ---------------------------------------------- */

void AI3_TYPED(ai3_conv2d_packed_weights_release)(void *state) {
    ai3_conv2d_packed_weights *pw = state;
    if (!pw) return;
    ai3_free(pw->packed);
    ai3_free(pw);
}

ai3_status AI3_TYPED(ai3_conv2d_pack_weights)(ai3_conv2d_problem *pb, bool per_tap) {
    const ai3_tensor *w = &pb->weight;
    const int64_t groups = pb->params.groups, m = w->shape[0] / groups, c_in_g = w->shape[1];
    const int64_t taps = w->shape[2] * w->shape[3];
    ai3_conv2d_packed_weights *pw = ai3_alloc(sizeof *pw);
    if (!pw) return AI3_ERROR_OUT_OF_MEMORY;
    pw->cfg = AI3_TYPED(ai3_gemm_get_config)();
    pw->cols = NULL;
    pw->m = m;
    pw->k = per_tap ? c_in_g : c_in_g * taps;
    pw->blocks = per_tap ? groups * taps : groups;
    /* Rounded so that every block starts 64-byte aligned. */
    pw->block_elems = (AI3_TYPED(ai3_gemm_packed_a_size)(pw->cfg, m, pw->k) + 15) & ~(size_t)15;
    pw->packed = ai3_alloc(pw->block_elems * (size_t)pw->blocks * sizeof(real));
    if (!pw->packed) {
        ai3_free(pw);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    const real *wd = w->data;
    for (int64_t b = 0; b < pw->blocks; b++) {
        real *dst = pw->packed + (size_t)b * pw->block_elems;
        if (per_tap) {
            const int64_t g = b / taps, t = b % taps;
            AI3_TYPED(ai3_gemm_pack_a)(pw->cfg, m, c_in_g, wd + g * m * c_in_g * taps + t,
                                       c_in_g * taps, taps, dst);
        } else {
            AI3_TYPED(ai3_gemm_pack_a)(pw->cfg, m, pw->k, wd + b * m * pw->k, pw->k, 1, dst);
        }
    }
    pb->state = pw;
    return AI3_OK;
}

/* --- shared: running the jobs --------------------------------------------- */

typedef struct {
    ai3_conv2d_gemm_job job;
    void *ctx;
    atomic_int failed;
    ai3_status status;
    char message[256];
} jobs_ctx;

static void job_range(void *vctx, int64_t begin, int64_t end) {
    jobs_ctx *c = vctx;
    for (int64_t i = begin; i < end && !atomic_load(&c->failed); i++) {
        ai3_status s = c->job(c->ctx, i, AI3_GEMM_SINGLE_THREAD);
        if (s != AI3_OK && !atomic_exchange(&c->failed, 1)) {
            c->status = s;
            snprintf(c->message, sizeof c->message, "%s", ai3_last_error());
        }
    }
}

ai3_status AI3_TYPED(ai3_conv2d_run_gemm_jobs)(int64_t jobs, ai3_conv2d_gemm_job job, void *ctx) {
    const int64_t threads = ai3_get_num_threads();
    if (threads > 1 && jobs >= threads && (jobs % threads == 0 || jobs >= 4 * threads)) {
        jobs_ctx c = {.job = job, .ctx = ctx};
        atomic_init(&c.failed, 0);
        ai3_parallel_for(jobs, 1, job_range, &c);
        if (atomic_load(&c.failed)) return ai3_set_error(c.status, "%s", c.message);
        return AI3_OK;
    }
    for (int64_t i = 0; i < jobs; i++) {
        ai3_status s = job(ctx, i, 0);
        if (s != AI3_OK) return s;
    }
    return AI3_OK;
}

/* --- shared: the column kernel's path -------------------------------------- */

ai3_status AI3_TYPED(ai3_conv2d_pack_weights_cols)(ai3_conv2d_problem *pb,
                                                   const ai3_gemm_cols_config *cols) {
    const ai3_tensor *w = &pb->weight;
    const int64_t groups = pb->params.groups, m = w->shape[0] / groups;
    const int64_t k = w->shape[1] * w->shape[2] * w->shape[3], mr = cols->mr;
    const int64_t panels = (m + mr - 1) / mr;
    ai3_conv2d_packed_weights *pw = ai3_alloc(sizeof *pw);
    if (!pw) return AI3_ERROR_OUT_OF_MEMORY;
    *pw = (ai3_conv2d_packed_weights){.cols = cols, .m = m, .k = k, .blocks = groups,
                                      .block_elems = (size_t)(panels * mr * k)};
    pw->packed = ai3_alloc(pw->block_elems * (size_t)groups * sizeof(real));
    if (!pw->packed) {
        ai3_free(pw);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    const real *wd = w->data;
    real *dst = pw->packed;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t s = 0; s < panels; s++)
            for (int64_t p = 0; p < k; p++)
                for (int64_t i = 0; i < mr; i++) {
                    const int64_t row = s * mr + i;
                    *dst++ = row < m ? wd[(g * m + row) * k + p] : 0;
                }
    pb->state = pw;
    return AI3_OK;
}

/* Rows of A a task keeps for its run of tiles: panels up to this many bytes
 * (at least one), so that they stay in L2 with the input they meet. */
#define COLS_CHUNK_BYTES (256 * 1024)

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const ai3_conv2d_cols_b *b;
    real *y;
    int64_t y_offset, chunk_panels, chunks, tiles_per_run, tiles, parts, part_tiles;
    atomic_int failed;
} cols_ctx;

/* Panels of MR output channels in a group's packed weights. */
static int64_t cols_panels(const ai3_conv2d_packed_weights *pw) {
    return (pw->m + pw->cols->mr - 1) / pw->cols->mr;
}

/* Panels per chunk: up to COLS_CHUNK_BYTES of them over kl rows of K, at
 * least one. */
static int64_t cols_chunk_panels(const ai3_conv2d_packed_weights *pw, int64_t kl) {
    const int64_t panel_bytes = pw->cols->mr * kl * (int64_t)sizeof(real);
    return AI3_MAX(1, AI3_MIN(cols_panels(pw), COLS_CHUNK_BYTES / panel_bytes));
}

/* A run of `width` positions is cut into ceil(width / NR) tiles of as even
 * a size as can be (112 into 19 tiles of 5 and 6 with NR = 6, 14 into
 * 5 + 5 + 4 rather than 6 + 6 + 2): a narrow tile has too few
 * accumulators to hide the FMA latency. Tile t is [*x0, *x0 + *cnt). */
static int64_t cols_tiles(const ai3_conv2d_packed_weights *pw, int64_t width) {
    return (width + pw->cols->nr - 1) / pw->cols->nr;
}
static void cols_tile_span(int64_t width, int64_t tiles, int64_t t, int64_t *x0, int *cnt) {
    *x0 = t * width / tiles;
    *cnt = (int)((t + 1) * width / tiles - *x0);
}

/* Panels [s0, s1) of group g, over rows [k0, k0 + kl) of K, times the B
 * tile at b: nr output positions from position `pos` of image n, at y
 * (offset y_offset in the tensor the epilogue's residual indexes). The
 * first rows of K store their sum and the bias, the others add theirs;
 * the epilogue follows the last. */
static void run_panels(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                       const int64_t *off, const real *b, real *y, int64_t y_offset, int64_t n,
                       int64_t g, int64_t s0, int64_t s1, int64_t pos, int nr, int64_t k0,
                       int64_t kl) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    const ai3_gemm_cols_config *cols = pw->cols;
    const int64_t mr = cols->mr, k = pw->k, plane = d->oh * d->ow;
    const real *bias = pb->bias && k0 == 0 ? pb->bias->data : NULL;
    for (int64_t s = s0; s < s1; s++) {
        const int64_t oc = g * d->c_out_g + s * mr;
        const int mrs = (int)AI3_MIN(mr, pw->m - s * mr);
        const int64_t at = (n * d->c_out + oc) * plane + pos;
        cols->kernel(kl, pw->packed + g * pw->block_elems + s * mr * k + k0 * mr, b, off, y + at,
                     plane, mrs, nr, bias ? bias + oc : NULL, k0 > 0);
        if (d->epilogue && k0 + kl == k)
            AI3_TYPED(ai3_epilogue_apply)(y + at, plane,
                                          ai3_epilogue_residual(d->epilogue, y_offset + at),
                                          plane, mrs, nr, d->epilogue);
    }
}

/* Unit u = (image, group, part of the tiles, chunk of panels, tile of the
 * part), the tile fastest, so that a range of units reuses its chunk's
 * panels. One part per thread: each thread then reads its own part of B
 * for every chunk, rather than all of B for its share of the chunks. */
static void cols_units(void *vctx, int64_t begin, int64_t end) {
    cols_ctx *c = vctx;
    const ai3_conv2d_packed_weights *pw = c->pb->state;
    const int64_t panels = cols_panels(pw);
    for (int64_t u = begin; u < end && !atomic_load(&c->failed); u++) {
        int64_t rest = u;
        const int64_t in_part = rest % c->part_tiles;
        rest /= c->part_tiles;
        const int64_t chunk = rest % c->chunks;
        rest /= c->chunks;
        const int64_t tile = rest % c->parts * c->part_tiles + in_part;
        rest /= c->parts;
        const int64_t g = rest % c->d->groups, n = rest / c->d->groups;
        if (tile >= c->tiles) continue;
        const int64_t run = tile / c->tiles_per_run;
        int64_t x0;
        int cnt;
        cols_tile_span(c->b->width, c->tiles_per_run, tile % c->tiles_per_run, &x0, &cnt);
        const int64_t pos = run * c->b->width + x0;
        const int64_t *off = c->b->off;
        const real *b =
            c->b->tile ? c->b->tile(c->b->tile_ctx, n, g, pos, cnt, &off)
                       : c->b->b + n * c->b->b_image + g * c->b->b_group + run * c->b->b_run + x0;
        if (!b) {
            atomic_store(&c->failed, 1);
            return;
        }
        run_panels(c->pb, c->d, off, b, c->y, c->y_offset, n, g, chunk * c->chunk_panels,
                   AI3_MIN((chunk + 1) * c->chunk_panels, panels), pos, cnt, 0, pw->k);
    }
}

ai3_status AI3_TYPED(ai3_conv2d_run_cols)(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                                          const ai3_conv2d_cols_b *b, real *output,
                                          int64_t y_offset) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    const int64_t panels = cols_panels(pw);
    cols_ctx c = {.pb = pb, .d = d, .b = b, .y = output, .y_offset = y_offset};
    c.chunk_panels = cols_chunk_panels(pw, pw->k);
    c.chunks = (panels + c.chunk_panels - 1) / c.chunk_panels;
    c.tiles_per_run = cols_tiles(pw, b->width);
    c.tiles = b->rows * c.tiles_per_run;
    c.parts = AI3_MAX(1, AI3_MIN(ai3_get_num_threads(), c.tiles));
    c.part_tiles = (c.tiles + c.parts - 1) / c.parts;
    atomic_init(&c.failed, 0);
    ai3_parallel_for(d->n * d->groups * c.parts * c.chunks * c.part_tiles, 1, cols_units, &c);
    if (atomic_load(&c.failed))
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "conv2d: no memory for a tile of B");
    return AI3_OK;
}

/* --- gemm ------------------------------------------------------------------ */

/* B is the input itself. */
static bool no_unrolling(const ai3_conv2d_params *p, const ai3_conv2d_dims *d) {
    return d->kh == 1 && d->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && !ai3_conv2d_is_padded(p);
}

/* Zero padding is applied while unrolling; the other modes unroll a padded
 * copy of the image. */
static bool pads_inline(const ai3_conv2d_params *p) {
    return p->padding_mode == AI3_PADDING_ZEROS || !ai3_conv2d_is_padded(p);
}

typedef struct {
    const real *src;     /* one image: C_in planes of src_h × src_w */
    int64_t src_h, src_w;
    int64_t top, left;   /* its padding still to apply (zeros) */
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
    real *col;           /* the whole unrolled image: C_in·KH·KW × OH·OW */
} im2col_ctx;

/* Rows [begin, end) of the unrolled image, at c->col (row k at
 * k·OH·OW). The pieces are short (an output row, split at the padding), so
 * they are copied by inline loops: calls to memcpy and memset cost more
 * than the copy. */
AI3_MULTIVERSION_ATTR(AI3_NO_MEMCPY, im2col_rows, void *, vctx, int64_t, begin, int64_t, end) {
    const im2col_ctx *c = vctx;
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t taps = d->kh * d->kw, sw = p->stride_w, ow = d->ow;
    for (int64_t row = begin; row < end; row++) {
        const int64_t ch = row / taps, ky = row % taps / d->kw, kx = row % d->kw;
        const real *plane = c->src + ch * c->src_h * c->src_w;
        /* input column of output column ox: ox·sw + x0; those in the
         * input are [lo, hi) */
        const int64_t x0 = kx * p->dilation_w - c->left;
        const int64_t lo = x0 < 0 ? AI3_MIN(ow, (-x0 + sw - 1) / sw) : 0;
        const int64_t hi =
            x0 >= c->src_w ? lo : AI3_MAX(lo, AI3_MIN(ow, (c->src_w - 1 - x0) / sw + 1));
        real *restrict o = c->col + row * d->oh * ow;
        for (int64_t oy = 0; oy < d->oh; oy++, o += ow) {
            const int64_t iy = oy * p->stride_h + ky * p->dilation_h - c->top;
            if (iy < 0 || iy >= c->src_h) {
                for (int64_t ox = 0; ox < ow; ox++) o[ox] = 0;
                continue;
            }
            const real *restrict s = plane + iy * c->src_w;
            /* 32-bit positions: a vector of compares per vector of output */
            const int n = (int)ow, l = (int)lo, h = (int)hi;
            if (sw == 1)
                for (int ox = 0; ox < n; ox++) o[ox] = ox >= l && ox < h ? s[x0 + ox] : 0;
            else
                for (int ox = 0; ox < n; ox++) o[ox] = ox >= l && ox < h ? s[x0 + ox * sw] : 0;
        }
    }
}

static im2col_ctx image_source(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                               const real *image, const real *padded) {
    const ai3_conv2d_params *p = &pb->params;
    if (padded)
        return (im2col_ctx){.src = padded, .src_h = d->hp, .src_w = d->wp, .p = p, .d = d};
    return (im2col_ctx){.src = image, .src_h = d->h, .src_w = d->w, .top = p->pad_top,
                        .left = p->pad_left, .p = p, .d = d};
}

/* The banded path: when the unrolled image would not stay in cache, each
 * task unrolls a band of output rows (where K is large, a block of K's
 * rows at a time) into its own buffer of about half the L2 and runs every
 * panel over it, chunk of panels after chunk (as run_cols), so that the
 * unrolled matrix never goes to memory. Unrolled whole, a layer with K in
 * the thousands reads B from rows a whole image row apart, each tile's K
 * rows on as many pages. */
static int64_t band_bytes(void) { return ai3_cpu_l2_bytes() / 2; }

/* The fewest output positions a band holds where a group's weights pass
 * band_bytes(): they then stream from L3 once per band, and with a band of
 * one 28-position row (256 channels, K = 2304: 258 KB unrolled) each panel
 * served five tiles only. Where that many positions of the whole K would
 * pass band_bytes(), K is unrolled and summed in blocks. */
#define BAND_MIN_POSITIONS 128

static int64_t unrolled_row_bytes(const ai3_conv2d_dims *d) {
    return d->c_in * d->kh * d->kw * d->ow * (int64_t)sizeof(real);
}

static bool banded(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    if (!pw->cols || !pads_inline(&pb->params) || no_unrolling(&pb->params, d)) return false;
    return d->oh * unrolled_row_bytes(d) > band_bytes();
}

/* Output rows per band, and (*kc) rows of a group's K per block: bands of at
 * most about band_bytes(), as even as they can be, and, while there are
 * few, a multiple of the threads in all. */
static int64_t band_shape(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, int64_t *kc) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    const int64_t threads = ai3_get_num_threads(), bytes = band_bytes();
    const int64_t column = pw->k * (int64_t)sizeof(real); /* one position, a group's K */
    int64_t rows = AI3_MAX(1, bytes / (column * d->ow));
    *kc = pw->k;
    if (rows < d->oh && rows * d->ow < BAND_MIN_POSITIONS && pw->m * column > bytes) {
        rows = AI3_MIN(d->oh, (BAND_MIN_POSITIONS + d->ow - 1) / d->ow);
        const int64_t blocks = (rows * d->ow * column + bytes - 1) / bytes;
        *kc = (pw->k + blocks - 1) / blocks;
    }
    int64_t bands = (d->oh + rows - 1) / rows;
    if (d->n * bands < 8 * threads)
        while ((d->n * bands) % threads && bands < d->oh) bands++;
    return (d->oh + bands - 1) / bands;
}

/* A band's unrolled rows go tile by tile: tile t of the band (cols_tiles)
 * holds its rows of the K block one after another, NR values each (its cnt
 * positions, then what the next row overwrites), so that the kernel reads
 * a tile's B as whole cache lines rather than a few values from each of
 * kl lines a band's width apart: 4-6% more FLOP/s in the kernel (AVX2, Zen
 * 3). Every row of a tile is then pieces of consecutive positions of one
 * output row, each a copy from the band's input rows, which are first
 * copied with their zero padding. A copy moves whole vectors, up to
 * PIECE_COPY values (what follows the piece is written again after it);
 * the buffers have that much slack. */
#define PIECE_COPY 16
/* The unit of a piece's copy: 32 bytes at any address, one AVX vector. A
 * copy of NR values moves ceil(NR / COPY_UNIT) of them. */
typedef real copy_unit __attribute__((vector_size(32), aligned(sizeof(real)), may_alias));
#define COPY_UNIT ((int)(32 / sizeof(real)))

/* Positions [x0, x0 + len) of a tile's row, from one output row: dst is
 * its offset in the band's tiles, src in a channel's padded rows. */
typedef struct {
    int64_t dst, src;
    int len;
} band_piece;

typedef struct {
    const ai3_conv2d_problem *pb;
    const ai3_conv2d_dims *d;
    const real *input;
    real *y;
    const int64_t *off; /* row k of a tile at k·NR */
    int64_t rows, bands, kc;
    atomic_int failed;
} band_ctx;

/* Input rows (padded) that output rows [oy0, oy1) read. */
static int64_t band_input_rows(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                               int64_t oy0, int64_t oy1) {
    return (oy1 - oy0 - 1) * pb->params.stride_h + (d->kh - 1) * pb->params.dilation_h + 1;
}

/* The elements of a tile: kc rows of NR, and the slack of a copy. */
static int64_t tile_elems(const band_ctx *c) {
    const ai3_conv2d_packed_weights *pw = c->pb->state;
    return c->kc * pw->cols->nr + PIECE_COPY;
}

/* The channels a block of kc rows of K spans, at most. */
static int64_t block_channels(const band_ctx *c) {
    return c->kc / (c->d->kh * c->d->kw) + 2;
}

/* The bytes a task's buffer starts with: a band's pieces, at most one per
 * tile and one more per output row, rounded up to 64. */
static size_t band_pieces_bytes(const band_ctx *c) {
    const int64_t tiles = cols_tiles(c->pb->state, c->rows * c->d->ow);
    return ((size_t)(tiles + c->rows) * sizeof(band_piece) + 63) / 64 * 64;
}

/* One task's buffer, in bytes: pieces, tiles, padded input rows. */
static size_t band_buffer_bytes(const band_ctx *c) {
    const int64_t tiles = cols_tiles(c->pb->state, c->rows * c->d->ow);
    const int64_t rows_in = band_input_rows(c->pb, c->d, 0, c->rows);
    return band_pieces_bytes(c) +
           (size_t)(tiles * tile_elems(c) + block_channels(c) * rows_in * c->d->wp + PIECE_COPY) *
               sizeof(real);
}

/* The pieces of the band of output rows [oy0, oy0 + width / ow) cut into
 * `tiles` tiles; returns their count. */
static int64_t band_pieces(const band_ctx *c, int64_t width, int64_t tiles, band_piece *pc) {
    const ai3_conv2d_params *p = &c->pb->params;
    const int64_t ow = c->d->ow, ts = tile_elems(c);
    int64_t count = 0;
    for (int64_t t = 0; t < tiles; t++) {
        int64_t x0;
        int cnt;
        cols_tile_span(width, tiles, t, &x0, &cnt);
        for (int j = 0; j < cnt;) {
            const int64_t pos = x0 + j, r = pos / ow, ox = pos % ow;
            const int len = (int)AI3_MIN(cnt - j, ow - ox);
            pc[count++] = (band_piece){.dst = t * ts + j,
                                       .src = r * p->stride_h * c->d->wp + ox * p->stride_w,
                                       .len = len};
            j += len;
        }
    }
    return count;
}

/* Channels [ch0, ch1) of image x, input rows from iy0 on (rows of them),
 * into dst with the zero padding: rows × wp per channel. */
static void pad_band_rows(const band_ctx *c, const real *x, int64_t ch0, int64_t ch1,
                          int64_t iy0, int64_t rows, real *dst) {
    const ai3_conv2d_dims *d = c->d;
    const int64_t left = c->pb->params.pad_left, right = d->wp - left - d->w;
    for (int64_t ch = ch0; ch < ch1; ch++)
        for (int64_t r = 0; r < rows; r++, dst += d->wp) {
            const int64_t iy = iy0 + r;
            if (iy < 0 || iy >= d->h) {
                memset(dst, 0, (size_t)d->wp * sizeof(real));
                continue;
            }
            memset(dst, 0, (size_t)left * sizeof(real));
            memcpy(dst + left, x + (ch * d->h + iy) * d->w, (size_t)d->w * sizeof(real));
            memset(dst + left + d->w, 0, (size_t)right * sizeof(real));
        }
}

/* Where a task unrolls its band: the band's pieces, the padded input rows
 * of channels from ch0 on (`plane` apart), its tiles. */
typedef struct {
    const band_piece *pc;
    int64_t pieces;
    real *rows;
    int64_t ch0, plane;
    real *tiles;
} band_unroll;

/* The pieces of a row of K, `units` copy units each (a constant where
 * inlined). */
static inline __attribute__((always_inline)) void copy_pieces(real *dst, const real *src,
                                                              const band_piece *pc,
                                                              int64_t pieces, int units) {
    for (int64_t i = 0; i < pieces; i++)
        for (int v = 0; v < units; v++)
            ((copy_unit *)(dst + pc[i].dst))[v] = ((const copy_unit *)(src + pc[i].src))[v];
}

/* Rows [k0, k0 + kl) of the unrolled band into its tiles: row k of K is
 * channel k / taps, tap k % taps. */
AI3_MULTIVERSION(unroll_tiles, const band_ctx *, c, const band_unroll *, u, int64_t, k0,
                 int64_t, kl) {
    const ai3_conv2d_params *p = &c->pb->params;
    const ai3_conv2d_dims *d = c->d;
    const int64_t taps = d->kh * d->kw, sw = p->stride_w;
    const int nr = ((const ai3_conv2d_packed_weights *)c->pb->state)->cols->nr;
    const band_piece *pc = u->pc;
    const int64_t pieces = u->pieces;
    const int units = (nr + COPY_UNIT - 1) / COPY_UNIT;
    /* row k0's channel and tap, then counted along (no divisions per row) */
    int64_t ch = k0 / taps - u->ch0, ky = k0 % taps / d->kw, kx = k0 % d->kw;
    for (int64_t k = 0; k < kl; k++) {
        const real *src =
            u->rows + ch * u->plane + ky * p->dilation_h * d->wp + kx * p->dilation_w;
        real *dst = u->tiles + k * nr;
        if (sw != 1) {
            for (int64_t i = 0; i < pieces; i++)
                for (int j = 0; j < pc[i].len; j++) dst[pc[i].dst + j] = src[pc[i].src + j * sw];
        } else if (units == 1) {
            copy_pieces(dst, src, pc, pieces, 1);
        } else if (units == 2) {
            copy_pieces(dst, src, pc, pieces, 2);
        } else {
            copy_pieces(dst, src, pc, pieces, PIECE_COPY / COPY_UNIT);
        }
        if (++kx == d->kw) {
            kx = 0;
            if (++ky == d->kh) ky = 0, ch++;
        }
    }
}

/* Unit u = (image, band of output rows). */
static void band_units(void *vctx, int64_t begin, int64_t end) {
    band_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const ai3_conv2d_packed_weights *pw = c->pb->state;
    const int64_t panels = cols_panels(pw), taps = d->kh * d->kw, ts = tile_elems(c);
    char *buf = ai3_thread_buffer(AI3_BUFFER_IM2COL, band_buffer_bytes(c));
    if (!buf) {
        atomic_store(&c->failed, 1);
        return;
    }
    band_piece *pc = (band_piece *)buf;
    band_unroll un = {.pc = pc};
    un.tiles = (real *)(buf + band_pieces_bytes(c));
    for (int64_t u = begin; u < end; u++) {
        const int64_t n = u / c->bands, oy0 = u % c->bands * c->rows;
        const int64_t oy1 = AI3_MIN(d->oh, oy0 + c->rows), width = (oy1 - oy0) * d->ow;
        const int64_t n_tiles = cols_tiles(pw, width);
        const int64_t rows_in = band_input_rows(c->pb, d, oy0, oy1);
        const int64_t iy0 = oy0 * c->pb->params.stride_h - c->pb->params.pad_top;
        un.pieces = band_pieces(c, width, n_tiles, pc);
        un.rows = un.tiles + n_tiles * ts;
        un.plane = rows_in * d->wp;
        const real *x = c->input + n * d->c_in * d->h * d->w;
        for (int64_t g = 0; g < d->groups; g++)
            for (int64_t k0 = 0; k0 < pw->k; k0 += c->kc) {
                const int64_t kl = AI3_MIN(c->kc, pw->k - k0), chunk = cols_chunk_panels(pw, kl);
                const int64_t gk0 = g * pw->k + k0;
                un.ch0 = gk0 / taps;
                pad_band_rows(c, x, un.ch0, (gk0 + kl - 1) / taps + 1, iy0, rows_in, un.rows);
                unroll_tiles(c, &un, gk0, kl);
                for (int64_t s0 = 0; s0 < panels; s0 += chunk)
                    for (int64_t t = 0; t < n_tiles; t++) {
                        int64_t x0;
                        int cnt;
                        cols_tile_span(width, n_tiles, t, &x0, &cnt);
                        run_panels(c->pb, d, c->off, un.tiles + t * ts, c->y, 0, n, g, s0,
                                   AI3_MIN(panels, s0 + chunk), oy0 * d->ow + x0, cnt, k0, kl);
                    }
            }
    }
}

typedef struct {
    const ai3_conv2d_packed_weights *pw;
    const real *b;    /* the image's B: K rows per group, N columns */
    const real *bias;
    real *y;          /* the image's output */
    int64_t y_offset; /* y's offset in the output */
    const ai3_conv2d_dims *d;
} group_ctx;

static ai3_status group_gemm(void *vctx, int64_t g, unsigned flags) {
    const group_ctx *c = vctx;
    const ai3_conv2d_dims *d = c->d;
    const int64_t n_cols = d->oh * d->ow, k = c->pw->k;
    ai3_gemm_operand a = ai3_conv2d_packed_block(c->pw, g);
    ai3_gemm_operand b = ai3_gemm_strided(c->b + g * k * n_cols, n_cols, 1);
    const int64_t offset = g * d->c_out_g * n_cols;
    ai3_epilogue e;
    return AI3_TYPED(ai3_gemm_epilogue)(
        c->pw->cfg, d->c_out_g, n_cols, k, &a, &b, c->y + offset, n_cols,
        c->bias ? c->bias + g * d->c_out_g : NULL, NULL, flags,
        ai3_epilogue_at(d->epilogue, c->y_offset + offset, &e));
}

static ai3_status prepare(ai3_conv2d_problem *pb) {
    const ai3_gemm_cols_config *cols = AI3_TYPED(ai3_gemm_get_cols_config)();
    return cols ? AI3_TYPED(ai3_conv2d_pack_weights_cols)(pb, cols)
                : AI3_TYPED(ai3_conv2d_pack_weights)(pb, false);
}

/* Workspace: for the column kernel, B's row offsets (and its look-ahead
 * past them); unless banded, a padded image (if padded in a mode other
 * than zeros) and one unrolled image. */
static void carve(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                  int64_t **off, real **padded, real **col) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    *off = NULL;
    *padded = *col = NULL;
    if (pw->cols) *off = ai3_arena_take(a, (size_t)(pw->k + pw->cols->lookahead) * sizeof **off);
    if (no_unrolling(&pb->params, d) || banded(pb, d)) return;
    if (!pads_inline(&pb->params))
        *padded = ai3_arena_take(a, (size_t)(d->c_in * d->hp * d->wp) * sizeof(real));
    *col = ai3_arena_take(a, (size_t)(d->c_in * d->kh * d->kw * d->oh * d->ow) * sizeof(real));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    ai3_arena a = {NULL, 0};
    int64_t *off;
    real *padded, *col;
    carve(pb, d, &a, &off, &padded, &col);
    return a.used;
}

/* off[k] = k·stride for B's rows, then the look-ahead entries (prefetched
 * only). */
static void fill_offsets(const ai3_conv2d_packed_weights *pw, int64_t *off, int64_t stride) {
    for (int64_t k = 0; k < pw->k; k++) off[k] = k * stride;
    for (int64_t k = 0; k < pw->cols->lookahead; k++) off[pw->k + k] = 0;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    const ai3_conv2d_packed_weights *pw = pb->state;
    ai3_arena a = {workspace, 0};
    int64_t *off;
    real *padded, *col;
    carve(pb, d, &a, &off, &padded, &col);
    if (banded(pb, d)) {
        int64_t kc;
        const int64_t rows = band_shape(pb, d, &kc);
        band_ctx c = {.pb = pb, .d = d, .input = input->data, .y = output->data, .off = off,
                      .rows = rows, .bands = (d->oh + rows - 1) / rows, .kc = kc};
        atomic_init(&c.failed, 0);
        fill_offsets(pw, off, pw->cols->nr);
        ai3_parallel_for(d->n * c.bands, 1, band_units, &c);
        if (atomic_load(&c.failed))
            return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY,
                                 "conv2d gemm: no memory for a band of the unrolled input");
        return AI3_OK;
    }
    const bool unroll = !no_unrolling(&pb->params, d);
    const int64_t n_cols = d->oh * d->ow;
    if (off) fill_offsets(pw, off, n_cols);
    /* One image at a time. */
    ai3_conv2d_dims d1 = *d;
    d1.n = 1;
    for (int64_t n = 0; n < d->n; n++) {
        const real *x = (const real *)input->data + n * d->c_in * d->h * d->w;
        const real *b = x;
        if (unroll) {
            if (padded) {
                ai3_tensor image = *input;
                image.shape[0] = 1;
                image.data = (void *)x;
                ai3_conv2d_pad_input(&image, &pb->params, &d1, padded);
            }
            im2col_ctx ic = image_source(pb, d, x, padded);
            ic.col = col;
            ai3_parallel_for(d->c_in * d->kh * d->kw, 1, im2col_rows, &ic);
            b = col;
        }
        const int64_t y_offset = n * d->c_out * n_cols;
        real *y = (real *)output->data + y_offset;
        if (off) {
            /* All positions are one run; group g's rows from b + g·K·N. */
            ai3_conv2d_cols_b cb = {.b = b, .b_group = pw->k * n_cols, .off = off, .rows = 1,
                                    .width = n_cols};
            ai3_status s = AI3_TYPED(ai3_conv2d_run_cols)(pb, &d1, &cb, y, y_offset);
            if (s != AI3_OK) return s;
            continue;
        }
        group_ctx gc = {pw, b, pb->bias ? pb->bias->data : NULL, y, y_offset, d};
        ai3_status s = AI3_TYPED(ai3_conv2d_run_gemm_jobs)(d->groups, group_gemm, &gc);
        if (s != AI3_OK) return s;
    }
    return AI3_OK;
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_gemm) = {
    .prepare = prepare,
    .release = AI3_TYPED(ai3_conv2d_packed_weights_release),
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* in the GEMM's tiles */
};
