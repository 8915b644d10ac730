/*
 * ai3_cuda_permute_scale_add: out (n, c, hw) = (y.permute(0, 2, 1) + bias[c])
 * · scale[c] + residual, y being (n, hw, c): the end of a ConvNeXt block (the
 * bias of its last linear, a permute back to channels first, the layer
 * scale, the residual add) in one pass.
 * 32x32 tiles through shared memory, read along y's channels and written
 * along out's positions, both coalesced; blocks of 32 x 8 threads.
 */
#include "half.cuh"

template <typename T>
__global__ void __launch_bounds__(256)
permute_scale_add_kernel(const T *__restrict__ y, const T *__restrict__ bias,
                         const T *__restrict__ scale, const T *__restrict__ residual,
                         T *__restrict__ out, int64_t c,
                         int64_t hw, int64_t tiles_c, int64_t tiles) {
    __shared__ T tile[32][33];
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
    const int64_t tiles_p = (hw + 31) / 32;
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int64_t b = t / (tiles_c * tiles_p), c0 = t / tiles_p % tiles_c * 32,
                      p0 = t % tiles_p * 32;
        const T *yb = y + b * hw * c;
        for (int j = ty; j < 32; j += 8) /* y rows: positions p0 + j */
            if (p0 + j < hw && c0 + tx < c) tile[j][tx] = yb[(p0 + j) * c + c0 + tx];
        __syncthreads();
        const int64_t p = p0 + tx;
        if (p < hw)
            for (int j = ty; j < 32 && c0 + j < c; j += 8) {
                const int64_t o = (b * c + c0 + j) * hw + p;
                acc_t<T> v = to_acc(tile[tx][j]);
                if (bias) v += load(bias + c0 + j);
                if (scale) v *= load(scale + c0 + j);
                if (residual) v += load(residual + o);
                out[o] = from_acc<T>(v);
            }
        __syncthreads();
    }
}

extern "C" cudaError_t ai3_cuda_permute_scale_add(ai3_dtype dtype, const void *y,
                                                  const void *bias, const void *scale,
                                                  const void *residual,
                                                  void *out, int64_t n, int64_t c, int64_t hw,
                                                  cudaStream_t stream) {
    if (n * c * hw == 0) return cudaSuccess;
    int64_t tiles_c = (c + 31) / 32, tiles = n * tiles_c * ((hw + 31) / 32);
    AI3_CUDA_DISPATCH(dtype, T,
        permute_scale_add_kernel<T><<<ai3_cuda_blocks(tiles, 1), 256, 0, stream>>>(
            (const T *)y, (const T *)bias, (const T *)scale, (const T *)residual, (T *)out, c, hw, tiles_c,
            tiles));
    return cudaGetLastError();
}
