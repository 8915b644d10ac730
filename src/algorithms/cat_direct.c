/* cat, direct: the output seen as (outer, row) with row = the concatenated
 * dimension and everything after it, each input contributing a contiguous
 * piece of every row. The output is split into contiguous ranges over the
 * pool, and each range is filled with memcpy of those pieces. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

#include <string.h>

typedef struct {
    const ai3_tensor *const *inputs;
    int n_inputs;
    int64_t row;          /* output elements per outer index */
    const int64_t *start; /* n_inputs + 1 offsets of each input's piece in a row */
    real *out;
} cat_ctx;

static void cat_range(void *ctx, int64_t begin, int64_t end) {
    const cat_ctx *c = ctx;
    int k = 0;
    for (int64_t i = begin; i < end;) {
        int64_t outer = i / c->row, col = i % c->row;
        while (col >= c->start[k + 1]) k++;
        while (col < c->start[k]) k--;
        int64_t piece = c->start[k + 1] - c->start[k];
        int64_t n = AI3_MIN(c->start[k + 1] - col, end - i);
        const real *src = (const real *)c->inputs[k]->data + outer * piece + (col - c->start[k]);
        memcpy(c->out + i, src, sizeof(real) * (size_t)n);
        i += n;
    }
}

ai3_status AI3_TYPED(ai3_cat_direct)(const ai3_tensor *const *inputs, int n_inputs, int dim,
                                     ai3_tensor *output) {
    int64_t *start = ai3_alloc(sizeof(int64_t) * (size_t)(n_inputs + 1));
    if (!start)
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "cat direct: cannot allocate %d offsets",
                             n_inputs + 1);
    int64_t inner = 1; /* elements per index of dim */
    for (int d = dim + 1; d < output->ndim; d++) inner *= output->shape[d];
    start[0] = 0;
    for (int k = 0; k < n_inputs; k++) start[k + 1] = start[k] + inputs[k]->shape[dim] * inner;
    cat_ctx c = {.inputs = inputs, .n_inputs = n_inputs, .row = start[n_inputs], .start = start,
                 .out = output->data};
    ai3_parallel_for(ai3_tensor_numel(output), 1 << 15, cat_range, &c);
    ai3_free(start);
    return AI3_OK;
}
