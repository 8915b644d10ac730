/* mean, direct. The ops layer merges neighbouring dimensions, so the input
 * alternates kept and reduced dimensions. Two cases by the last one:
 *  - reduced: each output element is a sum of contiguous runs (eight
 *    partial sums, so the loop vectorises without reassociation flags);
 *  - kept: each output row is a sum of contiguous input rows, added a chunk
 *    of columns at a time into a local accumulator.
 * Sums are kept in double and divided by the number of reduced elements;
 * work is split over output elements (or row chunks). */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#define CHUNK 256

typedef struct {
    const real *x;
    real *y;
    int n_kept, n_red;                 /* outer dimensions, the last one excluded */
    int64_t kept_size[AI3_MAX_DIMS], kept_stride[AI3_MAX_DIMS];
    int64_t red_size[AI3_MAX_DIMS], red_stride[AI3_MAX_DIMS];
    int64_t red_outer;                 /* product of red_size */
    int64_t len;                       /* size of the last dimension */
    int64_t chunks;                    /* column chunks per row (last kept) */
    double inv_count;
} mean_ctx;

/* Input offset of linear index `i` over n dimensions (last fastest). */
static int64_t offset_of(int64_t i, int n, const int64_t *size, const int64_t *stride) {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
        off += (i % size[d]) * stride[d];
        i /= size[d];
    }
    return off;
}

AI3_MULTIVERSION(mean_last_reduced, void *, ctx, int64_t, begin, int64_t, end) {
    const mean_ctx *c = ctx;
    for (int64_t o = begin; o < end; o++) {
        int64_t base = offset_of(o, c->n_kept, c->kept_size, c->kept_stride);
        double part[8] = {0};
        double tail = 0;
        for (int64_t r = 0; r < c->red_outer; r++) {
            const real *x = c->x + base + offset_of(r, c->n_red, c->red_size, c->red_stride);
            int64_t k = 0;
            for (; k + 8 <= c->len; k += 8)
                for (int j = 0; j < 8; j++) part[j] += (double)x[k + j];
            for (; k < c->len; k++) tail += (double)x[k];
        }
        double sum = tail;
        for (int j = 0; j < 8; j++) sum += part[j];
        c->y[o] = (real)(sum * c->inv_count);
    }
}

AI3_MULTIVERSION(mean_last_kept, void *, ctx, int64_t, begin, int64_t, end) {
    const mean_ctx *c = ctx;
    double acc[CHUNK];
    for (int64_t w = begin; w < end; w++) {
        int64_t row = w / c->chunks, col = (w % c->chunks) * CHUNK;
        int64_t n = AI3_MIN(CHUNK, c->len - col);
        int64_t base = offset_of(row, c->n_kept, c->kept_size, c->kept_stride) + col;
        for (int64_t j = 0; j < n; j++) acc[j] = 0;
        for (int64_t r = 0; r < c->red_outer; r++) {
            const real *x = c->x + base + offset_of(r, c->n_red, c->red_size, c->red_stride);
            for (int64_t j = 0; j < n; j++) acc[j] += (double)x[j];
        }
        real *y = c->y + row * c->len + col;
        for (int64_t j = 0; j < n; j++) y[j] = (real)(acc[j] * c->inv_count);
    }
}

ai3_status AI3_TYPED(ai3_mean_direct)(const ai3_tensor *input, const int *dims, int n_dims,
                                      ai3_tensor *output) {
    int nd = input->ndim, reduced[AI3_MAX_DIMS] = {0};
    for (int k = 0; k < n_dims; k++) reduced[dims[k]] = 1;
    mean_ctx c = {.x = input->data, .y = output->data, .len = input->shape[nd - 1],
                  .red_outer = 1};
    int64_t count = 1, strides[AI3_MAX_DIMS], s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        if (reduced[d]) count *= input->shape[d];
        strides[d] = s;
        s *= input->shape[d];
    }
    for (int d = 0; d < nd - 1; d++) {
        if (reduced[d]) {
            c.red_size[c.n_red] = input->shape[d];
            c.red_stride[c.n_red++] = strides[d];
            c.red_outer *= input->shape[d];
        } else {
            c.kept_size[c.n_kept] = input->shape[d];
            c.kept_stride[c.n_kept++] = strides[d];
        }
    }
    c.inv_count = 1.0 / (double)count; /* count 0 gives NaN, as torch's mean of nothing */
    if (reduced[nd - 1]) {
        int64_t per_output = c.red_outer * c.len;
        ai3_parallel_for(ai3_tensor_numel(output), AI3_MAX(1, (1 << 15) / AI3_MAX(1, per_output)),
                         mean_last_reduced, &c);
    } else {
        c.chunks = (c.len + CHUNK - 1) / CHUNK;
        int64_t per_item = c.red_outer * AI3_MIN(c.len, CHUNK);
        ai3_parallel_for(ai3_tensor_numel(output) / c.len * c.chunks,
                         AI3_MAX(1, (1 << 15) / AI3_MAX(1, per_item)), mean_last_kept, &c);
    }
    return AI3_OK;
}
