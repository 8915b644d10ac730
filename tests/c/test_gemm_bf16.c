/* The bfloat16 GEMM engine (gemm/gemm_bf16.h) against a double-precision
 * product of the same bfloat16 inputs, for each of its kernels the CPU has
 * (AVX512_BF16; AMX): M, N, K of 1, primes, odd K, sizes past every tile,
 * step of k and block; A strided (row-major, transposed) or pre-packed; B
 * strided or packed by a callback; C float32 or bfloat16, row-major (padded
 * ldc) or transposed; bias, a residual (C's type and layout) and clamp;
 * one thread and the pool. Skipped
 * (with a note) where the CPU has no AVX512_BF16; there the engine must
 * refuse with a clear error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm/gemm_bf16.h"
#include "harness.h"

static const int64_t shapes[][3] = {
    /* M, N, K */
    {1, 1, 1},    {1, 1, 2},    {1, 17, 1},    {5, 1, 3},     {14, 32, 8},   {13, 31, 9},
    {15, 33, 7},  {29, 65, 17}, {64, 49, 577}, {97, 61, 53},  {3, 700, 301}, {200, 7, 90},
    {43, 2, 803}, {28, 96, 2049}, {130, 1000, 64}, {17, 3101, 40},
    /* around the AMX kernel's 32×32 blocks and steps of 32 k */
    {32, 32, 32}, {33, 17, 64},  {16, 48, 65},  {48, 40, 31},  {65, 97, 95},
};

typedef struct {
    const ai3_bf16 *src; /* row-major K×N */
    int64_t n;
} cb_ctx;

static void pack_cb(void *vctx, int64_t k0, int64_t kc, int64_t n0, int64_t nc, uint32_t *dst) {
    const cb_ctx *c = vctx;
    ai3_gemm_bf16_pack_b_block(kc, nc, c->src + k0 * c->n + n0, c->n, 1, dst);
}

static ai3_bf16 rand_bf16(void) { return ai3_float_to_bf16((float)ai3_test_uniform()); }

/* Every shape and variant on the kernel in use. */
static void check_products(void) {
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < n_shapes; si++) {
        const int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        ai3_bf16 *A = malloc(sizeof *A * (size_t)(M * K)), *B = malloc(sizeof *B * (size_t)(K * N));
        float *bias = malloc(sizeof *bias * (size_t)M);
        double *ref = malloc(sizeof *ref * (size_t)(M * N)), *mag = malloc(sizeof *mag * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++) A[i] = rand_bf16();
        for (int64_t i = 0; i < K * N; i++) B[i] = rand_bf16();
        for (int64_t i = 0; i < M; i++) bias[i] = (float)ai3_test_uniform();
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double t = 0, m = 0;
                for (int64_t k = 0; k < K; k++) {
                    double p = (double)ai3_bf16_to_float(A[i * K + k]) *
                               ai3_bf16_to_float(B[k * N + j]);
                    t += p;
                    m += fabs(p);
                }
                ref[i * N + j] = t;
                mag[i * N + j] = m;
            }
        ai3_bf16 *At = malloc(sizeof *At * (size_t)(M * K));
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
        uint32_t *packed = ai3_alloc(ai3_gemm_bf16_packed_a_size(M, K) * sizeof(uint32_t));
        ai3_gemm_bf16_pack_a(M, K, A, K, 1, packed);
        cb_ctx cb = {B, N};

        for (int variant = 0; variant < 8; variant++) {
            const int a_kind = variant % 3;   /* row-major, transposed, packed */
            const bool b_callback = variant & 1, out_bf16 = variant & 2,
                       transposed_c = variant & 4, use_bias = variant % 3 != 1,
                       use_clamp = variant >= 5, use_residual = variant % 4 != 0;
            const unsigned flags = (out_bf16 ? AI3_GEMM_BF16_OUT : 0) |
                                   (variant == 3 ? AI3_GEMM_SINGLE_THREAD : 0);
            ai3_gemm_bf16_operand a = a_kind == 0   ? ai3_gemm_bf16_strided(A, K, 1)
                                      : a_kind == 1 ? ai3_gemm_bf16_strided(At, 1, M)
                                                    : ai3_gemm_bf16_packed(packed);
            ai3_gemm_bf16_operand b = b_callback ? ai3_gemm_bf16_callback(pack_cb, &cb)
                                                 : ai3_gemm_bf16_strided(B, N, 1);
            const int64_t ldc = N + 3;
            const int64_t rsc = transposed_c ? 1 : ldc, csc = transposed_c ? M : 1;
            const size_t elem = out_bf16 ? 2 : 4, n_c = (size_t)(transposed_c ? M * N : M * ldc);
            void *C = malloc(elem * n_c), *R = malloc(elem * n_c);
            memset(C, 0x7f, elem * n_c);
            for (size_t i = 0; i < n_c; i++)
                if (out_bf16) ((ai3_bf16 *)R)[i] = rand_bf16();
                else ((float *)R)[i] = (float)ai3_test_uniform();
            const float clamp[2] = {-0.5f, 0.75f};
            const ai3_gemm_bf16_epilogue e = {.bias_row = use_bias ? bias : NULL,
                                              .residual = use_residual ? R : NULL,
                                              .clamp = use_clamp ? clamp : NULL};
            ai3_status s = ai3_gemm_bf16(M, N, K, &a, &b, C, rsc, csc, &e, flags);
            AI3_EXPECT(s == AI3_OK, "%s", ai3_last_error());
            int bad = 0;
            for (int64_t i = 0; i < M && !bad; i++)
                for (int64_t j = 0; j < N && !bad; j++) {
                    const int64_t off = i * rsc + j * csc;
                    double want = ref[i * N + j] + (use_bias ? bias[i] : 0);
                    if (use_residual)
                        want += out_bf16 ? ai3_bf16_to_float(((ai3_bf16 *)R)[off])
                                         : ((float *)R)[off];
                    if (use_clamp) want = want < clamp[0] ? clamp[0] : want > clamp[1] ? clamp[1] : want;
                    const double got = out_bf16 ? ai3_bf16_to_float(((ai3_bf16 *)C)[off])
                                                : ((float *)C)[off];
                    /* float32 summation, then (out_bf16) one rounding to 8 bits */
                    const double tol = 1e-6 * (mag[i * N + j] + 1) * sqrt((double)K + 1) +
                                       (out_bf16 ? fabs(want) * 0x1p-8 : 0);
                    if (fabs(got - want) > tol) {
                        AI3_EXPECT(false, "M=%lld N=%lld K=%lld variant %d: C[%lld][%lld] = %g, "
                                   "want %g", (long long)M, (long long)N, (long long)K, variant,
                                   (long long)i, (long long)j, got, want);
                        bad = 1;
                    }
                }
            if (!transposed_c && !out_bf16) /* the padding of ldc untouched */
                for (int64_t i = 0; i < M && !bad; i++)
                    for (int64_t j = N; j < ldc; j++) {
                        uint32_t u;
                        memcpy(&u, (float *)C + i * ldc + j, 4);
                        if (u != 0x7f7f7f7fu) bad = 1;
                    }
            AI3_EXPECT(!bad || transposed_c || out_bf16, "wrote past N into ldc's padding");
            free(C);
            free(R);
        }
        ai3_free(packed);
        free(At);
        free(A);
        free(B);
        free(bias);
        free(ref);
        free(mag);
    }
}

