/* CPU feature detection and the AI3_ISA override (see internal.h). */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static ai3_isa detect(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    /* libgcc's checks include the OS saving the wider registers (XGETBV). */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        return AI3_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return AI3_ISA_AVX2;
#endif
    return AI3_ISA_GENERIC;
}

/* -1: not decided yet. Decided once; ai3_cpu_set_isa overrides later. */
static atomic_int best_isa = -1, active_isa = -1;

ai3_isa ai3_cpu_best_isa(void) {
    int b = atomic_load_explicit(&best_isa, memory_order_relaxed);
    if (b < 0) {
        b = (int)detect();
        atomic_store(&best_isa, b);
    }
    return (ai3_isa)b;
}

static ai3_isa isa_from_env(void) {
    ai3_isa best = ai3_cpu_best_isa();
    const char *env = getenv("AI3_ISA");
    if (!env) return best;
    static const char *names[] = {"generic", "avx2", "avx512"};
    for (int i = 0; i < 3; i++)
        if (strcmp(env, names[i]) == 0) return (ai3_isa)AI3_MIN(i, (int)best);
    return best;
}

ai3_isa ai3_cpu_isa(void) {
    int a = atomic_load_explicit(&active_isa, memory_order_relaxed);
    if (a < 0) {
        int expected = -1;
        atomic_compare_exchange_strong(&active_isa, &expected, (int)isa_from_env());
        a = atomic_load(&active_isa);
    }
    return (ai3_isa)a;
}

ai3_isa ai3_cpu_set_isa(ai3_isa isa) {
    int best = (int)ai3_cpu_best_isa();
    int a = (int)isa < 0 ? 0 : AI3_MIN((int)isa, best);
    atomic_store(&active_isa, a);
    return (ai3_isa)a;
}

const char *ai3_isa_name(ai3_isa isa) {
    switch (isa) {
    case AI3_ISA_GENERIC: return "generic";
    case AI3_ISA_AVX2: return "avx2";
    case AI3_ISA_AVX512: return "avx512";
    }
    return "unknown";
}
