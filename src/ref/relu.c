/* Reference relu: max(x, 0), with NaN kept as NaN (torch.relu does). */
#include <math.h>

#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_relu)(const ai3_tensor *input, ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    int64_t n = ai3_tensor_numel(input);
    for (int64_t i = 0; i < n; i++) y[i] = isnan(x[i]) ? x[i] : (x[i] > 0 ? x[i] : 0);
    return AI3_OK;
}
