/* The GEMM engine's fused epilogue (ai3_gemm_epilogue_*: C = act(C + R) on
 * each final tile) against the plain product followed by the residual add
 * and the activation computed in double with libm: every activation, with
 * and without a residual, every ISA the CPU has, float32 and float64;
 * shapes through the blocked path (K in several slices, N past a block of
 * columns, ragged tiles), the dot-product path and K = 0; pre-packed,
 * strided and callback operands; one thread and the pool. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gemm/gemm.h"
#include "harness.h"

static const int64_t epilogue_shapes[][3] = {
    /* M, N, K */
    {1, 1, 1},   {3, 70, 5},    {14, 32, 8},   {15, 33, 900}, {37, 3300, 20},
    {64, 196, 577}, {200, 7, 90}, {5, 9, 0},    {29, 65, 17},  {100, 300, 400},
};

typedef struct {
    ai3_activation act;
    double lo, hi;
    const char *name;
} activation_case;

static const activation_case activations[] = {
    {AI3_ACT_NONE, 0, 0, "none"},           {AI3_ACT_CLAMP, 0, INFINITY, "relu"},
    {AI3_ACT_CLAMP, -0.5, 0.25, "hardtanh"}, {AI3_ACT_SIGMOID, 0, 0, "sigmoid"},
    {AI3_ACT_HARDSIGMOID, 0, 0, "hardsigmoid"}, {AI3_ACT_HARDSWISH, 0, 0, "hardswish"},
    {AI3_ACT_SILU, 0, 0, "silu"},           {AI3_ACT_GELU, 0, 0, "gelu"},
    {AI3_ACT_GELU_TANH, 0, 0, "gelu tanh"},
};

static double activate(const activation_case *a, double x) {
    switch (a->act) {
    case AI3_ACT_NONE: return x;
    case AI3_ACT_CLAMP: return x < a->lo ? a->lo : x > a->hi ? a->hi : x;
    case AI3_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case AI3_ACT_HARDSIGMOID: return fmin(fmax(x + 3, 0), 6) / 6;
    case AI3_ACT_HARDSWISH: return x * fmin(fmax(x + 3, 0), 6) / 6;
    case AI3_ACT_SILU: return x / (1 + exp(-x));
    case AI3_ACT_GELU: return x / 2 * (1 + erf(x / sqrt(2)));
    case AI3_ACT_GELU_TANH:
        return x / 2 * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    }
    return NAN;
}

