/*
 * bfloat16 on the CPU: the element type, conversions, and whether this CPU
 * computes it (runtime/bf16.c).
 *
 * A bfloat16 is the upper half of a float32 (sign, 8-bit exponent, 7-bit
 * mantissa). CPU kernels read bfloat16, compute in float32 and round back
 * to nearest even when they store.
 */
#ifndef AI3_BF16_H
#define AI3_BF16_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

typedef uint16_t ai3_bf16;

static inline float ai3_bf16_to_float(ai3_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Rounded to nearest even; a NaN stays a (quiet) NaN. */
static inline ai3_bf16 ai3_float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ai3_bf16)((u >> 16) | 0x40);
    return (ai3_bf16)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* Whether bfloat16 is computed on this CPU: it has AVX512_BF16 (with
 * AVX512BW and VL), and the active ISA (ai3_cpu_isa(): AI3_ISA,
 * ai3_cpu_set_isa) is AVX-512. */
bool ai3_cpu_has_bf16(void);

/* Whether this process may run AMX bfloat16 tile products: the CPU has
 * AMX-TILE and AMX-BF16 (and AVX512_BF16, for the kernel's epilogue;
 * whatever the active ISA: ai3_cpu_has_bf16 decides whether bfloat16 is
 * computed at all), the OS saves the tile state (XCR0) and, on Linux, the
 * process was granted the tile data (arch_prctl(ARCH_REQ_XCOMP_PERM), asked
 * for once, on the first call). */
bool ai3_cpu_has_amx_bf16(void);

/* AI3_OK when ai3_cpu_has_bf16(); else AI3_ERROR_UNSUPPORTED with a message
 * naming `op` and why. */
ai3_status ai3_require_cpu_bf16(const char *op);

/* n elements converted, on the thread pool when there are many. */
void ai3_bf16_to_float_n(const ai3_bf16 *src, float *dst, int64_t n);
void ai3_float_to_bf16_n(const float *src, ai3_bf16 *dst, int64_t n);

/* A fused epilogue over a bfloat16 output of n elements, its residual
 * bfloat16 too, computed in float32 and rounded once: y = act(x +
 * residual), where x is `from` (float32) or, when from is NULL, y itself.
 * On the thread pool. */
void ai3_epilogue_pass_bf16(ai3_bf16 *y, const float *from, int64_t n, const ai3_epilogue *e);

/* A CPU tensor's data as float32: *dst gets src's shape, dtype float32 and
 * the data `buffer` (numel floats), converted from bfloat16. */
void ai3_bf16_tensor_to_float(const ai3_tensor *src, float *buffer, ai3_tensor *dst);

#endif
