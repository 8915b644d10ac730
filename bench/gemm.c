/*
 * GEMM benchmark: GFLOP/s of ai3_gemm under each ISA the CPU has, float32
 * and float64, 1 and 2 threads, against OpenBLAS's cblas_sgemm/dgemm
 * (loaded with dlopen, only if present) and the machine's FMA peak
 * (measured with a loop of independent FMAs).
 *
 *   ai3_bench_gemm [--quick] [--f32] [--shape INDEX] [--reps R] > results.json
 *
 * --quick skips 2048³, --f32 skips float64, --shape runs one of `shapes`.
 *
 * Contenders of one (dtype, shape, threads) cell run interleaved, round after
 * round; each round times back-to-back calls for at least 20 ms; the JSON
 * has every round's GFLOP/s and bench/gemm.py reports medians. All operands
 * are plain row-major matrices (ai3 packs A and B on the fly, as sgemm does).
 *
 * Then ("conv_runs", float32, skipped by --no-conv) the GEMM-based conv2d
 * algorithms on the conv shapes as the convolutions they come from (batch
 * 1, 3×3, padding 1), through a kept plan (weights packed once), the three
 * interleaved the same way, with the FMA peak measured again before each
 * round (a shared machine's speed drifts by 10% and more within a minute).
 */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "ai3.h"
#include "gemm/gemm.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* --- FMA peak ------------------------------------------------------------- */
#define PEAK_ITERS 20000000L

#if defined(__x86_64__)
/* 12 independent chains cover the FMA latency on both pipes; one loop per
 * vector width (AVX-512, or AVX2 on CPUs without it). */
#define FMA_LOOP(NAME, TARGET, VEC, SET1, FMADD, LANES, T)                     \
    __attribute__((target(TARGET))) static double NAME(void) {                 \
        VEC acc[12], x = SET1((T)1 - (T)1e-7), y = SET1((T)1e-7);              \
        for (int i = 0; i < 12; i++) acc[i] = SET1((T)i);                       \
        for (long n = 0; n < PEAK_ITERS; n++)                                   \
            _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)               \
                acc[i] = FMADD(acc[i], x, y);                                   \
        T s = 0;                                                                \
        for (int i = 0; i < 12; i++)                                            \
            for (int l = 0; l < LANES; l++) s += acc[i][l];                     \
        return s; /* keeps the loop alive */                                    \
    }
FMA_LOOP(fma_loop_f32_avx512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, 16, float)
FMA_LOOP(fma_loop_f64_avx512, "avx512f", __m512d, _mm512_set1_pd, _mm512_fmadd_pd, 8, double)
FMA_LOOP(fma_loop_f32_avx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, 8, float)
FMA_LOOP(fma_loop_f64_avx2, "avx2,fma", __m256d, _mm256_set1_pd, _mm256_fmadd_pd, 4, double)
#endif

typedef struct {
    int f64;
    double sink;
} peak_arg;

static void *peak_thread(void *p) {
    peak_arg *a = p;
#if defined(__x86_64__)
    if (ai3_cpu_best_isa() == AI3_ISA_AVX512)
        a->sink = a->f64 ? fma_loop_f64_avx512() : fma_loop_f32_avx512();
    else
        a->sink = a->f64 ? fma_loop_f64_avx2() : fma_loop_f32_avx2();
#endif
    return NULL;
}

/* GFLOP/s of `threads` threads running the FMA loop at once; 0 if the CPU
 * has neither AVX-512 nor AVX2 (the peak is then not measured). */
