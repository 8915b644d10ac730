/* Reference silu: x · sigmoid(x), in double. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <math.h>

ai3_status AI3_TYPED(ai3_ref_silu)(const ai3_tensor *input, ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    for (int64_t i = 0; i < ai3_tensor_numel(input); i++) {
        double v = (double)x[i];
        y[i] = (real)(v * (1.0 / (1.0 + exp(-v))));
    }
    return AI3_OK;
}
