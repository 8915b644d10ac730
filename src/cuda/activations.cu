/*
 * ai3_cuda_activation: relu, hardtanh, sigmoid, hardsigmoid, hardswish,
 * silu and gelu (erf or tanh form), PyTorch's formulas, computed in float
 * (double for float64). A grid-stride loop over 16-byte packs of elements
 * when input and output are 16-byte aligned (a scalar loop otherwise and
 * for the tail). NaN propagates: clamps are written so that a NaN compares
 * false and passes through. Output may be input.
 */
#include "half.cuh"

#include <math.h>

struct act_args {
    int op;
    double lo, hi; /* hardtanh */
    int tanh_approx; /* gelu */
};

template <typename A> __device__ __forceinline__ A clamp_nan(A v, A lo, A hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

template <typename A> __device__ __forceinline__ A activate(A x, const act_args &a) {
    switch (a.op) {
    case AI3_OP_RELU: return x <= (A)0 ? (A)0 : x;
    case AI3_OP_HARDTANH: return clamp_nan(x, (A)a.lo, (A)a.hi);
    case AI3_OP_SIGMOID: return (A)1 / ((A)1 + exp(-x));
    case AI3_OP_HARDSIGMOID: return clamp_nan(x + (A)3, (A)0, (A)6) / (A)6;
    case AI3_OP_HARDSWISH: return x * clamp_nan(x + (A)3, (A)0, (A)6) / (A)6;
    case AI3_OP_SILU: return x / ((A)1 + exp(-x));
    default: /* AI3_OP_GELU */
        if (a.tanh_approx) {
            const A k = (A)0.7978845608028654; /* sqrt(2 / pi) */
            return (A)0.5 * x * ((A)1 + tanh(k * (x + (A)0.044715 * x * x * x)));
        }
        return (A)0.5 * x * ((A)1 + erf(x * (A)0.7071067811865476));
    }
}

template <typename T, int V> struct alignas(sizeof(T) * V) pack { T v[V]; };

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
    act_args a = {(int)op, 0, 0, 0};
    switch (op) {
    case AI3_OP_HARDTANH:
        if (!params) return cudaErrorInvalidValue;
        a.lo = params->hardtanh.min_val;
        a.hi = params->hardtanh.max_val;
        break;
    case AI3_OP_GELU:
        a.tanh_approx = params ? params->gelu.tanh_approximation : 0;
        break;
    case AI3_OP_RELU: case AI3_OP_SIGMOID: case AI3_OP_HARDSIGMOID: case AI3_OP_HARDSWISH:
    case AI3_OP_SILU:
        break;
    default: return cudaErrorInvalidValue;
    }
    if (count == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T, return launch((const T *)input, (T *)output, count, a, stream));
    return cudaSuccess;
}
