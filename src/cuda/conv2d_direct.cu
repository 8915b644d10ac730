/*
 * ai3_cuda_conv2d_direct: direct convolution over output tiles.
 *
 * A block of 128 threads computes BM = 64 output channels (of one group) ×
 * an 8 × 16 tile of output pixels of one image. The reduction runs over
 * chunks of CK input channels (CK = 8, 4, 2 or 1, the largest whose staging
 * fits in 48 KiB): the block stages the chunk's input patch (the
 * (7·sh + (kh-1)·dh + 1) × (15·sw + (kw-1)·dw + 1) window the tile reads,
 * zero outside the input) and its weights (CK·kh·kw × BM, output channel
 * fastest) in shared memory, then each thread accumulates an 8 × 8
 * micro-tile: 8 output channels (two runs of 4, 32 apart: 4-wide
 * shared-memory reads) × 8 pixels down one output column (a warp's 16
 * columns read consecutive patch entries). Accumulation is in float (double
 * for float64).
 *
 * Depthwise convolutions (one input and one output channel per group) with
 * square 3×3, 5×5 or 7×7 kernels, stride 1 or 2 and no dilation take a
 * tiled path (depthwise_tiled_kernel, below); other depthwise shapes (one
 * input channel and at most 8 outputs per group) a simple one: one output
 * element per thread, the window read from global memory. A shape whose
 * patch does not fit even with CK = 1 (huge dilation) is computed by
 * ai3_cuda_conv2d_smm. Every path adds the bias and applies the fused
 * activation as it writes its outputs.
 */
#include "activate.cuh"
#include "half.cuh"

namespace {

constexpr int BM = 64, TH = 8, TW = 16, NT = 128, SMEM_MAX = 48 * 1024;

struct conv_args {
    int c_in, h, w, c_out, kh, kw, oh, ow;
    int sh, sw, pt, pl, dh, dw;
    int cin_g, cout_g, groups;
    int ck, ph, pw;         /* channels per chunk, patch size */
    int tiles_y, tiles_x;
};

template <typename T>
__global__ void __launch_bounds__(NT)
direct_kernel(const T *__restrict__ x, const T *__restrict__ wt, const T *__restrict__ bias,
              T *__restrict__ y, conv_args a, act_args act) {
    typedef acc_t<T> A;
    extern __shared__ __align__(16) unsigned char smem[];
    const int kk = a.kh * a.kw, psize = a.ph * a.pw;
    A *ws = reinterpret_cast<A *>(smem);   /* [ck·kk][BM] */
    A *patch = ws + a.ck * kk * BM;        /* [ck][ph][pw] */

    int64_t b = blockIdx.x;
    const int tx0 = (int)(b % a.tiles_x) * TW; b /= a.tiles_x;
    const int ty0 = (int)(b % a.tiles_y) * TH; b /= a.tiles_y;
    const int g = (int)(b % a.groups);
    const int64_t img = b / a.groups;
    const int m0 = blockIdx.y * BM;
    const int tid = threadIdx.x, tm = tid / TW, tp = tid % TW;
    const int iy0 = ty0 * a.sh - a.pt, ix0 = tx0 * a.sw - a.pl;
    const T *xg = x + (img * a.c_in + (int64_t)g * a.cin_g) * a.h * a.w;
    const T *wg = wt + ((int64_t)g * a.cout_g + m0) * a.cin_g * kk;

    A acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0;

    for (int c0 = 0; c0 < a.cin_g; c0 += a.ck) {
        for (int e = tid; e < a.ck * psize; e += NT) {
            int c = e / psize, r = e % psize;
            int iy = iy0 + r / a.pw, ix = ix0 + r % a.pw;
            bool ok = c0 + c < a.cin_g && (unsigned)iy < (unsigned)a.h && (unsigned)ix < (unsigned)a.w;
            patch[e] = ok ? load(xg + ((int64_t)(c0 + c) * a.h + iy) * a.w + ix) : (A)0;
        }
        const int run = a.ck * kk; /* weights per output channel in this chunk */
        for (int e = tid; e < BM * run; e += NT) {
            int m = e % BM, r = e / BM;
            bool ok = m0 + m < a.cout_g && c0 + r / kk < a.cin_g;
            ws[r * BM + m] = ok ? load(wg + (int64_t)m * a.cin_g * kk + c0 * kk + r) : (A)0;
        }
        __syncthreads();
        for (int c = 0; c < a.ck; c++)
            for (int ky = 0; ky < a.kh; ky++)
                for (int kx = 0; kx < a.kw; kx++) {
                    A fa[8], fb[8];
                    const A *wr = ws + ((c * a.kh + ky) * a.kw + kx) * BM;
                    ld4(wr + tm * 4, fa);
                    ld4(wr + BM / 2 + tm * 4, fa + 4);
                    const A *pr = patch + (c * a.ph + ky * a.dh) * a.pw + kx * a.dw + tp * a.sw;
#pragma unroll
                    for (int j = 0; j < 8; j++) fb[j] = pr[j * a.sh * a.pw];
#pragma unroll
                    for (int i = 0; i < 8; i++)
#pragma unroll
                        for (int j = 0; j < 8; j++) acc[i][j] += fa[i] * fb[j];
                }
        __syncthreads();
    }

    const int ox = tx0 + tp;
    if (ox >= a.ow) return;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int m = m0 + (i < 4 ? tm * 4 + i : BM / 2 + tm * 4 + i - 4);
        if (m >= a.cout_g) continue;
        int co = g * a.cout_g + m;
        A bv = bias ? load(bias + co) : (A)0;
        T *yc = y + (img * a.c_out + co) * a.oh * a.ow + ox;
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (ty0 + j < a.oh)
                yc[(int64_t)(ty0 + j) * a.ow] = from_acc<T>(activate(acc[i][j] + bv, act));
    }
}

