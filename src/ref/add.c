/* Reference add with broadcasting: for each output index, the operands'
 * indices with broadcast dimensions pinned to 0. a, b and output have one
 * ndim (see ai3_binary_fn). */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_add)(const ai3_tensor *a, const ai3_tensor *b, ai3_tensor *output) {
    const real *x = a->data, *y = b->data;
    real *z = output->data;
    int nd = output->ndim;
    for (int64_t i = 0; i < ai3_tensor_numel(output); i++) {
        int64_t rest = i, ia = 0, ib = 0, sa = 1, sb = 1;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t idx = rest % output->shape[d];
            rest /= output->shape[d];
            if (a->shape[d] != 1) ia += idx * sa;
            if (b->shape[d] != 1) ib += idx * sb;
            sa *= a->shape[d];
            sb *= b->shape[d];
        }
        z[i] = (real)((double)x[ia] + (double)y[ib]);
    }
    return AI3_OK;
}