#define DEFINE_EPILOGUE_CHECK(sfx, real, eps)                                                    \
    /* One product with the epilogue; C's rows padded to ldc = N + 3 (the                      \
     * padding must stay untouched). Returns false on a failure. */                             \
    static bool epilogue_check_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t M, int64_t N,    \
                                     int64_t K, const activation_case *act, bool residual,     \
                                     int kind, bool threads) {                                  \
        const int64_t ldc = N + 3;                                                              \
        real *A = malloc(sizeof(real) * (size_t)(M * K + 1));                                   \
        real *B = malloc(sizeof(real) * (size_t)(K * N + 1));                                   \
        real *C = malloc(sizeof(real) * (size_t)(M * ldc));                                     \
        real *P = malloc(sizeof(real) * (size_t)(M * ldc)); /* the plain product */             \
        real *R = malloc(sizeof(real) * (size_t)(M * ldc));                                     \
        real *bias = malloc(sizeof(real) * (size_t)N);                                          \
        for (int64_t i = 0; i < M * K; i++) A[i] = (real)(2 * ai3_test_uniform());              \
        for (int64_t i = 0; i < K * N; i++) B[i] = (real)ai3_test_uniform();                    \
        for (int64_t i = 0; i < M * ldc; i++) {                                                 \
            C[i] = P[i] = (real)ai3_test_uniform();                                             \
            R[i] = (real)(4 * ai3_test_uniform());                                              \
        }                                                                                       \
        for (int64_t i = 0; i < N; i++) bias[i] = (real)ai3_test_uniform();                     \
        real *packed = NULL;                                                                    \
        ai3_gemm_operand_##sfx a = ai3_gemm_strided_##sfx(A, K, 1);                             \
        ai3_gemm_operand_##sfx b = ai3_gemm_strided_##sfx(B, N, 1);                             \
        if (kind == 1 && K > 0) { /* A pre-packed (a layer's weights), B strided */             \
            packed = ai3_alloc(sizeof(real) * ai3_gemm_packed_a_size_##sfx(cfg, M, K));         \
            ai3_gemm_pack_a_##sfx(cfg, M, K, A, K, 1, packed);                                  \
            a = ai3_gemm_packed_##sfx(packed);                                                  \
        } else if (kind == 2) { /* B transposed: rows of A and columns of B along K */          \
            for (int64_t p = 0; p < K; p++)                                                     \
                for (int64_t j = 0; j < N; j++) B[j * K + p] = (real)(p + j % 7) / (K + 7);     \
            b = ai3_gemm_strided_##sfx(B, 1, K);                                                \
        }                                                                                       \
        ai3_epilogue e = {.act = act->act, .lo = act->lo, .hi = act->hi,                        \
                          .residual = residual ? R : NULL};                                     \
        unsigned flags = threads ? 0 : AI3_GEMM_SINGLE_THREAD;                                  \
        ai3_status s1 =                                                                         \
            ai3_gemm_epilogue_##sfx(cfg, M, N, K, &a, &b, C, ldc, NULL, bias, flags, &e);       \
        ai3_status s2 = ai3_gemm_##sfx(cfg, M, N, K, &a, &b, P, ldc, NULL, bias, flags);        \
        int64_t bad = 0;                                                                        \
        double worst = 0;                                                                       \
        for (int64_t i = 0; i < M; i++)                                                         \
            for (int64_t j = 0; j < ldc; j++) {                                                 \
                int64_t at = i * ldc + j;                                                       \
                if (j >= N) { /* padding: untouched */                                          \
                    bad += C[at] != P[at];                                                      \
                    continue;                                                                   \
                }                                                                               \
                double x = (double)P[at] + (residual ? (double)R[at] : 0);                      \
                double want = activate(act, x);                                                 \
                double err = fabs((double)C[at] - want);                                        \
                /* the sum rounded in the dtype, then the activation (slope <= 1.2) */          \
                if (!(err <= 16 * (eps) * (1 + fabs(x)))) bad++;                                \
                if (err > worst || err != err) worst = err;                                     \
            }                                                                                   \
        bool ok = s1 == AI3_OK && s2 == AI3_OK && bad == 0;                                     \
        AI3_EXPECT(ok,                                                                          \
                   "%s M=%lld N=%lld K=%lld %s residual=%d kind=%d threads=%d: status %d/%d, " \
                   "%lld bad, max err %g",                                                      \
                   cfg->name, (long long)M, (long long)N, (long long)K, act->name,              \
                   (int)residual, kind, (int)threads, (int)s1, (int)s2, (long long)bad, worst);  \
        free(A);                                                                                \
        free(B);                                                                                \
        free(C);                                                                                \
        free(P);                                                                                \
        free(R);                                                                                \
        free(bias);                                                                             \
        ai3_free(packed);                                                                       \
        return ok;                                                                              \
    }                                                                                           \
                                                                                                \
    static void epilogue_sweep_##sfx(void) {                                                    \
        ai3_isa saved = ai3_cpu_isa();                                                          \
        for (int isa = 0; isa <= (int)ai3_cpu_best_isa(); isa++) {                              \
            ai3_cpu_set_isa((ai3_isa)isa); /* the epilogue's own variant, too */                \
            const ai3_gemm_config_##sfx *cfg = ai3_gemm_get_config_##sfx();                     \
            for (size_t s = 0; s < sizeof epilogue_shapes / sizeof epilogue_shapes[0]; s++)     \
                for (size_t k = 0; k < sizeof activations / sizeof activations[0]; k++)         \
                    for (int residual = 0; residual < 2; residual++)                            \
                        epilogue_check_##sfx(cfg, epilogue_shapes[s][0], epilogue_shapes[s][1], \
                                             epilogue_shapes[s][2], &activations[k], residual,  \
                                             (int)ai3_test_randint(0, 2),                       \
                                             ai3_test_randint(0, 1));                           \
        }                                                                                       \
        ai3_cpu_set_isa(saved);                                                                 \
    }

DEFINE_EPILOGUE_CHECK(f32, float, 0x1p-24)
DEFINE_EPILOGUE_CHECK(f64, double, 0x1p-53)

AI3_TEST(gemm_epilogue_f32_matches_unfused) { epilogue_sweep_f32(); }
AI3_TEST(gemm_epilogue_f64_matches_unfused) { epilogue_sweep_f64(); }