/* One output element per thread: input channel co / cout_g (cin_g == 1). */
template <typename T>
__global__ void __launch_bounds__(256)
depthwise_kernel(const T *__restrict__ x, const T *__restrict__ wt, const T *__restrict__ bias,
                 T *__restrict__ y, conv_args a, int64_t count, act_args act) {
    typedef acc_t<T> A;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        int ox = (int)(i % a.ow);
        int64_t t = i / a.ow;
        int oy = (int)(t % a.oh);
        t /= a.oh;
        int co = (int)(t % a.c_out);
        int64_t img = t / a.c_out;
        const T *xp = x + (img * a.c_in + co / a.cout_g) * a.h * a.w;
        const T *wp = wt + (int64_t)co * a.kh * a.kw;
        A sum = bias ? load(bias + co) : (A)0;
        for (int ky = 0; ky < a.kh; ky++) {
            int iy = oy * a.sh - a.pt + ky * a.dh;
            if ((unsigned)iy >= (unsigned)a.h) continue;
            for (int kx = 0; kx < a.kw; kx++) {
                int ix = ox * a.sw - a.pl + kx * a.dw;
                if ((unsigned)ix < (unsigned)a.w)
                    sum += load(xp + (int64_t)iy * a.w + ix) * load(wp + ky * a.kw + kx);
            }
        }
        y[i] = from_acc<T>(activate(sum, act));
    }
}

/* Depthwise, one input and one output channel per group, a K×K kernel with
 * stride S, no dilation. A block of 256 threads computes the same output
 * tile (TW columns × TY·RY rows) of `planes` consecutive (image, channel)
 * planes: it stages each plane's input window (zero outside the input) in
 * shared memory, then each thread accumulates RY = 4 outputs down one
 * column, reading every staged value of its window once for all the outputs
 * it feeds; the K×K weights are in registers. Small planes take many planes
 * per block, large ones several tiles per plane; with few planes in all
 * (batch 1), blocks take fewer planes and threads so that every SM works. */
constexpr int DW_THREADS = 256, RY = 4, DW_MIN_BLOCKS = 264;

struct dw_args {
    int64_t planes_total; /* n · c */
    int c, h, w, oh, ow, pt, pl;
    int tw, ty, planes, tiles_x, tiles_y, ph, pw;
};

