/*
 * The bfloat16 GEMM engine's driver (see gemm_bf16.h): the kernels and the
 * choice between them, packing with K in pairs, the blocked loop nest
 * around the micro-kernel and the split over threads.
 *
 * Loop nest per block of C a thread owns:
 *   jc: columns of B, as many as fit in L2 with all of K  →  pack that block
 *   →  ic: MC rows of A (packed if strided)  →  jr: NR-strips  →  ir: MR-panels.
 */
#include "gemm_bf16.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NR AI3_GEMM_BF16_NR
#define AMX_MR AI3_GEMM_BF16_AMX_MR
#define AMX_STEP AI3_GEMM_BF16_AMX_STEP
/* Words of a packed B block (it stays in L2 while the A panels stream by)
 * and of a strided A block packed on the fly. */
#define B_BLOCK_WORDS (160 * 1024)
#define A_BLOCK_WORDS (48 * 1024)
/* Below this many multiply-adds the pool's wake-up costs more than it saves. */
#define PARALLEL_MIN_MACS (1 << 19)

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* --- the kernels ----------------------------------------------------------------- */

typedef void (*kernel_fn)(int64_t k2, const uint32_t *a, const uint32_t *b, void *c, int64_t rsc,
                          int64_t csc, int mr, int nr, const ai3_gemm_bf16_epilogue *e,
                          bool out_bf16);

typedef struct {
    int mr;   /* rows of an A panel and of a kernel call's C */
    int step; /* an A panel's pairs are padded to a multiple of this */
    kernel_fn run;
    void (*begin)(void), (*end)(void); /* around a thread's calls, or NULL */
} kernel_info;

/* The kernels exist on x86-64 only (AMX where the compiler has it);
 * elsewhere ai3_require_cpu_bf16 refuses every product before one could be
 * called. */
static const kernel_info kernels[] = {
#if defined(__x86_64__)
    [AI3_GEMM_BF16_AVX512] = {AI3_GEMM_BF16_MR, 1, ai3_gemm_bf16_kernel_avx512, NULL, NULL},
#else
    [AI3_GEMM_BF16_AVX512] = {AI3_GEMM_BF16_MR, 1, NULL, NULL, NULL},
#endif
#if defined(AI3_HAVE_AMX)
    [AI3_GEMM_BF16_AMX] = {AMX_MR, AMX_STEP, ai3_gemm_bf16_kernel_amx, ai3_gemm_bf16_amx_begin,
                           ai3_gemm_bf16_amx_end},
#else
    [AI3_GEMM_BF16_AMX] = {AMX_MR, AMX_STEP, NULL, NULL, NULL},
#endif
};

static bool kernel_available(ai3_gemm_bf16_kernel k) {
#if defined(AI3_HAVE_AMX)
    if (k == AI3_GEMM_BF16_AMX) return ai3_cpu_has_amx_bf16();
#else
    if (k == AI3_GEMM_BF16_AMX) return false;
#endif
    return true;
}

/* -1 until decided (from AI3_BF16_KERNEL, once), then an ai3_gemm_bf16_kernel. */
static atomic_int active_kernel = -1;

ai3_gemm_bf16_kernel ai3_gemm_bf16_get_kernel(void) {
    int k = atomic_load_explicit(&active_kernel, memory_order_relaxed);
    if (k < 0) {
        const char *env = getenv("AI3_BF16_KERNEL");
        int want = env && strcmp(env, "avx512") == 0 ? AI3_GEMM_BF16_AVX512 : AI3_GEMM_BF16_AMX;
        if (!kernel_available((ai3_gemm_bf16_kernel)want)) want = AI3_GEMM_BF16_AVX512;
        int expected = -1;
        atomic_compare_exchange_strong(&active_kernel, &expected, want);
        k = atomic_load(&active_kernel);
    }
    return (ai3_gemm_bf16_kernel)k;
}

ai3_gemm_bf16_kernel ai3_gemm_bf16_set_kernel(ai3_gemm_bf16_kernel kernel) {
    if (kernel != AI3_GEMM_BF16_AMX || !kernel_available(kernel)) kernel = AI3_GEMM_BF16_AVX512;
    atomic_store(&active_kernel, (int)kernel);
    return kernel;
}

