/*
 * The operations on channel-blocked float32 values (algorithms/blocked.h)
 * other than conv2d: the conversions from and to plain NCHW, max and average
 * pooling, the global average pool and the channel scale of squeeze and
 * excitation. Every loop works on whole blocks, one vector of cb channels
 * per pixel (blocked_ops_kernels.h, included once per width), spread over
 * the thread pool by (image, channel block) and, where a plane is large,
 * rows or chunks of pixels. The pad channels of every output are zero.
 */
#include "algorithms/blocked.h"

#include <math.h>

/* Pixels per work item of the conversions and the channel scale: enough to
 * amortise an item, few enough to split a large plane over the threads
 * (a multiple of 16, so that only a plane's last chunk has a ragged end). */
#define CHUNK 1024

/* Elements a thread should handle at least, so that small tensors do not
 * pay for waking the pool. */
#define MIN_WORK ((int64_t)1 << 15)

typedef struct {
    const float *src;
    float *dst;
    int64_t c, hw;
    int64_t nb, chunks; /* blocks per image, chunks per plane */
} convert_ctx;

/* A conversion's work item: pixels [p0, p1) of one channel block, its
 * `valid` real channels' plain rows from offset `plain`, its blocked plane
 * at offset `blocked`. */
typedef struct {
    int64_t p0, p1, plain, blocked;
    int valid;
} convert_item;

static inline convert_item convert_item_of(const convert_ctx *cx, int64_t item, int cb) {
    const int64_t plane = item / cx->chunks, p0 = item % cx->chunks * CHUNK;
    const int64_t img = plane / cx->nb, c0 = plane % cx->nb * cb;
    return (convert_item){.p0 = p0, .p1 = AI3_MIN(cx->hw, p0 + CHUNK),
                          .plain = (img * cx->c + c0) * cx->hw, .blocked = plane * cx->hw * cb,
                          .valid = (int)AI3_MIN(cb, cx->c - c0)};
}

typedef struct {
    const float *x;
    float *y;
    int64_t c, nb; /* channels, blocks per image */
    int64_t h, w, oh, ow;
    /* output columns whose windows lie inside the input (no clipping) */
    int64_t interior_lo, interior_hi;
    bool max;
    const ai3_pool2d_params *p;
} pool_ctx;

typedef struct {
    const float *x, *s; /* s: the channel scale (scale_channels only) */
    float *y;
    int64_t c, nb; /* channels, blocks per image */
    int64_t hw, chunks;
} plane_ctx;

/* The taps o in [0, n) at offset + o·stride inside [0, size): [lo, hi). */
static inline void tap_range(int64_t offset, int64_t stride, int64_t size, int64_t n,
                             int64_t *lo, int64_t *hi) {
    int64_t first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int64_t past = offset >= size ? 0 : (size - offset - 1) / stride + 1;
    *lo = AI3_MIN(first, n);
    *hi = AI3_MAX(*lo, AI3_MIN(past, n));
}

#define BK_LO_16 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define BK_HI_16 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#define BK_LO_8 0, 8, 1, 9, 2, 10, 3, 11
#define BK_HI_8 4, 12, 5, 13, 6, 14, 7, 15
#define BK_IOTA_16 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
#define BK_IOTA_8 0, 1, 2, 3, 4, 5, 6, 7

#define BK_CB 16
#define BK(name) name##_16
#define BK_LO BK_LO_16
#define BK_HI BK_HI_16
#define BK_IOTA BK_IOTA_16
#include "blocked_ops_kernels.h"

#define BK_CB 8
#define BK(name) name##_8
#define BK_LO BK_LO_8
#define BK_HI BK_HI_8
#define BK_IOTA BK_IOTA_8
#include "blocked_ops_kernels.h"

/* Items of `per_item` elements each per thread: at least one, and about
 * MIN_WORK elements. */
static int64_t grain(int64_t per_item) { return AI3_MAX(1, MIN_WORK / AI3_MAX(1, per_item)); }

/* The conversions and the channel scale split each plane into chunks. */
static int64_t chunk_count(int64_t hw) { return (hw + CHUNK - 1) / CHUNK; }

/* cb is 16 or 8 (blocked.h); the void functions take it as given. */

