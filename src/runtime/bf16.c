/* bfloat16 on the CPU: detection and bulk conversions (see bf16.h). */
#include "bf16.h"

#include <stdatomic.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static bool detect(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/* -1: not detected yet. */
static atomic_int has_bf16 = -1;

/* Whether the CPU has AVX512_BF16 (and BW, VL), whatever the active ISA. */
static bool cpu_bf16(void) {
    int h = atomic_load_explicit(&has_bf16, memory_order_relaxed);
    if (h < 0) {
        h = detect();
        atomic_store(&has_bf16, h);
    }
    return h;
}

bool ai3_cpu_has_bf16(void) { return cpu_bf16() && ai3_cpu_isa() == AI3_ISA_AVX512; }

static bool detect_amx(void) {
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
    unsigned a, b, c, d;
    /* CPUID.(7, 0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 22 & 1) || !(d >> 24 & 1))
        return false;
    /* the OS enabled XSAVE (CPUID.1:ECX bit 27) and the tile state in XCR0
     * (bit 17 TILECFG, bit 18 TILEDATA) */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1)) return false;
    uint32_t xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & (3u << 17)) != (3u << 17)) return false;
    /* Linux hands out the tile data per process on request:
     * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) */
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}

/* -1: not detected yet. */
static atomic_int has_amx = -1;

bool ai3_cpu_has_amx_bf16(void) {
    if (!cpu_bf16()) return false;
    int h = atomic_load_explicit(&has_amx, memory_order_relaxed);
    if (h < 0) {
        h = detect_amx();
        atomic_store(&has_amx, h);
    }
    return h;
}

ai3_status ai3_require_cpu_bf16(const char *op) {
    if (ai3_cpu_has_bf16()) return AI3_OK;
    return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                         "%s: bfloat16 on the CPU needs the AVX512_BF16 instructions, which %s; "
                         "compute in float32 on this machine", op,
                         ai3_cpu_best_isa() == AI3_ISA_AVX512 && detect()
                             ? "the active ISA (AI3_ISA) leaves out"
                             : "this CPU lacks");
}

/* Below this many elements one thread converts. */
#define PARALLEL_MIN 65536

typedef struct {
    const void *src;
    void *dst;
} convert_ctx;

AI3_MULTIVERSION(widen, void *, vctx, int64_t, begin, int64_t, end) {
    const convert_ctx *c = vctx;
    const ai3_bf16 *restrict s = c->src;
    uint32_t *restrict d = c->dst;
    for (int64_t i = begin; i < end; i++) d[i] = (uint32_t)s[i] << 16;
}

AI3_MULTIVERSION(narrow, void *, vctx, int64_t, begin, int64_t, end) {
    const convert_ctx *c = vctx;
    const float *restrict s = c->src;
    ai3_bf16 *restrict d = c->dst;
    for (int64_t i = begin; i < end; i++) d[i] = ai3_float_to_bf16(s[i]);
}

void ai3_bf16_to_float_n(const ai3_bf16 *src, float *dst, int64_t n) {
    convert_ctx c = {src, dst};
    if (n >= PARALLEL_MIN) ai3_parallel_for(n, 4096, widen, &c);
    else widen(&c, 0, n);
}

void ai3_float_to_bf16_n(const float *src, ai3_bf16 *dst, int64_t n) {
    convert_ctx c = {src, dst};
    if (n >= PARALLEL_MIN) ai3_parallel_for(n, 4096, narrow, &c);
    else narrow(&c, 0, n);
}

void ai3_bf16_tensor_to_float(const ai3_tensor *src, float *buffer, ai3_tensor *dst) {
    *dst = *src;
    dst->dtype = AI3_FLOAT32;
    dst->data = buffer;
    ai3_bf16_to_float_n(src->data, buffer, ai3_tensor_numel(src));
}
