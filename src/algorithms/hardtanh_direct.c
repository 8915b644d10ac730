/* hardtanh, direct: x clamped to [min_val, max_val] elementwise; output may
 * alias input. NaN stays NaN, as in torch. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include "activation.h"

typedef struct {
    const real *x;
    real *y;
    real lo, hi;
} hardtanh_ctx;

AI3_MULTIVERSION(hardtanh_range, void *, ctx, int64_t, begin, int64_t, end) {
    const hardtanh_ctx *c = ctx;
    const real *x = c->x;
    real *y = c->y;
    const real lo = c->lo, hi = c->hi;
    for (int64_t i = begin; i < end; i++) y[i] = ai3_clamp_of(x[i], lo, hi);
}

ai3_status AI3_TYPED(ai3_hardtanh_direct)(const ai3_tensor *input, double min_val,
                                          double max_val, ai3_tensor *output) {
    hardtanh_ctx c = {input->data, output->data, (real)min_val, (real)max_val};
    /* A clamp is bound by memory: below ~128k elements one thread does it
     * sooner than a fork and join over two (MobileNetV2 converted: -6%). */
    ai3_parallel_for(ai3_tensor_numel(input), 1 << 17, hardtanh_range, &c);
    return AI3_OK;
}
