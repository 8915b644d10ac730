/* The indirection buffer of conv2d "implicit precomp gemm" (declared in
 * algorithms/conv2d.h), shared by its float, double and bfloat16 versions. */
#include "algorithms/conv2d.h"

/* Workspace: the offsets, then the run flags. */
static void carve(const ai3_conv2d_dims *d, int64_t nr, ai3_arena *a, int32_t **offset,
                  uint8_t **run, int64_t *strips) {
    const int64_t taps = d->kh * d->kw, n_cols = d->oh * d->ow;
    *strips = nr ? (n_cols + nr - 1) / nr : 0;
    *offset = ai3_arena_take(a, (size_t)(taps * n_cols) * sizeof **offset);
    *run = ai3_arena_take(a, (size_t)(taps * *strips));
}

size_t ai3_conv2d_indirection_size(const ai3_conv2d_dims *d, int64_t nr) {
    ai3_arena a = {NULL, 0};
    int32_t *offset;
    uint8_t *run;
    int64_t strips;
    carve(d, nr, &a, &offset, &run, &strips);
    return a.used;
}

typedef struct {
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
    int32_t *offset;
    uint8_t *run;
    int64_t strips, nr;
} build_ctx;

/* The offsets and run flags of taps [begin, end). */
static void build_taps(void *vctx, int64_t begin, int64_t end) {
    const build_ctx *c = vctx;
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t n_cols = d->oh * d->ow;
    for (int64_t t = begin; t < end; t++) {
        const int64_t ky = t / d->kw, kx = t % d->kw;
        int32_t *off = c->offset + t * n_cols;
        /* The source column of each ox, kept in output row 0's entries until
         * that row, the last, is written. */
        for (int64_t ox = 0; ox < d->ow; ox++)
            off[ox] = (int32_t)ai3_pad_source_index(ox * p->stride_w + kx * p->dilation_w, d->w,
                                                    p->pad_left, p->padding_mode);
        for (int64_t oy = d->oh - 1; oy >= 0; oy--) {
            const int64_t r = ai3_pad_source_index(oy * p->stride_h + ky * p->dilation_h, d->h,
                                                   p->pad_top, p->padding_mode);
            for (int64_t ox = 0; ox < d->ow; ox++) {
                const int32_t col = off[ox];
                off[oy * d->ow + ox] = r >= 0 && col >= 0 ? (int32_t)(r * d->w) + col : -1;
            }
        }
        for (int64_t s = 0; s < c->strips; s++) {
            const int64_t n0 = s * c->nr;
            bool run = n0 + c->nr <= n_cols;
            for (int64_t j = 0; j < c->nr && run; j++)
                run = off[n0 + j] >= 0 && off[n0 + j] == off[n0] + j;
            c->run[t * c->strips + s] = run;
        }
    }
}

ai3_status ai3_conv2d_indirection_build(const ai3_conv2d_params *p, const ai3_conv2d_dims *d,
                                        int64_t nr, void *workspace,
                                        ai3_conv2d_indirection *ind) {
    if (d->h * d->w > INT32_MAX)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "implicit precomp gemm: input planes of more than 2^31 elements");
    ai3_arena a = {workspace, 0};
    build_ctx c = {.p = p, .d = d, .nr = nr};
    carve(d, nr, &a, &c.offset, &c.run, &c.strips);
    ai3_parallel_for(d->kh * d->kw, 1, build_taps, &c);
    *ind = (ai3_conv2d_indirection){c.offset, c.run, c.strips};
    return AI3_OK;
}
