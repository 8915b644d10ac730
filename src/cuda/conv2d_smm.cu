/*
 * ai3_cuda_conv2d_smm: SMM-Conv as an implicit GEMM organised by kernel tap.
 * Per group, out (C_out/g × P) = Σ over taps (ky, kx) of W[:, :, ky, kx]
 * (C_out/g × C_in/g) · X_shift(ky, kx) (C_in/g × P), where P runs over the
 * n·oh·ow output pixels of the batch and X_shift(ky, kx)[ci][p] is the input
 * pixel that tap sees for output pixel p (zero outside the input).
 *
 * Tiling: a block computes BM output channels × BN pixels with KS·BM·BN/64
 * threads; each thread accumulates an 8×8 micro-tile, its rows and columns
 * split in two halves BM/2 and BN/2 apart so that shared-memory reads are
 * 4-wide and conflict-free. The K loop runs over chunks of BK = 8·KS input
 * channels and, inside each chunk, over the taps, so a chunk's weights (a
 * contiguous run of BK·kh·kw values per output channel) stay in L1 while
 * its taps use them. Each step stages the BM×BK weight slice and the BK×BN
 * shifted input view in shared memory, double-buffered (the next step's
 * global loads wait in registers while the current step computes). With
 * KS > 1 the threads form KS groups, each taking 8 of a step's BK rows, and
 * the groups' sums are added through shared memory at the end (a split of
 * K inside the block, for layers with few output tiles). Float compute
 * chooses among 128×128 (KS 1, 256 threads), 64×128 (1, 128), 128×64 (2,
 * 256), 64×64 (4, 256) and 32×128 (1, 64) the one with the least estimated
 * time (waves of resident blocks × block work); float64 uses 64×64 (1, 64).
 * Accumulation is in float (double for float64).
 *
 * Depthwise convolutions (one input channel per group, few outputs) go to
 * ai3_cuda_conv2d_direct's depthwise path.
 */
#include "half.cuh"

#include <math.h>

