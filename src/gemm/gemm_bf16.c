/*
 * The bfloat16 GEMM engine's driver (see gemm_bf16.h): packing with K in
 * pairs, the blocked loop nest around the AVX-512 BF16 micro-kernel and the
 * split over threads.
 *
 * Loop nest per block of C a thread owns:
 *   jc: columns of B, as many as fit in L2 with all of K  →  pack that block
 *   →  ic: MC rows of A (packed if strided)  →  jr: NR-strips  →  ir: MR-panels.
 */
#include "gemm_bf16.h"

#include <pthread.h>
#include <stdatomic.h>

#define MR AI3_GEMM_BF16_MR
#define NR AI3_GEMM_BF16_NR
/* Words of a packed B block (it stays in L2 while the A panels stream by)
 * and of a strided A block packed on the fly. */
#define B_BLOCK_WORDS (160 * 1024)
#define A_BLOCK_WORDS (48 * 1024)
#if !defined(__x86_64__)
/* The kernel exists on x86-64 only; elsewhere ai3_require_cpu_bf16 refuses
 * every product before it could be called. */
#define ai3_gemm_bf16_kernel_avx512(...) ((void)0)
#endif
/* Below this many multiply-adds the pool's wake-up costs more than it saves. */
#define PARALLEL_MIN_MACS (1 << 19)

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* --- packing ------------------------------------------------------------------
 * Groups of R along x (rows of A, columns of B), element (x, k) read from
 * src[x·xs + k·ks], written as ceil(xc / R) groups of R·ceil(kc / 2) words,
 * word (p, r) of a group holding elements (x0 + r, 2p) and (x0 + r, 2p + 1). */
static inline __attribute__((always_inline)) void pack_pairs_r(int64_t xc, int64_t kc, const int R,
                                                               const ai3_bf16 *src, int64_t xs,
                                                               int64_t ks, uint32_t *restrict dst) {
    const int64_t k2 = kc / 2;
    for (int64_t x0 = 0; x0 < xc; x0 += R) {
        const int rn = (int)AI3_MIN(R, xc - x0);
        const ai3_bf16 *s = src + x0 * xs;
        for (int64_t p = 0; p < k2; p++) {
            const ai3_bf16 *s0 = s + 2 * p * ks, *s1 = s0 + ks;
            uint32_t *d = dst + p * R;
            for (int r = 0; r < rn; r++) d[r] = s0[r * xs] | (uint32_t)s1[r * xs] << 16;
            for (int r = rn; r < R; r++) d[r] = 0;
        }
        if (kc % 2) {
            const ai3_bf16 *s0 = s + (kc - 1) * ks;
            uint32_t *d = dst + k2 * R;
            for (int r = 0; r < rn; r++) d[r] = s0[r * xs];
            for (int r = rn; r < R; r++) d[r] = 0;
        }
        dst += (int64_t)R * ((kc + 1) / 2);
    }
}

AI3_MULTIVERSION(pack_pairs, int64_t, xc, int64_t, kc, int, R, const ai3_bf16 *, src, int64_t, xs,
                 int64_t, ks, uint32_t *, dst) {
    if (R == MR) pack_pairs_r(xc, kc, MR, src, xs, ks, dst);
    else pack_pairs_r(xc, kc, NR, src, xs, ks, dst);
}

size_t ai3_gemm_bf16_packed_a_size(int64_t M, int64_t K) {
    return (size_t)(round_up(M, MR) * ((K + 1) / 2));
}

void ai3_gemm_bf16_pack_a(int64_t M, int64_t K, const ai3_bf16 *A, int64_t rs, int64_t cs,
                          uint32_t *dst) {
    pack_pairs(M, K, MR, A, rs, cs, dst);
}

void ai3_gemm_bf16_pack_b_block(int64_t kc, int64_t nc, const ai3_bf16 *B, int64_t rs,
                                int64_t cs, uint32_t *dst) {
    pack_pairs(nc, kc, NR, B, cs, rs, dst);
}

/* --- per-thread packing buffers ----------------------------------------------- */

typedef struct {
    uint32_t *data;
    size_t words;
} thread_buffer_t;

static pthread_key_t buffer_key;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;

static void free_buffer(void *p) {
    thread_buffer_t *b = p;
    ai3_free(b->data);
    ai3_free(b);
}

static void make_key(void) { pthread_key_create(&buffer_key, free_buffer); }

