/* Reference batchnorm2d (inference): (x - mean) / sqrt(var + eps) · weight
 * + bias, element by element in double. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <math.h>

ai3_status AI3_TYPED(ai3_ref_batchnorm2d)(const ai3_tensor *input, const ai3_tensor *running_mean,
                                          const ai3_tensor *running_var, const ai3_tensor *weight,
                                          const ai3_tensor *bias, double eps, ai3_tensor *output) {
    const real *x = input->data, *mean = running_mean->data, *var = running_var->data;
    const real *w = weight ? weight->data : NULL, *b = bias ? bias->data : NULL;
    real *y = output->data;
    int64_t n = input->shape[0], ch = input->shape[1], plane = input->shape[2] * input->shape[3];
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < ch; c++)
            for (int64_t p = 0; p < plane; p++) {
                int64_t at = (i * ch + c) * plane + p;
                double v = ((double)x[at] - (double)mean[c]) / sqrt((double)var[c] + eps);
                y[at] = (real)(v * (w ? (double)w[c] : 1.0) + (b ? (double)b[c] : 0.0));
            }
    return AI3_OK;
}
