/*
 * ai3_cuda_softmax over the middle dimension of (outer, n, inner), in
 * float (double for float64): the maximum is subtracted before exp, the
 * exps are summed, and exp(x - max) / sum is written (recomputed, so a
 * half output is rounded once). inner == 1: one warp per contiguous row
 * (one 256-thread block for rows of 2048 or more), combining by shuffles;
 * otherwise one thread per (outer, inner) column, neighbouring threads on
 * neighbouring columns. Output may be input: a row or column is read
 * completely before it is written, each element by one thread.
 */
#include "half.cuh"

struct op_sum { template <typename A> __device__ A operator()(A a, A b) const { return a + b; } };
struct op_max {
    template <typename A> __device__ A operator()(A a, A b) const { return b > a ? b : a; }
};

/* f over a group of G threads (a warp, or the whole block when G > 32). */
template <int G, typename A, typename F> __device__ __forceinline__ A group_reduce(A v, F f, A *smem) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (G > 32) {
        __syncthreads(); /* the previous call's readers are done */
        if (threadIdx.x % 32 == 0) smem[threadIdx.x / 32] = v;
        __syncthreads();
        v = smem[0];
        for (int w = 1; w < G / 32; w++) v = f(v, smem[w]);
    }
    return v;
}

template <typename T, int G>
__global__ void __launch_bounds__(256)
softmax_rows_kernel(const T *x, T *y, int64_t rows, int64_t n) {
    typedef acc_t<T> A;
    __shared__ A smem[G > 32 ? G / 32 : 1];
    const int groups = 256 / G, lane = threadIdx.x % G;
    for (int64_t r = blockIdx.x * (int64_t)groups + threadIdx.x / G; r < rows;
         r += (int64_t)gridDim.x * groups) {
        const T *xr = x + r * n;
        T *yr = y + r * n;
        A m = -INFINITY;
        for (int64_t k = lane; k < n; k += G) m = op_max()(m, to_acc(xr[k]));
        m = group_reduce<G>(m, op_max(), smem);
        A sum = 0;
        for (int64_t k = lane; k < n; k += G) sum += exp(to_acc(xr[k]) - m);
        const A scale = (A)1 / group_reduce<G>(sum, op_sum(), smem);
        for (int64_t k = lane; k < n; k += G) yr[k] = from_acc<T>(exp(to_acc(xr[k]) - m) * scale);
    }
}

template <typename T>
__global__ void __launch_bounds__(256)
softmax_cols_kernel(const T *x, T *y, int64_t outer, int64_t n, int64_t inner) {
    typedef acc_t<T> A;
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < outer * inner;
         c += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = c / inner * n * inner + c % inner;
        const T *xc = x + base;
        T *yc = y + base;
        A m = -INFINITY, sum = 0;
        for (int64_t k = 0; k < n; k++) m = op_max()(m, to_acc(xc[k * inner]));
        for (int64_t k = 0; k < n; k++) sum += exp(to_acc(xc[k * inner]) - m);
        const A scale = (A)1 / sum;
        for (int64_t k = 0; k < n; k++)
            yc[k * inner] = from_acc<T>(exp(to_acc(xc[k * inner]) - m) * scale);
    }
}

extern "C" cudaError_t ai3_cuda_softmax(ai3_dtype dtype, const void *input, void *output,
                                        int64_t outer, int64_t n, int64_t inner,
                                        cudaStream_t stream) {
    if (outer * n * inner == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        const T *x = (const T *)input;
        T *y = (T *)output;
        if (inner > 1)
            softmax_cols_kernel<T><<<ai3_cuda_blocks(outer * inner, 256), 256, 0, stream>>>(
                x, y, outer, n, inner);
        else if (n >= 2048)
            softmax_rows_kernel<T, 256><<<ai3_cuda_blocks(outer, 1), 256, 0, stream>>>(x, y, outer, n);
        else
            softmax_rows_kernel<T, 32><<<ai3_cuda_blocks(outer, 8), 256, 0, stream>>>(x, y, outer, n));
    return cudaGetLastError();
}
