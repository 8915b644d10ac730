/* Reference flatten: element i of the output is element i of the input. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_flatten)(const ai3_tensor *input, ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    int64_t n = ai3_tensor_numel(input);
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return AI3_OK;
}