template <typename T, int K, int S>
__global__ void __launch_bounds__(DW_THREADS)
depthwise_tiled_kernel(const T *__restrict__ x, const T *__restrict__ wt,
                       const T *__restrict__ bias, T *__restrict__ y, dw_args a, act_args act) {
    typedef acc_t<T> A;
    extern __shared__ __align__(16) unsigned char smem[];
    A *patch = reinterpret_cast<A *>(smem); /* [planes][ph][pw] */
    int64_t b = blockIdx.x;
    const int tx0 = (int)(b % a.tiles_x) * a.tw; b /= a.tiles_x;
    const int ty0 = (int)(b % a.tiles_y) * a.ty * RY; b /= a.tiles_y;
    const int64_t p0 = b * a.planes;
    const int psize = a.ph * a.pw, iy0 = ty0 * S - a.pt, ix0 = tx0 * S - a.pl;
    for (int e = threadIdx.x; e < a.planes * psize; e += blockDim.x) {
        const int q = e / psize, r = e % psize, iy = iy0 + r / a.pw, ix = ix0 + r % a.pw;
        const int64_t p = p0 + q;
        bool ok = p < a.planes_total && (unsigned)iy < (unsigned)a.h && (unsigned)ix < (unsigned)a.w;
        patch[e] = ok ? load(x + (p * a.h + iy) * a.w + ix) : (A)0;
    }
    __syncthreads();
    const int per_plane = a.tw * a.ty, q = threadIdx.x / per_plane, t = threadIdx.x % per_plane;
    const int col = t % a.tw, row = t / a.tw, ox = tx0 + col, oy0 = ty0 + row * RY;
    const int64_t p = p0 + q;
    if (q >= a.planes || p >= a.planes_total || ox >= a.ow || oy0 >= a.oh) return;
    const int ch = (int)(p % a.c);
    A w[K][K];
#pragma unroll
    for (int ky = 0; ky < K; ky++)
#pragma unroll
        for (int kx = 0; kx < K; kx++) w[ky][kx] = load(wt + (ch * K + ky) * K + kx);
    A acc[RY];
#pragma unroll
    for (int j = 0; j < RY; j++) acc[j] = 0;
    const A *pr = patch + q * psize + row * RY * S * a.pw + col * S;
#pragma unroll
    for (int r = 0; r < (RY - 1) * S + K; r++) /* staged rows of this thread's window */
#pragma unroll
        for (int kx = 0; kx < K; kx++) {
            const A v = pr[r * a.pw + kx];
#pragma unroll
            for (int j = 0; j < RY; j++) {
                const int ky = r - j * S;
                if (ky >= 0 && ky < K) acc[j] += v * w[ky][kx];
            }
        }
    const A bv = bias ? load(bias + ch) : (A)0;
    T *yp = y + (p * a.oh + oy0) * a.ow + ox;
#pragma unroll
    for (int j = 0; j < RY; j++)
        if (oy0 + j < a.oh) yp[(int64_t)j * a.ow] = from_acc<T>(activate(acc[j] + bv, act));
}

/* Launches depthwise_tiled_kernel<T, K, S>; false if the shape needs
 * another path (more blocks than a grid holds). */
template <typename T, int K, int S>
bool launch_depthwise_tiled(const T *x, const T *w, const T *b, T *y, const conv_args &c,
                            int64_t n, const act_args &act, cudaStream_t stream) {
    dw_args a = {n * c.c_out, c.c_out, c.h, c.w, c.oh, c.ow, c.pt, c.pl, 0, 0, 0, 0, 0, 0, 0};
    a.tw = c.ow <= 8 ? 8 : c.ow <= 16 ? 16 : 32;
    a.ty = (c.oh + RY - 1) / RY;
    if (a.ty > DW_THREADS / a.tw) a.ty = DW_THREADS / a.tw;
    a.planes = DW_THREADS / (a.tw * a.ty);
    size_t bytes;
    for (;;) { /* the staged windows must fit in 48 KiB */
        a.ph = (a.ty * RY - 1) * S + K;
        a.pw = (a.tw - 1) * S + K;
        bytes = sizeof(acc_t<T>) * (size_t)a.planes * a.ph * a.pw;
        if (bytes <= SMEM_MAX) break;
        if (a.planes > 1) a.planes /= 2;
        else a.ty /= 2; /* (a.ty = 1 always fits) */
    }
    a.tiles_x = (c.ow + a.tw - 1) / a.tw;
    a.tiles_y = (c.oh + a.ty * RY - 1) / (a.ty * RY);
    auto blocks = [&] { return (a.planes_total + a.planes - 1) / a.planes * a.tiles_x * a.tiles_y; };
    while (a.planes > 1 && blocks() < DW_MIN_BLOCKS) a.planes /= 2;
    if (blocks() > INT32_MAX) return false;
    bytes = sizeof(acc_t<T>) * (size_t)a.planes * a.ph * a.pw;
    const int threads = (a.tw * a.ty * a.planes + 31) / 32 * 32;
    depthwise_tiled_kernel<T, K, S>
        <<<(unsigned)blocks(), threads, bytes, stream>>>(x, w, b, y, a, act);
    return true;
}

