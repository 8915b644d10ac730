/*
 * Shared device helpers of ai3's CUDA kernels: the compute type of each
 * storage type (float for float32/float16/bfloat16, double for float64),
 * conversions between them, and AI3_CUDA_DISPATCH, which runs a statement
 * with `T` bound to the storage type of an ai3_dtype (or returns
 * cudaErrorInvalidValue for an unknown one).
 */
#ifndef AI3_CUDA_HALF_CUH
#define AI3_CUDA_HALF_CUH

#include "kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

template <typename T> struct ai3_acc { typedef float type; };
template <> struct ai3_acc<double> { typedef double type; };
template <typename T> using acc_t = typename ai3_acc<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

/* Read-only (non-coherent cache) load converted to the compute type. */
template <typename T> __device__ __forceinline__ acc_t<T> load(const T *p) {
    return to_acc(__ldg(p));
}

/* V elements of T, loaded and stored as one aligned access. */
template <typename T, int V> struct alignas(sizeof(T) * V) pack { T v[V]; };

/* Number of blocks for a grid-stride loop over `count` items. */
static inline unsigned ai3_cuda_blocks(int64_t count, int threads) {
    int64_t b = (count + threads - 1) / threads;
    return (unsigned)(b < 65536 ? b : 65536);
}

#define AI3_CUDA_DISPATCH(dtype, T, ...)                                                    \
    switch (dtype) {                                                                        \
    case AI3_FLOAT32: { typedef float T; __VA_ARGS__; } break;                              \
    case AI3_FLOAT64: { typedef double T; __VA_ARGS__; } break;                             \
    case AI3_FLOAT16: { typedef __half T; __VA_ARGS__; } break;                             \
    case AI3_BFLOAT16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;                     \
    default: return cudaErrorInvalidValue;                                                  \
    }

/* Four consecutive accumulator-type values from 16-byte aligned shared memory. */
__device__ __forceinline__ void ld4(const float *p, float *o) {
    float4 v = *reinterpret_cast<const float4 *>(p);
    o[0] = v.x; o[1] = v.y; o[2] = v.z; o[3] = v.w;
}
__device__ __forceinline__ void ld4(const double *p, double *o) {
    double2 a = reinterpret_cast<const double2 *>(p)[0], b = reinterpret_cast<const double2 *>(p)[1];
    o[0] = a.x; o[1] = a.y; o[2] = b.x; o[3] = b.y;
}

#endif
