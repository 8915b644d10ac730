/* gelu, direct, elementwise; output may alias input. Exact:
 * x/2 · (1 + erf(x/√2)); with the tanh approximation:
 * x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))), both as torch writes them. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include <tgmath.h> /* exp, erf, tanh of `real` */

typedef struct {
    const real *x;
    real *y;
    int tanh_approximation;
} gelu_ctx;

AI3_MULTIVERSION(gelu_range, void *, ctx, int64_t, begin, int64_t, end) {
    const gelu_ctx *c = ctx;
    const real *x = c->x;
    real *y = c->y;
    const real half = (real)0.5, inv_sqrt2 = (real)0.70710678118654752440,
               sqrt_2_over_pi = (real)0.79788456080286535588, k = (real)0.044715;
    if (c->tanh_approximation)
        for (int64_t i = begin; i < end; i++) {
            real v = x[i];
            y[i] = half * v * (1 + tanh(sqrt_2_over_pi * (v + k * v * v * v)));
        }
    else
        for (int64_t i = begin; i < end; i++) y[i] = half * x[i] * (1 + erf(x[i] * inv_sqrt2));
}

ai3_status AI3_TYPED(ai3_gelu_direct)(const ai3_tensor *input, int tanh_approximation,
                                      ai3_tensor *output) {
    gelu_ctx c = {input->data, output->data, tanh_approximation};
    ai3_parallel_for(ai3_tensor_numel(input), 1 << 13, gelu_range, &c);
    return AI3_OK;
}
