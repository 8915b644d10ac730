/* The GEMM engine (gemm/gemm.h) against a naive double-precision product:
 * every ISA the CPU has, forced in turn; float32 and float64; M, N, K of 1,
 * primes, sizes past every tile and cache block, large K; operands strided
 * (row-major or transposed), pre-packed or packed by a callback; padded ldc;
 * accumulate; row and column bias; one thread and the pool. Also the older
 * ai3_gemm_nn/_nt entry points and argument errors. */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm/gemm.h"
#include "harness.h"

/* Operand kinds the checks cycle through. */
enum { ROW_MAJOR, TRANSPOSED, PACKED, CALLBACK, N_KINDS };
static const char *kind_names[] = {"row-major", "transposed", "packed", "callback"};

static const int64_t shapes[][3] = {
    /* M, N, K */
    {1, 1, 1},      {1, 1, 7},      {1, 17, 1},     {5, 1, 3},      {2, 3, 4},
    {14, 32, 8},    {6, 16, 9},     {7, 13, 11},    {13, 37, 29},   {15, 33, 31},
    {29, 65, 17},   {31, 31, 31},   {97, 61, 53},   {101, 515, 19}, {3, 200, 1500},
    {15, 9, 2100},  {16, 40, 1030}, {40, 45, 600},  {1, 600, 2049}, {200, 7, 90},
    {350, 41, 30},  {3, 3100, 5},   {17, 3101, 400}, {64, 196, 577}, {43, 2, 803},
};

/* A callback packer reading a strided source, which also checks that the
 * engine keeps the callback contract. */
