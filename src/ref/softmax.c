/* Reference softmax along dim: exp(x - max) / Σ exp(x - max) per line, in
 * double. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <math.h>

ai3_status AI3_TYPED(ai3_ref_softmax)(const ai3_tensor *input, int dim, ai3_tensor *output) {
    int64_t size = input->shape[dim], inner = 1;
    for (int d = dim + 1; d < input->ndim; d++) inner *= input->shape[d];
    int64_t outer = ai3_tensor_numel(input) / (size * inner);
    const real *x = input->data;
    real *y = output->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * size * inner + j;
            double m = -INFINITY, sum = 0;
            for (int64_t k = 0; k < size; k++) m = fmax(m, (double)x[base + k * inner]);
            for (int64_t k = 0; k < size; k++) sum += exp((double)x[base + k * inner] - m);
            for (int64_t k = 0; k < size; k++)
                y[base + k * inner] = (real)(exp((double)x[base + k * inner] - m) / sum);
        }
    return AI3_OK;
}
