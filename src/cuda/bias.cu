/*
 * ai3_cuda_add_bias: data (outer, c, inner) += bias[channel], in place.
 * A grid-stride loop, one element per thread per step; the channel of flat
 * index i is (i / inner) % c.
 */
#include "half.cuh"

template <typename T>
__global__ void __launch_bounds__(256)
add_bias_kernel(T *__restrict__ data, const T *__restrict__ bias, int64_t c, int64_t inner,
                int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ch = (i / inner) % c;
        data[i] = from_acc<T>(to_acc(data[i]) + load(bias + ch));
    }
}

extern "C" cudaError_t ai3_cuda_add_bias(ai3_dtype dtype, void *data, const void *bias,
                                         int64_t outer, int64_t c, int64_t inner,
                                         cudaStream_t stream) {
    int64_t count = outer * c * inner;
    if (count == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        add_bias_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
            (T *)data, (const T *)bias, c, inner, count));
    return cudaGetLastError();
}