const char *ai3_gemm_bf16_kernel_name(ai3_gemm_bf16_kernel kernel) {
    switch (kernel) {
    case AI3_GEMM_BF16_AVX512: return "avx512";
    case AI3_GEMM_BF16_AMX: return "amx";
    }
    return "unknown";
}

/* Pairs of an A panel of kernel k for K. */
static int64_t panel_pairs(const kernel_info *k, int64_t K) {
    return round_up((K + 1) / 2, k->step);
}

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
    if (R == AI3_GEMM_BF16_MR) pack_pairs_r(xc, kc, AI3_GEMM_BF16_MR, src, xs, ks, dst);
    else pack_pairs_r(xc, kc, NR, src, xs, ks, dst);
}

/* The AMX kernel's A panels (gemm_bf16.h) of rows x < xc, element (x, k)
 * read from src[x·xs + k·ks]. */
AI3_MULTIVERSION(pack_tiles, int64_t, xc, int64_t, kc, const ai3_bf16 *, src, int64_t, xs,
                 int64_t, ks, uint32_t *, dst) {
    const int64_t k2 = kc / 2, k2p = round_up((kc + 1) / 2, AMX_STEP);
    for (int64_t x0 = 0; x0 < xc; x0 += AMX_MR, dst += AMX_MR * k2p)
        for (int r = 0; r < AMX_MR; r++) {
            /* pair p of row r at d[p / 16 · 512 + p % 16] */
            uint32_t *restrict d = dst + r / 16 * 256 + r % 16 * 16;
#define AT(p) d[(p) / AMX_STEP * AMX_MR * AMX_STEP + (p) % AMX_STEP]
            int64_t p = 0;
            if (x0 + r < xc) {
                const ai3_bf16 *s = src + (x0 + r) * xs;
                for (; p < k2; p++) AT(p) = s[2 * p * ks] | (uint32_t)s[(2 * p + 1) * ks] << 16;
                if (kc % 2) {
                    AT(p) = s[(kc - 1) * ks];
                    p++;
                }
            }
            for (; p < k2p; p++) AT(p) = 0;
#undef AT
        }
}

/* A panels for kernel k. */
static void pack_a_panels(const kernel_info *k, int64_t xc, int64_t kc, const ai3_bf16 *src,
                          int64_t xs, int64_t ks, uint32_t *dst) {
    if (k->mr == AMX_MR) pack_tiles(xc, kc, src, xs, ks, dst);
    else pack_pairs(xc, kc, k->mr, src, xs, ks, dst);
}

/* A pre-packed A: a header of HEADER_WORDS (so the panels stay 64-byte
 * aligned): the tag, the kernel, M and K (low and high words), then the
 * panels. */
#define HEADER_WORDS 16
#define PACKED_TAG 0x36316662u /* "bf16" */

size_t ai3_gemm_bf16_packed_a_size(int64_t M, int64_t K) {
    const kernel_info *k = &kernels[ai3_gemm_bf16_get_kernel()];
    return (size_t)(HEADER_WORDS + round_up(M, k->mr) * panel_pairs(k, K));
}

void ai3_gemm_bf16_pack_a(int64_t M, int64_t K, const ai3_bf16 *A, int64_t rs, int64_t cs,
                          uint32_t *dst) {
    const ai3_gemm_bf16_kernel id = ai3_gemm_bf16_get_kernel();
    memset(dst, 0, HEADER_WORDS * sizeof *dst);
    dst[0] = PACKED_TAG;
    dst[1] = (uint32_t)id;
    dst[2] = (uint32_t)M;
    dst[3] = (uint32_t)((uint64_t)M >> 32);
    dst[4] = (uint32_t)K;
    dst[5] = (uint32_t)((uint64_t)K >> 32);
    pack_a_panels(&kernels[id], M, K, A, rs, cs, dst + HEADER_WORDS);
}

void ai3_gemm_bf16_pack_b_block(int64_t kc, int64_t nc, const ai3_bf16 *B, int64_t rs,
                                int64_t cs, uint32_t *dst) {
    pack_pairs(nc, kc, NR, B, cs, rs, dst);
}

/* --- the blocked product -------------------------------------------------------- */

