/*
 * bfloat16 GEMM benchmark: GFLOP/s of ai3_gemm_bf16 (bfloat16 operands,
 * float32 sums, bfloat16 output) on each of its kernels the CPU has
 * (AVX512_BF16, AMX) against the float32 engine ai3_gemm_f32 on the same
 * products, as a convolution runs them: A the pre-packed weights
 * (M = C_out, K = C_in·KH·KW), B the row-major input (N = OH·OW).
 *
 *   ai3_bench_gemm_bf16 [--reps R] [--threads T] > results.json
 *
 * The contenders run interleaved, round after round; each round times
 * back-to-back calls for at least 20 ms. The JSON has every round's
 * GFLOP/s; a table of medians (and ratios to float32) goes to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm/gemm_bf16.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int bf16; /* 0: float32; 1: bfloat16 (A packed for its kernel) */
    int64_t M, N, K;
    const void *A, *B; /* A pre-packed */
    void *C;
} call_t;

static void run_call(const call_t *c) {
    ai3_status s;
    if (c->bf16) {
        ai3_gemm_bf16_operand a = ai3_gemm_bf16_packed(c->A), b = ai3_gemm_bf16_strided(c->B, c->N, 1);
        s = ai3_gemm_bf16(c->M, c->N, c->K, &a, &b, c->C, c->N, 1, NULL, AI3_GEMM_BF16_OUT);
    } else {
        ai3_gemm_operand_f32 a = ai3_gemm_packed_f32(c->A), b = ai3_gemm_strided_f32(c->B, c->N, 1);
        s = ai3_gemm_f32(NULL, c->M, c->N, c->K, &a, &b, c->C, c->N, NULL, NULL, 0);
    }
    if (s != AI3_OK) {
        fprintf(stderr, "gemm failed: %s\n", ai3_last_error());
        exit(1);
    }
}

static double time_call(const call_t *c) {
    int calls = 0;
    double t0 = now(), t;
    do {
        run_call(c);
        calls++;
    } while ((t = now() - t0) < 0.02);
    return 2.0 * (double)c->M * (double)c->N * (double)c->K * calls / t * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    double s[64];
    memcpy(s, v, sizeof *v * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, by_value);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* M, N, K: the seed's 3x3 shapes at batch 1, then 1x1 and 3x3 layers of ResNet-50 */
static const int shapes[][3] = {
    {64, 12544, 576}, {256, 784, 2304}, {512, 196, 4608}, {64, 3136, 576},  {256, 3136, 64},
    {128, 784, 1152}, {1024, 196, 256}, {256, 196, 2304}, {2048, 49, 512}, {512, 49, 4608},
};

int main(int argc, char **argv) {
    int reps = 7, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    }
    if (reps < 1 || reps > 64) reps = 7;
    if (!ai3_cpu_has_bf16()) {
        fprintf(stderr, "this CPU has no AVX512_BF16\n");
        return 1;
    }
    ai3_set_num_threads(threads);
    const ai3_gemm_config_f32 *cfg = ai3_gemm_get_config_f32();
    /* the contenders: float32, then each bfloat16 kernel there is */
    const char *names[3] = {"f32", NULL, NULL};
    ai3_gemm_bf16_kernel kernels[3];
    int n_impl = 1;
    for (int k = AI3_GEMM_BF16_AVX512; k <= AI3_GEMM_BF16_AMX; k++)
        if (ai3_gemm_bf16_set_kernel((ai3_gemm_bf16_kernel)k) == (ai3_gemm_bf16_kernel)k) {
            kernels[n_impl] = (ai3_gemm_bf16_kernel)k;
            names[n_impl++] = k == AI3_GEMM_BF16_AMX ? "bf16 amx" : "bf16 avx512";
        }
    printf("{\n  \"threads\": %d,\n  \"f32_kernel\": \"%s\",\n  \"runs\": [\n", threads, cfg->name);
    fprintf(stderr, "%6s %6s %6s ", "M", "N", "K");
    for (int c = 0; c < n_impl; c++) fprintf(stderr, " %12s", names[c]);
    fprintf(stderr, "  (GFLOP/s; ratios to f32)\n");
    int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < n_shapes; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof *A * (size_t)(M * K)), *B = malloc(sizeof *B * (size_t)(K * N));
        ai3_bf16 *Ah = malloc(sizeof *Ah * (size_t)(M * K)), *Bh = malloc(sizeof *Bh * (size_t)(K * N));
        srand(1);
        for (int64_t i = 0; i < M * K; i++) Ah[i] = ai3_float_to_bf16(A[i] = rand() / (float)RAND_MAX - 0.5f);
        for (int64_t i = 0; i < K * N; i++) Bh[i] = ai3_float_to_bf16(B[i] = rand() / (float)RAND_MAX - 0.5f);
        float *pa = ai3_alloc(ai3_gemm_packed_a_size_f32(cfg, M, K) * sizeof(float));
        ai3_gemm_pack_a_f32(cfg, M, K, A, K, 1, pa);
        call_t calls[3] = {{0, M, N, K, pa, B, malloc(sizeof(float) * (size_t)(M * N))}};
        for (int c = 1; c < n_impl; c++) { /* a packed A runs on its kernel */
            ai3_gemm_bf16_set_kernel(kernels[c]);
            uint32_t *pah = ai3_alloc(ai3_gemm_bf16_packed_a_size(M, K) * sizeof(uint32_t));
            ai3_gemm_bf16_pack_a(M, K, Ah, K, 1, pah);
            calls[c] = (call_t){1, M, N, K, pah, Bh, malloc(sizeof(ai3_bf16) * (size_t)(M * N))};
        }
        double g[3][64];
        for (int c = 0; c < n_impl; c++) run_call(&calls[c]); /* warm up */
        for (int r = 0; r < reps; r++)
            for (int c = 0; c < n_impl; c++) g[c][r] = time_call(&calls[c]);
        for (int c = 0; c < n_impl; c++) {
            printf("%s    {\"M\": %lld, \"N\": %lld, \"K\": %lld, \"impl\": \"%s\", \"gflops\": [",
                   s || c ? ",\n" : "", (long long)M, (long long)N, (long long)K, names[c]);
            for (int r = 0; r < reps; r++) printf("%s%.2f", r ? ", " : "", g[c][r]);
            printf("]}");
        }
        const double f = median(g[0], reps);
        fprintf(stderr, "%6lld %6lld %6lld  %12.1f", (long long)M, (long long)N, (long long)K, f);
        for (int c = 1; c < n_impl; c++) {
            const double h = median(g[c], reps);
            fprintf(stderr, " %6.1f %5.2fx", h, h / f);
        }
        fprintf(stderr, "\n");
        for (int c = 0; c < n_impl; c++) {
            free(calls[c].C);
            ai3_free((void *)calls[c].A);
        }
        free(A);
        free(B);
        free(Ah);
        free(Bh);
    }
    printf("\n  ]\n}\n");
    return 0;
}
