/* Reference layernorm: per row of the last normalized_ndim dimensions, the
 * mean and the biased variance in double, then (x - mean) / sqrt(var + eps)
 * · weight + bias. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <math.h>

ai3_status AI3_TYPED(ai3_ref_layernorm)(const ai3_tensor *input, int normalized_ndim,
                                        const ai3_tensor *weight, const ai3_tensor *bias,
                                        double eps, ai3_tensor *output) {
    int64_t len = 1;
    for (int d = input->ndim - normalized_ndim; d < input->ndim; d++) len *= input->shape[d];
    const real *w = weight ? weight->data : NULL, *b = bias ? bias->data : NULL;
    for (int64_t r = 0; r < ai3_tensor_numel(input) / len; r++) {
        const real *x = (const real *)input->data + r * len;
        real *y = (real *)output->data + r * len;
        double mean = 0, var = 0;
        for (int64_t k = 0; k < len; k++) mean += (double)x[k];
        mean /= (double)len;
        for (int64_t k = 0; k < len; k++) var += ((double)x[k] - mean) * ((double)x[k] - mean);
        var /= (double)len;
        for (int64_t k = 0; k < len; k++) {
            double v = ((double)x[k] - mean) / sqrt(var + eps);
            y[k] = (real)(v * (w ? (double)w[k] : 1.0) + (b ? (double)b[k] : 0.0));
        }
    }
    return AI3_OK;
}