/* Sets `kernel`; false (with a note) where the CPU lacks it. */
static bool use_kernel(ai3_gemm_bf16_kernel kernel) {
    if (ai3_gemm_bf16_set_kernel(kernel) == kernel) return true;
    printf("    (no %s kernel here: skipped)\n", ai3_gemm_bf16_kernel_name(kernel));
    return false;
}

AI3_TEST(gemm_bf16_matches_double_reference) {
    if (!ai3_cpu_has_bf16()) {
        printf("    (no AVX512_BF16 here: only the error is checked)\n");
        ai3_gemm_bf16_operand a = ai3_gemm_bf16_strided(NULL, 1, 1);
        float c;
        AI3_EXPECT_STATUS(ai3_gemm_bf16(1, 1, 1, &a, &a, &c, 1, 1, NULL, 0),
                          AI3_ERROR_UNSUPPORTED);
        return;
    }
    const ai3_gemm_bf16_kernel saved = ai3_gemm_bf16_get_kernel();
    for (int k = AI3_GEMM_BF16_AVX512; k <= AI3_GEMM_BF16_AMX; k++)
        if (use_kernel((ai3_gemm_bf16_kernel)k)) check_products();
    ai3_gemm_bf16_set_kernel(saved);
}

/* A packed A runs on the kernel it was packed for, whichever is in use
 * when the product runs: the same sums as a strided A on that kernel. */
