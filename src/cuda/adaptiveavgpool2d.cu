/*
 * ai3_cuda_adaptiveavgpool2d: averages PyTorch's bins, rows
 * [floor(i·h/oh), ceil((i+1)·h/oh)) × the like columns. Small bins: one
 * output per thread. Large bins (a global average pool's whole plane, as in
 * squeeze-and-excitation blocks, where a batch of 1 has only as many
 * outputs as channels): a warp, or a 256-thread block, per output, its
 * lanes reading neighbouring elements of the bin and summing by shuffles.
 */
#include "half.cuh"
#include "reduce.cuh"

struct pool_geom {
    int64_t h, w, oh, ow, count;
};

/* Bin of output i: its plane's first element and rows [r0, r1) × columns [s0, s1). */
struct bin {
    int64_t plane, r0, r1, s0, s1;
};

__device__ __forceinline__ bin bin_of(int64_t i, const pool_geom &g) {
    int64_t ox = i % g.ow, t = i / g.ow;
    int64_t oy = t % g.oh;
    bin b;
    b.plane = t / g.oh * g.h * g.w;
    b.r0 = oy * g.h / g.oh, b.r1 = ((oy + 1) * g.h + g.oh - 1) / g.oh;
    b.s0 = ox * g.w / g.ow, b.s1 = ((ox + 1) * g.w + g.ow - 1) / g.ow;
    return b;
}

template <typename T>
__global__ void __launch_bounds__(256)
adaptiveavgpool2d_kernel(const T *__restrict__ x, T *__restrict__ y, pool_geom g) {
    typedef acc_t<T> A;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.count;
         i += (int64_t)gridDim.x * blockDim.x) {
        bin b = bin_of(i, g);
        const T *xp = x + b.plane;
        A sum = 0;
        for (int64_t r = b.r0; r < b.r1; r++)
            for (int64_t s = b.s0; s < b.s1; s++) sum += load(xp + r * g.w + s);
        y[i] = from_acc<T>(sum / (A)((b.r1 - b.r0) * (b.s1 - b.s0)));
    }
}

/* G threads per output; a bin is below 2^31 elements (checked by the caller). */
template <typename T, int G>
__global__ void __launch_bounds__(256)
adaptiveavgpool2d_group_kernel(const T *__restrict__ x, T *__restrict__ y, pool_geom g) {
    typedef acc_t<T> A;
    __shared__ A smem[G > 32 ? G / 32 : 1];
    const int groups = 256 / G, lane = threadIdx.x % G;
    for (int64_t i = blockIdx.x * (int64_t)groups + threadIdx.x / G; i < g.count;
         i += (int64_t)gridDim.x * groups) {
        bin b = bin_of(i, g);
        const int bw = (int)(b.s1 - b.s0), n = (int)(b.r1 - b.r0) * bw;
        const T *xp = x + b.plane + b.r0 * g.w + b.s0;
        A sum = 0;
        if (bw == g.w) { /* whole rows: the bin is contiguous */
            for (int k = lane; k < n; k += G) sum += load(xp + k);
        } else {
            for (int k = lane; k < n; k += G) sum += load(xp + (int64_t)(k / bw) * g.w + k % bw);
        }
        sum = group_sum<G>(sum, smem);
        if (lane == 0) y[i] = from_acc<T>(sum / (A)n);
    }
}

extern "C" cudaError_t ai3_cuda_adaptiveavgpool2d(ai3_dtype dtype, const void *input,
                                                  void *output, int64_t n, int64_t c, int64_t h,
                                                  int64_t w, int64_t oh, int64_t ow,
                                                  cudaStream_t stream) {
    pool_geom g = {h, w, oh, ow, n * c * oh * ow};
    if (g.count == 0) return cudaSuccess;
    /* the largest bin: a bin spans at most ceil(h/oh) + 1 rows */
    int64_t area = (h / oh + 2) * (w / ow + 2);
    AI3_CUDA_DISPATCH(dtype, T,
        const T *x = (const T *)input;
        T *y = (T *)output;
        if (area >= ((int64_t)1 << 31) || area < 64)
            adaptiveavgpool2d_kernel<T><<<ai3_cuda_blocks(g.count, 256), 256, 0, stream>>>(x, y, g);
        else if (area >= 2048)
            adaptiveavgpool2d_group_kernel<T, 256>
                <<<ai3_cuda_blocks(g.count, 1), 256, 0, stream>>>(x, y, g);
        else
            adaptiveavgpool2d_group_kernel<T, 32>
                <<<ai3_cuda_blocks(g.count, 8), 256, 0, stream>>>(x, y, g));
    return cudaGetLastError();
}
