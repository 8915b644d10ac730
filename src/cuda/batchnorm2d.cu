/*
 * ai3_cuda_batchnorm2d: inference batch norm, y = (x - mean) / sqrt(var +
 * eps) * weight + bias per channel of (n, c, hw). Parameters may have
 * another dtype than the data (float32 with half data); both are computed
 * in float (double for float64 data). Blocks stride over (n, c) planes in
 * grid y, threads over the plane's elements in grid x; output may be input.
 */
#include "half.cuh"

template <typename T, typename P>
__global__ void __launch_bounds__(256)
batchnorm2d_kernel(const T *x, const P *__restrict__ mean, const P *__restrict__ var,
                   const P *__restrict__ weight, const P *__restrict__ bias, double eps, T *y,
                   int64_t c, int64_t hw, int64_t planes) {
    typedef acc_t<T> A;
    for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        int64_t ch = plane % c;
        A scale = (A)1 / sqrt((A)to_acc(__ldg(var + ch)) + (A)eps);
        if (weight) scale *= (A)to_acc(__ldg(weight + ch));
        A m = to_acc(__ldg(mean + ch)), b = bias ? (A)to_acc(__ldg(bias + ch)) : (A)0;
        const T *xp = x + plane * hw;
        T *yp = y + plane * hw;
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < hw;
             i += (int64_t)gridDim.x * blockDim.x)
            yp[i] = from_acc<T>((to_acc(xp[i]) - m) * scale + b);
    }
}

extern "C" cudaError_t ai3_cuda_batchnorm2d(ai3_dtype dtype, ai3_dtype param_dtype,
                                            const void *input, const void *mean,
                                            const void *var, const void *weight,
                                            const void *bias, double eps, void *output,
                                            int64_t n, int64_t c, int64_t hw,
                                            cudaStream_t stream) {
    if (n * c * hw == 0) return cudaSuccess;
    unsigned bx = ai3_cuda_blocks(hw, 256);
    if (bx > 64) bx = 64;
    int64_t planes = n * c;
    dim3 grid(bx, (unsigned)(planes < 65535 ? planes : 65535));
    AI3_CUDA_DISPATCH(param_dtype, P,
        AI3_CUDA_DISPATCH(dtype, T,
            batchnorm2d_kernel<T, P><<<grid, 256, 0, stream>>>(
                (const T *)input, (const P *)mean, (const P *)var, (const P *)weight,
                (const P *)bias, eps, (T *)output, c, hw, planes)));
    return cudaGetLastError();
}
