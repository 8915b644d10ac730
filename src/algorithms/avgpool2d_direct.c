/* avgpool2d, direct: window sums built a kernel tap at a time over a run of
 * output columns (vectorisable), then divided as torch divides:
 * divisor_override if set, else the window clipped to the padded input
 * (count_include_pad) or to the input itself. The divisor of a window is the
 * product of a row count and a column count, precomputed per axis. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

typedef struct {
    const real *x;
    real *y;
    int64_t h, w, oh, ow;
    int64_t reach_w; /* (ow - 1) · stride_w: how far left of the input a tap may start */
    const ai3_pool2d_params *p;
    const real *count_h, *count_w; /* divisor factors per output row / column */
} pool_ctx;

static void tap_range(int64_t offset, int64_t stride, int64_t size, int64_t n, int64_t *lo,
                      int64_t *hi) {
    int64_t a = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int64_t b = size - offset <= 0 ? 0 : (size - offset - 1) / stride + 1;
    *lo = AI3_MIN(a, n);
    *hi = AI3_MAX(*lo, AI3_MIN(b, n));
}

/* Divisor factor of each of the n windows along an axis. */
static void axis_counts(int64_t n, int64_t size, int64_t kernel, int64_t stride, int64_t pad,
                        int include_pad, real *count) {
    for (int64_t o = 0; o < n; o++) {
        int64_t start = o * stride - pad;
        int64_t end = AI3_MIN(start + kernel, size + pad);
        if (!include_pad) {
            start = AI3_MAX(start, 0);
            end = AI3_MIN(end, size);
        }
        count[o] = (real)(end - start);
    }
}

AI3_MULTIVERSION(avg_planes, void *, ctx, int64_t, begin, int64_t, end) {
    const pool_ctx *c = ctx;
    const ai3_pool2d_params *p = c->p;
    const int64_t sw = p->stride_w;
    const real override = (real)p->divisor_override;
    for (int64_t plane = begin; plane < end; plane++) {
        const real *x = c->x + plane * c->h * c->w;
        real *y = c->y + plane * c->oh * c->ow;
        for (int64_t oh = 0; oh < c->oh; oh++) {
            real *yr = y + oh * c->ow;
            for (int64_t o = 0; o < c->ow; o++) yr[o] = 0;
            /* only the taps that land in the input for some output (as
             * maxpool2d) */
            int64_t ki0, ki1, kj0, kj1;
            tap_range(oh * p->stride_h - p->pad_h, 1, c->h, p->kernel_h, &ki0, &ki1);
            tap_range(c->reach_w - p->pad_w, 1, c->w + c->reach_w, p->kernel_w, &kj0, &kj1);
            for (int64_t ki = ki0; ki < ki1; ki++) {
                int64_t ih = oh * p->stride_h - p->pad_h + ki;
                for (int64_t kj = kj0; kj < kj1; kj++) {
                    int64_t off = kj - p->pad_w, lo, hi;
                    tap_range(off, sw, c->w, c->ow, &lo, &hi);
                    if (lo == hi) continue;
                    const real *xr = x + ih * c->w + lo * sw + off;
                    real *yo = yr + lo;
                    if (sw == 1)
                        for (int64_t o = 0; o < hi - lo; o++) yo[o] += xr[o];
                    else
                        for (int64_t o = 0; o < hi - lo; o++) yo[o] += xr[o * sw];
                }
            }
            if (p->divisor_override) {
                for (int64_t o = 0; o < c->ow; o++) yr[o] /= override;
            } else {
                real ch = c->count_h[oh];
                for (int64_t o = 0; o < c->ow; o++) yr[o] /= ch * c->count_w[o];
            }
        }
    }
}

ai3_status AI3_TYPED(ai3_avgpool2d_direct)(const ai3_tensor *input,
                                           const ai3_pool2d_params *params, ai3_tensor *output) {
    pool_ctx c = {
        .x = input->data, .y = output->data, .p = params,
        .h = input->shape[2], .w = input->shape[3], .oh = output->shape[2], .ow = output->shape[3],
    };
    real *counts = ai3_alloc(sizeof(real) * (size_t)(c.oh + c.ow));
    if (!counts)
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY,
                             "avgpool2d direct: cannot allocate %lld divisor entries",
                             (long long)(c.oh + c.ow));
    axis_counts(c.oh, c.h, params->kernel_h, params->stride_h, params->pad_h,
                params->count_include_pad, counts);
    axis_counts(c.ow, c.w, params->kernel_w, params->stride_w, params->pad_w,
                params->count_include_pad, counts + c.oh);
    c.count_h = counts;
    c.count_w = counts + c.oh;
    c.reach_w = (c.ow - 1) * params->stride_w;
    int64_t per_plane = ai3_size_mul(ai3_size_mul(c.oh, c.ow),
                                     ai3_size_mul(AI3_MIN(params->kernel_h, c.h),
                                                  AI3_MIN(params->kernel_w, c.w)));
    if (per_plane < 0) per_plane = AI3_MAX_ELEMENTS; /* too many to count */
    ai3_parallel_for(input->shape[0] * input->shape[1], AI3_MAX(1, (1 << 16) / per_plane),
                     avg_planes, &c);
    ai3_free(counts);
    return AI3_OK;
}
