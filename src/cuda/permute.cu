/*
 * ai3_cuda_permute: output = input.permute(perm), both contiguous. Size-1
 * dimensions are dropped and output neighbours that are input neighbours
 * in the same order merged; what stays one dimension is a copy
 * (cudaMemcpyAsync). When the output's last dimension is not the input's
 * (an (N, C, H, W) -> (N, H, W, C) permute: a batch of transposes) and both
 * of those dimensions have 16 or more elements, 32x32 tiles go through
 * shared memory so reads and writes are both coalesced; otherwise one
 * thread per output element gathers from the input.
 */
#include "half.cuh"

#define MAX_DIMS 8
#define TILE 32

struct perm_geom {
    int nd;
    int64_t size[MAX_DIMS];   /* output sizes */
    int64_t stride[MAX_DIMS]; /* input stride of each output dimension */
};

template <typename T>
__global__ void __launch_bounds__(256)
gather_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t count, perm_geom g) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i, off = 0;
        for (int d = g.nd - 1; d >= 0; d--) {
            int64_t q = r / g.size[d];
            off += (r - q * g.size[d]) * g.stride[d];
            r = q;
        }
        y[i] = x[off];
    }
}

/* Output dimension p has input stride 1 and the last one (size q) input
 * stride g.stride[nd-1]; the others are the batch. A tile is TILE values
 * of p by TILE of the last dimension; blocks of TILE x 8 threads. */
template <typename T>
__global__ void __launch_bounds__(TILE * 8)
transpose_kernel(const T *__restrict__ x, T *__restrict__ y, perm_geom g, int p,
                 int64_t out_stride_p, int64_t tiles_p, int64_t tiles_q, int64_t tiles) {
    __shared__ T tile[TILE][TILE + 1];
    const int last = g.nd - 1;
    const int64_t sp = g.size[p], sq = g.size[last], in_stride_q = g.stride[last];
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        int64_t tq = t % tiles_q, tp = t / tiles_q % tiles_p, b = t / tiles_q / tiles_p;
        int64_t in_off = 0, out_off = 0, out_step = sq;
        for (int d = last - 1; d >= 0; d--) { /* batch index b over the other dimensions */
            if (d != p) {
                int64_t k = b % g.size[d];
                b /= g.size[d];
                in_off += k * g.stride[d], out_off += k * out_step;
            }
            out_step *= g.size[d];
        }
        int64_t i = tp * TILE + threadIdx.x;
        for (int j = threadIdx.y; j < TILE; j += 8) { /* read along p (input stride 1) */
            int64_t jq = tq * TILE + j;
            if (i < sp && jq < sq) tile[j][threadIdx.x] = x[in_off + i + jq * in_stride_q];
        }
        __syncthreads();
        int64_t jq = tq * TILE + threadIdx.x;
        for (int j = threadIdx.y; j < TILE; j += 8) { /* write along the last dimension */
            int64_t ip = tp * TILE + j;
            if (ip < sp && jq < sq) y[out_off + ip * out_stride_p + jq] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}

extern "C" cudaError_t ai3_cuda_permute(ai3_dtype dtype, const void *input, void *output,
                                        int ndim, const int64_t *shape, const int *perm,
                                        cudaStream_t stream) {
    if (ndim < 1 || ndim > MAX_DIMS) return cudaErrorInvalidValue;
    int64_t in_stride[MAX_DIMS], step = 1, count = 1;
    for (int d = ndim - 1; d >= 0; d--) in_stride[d] = step, step *= shape[d];
    perm_geom g = {};
    for (int i = 0; i < ndim; i++) {
        int64_t n = shape[perm[i]], s = in_stride[perm[i]];
        count *= n;
        if (n == 1) continue;
        if (g.nd > 0 && g.stride[g.nd - 1] == s * n) { /* follows the previous one in the input */
            g.size[g.nd - 1] *= n, g.stride[g.nd - 1] = s;
            continue;
        }
        g.size[g.nd] = n, g.stride[g.nd++] = s;
    }
    if (count == 0) return cudaSuccess;
    if (g.nd <= 1) { /* the permute keeps the order of the elements */
        AI3_CUDA_DISPATCH(dtype, T,
            return cudaMemcpyAsync(output, input, (size_t)count * sizeof(T),
                                   cudaMemcpyDeviceToDevice, stream));
    }
    int p = 0, last = g.nd - 1;
    while (g.stride[p] != 1) p++; /* the input's innermost dimension */
    int64_t out_stride_p = 1, tiles_p = (g.size[p] + TILE - 1) / TILE;
    int64_t tiles = count / g.size[p] / g.size[last] * tiles_p * ((g.size[last] + TILE - 1) / TILE);
    for (int d = p + 1; d < g.nd; d++) out_stride_p *= g.size[d];
    bool tiled = p != last && g.size[p] >= 16 && g.size[last] >= 16;
    AI3_CUDA_DISPATCH(dtype, T,
        if (tiled)
            transpose_kernel<T><<<ai3_cuda_blocks(tiles, 1), dim3(TILE, 8), 0, stream>>>(
                (const T *)input, (T *)output, g, p, out_stride_p, tiles_p,
                (g.size[last] + TILE - 1) / TILE, tiles);
        else
            gather_kernel<T><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
                (const T *)input, (T *)output, count, g));
    return cudaGetLastError();
}
