/*
 * exp over `real` that GCC can inline and vectorise (libm's exp is a call
 * per element). Range reduction x = n·ln2 + r, |r| <= ln2/2, a polynomial
 * for e^r, and 2^n put in the exponent bits. Within 2 ulp of libm over the
 * normal range; +inf for x above the largest finite result, 0 below the
 * smallest normal one (libm gives subnormals there), NaN stays NaN.
 */
#ifndef AI3_VEXP_H
#define AI3_VEXP_H

#include <stdint.h>
#include <string.h>

#include "real.h"

static inline real ai3_exp(real x) {
#if defined(AI3_REAL_DOUBLE)
    const double hi = 709.782712893384, lo = -708.3964185322641;
    double xc = x > hi ? hi : (x < lo ? lo : x);
    /* round to nearest by the magic-number trick (vectorises, unlike round):
     * the sum holds n in its low mantissa bits, read as an integer there
     * (no float-to-integer conversion, which a NaN input would make
     * undefined; the result for NaN is set at the end) */
    double t = xc * 1.4426950408889634 + 0x1.8p52, n = t - 0x1.8p52;
    uint64_t t_bits;
    memcpy(&t_bits, &t, sizeof t_bits);
    int64_t ni = (int64_t)(t_bits - 0x4338000000000000u);
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
    /* 2^n as 2^a·2^b, each exponent well inside the normal range */
    int64_t a = ni >> 1, b = ni - a;
    /* unsigned shifts: a NaN input gives any n, and the result stays NaN */
    uint64_t bits_a = (uint64_t)(a + 1023) << 52, bits_b = (uint64_t)(b + 1023) << 52;
    double scale_a, scale_b;
    memcpy(&scale_a, &bits_a, sizeof scale_a);
    memcpy(&scale_b, &bits_b, sizeof scale_b);
    double y = p * scale_a * scale_b;
#else
    const float hi = 88.7228391f, lo = -87.3365479f;
    float xc = x > hi ? hi : (x < lo ? lo : x);
    float t = xc * 1.44269504f + 0x1.8p23f, n = t - 0x1.8p23f;
    uint32_t t_bits;
    memcpy(&t_bits, &t, sizeof t_bits);
    int32_t ni = (int32_t)(t_bits - 0x4B400000u);
    float r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    /* Taylor to r^7: |r| <= 0.35, error < 2e-8 */
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t a = ni >> 1, b = ni - a;
    uint32_t bits_a = (uint32_t)(a + 127) << 23, bits_b = (uint32_t)(b + 127) << 23;
    float scale_a, scale_b;
    memcpy(&scale_a, &bits_a, sizeof scale_a);
    memcpy(&scale_b, &bits_b, sizeof scale_b);
    float y = p * scale_a * scale_b;
#endif
    y = x > hi ? (real)__builtin_inf() : y;
    y = x < lo ? 0 : y;
    return x != x ? x : y;
}

#endif
