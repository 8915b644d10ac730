/*
 * Functions compiled for several x86-64 levels and chosen, on every call, by
 * the active ISA: ai3_cpu_isa(), which the environment variable AI3_ISA and
 * ai3_cpu_set_isa() set (runtime/cpu.c).
 *
 *     AI3_MULTIVERSION(name, T1, p1, T2, p2, ...) { body }
 *
 * defines `static void name(T1 p1, T2 p2, ...)` (1 to 8 parameters, given
 * as type, name pairs). The body is written once, as an always-inline
 * function, and compiled into three variants: for x86-64-v4 (AVX-512), for
 * x86-64-v3 (AVX2, FMA) and for baseline x86-64. `name` calls the variant of
 * the active ISA: a relaxed load, a compare and a jump.
 *
 *     AI3_MULTIVERSION_ATTR(attrs, name, T1, p1, ...) { body }
 *
 * is the same with more attributes (e.g. optimize) on every variant.
 *
 * Elsewhere than x86-64 with GCC, `name` is the body compiled once (and
 * AI3_MV_ENABLED is 0).
 *
 * Dispatches can be counted per variant (tests): ai3_multiversion_count(true)
 * resets the counts and starts counting, ai3_multiversion_calls(isa) reads
 * them. While counting, every dispatch takes a slower path.
 */
#ifndef AI3_MULTIVERSION_H
#define AI3_MULTIVERSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* --- dispatch state (runtime/cpu.c) -----------------------------------------
 * The active ISA (an ai3_isa) as the dispatchers read it; -1 until it is
 * decided, AI3_MV_COUNTING added while dispatches are counted. Both cases
 * send a dispatch to ai3_multiversion_isa_slow(). */
#define AI3_MV_ISA_MASK 3
#define AI3_MV_COUNTING 4
extern atomic_int ai3_multiversion_state __attribute__((visibility("hidden")));
int ai3_multiversion_isa_slow(void);

/* The ISA whose variant a dispatch runs now (an ai3_isa). */
static inline int ai3_multiversion_isa(void) {
    int s = atomic_load_explicit(&ai3_multiversion_state, memory_order_relaxed);
    if (__builtin_expect((unsigned)s <= AI3_MV_ISA_MASK, 1)) return s;
    return ai3_multiversion_isa_slow();
}

/* Starts (counts reset to 0) or stops counting dispatches. */
void ai3_multiversion_count(bool on);
/* Dispatches to the variant of `isa` (an ai3_isa) counted so far. */
int64_t ai3_multiversion_calls(int isa);

/* --- parameter lists: (T1, p1, T2, p2, ...) -> "T1 p1, T2 p2" and "p1, p2" -- */
#define AI3_MV_CAT(a, b) AI3_MV_CAT_(a, b)
#define AI3_MV_CAT_(a, b) a##b
#define AI3_MV_PAIRS(...) \
    AI3_MV_17TH(__VA_ARGS__, 8, odd, 7, odd, 6, odd, 5, odd, 4, odd, 3, odd, 2, odd, 1, odd)
#define AI3_MV_17TH(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, n, \
                    ...)                                                                    \
    n