#define DEFINE_GEMM_CHECK(sfx, real, eps)                                                        \
    typedef struct {                                                                             \
        const ai3_gemm_config_##sfx *cfg;                                                        \
        const real *src;                                                                         \
        int64_t rs, cs;                                                                          \
        bool is_b;                                                                               \
        atomic_int violations;                                                                   \
    } pack_ctx_##sfx;                                                                            \
                                                                                                 \
    static void pack_cb_##sfx(void *vctx, int64_t k0, int64_t kc, int64_t x0, int64_t xc,        \
                              real *dst) {                                                       \
        pack_ctx_##sfx *c = vctx;                                                                \
        int64_t group = c->is_b ? c->cfg->nr : c->cfg->mr;                                       \
        int64_t block = c->is_b ? c->cfg->nc : c->cfg->mc;                                       \
        if (x0 % group || kc > c->cfg->kc || kc < 1 || xc > block || ((uintptr_t)dst & 63))     \
            atomic_fetch_add(&c->violations, 1);                                                 \
        if (c->is_b)                                                                             \
            ai3_gemm_pack_b_block_##sfx(c->cfg, kc, xc, c->src + k0 * c->rs + x0 * c->cs, c->rs, \
                                        c->cs, dst);                                             \
        else                                                                                     \
            ai3_gemm_pack_a_block_##sfx(c->cfg, xc, kc, c->src + x0 * c->rs + k0 * c->cs, c->rs, \
                                        c->cs, dst);                                             \
    }                                                                                            \
                                                                                                 \
    /* Fills a rows×cols matrix stored `kind`-wise and makes its operand. */                     \
    static real *make_operand_##sfx(const ai3_gemm_config_##sfx *cfg, bool is_b, int kind,       \
                                    int64_t rows, int64_t cols, int64_t pad, real **packed,      \
                                    pack_ctx_##sfx *ctx, ai3_gemm_operand_##sfx *op,             \
                                    int64_t *rs, int64_t *cs) {                                  \
        /* PACKED and CALLBACK read from one of the two strided layouts. */                     \
        bool trans = kind == TRANSPOSED || (kind >= PACKED && ai3_test_randint(0, 1));           \
        int64_t ld = (trans ? rows : cols) + pad;                                                \
        size_t n = (size_t)((trans ? cols : rows) * ld);                                         \
        real *m = malloc(sizeof(real) * n);                                                      \
        for (size_t i = 0; i < n; i++) m[i] = (real)ai3_test_uniform();                          \
        *rs = trans ? 1 : ld;                                                                    \
        *cs = trans ? ld : 1;                                                                    \
        *packed = NULL;                                                                          \
        if (kind == PACKED) {                                                                    \
            size_t sz = is_b ? ai3_gemm_packed_b_size_##sfx(cfg, rows, cols)                     \
                             : ai3_gemm_packed_a_size_##sfx(cfg, rows, cols);                    \
            *packed = ai3_alloc(sizeof(real) * (sz ? sz : 1));                                   \
            if (is_b)                                                                            \
                ai3_gemm_pack_b_##sfx(cfg, rows, cols, m, *rs, *cs, *packed);                    \
            else                                                                                 \
                ai3_gemm_pack_a_##sfx(cfg, rows, cols, m, *rs, *cs, *packed);                    \
            *op = ai3_gemm_packed_##sfx(*packed);                                                \
        } else if (kind == CALLBACK) {                                                           \
            ctx->cfg = cfg;                                                                      \
            ctx->src = m;                                                                        \
            ctx->rs = *rs;                                                                       \
            ctx->cs = *cs;                                                                       \
            ctx->is_b = is_b;                                                                    \
            atomic_init(&ctx->violations, 0);                                                    \
            *op = ai3_gemm_callback_##sfx(pack_cb_##sfx, ctx);                                   \
        } else {                                                                                 \
            *op = ai3_gemm_strided_##sfx(m, *rs, *cs);                                           \
        }                                                                                        \
        return m;                                                                                \
    }                                                                                            \
                                                                                                 \
    /* One product, checked element by element: correct if within the                         \
     * worst-case rounding bound of a length-K dot product (about                              \
     * K·eps·Σ|a·b|) of the exact one; the padding between rows of C must be                   \
     * untouched. Returns false on a failure (already reported). */                             \
    static bool check_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t M, int64_t N, int64_t K,  \
                            int akind, int bkind, int64_t pad, bool accumulate, int bias,        \
                            bool threads) {                                                      \
        pack_ctx_##sfx actx, bctx;                                                               \
        ai3_gemm_operand_##sfx aop, bop;                                                         \
        real *apacked, *bpacked;                                                                 \
        int64_t ars, acs, brs, bcs, ldc = N + pad;                                               \
        real *A = make_operand_##sfx(cfg, false, akind, M, K, ai3_test_randint(0, 3), &apacked,  \
                                     &actx, &aop, &ars, &acs);                                   \
        real *B = make_operand_##sfx(cfg, true, bkind, K, N, ai3_test_randint(0, 3), &bpacked,   \
                                     &bctx, &bop, &brs, &bcs);                                   \
        real *C = malloc(sizeof(real) * (size_t)(M * ldc));                                      \
        real *C0 = malloc(sizeof(real) * (size_t)(M * ldc));                                     \
        real *brow = malloc(sizeof(real) * (size_t)M), *bcol = malloc(sizeof(real) * (size_t)N); \
        for (int64_t i = 0; i < M * ldc; i++) C[i] = C0[i] = (real)ai3_test_uniform();           \
        for (int64_t i = 0; i < M; i++) brow[i] = (real)ai3_test_uniform();                      \
        for (int64_t i = 0; i < N; i++) bcol[i] = (real)ai3_test_uniform();                      \
        unsigned flags = (accumulate ? AI3_GEMM_ACCUMULATE : 0) |                                \
                         (threads ? 0 : AI3_GEMM_SINGLE_THREAD);                                 \
        ai3_status st = ai3_gemm_##sfx(cfg, M, N, K, &aop, &bop, C, ldc,                         \
                                       bias & 1 ? brow : NULL, bias & 2 ? bcol : NULL, flags);   \
        int64_t bad = 0;                                                                         \
        double worst = 0;                                                                        \
        for (int64_t i = 0; i < M; i++) {                                                        \
            for (int64_t j = 0; j < ldc; j++) {                                                  \
                double got = C[i * ldc + j];                                                     \
                if (j >= N) { /* padding between rows: untouched */                              \
                    if (got != C0[i * ldc + j]) bad++;                                           \
                    continue;                                                                    \
                }                                                                                \
                double sum = accumulate ? C0[i * ldc + j] : 0, mag = fabs(sum);                  \
                if (bias & 1) sum += brow[i], mag += fabs(brow[i]);                              \
                if (bias & 2) sum += bcol[j], mag += fabs(bcol[j]);                              \
                for (int64_t p = 0; p < K; p++) {                                                \
                    double ab = (double)A[i * ars + p * acs] * B[p * brs + j * bcs];             \
                    sum += ab;                                                                   \
                    mag += fabs(ab);                                                             \
                }                                                                                \
                double err = fabs(got - sum);                                                    \
                if (!(err <= (double)(K + 6) * (eps) * mag + 1e-30)) bad++;                      \
                if (err > worst || err != err) worst = err;                                      \
            }                                                                                    \
        }                                                                                        \
        int violations = (akind == CALLBACK ? atomic_load(&actx.violations) : 0) +               \
                         (bkind == CALLBACK ? atomic_load(&bctx.violations) : 0);                \
        bool ok = st == AI3_OK && bad == 0 && violations == 0;                                   \
        AI3_EXPECT(ok,                                                                           \
                   "%s M=%lld N=%lld K=%lld A %s B %s pad=%lld acc=%d bias=%d threads=%d: "      \
                   "status %d, %lld bad, max err %g, %d callback contract violations",           \
                   cfg->name, (long long)M, (long long)N, (long long)K, kind_names[akind],       \
                   kind_names[bkind], (long long)pad, (int)accumulate, bias, (int)threads,       \
                   (int)st, (long long)bad, worst, violations);                                  \
        free(A);                                                                                 \
        free(B);                                                                                 \
        ai3_free(apacked);                                                                       \
        ai3_free(bpacked);                                                                       \
        free(C);                                                                                 \
        free(C0);                                                                                \
        free(brow);                                                                              \
        free(bcol);                                                                              \
        return ok;                                                                               \
    }                                                                                            \
                                                                                                 \
    /* Every shape under every ISA: the first few shapes with all 16                           \
     * combinations of operand kinds, the rest with four random ones. */                        \
    static void sweep_##sfx(void) {                                                              \
        int checks = 0;                                                                          \
        for (int isa = 0; isa <= (int)ai3_cpu_best_isa(); isa++) {                               \
            const ai3_gemm_config_##sfx *cfg = ai3_gemm_config_for_isa_##sfx((ai3_isa)isa);      \
            AI3_EXPECT(cfg->isa == (ai3_isa)isa, "config for %s is %s", ai3_isa_name(isa),      \
                       cfg->name);                                                               \
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {                      \
                int combos = s < 10 ? N_KINDS * N_KINDS : 4;                                     \
                for (int c = 0; c < combos; c++) {                                               \
                    int ak = s < 10 ? c / N_KINDS : (int)ai3_test_randint(0, N_KINDS - 1);       \
                    int bk = s < 10 ? c % N_KINDS : (int)ai3_test_randint(0, N_KINDS - 1);       \
                    int64_t pad = ai3_test_randint(0, 1) ? ai3_test_randint(1, 9) : 0;           \
                    check_##sfx(cfg, shapes[s][0], shapes[s][1], shapes[s][2], ak, bk, pad,      \
                                ai3_test_randint(0, 1), (int)ai3_test_randint(0, 3),             \
                                ai3_test_randint(0, 1));                                         \
                    checks++;                                                                    \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        AI3_EXPECT(checks > 0, "no checks ran");                                                 \
    }                                                                                            \
                                                                                                 \
    /* Random shapes, kinds, strides and modes under the active ISA, forced                    \
     * in turn; shapes big enough for both threads to get work. */                              \
    static void random_##sfx(void) {                                                             \
        ai3_isa saved = ai3_cpu_isa();                                                           \
        for (int isa = 0; isa <= (int)ai3_cpu_best_isa(); isa++) {                               \
            ai3_cpu_set_isa((ai3_isa)isa);                                                       \
            const ai3_gemm_config_##sfx *cfg = ai3_gemm_get_config_##sfx();                      \
            AI3_EXPECT(cfg->isa == (ai3_isa)isa, "active config is %s", cfg->name);              \
            for (int t = 0; t < 12; t++) {                                                       \
                int64_t M = ai3_test_randint(1, 150), N = ai3_test_randint(1, 400);              \
                int64_t K = ai3_test_randint(1, 900);                                            \
                check_##sfx(cfg, M, N, K,                                                             \
                            (int)ai3_test_randint(0, N_KINDS - 1),                               \
                            (int)ai3_test_randint(0, N_KINDS - 1), ai3_test_randint(0, 5),       \
                            ai3_test_randint(0, 1), (int)ai3_test_randint(0, 3), true);          \
            }                                                                                    \
        }                                                                                        \
        ai3_cpu_set_isa(saved);                                                                  \
    }

