/*
 * ai3_cuda_layernorm: each row of (rows, cols) normalised by its mean and
 * biased variance, then scaled by weight and shifted by bias per column.
 * One warp per row (one 256-thread block for rows of 2048 or more): a
 * pass for the mean, a second for the sum of squared deviations (two-pass,
 * so no cancellation), both in float (double for float64) and combined by
 * shuffles, then a pass writing the output. Output may be input: the row
 * is read completely before it is written, each element by one thread.
 */
#include "half.cuh"

/* Sum of v over a group of G threads (a warp, or the whole block when G > 32). */
template <int G, typename A> __device__ __forceinline__ A group_sum(A v, A *smem) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (G > 32) {
        __syncthreads(); /* the previous call's readers are done */
        if (threadIdx.x % 32 == 0) smem[threadIdx.x / 32] = v;
        __syncthreads();
        v = smem[0];
        for (int w = 1; w < G / 32; w++) v += smem[w];
    }
    return v;
}

template <typename T, int G>
__global__ void __launch_bounds__(256)
layernorm_kernel(const T *x, const T *__restrict__ weight, const T *__restrict__ bias,
                 double eps, T *y, int64_t rows, int64_t cols) {
    typedef acc_t<T> A;
    __shared__ A smem[G > 32 ? G / 32 : 1];
    const int groups = 256 / G, lane = threadIdx.x % G;
    for (int64_t r = blockIdx.x * (int64_t)groups + threadIdx.x / G; r < rows;
         r += (int64_t)gridDim.x * groups) {
        const T *xr = x + r * cols;
        T *yr = y + r * cols;
        A sum = 0;
        for (int64_t k = lane; k < cols; k += G) sum += to_acc(xr[k]);
        const A mean = group_sum<G>(sum, smem) / (A)cols;
        A sq = 0;
        for (int64_t k = lane; k < cols; k += G) {
            A d = to_acc(xr[k]) - mean;
            sq += d * d;
        }
        const A rstd = (A)1 / sqrt(group_sum<G>(sq, smem) / (A)cols + (A)eps);
        for (int64_t k = lane; k < cols; k += G) {
            A v = (to_acc(xr[k]) - mean) * rstd;
            if (weight) v *= load(weight + k);
            if (bias) v += load(bias + k);
            yr[k] = from_acc<T>(v);
        }
    }
}

extern "C" cudaError_t ai3_cuda_layernorm(ai3_dtype dtype, const void *input, const void *weight,
                                          const void *bias, double eps, void *output,
                                          int64_t rows, int64_t cols, cudaStream_t stream) {
    if (rows * cols == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        const T *x = (const T *)input;
        const T *w = (const T *)weight, *b = (const T *)bias;
        if (cols >= 2048)
            layernorm_kernel<T, 256><<<ai3_cuda_blocks(rows, 1), 256, 0, stream>>>(
                x, w, b, eps, (T *)output, rows, cols);
        else
            layernorm_kernel<T, 32><<<ai3_cuda_blocks(rows, 8), 256, 0, stream>>>(
                x, w, b, eps, (T *)output, rows, cols));
    return cudaGetLastError();
}
