/* softmax, direct: the input seen as (outer, size, inner) around `dim`.
 * Stable form: the maximum along dim is subtracted before exp (the
 * vectorisable one of vexp.h), the sum is kept in double, and the exps
 * are scaled by its inverse. With inner == 1
 * each row is contiguous; otherwise a chunk of inner positions is handled
 * at once so the loops run along contiguous memory. Work is split over
 * rows (or outer × chunks). Output may alias input. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include "vexp.h"

#define CHUNK 128

typedef struct {
    const real *x;
    real *y;
    int64_t size, inner, chunks;
} softmax_ctx;

AI3_MULTIVERSION(softmax_rows, void *, ctx, int64_t, begin, int64_t, end) {
    const softmax_ctx *c = ctx;
    const int64_t n = c->size;
    for (int64_t r = begin; r < end; r++) {
        const real *x = c->x + r * n;
        real *y = c->y + r * n;
        real m = x[0];
        for (int64_t k = 1; k < n; k++) m = x[k] > m ? x[k] : m;
        for (int64_t k = 0; k < n; k++) y[k] = ai3_exp_nonpositive(x[k] - m);
        double sum = 0;
        for (int64_t k = 0; k < n; k++) sum += (double)y[k];
        const real scale = (real)(1.0 / sum);
        for (int64_t k = 0; k < n; k++) y[k] *= scale;
    }
}

AI3_MULTIVERSION(softmax_strided, void *, ctx, int64_t, begin, int64_t, end) {
    const softmax_ctx *c = ctx;
    const int64_t n = c->size, inner = c->inner;
    real m[CHUNK];
    double sum[CHUNK];
    for (int64_t w = begin; w < end; w++) {
        int64_t outer = w / c->chunks, col = (w % c->chunks) * CHUNK;
        int64_t len = AI3_MIN(CHUNK, inner - col);
        const real *x = c->x + outer * n * inner + col;
        real *y = c->y + outer * n * inner + col;
        for (int64_t j = 0; j < len; j++) {
            m[j] = x[j];
            sum[j] = 0;
        }
        for (int64_t k = 1; k < n; k++) {
            const real *xk = x + k * inner;
            for (int64_t j = 0; j < len; j++) m[j] = xk[j] > m[j] ? xk[j] : m[j];
        }
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < len; j++) {
                real e = ai3_exp_nonpositive(x[k * inner + j] - m[j]);
                y[k * inner + j] = e;
                sum[j] += (double)e;
            }
        for (int64_t j = 0; j < len; j++) m[j] = (real)(1.0 / sum[j]); /* now the scale */
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < len; j++) y[k * inner + j] *= m[j];
    }
}

ai3_status AI3_TYPED(ai3_softmax_direct)(const ai3_tensor *input, int dim, ai3_tensor *output) {
    softmax_ctx c = {.x = input->data, .y = output->data, .size = input->shape[dim], .inner = 1};
    for (int d = dim + 1; d < input->ndim; d++) c.inner *= input->shape[d];
    int64_t outer = ai3_tensor_numel(input) / (c.size * c.inner);
    if (c.inner == 1) {
        ai3_parallel_for(outer, AI3_MAX(1, (1 << 13) / c.size), softmax_rows, &c);
    } else {
        c.chunks = (c.inner + CHUNK - 1) / CHUNK;
        int64_t per_item = c.size * AI3_MIN(CHUNK, c.inner);
        ai3_parallel_for(outer * c.chunks, AI3_MAX(1, (1 << 13) / per_item), softmax_strided, &c);
    }
    return AI3_OK;
}
