/* Reference cat: every output element found by walking the inputs along
 * dim until the one that holds it. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_cat)(const ai3_tensor *const *inputs, int n_inputs, int dim,
                                  ai3_tensor *output) {
    real *y = output->data;
    int nd = output->ndim;
    for (int64_t i = 0; i < ai3_tensor_numel(output); i++) {
        int64_t idx[AI3_MAX_DIMS] = {0}, rest = i;
        for (int d = nd - 1; d >= 0; d--) {
            idx[d] = rest % output->shape[d];
            rest /= output->shape[d];
        }
        int k = 0;
        while (idx[dim] >= inputs[k]->shape[dim]) idx[dim] -= inputs[k++]->shape[dim];
        int64_t at = 0;
        for (int d = 0; d < nd; d++) at = at * inputs[k]->shape[d] + idx[d];
        y[i] = ((const real *)inputs[k]->data)[at];
    }
    return AI3_OK;
}
