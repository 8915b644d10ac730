/* linear via GEMM: output[rows × out] = input[rows × in] · weightᵀ + bias,
 * the weight (out_features, in_features) read in place by ai3_gemm_nt. */
#include "algorithms/algorithms.h"
#include "gemm.h"
#include "internal.h"
#include "real.h"

typedef struct {
    const real *x, *w, *b;
    real *y;
    int64_t rows, in, out;
} linear_ctx;

/* rows × [begin, end) output columns: bias first, then the product added. */
static void block(const linear_ctx *c, int64_t r0, int64_t r1, int64_t j0, int64_t j1) {
    real *y = c->y + r0 * c->out + j0;
    if (c->b)
        for (int64_t r = r0; r < r1; r++)
            for (int64_t j = j0; j < j1; j++) c->y[r * c->out + j] = c->b[j];
    AI3_TYPED(ai3_gemm_nt)(r1 - r0, j1 - j0, c->in, c->x + r0 * c->in, c->in, c->w + j0 * c->in,
                           c->in, y, c->out, c->b != NULL);
}

static void by_rows(void *ctx, int64_t begin, int64_t end) {
    const linear_ctx *c = ctx;
    block(c, begin, end, 0, c->out);
}

static void by_columns(void *ctx, int64_t begin, int64_t end) {
    const linear_ctx *c = ctx;
    block(c, 0, c->rows, begin, end);
}

ai3_status AI3_TYPED(ai3_linear_gemm)(const ai3_tensor *input, const ai3_tensor *weight,
                                      const ai3_tensor *bias, ai3_tensor *output) {
    linear_ctx c = {
        .x = input->data, .w = weight->data, .b = bias ? bias->data : NULL, .y = output->data,
        .out = weight->shape[0], .in = weight->shape[1],
    };
    c.rows = ai3_tensor_numel(output) / c.out;
    /* Roughly 2^18 multiply-adds per piece makes waking a thread worth it. */
    const int64_t work = 1 << 18;
    int64_t threads = ai3_get_num_threads();
    if (c.out >= 64 * threads || c.rows < 64 * threads) {
        /* Split the output features: each thread reads (and packs) only its
         * share of the weight, which is what costs for a small batch. */
        int64_t grain = AI3_MAX(16, work / AI3_MAX(1, c.rows * c.in));
        ai3_parallel_for(c.out, grain, by_columns, &c);
    } else {
        /* Many rows and few features: split the rows. */
        int64_t grain = AI3_MAX(32, work / AI3_MAX(1, c.out * c.in));
        ai3_parallel_for(c.rows, grain, by_rows, &c);
    }
    return AI3_OK;
}
