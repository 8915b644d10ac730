/*
 * ai3_cuda_adaptiveavgpool2d: one output element per thread per step of a
 * grid-stride loop, averaging PyTorch's bin rows [floor(i·h/oh),
 * ceil((i+1)·h/oh)) × the like columns.
 */
#include "half.cuh"

template <typename T>
__global__ void __launch_bounds__(256)
adaptiveavgpool2d_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t h, int64_t w,
                         int64_t oh, int64_t ow, int64_t count) {
    typedef acc_t<T> A;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % ow, t = i / ow;
        int64_t oy = t % oh, plane = t / oh;
        int64_t r0 = oy * h / oh, r1 = ((oy + 1) * h + oh - 1) / oh;
        int64_t s0 = ox * w / ow, s1 = ((ox + 1) * w + ow - 1) / ow;
        const T *xp = x + plane * h * w;
        A sum = 0;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t s = s0; s < s1; s++) sum += load(xp + r * w + s);
        y[i] = from_acc<T>(sum / (A)((r1 - r0) * (s1 - s0)));
    }
}

extern "C" cudaError_t ai3_cuda_adaptiveavgpool2d(ai3_dtype dtype, const void *input,
                                                  void *output, int64_t n, int64_t c, int64_t h,
                                                  int64_t w, int64_t oh, int64_t ow,
                                                  cudaStream_t stream) {
    int64_t count = n * c * oh * ow;
    if (count == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        adaptiveavgpool2d_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
            (const T *)input, (T *)output, h, w, oh, ow, count));
    return cudaGetLastError();
}