static double fma_peak(int threads, int f64) {
    if (ai3_cpu_best_isa() < AI3_ISA_AVX2) return 0;
    pthread_t th[8];
    peak_arg args[8];
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        args[i].f64 = f64;
        pthread_create(&th[i], NULL, peak_thread, &args[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double t = now() - t0;
    double lanes = (f64 ? 8 : 16) / (ai3_cpu_best_isa() == AI3_ISA_AVX512 ? 1 : 2);
    return threads * (double)PEAK_ITERS * 12 * lanes * 2 / t / 1e9;
}

/* --- OpenBLAS ----------------------------------------------------------------- */
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int,
                         const double *, int, double, double *, int);
static sgemm_fn blas_sgemm;
static dgemm_fn blas_dgemm;
static void (*blas_set_threads)(int);
static char blas_name[256] = "";

#define CBLAS_ROW_MAJOR 101
#define CBLAS_NO_TRANS 111

static void load_openblas(void) {
    const char *names[] = {getenv("AI3_BENCH_OPENBLAS"), "libopenblas.so.0", "libopenblas.so"};
    for (int i = 0; i < 3; i++) {
        if (!names[i]) continue;
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        blas_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
        blas_dgemm = (dgemm_fn)dlsym(h, "cblas_dgemm");
        blas_set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
        char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
        snprintf(blas_name, sizeof blas_name, "%s", config ? config() : names[i]);
        if (blas_sgemm && blas_dgemm) return;
    }
    blas_sgemm = NULL;
    blas_dgemm = NULL;
}

/* --- one contender ------------------------------------------------------------- */
typedef struct {
    int f64, M, N, K;
    void *A, *B, *C;
    int isa; /* -1: OpenBLAS */
} call_t;

static void run_call(const call_t *c) {
    if (c->isa < 0) {
        if (c->f64)
            blas_dgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, c->M, c->N, c->K, 1.0,
                       c->A, c->K, c->B, c->N, 0.0, c->C, c->N);
        else
            blas_sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, c->M, c->N, c->K, 1.0f,
                       c->A, c->K, c->B, c->N, 0.0f, c->C, c->N);
        return;
    }
    if (c->f64) {
        const ai3_gemm_config_f64 *cfg = ai3_gemm_config_for_isa_f64((ai3_isa)c->isa);
        ai3_gemm_operand_f64 a = ai3_gemm_strided_f64(c->A, c->K, 1);
        ai3_gemm_operand_f64 b = ai3_gemm_strided_f64(c->B, c->N, 1);
        ai3_gemm_f64(cfg, c->M, c->N, c->K, &a, &b, c->C, c->N, NULL, NULL, 0);
    } else {
        const ai3_gemm_config_f32 *cfg = ai3_gemm_config_for_isa_f32((ai3_isa)c->isa);
        ai3_gemm_operand_f32 a = ai3_gemm_strided_f32(c->A, c->K, 1);
        ai3_gemm_operand_f32 b = ai3_gemm_strided_f32(c->B, c->N, 1);
        ai3_gemm_f32(cfg, c->M, c->N, c->K, &a, &b, c->C, c->N, NULL, NULL, 0);
    }
}

/* GFLOP/s over back-to-back calls lasting at least 20 ms. */
static double time_call(const call_t *c) {
    int calls = 0;
    double t0 = now(), t;
    do {
        run_call(c);
        calls++;
        t = now() - t0;
    } while (t < 0.02);
    return 2.0 * c->M * c->N * c->K * calls / t / 1e9;
}

/* Largest relative difference between two results (a sanity check that
 * the contenders compute the same product). */
static double rel_diff(const call_t *x, const void *ref) {
    double worst = 0, scale = 0;
    size_t n = (size_t)x->M * (size_t)x->N;
    for (size_t i = 0; i < n; i++) {
        double a = x->f64 ? ((double *)x->C)[i] : ((float *)x->C)[i];
        double b = x->f64 ? ((double *)ref)[i] : ((float *)ref)[i];
        worst = fmax(worst, fabs(a - b));
        scale = fmax(scale, fabs(b));
    }
    return worst / (scale > 0 ? scale : 1);
}

static const int shapes[][4] = {
    /* M, N, K, is a conv shape (3x3, C_out = C_in, N=1: M=C_out, N=OH*OW, K=C_in*9) */
    {256, 256, 256, 0},  {512, 512, 512, 0},   {1024, 1024, 1024, 0}, {2048, 2048, 2048, 0},
    {3, 50176, 27, 1},   {64, 12544, 576, 1},  {256, 784, 2304, 1},   {512, 196, 4608, 1},
};

/* --- the GEMM-based conv2d algorithms ------------------------------------------ */
static const char *const conv_algorithms[] = {"gemm", "implicit gemm", "implicit precomp gemm"};
#define N_CONV_ALGORITHMS 3

typedef struct {
    ai3_conv2d_plan *plan;
    ai3_tensor x, y;
    void *ws;
    size_t ws_bytes;
    double flops;
} conv_call;

/* GFLOP/s over back-to-back runs lasting at least 20 ms, after one untimed
 * run that brings the layer's weights and input back into cache (the
 * contender before it ran over other data). */
static double time_conv(conv_call *c) {
    ai3_conv2d_plan_run(c->plan, &c->x, &c->y, c->ws, c->ws_bytes);
    int calls = 0;
    double t0 = now(), t;
    do {
        ai3_conv2d_plan_run(c->plan, &c->x, &c->y, c->ws, c->ws_bytes);
        calls++;
        t = now() - t0;
    } while (t < 0.02);
    return c->flops * calls / t / 1e9;
}

