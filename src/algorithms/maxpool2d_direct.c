/* maxpool2d, direct: for each output row, every kernel tap that lands in the
 * input updates a whole run of output columns at once (a vectorisable loop
 * over ow). Padding acts as -inf; a NaN in a window gives NaN, as in torch. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include <math.h>

typedef struct {
    const real *x;
    real *y;
    int64_t h, w, oh, ow;
    int64_t reach_w; /* (ow - 1) · stride_w: how far left of the input a tap may start */
    const ai3_pool2d_params *p;
} pool_ctx;

/* First output index o >= 0 with o·stride + offset >= 0, and one past the
 * last with o·stride + offset < size (clamped to [0, n]). */
static void tap_range(int64_t offset, int64_t stride, int64_t size, int64_t n, int64_t *lo,
                      int64_t *hi) {
    int64_t a = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int64_t b = size - offset <= 0 ? 0 : (size - offset - 1) / stride + 1;
    *lo = AI3_MIN(a, n);
    *hi = AI3_MAX(*lo, AI3_MIN(b, n));
}

AI3_MULTIVERSION(max_planes, void *, ctx, int64_t, begin, int64_t, end) {
    const pool_ctx *c = ctx;
    const ai3_pool2d_params *p = c->p;
    const int64_t sw = p->stride_w;
    for (int64_t plane = begin; plane < end; plane++) {
        const real *x = c->x + plane * c->h * c->w;
        real *y = c->y + plane * c->oh * c->ow;
        for (int64_t oh = 0; oh < c->oh; oh++) {
            real *yr = y + oh * c->ow;
            for (int64_t o = 0; o < c->ow; o++) yr[o] = -INFINITY;
            /* only the taps that land in the input for some output (a
             * window may be far wider than the input) */
            int64_t ki0, ki1, kj0, kj1;
            tap_range(oh * p->stride_h - p->pad_h, p->dilation_h, c->h, p->kernel_h, &ki0, &ki1);
            tap_range(c->reach_w - p->pad_w, p->dilation_w, c->w + c->reach_w, p->kernel_w, &kj0,
                      &kj1);
            for (int64_t ki = ki0; ki < ki1; ki++) {
                int64_t ih = oh * p->stride_h - p->pad_h + ki * p->dilation_h;
                for (int64_t kj = kj0; kj < kj1; kj++) {
                    int64_t off = kj * p->dilation_w - p->pad_w, lo, hi;
                    tap_range(off, sw, c->w, c->ow, &lo, &hi);
                    if (lo == hi) continue;
                    const real *xr = x + ih * c->w + lo * sw + off;
                    real *yo = yr + lo;
                    if (sw == 1) {
                        for (int64_t o = 0; o < hi - lo; o++) {
                            real v = xr[o];
                            yo[o] = (v > yo[o] || v != v) ? v : yo[o];
                        }
                    } else {
                        for (int64_t o = 0; o < hi - lo; o++) {
                            real v = xr[o * sw];
                            yo[o] = (v > yo[o] || v != v) ? v : yo[o];
                        }
                    }
                }
            }
        }
    }
}

ai3_status AI3_TYPED(ai3_maxpool2d_direct)(const ai3_tensor *input,
                                           const ai3_pool2d_params *params, ai3_tensor *output) {
    pool_ctx c = {
        .x = input->data, .y = output->data, .p = params,
        .h = input->shape[2], .w = input->shape[3], .oh = output->shape[2], .ow = output->shape[3],
    };
    c.reach_w = (c.ow - 1) * params->stride_w;
    /* (-1, too many to count, when above 2^56) */
    int64_t per_plane = ai3_size_mul(ai3_size_mul(c.oh, c.ow),
                                     ai3_size_mul(AI3_MIN(params->kernel_h, c.h),
                                                  AI3_MIN(params->kernel_w, c.w)));
    if (per_plane < 0) per_plane = AI3_MAX_ELEMENTS;
    ai3_parallel_for(input->shape[0] * input->shape[1], AI3_MAX(1, (1 << 16) / per_plane),
                     max_planes, &c);
    return AI3_OK;
}