/* At least `words` words, 64-byte aligned, kept for the thread's next call. */
static uint32_t *thread_buffer(size_t words) {
    pthread_once(&buffer_once, make_key);
    thread_buffer_t *b = pthread_getspecific(buffer_key);
    if (!b) {
        if (!(b = ai3_alloc(sizeof *b))) return NULL;
        b->data = NULL;
        b->words = 0;
        pthread_setspecific(buffer_key, b);
    }
    if (b->words < words) {
        ai3_free(b->data);
        b->words = 0;
        if (!(b->data = ai3_alloc(words * sizeof(uint32_t)))) return NULL;
        b->words = words;
    }
    return b->data;
}

/* --- the blocked product -------------------------------------------------------- */

typedef struct {
    int64_t M, N, K, k2;
    const ai3_gemm_bf16_operand *A, *B;
    void *C;
    int64_t rsc, csc;
    const float *bias_row, *clamp;
    bool out_bf16;
    int64_t mpanels, nstrips;
    int tm, tn;
    atomic_int failed;
} gemm_job;

/* C[m0:m1, n0:n1]; m0 a multiple of MR, n0 of NR. */
static bool gemm_block(const gemm_job *job, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const int64_t k2 = job->k2, K = job->K;
    const ai3_gemm_bf16_operand *A = job->A, *B = job->B;
    /* B blocks of equal width, each at most B_BLOCK_WORDS (but one strip) */
    const int64_t strips = (n1 - n0 + NR - 1) / NR;
    const int64_t nblocks = AI3_MAX(1, (strips * NR * k2 + B_BLOCK_WORDS - 1) / B_BLOCK_WORDS);
    const int64_t ncb = (strips + nblocks - 1) / nblocks * NR;
    const int64_t mcb = AI3_MAX(MR, A_BLOCK_WORDS / k2 / MR * MR);
    size_t nb = (size_t)(ncb * k2), na = A->kind == AI3_GEMM_PACKED ? 0 : (size_t)(mcb * k2);
    nb = (size_t)round_up((int64_t)nb, 16); /* keeps pa 64-byte aligned */
    uint32_t *pb = thread_buffer(nb + na);
    if (!pb) return false;
    uint32_t *pa = pb + nb;
    const size_t elem = job->out_bf16 ? sizeof(ai3_bf16) : sizeof(float);

    for (int64_t jc = n0; jc < n1; jc += ncb) {
        const int64_t nc = AI3_MIN(ncb, n1 - jc);
        if (B->kind == AI3_GEMM_CALLBACK)
            B->pack(B->ctx, 0, K, jc, nc, pb);
        else
            pack_pairs(nc, K, NR, (const ai3_bf16 *)B->data + jc * B->cs, B->cs, B->rs, pb);
        for (int64_t ic = m0; ic < m1; ic += mcb) {
            const int64_t mc = AI3_MIN(mcb, m1 - ic);
            const uint32_t *ablock = pa;
            if (A->kind == AI3_GEMM_PACKED)
                ablock = (const uint32_t *)A->data + ic * k2;
            else
                pack_pairs(mc, K, MR, (const ai3_bf16 *)A->data + ic * A->rs, A->rs, A->cs, pa);
            for (int64_t jr = 0; jr < nc; jr += NR) {
                const int nr = (int)AI3_MIN(NR, nc - jr);
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    const int mr = (int)AI3_MIN(MR, mc - ir);
                    const int64_t i = ic + ir, j = jc + jr;
                    char *c = (char *)job->C + (size_t)(i * job->rsc + j * job->csc) * elem;
                    ai3_gemm_bf16_kernel_avx512(k2, ablock + ir * k2, pb + jr * k2, c, job->rsc,
                                                job->csc, mr, nr,
                                                job->bias_row ? job->bias_row + i : NULL,
                                                job->clamp, job->out_bf16);
                }
            }
        }
    }
    return true;
}

static void gemm_task(void *ctx, int64_t begin, int64_t end) {
    gemm_job *job = ctx;
    for (int64_t t = begin; t < end; t++) {
        const int64_t ti = t / job->tn, tj = t % job->tn;
        const int64_t m0 = job->mpanels * ti / job->tm * MR;
        const int64_t m1 = AI3_MIN(job->M, job->mpanels * (ti + 1) / job->tm * MR);
        const int64_t n0 = job->nstrips * tj / job->tn * NR;
        const int64_t n1 = AI3_MIN(job->N, job->nstrips * (tj + 1) / job->tn * NR);
        if (m0 < m1 && n0 < n1 && !gemm_block(job, m0, m1, n0, n1)) atomic_store(&job->failed, 1);
    }
}

