/* ai3_gemm_nn / ai3_gemm_nt against a naive double-precision product, over
 * shapes that hit every path (small loop, packed tiles with edge tiles, dot
 * products, several K slices and column slabs), padded row strides and both
 * accumulate modes. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "harness.h"

void ai3_gemm_nn_f32(int64_t, int64_t, int64_t, const float *, int64_t, const float *, int64_t,
                     float *, int64_t, bool);
void ai3_gemm_nt_f32(int64_t, int64_t, int64_t, const float *, int64_t, const float *, int64_t,
                     float *, int64_t, bool);
void ai3_gemm_nn_f64(int64_t, int64_t, int64_t, const double *, int64_t, const double *, int64_t,
                     double *, int64_t, bool);
void ai3_gemm_nt_f64(int64_t, int64_t, int64_t, const double *, int64_t, const double *, int64_t,
                     double *, int64_t, bool);

static const int64_t shapes[][3] = {
    /* M, N, K */
    {1, 1, 1},     {1, 1, 7},     {1, 17, 1},    {5, 1, 3},     {2, 3, 4},
    {6, 16, 8},    {7, 13, 11},   {13, 37, 29},  {31, 31, 31},  {32, 33, 34},
    {6, 16, 300},  {12, 48, 257}, {97, 61, 53},  {101, 515, 19}, {67, 1031, 263},
    {3, 200, 1500}, {15, 9, 2100}, {16, 40, 1030}, {40, 45, 600}, {1, 600, 2049},
    {200, 7, 90},  {128, 128, 128},
};

/* A product is correct if every element is within the worst-case rounding
 * bound of a length-K dot product (about K·eps·Σ|a·b|) of the exact one. */
#define DEFINE_GEMM_CHECK(real, sfx, eps)                                                  \
    static void check_##sfx(bool transposed, int64_t M, int64_t N, int64_t K, int64_t pad,  \
                            bool accumulate) {                                             \
        int64_t lda = K + pad, ldb = (transposed ? K : N) + pad, ldc = N + pad;             \
        int64_t brows = transposed ? N : K;                                                \
        real *A = malloc(sizeof(real) * (size_t)(M * lda));                                \
        real *B = malloc(sizeof(real) * (size_t)(brows * ldb));                            \
        real *C = malloc(sizeof(real) * (size_t)(M * ldc));                                \
        real *C0 = malloc(sizeof(real) * (size_t)(M * ldc));                               \
        for (int64_t i = 0; i < M * lda; i++) A[i] = (real)ai3_test_uniform();             \
        for (int64_t i = 0; i < brows * ldb; i++) B[i] = (real)ai3_test_uniform();         \
        for (int64_t i = 0; i < M * ldc; i++) C[i] = C0[i] = (real)ai3_test_uniform();     \
        if (transposed)                                                                    \
            ai3_gemm_nt_##sfx(M, N, K, A, lda, B, ldb, C, ldc, accumulate);                \
        else                                                                               \
            ai3_gemm_nn_##sfx(M, N, K, A, lda, B, ldb, C, ldc, accumulate);                \
        int64_t bad = 0;                                                                   \
        double worst = 0;                                                                  \
        for (int64_t i = 0; i < M; i++) {                                                  \
            for (int64_t j = 0; j < ldc; j++) {                                            \
                double got = C[i * ldc + j];                                               \
                if (j >= N) { /* padding between rows: untouched */                        \
                    if (got != C0[i * ldc + j]) bad++;                                     \
                    continue;                                                              \
                }                                                                          \
                double sum = accumulate ? C0[i * ldc + j] : 0, mag = fabs(sum);            \
                for (int64_t p = 0; p < K; p++) {                                          \
                    double ab = (double)A[i * lda + p] *                                   \
                                (transposed ? B[j * ldb + p] : B[p * ldb + j]);            \
                    sum += ab;                                                             \
                    mag += fabs(ab);                                                       \
                }                                                                          \
                double err = fabs(got - sum);                                              \
                if (!(err <= (double)(K + 4) * (eps) * mag + 1e-30)) bad++;                \
                if (err > worst) worst = err;                                              \
            }                                                                              \
        }                                                                                  \
        AI3_EXPECT(bad == 0,                                                               \
                   "gemm_%s_" #sfx " M=%lld N=%lld K=%lld pad=%lld acc=%d: %lld bad, "       \
                   "max err %g",                                                           \
                   transposed ? "nt" : "nn", (long long)M, (long long)N, (long long)K,      \
                   (long long)pad, (int)accumulate, (long long)bad, worst);                 \
        free(A);                                                                           \
        free(B);                                                                           \
        free(C);                                                                           \
        free(C0);                                                                          \
    }

DEFINE_GEMM_CHECK(float, f32, 0x1p-24)
DEFINE_GEMM_CHECK(double, f64, 0x1p-53)

static void sweep(bool transposed, bool f64) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int variant = 0; variant < 3; variant++) {
            int64_t pad = variant == 0 ? 0 : ai3_test_randint(1, 9);
            bool accumulate = variant == 2;
            if (f64)
                check_f64(transposed, shapes[s][0], shapes[s][1], shapes[s][2], pad, accumulate);
            else
                check_f32(transposed, shapes[s][0], shapes[s][1], shapes[s][2], pad, accumulate);
        }
    }
}

AI3_TEST(gemm_nn_f32_matches_naive) { sweep(false, false); }
AI3_TEST(gemm_nn_f64_matches_naive) { sweep(false, true); }
AI3_TEST(gemm_nt_f32_matches_naive) { sweep(true, false); }
AI3_TEST(gemm_nt_f64_matches_naive) { sweep(true, true); }

/* Random shapes, strides and modes on top of the fixed list. */
AI3_TEST(gemm_random_shapes) {
    for (int t = 0; t < 60; t++) {
        int64_t M = ai3_test_randint(1, 120), N = ai3_test_randint(1, 300);
        int64_t K = ai3_test_randint(1, 400), pad = ai3_test_randint(0, 3);
        bool transposed = ai3_test_randint(0, 1), accumulate = ai3_test_randint(0, 1);
        if (t % 2)
            check_f64(transposed, M, N, K, pad, accumulate);
        else
            check_f32(transposed, M, N, K, pad, accumulate);
    }
}
