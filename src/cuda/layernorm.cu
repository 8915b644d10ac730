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

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

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
