/* Reference mean: each input element added, in double, to the output
 * element it reduces into (output in keepdim form, see ai3_mean_fn), then
 * every sum divided by the number of reduced elements. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

#include <stdlib.h>

ai3_status AI3_TYPED(ai3_ref_mean)(const ai3_tensor *input, const int *dims, int n_dims,
                                   ai3_tensor *output) {
    int64_t n_out = ai3_tensor_numel(output), count = 1;
    for (int k = 0; k < n_dims; k++) count *= input->shape[dims[k]];
    double *sum = calloc((size_t)n_out, sizeof(double));
    if (!sum) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "mean reference: out of memory");
    const real *x = input->data;
    int nd = input->ndim;
    for (int64_t i = 0; i < ai3_tensor_numel(input); i++) {
        int64_t rest = i, at = 0, stride = 1;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t idx = rest % input->shape[d];
            rest /= input->shape[d];
            at += (output->shape[d] == 1 ? 0 : idx) * stride;
            stride *= output->shape[d];
        }
        sum[at] += (double)x[i];
    }
    real *y = output->data;
    for (int64_t o = 0; o < n_out; o++) y[o] = (real)(sum[o] / (double)count);
    free(sum);
    return AI3_OK;
}
