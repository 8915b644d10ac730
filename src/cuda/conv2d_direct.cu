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
 * Depthwise convolutions (one input channel per group and at most 8
 * outputs per group) take a simple path instead: one output element per
 * thread, the window read from global memory (coalesced along output rows).
 * A shape whose patch does not fit even with CK = 1 (huge dilation) is
 * computed by ai3_cuda_conv2d_smm.
 */
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
              T *__restrict__ y, conv_args a) {
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
            if (ty0 + j < a.oh) yc[(int64_t)(ty0 + j) * a.ow] = from_acc<T>(acc[i][j] + bv);
    }
}

/* One output element per thread: input channel co / cout_g (cin_g == 1). */
template <typename T>
__global__ void __launch_bounds__(256)
depthwise_kernel(const T *__restrict__ x, const T *__restrict__ wt, const T *__restrict__ bias,
                 T *__restrict__ y, conv_args a, int64_t count) {
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
        y[i] = from_acc<T>(sum);
    }
}

template <typename T>
cudaError_t launch(const T *x, const T *w, const T *b, T *y, conv_args a, int64_t n,
                   const ai3_cuda_conv2d_shape *s, ai3_dtype dtype, cudaStream_t stream) {
    if (a.cin_g == 1 && a.cout_g <= 8) {
        int64_t count = n * a.c_out * a.oh * a.ow;
        depthwise_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(x, w, b, y, a, count);
        return cudaGetLastError();
    }
    a.ph = (TH - 1) * a.sh + (a.kh - 1) * a.dh + 1;
    a.pw = (TW - 1) * a.sw + (a.kw - 1) * a.dw + 1;
    size_t bytes = 0;
    for (a.ck = 8; a.ck >= 1; a.ck /= 2) {
        bytes = sizeof(acc_t<T>) * (size_t)a.ck * ((size_t)a.kh * a.kw * BM + (size_t)a.ph * a.pw);
        if (bytes <= SMEM_MAX) break;
    }
    if (a.ck == 0) return ai3_cuda_conv2d_smm(dtype, x, w, b, y, s, stream);
    a.tiles_y = (a.oh + TH - 1) / TH;
    a.tiles_x = (a.ow + TW - 1) / TW;
    dim3 grid((unsigned)(n * a.groups * a.tiles_y * a.tiles_x), (unsigned)((a.cout_g + BM - 1) / BM));
    direct_kernel<T><<<grid, NT, bytes, stream>>>(x, w, b, y, a);
    return cudaGetLastError();
}

} // namespace

extern "C" cudaError_t ai3_cuda_conv2d_direct(ai3_dtype dtype, const void *input,
                                              const void *weight, const void *bias,
                                              void *output, const ai3_cuda_conv2d_shape *s,
                                              cudaStream_t stream) {
    if (s->n * s->c_out * s->oh * s->ow == 0) return cudaSuccess;
    conv_args a = {(int)s->c_in, (int)s->h, (int)s->w, (int)s->c_out, (int)s->kh, (int)s->kw,
                   (int)s->oh, (int)s->ow, (int)s->stride_h, (int)s->stride_w, (int)s->pad_top,
                   (int)s->pad_left, (int)s->dilation_h, (int)s->dilation_w,
                   (int)(s->c_in / s->groups), (int)(s->c_out / s->groups), (int)s->groups,
                   0, 0, 0, 0, 0};
    AI3_CUDA_DISPATCH(dtype, T,
        return launch((const T *)input, (const T *)weight, (const T *)bias, (T *)output, a,
                      s->n, s, dtype, stream));
    return cudaSuccess;
}