namespace {

struct conv_args {
    int c_in, h, w, c_out, kh, kw, oh, ow;
    int sh, sw, pt, pl, dh, dw;
    int cin_g, cout_g;
    int64_t pixels; /* n · oh · ow */
    int64_t n_tiles; /* pixel tiles per group */
};

template <typename T, int BM, int BN, int KS>
__global__ void __launch_bounds__(KS * BM * BN / 64, sizeof(T) == 8 ? 1 : 512 / (KS * BM * BN / 64))
smm_kernel(const T *__restrict__ x, const T *__restrict__ wt, const T *__restrict__ bias,
           T *__restrict__ y, conv_args a) {
    typedef acc_t<T> A;
    constexpr int TPG = BM * BN / 64;               /* threads per k-group */
    constexpr int NT = KS * TPG;                    /* threads */
    constexpr int BK = 8 * KS;                      /* input channels per step */
    constexpr int LDA = BM + 4;                     /* As row stride (padded) */
    constexpr int EA = BM * BK / NT;                /* A elements loaded per thread */
    constexpr int PB = BN > NT ? BN / NT : 1;       /* B pixels loaded per thread */
    constexpr int KB = BK * BN / NT / PB;           /* B rows loaded per thread */
    constexpr int KSTEP = NT >= BN ? NT / BN : 1;
    constexpr int STAGE = 2 * BK * (LDA + BN), RED = (KS - 1) * BM * BN;
    __shared__ __align__(16) A smem[STAGE > RED ? STAGE : RED];
    A *const As = smem;                             /* [2][BK][LDA] */
    A *const Bs = smem + 2 * BK * LDA;              /* [2][BK][BN] */

    const int tid = threadIdx.x;
    const int g = (int)(blockIdx.x / a.n_tiles);
    const int64_t p0 = (blockIdx.x % a.n_tiles) * BN;
    const int m0 = blockIdx.y * BM;
    const int ohw = a.oh * a.ow, hw = a.h * a.w, kk = a.kh * a.kw;

    /* This thread's share of the weight tile: column ak of rows
     * am0 + i·(NT/BK), the rows rowlen = cin_g·kh·kw values apart. */
    const int ak = tid % BK, am0 = m0 + tid / BK, rowlen = a.cin_g * kk;
    const T *wrow = wt + ((int64_t)g * a.cout_g + am0) * rowlen;
    /* Its share of the input tile: pixels bbase[q] (image and group base)
     * with top-left tap coordinates (biy, bix), rows bk0 + r·KSTEP. */
    const int bk0 = NT >= BN ? tid / BN : 0;
    const T *bbase[PB];
    int biy[PB], bix[PB];
#pragma unroll
    for (int q = 0; q < PB; q++) {
        int64_t p = p0 + (NT >= BN ? tid % BN : tid + q * NT);
        int64_t img = p / ohw;
        int rem = (int)(p - img * ohw);
        bbase[q] = p < a.pixels ? x + (img * a.c_in + (int64_t)g * a.cin_g) * hw : nullptr;
        biy[q] = rem / a.ow * a.sh - a.pt;
        bix[q] = rem % a.ow * a.sw - a.pl;
    }

    A ra[EA], rb[PB][KB];
    auto load_step = [&](int c0, int ky, int kx) {
        int ci = c0 + ak, tap = ky * a.kw + kx;
#pragma unroll
        for (int i = 0; i < EA; i++)
            ra[i] = am0 + i * (NT / BK) < a.cout_g && ci < a.cin_g
                        ? load(wrow + (i * (NT / BK) * rowlen + ci * kk + tap))
                        : (A)0;
#pragma unroll
        for (int q = 0; q < PB; q++) {
            int iy = biy[q] + ky * a.dh, ix = bix[q] + kx * a.dw;
            bool ok = bbase[q] && (unsigned)iy < (unsigned)a.h && (unsigned)ix < (unsigned)a.w;
            const T *src = bbase[q] + (iy * a.w + ix);
#pragma unroll
            for (int r = 0; r < KB; r++) {
                int c = c0 + bk0 + r * KSTEP;
                rb[q][r] = ok && c < a.cin_g ? load(src + (int64_t)c * hw) : (A)0;
            }
        }
    };
    auto store_step = [&](int buf) {
#pragma unroll
        for (int i = 0; i < EA; i++) As[(buf * BK + ak) * LDA + tid / BK + i * (NT / BK)] = ra[i];
#pragma unroll
        for (int q = 0; q < PB; q++)
#pragma unroll
            for (int r = 0; r < KB; r++)
                Bs[(buf * BK + bk0 + r * KSTEP) * BN + (NT >= BN ? tid % BN : tid + q * NT)] =
                    rb[q][r];
    };

    /* k-group kg accumulates rows 8·kg .. 8·kg + 7 of every step. */
    const int kg = tid / TPG, t = tid % TPG, tx = t % (BN / 8), ty = t / (BN / 8);
    A acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0;

    const int steps = (a.cin_g + BK - 1) / BK * kk;
    int c0 = 0, ky = 0, kx = 0;
    load_step(c0, ky, kx);
    store_step(0);
    __syncthreads();
    for (int s = 0; s < steps; s++) {
        const int buf = s & 1;
        if (s + 1 < steps) {
            if (++kx == a.kw) {
                kx = 0;
                if (++ky == a.kh) { ky = 0; c0 += BK; }
            }
            load_step(c0, ky, kx);
        }
        const A *as = As + (buf * BK + kg * 8) * LDA, *bs = Bs + (buf * BK + kg * 8) * BN;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            A fa[8], fb[8];
            ld4(as + k * LDA + ty * 4, fa);
            ld4(as + k * LDA + BM / 2 + ty * 4, fa + 4);
            ld4(bs + k * BN + tx * 4, fb);
            ld4(bs + k * BN + BN / 2 + tx * 4, fb + 4);
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] += fa[i] * fb[j];
        }
        if (s + 1 < steps) store_step(buf ^ 1);
        __syncthreads();
    }

    /* k-groups 1.. hand their sums to group 0 through shared memory. */
    if (KS > 1) {
        if (kg > 0)
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) smem[((kg - 1) * 64 + i * 8 + j) * TPG + t] = acc[i][j];
        __syncthreads();
        if (kg > 0) return;
        for (int q = 0; q < KS - 1; q++)
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] += smem[(q * 64 + i * 8 + j) * TPG + t];
    }

    /* Epilogue: bias, then out[img][g·cout_g + m][rem]. */
    int64_t obase[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        int64_t p = p0 + (j < 4 ? tx * 4 + j : BN / 2 + tx * 4 + j - 4);
        int64_t img = p / ohw;
        obase[j] = p < a.pixels ? img * a.c_out * ohw + (p - img * ohw) : -1;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int m = m0 + (i < 4 ? ty * 4 + i : BM / 2 + ty * 4 + i - 4);
        if (m >= a.cout_g) continue;
        int co = g * a.cout_g + m;
        A b = bias ? load(bias + co) : (A)0;
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (obase[j] >= 0) y[obase[j] + (int64_t)co * ohw] = from_acc<T>(acc[i][j] + b);
    }
}