#define AI3_MV_PARAMS(...) AI3_MV_CAT(AI3_MV_PARAMS_, AI3_MV_PAIRS(__VA_ARGS__))(__VA_ARGS__)
#define AI3_MV_ARGS(...) AI3_MV_CAT(AI3_MV_ARGS_, AI3_MV_PAIRS(__VA_ARGS__))(__VA_ARGS__)
#define AI3_MV_PARAMS_1(T, p) T p
#define AI3_MV_PARAMS_2(T, p, ...) T p, AI3_MV_PARAMS_1(__VA_ARGS__)
#define AI3_MV_PARAMS_3(T, p, ...) T p, AI3_MV_PARAMS_2(__VA_ARGS__)
#define AI3_MV_PARAMS_4(T, p, ...) T p, AI3_MV_PARAMS_3(__VA_ARGS__)
#define AI3_MV_PARAMS_5(T, p, ...) T p, AI3_MV_PARAMS_4(__VA_ARGS__)
#define AI3_MV_PARAMS_6(T, p, ...) T p, AI3_MV_PARAMS_5(__VA_ARGS__)
#define AI3_MV_PARAMS_7(T, p, ...) T p, AI3_MV_PARAMS_6(__VA_ARGS__)
#define AI3_MV_PARAMS_8(T, p, ...) T p, AI3_MV_PARAMS_7(__VA_ARGS__)
#define AI3_MV_ARGS_1(T, p) p
#define AI3_MV_ARGS_2(T, p, ...) p, AI3_MV_ARGS_1(__VA_ARGS__)
#define AI3_MV_ARGS_3(T, p, ...) p, AI3_MV_ARGS_2(__VA_ARGS__)
#define AI3_MV_ARGS_4(T, p, ...) p, AI3_MV_ARGS_3(__VA_ARGS__)
#define AI3_MV_ARGS_5(T, p, ...) p, AI3_MV_ARGS_4(__VA_ARGS__)
#define AI3_MV_ARGS_6(T, p, ...) p, AI3_MV_ARGS_5(__VA_ARGS__)
#define AI3_MV_ARGS_7(T, p, ...) p, AI3_MV_ARGS_6(__VA_ARGS__)
#define AI3_MV_ARGS_8(T, p, ...) p, AI3_MV_ARGS_7(__VA_ARGS__)

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AI3_MV_ENABLED 1

/* The body's declarator (the user's braces follow the macro), a call to
 * variant `sfx` of `name`, and a variant: the body inlined into a function
 * with the GNU attributes `gnu`, e.g. (noinline, target("arch=x86-64-v3")). */
#define AI3_MV_BODY(attrs, name, ...)                                                             \
    static inline __attribute__((always_inline)) attrs void AI3_MV_CAT(name, _mv_body)(           \
        AI3_MV_PARAMS(__VA_ARGS__))
#define AI3_MV_CALL(name, sfx, ...) AI3_MV_CAT(name, sfx)(AI3_MV_ARGS(__VA_ARGS__))
#define AI3_MV_VARIANT(attrs, name, sfx, gnu, ...)                                                \
    __attribute__(gnu) attrs static void AI3_MV_CAT(name, sfx)(AI3_MV_PARAMS(__VA_ARGS__)) {      \
        AI3_MV_CALL(name, _mv_body, __VA_ARGS__);                                                 \
    }

#define AI3_MULTIVERSION_ATTR(attrs, name, ...)                                                   \
    AI3_MV_BODY(attrs, name, __VA_ARGS__);                                                        \
    AI3_MV_VARIANT(attrs, name, _mv_v4, (noinline, target("arch=x86-64-v4")), __VA_ARGS__)        \
    AI3_MV_VARIANT(attrs, name, _mv_v3, (noinline, target("arch=x86-64-v3")), __VA_ARGS__)        \
    AI3_MV_VARIANT(attrs, name, _mv_v1, (noinline), __VA_ARGS__)                                  \
    static void name(AI3_MV_PARAMS(__VA_ARGS__)) {                                                \
        switch (ai3_multiversion_isa()) {                                                         \
        case AI3_ISA_AVX512: AI3_MV_CALL(name, _mv_v4, __VA_ARGS__); break;                       \
        case AI3_ISA_AVX2: AI3_MV_CALL(name, _mv_v3, __VA_ARGS__); break;                         \
        default: AI3_MV_CALL(name, _mv_v1, __VA_ARGS__); break;                                   \
        }                                                                                         \
    }                                                                                             \
    AI3_MV_BODY(attrs, name, __VA_ARGS__)

#else
#define AI3_MV_ENABLED 0

#define AI3_MULTIVERSION_ATTR(attrs, name, ...) \
    attrs static void name(AI3_MV_PARAMS(__VA_ARGS__))

#endif

#define AI3_MULTIVERSION(name, ...) AI3_MULTIVERSION_ATTR(, name, __VA_ARGS__)

#endif