AI3_TEST(gemm_bf16_packed_a_keeps_its_kernel) {
    if (!ai3_cpu_has_bf16()) return;
    const ai3_gemm_bf16_kernel saved = ai3_gemm_bf16_get_kernel();
    const int64_t M = 45, N = 70, K = 99;
    ai3_bf16 *A = malloc(sizeof *A * (size_t)(M * K)), *B = malloc(sizeof *B * (size_t)(K * N));
    float *want = malloc(sizeof *want * (size_t)(M * N)), *got = malloc(sizeof *got * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = rand_bf16();
    for (int64_t i = 0; i < K * N; i++) B[i] = rand_bf16();
    const ai3_gemm_bf16_operand as = ai3_gemm_bf16_strided(A, K, 1), b = ai3_gemm_bf16_strided(B, N, 1);
    for (int k = AI3_GEMM_BF16_AVX512; k <= AI3_GEMM_BF16_AMX; k++) {
        if (!use_kernel((ai3_gemm_bf16_kernel)k)) continue;
        uint32_t *packed = ai3_alloc(ai3_gemm_bf16_packed_a_size(M, K) * sizeof(uint32_t));
        ai3_gemm_bf16_pack_a(M, K, A, K, 1, packed);
        ai3_status s = ai3_gemm_bf16(M, N, K, &as, &b, want, N, 1, NULL, 0);
        AI3_EXPECT(s == AI3_OK, "%s", ai3_last_error());
        ai3_gemm_bf16_set_kernel(k == AI3_GEMM_BF16_AMX ? AI3_GEMM_BF16_AVX512 : AI3_GEMM_BF16_AMX);
        const ai3_gemm_bf16_operand ap = ai3_gemm_bf16_packed(packed);
        s = ai3_gemm_bf16(M, N, K, &ap, &b, got, N, 1, NULL, 0);
        AI3_EXPECT(s == AI3_OK, "%s", ai3_last_error());
        AI3_EXPECT(memcmp(want, got, sizeof *got * (size_t)(M * N)) == 0,
                   "A packed for %s gave other sums", ai3_gemm_bf16_kernel_name(k));
        /* a packed A of another shape, or memory that is no packed A */
        AI3_EXPECT_STATUS(ai3_gemm_bf16(M - 1, N, K, &ap, &b, got, N, 1, NULL, 0),
                          AI3_ERROR_INVALID_ARGUMENT);
        AI3_EXPECT(strstr(ai3_last_error(), "45x99") != NULL, "message: %s", ai3_last_error());
        packed[0] ^= 1;
        AI3_EXPECT_STATUS(ai3_gemm_bf16(M, N, K, &ap, &b, got, N, 1, NULL, 0),
                          AI3_ERROR_INVALID_ARGUMENT);
        ai3_free(packed);
    }
    ai3_gemm_bf16_set_kernel(saved);
    free(A);
    free(B);
    free(want);
    free(got);
}

/* K = 0: C is the epilogue alone, clamp(bias + residual), on every tile. */
AI3_TEST(gemm_bf16_empty_k_is_the_epilogue) {
    if (!ai3_cpu_has_bf16()) return;
    const int64_t M = 20, N = 40;
    float bias[20], out[20 * 40], res[20 * 40];
    for (int64_t i = 0; i < M; i++) bias[i] = (float)ai3_test_uniform();
    for (int64_t i = 0; i < M * N; i++) res[i] = (float)ai3_test_uniform();
    const float clamp[2] = {-0.25f, 0.5f};
    const ai3_gemm_bf16_epilogue e = {.bias_row = bias, .residual = res, .clamp = clamp};
    const ai3_gemm_bf16_operand none = ai3_gemm_bf16_strided(NULL, 1, 1);
    const ai3_status s = ai3_gemm_bf16(M, N, 0, &none, &none, out, N, 1, &e, 0);
    AI3_EXPECT(s == AI3_OK, "%s", ai3_last_error());
    int bad = 0;
    for (int64_t i = 0; i < M && !bad; i++)
        for (int64_t j = 0; j < N && !bad; j++) {
            float want = bias[i] + res[i * N + j];
            want = want < clamp[0] ? clamp[0] : want > clamp[1] ? clamp[1] : want;
            if (out[i * N + j] != want) {
                AI3_EXPECT(false, "C[%lld][%lld] = %g, want %g", (long long)i, (long long)j,
                           out[i * N + j], want);
                bad = 1;
            }
        }
}

AI3_TEST(gemm_bf16_errors) {
    float c = 0;
    ai3_gemm_bf16_operand a = ai3_gemm_bf16_strided(NULL, 1, 1);
    AI3_EXPECT_STATUS(ai3_gemm_bf16(-1, 1, 1, &a, &a, &c, 1, 1, NULL, 0),
                      AI3_ERROR_INVALID_ARGUMENT);
    if (!ai3_cpu_has_bf16()) return;
    AI3_EXPECT_STATUS(ai3_gemm_bf16(1, 1, 1, &a, &a, &c, 1, 1, NULL, 0),
                      AI3_ERROR_INVALID_ARGUMENT);
    /* below AVX-512 (AI3_ISA, ai3_cpu_set_isa) bfloat16 is refused */
    const ai3_isa saved = ai3_cpu_isa();
    ai3_cpu_set_isa(AI3_ISA_AVX2);
    AI3_EXPECT(!ai3_cpu_has_bf16(), "bfloat16 on with the ISA at avx2");
    AI3_EXPECT_STATUS(ai3_gemm_bf16(1, 1, 1, &a, &a, &c, 1, 1, NULL, 0),
                      AI3_ERROR_UNSUPPORTED);
    AI3_EXPECT(strstr(ai3_last_error(), "AVX512_BF16") != NULL, "message: %s", ai3_last_error());
    ai3_cpu_set_isa(saved);
}