typedef struct {
    int64_t M, N, K, k2;
    const kernel_info *kern;
    int64_t mr, k2p;            /* the kernel's panel rows and pairs */
    const uint32_t *a_panels;   /* a pre-packed A's panels, or NULL */
    const ai3_gemm_bf16_operand *A, *B;
    void *C;
    int64_t rsc, csc;
    ai3_gemm_bf16_epilogue epilogue;
    bool out_bf16;
    int64_t mpanels, nstrips;
    int tm, tn;
    atomic_int failed;
} gemm_job;

/* e positioned at the tile whose first row is i and whose first element is
 * `off` bytes into C (and so into the residual). */
static ai3_gemm_bf16_epilogue at_tile(const ai3_gemm_bf16_epilogue *e, int64_t i, size_t off) {
    return (ai3_gemm_bf16_epilogue){e->bias_row ? e->bias_row + i : NULL,
                                    e->residual ? (const char *)e->residual + off : NULL,
                                    e->clamp};
}

/* C[m0:m1, n0:n1]; m0 a multiple of the kernel's MR, n0 of NR. */
static bool gemm_block(const gemm_job *job, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const int64_t k2 = job->k2, K = job->K, MR = job->mr, panel = MR * job->k2p;
    const kernel_info *kern = job->kern;
    const ai3_gemm_bf16_operand *A = job->A, *B = job->B;
    /* B blocks of equal width, each at most B_BLOCK_WORDS (but one strip) */
    const int64_t strips = (n1 - n0 + NR - 1) / NR;
    const int64_t nblocks = AI3_MAX(1, (strips * NR * k2 + B_BLOCK_WORDS - 1) / B_BLOCK_WORDS);
    const int64_t ncb = (strips + nblocks - 1) / nblocks * NR;
    const int64_t mcb = AI3_MAX(MR, A_BLOCK_WORDS / panel * MR);
    size_t nb = (size_t)(ncb * k2), na = job->a_panels ? 0 : (size_t)(mcb / MR * panel);
    nb = (size_t)round_up((int64_t)nb, 16); /* keeps pa 64-byte aligned */
    uint32_t *pb = ai3_thread_buffer(AI3_BUFFER_GEMM_BF16, (nb + na) * sizeof(uint32_t));
    if (!pb) return false;
    uint32_t *pa = pb + nb;
    const size_t elem = job->out_bf16 ? sizeof(ai3_bf16) : sizeof(float);

    if (kern->begin) kern->begin();
    for (int64_t jc = n0; jc < n1; jc += ncb) {
        const int64_t nc = AI3_MIN(ncb, n1 - jc);
        if (B->kind == AI3_GEMM_CALLBACK)
            B->pack(B->ctx, 0, K, jc, nc, pb);
        else
            pack_pairs(nc, K, NR, (const ai3_bf16 *)B->data + jc * B->cs, B->cs, B->rs, pb);
        for (int64_t ic = m0; ic < m1; ic += mcb) {
            const int64_t mc = AI3_MIN(mcb, m1 - ic);
            const uint32_t *ablock = pa;
            if (job->a_panels)
                ablock = job->a_panels + ic / MR * panel;
            else
                pack_a_panels(kern, mc, K, (const ai3_bf16 *)A->data + ic * A->rs, A->rs, A->cs,
                              pa);
            for (int64_t jr = 0; jr < nc; jr += NR) {
                const int nr = (int)AI3_MIN(NR, nc - jr);
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    const int mr = (int)AI3_MIN(MR, mc - ir);
                    const int64_t i = ic + ir, j = jc + jr;
                    const size_t off = (size_t)(i * job->rsc + j * job->csc) * elem;
                    const ai3_gemm_bf16_epilogue tile = at_tile(&job->epilogue, i, off);
                    kern->run(k2, ablock + ir / MR * panel, pb + jr * k2, (char *)job->C + off,
                              job->rsc, job->csc, mr, nr, &tile, job->out_bf16);
                }
            }
        }
    }
    if (kern->end) kern->end();
    return true;
}

