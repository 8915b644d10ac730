/*
 * ai3_cuda_maxpool2d: one output element per thread per step of a
 * grid-stride loop; the window (with dilation) is read from global memory.
 * Padding acts as -inf and a NaN in the window wins, as in torch (and as
 * src/algorithms/maxpool2d_direct.c).
 */
#include "half.cuh"

#include <math.h>

template <typename T>
__global__ void __launch_bounds__(256)
maxpool2d_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t h, int64_t w, int64_t oh,
                 int64_t ow, ai3_pool2d_params p, int64_t count) {
    typedef acc_t<T> A;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % ow, t = i / ow;
        int64_t oy = t % oh, plane = t / oh;
        const T *xp = x + plane * h * w;
        A m = -INFINITY;
        for (int64_t ki = 0; ki < p.kernel_h; ki++) {
            int64_t ih = oy * p.stride_h - p.pad_h + ki * p.dilation_h;
            if (ih < 0 || ih >= h) continue;
            for (int64_t kj = 0; kj < p.kernel_w; kj++) {
                int64_t iw = ox * p.stride_w - p.pad_w + kj * p.dilation_w;
                if (iw < 0 || iw >= w) continue;
                A v = load(xp + ih * w + iw);
                m = (v > m || v != v) ? v : m;
            }
        }
        y[i] = from_acc<T>(m);
    }
}

extern "C" cudaError_t ai3_cuda_maxpool2d(ai3_dtype dtype, const void *input, void *output,
                                          int64_t n, int64_t c, int64_t h, int64_t w,
                                          int64_t oh, int64_t ow, const ai3_pool2d_params *p,
                                          cudaStream_t stream) {
    int64_t count = n * c * oh * ow;
    if (count == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        maxpool2d_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
            (const T *)input, (T *)output, h, w, oh, ow, *p, count));
    return cudaGetLastError();
}
