/*
 * e^x over `real`, which GCC can inline and vectorise (libm's exp is a call
 * per element): range reduction x = n·ln2 + r, |r| <= ln2/2, a polynomial
 * for e^r, and 2^n put in the exponent bits, within 2 ulp of libm over the
 * normal range. Each user's range is clamped so that 2^n needs no special
 * case and the loops stay short: softmax takes e^(x - max) <= 1
 * (ai3_exp_nonpositive: 0 below the smallest normal result, where libm
 * gives subnormals), sigmoid and silu 1 + e^-x (ai3_exp_clamped). NaN stays
 * NaN.
 */
#ifndef AI3_VEXP_H
#define AI3_VEXP_H

#include <stdint.h>
#include <string.h>

#include "real.h"

/* p · 2^(n - shift), where xc = n·ln2 + r, |r| <= ln2/2 and p = e^r: e^xc
 * over 2^shift, for xc where 2^(n - shift) is a normal number. */
static inline real ai3_exp_scaled(real xc, unsigned shift) {
#if defined(AI3_REAL_DOUBLE)
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
    /* 2^(n - shift) in the exponent bits (unsigned arithmetic, so that a
     * NaN's arbitrary n is defined too) */
    uint64_t scale_bits = (n_bits - 0x4338000000000000u + 1023u - shift) << 52;
#else
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
    uint32_t scale_bits = (n_bits - 0x4B400000u + 127u - shift) << 23;
#endif
    real scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

static inline real ai3_exp_nonpositive(real x) {
#if defined(AI3_REAL_DOUBLE)
    const real lo = -708.3964185322641; /* e^lo = 2^-1022, the smallest normal */
#else
    const real lo = -87.3365479f; /* e^lo = 2^-126, the smallest normal */
#endif
    real y = ai3_exp_scaled(x < lo ? lo : x, 0);
    return x < lo ? 0 : y;
}

/* e^x over the whole line, for sigmoid and silu's 1 + e^-x: x is clamped
 * to [lo, hi], where e^lo is below half an ulp of 1 (so 1 + e^lo is 1, as
 * 1 + e^x is below it) and e^hi is above the largest finite number (so
 * the result overflows to infinity, as e^x does above it: silu(-inf) is
 * -inf / inf, NaN, as in torch). 2^n then reaches one past the largest
 * exponent: it is applied as 2^(n - 1), then 2. NaN stays NaN. */
static inline real ai3_exp_clamped(real x) {
#if defined(AI3_REAL_DOUBLE)
    const real lo = -700, hi = 710;
#else
    const real lo = -86, hi = 89;
#endif
    real xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    return ai3_exp_scaled(xc, 1) * 2;
}

#endif