/* Splits C into tm × tn = `threads` blocks: the grid whose largest block
 * costs least, counting its multiply-adds and, at about 8 multiply-adds an
 * element, the packing of B (each block packs its columns, for all K) and
 * of a strided A. */
static void choose_grid(gemm_job *job, int threads) {
    const bool pack_a = job->A->kind != AI3_GEMM_PACKED;
    double best = -1;
    for (int tm = 1; tm <= threads; tm++) {
        if (threads % tm) continue;
        const int tn = threads / tm;
        if (tm > job->mpanels || tn > job->nstrips) continue;
        const double rows = (double)AI3_MIN(job->M, (job->mpanels + tm - 1) / tm * MR);
        const double cols = (double)((job->nstrips + tn - 1) / tn * NR);
        double cost = rows * cols + 8 * cols;
        if (pack_a) cost += 8 * rows;
        if (best < 0 || cost < best) {
            best = cost;
            job->tm = tm;
            job->tn = tn;
        }
    }
    if (best < 0) { /* fewer blocks than threads either way */
        job->tm = (int)AI3_MIN(job->mpanels, threads);
        job->tn = 1;
    }
}

static bool operand_ok(const ai3_gemm_bf16_operand *op, bool is_a) {
    if (!op) return false;
    switch (op->kind) {
    case AI3_GEMM_STRIDED: return op->data != NULL;
    case AI3_GEMM_PACKED: return is_a && op->data != NULL;
    case AI3_GEMM_CALLBACK: return !is_a && op->pack != NULL;
    }
    return false;
}

ai3_status ai3_gemm_bf16(int64_t M, int64_t N, int64_t K, const ai3_gemm_bf16_operand *A,
                         const ai3_gemm_bf16_operand *B, void *C, int64_t rsc, int64_t csc,
                         const float *bias_row, const float *clamp, unsigned flags) {
    if (M < 0 || N < 0 || K < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "gemm_bf16: negative size M=%lld N=%lld K=%lld", (long long)M,
                             (long long)N, (long long)K);
    ai3_status s = ai3_require_cpu_bf16("gemm_bf16");
    if (s != AI3_OK) return s;
    if (M == 0 || N == 0) return AI3_OK;
    if (!C || (K > 0 && (!operand_ok(A, true) || !operand_ok(B, false))))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "gemm_bf16: a missing operand or output, a packed B or a "
                             "callback A");
    const bool out_bf16 = flags & AI3_GEMM_BF16_OUT;
    int threads = 1;
    if (!(flags & AI3_GEMM_SINGLE_THREAD) && M * N * AI3_MAX(K, 1) >= PARALLEL_MIN_MACS)
        threads = ai3_get_num_threads();
    if (K == 0) { /* C = clamp(bias): the kernel with no steps of k */
        static const uint32_t zeros[NR] = {0};
        for (int64_t i = 0; i < M; i += MR)
            for (int64_t j = 0; j < N; j += NR) {
                char *c = (char *)C + (size_t)(i * rsc + j * csc) *
                                          (out_bf16 ? sizeof(ai3_bf16) : sizeof(float));
                ai3_gemm_bf16_kernel_avx512(0, zeros, zeros, c, rsc, csc,
                                            (int)AI3_MIN(MR, M - i), (int)AI3_MIN(NR, N - j),
                                            bias_row ? bias_row + i : NULL, clamp, out_bf16);
            }
        return AI3_OK;
    }
    gemm_job job = {.M = M, .N = N, .K = K, .k2 = (K + 1) / 2, .A = A, .B = B, .C = C,
                    .rsc = rsc, .csc = csc, .bias_row = bias_row, .clamp = clamp,
                    .out_bf16 = out_bf16, .mpanels = (M + MR - 1) / MR,
                    .nstrips = (N + NR - 1) / NR};
    atomic_init(&job.failed, 0);
    choose_grid(&job, threads);
    const int64_t tasks = (int64_t)job.tm * job.tn;
    if (tasks > 1)
        ai3_parallel_for(tasks, 1, gemm_task, &job);
    else
        gemm_task(&job, 0, 1);
    if (atomic_load(&job.failed))
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY,
                             "gemm_bf16: could not allocate packing buffers");
    return AI3_OK;
}