DEFINE_GEMM_CHECK(f32, float, 0x1p-24)
DEFINE_GEMM_CHECK(f64, double, 0x1p-53)

AI3_TEST(gemm_engine_f32_every_isa) { sweep_f32(); }
AI3_TEST(gemm_engine_f64_every_isa) { sweep_f64(); }
AI3_TEST(gemm_engine_f32_random) { random_f32(); }
AI3_TEST(gemm_engine_f64_random) { random_f64(); }

/* K = 0: C gets only the accumulate term and the biases. */
AI3_TEST(gemm_engine_empty_k) {
    float A[1], B[1], C[6] = {1, 2, 3, 4, 5, 6}, brow[2] = {10, 20}, bcol[3] = {1, 2, 3};
    ai3_gemm_operand_f32 a = ai3_gemm_strided_f32(A, 0, 1), b = ai3_gemm_strided_f32(B, 3, 1);
    ai3_status st = ai3_gemm_f32(NULL, 2, 3, 0, &a, &b, C, 3, brow, bcol, AI3_GEMM_ACCUMULATE);
    const float want[6] = {12, 14, 16, 25, 27, 29};
    AI3_EXPECT(st == AI3_OK && memcmp(C, want, sizeof want) == 0, "K=0 gave %g %g %g %g %g %g",
               C[0], C[1], C[2], C[3], C[4], C[5]);
}

