/*
 * The elementwise activations as inline functions of one `real`, shared by
 * the activation operations (algorithms/<activation>_direct.c) and the
 * epilogues fused into conv2d and linear (epilogue.c), so that a fused
 * activation gives the same bits as the operation on its own. NaN stays
 * NaN in each, as in torch.
 */
#ifndef AI3_ACTIVATION_H
#define AI3_ACTIVATION_H

#include "real.h"
#include "vexp.h"

#include <tgmath.h> /* erf, tanh of `real` */

/* x clamped to [lo, hi] (relu: [0, inf], hardtanh); x < lo is false for NaN. */
static inline real ai3_clamp_of(real x, real lo, real hi) {
    real v = x < lo ? lo : x;
    return v > hi ? hi : v;
}

/* 1 / (1 + e^-x), and x / (1 + e^-x) for silu, as torch computes them (so
 * also at the infinities: silu(-inf) is NaN). */
static inline real ai3_sigmoid_of(real x) { return 1 / (1 + ai3_exp_clamped(-x)); }

static inline real ai3_silu_of(real x) { return x / (1 + ai3_exp_clamped(-x)); }

/* min(max(x + 3, 0), 6) / 6 */
static inline real ai3_hardsigmoid_of(real x) {
    real t = x + 3;
    t = t < 0 ? 0 : t;
    t = t > 6 ? 6 : t;
    return t / 6;
}

/* x · min(max(x + 3, 0), 6) / 6 */
static inline real ai3_hardswish_of(real x) {
    real t = x + 3;
    t = t < 0 ? 0 : t;
    t = t > 6 ? 6 : t;
    return x * t / 6;
}

/* x/2 · (1 + erf(x/√2)), torch's exact gelu */
static inline real ai3_gelu_of(real x) {
    return (real)0.5 * x * (1 + erf(x * (real)0.70710678118654752440));
}

/* x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))), approximate='tanh' */
static inline real ai3_gelu_tanh_of(real x) {
    const real sqrt_2_over_pi = (real)0.79788456080286535588, k = (real)0.044715;
    return (real)0.5 * x * (1 + tanh(sqrt_2_over_pi * (x + k * x * x * x)));
}

#endif
