/*
 * ai3_cuda_binary: a + b and a * b with broadcasting, computed in float
 * (double for float64). The dimensions are simplified first: size-1 ones
 * dropped, neighbours that both operands step through as one merged. Then
 * one of three grid-stride loops: both operands contiguous (16-byte packs
 * when aligned), one contiguous and the other a scalar or per-channel
 * vector (index (i / inner) % c; add and mul commute, so either operand
 * may be the vector), or the general loop that turns each flat output
 * index into two operand offsets. Indices are 32-bit when the output is
 * small enough. Output may be an operand of its own shape: each element
 * is read and then written by one thread.
 */
#include "half.cuh"

#define MAX_DIMS 8

struct bin_geom {
    int nd;
    int64_t size[MAX_DIMS], sa[MAX_DIMS], sb[MAX_DIMS];
};

template <bool MUL, typename A> __device__ __forceinline__ A apply(A x, A y) {
    return MUL ? x * y : x + y;
}

/* Both operands contiguous, `packs` packs of V elements. */
template <typename T, bool MUL, int V>
__global__ void __launch_bounds__(256)
elementwise_kernel(const T *a, const T *b, T *y, int64_t packs) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < packs;
         i += (int64_t)gridDim.x * blockDim.x) {
        pack<T, V> p = reinterpret_cast<const pack<T, V> *>(a)[i];
        pack<T, V> q = reinterpret_cast<const pack<T, V> *>(b)[i];
#pragma unroll
        for (int j = 0; j < V; j++) p.v[j] = from_acc<T>(apply<MUL>(to_acc(p.v[j]), to_acc(q.v[j])));
        reinterpret_cast<pack<T, V> *>(y)[i] = p;
    }
}

/* a contiguous, b[(i / inner) % c] (c == 1: a scalar), in packs of V
 * elements of one channel (inner a multiple of V). b never aliases y. */
template <typename T, bool MUL, typename I, int V>
__global__ void __launch_bounds__(256)
channel_kernel(const T *a, const T *__restrict__ b, T *y, I packs, I inner, I c) {
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < packs; i += (I)gridDim.x * blockDim.x) {
        pack<T, V> p = reinterpret_cast<const pack<T, V> *>(a)[i];
        const auto v = load(b + i * V / inner % c);
#pragma unroll
        for (int j = 0; j < V; j++) p.v[j] = from_acc<T>(apply<MUL>(to_acc(p.v[j]), v));
        reinterpret_cast<pack<T, V> *>(y)[i] = p;
    }
}

/* channel_kernel in packs of 16 bytes where a and y are aligned and every
 * pack lies in one channel, else element by element. */
template <typename T, bool MUL, typename I>
static void launch_channel(const T *a, const T *b, T *y, int64_t count, int64_t inner, int64_t c,
                           cudaStream_t stream) {
    constexpr int V = 16 / sizeof(T);
    if ((((uintptr_t)a | (uintptr_t)y) & 15) == 0 && inner % V == 0)
        channel_kernel<T, MUL, I, V><<<ai3_cuda_blocks(count / V, 256), 256, 0, stream>>>(
            a, b, y, (I)(count / V), (I)inner, (I)c);
    else
        channel_kernel<T, MUL, I, 1><<<ai3_cuda_blocks(count, 256), 256, 0, stream>>>(
            a, b, y, (I)count, (I)inner, (I)c);
}

template <typename T, bool MUL, typename I>
__global__ void __launch_bounds__(256)
general_kernel(const T *a, const T *b, T *y, I count, bin_geom g) {
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < count; i += (I)gridDim.x * blockDim.x) {
        I r = i;
        int64_t oa = 0, ob = 0;
        for (int d = g.nd - 1; d > 0; d--) {
            I q = r / (I)g.size[d], k = r - q * (I)g.size[d];
            oa += (int64_t)k * g.sa[d], ob += (int64_t)k * g.sb[d];
            r = q;
        }
        oa += (int64_t)r * g.sa[0], ob += (int64_t)r * g.sb[0];
        y[i] = from_acc<T>(apply<MUL>(to_acc(a[oa]), to_acc(b[ob])));
    }
}

