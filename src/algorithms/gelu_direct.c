/* gelu, direct, elementwise; output may alias input. Exact:
 * x/2 · (1 + erf(x/√2)); with the tanh approximation:
 * x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))), both as torch writes them. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include "activation.h"

typedef struct {
    const real *x;
    real *y;
    int tanh_approximation;
} gelu_ctx;

AI3_MULTIVERSION(gelu_range, void *, ctx, int64_t, begin, int64_t, end) {
    const gelu_ctx *c = ctx;
    const real *x = c->x;
    real *y = c->y;
    if (c->tanh_approximation)
        for (int64_t i = begin; i < end; i++) y[i] = ai3_gelu_tanh_of(x[i]);
    else
        for (int64_t i = begin; i < end; i++) y[i] = ai3_gelu_of(x[i]);
}

ai3_status AI3_TYPED(ai3_gelu_direct)(const ai3_tensor *input, int tanh_approximation,
                                      ai3_tensor *output) {
    gelu_ctx c = {input->data, output->data, tanh_approximation};
    ai3_parallel_for(ai3_tensor_numel(input), 1 << 13, gelu_range, &c);
    return AI3_OK;
}
