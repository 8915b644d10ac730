/* permute, direct: the output is written in order, split into contiguous
 * ranges over the pool; along the output's last dimension the input is read
 * with that dimension's input stride (a copy when it is 1). The ops layer
 * has merged the dimensions that stay together, so a channel shuffle or an
 * (N, C, H, W) -> (N, H, W, C) permute reaches here with 3 or 4 dimensions. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include <string.h>

typedef struct {
    const real *x;
    real *y;
    int nd;
    int64_t shape[AI3_MAX_DIMS];  /* output */
    int64_t stride[AI3_MAX_DIMS]; /* input stride of each output dimension */
} permute_ctx;

AI3_MULTIVERSION(permute_range, void *, ctx, int64_t, begin, int64_t, end) {
    const permute_ctx *c = ctx;
    const int last = c->nd - 1;
    const int64_t len = c->shape[last], step = c->stride[last];
    for (int64_t i = begin; i < end;) {
        int64_t row = i / len, col = i % len, n = AI3_MIN(len - col, end - i);
        int64_t off = col * step;
        for (int d = last - 1; d >= 0; d--) {
            off += (row % c->shape[d]) * c->stride[d];
            row /= c->shape[d];
        }
        const real *x = c->x + off;
        real *y = c->y + i;
        if (step == 1)
            memcpy(y, x, sizeof(real) * (size_t)n);
        else
            for (int64_t k = 0; k < n; k++) y[k] = x[k * step];
        i += n;
    }
}

ai3_status AI3_TYPED(ai3_permute_direct)(const ai3_tensor *input, const int *perm,
                                         ai3_tensor *output) {
    permute_ctx c = {.x = input->data, .y = output->data, .nd = output->ndim};
    int64_t in_stride[AI3_MAX_DIMS], s = 1;
    for (int d = input->ndim - 1; d >= 0; d--) {
        in_stride[d] = s;
        s *= input->shape[d];
    }
    for (int d = 0; d < c.nd; d++) {
        c.shape[d] = output->shape[d];
        c.stride[d] = in_stride[perm[d]];
    }
    ai3_parallel_for(ai3_tensor_numel(output), 1 << 15, permute_range, &c);
    return AI3_OK;
}
