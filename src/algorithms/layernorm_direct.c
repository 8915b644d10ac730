/* layernorm, direct: each row (the last normalized_ndim dimensions) gets
 * its mean and biased variance in two passes in double (eight partial sums
 * so the loops vectorise), then y = (x - mean) · rstd · weight + bias.
 * Rows are split over the pool. Output may alias input: a row is read
 * completely before it is written. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include <math.h>

typedef struct {
    const real *x, *w, *b;
    real *y;
    int64_t len;
    double eps;
} ln_ctx;

AI3_MULTIVERSION(ln_rows, void *, ctx, int64_t, begin, int64_t, end) {
    const ln_ctx *c = ctx;
    const int64_t len = c->len;
    for (int64_t r = begin; r < end; r++) {
        const real *x = c->x + r * len;
        real *y = c->y + r * len;
        double part[8] = {0}, sum = 0;
        int64_t k = 0;
        for (; k + 8 <= len; k += 8)
            for (int j = 0; j < 8; j++) part[j] += (double)x[k + j];
        for (; k < len; k++) sum += (double)x[k];
        for (int j = 0; j < 8; j++) sum += part[j];
        const double mean = sum / (double)len;
        double sq[8] = {0}, ss = 0;
        for (k = 0; k + 8 <= len; k += 8)
            for (int j = 0; j < 8; j++) {
                double d = (double)x[k + j] - mean;
                sq[j] += d * d;
            }
        for (; k < len; k++) ss += ((double)x[k] - mean) * ((double)x[k] - mean);
        for (int j = 0; j < 8; j++) ss += sq[j];
        const real rstd = (real)(1.0 / sqrt(ss / (double)len + c->eps));
        /* The mean as a sum of two reals, subtracted one after the other:
         * x - hi is exact when x is near the mean, so a small variance
         * does not magnify the rounding of the mean. */
        const real hi = (real)mean, lo = (real)(mean - (double)hi);
        if (c->w && c->b)
            for (k = 0; k < len; k++) y[k] = (x[k] - hi - lo) * rstd * c->w[k] + c->b[k];
        else if (c->w)
            for (k = 0; k < len; k++) y[k] = (x[k] - hi - lo) * rstd * c->w[k];
        else if (c->b)
            for (k = 0; k < len; k++) y[k] = (x[k] - hi - lo) * rstd + c->b[k];
        else
            for (k = 0; k < len; k++) y[k] = (x[k] - hi - lo) * rstd;
    }
}

ai3_status AI3_TYPED(ai3_layernorm_direct)(const ai3_tensor *input, int normalized_ndim,
                                           const ai3_tensor *weight, const ai3_tensor *bias,
                                           double eps, ai3_tensor *output) {
    int64_t len = 1;
    for (int d = input->ndim - normalized_ndim; d < input->ndim; d++) len *= input->shape[d];
    ln_ctx c = {.x = input->data, .y = output->data, .len = len, .eps = eps,
                .w = weight ? weight->data : NULL, .b = bias ? bias->data : NULL};
    int64_t rows = ai3_tensor_numel(input) / len;
    ai3_parallel_for(rows, AI3_MAX(1, (1 << 14) / len), ln_rows, &c);
    return AI3_OK;
}
