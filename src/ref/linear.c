/* Reference linear: each output a dot product accumulated in double. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_linear)(const ai3_tensor *input, const ai3_tensor *weight,
                                     const ai3_tensor *bias, ai3_tensor *output) {
    const real *x = input->data, *w = weight->data, *b = bias ? bias->data : NULL;
    real *y = output->data;
    int64_t out = weight->shape[0], in = weight->shape[1];
    int64_t rows = ai3_tensor_numel(output) / out;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < out; j++) {
            double acc = b ? (double)b[j] : 0.0;
            for (int64_t k = 0; k < in; k++) acc += (double)x[r * in + k] * (double)w[j * in + k];
            y[r * out + j] = (real)acc;
        }
    }
    return AI3_OK;
}
