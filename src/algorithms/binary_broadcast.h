/*
 * The body of a broadcasting elementwise binary algorithm (add, mul),
 * included by its file after defining
 *   AI3_BINARY_OP(x, y)     the elementwise expression
 *   AI3_BINARY_NAME(name)   a prefix for the static functions made here.
 *
 * The ops layer hands over a, b and output of one ndim, each size of a and b
 * being the output's or 1, already merged to few dimensions. The output is
 * split into contiguous ranges over the pool; within a range the work goes
 * row by row along the last dimension, where each operand is either a
 * contiguous vector or one repeated value, so every inner loop vectorises.
 */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

typedef struct {
    const real *a, *b;
    real *out;
    int nd;
    int64_t shape[AI3_MAX_DIMS];              /* output */
    int64_t stride_a[AI3_MAX_DIMS], stride_b[AI3_MAX_DIMS]; /* 0 where broadcast */
} AI3_BINARY_NAME(ctx);

AI3_MULTIVERSION(AI3_BINARY_NAME(range), void *, ctx, int64_t, begin, int64_t, end) {
    const AI3_BINARY_NAME(ctx) *c = ctx;
    const int last = c->nd - 1;
    const int64_t len = c->shape[last];
    const int64_t ia = c->stride_a[last], ib = c->stride_b[last];
    for (int64_t i = begin; i < end;) {
        int64_t row = i / len, col = i % len, n = AI3_MIN(len - col, end - i);
        int64_t off_a = col * ia, off_b = col * ib;
        for (int d = last - 1; d >= 0; d--) {
            int64_t idx = row % c->shape[d];
            row /= c->shape[d];
            off_a += idx * c->stride_a[d];
            off_b += idx * c->stride_b[d];
        }
        const real *x = c->a + off_a, *y = c->b + off_b;
        real *z = c->out + i;
        if (ia && ib) {
            for (int64_t k = 0; k < n; k++) z[k] = AI3_BINARY_OP(x[k], y[k]);
        } else if (ia) {
            const real s = y[0];
            for (int64_t k = 0; k < n; k++) z[k] = AI3_BINARY_OP(x[k], s);
        } else if (ib) {
            const real s = x[0];
            for (int64_t k = 0; k < n; k++) z[k] = AI3_BINARY_OP(s, y[k]);
        } else {
            const real v = AI3_BINARY_OP(x[0], y[0]);
            for (int64_t k = 0; k < n; k++) z[k] = v;
        }
        i += n;
    }
}

/* Strides of a contiguous tensor of `shape`, 0 where its size is 1. */
static void AI3_BINARY_NAME(strides)(const ai3_tensor *t, int64_t *stride) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        stride[d] = t->shape[d] == 1 ? 0 : s;
        s *= t->shape[d];
    }
}

static ai3_status AI3_BINARY_NAME(broadcast)(const ai3_tensor *a, const ai3_tensor *b,
                                             ai3_tensor *output) {
    AI3_BINARY_NAME(ctx) c = {.a = a->data, .b = b->data, .out = output->data,
                              .nd = output->ndim};
    for (int d = 0; d < c.nd; d++) c.shape[d] = output->shape[d];
    AI3_BINARY_NAME(strides)(a, c.stride_a);
    AI3_BINARY_NAME(strides)(b, c.stride_b);
    /* bound by memory: small tensors on one thread (see hardtanh_direct.c) */
    ai3_parallel_for(ai3_tensor_numel(output), 1 << 17, AI3_BINARY_NAME(range), &c);
    return AI3_OK;
}
