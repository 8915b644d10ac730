/* Reference gelu, in double: x/2 · (1 + erf(x/√2)), or with the tanh
 * approximation x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))). */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <math.h>

ai3_status AI3_TYPED(ai3_ref_gelu)(const ai3_tensor *input, int tanh_approximation,
                                   ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    for (int64_t i = 0; i < ai3_tensor_numel(input); i++) {
        double v = (double)x[i];
        double inner = tanh_approximation
                           ? tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))
                           : erf(v / sqrt(2.0));
        y[i] = (real)(0.5 * v * (1.0 + inner));
    }
    return AI3_OK;
}
