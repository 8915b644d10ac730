/*
 * The GEMM engine's driver (see gemm.h): configs, packing, the blocked loop
 * nest around the micro-kernels, the split over threads, and a dot-product
 * path for products with few rows or columns.
 *
 * Loop nest per block of C a thread owns (BLIS order):
 *   jc: NC columns of B  →  s: a K slice (≤ KC)  →  pack the kc×nc block of B
 *   →  ic: MC rows of A  →  pack the mc×kc block of A
 *   →  jr: NR-strips of B  →  ir: MR-panels of A  →  micro-kernel.
 * K is cut into equal slices (K=576 with KC=384 gives 2×288, not 384+192),
 * so no slice is wastefully thin. The bias is added by the first slice, the
 * rest accumulate. When a thread's rows fit one MC block (conv layers: few
 * output channels, many pixels) and its B slices do not fit L2, B is cut into
 * blocks of half L2 rather than NC columns and A, packed once, is kept for
 * all of them.
 */
#include "gemm.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "algorithms/epilogue.h"
#include "kernels/kernels.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* --- configs --------------------------------------------------------------
 * One per micro-kernel family (kernels/kernels.h), each declaring the ISA it
 * needs. Blocking chosen for Zen 4 class cores (32 KiB L1d, 1 MiB L2 per
 * core, shared L3): an MC×KC block of A takes about half of L2; a KC×NC
 * block of B goes to L3. The kernels need little bandwidth (an AVX-512 f32
 * step is 28 FMAs per 184 bytes), so A and B both streaming from L2 keep
 * them busy. On a Sapphire Rapids core (48 KiB L1d, 2 MiB L2) KC 256-512
 * with MC up to 1008 came within noise (±3%) of these, so they are kept;
 * what the larger L2 changes is the B block when A has a single block
 * (gemm_block, sized from the L2 the system reports). */