static void gemm_task(void *ctx, int64_t begin, int64_t end) {
    gemm_job *job = ctx;
    for (int64_t t = begin; t < end; t++) {
        const int64_t ti = t / job->tn, tj = t % job->tn;
        const int64_t m0 = job->mpanels * ti / job->tm * job->mr;
        const int64_t m1 = AI3_MIN(job->M, job->mpanels * (ti + 1) / job->tm * job->mr);
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
    const bool pack_a = job->a_panels == NULL;
    double best = -1;
    for (int tm = 1; tm <= threads; tm++) {
        if (threads % tm) continue;
        const int tn = threads / tm;
        if (tm > job->mpanels || tn > job->nstrips) continue;
        const double rows = (double)AI3_MIN(job->M, (job->mpanels + tm - 1) / tm * job->mr);
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

/* The kernel a pre-packed A was packed for, after checking its header
 * against M and K; AI3_OK or an error with the message set. */
static ai3_status packed_kernel(const uint32_t *hdr, int64_t M, int64_t K,
                                ai3_gemm_bf16_kernel *kernel) {
    if (hdr[0] != PACKED_TAG || hdr[1] > AI3_GEMM_BF16_AMX)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "gemm_bf16: the packed A was not made by ai3_gemm_bf16_pack_a");
    const int64_t pm = (int64_t)((uint64_t)hdr[3] << 32 | hdr[2]);
    const int64_t pk = (int64_t)((uint64_t)hdr[5] << 32 | hdr[4]);
    if (pm != M || pk != K)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "gemm_bf16: the packed A is %lldx%lld, the product needs %lldx%lld",
                             (long long)pm, (long long)pk, (long long)M, (long long)K);
    *kernel = (ai3_gemm_bf16_kernel)hdr[1];
    if (!kernel_available(*kernel))
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "gemm_bf16: A was packed for the %s kernel, which this CPU lacks",
                             ai3_gemm_bf16_kernel_name(*kernel));
    return AI3_OK;
}

ai3_status ai3_gemm_bf16(int64_t M, int64_t N, int64_t K, const ai3_gemm_bf16_operand *A,
                         const ai3_gemm_bf16_operand *B, void *C, int64_t rsc, int64_t csc,
                         const ai3_gemm_bf16_epilogue *epilogue, unsigned flags) {
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
    const ai3_gemm_bf16_epilogue e = epilogue ? *epilogue : (ai3_gemm_bf16_epilogue){0};
    int threads = 1;
    if (!(flags & AI3_GEMM_SINGLE_THREAD) && M * N * AI3_MAX(K, 1) >= PARALLEL_MIN_MACS)
        threads = ai3_get_num_threads();
    if (K == 0) { /* C = clamp(bias + R): the AVX-512 kernel with no steps of k */
        static const uint32_t zeros[NR] = {0};
        const int MR = AI3_GEMM_BF16_MR;
        for (int64_t i = 0; i < M; i += MR)
            for (int64_t j = 0; j < N; j += NR) {
                const size_t off = (size_t)(i * rsc + j * csc) *
                                   (out_bf16 ? sizeof(ai3_bf16) : sizeof(float));
                const ai3_gemm_bf16_epilogue tile = at_tile(&e, i, off);
                kernels[AI3_GEMM_BF16_AVX512].run(0, zeros, zeros, (char *)C + off, rsc, csc,
                                                  (int)AI3_MIN(MR, M - i),
                                                  (int)AI3_MIN(NR, N - j), &tile, out_bf16);
            }
        return AI3_OK;
    }
    ai3_gemm_bf16_kernel kernel = ai3_gemm_bf16_get_kernel();
    const uint32_t *a_panels = NULL;
    if (A->kind == AI3_GEMM_PACKED) {
        if ((s = packed_kernel(A->data, M, K, &kernel)) != AI3_OK) return s;
        a_panels = (const uint32_t *)A->data + HEADER_WORDS;
    }
    const kernel_info *kern = &kernels[kernel];
    gemm_job job = {.M = M, .N = N, .K = K, .k2 = (K + 1) / 2, .kern = kern, .mr = kern->mr,
                    .k2p = panel_pairs(kern, K), .a_panels = a_panels, .A = A, .B = B, .C = C,
                    .rsc = rsc, .csc = csc, .epilogue = e,
                    .out_bf16 = out_bf16, .mpanels = (M + kern->mr - 1) / kern->mr,
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
