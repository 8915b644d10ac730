/*
 * ai3_cuda_bias_activation: data (outer, c, inner) = act(data + bias[channel]),
 * in place: the epilogue of a convolution (inner = oh·ow) or a linear layer
 * (outer = rows, inner = 1) computed by a library call, in one pass over
 * the output. A flat grid-stride loop over packs of 16 bytes where every
 * pack lies in one bias run (inner, or for inner = 1 the channel count, a
 * multiple of the pack) and the data is 16-byte aligned, else over single
 * elements; indices in 32 bits where they fit (the divisions that find a
 * channel cost a few instructions then, not dozens).
 */
#include "activate.cuh"
#include "half.cuh"

template <typename T, int V, typename I>
__global__ void __launch_bounds__(256)
bias_activation_kernel(T *__restrict__ data, const T *__restrict__ bias, I c, I inner, I packs,
                       act_args a) {
    typedef acc_t<T> A;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < packs; i += (I)gridDim.x * blockDim.x) {
        pack<T, V> p = reinterpret_cast<pack<T, V> *>(data)[i];
        const I e = i * V;
        /* inner > 1: the pack's channel; inner == 1: its first column */
        const I ch = inner > 1 ? e / inner % c : e % c;
#pragma unroll
        for (int j = 0; j < V; j++) {
            A v = to_acc(p.v[j]);
            if (bias) v += load(bias + (inner > 1 ? ch : ch + j));
            p.v[j] = from_acc<T>(activate(v, a));
        }
        reinterpret_cast<pack<T, V> *>(data)[i] = p;
    }
}

template <typename T, typename I>
static void launch(T *data, const T *bias, int64_t c, int64_t inner, int64_t count,
                   const act_args &a, cudaStream_t stream) {
    constexpr int V = 16 / sizeof(T);
    bool packed = ((uintptr_t)data & 15) == 0 && (inner > 1 ? inner : c) % V == 0;
    if (packed)
        bias_activation_kernel<T, V, I><<<ai3_cuda_blocks(count / V, 256), 256, 0, stream>>>(
            data, bias, (I)c, (I)inner, (I)(count / V), a);
    else
        bias_activation_kernel<T, 1, I><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
            data, bias, (I)c, (I)inner, (I)count, a);
}

extern "C" cudaError_t ai3_cuda_bias_activation(ai3_dtype dtype, void *data, const void *bias,
                                                int64_t outer, int64_t c, int64_t inner,
                                                const ai3_cuda_act *act, cudaStream_t stream) {
    act_args a = {-1, 0, 0, 0};
    if (act && !act_args_of(act->op, act->params, &a)) return cudaErrorInvalidValue;
    int64_t count = outer * c * inner;
    if (count == 0 || (!bias && !act)) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        if (count < ((int64_t)1 << 31))
            launch<T, uint32_t>((T *)data, (const T *)bias, c, inner, count, a, stream);
        else
            launch<T, int64_t>((T *)data, (const T *)bias, c, inner, count, a, stream));
    return cudaGetLastError();
}
