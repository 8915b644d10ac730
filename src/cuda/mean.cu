/*
 * ai3_cuda_mean: mean of a contiguous tensor over a set of dimensions,
 * summed in float (double for float64). Size-1 dimensions are dropped and
 * neighbours of the same kind (kept or reduced) merged, so the input
 * alternates kept and reduced dimensions. Two kernels by the last one:
 *  - reduced: one warp (or one 256-thread block, for long reductions) per
 *    output element; its lanes sum contiguous runs of the last dimension
 *    (one run for the common case of reducing the trailing dimensions) and
 *    combine by shuffles;
 *  - kept: one thread per output element, neighbouring threads reading
 *    neighbouring columns, each looping over the reduced dimensions.
 */
#include "half.cuh"
#include "reduce.cuh"

#define MAX_DIMS 8

struct mean_geom {
    int nk, nr; /* kept and reduced dimensions */
    int64_t ksize[MAX_DIMS], kstride[MAX_DIMS], rsize[MAX_DIMS], rstride[MAX_DIMS];
    int64_t outputs, count;  /* output elements, elements per output */
    int64_t runs, len, step; /* count = runs × len, the last reduced dimension: len, step */
};

/* Input offset of index i over the n dimensions (size, stride), last fastest. */
__device__ __forceinline__ int64_t offset_of(int64_t i, int n, const int64_t *size,
                                             const int64_t *stride) {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
        int64_t q = i / size[d];
        off += (i - q * size[d]) * stride[d];
        i = q;
    }
    return off;
}

/* Last dimension reduced (step 1): a group of G threads per output. */
template <typename T, int G>
__global__ void __launch_bounds__(256)
mean_rows_kernel(const T *__restrict__ x, T *__restrict__ y, mean_geom g) {
    typedef acc_t<T> A;
    __shared__ A smem[G > 32 ? G / 32 : 1];
    const int groups = 256 / G, lane = threadIdx.x % G;
    for (int64_t o = blockIdx.x * (int64_t)groups + threadIdx.x / G; o < g.outputs;
         o += (int64_t)gridDim.x * groups) {
        const T *base = x + offset_of(o, g.nk, g.ksize, g.kstride);
        A sum = 0;
        for (int64_t r = 0; r < g.runs; r++) {
            const T *run = base + offset_of(r, g.nr - 1, g.rsize, g.rstride);
            for (int64_t k = lane; k < g.len; k += G) sum += load(run + k);
        }
        sum = group_sum<G>(sum, smem);
        if (lane == 0) y[o] = from_acc<T>(sum / (A)g.count);
    }
}

/* Last dimension kept: a thread per output. */
template <typename T>
__global__ void __launch_bounds__(256)
mean_cols_kernel(const T *__restrict__ x, T *__restrict__ y, mean_geom g) {
    typedef acc_t<T> A;
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < g.outputs;
         o += (int64_t)gridDim.x * blockDim.x) {
        const T *base = x + offset_of(o, g.nk, g.ksize, g.kstride);
        A sum = 0;
        for (int64_t r = 0; r < g.runs; r++) {
            const T *run = base + offset_of(r, g.nr > 0 ? g.nr - 1 : 0, g.rsize, g.rstride);
            for (int64_t k = 0; k < g.len; k++) sum += load(run + k * g.step);
        }
        y[o] = from_acc<T>(sum / (A)g.count);
    }
}

extern "C" cudaError_t ai3_cuda_mean(ai3_dtype dtype, const void *input, void *output,
                                     int ndim, const int64_t *shape, const int *reduce,
                                     cudaStream_t stream) {
    if (ndim < 1 || ndim > MAX_DIMS) return cudaErrorInvalidValue;
    int64_t size[MAX_DIMS], stride[MAX_DIMS], step = 1;
    int red[MAX_DIMS], n = 0;
    for (int d = ndim - 1; d >= 0; step *= shape[d], d--) { /* innermost first */
        if (shape[d] == 1) continue;
        if (n > 0 && red[n - 1] == (reduce[d] != 0)) {
            size[n - 1] *= shape[d];
            continue;
        }
        size[n] = shape[d], stride[n] = step, red[n] = reduce[d] != 0, n++;
    }
    mean_geom g = {};
    g.outputs = g.count = 1;
    for (int i = n - 1; i >= 0; i--) { /* outermost first */
        if (red[i]) {
            g.rsize[g.nr] = size[i], g.rstride[g.nr++] = stride[i], g.count *= size[i];
        } else {
            g.ksize[g.nk] = size[i], g.kstride[g.nk++] = stride[i], g.outputs *= size[i];
        }
    }
    if (g.outputs == 0) return cudaSuccess;
    g.len = g.nr ? g.rsize[g.nr - 1] : 1;
    g.step = g.nr ? g.rstride[g.nr - 1] : 0;
    g.runs = 1;
    for (int i = 0; i + 1 < g.nr; i++) g.runs *= g.rsize[i];
    bool rows = n > 0 && red[0]; /* the last dimension is reduced */
    AI3_CUDA_DISPATCH(dtype, T,
        const T *x = (const T *)input;
        T *y = (T *)output;
        if (!rows)
            mean_cols_kernel<T><<<ai3_cuda_blocks(g.outputs, 256), 256, 0, stream>>>(x, y, g);
        else if (g.count >= 2048)
            mean_rows_kernel<T, 256><<<ai3_cuda_blocks(g.outputs, 1), 256, 0, stream>>>(x, y, g);
        else
            mean_rows_kernel<T, 32><<<ai3_cuda_blocks(g.outputs, 8), 256, 0, stream>>>(x, y, g));
    return cudaGetLastError();
}