/* The value for float, or for double. */
#if defined(AI3_REAL_DOUBLE)
#define F32_F64(f32, f64) f64
#else
#define F32_F64(f32, f64) f32
#endif
#define STR(x) STR_(x)
#define STR_(x) #x
/* Named <dtype>_gemm_<MR>x<NR>_<family>, e.g. "f32_gemm_14x32_avx512". */
#define CONFIG(family, isa, mr, nr, mc, kc, nc)                                             \
    {F32_F64("f32", "f64") "_gemm_" STR(mr) "x" STR(nr) "_" #family, isa, mr, nr, mc, kc, nc, \
     AI3_TYPED(ai3_gemm_kernel_##family)}

static const ai3_gemm_config configs[] = {
    CONFIG(scalar, AI3_ISA_GENERIC, 4, F32_F64(8, 4), 128, 256, 2048),
#if defined(__x86_64__)
    CONFIG(avx2, AI3_ISA_AVX2, 6, F32_F64(16, 8), F32_F64(240, 120), 384, F32_F64(3072, 1536)),
    CONFIG(avx512, AI3_ISA_AVX512, 14, F32_F64(32, 16), F32_F64(336, 168), 384,
           F32_F64(3072, 1536)),
#endif
};
#define N_CONFIGS ((int)(sizeof configs / sizeof configs[0]))

/* The config of the highest ISA neither above `isa` nor above the CPU's best
 * (the generic one always qualifies). */
const ai3_gemm_config *AI3_TYPED(ai3_gemm_config_for_isa)(ai3_isa isa) {
    ai3_isa want = AI3_MIN(isa, ai3_cpu_best_isa());
    const ai3_gemm_config *best = NULL;
    for (int i = 0; i < N_CONFIGS; i++)
        if (configs[i].isa <= want && (!best || configs[i].isa > best->isa)) best = &configs[i];
    return best ? best : &configs[0];
}

const ai3_gemm_config *AI3_TYPED(ai3_gemm_get_config)(void) {
    return AI3_TYPED(ai3_gemm_config_for_isa)(ai3_cpu_isa());
}

#if defined(__x86_64__)
/* Named <dtype>_gemm_cols_<MR>x<NR>_<family>, e.g. "f32_gemm_cols_32x14_avx512". */
#define COLS_CONFIG(family, FAMILY, mr)                                                    \
    {F32_F64("f32", "f64") "_gemm_cols_" STR(mr) "x" STR(AI3_GEMM_COLS_NR_##FAMILY) "_" #family, \
     mr, AI3_GEMM_COLS_NR_##FAMILY, AI3_GEMM_COLS_LOOKAHEAD_##FAMILY,                       \
     AI3_TYPED(ai3_gemm_cols_kernel_##family)}
static const ai3_gemm_cols_config cols_avx512 = COLS_CONFIG(avx512, AVX512, F32_F64(32, 16));
static const ai3_gemm_cols_config cols_avx2 = COLS_CONFIG(avx2, AVX2, F32_F64(16, 8));
#endif

const ai3_gemm_cols_config *AI3_TYPED(ai3_gemm_get_cols_config)(void) {
#if defined(__x86_64__)
    if (ai3_cpu_isa() >= AI3_ISA_AVX512) return &cols_avx512;
    if (ai3_cpu_isa() >= AI3_ISA_AVX2) return &cols_avx2;
#endif
    return NULL;
}

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* K is cut into nk = ceil(K / KC) slices of (almost) equal depth. */
static inline int64_t k_slices(const ai3_gemm_config *cfg, int64_t K) {
    return AI3_MAX(1, (K + cfg->kc - 1) / cfg->kc);
}
static inline void k_slice(int64_t K, int64_t nk, int64_t s, int64_t *k0, int64_t *kc) {
    *k0 = K * s / nk;
    *kc = K * (s + 1) / nk - *k0;
}

/* --- packing ---------------------------------------------------------------
 * Groups of R along x (rows of A, columns of B), element (x, p) read from
 * src[x·xs + p·ks], written as ceil(xc / R) groups of R·kc: dst[g·R·kc +
 * p·R + r]; the last group is zero-padded. The writes are sequential; the
 * reads are R sequential streams when x is the strided axis. R is made a
 * constant for the tiles the kernels use, so the inner loop unrolls. */
ALWAYS_INLINE void pack_groups_r(int64_t xc, int64_t kc, const int R, const real *src, int64_t xs,
                                 int64_t ks, real *restrict dst) {
    if (xs == 1) {
        /* Groups adjacent in memory (B row-major): a run of G full groups
         * is copied row after row of k, so each source row is read 1 KiB at
         * a time rather than R elements (R at a time, a row apart, defeats
         * the prefetchers and misses the TLB on every row). */
        const int G = AI3_MAX(1, 1024 / (R * (int)sizeof(real)));
        int64_t full = xc / R * R;
        for (int64_t x0 = 0; x0 < full; x0 += (int64_t)G * R) {
            int g_n = (int)AI3_MIN(G, (full - x0) / R);
            for (int64_t p = 0; p < kc; p++)
                for (int g = 0; g < g_n; g++)
                    __builtin_memcpy(dst + (int64_t)g * R * kc + p * R, src + x0 + g * R + p * ks,
                                     R * sizeof(real));
            dst += (int64_t)g_n * R * kc;
        }
        src += full;
        xc -= full;
    }
    for (int64_t x0 = 0; x0 < xc; x0 += R) {
        int rn = (int)AI3_MIN(R, xc - x0);
        const real *s = src + x0 * xs;
        if (rn == R) {
            for (int64_t p = 0; p < kc; p++)
                for (int r = 0; r < R; r++) dst[p * R + r] = s[r * xs + p * ks];
        } else {
            for (int64_t p = 0; p < kc; p++) {
                for (int r = 0; r < rn; r++) dst[p * R + r] = s[r * xs + p * ks];
                for (int r = rn; r < R; r++) dst[p * R + r] = 0;
            }
        }
        dst += (int64_t)R * kc;
    }
}

AI3_MULTIVERSION(pack_groups, int64_t, xc, int64_t, kc, int, R, const real *, src, int64_t, xs,
                 int64_t, ks, real *restrict, dst) {
    switch (R) {
    case 4: pack_groups_r(xc, kc, 4, src, xs, ks, dst); break;
    case 6: pack_groups_r(xc, kc, 6, src, xs, ks, dst); break;
    case 8: pack_groups_r(xc, kc, 8, src, xs, ks, dst); break;
    case 14: pack_groups_r(xc, kc, 14, src, xs, ks, dst); break;
    case 16: pack_groups_r(xc, kc, 16, src, xs, ks, dst); break;
    case 32: pack_groups_r(xc, kc, 32, src, xs, ks, dst); break;
    default:
        for (int64_t x0 = 0; x0 < xc; x0 += R) {
            int rn = (int)AI3_MIN(R, xc - x0);
            for (int64_t p = 0; p < kc; p++)
                for (int r = 0; r < R; r++)
                    dst[p * R + r] = r < rn ? src[(x0 + r) * xs + p * ks] : 0;
            dst += (int64_t)R * kc;
        }
    }
}

void AI3_TYPED(ai3_gemm_pack_a_block)(const ai3_gemm_config *cfg, int64_t mc, int64_t kc,
                                      const real *A, int64_t rs, int64_t cs, real *dst) {
    pack_groups(mc, kc, cfg->mr, A, rs, cs, dst);
}

void AI3_TYPED(ai3_gemm_pack_b_block)(const ai3_gemm_config *cfg, int64_t kc, int64_t nc,
                                      const real *B, int64_t rs, int64_t cs, real *dst) {
    pack_groups(nc, kc, cfg->nr, B, cs, rs, dst);
}

/* Packed whole matrices: slice after slice of K, each slice the callback
 * format over all rows (columns), so slice s starts at k0(s)·Mp (k0(s)·Np). */
size_t AI3_TYPED(ai3_gemm_packed_a_size)(const ai3_gemm_config *cfg, int64_t M, int64_t K) {
    return (size_t)(round_up(M, cfg->mr) * K);
}

size_t AI3_TYPED(ai3_gemm_packed_b_size)(const ai3_gemm_config *cfg, int64_t K, int64_t N) {
    return (size_t)(round_up(N, cfg->nr) * K);
}

void AI3_TYPED(ai3_gemm_pack_a)(const ai3_gemm_config *cfg, int64_t M, int64_t K, const real *A,
                                int64_t rs, int64_t cs, real *dst) {
    if (M == 0 || K == 0) return; /* nothing packed; A may be NULL (an empty tensor) */
    int64_t nk = k_slices(cfg, K), Mp = round_up(M, cfg->mr);
    for (int64_t s = 0; s < nk; s++) {
        int64_t k0, kc;
        k_slice(K, nk, s, &k0, &kc);
        pack_groups(M, kc, cfg->mr, A + k0 * cs, rs, cs, dst + k0 * Mp);
    }
}

void AI3_TYPED(ai3_gemm_pack_b)(const ai3_gemm_config *cfg, int64_t K, int64_t N, const real *B,
                                int64_t rs, int64_t cs, real *dst) {
    if (N == 0 || K == 0) return; /* as pack_a */
    int64_t nk = k_slices(cfg, K), Np = round_up(N, cfg->nr);
    for (int64_t s = 0; s < nk; s++) {
        int64_t k0, kc;
        k_slice(K, nk, s, &k0, &kc);
        pack_groups(N, kc, cfg->nr, B + k0 * rs, cs, rs, dst + k0 * Np);
    }
}

/* --- the blocked product ------------------------------------------------------ */

typedef struct gemm_job {
    const ai3_gemm_config *cfg;
    int64_t M, N, K, nk;
    const ai3_gemm_operand *A, *B;
    real *C;
    int64_t ldc;
    const real *bias_row, *bias_col;
    bool accumulate;
    const ai3_epilogue *epilogue; /* NULL, or applied to each final tile */
    int tm, tn;              /* the grid of blocks of C */
    int64_t mpanels, nstrips;
    atomic_int failed;
} gemm_job;

/* Multiply-adds per thread above which C is split into several blocks per
 * thread (each block packs its own panels, which costs little then). */
#define OVERSPLIT_MIN_MACS ((int64_t)1 << 22)

/* C[m0:m1, n0:n1] on the calling thread; false if no buffer could be had. */
static bool gemm_block(gemm_job *job, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const ai3_gemm_config *cfg = job->cfg;
    const ai3_gemm_operand *A = job->A, *B = job->B;
    const int MR = cfg->mr, NR = cfg->nr;
    const int64_t K = job->K, nk = job->nk, ldc = job->ldc;
    const int64_t Mp = round_up(job->M, MR), Np = round_up(job->N, NR);
    const int64_t kcmax = (K + nk - 1) / nk;
    /* With a single panel of A, each strip of B is used once: read B in
     * place rather than copy it (only the ragged last strip is packed). */
    const bool direct_b = B->kind == AI3_GEMM_STRIDED && B->cs == 1 && m1 - m0 <= MR;
    /* With a single block of A (few rows, as a conv layer's C_out) a block of
     * B is used by that block alone, so nothing is gained from NC columns:
     * if a K slice of the thread's B overflows L2, B is cut to blocks that
     * stay in L2 next to A, and A is packed for all of K once and kept for
     * every block of B (when the slice fits, cutting it only costs A's
     * second reading). */
    const bool cut_b = m1 - m0 <= cfg->mc &&
                       kcmax * (n1 - n0) * (int64_t)sizeof(real) > ai3_cpu_l2_bytes();
    int64_t ncmax = cfg->nc;
    if (cut_b) {
        int64_t l2_cols = ai3_cpu_l2_bytes() / 2 / (kcmax * (int64_t)sizeof(real)) / NR * NR;
        ncmax = AI3_MIN(ncmax, AI3_MAX(NR, l2_cols));
    }
    const bool keep_a = cut_b && A->kind != AI3_GEMM_PACKED && n1 - n0 > ncmax;
    const int64_t mcp = round_up(AI3_MIN(cfg->mc, m1 - m0), MR);
    /* kept A: slice s at pa + s·aslice, each 64-byte aligned */
    const int64_t aslice = round_up(kcmax * mcp, 64 / sizeof(real));

    size_t nb = 0, na = 0;
    if (B->kind != AI3_GEMM_PACKED)
        nb = (size_t)(kcmax * (direct_b ? NR : round_up(AI3_MIN(ncmax, n1 - n0), NR)));
    if (A->kind != AI3_GEMM_PACKED) na = (size_t)(keep_a ? nk * aslice : kcmax * mcp);
    nb = (size_t)round_up((int64_t)nb, 64 / sizeof(real)); /* keeps pa 64-byte aligned */
    real *pb = NULL, *pa = NULL;
    if (nb + na > 0) {
        real *buf = ai3_thread_buffer(F32_F64(AI3_BUFFER_GEMM_F32, AI3_BUFFER_GEMM_F64),
                                          (nb + na) * sizeof(real));
        if (!buf) return false;
        pb = buf;
        pa = buf + nb;
    }

    for (int64_t jc = n0; jc < n1; jc += ncmax) {
        int64_t nc = AI3_MIN(ncmax, n1 - jc);
        for (int64_t s = 0; s < nk; s++) {
            int64_t k0, kc;
            k_slice(K, nk, s, &k0, &kc);
            const real *bblock = pb;
            if (B->kind == AI3_GEMM_PACKED)
                bblock = B->data + k0 * Np + jc * kc;
            else if (B->kind == AI3_GEMM_CALLBACK)
                B->pack(B->ctx, k0, kc, jc, nc, pb);
            else if (!direct_b)
                pack_groups(nc, kc, NR, B->data + k0 * B->rs + jc * B->cs, B->cs, B->rs, pb);
            bool add = job->accumulate || s > 0;
            const ai3_epilogue *ep = s == nk - 1 ? job->epilogue : NULL; /* tiles final now */
            const real *bias_row = s == 0 ? job->bias_row : NULL;
            const real *bias_col = s == 0 ? job->bias_col : NULL;

            for (int64_t ic = m0; ic < m1; ic += cfg->mc) {
                int64_t mc = AI3_MIN(cfg->mc, m1 - ic);
                const real *ablock = keep_a ? pa + s * aslice : pa;
                if (A->kind == AI3_GEMM_PACKED)
                    ablock = A->data + k0 * Mp + ic * kc;
                else if (keep_a && jc > n0)
                    ; /* packed for the first block of B */
                else if (A->kind == AI3_GEMM_CALLBACK)
                    A->pack(A->ctx, k0, kc, ic, mc, (real *)ablock);
                else
                    pack_groups(mc, kc, MR, A->data + ic * A->rs + k0 * A->cs, A->rs, A->cs,
                                (real *)ablock);

                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)AI3_MIN(NR, nc - jr);
                    const real *bstrip = bblock + jr * kc;
                    int64_t ldb = NR;
                    if (direct_b) {
                        bstrip = B->data + k0 * B->rs + jc + jr;
                        ldb = B->rs;
                        if (nr < NR) {
                            pack_groups(nr, kc, NR, bstrip, 1, B->rs, pb);
                            bstrip = pb;
                            ldb = NR;
                        }
                    }
                    real *c = job->C + jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = (int)AI3_MIN(MR, mc - ir);
                        int64_t i = ic + ir;
                        cfg->ukernel(kc, ablock + ir * kc, bstrip, ldb, c + i * ldc, ldc, mr, nr,
                                     bias_row ? bias_row + i : NULL,
                                     bias_col ? bias_col + jc + jr : NULL, add);
                        if (ep)
                            AI3_TYPED(ai3_epilogue_apply)(
                                c + i * ldc, ldc, ai3_epilogue_residual(ep, i * ldc + jc + jr),
                                ldc, mr, nr, ep);
                    }
                }
            }
        }
    }
    return true;
}

static void gemm_task(void *ctx, int64_t begin, int64_t end) {
    gemm_job *job = ctx;
    const int MR = job->cfg->mr, NR = job->cfg->nr;
    for (int64_t t = begin; t < end; t++) {
        int64_t ti = t / job->tn, tj = t % job->tn;
        int64_t m0 = job->mpanels * ti / job->tm * MR;
        int64_t m1 = AI3_MIN(job->M, job->mpanels * (ti + 1) / job->tm * MR);
        int64_t n0 = job->nstrips * tj / job->tn * NR;
        int64_t n1 = AI3_MIN(job->N, job->nstrips * (tj + 1) / job->tn * NR);
        if (m0 < m1 && n0 < n1 && !gemm_block(job, m0, m1, n0, n1)) atomic_store(&job->failed, 1);
    }
}

/* Splits C into tm × tn = `threads` blocks: the grid whose
 * largest block costs least, counting the multiply-adds (a strip of at most
 * NR/2 columns at half price, as the kernels do it) and the packing each
 * thread does for itself: about 8 multiply-adds an element copied, 32 one
 * gathered by a callback (implicit GEMM's B: a strided read at an offset
 * computed or loaded per element). Splitting such a B by rows would have
 * every thread gather all of it: at 2 threads, implicit precomp gemm on a
 * 256-channel 3×3 layer ran at 60% of the FMA peak split by rows and 82%
 * split by columns. */
static void choose_grid(gemm_job *job, int threads) {
    const ai3_gemm_config *cfg = job->cfg;
    const int MR = cfg->mr, NR = cfg->nr;
    bool pack_a = job->A->kind != AI3_GEMM_PACKED, pack_b = job->B->kind != AI3_GEMM_PACKED;
    int64_t last_cols = job->N - (job->nstrips - 1) * NR;
    double best = -1;
    for (int tm = 1; tm <= threads; tm++) {
        if (threads % tm) continue;
        int tn = threads / tm;
        if (tm > job->mpanels || tn > job->nstrips) continue;
        double rows = (double)AI3_MIN(job->M, (job->mpanels + tm - 1) / tm * MR);
        int64_t strips = (job->nstrips + tn - 1) / tn;
        /* The block holding the last strip has the fewest full strips. */
        double cols = (double)(strips * NR);
        if (tn == 1 && last_cols <= NR / 2) cols -= NR / 2.0;
        double cost = rows * cols;
        if (pack_a) cost += 8 * rows * (double)((strips * NR + cfg->nc - 1) / cfg->nc);
        if (pack_b) cost += (job->B->kind == AI3_GEMM_CALLBACK ? 32 : 8) * cols;
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

/* --- few rows or columns: dot products ----------------------------------------
 * When A's rows and B's columns are both contiguous along K and one side is
 * thin (linear with a small batch, a matrix times a vector) the product is
 * memory-bound; packing would copy the big operand once more. Instead: a
 * 4×4 block of outputs at a time, each with a vector of partial sums that is
 * reduced at the end of every K slice (the slice keeps the four rows of the
 * thin side in L2 while the other streams from memory once). Edge blocks
 * repeat the last row and drop the extra results. The vectors are GCC's
 * generic ones, compiled per ISA by AI3_MULTIVERSION. */
#define DOT_KC 16384
#define DOT_THIN 16
#define DOT_V ((int)(64 / sizeof(real)))
typedef real vreal __attribute__((vector_size(64)));
typedef real vreal_u __attribute__((vector_size(64), aligned(sizeof(real))));

typedef struct dot_job {
    int64_t M, N, K;
    const real *A, *B; /* row i of A at A + i·lda, column j of B at B + j·ldb */
    int64_t lda, ldb;
    real *C;
    int64_t ldc;
    const real *bias_row, *bias_col;
    bool accumulate, split_rows;
} dot_job;

AI3_MULTIVERSION(dot_block, const dot_job *, d, int64_t, i0, int64_t, i1, int64_t, j0,
                 int64_t, j1) {
    for (int64_t pc = 0; pc < d->K; pc += DOT_KC) {
        int64_t kc = AI3_MIN(DOT_KC, d->K - pc);
        int64_t kv = kc - kc % DOT_V;
        bool first = pc == 0;
        for (int64_t jb = j0; jb < j1; jb += 4) {
            const real *b[4];
            for (int q = 0; q < 4; q++) b[q] = d->B + AI3_MIN(jb + q, j1 - 1) * d->ldb + pc;
            for (int64_t ib = i0; ib < i1; ib += 4) {
                const real *a[4];
                for (int r = 0; r < 4; r++) a[r] = d->A + AI3_MIN(ib + r, i1 - 1) * d->lda + pc;
                vreal s[4][4];
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++) s[r][q] = (vreal){0};
                for (int64_t p = 0; p < kv; p += DOT_V) {
                    vreal bv[4];
                    for (int q = 0; q < 4; q++) bv[q] = *(const vreal_u *)(b[q] + p);
                    for (int r = 0; r < 4; r++) {
                        vreal av = *(const vreal_u *)(a[r] + p);
                        for (int q = 0; q < 4; q++) s[r][q] += av * bv[q];
                    }
                }
                int64_t mi = AI3_MIN(4, i1 - ib), nj = AI3_MIN(4, j1 - jb);
                for (int r = 0; r < mi; r++) {
                    for (int q = 0; q < nj; q++) {
                        real t = 0;
                        for (int l = 0; l < DOT_V; l++) t += s[r][q][l];
                        for (int64_t p = kv; p < kc; p++) t += a[r][p] * b[q][p];
                        if (first) {
                            if (d->bias_row) t += d->bias_row[ib + r];
                            if (d->bias_col) t += d->bias_col[jb + q];
                        }
                        real *c = d->C + (ib + r) * d->ldc + jb + q;
                        *c = d->accumulate || !first ? *c + t : t;
                    }
                }
            }
        }
    }
}

static void dot_task(void *ctx, int64_t begin, int64_t end) {
    const dot_job *d = ctx;
    /* Ranges are in blocks of 4 outputs along the split side. */
    if (d->split_rows)
        dot_block(d, begin * 4, AI3_MIN(d->M, end * 4), 0, d->N);
    else
        dot_block(d, 0, d->M, begin * 4, AI3_MIN(d->N, end * 4));
}

/* --- entry point ------------------------------------------------------------- */

static bool operand_ok(const ai3_gemm_operand *op) {
    if (!op) return false;
    switch (op->kind) {
    case AI3_GEMM_STRIDED:
    case AI3_GEMM_PACKED: return op->data != NULL;
    case AI3_GEMM_CALLBACK: return op->pack != NULL;
    }
    return false;
}

/* C = (accumulate ? C : 0) + biases, for K = 0. */
static void empty_product(int64_t M, int64_t N, real *C, int64_t ldc, const real *bias_row,
                          const real *bias_col, bool accumulate) {
    for (int64_t i = 0; i < M; i++) {
        real *c = C + i * ldc;
        for (int64_t j = 0; j < N; j++) {
            real t = accumulate ? c[j] : 0;
            if (bias_row) t += bias_row[i];
            if (bias_col) t += bias_col[j];
            c[j] = t;
        }
    }
}

/* Below this many multiply-adds the pool's wake-up costs more than it saves. */
#define PARALLEL_MIN_MACS (1 << 19)

ai3_status AI3_TYPED(ai3_gemm)(const ai3_gemm_config *cfg, int64_t M, int64_t N, int64_t K,
                               const ai3_gemm_operand *A, const ai3_gemm_operand *B, real *C,
                               int64_t ldc, const real *bias_row, const real *bias_col,
                               unsigned flags) {
    return AI3_TYPED(ai3_gemm_epilogue)(cfg, M, N, K, A, B, C, ldc, bias_row, bias_col, flags,
                                        NULL);
}

ai3_status AI3_TYPED(ai3_gemm_epilogue)(const ai3_gemm_config *cfg, int64_t M, int64_t N,
                                        int64_t K, const ai3_gemm_operand *A,
                                        const ai3_gemm_operand *B, real *C, int64_t ldc,
                                        const real *bias_row, const real *bias_col,
                                        unsigned flags, const ai3_epilogue *epilogue) {
    if (M < 0 || N < 0 || K < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "gemm: negative size M=%lld N=%lld K=%lld", (long long)M,
                             (long long)N, (long long)K);
    if (M == 0 || N == 0) return AI3_OK;
    /* with K == 0 the operands are empty (their data may be NULL) and unread */
    if (!C || (M > 1 && ldc < N) || (K > 0 && (!operand_ok(A) || !operand_ok(B))))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "gemm: missing operand or output, or ldc (%lld) < N (%lld)",
                             (long long)ldc, (long long)N);
    bool accumulate = flags & AI3_GEMM_ACCUMULATE;
    if (K == 0) {
        empty_product(M, N, C, ldc, bias_row, bias_col, accumulate);
        if (epilogue)
            AI3_TYPED(ai3_epilogue_apply)(C, ldc, ai3_epilogue_residual(epilogue, 0), ldc, M, N,
                                          epilogue);
        return AI3_OK;
    }
    if (!cfg) cfg = AI3_TYPED(ai3_gemm_get_config)();
    int threads = 1;
    if (!(flags & AI3_GEMM_SINGLE_THREAD) && M * N * K >= PARALLEL_MIN_MACS)
        threads = ai3_get_num_threads();

    if (A->kind == AI3_GEMM_STRIDED && B->kind == AI3_GEMM_STRIDED && A->cs == 1 && B->rs == 1 &&
        (M < DOT_THIN || N < DOT_THIN)) {
        dot_job d = {M, N, K, A->data, B->data, A->rs, B->cs, C, ldc, bias_row, bias_col,
                     accumulate, M > N};
        int64_t blocks = ((d.split_rows ? M : N) + 3) / 4;
        if (threads > 1)
            ai3_parallel_for(blocks, 1, dot_task, &d);
        else
            dot_task(&d, 0, blocks);
        if (epilogue) /* (thin: small) */
            AI3_TYPED(ai3_epilogue_apply)(C, ldc, ai3_epilogue_residual(epilogue, 0), ldc, M, N,
                                          epilogue);
        return AI3_OK;
    }

    gemm_job job = {.cfg = cfg, .M = M, .N = N, .K = K, .nk = k_slices(cfg, K), .A = A, .B = B,
                    .C = C, .ldc = ldc, .bias_row = bias_row, .bias_col = bias_col,
                    .accumulate = accumulate, .epilogue = epilogue,
                    .mpanels = (M + cfg->mr - 1) / cfg->mr,
                    .nstrips = (N + cfg->nr - 1) / cfg->nr};
    atomic_init(&job.failed, 0);
    /* A few blocks per thread, when there is work enough and one operand is
     * packed ahead (so more blocks pack little more), so that the pool can
     * even out a thread slowed by another process on its core. */
    bool prepacked = A->kind == AI3_GEMM_PACKED || B->kind == AI3_GEMM_PACKED;
    int blocks = threads > 1 && prepacked && M * N * K >= OVERSPLIT_MIN_MACS * threads
                     ? 4 * threads
                     : threads;
    choose_grid(&job, blocks);
    int64_t tasks = (int64_t)job.tm * job.tn;
    if (tasks > 1)
        ai3_parallel_for(tasks, 1, gemm_task, &job);
    else
        gemm_task(&job, 0, 1);
    if (atomic_load(&job.failed))
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "gemm: could not allocate packing buffers");
    return AI3_OK;
}

/* --- the older entry points ------------------------------------------------------ */

/* Used only if the engine cannot get its packing buffers: these functions
 * cannot report an error. B(p, j) at B[p·rs + j·cs]. */
static void gemm_unpacked(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                          const real *B, int64_t rs, int64_t cs, real *C, int64_t ldc,
                          bool accumulate) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            real t = accumulate ? C[i * ldc + j] : 0;
            for (int64_t p = 0; p < K; p++) t += A[i * lda + p] * B[p * rs + j * cs];
            C[i * ldc + j] = t;
        }
}

