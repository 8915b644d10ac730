/*
 * ai3_cuda_activation: the activations of activate.cuh computed in float
 * (double for float64). A grid-stride loop over 16-byte packs of elements
 * when input and output are 16-byte aligned (a scalar loop otherwise and
 * for the tail). Output may be input.
 */
#include "activate.cuh"
#include "half.cuh"

/* Elements [0, count) in packs of V (V == 1: scalar). */
template <typename T, int V>
__global__ void __launch_bounds__(256)
activation_kernel(const T *x, T *y, int64_t count, act_args a) {
    int64_t packs = count / V;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < packs;
         i += (int64_t)gridDim.x * blockDim.x) {
        pack<T, V> p = reinterpret_cast<const pack<T, V> *>(x)[i];
#pragma unroll
        for (int j = 0; j < V; j++) p.v[j] = from_acc<T>(activate(to_acc(p.v[j]), a));
        reinterpret_cast<pack<T, V> *>(y)[i] = p;
    }
}

template <typename T>
static cudaError_t launch(const T *x, T *y, int64_t count, const act_args &a,
                          cudaStream_t stream) {
    constexpr int V = 16 / sizeof(T);
    int64_t head = 0;
    if ((((uintptr_t)x | (uintptr_t)y) & 15) == 0 && count >= V) {
        head = count / V * V;
        activation_kernel<T, V><<<ai3_cuda_blocks(head / V, 256), 256, 0, stream>>>(x, y, head, a);
        if (head == count) return cudaGetLastError();
    }
    activation_kernel<T, 1><<<ai3_cuda_blocks(count - head, 256), 256, 0, stream>>>(
        x + head, y + head, count - head, a);
    return cudaGetLastError();
}

extern "C" cudaError_t ai3_cuda_activation(ai3_op op, const ai3_op_params *params,
                                           ai3_dtype dtype, const void *input, void *output,
                                           int64_t count, cudaStream_t stream) {
    act_args a;
    if (!act_args_of(op, params, &a)) return cudaErrorInvalidValue;
    if (count == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T, return launch((const T *)input, (T *)output, count, a, stream));
    return cudaSuccess;
}