/* The conv shape s (M = C_out, N = H·W, K = C_in·9) as that convolution;
 * prints its runs. */
static int bench_conv(int s, int reps, int first) {
    const int64_t c_out = shapes[s][0], c_in = shapes[s][2] / 9;
    int64_t h = 1;
    while (h * h < shapes[s][1]) h++;
    const int64_t x_shape[4] = {1, c_in, h, h}, w_shape[4] = {c_out, c_in, 3, 3};
    const int64_t y_shape[4] = {1, c_out, h, h};
    float *x = malloc(sizeof(float) * (size_t)(c_in * h * h));
    float *w = malloc(sizeof(float) * (size_t)(c_out * c_in * 9));
    float *bias = malloc(sizeof(float) * (size_t)c_out);
    srand(2);
    for (int64_t i = 0; i < c_in * h * h; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int64_t i = 0; i < c_out * c_in * 9; i++) w[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int64_t i = 0; i < c_out; i++) bias[i] = 0.1f;
    ai3_tensor xt = {.data = x, .dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU, .ndim = 4};
    ai3_tensor wt = xt, bt = xt;
    memcpy(xt.shape, x_shape, sizeof x_shape);
    wt.data = w;
    memcpy(wt.shape, w_shape, sizeof w_shape);
    bt.data = bias;
    bt.ndim = 1;
    bt.shape[0] = c_out;
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    conv_call calls[N_CONV_ALGORITHMS];
    for (int a = 0; a < N_CONV_ALGORITHMS; a++) {
        conv_call *c = &calls[a];
        c->x = xt;
        c->y = xt;
        memcpy(c->y.shape, y_shape, sizeof y_shape);
        c->y.data = malloc(sizeof(float) * (size_t)(c_out * h * h));
        c->flops = 2.0 * (double)(c_out * h * h) * (double)(c_in * 9);
        if (ai3_conv2d_plan_create(conv_algorithms[a], &wt, &bt, &p, &xt, &c->plan) != AI3_OK ||
            ai3_conv2d_plan_workspace_size(c->plan, &xt, &c->ws_bytes) != AI3_OK) {
            fprintf(stderr, "%s: %s\n", conv_algorithms[a], ai3_last_error());
            exit(1);
        }
        c->ws = aligned_alloc(64, (c->ws_bytes + 63) / 64 * 64 + 64);
    }
    for (int threads = 1; threads <= 2; threads++) {
        ai3_set_num_threads(threads);
        double g[N_CONV_ALGORITHMS][64], peak[64];
        for (int a = 0; a < N_CONV_ALGORITHMS; a++) time_conv(&calls[a]); /* warm up */
        int r_count = AI3_MIN(reps, 64);
        /* The peak again in each round: the speed of a shared machine drifts. */
        for (int r = 0; r < r_count; r++) {
            peak[r] = fma_peak(threads, 0);
            for (int a = 0; a < N_CONV_ALGORITHMS; a++) g[a][r] = time_conv(&calls[a]);
        }
        for (int a = 0; a < N_CONV_ALGORITHMS; a++) {
            call_t as_gemm = {0, (int)c_out, (int)(h * h), 0, NULL, NULL, calls[a].y.data, 0};
            printf("%s    {\"algorithm\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, "
                   "\"threads\": %d, \"rel_diff\": %.2e, \"gflops\": [",
                   first ? "" : ",\n", conv_algorithms[a], shapes[s][0], shapes[s][1],
                   shapes[s][2], threads, rel_diff(&as_gemm, calls[0].y.data));
            first = 0;
            for (int r = 0; r < r_count; r++) printf("%s%.2f", r ? ", " : "", g[a][r]);
            printf("], \"peak\": [");
            for (int r = 0; r < r_count; r++) printf("%s%.2f", r ? ", " : "", peak[r]);
            printf("]}");
        }
        fflush(stdout);
    }
    for (int a = 0; a < N_CONV_ALGORITHMS; a++) {
        ai3_conv2d_plan_destroy(calls[a].plan);
        free(calls[a].ws);
        free(calls[a].y.data);
    }
    free(x);
    free(w);
    free(bias);
    return first;
}