void ai3_blocked_from_plain(const float *x, int64_t n, int64_t c, int64_t hw, int cb, float *y) {
    convert_ctx cx = {.src = x, .dst = y, .c = c, .hw = hw,
                      .nb = ai3_blocked_channels(c, cb) / cb, .chunks = chunk_count(hw)};
    ai3_parallel_for(n * cx.nb * cx.chunks, grain(AI3_MIN(hw, CHUNK) * cb),
                     cb == 16 ? from_plain_items_16 : from_plain_items_8, &cx);
}

void ai3_blocked_to_plain(const float *x, int64_t n, int64_t c, int64_t hw, int cb, float *y) {
    convert_ctx cx = {.src = x, .dst = y, .c = c, .hw = hw,
                      .nb = ai3_blocked_channels(c, cb) / cb, .chunks = chunk_count(hw)};
    ai3_parallel_for(n * cx.nb * cx.chunks, grain(AI3_MIN(hw, CHUNK) * cb),
                     cb == 16 ? to_plain_items_16 : to_plain_items_8, &cx);
}

ai3_status ai3_blocked_pool2d(bool max, const ai3_pool2d_params *params, const float *x,
                              int64_t n, int64_t c, int64_t h, int64_t w, int cb, float *y) {
    const char *op = max ? "maxpool2d (blocked)" : "avgpool2d (blocked)";
    if (cb != 16 && cb != 8)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: block width %d is not 16 or 8",
                             op, cb);
    /* the plain operations' checks and output shape, on a view of the
     * logical shape */
    ai3_tensor view = {.data = ai3_shape_only, .dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU,
                       .ndim = 4, .shape = {n, c, h, w}};
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = max ? ai3_maxpool2d_output_shape(&view, params, &ndim, shape)
                       : ai3_avgpool2d_output_shape(&view, params, &ndim, shape);
    if (s != AI3_OK) return s;
    pool_ctx pc = {.x = x, .y = y, .c = c, .nb = ai3_blocked_channels(c, cb) / cb, .h = h, .w = w, .oh = shape[2], .ow = shape[3],
                   .max = max, .p = params};
    /* interior columns j: j·sw - pw >= 0 and j·sw - pw + (kw - 1)·dw < w */
    const int64_t sw = params->stride_w;
    pc.interior_lo = AI3_MIN(pc.ow, (params->pad_w + sw - 1) / sw);
    int64_t last = w - 1 + params->pad_w - (params->kernel_w - 1) * params->dilation_w;
    pc.interior_hi = last < 0 ? pc.interior_lo
                              : AI3_MAX(pc.interior_lo, AI3_MIN(pc.ow, last / sw + 1));
    int64_t planes = n * pc.nb;
    /* (the size checks bound oh·ow·cb; the taps are clamped to the input) */
    int64_t taps = ai3_size_mul(AI3_MIN(params->kernel_h, h), AI3_MIN(params->kernel_w, w));
    int64_t per_row = ai3_size_mul(ai3_size_mul(pc.ow, cb), taps);
    if (per_row < 0) per_row = AI3_MAX_ELEMENTS;
    ai3_parallel_for(planes * pc.oh, grain(per_row), cb == 16 ? pool_items_16 : pool_items_8,
                     &pc);
    return AI3_OK;
}

void ai3_blocked_global_avgpool(const float *x, int64_t n, int64_t c, int64_t hw, int cb,
                                float *y) {
    plane_ctx mc = {.x = x, .y = y, .c = c, .nb = ai3_blocked_channels(c, cb) / cb, .hw = hw};
    ai3_parallel_for(n * mc.nb, grain(hw * cb),
                     cb == 16 ? mean_items_16 : mean_items_8, &mc);
}

void ai3_blocked_scale_channels(const float *x, const float *s, int64_t n, int64_t c,
                                int64_t hw, int cb, float *y) {
    plane_ctx sc = {.x = x, .s = s, .y = y, .c = c, .nb = ai3_blocked_channels(c, cb) / cb,
                    .hw = hw, .chunks = chunk_count(hw)};
    ai3_parallel_for(n * sc.nb * sc.chunks,
                     grain(AI3_MIN(hw, CHUNK) * cb),
                     cb == 16 ? scale_items_16 : scale_items_8, &sc);
}