/* Whether strides s are the contiguous strides of g's sizes. */
static bool contiguous(const bin_geom &g, const int64_t *s) {
    int64_t step = 1;
    for (int d = g.nd - 1; d >= 0; d--) {
        if (s[d] != step) return false;
        step *= g.size[d];
    }
    return true;
}

/* Whether s is zero but for at most one dimension of stride 1: sets that
 * dimension's size (c) and the product of the sizes after it (inner). */
static bool per_channel(const bin_geom &g, const int64_t *s, int64_t *inner, int64_t *c) {
    *inner = 1, *c = 1;
    int64_t after = 1;
    for (int d = g.nd - 1; d >= 0; d--) {
        if (s[d] != 0) {
            if (s[d] != 1 || *c != 1) return false;
            *inner = after, *c = g.size[d];
        }
        after *= g.size[d];
    }
    return true;
}

template <typename T, bool MUL, typename I>
static void launch_indexed(const T *a, const T *b, T *y, const bin_geom &g, int64_t count,
                           cudaStream_t stream) {
    unsigned blocks = ai3_cuda_blocks(count, 256);
    int64_t inner, c;
    if (contiguous(g, g.sa) && per_channel(g, g.sb, &inner, &c))
        launch_channel<T, MUL, I>(a, b, y, count, inner, c, stream);
    else if (contiguous(g, g.sb) && per_channel(g, g.sa, &inner, &c))
        launch_channel<T, MUL, I>(b, a, y, count, inner, c, stream);
    else
        general_kernel<T, MUL, I><<<blocks, 256, 0, stream>>>(a, b, y, (I)count, g);
}

template <typename T, bool MUL>
static cudaError_t launch(const T *a, const T *b, T *y, const bin_geom &g, int64_t count,
                          cudaStream_t stream) {
    if (g.nd == 1 && g.sa[0] == 1 && g.sb[0] == 1) {
        constexpr int V = 16 / sizeof(T);
        int64_t head = 0;
        if ((((uintptr_t)a | (uintptr_t)b | (uintptr_t)y) & 15) == 0 && count >= V) {
            head = count / V * V;
            elementwise_kernel<T, MUL, V><<<ai3_cuda_blocks(head / V, 256), 256, 0, stream>>>(
                a, b, y, head / V);
        }
        if (head < count)
            elementwise_kernel<T, MUL, 1><<<ai3_cuda_blocks(count - head, 256), 256, 0, stream>>>(
                a + head, b + head, y + head, count - head);
    } else if (count <= INT32_MAX) {
        launch_indexed<T, MUL, uint32_t>(a, b, y, g, count, stream);
    } else {
        launch_indexed<T, MUL, int64_t>(a, b, y, g, count, stream);
    }
    return cudaGetLastError();
}

extern "C" cudaError_t ai3_cuda_binary(ai3_op op, ai3_dtype dtype, const void *a,
                                       const int64_t *a_strides, const void *b,
                                       const int64_t *b_strides, void *output, int ndim,
                                       const int64_t *shape, cudaStream_t stream) {
    if ((op != AI3_OP_ADD && op != AI3_OP_MUL) || ndim < 1 || ndim > MAX_DIMS)
        return cudaErrorInvalidValue;
    bin_geom g = {};
    int64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        count *= shape[d];
        if (shape[d] == 1) continue;
        if (g.nd > 0 && g.sa[g.nd - 1] == a_strides[d] * shape[d] &&
            g.sb[g.nd - 1] == b_strides[d] * shape[d]) { /* merge into the previous one */
            g.size[g.nd - 1] *= shape[d];
            g.sa[g.nd - 1] = a_strides[d], g.sb[g.nd - 1] = b_strides[d];
            continue;
        }
        g.size[g.nd] = shape[d], g.sa[g.nd] = a_strides[d], g.sb[g.nd] = b_strides[d];
        g.nd++;
    }
    if (count == 0) return cudaSuccess;
    if (g.nd == 0) g.nd = 1, g.size[0] = 1, g.sa[0] = 1, g.sb[0] = 1; /* one element */
    bool mul = op == AI3_OP_MUL;
    AI3_CUDA_DISPATCH(dtype, T,
        return mul ? launch<T, true>((const T *)a, (const T *)b, (T *)output, g, count, stream)
                   : launch<T, false>((const T *)a, (const T *)b, (T *)output, g, count, stream));
    return cudaSuccess;
}
