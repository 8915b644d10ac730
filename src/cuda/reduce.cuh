/*
 * Sums across threads for ai3's reduction kernels: over a warp by
 * shuffles, or over a group of G threads (a warp, or a whole block of G
 * threads when G > 32) through shared memory.
 */
#ifndef AI3_CUDA_REDUCE_CUH
#define AI3_CUDA_REDUCE_CUH

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Every thread of the group gets the sum; smem holds G / 32 values. */
template <int G, typename A> __device__ __forceinline__ A group_sum(A v, A *smem) {
    v = warp_sum(v);
    if (G > 32) {
        __syncthreads(); /* the previous call's readers are done */
        if (threadIdx.x % 32 == 0) smem[threadIdx.x / 32] = v;
        __syncthreads();
        v = smem[0];
        for (int w = 1; w < G / 32; w++) v += smem[w];
    }
    return v;
}

#endif
