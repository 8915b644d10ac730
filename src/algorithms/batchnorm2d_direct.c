/* batchnorm2d (inference), direct: the per-channel affine map
 * y = x · scale + shift, with scale = weight / sqrt(var + eps) and
 * shift = bias - mean · scale computed once in double, applied plane by
 * plane (vectorised). Output may alias input. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include <math.h>

typedef struct {
    const real *x;
    real *y;
    int64_t channels, plane;
    const real *scale, *shift;
} bn_ctx;

AI3_MULTIVERSION(bn_planes, void *, ctx, int64_t, begin, int64_t, end) {
    const bn_ctx *c = ctx;
    for (int64_t p = begin; p < end; p++) {
        const real *x = c->x + p * c->plane;
        real *y = c->y + p * c->plane;
        const real a = c->scale[p % c->channels], b = c->shift[p % c->channels];
        for (int64_t i = 0; i < c->plane; i++) y[i] = x[i] * a + b;
    }
}

ai3_status AI3_TYPED(ai3_batchnorm2d_direct)(const ai3_tensor *input,
                                             const ai3_tensor *running_mean,
                                             const ai3_tensor *running_var,
                                             const ai3_tensor *weight, const ai3_tensor *bias,
                                             double eps, ai3_tensor *output) {
    int64_t channels = input->shape[1];
    real *coef = ai3_alloc(2 * sizeof(real) * (size_t)channels);
    if (!coef)
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY,
                             "batchnorm2d direct: cannot allocate %lld channel coefficients",
                             (long long)(2 * channels));
    const real *mean = running_mean->data, *var = running_var->data;
    const real *w = weight ? weight->data : NULL, *b = bias ? bias->data : NULL;
    for (int64_t ch = 0; ch < channels; ch++) {
        double scale = (w ? (double)w[ch] : 1.0) / sqrt((double)var[ch] + eps);
        coef[ch] = (real)scale;
        coef[channels + ch] = (real)((b ? (double)b[ch] : 0.0) - (double)mean[ch] * scale);
    }
    bn_ctx c = {.x = input->data, .y = output->data, .channels = channels,
                .plane = input->shape[2] * input->shape[3],
                .scale = coef, .shift = coef + channels};
    ai3_parallel_for(input->shape[0] * channels, AI3_MAX(1, (1 << 15) / AI3_MAX(1, c.plane)),
                     bn_planes, &c);
    ai3_free(coef);
    return AI3_OK;
}