template <typename T, int S>
bool depthwise_tiled(const T *x, const T *w, const T *b, T *y, const conv_args &c, int64_t n,
                     const act_args &act, cudaStream_t stream) {
    switch (c.kh) {
    case 3: return launch_depthwise_tiled<T, 3, S>(x, w, b, y, c, n, act, stream);
    case 5: return launch_depthwise_tiled<T, 5, S>(x, w, b, y, c, n, act, stream);
    case 7: return launch_depthwise_tiled<T, 7, S>(x, w, b, y, c, n, act, stream);
    default: return false;
    }
}

template <typename T>
cudaError_t launch(const T *x, const T *w, const T *b, T *y, conv_args a, int64_t n,
                   const ai3_cuda_conv2d_shape *s, ai3_dtype dtype, const act_args &act,
                   const ai3_cuda_act *epilogue, cudaStream_t stream) {
    if (a.cin_g == 1 && a.cout_g == 1 && a.kh == a.kw && a.sh == a.sw && a.dh == 1 &&
        a.dw == 1 &&
        (a.sh == 1 ? depthwise_tiled<T, 1>(x, w, b, y, a, n, act, stream)
                   : a.sh == 2 && depthwise_tiled<T, 2>(x, w, b, y, a, n, act, stream)))
        return cudaGetLastError();
    if (a.cin_g == 1 && a.cout_g <= 8) {
        int64_t count = n * a.c_out * a.oh * a.ow;
        depthwise_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(x, w, b, y, a, count,
                                                                            act);
        return cudaGetLastError();
    }
    a.ph = (TH - 1) * a.sh + (a.kh - 1) * a.dh + 1;
    a.pw = (TW - 1) * a.sw + (a.kw - 1) * a.dw + 1;
    size_t bytes = 0;
    for (a.ck = 8; a.ck >= 1; a.ck /= 2) {
        bytes = sizeof(acc_t<T>) * (size_t)a.ck * ((size_t)a.kh * a.kw * BM + (size_t)a.ph * a.pw);
        if (bytes <= SMEM_MAX) break;
    }
    if (a.ck == 0) { /* smm adds the bias; the activation in a pass after it */
        cudaError_t err = ai3_cuda_conv2d_smm(dtype, x, w, b, y, s, stream);
        if (err == cudaSuccess && epilogue)
            err = ai3_cuda_bias_activation(dtype, y, NULL, n, a.c_out, (int64_t)a.oh * a.ow,
                                           epilogue, stream);
        return err;
    }
    a.tiles_y = (a.oh + TH - 1) / TH;
    a.tiles_x = (a.ow + TW - 1) / TW;
    dim3 grid((unsigned)(n * a.groups * a.tiles_y * a.tiles_x), (unsigned)((a.cout_g + BM - 1) / BM));
    direct_kernel<T><<<grid, NT, bytes, stream>>>(x, w, b, y, a, act);
    return cudaGetLastError();
}

} // namespace

extern "C" cudaError_t ai3_cuda_conv2d_direct(ai3_dtype dtype, const void *input,
                                              const void *weight, const void *bias,
                                              void *output, const ai3_cuda_conv2d_shape *s,
                                              const ai3_cuda_act *epilogue, cudaStream_t stream) {
    if (s->n * s->c_out * s->oh * s->ow == 0) return cudaSuccess;
    act_args act = {-1, 0, 0, 0};
    if (epilogue && !act_args_of(epilogue->op, epilogue->params, &act)) return cudaErrorInvalidValue;
    conv_args a = {(int)s->c_in, (int)s->h, (int)s->w, (int)s->c_out, (int)s->kh, (int)s->kw,
                   (int)s->oh, (int)s->ow, (int)s->stride_h, (int)s->stride_w, (int)s->pad_top,
                   (int)s->pad_left, (int)s->dilation_h, (int)s->dilation_w,
                   (int)(s->c_in / s->groups), (int)(s->c_out / s->groups), (int)s->groups,
                   0, 0, 0, 0, 0};
    AI3_CUDA_DISPATCH(dtype, T,
        return launch((const T *)input, (const T *)weight, (const T *)bias, (T *)output, a,
                      s->n, s, dtype, act, epilogue, stream));
    return cudaSuccess;
}