int main(int argc, char **argv) {
    int quick = 0, reps = 5, only_f32 = 0, only_shape = -1, conv = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        if (!strcmp(argv[i], "--f32")) only_f32 = 1;
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) only_shape = atoi(argv[++i]);
        if (!strcmp(argv[i], "--no-conv")) conv = 0;
    }
    load_openblas();
    int best = (int)ai3_cpu_best_isa();

    printf("{\n  \"isa_best\": \"%s\",\n  \"openblas\": \"%s\",\n", ai3_isa_name((ai3_isa)best),
           blas_sgemm ? blas_name : "");
    printf("  \"kernels\": {");
    for (int isa = 0; isa <= best; isa++)
        printf("%s\"%s\": [\"%s\", \"%s\"]", isa ? ", " : "", ai3_isa_name((ai3_isa)isa),
               ai3_gemm_config_for_isa_f32((ai3_isa)isa)->name,
               ai3_gemm_config_for_isa_f64((ai3_isa)isa)->name);
    const ai3_gemm_cols_config_f32 *cols = ai3_gemm_get_cols_config_f32();
    printf("},\n  \"conv_kernel\": \"%s\"", cols ? cols->name : "");
    printf(",\n  \"peak\": {\"f32\": [%.1f, %.1f], \"f64\": [%.1f, %.1f]},\n",
           fma_peak(1, 0), fma_peak(2, 0), fma_peak(1, 1), fma_peak(2, 1));
    printf("  \"runs\": [\n");
    fflush(stdout);

    int first = 1;
    int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int f64 = 0; f64 <= 1 - only_f32; f64++) {
        size_t es = f64 ? sizeof(double) : sizeof(float);
        for (int s = 0; s < n_shapes; s++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            if ((quick && M == 2048) || (only_shape >= 0 && s != only_shape)) continue;
            void *A = malloc(es * (size_t)M * K), *B = malloc(es * (size_t)K * N);
            void *ref = malloc(es * (size_t)M * N);
            srand(1);
            for (size_t i = 0; i < (size_t)M * K; i++) {
                double v = rand() / (double)RAND_MAX - 0.5;
                if (f64) ((double *)A)[i] = v; else ((float *)A)[i] = (float)v;
            }
            for (size_t i = 0; i < (size_t)K * N; i++) {
                double v = rand() / (double)RAND_MAX - 0.5;
                if (f64) ((double *)B)[i] = v; else ((float *)B)[i] = (float)v;
            }
            /* contenders: OpenBLAS (if loaded), then ai3 per ISA, best first */
            call_t calls[4];
            const char *names[4];
            int nc = 0;
            if (blas_sgemm) {
                calls[nc] = (call_t){f64, M, N, K, A, B, malloc(es * (size_t)M * N), -1};
                names[nc++] = "openblas";
            }
            for (int isa = best; isa >= 0; isa--) {
                /* The plain C kernel on the largest size would take minutes. */
                if (isa == AI3_ISA_GENERIC && (double)M * N * K > 2e9) continue;
                calls[nc] = (call_t){f64, M, N, K, A, B, malloc(es * (size_t)M * N), isa};
                names[nc++] = ai3_isa_name((ai3_isa)isa);
            }
            for (int threads = 1; threads <= 2; threads++) {
                ai3_set_num_threads(threads);
                if (blas_set_threads) blas_set_threads(threads);
                double g[4][64];
                for (int c = 0; c < nc; c++) run_call(&calls[c]); /* warm up */
                int r_count = AI3_MIN(reps, 64);
                for (int r = 0; r < r_count; r++)
                    for (int c = 0; c < nc; c++) g[c][r] = time_call(&calls[c]);
                run_call(&calls[nc - 1]);
                memcpy(ref, calls[nc - 1].C, es * (size_t)M * N);
                for (int c = 0; c < nc; c++) {
                    printf("%s    {\"dtype\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, "
                           "\"conv\": %s, \"threads\": %d, \"impl\": \"%s\", "
                           "\"rel_diff\": %.2e, \"gflops\": [",
                           first ? "" : ",\n", f64 ? "float64" : "float32", M, N, K,
                           shapes[s][3] ? "true" : "false", threads, names[c],
                           rel_diff(&calls[c], ref));
                    first = 0;
                    for (int r = 0; r < r_count; r++) printf("%s%.2f", r ? ", " : "", g[c][r]);
                    printf("]}");
                }
                fflush(stdout);
            }
            for (int c = 0; c < nc; c++) free(calls[c].C);
            free(A);
            free(B);
            free(ref);
        }
    }
    printf("\n  ],\n  \"conv_runs\": [\n");
    first = 1;
    for (int s = 0; s < n_shapes && conv; s++)
        if (shapes[s][3] && (only_shape < 0 || s == only_shape)) first = bench_conv(s, reps, first);
    printf("\n  ]\n}\n");
    return 0;
}
