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

#include "gemm/gemm.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* --- FMA peak ------------------------------------------------------------- */
#define PEAK_ITERS 20000000L

#if defined(__x86_64__)
/* 12 independent chains cover the FMA latency on both pipes. */
__attribute__((target("avx512f"))) static double fma_loop_f32(void) {
    __m512 acc[12], x = _mm512_set1_ps(1.0f - 1e-7f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < PEAK_ITERS; n++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s; /* keeps the loop alive */
}
__attribute__((target("avx512f"))) static double fma_loop_f64(void) {
    __m512d acc[12], x = _mm512_set1_pd(1.0 - 1e-12), y = _mm512_set1_pd(1e-12);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_pd((double)i);
    for (long n = 0; n < PEAK_ITERS; n++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_pd(acc[i], x, y);
    double s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_pd(acc[i]);
    return s;
}
#define PEAK_LANES_F32 16
#endif

typedef struct {
    int f64;
    double sink;
} peak_arg;

static void *peak_thread(void *p) {
    peak_arg *a = p;
#if defined(__x86_64__)
    a->sink = a->f64 ? fma_loop_f64() : fma_loop_f32();
#endif
    return NULL;
}

/* GFLOP/s of `threads` threads running the FMA loop at once; 0 if the CPU
 * has no AVX-512 (the peak is then not measured). */
static double fma_peak(int threads, int f64) {
    if (ai3_cpu_best_isa() != AI3_ISA_AVX512) return 0;
    pthread_t th[8];
    peak_arg args[8];
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        args[i].f64 = f64;
        pthread_create(&th[i], NULL, peak_thread, &args[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double t = now() - t0;
    double lanes = f64 ? 8 : 16;
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

int main(int argc, char **argv) {
    int quick = 0, reps = 5, only_f32 = 0, only_shape = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        if (!strcmp(argv[i], "--f32")) only_f32 = 1;
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) only_shape = atoi(argv[++i]);
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
    printf("},\n  \"peak\": {\"f32\": [%.1f, %.1f], \"f64\": [%.1f, %.1f]},\n",
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
    printf("\n  ]\n}\n");
    return 0;
}
