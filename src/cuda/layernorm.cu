/*
 * ai3_cuda_layernorm: each row of (rows, cols) normalised by its mean and
 * biased variance, then scaled by weight and shifted by bias per column.
 * One warp per row: a pass for the mean, a second for the sum of squared
 * deviations (two-pass, so no cancellation), both accumulated in float
 * (double for float64) and combined by shuffles, then a pass writing the
 * output. Output may be input: a row is read completely before it is
 * written, each element by the thread that read it.
 */
#include "half.cuh"
#include "reduce.cuh"

template <typename T>
__global__ void __launch_bounds__(256)
layernorm_kernel(const T *x, const T *weight, const T *bias, acc_t<T> eps, T *y,
                 int64_t rows, int64_t cols) {
    typedef acc_t<T> A;
    const int lane = threadIdx.x % 32;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
         r += warps) {
        const T *xr = x + r * cols;
        T *yr = y + r * cols;
        A sum = 0;
        for (int64_t k = lane; k < cols; k += 32) sum += to_acc(xr[k]);
        const A mean = warp_sum(sum) / (A)cols;
        A sq = 0;
        for (int64_t k = lane; k < cols; k += 32) {
            A d = to_acc(xr[k]) - mean;
            sq += d * d;
        }
        const A rstd = (A)1 / sqrt(warp_sum(sq) / (A)cols + eps);
        for (int64_t k = lane; k < cols; k += 32) {
            A v = (to_acc(xr[k]) - mean) * rstd;
            if (weight) v *= to_acc(weight[k]);
            if (bias) v += to_acc(bias[k]);
            yr[k] = from_acc<T>(v);
        }
    }
}

extern "C" cudaError_t ai3_cuda_layernorm(ai3_dtype dtype, const void *input, const void *weight,
                                          const void *bias, double eps, void *output,
                                          int64_t rows, int64_t cols, cudaStream_t stream) {
    if (rows * cols == 0) return cudaSuccess;
    unsigned blocks = ai3_cuda_blocks(rows, 8); /* 8 warps (rows) per block */
    AI3_CUDA_DISPATCH(dtype, T,
        layernorm_kernel<T><<<blocks, 256, 0, stream>>>((const T *)input, (const T *)weight,
                                                        (const T *)bias, (acc_t<T>)eps,
                                                        (T *)output, rows, cols));
    return cudaGetLastError();
}

/* ai3_cuda_layernorm_channels: layernorm over the channels of x (n, c, hw),
 * written as (n, hw, c): a permute(0, 2, 3, 1) followed by a layernorm over
 * the last dimension, in one kernel. A block takes 32 positions; its 32
 * rows of 32 threads (many rows: a small batch has few blocks, so each must
 * finish fast) read along the positions (coalesced) for the mean, then for
 * the squared deviations. Then, with many blocks (STAGED), they stage 32
 * channels at a time in shared memory and write them along the channels
 * (coalesced both ways); with few, each thread writes its own elements
 * along the channels, read back from x where the statistics left them in
 * cache, all independent (the staged loop's synchronised steps, one per 32
 * channels, would be the critical path of a small batch). */
#define LN_ROWS 32

template <typename T, bool STAGED>
__global__ void __launch_bounds__(32 * LN_ROWS)
layernorm_channels_kernel(const T *__restrict__ x, const T *__restrict__ weight,
                          const T *__restrict__ bias, acc_t<T> eps, T *__restrict__ y,
                          int64_t c, int64_t hw, int64_t tiles) {
    typedef acc_t<T> A;
    __shared__ A part[LN_ROWS][33], stat[2][32];
    __shared__ T tile[32][33];
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int64_t b = t / ((hw + 31) / 32), p0 = t % ((hw + 31) / 32) * 32, p = p0 + tx;
        const T *xb = x + b * c * hw;
        for (int pass = 0; pass < 2; pass++) { /* the mean, then the variance */
            A sum = 0, mean = pass ? stat[0][tx] : (A)0;
            if (p < hw)
                for (int64_t k = ty; k < c; k += LN_ROWS) {
                    A v = load(xb + k * hw + p) - mean;
                    sum += pass ? v * v : v;
                }
            part[ty][tx] = sum;
            __syncthreads();
            if (ty == 0) {
                for (int r = 1; r < LN_ROWS; r++) sum += part[r][tx];
                stat[pass][tx] = pass ? (A)1 / sqrt(sum / (A)c + eps) : sum / (A)c;
            }
            __syncthreads();
        }
        if (!STAGED) {
            const int np = (int)(hw - p0 < 32 ? hw - p0 : 32), cols = (int)c;
            for (int e = threadIdx.x; e < np * cols; e += blockDim.x) {
                const int j = e / cols, k = e - j * cols;
                A v = (load(xb + (int64_t)k * hw + p0 + j) - stat[0][j]) * stat[1][j];
                if (weight) v *= load(weight + k);
                if (bias) v += load(bias + k);
                y[((b * hw) + p0 + j) * c + k] = from_acc<T>(v);
            }
            __syncthreads(); /* before the next tile's statistics */
        }
        for (int64_t c0 = 0; STAGED && c0 < c; c0 += 32) {
            for (int j = ty; j < 32; j += LN_ROWS)
                if (p < hw && c0 + j < c) tile[j][tx] = xb[(c0 + j) * hw + p];
            __syncthreads();
            const int64_t k = c0 + tx;
            if (k < c)
                for (int j = ty; j < 32 && p0 + j < hw; j += LN_ROWS) {
                    A v = (to_acc(tile[tx][j]) - stat[0][j]) * stat[1][j];
                    if (weight) v *= load(weight + k);
                    if (bias) v += load(bias + k);
                    y[((b * hw) + p0 + j) * c + k] = from_acc<T>(v);
                }
            __syncthreads();
        }
    }
}

extern "C" cudaError_t ai3_cuda_layernorm_channels(ai3_dtype dtype, const void *input,
                                                   const void *weight, const void *bias,
                                                   double eps, void *output, int64_t n,
                                                   int64_t c, int64_t hw, cudaStream_t stream) {
    if (n * c * hw == 0) return cudaSuccess;
    int64_t tiles = n * ((hw + 31) / 32);
    if (c > (1 << 25)) return cudaErrorInvalidValue; /* (32 positions x c in an int) */
    AI3_CUDA_DISPATCH(dtype, T,
        if (tiles >= 256)
            layernorm_channels_kernel<T, true><<<ai3_cuda_blocks(tiles, 1), 32 * LN_ROWS, 0,
                                                 stream>>>(
                (const T *)input, (const T *)weight, (const T *)bias, (acc_t<T>)eps,
                (T *)output, c, hw, tiles);
        else
            layernorm_channels_kernel<T, false><<<ai3_cuda_blocks(tiles, 1), 32 * LN_ROWS, 0,
                                                  stream>>>(
                (const T *)input, (const T *)weight, (const T *)bias, (acc_t<T>)eps,
                (T *)output, c, hw, tiles));
    return cudaGetLastError();
}