AI3_TEST(gemm_engine_rejects_bad_arguments) {
    float A[4] = {0}, B[4] = {0}, C[4];
    ai3_gemm_operand_f32 a = ai3_gemm_strided_f32(A, 2, 1), b = ai3_gemm_strided_f32(B, 2, 1);
    ai3_gemm_operand_f32 none = ai3_gemm_callback_f32(NULL, NULL);
    AI3_EXPECT(ai3_gemm_f32(NULL, -1, 2, 2, &a, &b, C, 2, NULL, NULL, 0) ==
                   AI3_ERROR_INVALID_ARGUMENT, "negative M accepted");
    AI3_EXPECT(ai3_gemm_f32(NULL, 2, 2, 2, &a, NULL, C, 2, NULL, NULL, 0) ==
                   AI3_ERROR_INVALID_ARGUMENT, "NULL operand accepted");
    AI3_EXPECT(ai3_gemm_f32(NULL, 2, 2, 2, &a, &none, C, 2, NULL, NULL, 0) ==
                   AI3_ERROR_INVALID_ARGUMENT, "callback operand without a function accepted");
    AI3_EXPECT(ai3_gemm_f32(NULL, 2, 2, 2, &a, &b, C, 1, NULL, NULL, 0) ==
                   AI3_ERROR_INVALID_ARGUMENT, "ldc < N accepted");
    AI3_EXPECT(strlen(ai3_last_error()) > 0, "no error message");
}

/* Forcing an ISA never goes past what the CPU has, and names round-trip. */
AI3_TEST(gemm_cpu_isa_override) {
    ai3_isa saved = ai3_cpu_isa(), best = ai3_cpu_best_isa();
    AI3_EXPECT(saved <= best, "active ISA %s above the best %s", ai3_isa_name(saved),
               ai3_isa_name(best));
    AI3_EXPECT(ai3_cpu_set_isa(AI3_ISA_AVX512) == best, "forcing avx512 must clamp to %s",
               ai3_isa_name(best));
    AI3_EXPECT(ai3_cpu_set_isa(AI3_ISA_GENERIC) == AI3_ISA_GENERIC, "generic always available");
    AI3_EXPECT(strcmp(ai3_gemm_get_config_f64()->name, "f64_gemm_4x4_scalar") == 0,
               "generic config is %s", ai3_gemm_get_config_f64()->name);
    ai3_cpu_set_isa(saved);
    AI3_EXPECT(ai3_cpu_isa() == saved, "ISA not restored");
}

