/* silu, direct: x / (1 + exp(-x)) elementwise, with the vectorisable exp of
 * vexp.h; output may alias input. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include "activation.h"

typedef struct {
    const real *x;
    real *y;
} silu_ctx;

AI3_MULTIVERSION(silu_range, void *, ctx, int64_t, begin, int64_t, end) {
    const silu_ctx *c = ctx;
    const real *x = c->x;
    real *y = c->y;
    for (int64_t i = begin; i < end; i++) y[i] = ai3_silu_of(x[i]);
}

ai3_status AI3_TYPED(ai3_silu_direct)(const ai3_tensor *input, ai3_tensor *output) {
    silu_ctx c = {input->data, output->data};
    ai3_parallel_for(ai3_tensor_numel(input), 1 << 13, silu_range, &c);
    return AI3_OK;
}