template <typename T, int BM, int BN, int KS>
cudaError_t launch(const T *x, const T *w, const T *b, T *y, conv_args a, cudaStream_t stream) {
    a.n_tiles = (a.pixels + BN - 1) / BN;
    dim3 grid((unsigned)(a.n_tiles * (a.c_out / a.cout_g)), (unsigned)((a.cout_g + BM - 1) / BM));
    smm_kernel<T, BM, BN, KS><<<grid, KS * BM * BN / 64, 0, stream>>>(x, w, b, y, a);
    return cudaGetLastError();
}

/* The tile configurations for float compute, and the one whose estimated
 * time is least: waves of resident blocks (512 / threads per SM, as a
 * thread holds 128 registers) times the work of a block. */
struct tile_config { int bm, bn, ks; };
constexpr tile_config configs[] = {{128, 128, 1}, {64, 128, 1}, {128, 64, 2}, {64, 64, 4}, {32, 128, 1}};

static int choose_config(const conv_args &a) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
        sms = 1;
    int best = 0;
    double best_cost = 0;
    for (int c = 0; c < (int)(sizeof configs / sizeof configs[0]); c++) {
        const tile_config &t = configs[c];
        int resident = 512 / (t.ks * t.bm * t.bn / 64);
        double blocks = (double)((a.pixels + t.bn - 1) / t.bn) * (a.c_out / a.cout_g) *
                        ((a.cout_g + t.bm - 1) / t.bm);
        double waves = ceil(blocks / ((double)sms * resident));
        double cost = waves * t.bm * t.bn * resident * (a.cin_g < 8 * t.ks ? 8.0 * t.ks / a.cin_g : 1);
        if (c == 0 || cost < best_cost) best = c, best_cost = cost;
    }
    return best;
}

template <typename T>
cudaError_t dispatch(const T *x, const T *w, const T *b, T *y, const conv_args &a,
                     cudaStream_t stream) {
    if constexpr (sizeof(T) == 8) {
        return launch<T, 64, 64, 1>(x, w, b, y, a, stream);
    } else {
        switch (choose_config(a)) {
        case 0: return launch<T, 128, 128, 1>(x, w, b, y, a, stream);
        case 1: return launch<T, 64, 128, 1>(x, w, b, y, a, stream);
        case 2: return launch<T, 128, 64, 2>(x, w, b, y, a, stream);
        case 3: return launch<T, 64, 64, 4>(x, w, b, y, a, stream);
        default: return launch<T, 32, 128, 1>(x, w, b, y, a, stream);
        }
    }
}

} // namespace

extern "C" cudaError_t ai3_cuda_conv2d_smm(ai3_dtype dtype, const void *input, const void *weight,
                                           const void *bias, void *output,
                                           const ai3_cuda_conv2d_shape *s, cudaStream_t stream) {
    if (s->n * s->c_out * s->oh * s->ow == 0) return cudaSuccess;
    if (s->c_in / s->groups == 1 && s->c_out / s->groups <= 8)
        return ai3_cuda_conv2d_direct(dtype, input, weight, bias, output, s, NULL, stream);
    conv_args a = {(int)s->c_in, (int)s->h, (int)s->w, (int)s->c_out, (int)s->kh, (int)s->kw,
                   (int)s->oh, (int)s->ow, (int)s->stride_h, (int)s->stride_w, (int)s->pad_top,
                   (int)s->pad_left, (int)s->dilation_h, (int)s->dilation_w,
                   (int)(s->c_in / s->groups), (int)(s->c_out / s->groups),
                   s->n * s->oh * s->ow, 0};
    AI3_CUDA_DISPATCH(dtype, T,
        return dispatch((const T *)input, (const T *)weight, (const T *)bias, (T *)output, a,
                        stream));
    return cudaSuccess;
}
