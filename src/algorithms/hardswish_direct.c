/* hardswish, direct: x · min(max(x + 3, 0), 6) / 6 elementwise; output may
 * alias input. NaN stays NaN, as in torch. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include "activation.h"

typedef struct {
    const real *x;
    real *y;
} hardswish_ctx;

AI3_MULTIVERSION(hardswish_range, void *, ctx, int64_t, begin, int64_t, end) {
    const hardswish_ctx *c = ctx;
    const real *x = c->x;
    real *y = c->y;
    for (int64_t i = begin; i < end; i++) y[i] = ai3_hardswish_of(x[i]);
}

ai3_status AI3_TYPED(ai3_hardswish_direct)(const ai3_tensor *input, ai3_tensor *output) {
    hardswish_ctx c = {input->data, output->data};
    ai3_parallel_for(ai3_tensor_numel(input), 1 << 15, hardswish_range, &c);
    return AI3_OK;
}
