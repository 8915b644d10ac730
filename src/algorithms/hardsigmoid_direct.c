/* hardsigmoid, direct: min(max(x + 3, 0), 6) / 6 elementwise; output may alias
 * input. NaN stays NaN, as in torch. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include "activation.h"

typedef struct {
    const real *x;
    real *y;
} hardsigmoid_ctx;

AI3_MULTIVERSION(hardsigmoid_range, void *, ctx, int64_t, begin, int64_t, end) {
    const hardsigmoid_ctx *c = ctx;
    const real *x = c->x;
    real *y = c->y;
    for (int64_t i = begin; i < end; i++) y[i] = ai3_hardsigmoid_of(x[i]);
}

ai3_status AI3_TYPED(ai3_hardsigmoid_direct)(const ai3_tensor *input, ai3_tensor *output) {
    hardsigmoid_ctx c = {input->data, output->data};
    ai3_parallel_for(ai3_tensor_numel(input), 1 << 15, hardsigmoid_range, &c);
    return AI3_OK;
}
