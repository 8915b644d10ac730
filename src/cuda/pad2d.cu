/*
 * ai3_cuda_pad2d: output (n, c, h + top + bottom, w + left + right) from
 * input (n, c, h, w), as torch.nn.functional.pad: zeros, reflect (mirror
 * excluding the edge), replicate (clamp to the edge) or circular (wrap).
 * One output element per thread per step of a grid-stride loop.
 */
#include "half.cuh"

/* The source index of padded index i along an axis of size n, or -1 for a
 * zero. */
__device__ __forceinline__ int64_t pad_source(int64_t i, int64_t n, int mode) {
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case AI3_PADDING_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case AI3_PADDING_REPLICATE: return i < 0 ? 0 : n - 1;
    case AI3_PADDING_CIRCULAR: return i < 0 ? i + n : i - n;
    default: return -1;
    }
}

template <typename T>
__global__ void __launch_bounds__(256)
pad2d_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t h, int64_t w, int64_t oh,
             int64_t ow, int64_t top, int64_t left, int mode, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = i % ow, t = i / ow;
        int64_t oy = t % oh, plane = t / oh;
        int64_t sy = pad_source(oy - top, h, mode), sx = pad_source(ox - left, w, mode);
        y[i] = (sy < 0 || sx < 0) ? from_acc<T>(0) : x[(plane * h + sy) * w + sx];
    }
}

extern "C" cudaError_t ai3_cuda_pad2d(ai3_dtype dtype, const void *input, void *output,
                                      int64_t n, int64_t c, int64_t h, int64_t w, int64_t top,
                                      int64_t bottom, int64_t left, int64_t right,
                                      ai3_padding_mode mode, cudaStream_t stream) {
    int64_t oh = h + top + bottom, ow = w + left + right, count = n * c * oh * ow;
    if (mode < AI3_PADDING_ZEROS || mode > AI3_PADDING_CIRCULAR) return cudaErrorInvalidValue;
    if (count == 0) return cudaSuccess;
    AI3_CUDA_DISPATCH(dtype, T,
        pad2d_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
            (const T *)input, (T *)output, h, w, oh, ow, top, left, (int)mode, count));
    return cudaGetLastError();
}
