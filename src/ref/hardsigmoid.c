/* Reference hardsigmoid: min(max(x + 3, 0), 6) / 6, NaN kept, in double. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <math.h>

ai3_status AI3_TYPED(ai3_ref_hardsigmoid)(const ai3_tensor *input, ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    for (int64_t i = 0; i < ai3_tensor_numel(input); i++) {
        double v = (double)x[i];
        y[i] = (real)(isnan(v) ? v : fmin(fmax(v + 3.0, 0.0), 6.0) / 6.0);
    }
    return AI3_OK;
}
