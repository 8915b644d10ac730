/* Reference hardtanh: min(max(x, min_val), max_val), NaN kept, in double. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <math.h>

ai3_status AI3_TYPED(ai3_ref_hardtanh)(const ai3_tensor *input, double min_val, double max_val,
                                       ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    for (int64_t i = 0; i < ai3_tensor_numel(input); i++) {
        double v = (double)x[i];
        y[i] = (real)(isnan(v) ? v : fmin(fmax(v, min_val), max_val));
    }
    return AI3_OK;
}