void AI3_TYPED(ai3_gemm_nn)(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                            const real *B, int64_t ldb, real *C, int64_t ldc, bool accumulate) {
    ai3_gemm_operand a = ai3_gemm_strided(A, lda, 1), b = ai3_gemm_strided(B, ldb, 1);
    unsigned flags = AI3_GEMM_SINGLE_THREAD | (accumulate ? AI3_GEMM_ACCUMULATE : 0);
    if (AI3_TYPED(ai3_gemm)(NULL, M, N, K, &a, &b, C, ldc, NULL, NULL, flags) != AI3_OK)
        gemm_unpacked(M, N, K, A, lda, B, ldb, 1, C, ldc, accumulate);
}

void AI3_TYPED(ai3_gemm_nt)(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda,
                            const real *B, int64_t ldb, real *C, int64_t ldc, bool accumulate) {
    ai3_gemm_operand a = ai3_gemm_strided(A, lda, 1), b = ai3_gemm_strided(B, 1, ldb);
    unsigned flags = AI3_GEMM_SINGLE_THREAD | (accumulate ? AI3_GEMM_ACCUMULATE : 0);
    if (AI3_TYPED(ai3_gemm)(NULL, M, N, K, &a, &b, C, ldc, NULL, NULL, flags) != AI3_OK)
        gemm_unpacked(M, N, K, A, lda, B, 1, ldb, C, ldc, accumulate);
}