/* A config is chosen by the ISA it declares: the highest not above the one
 * asked for, nor above the CPU's best. Both dtypes come from one template
 * per family: the same rows, and twice the float columns in the same
 * registers; the names give dtype and tile. */
AI3_TEST(gemm_config_by_declared_isa) {
    ai3_isa best = ai3_cpu_best_isa();
    for (int isa = AI3_ISA_GENERIC; isa <= AI3_ISA_AVX512; isa++) {
        ai3_isa want = isa < (int)best ? (ai3_isa)isa : best;
        const ai3_gemm_config_f32 *c32 = ai3_gemm_config_for_isa_f32((ai3_isa)isa);
        const ai3_gemm_config_f64 *c64 = ai3_gemm_config_for_isa_f64((ai3_isa)isa);
        AI3_EXPECT(c32->isa == want && c64->isa == want, "asked for %s: %s and %s",
                   ai3_isa_name((ai3_isa)isa), c32->name, c64->name);
        AI3_EXPECT(c32->mr == c64->mr && c32->nr == 2 * c64->nr, "%s and %s differ in shape",
                   c32->name, c64->name);
        char n32[64], n64[64];
        snprintf(n32, sizeof n32, "f32_gemm_%dx%d_", c32->mr, c32->nr);
        snprintf(n64, sizeof n64, "f64_gemm_%dx%d_", c64->mr, c64->nr);
        AI3_EXPECT(strncmp(c32->name, n32, strlen(n32)) == 0 &&
                       strncmp(c64->name, n64, strlen(n64)) == 0,
                   "names %s and %s do not match their tiles", c32->name, c64->name);
        const char *fam = strrchr(c32->name, '_');
        AI3_EXPECT(fam && strcmp(fam, strrchr(c64->name, '_')) == 0, "%s and %s: two families",
                   c32->name, c64->name);
    }
}

/* --- the older entry points ---------------------------------------------------- */

#define DEFINE_OLD_CHECK(real, sfx, eps)                                                   \
    static void old_check_##sfx(bool transposed, int64_t M, int64_t N, int64_t K,          \
                                int64_t pad, bool accumulate) {                            \
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
        for (int64_t i = 0; i < M; i++) {                                                  \
            for (int64_t j = 0; j < ldc; j++) {                                            \
                double got = C[i * ldc + j];                                               \
                if (j >= N) {                                                              \
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
                if (!(fabs(got - sum) <= (double)(K + 4) * (eps) * mag + 1e-30)) bad++;    \
            }                                                                              \
        }                                                                                  \
        AI3_EXPECT(bad == 0, "gemm_%s_" #sfx " M=%lld N=%lld K=%lld pad=%lld acc=%d: %lld bad", \
                   transposed ? "nt" : "nn", (long long)M, (long long)N, (long long)K,      \
                   (long long)pad, (int)accumulate, (long long)bad);                        \
        free(A);                                                                           \
        free(B);                                                                           \
        free(C);                                                                           \
        free(C0);                                                                          \
    }

DEFINE_OLD_CHECK(float, f32, 0x1p-24)
DEFINE_OLD_CHECK(double, f64, 0x1p-53)

AI3_TEST(gemm_nn_nt_match_naive) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int variant = 0; variant < 4; variant++) {
            int64_t pad = variant % 2 ? ai3_test_randint(1, 9) : 0;
            bool transposed = variant / 2, accumulate = ai3_test_randint(0, 1);
            old_check_f32(transposed, shapes[s][0], shapes[s][1], shapes[s][2], pad, accumulate);
            old_check_f64(transposed, shapes[s][0], shapes[s][1], shapes[s][2], pad, accumulate);
        }
    }
}
