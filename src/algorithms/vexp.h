/*
 * e^x for x <= 0 over `real`, which GCC can inline and vectorise (libm's
 * exp is a call per element). Its users only need that half line: sigmoid
 * and silu take e^-|x|, softmax e^(x - max). There the result cannot
 * overflow, so neither an overflow select nor a split scale is needed, and
 * the loops stay short. Range reduction x = n·ln2 + r, |r| <= ln2/2, a
 * polynomial for e^r, and 2^n put in the exponent bits. Within 2 ulp of
 * libm over the normal range; 0 below the smallest normal result (libm
 * gives subnormals there); NaN stays NaN. x > 0 is outside its domain.
 */
#ifndef AI3_VEXP_H
#define AI3_VEXP_H

#include <stdint.h>
#include <string.h>

#include "real.h"

static inline real ai3_exp_nonpositive(real x) {
#if defined(AI3_REAL_DOUBLE)
    const double lo = -708.3964185322641; /* e^lo = 2^-1022, the smallest normal */
    double xc = x < lo ? lo : x;
    /* round to nearest by the magic-number trick (vectorises, unlike round):
     * the sum holds n in its low mantissa bits, read as an integer there
     * (no float-to-integer conversion, which a NaN input would make
     * undefined; a NaN's p is NaN, whatever its n) */
    double t = xc * 1.4426950408889634 + 0x1.8p52, n = t - 0x1.8p52;
    uint64_t n_bits;
    memcpy(&n_bits, &t, sizeof n_bits);
    double r = xc - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10;
    /* Taylor to r^13: |r| <= 0.35, error < 1e-17 */
    double p = 1.0 / 6227020800;
    p = p * r + 1.0 / 479001600;
    p = p * r + 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n, n in [-1022, 0]: n + 1023 is a normal exponent (unsigned
     * arithmetic, so that a NaN's arbitrary n is defined too) */
    uint64_t scale_bits = (n_bits - 0x4338000000000000u + 1023u) << 52;
#else
    const float lo = -87.3365479f; /* e^lo = 2^-126, the smallest normal */
    float xc = x < lo ? lo : x;
    float t = xc * 1.44269504f + 0x1.8p23f, n = t - 0x1.8p23f;
    uint32_t n_bits;
    memcpy(&n_bits, &t, sizeof n_bits);
    float r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    /* Taylor to r^7 (|r| <= 0.35, error < 2e-8) in Estrin's form: a
     * shorter dependency chain than Horner's, so more of a loop's
     * iterations overlap */
    float r2 = r * r, r4 = r2 * r2;
    float p = ((1.0f + r) + r2 * (0.5f + r * (1.0f / 6))) +
              r4 * ((1.0f / 24 + r * (1.0f / 120)) + r2 * (1.0f / 720 + r * (1.0f / 5040)));
    uint32_t scale_bits = (n_bits - 0x4B400000u + 127u) << 23;
#endif
    real scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    real y = p * scale;
    return x < lo ? 0 : y;
}

#endif
