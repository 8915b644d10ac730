/* adaptiveavgpool2d, direct: output (oh, ow) averages input rows
 * [floor(oh·H/OH), ceil((oh+1)·H/OH)) and the matching columns, as torch. */
#include "algorithms/algorithms.h"
#include "internal.h"
#include "real.h"

typedef struct {
    const real *x;
    real *y;
    int64_t h, w, oh, ow;
} pool_ctx;

static int64_t bin_start(int64_t i, int64_t size, int64_t n) { return i * size / n; }
static int64_t bin_end(int64_t i, int64_t size, int64_t n) {
    return ((i + 1) * size + n - 1) / n;
}

static void adaptive_planes(void *ctx, int64_t begin, int64_t end) {
    const pool_ctx *c = ctx;
    for (int64_t plane = begin; plane < end; plane++) {
        const real *x = c->x + plane * c->h * c->w;
        real *y = c->y + plane * c->oh * c->ow;
        for (int64_t i = 0; i < c->oh; i++) {
            int64_t h0 = bin_start(i, c->h, c->oh), h1 = bin_end(i, c->h, c->oh);
            for (int64_t j = 0; j < c->ow; j++) {
                int64_t w0 = bin_start(j, c->w, c->ow), w1 = bin_end(j, c->w, c->ow);
                real sum = 0;
                for (int64_t r = h0; r < h1; r++)
                    for (int64_t s = w0; s < w1; s++) sum += x[r * c->w + s];
                y[i * c->ow + j] = sum / (real)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

ai3_status AI3_TYPED(ai3_adaptiveavgpool2d_direct)(const ai3_tensor *input, ai3_tensor *output) {
    pool_ctx c = {
        .x = input->data, .y = output->data,
        .h = input->shape[2], .w = input->shape[3], .oh = output->shape[2], .ow = output->shape[3],
    };
    /* Every input element is read about once (more when bins overlap). */
    int64_t per_plane = AI3_MAX(c.h * c.w, c.oh * c.ow);
    ai3_parallel_for(input->shape[0] * input->shape[1], AI3_MAX(1, (1 << 16) / per_plane),
                     adaptive_planes, &c);
    return AI3_OK;
}
