/*
 * ai3_cuda_avgpool2d: one output element per thread per step of a
 * grid-stride loop. As torch (and src/ref/avgpool2d.c): the window is
 * clipped first to the padded input (h + pad; its size is the divisor with
 * count_include_pad), then to the input (the elements summed, and the
 * divisor without count_include_pad); divisor_override replaces both.
 */
#include "half.cuh"

template <typename T>
__global__ void __launch_bounds__(256)
avgpool2d_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t h, int64_t w, int64_t oh,
                 int64_t ow, ai3_pool2d_params p, int64_t count) {
    typedef acc_t<T> A;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % ow, t = i / ow;
        int64_t oy = t % oh, plane = t / oh;
        int64_t r0 = oy * p.stride_h - p.pad_h, s0 = ox * p.stride_w - p.pad_w;
        int64_t r1 = min(r0 + p.kernel_h, h + p.pad_h), s1 = min(s0 + p.kernel_w, w + p.pad_w);
        int64_t padded_size = (r1 - r0) * (s1 - s0);
        r0 = max(r0, (int64_t)0);
        s0 = max(s0, (int64_t)0);
        r1 = min(r1, h);
        s1 = min(s1, w);
        const T *xp = x + plane * h * w;
        A sum = 0;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t s = s0; s < s1; s++) sum += load(xp + r * w + s);
        int64_t divisor = p.divisor_override  ? p.divisor_override
                          : p.count_include_pad ? padded_size
                                                : (r1 - r0) * (s1 - s0);
        y[i] = from_acc<T>(sum / (A)divisor);
    }
}

extern "C" cudaError_t ai3_cuda_avgpool2d(ai3_dtype dtype, const void *input, void *output,
                                          int64_t n, int64_t c, int64_t h, int64_t w,
                                          int64_t oh, int64_t ow, const ai3_pool2d_params *p,
                                          cudaStream_t stream) {
    int64_t count = n * c * oh * ow;
    if (count == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        avgpool2d_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
            (const T *)input, (T *)output, h, w, oh, ow, *p, count));
    return cudaGetLastError();
}
