/* CPU feature detection and the AI3_ISA override (see internal.h). */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* -1: not detected yet. */
static atomic_int best_isa = -1;

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

/* The active ISA, read by every multiversioned function (multiversion.h):
 * -1 until decided (from AI3_ISA, once), then set by ai3_cpu_set_isa;
 * AI3_MV_COUNTING added while dispatches are counted. */
atomic_int ai3_multiversion_state = -1;
static atomic_llong dispatches[AI3_MV_ISA_MASK + 1];

ai3_isa ai3_cpu_isa(void) {
    int s = atomic_load_explicit(&ai3_multiversion_state, memory_order_relaxed);
    if (s < 0) {
        int expected = -1;
        atomic_compare_exchange_strong(&ai3_multiversion_state, &expected, (int)isa_from_env());
        s = atomic_load(&ai3_multiversion_state);
    }
    return (ai3_isa)(s & AI3_MV_ISA_MASK);
}

/* Sets the active ISA and whether dispatches are counted. */
static void set_state(int isa, bool counting) {
    atomic_store(&ai3_multiversion_state, isa | (counting ? AI3_MV_COUNTING : 0));
}

static bool counting(void) {
    int s = atomic_load(&ai3_multiversion_state);
    return s >= 0 && (s & AI3_MV_COUNTING);
}

ai3_isa ai3_cpu_set_isa(ai3_isa isa) {
    int best = (int)ai3_cpu_best_isa();
    int a = (int)isa < 0 ? 0 : AI3_MIN((int)isa, best);
    set_state(a, counting());
    return (ai3_isa)a;
}

int ai3_multiversion_isa_slow(void) {
    int isa = (int)ai3_cpu_isa();
    if (counting()) atomic_fetch_add_explicit(&dispatches[isa], 1, memory_order_relaxed);
    return isa;
}

void ai3_multiversion_count(bool on) {
    int isa = (int)ai3_cpu_isa();
    if (on)
        for (int i = 0; i <= AI3_MV_ISA_MASK; i++) atomic_store(&dispatches[i], 0);
    set_state(isa, on);
}

int64_t ai3_multiversion_calls(int isa) {
    if (isa < 0 || isa > AI3_MV_ISA_MASK) return 0;
    return (int64_t)atomic_load(&dispatches[isa]);
}

int64_t ai3_cpu_l2_bytes(void) {
    static atomic_long cached;
    long v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v == 0) {
        v = sysconf(_SC_LEVEL2_CACHE_SIZE);
        if (v < 256 * 1024) v = 1024 * 1024;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}

const char *ai3_isa_name(ai3_isa isa) {
    switch (isa) {
    case AI3_ISA_GENERIC: return "generic";
    case AI3_ISA_AVX2: return "avx2";
    case AI3_ISA_AVX512: return "avx512";
    }
    return "unknown";
}
