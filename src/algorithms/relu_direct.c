/* relu elementwise; output may alias input. NaN stays NaN, as in torch. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

typedef struct {
    const real *x;
    real *y;
} relu_ctx;

AI3_MULTIVERSION(relu_range, void *, ctx, int64_t, begin, int64_t, end) {
    const relu_ctx *c = ctx;
    const real *x = c->x;
    real *y = c->y;
    /* x < 0 is false for NaN, so NaN passes through. */
    for (int64_t i = begin; i < end; i++) y[i] = x[i] < 0 ? 0 : x[i];
}

ai3_status AI3_TYPED(ai3_relu_direct)(const ai3_tensor *input, ai3_tensor *output) {
    relu_ctx c = {input->data, output->data};
    ai3_parallel_for(ai3_tensor_numel(input), 1 << 16, relu_range, &c);
    return AI3_OK;
}
