/* Reference permute: output index (i_0, ..., i_{n-1}) reads the input at
 * the index whose dimension perm[k] is i_k. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_permute)(const ai3_tensor *input, const int *perm,
                                      ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    int nd = output->ndim;
    for (int64_t i = 0; i < ai3_tensor_numel(output); i++) {
        int64_t in_idx[AI3_MAX_DIMS], rest = i;
        for (int k = nd - 1; k >= 0; k--) {
            in_idx[perm[k]] = rest % output->shape[k];
            rest /= output->shape[k];
        }
        int64_t at = 0;
        for (int d = 0; d < nd; d++) at = at * input->shape[d] + in_idx[d];
        y[i] = x[at];
    }
    return AI3_OK;
}
