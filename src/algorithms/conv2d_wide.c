/* The wide layout shared by conv2d direct and smm (see conv2d_wide.h). */
#include "conv2d_wide.h"
#include "epilogue.h"


void AI3_TYPED(ai3_conv2d_wide_layout)(const ai3_conv2d_params *p, const ai3_conv2d_dims *d,
                                       ai3_conv2d_wide *s, int64_t *off) {
    s->hs = (d->hp + p->stride_h - 1) / p->stride_h;
    s->ws = (d->wp + p->stride_w - 1) / p->stride_w;
    s->plane = s->hs * s->ws;
    s->cs = p->stride_h * p->stride_w * s->plane;
    s->elems = d->n * d->c_in * s->cs;
    s->positions = (d->oh - 1) * s->ws + d->ow;
    if (!off) return;
    for (int64_t ky = 0; ky < d->kh; ky++) {
        for (int64_t kx = 0; kx < d->kw; kx++) {
            const int64_t dy = ky * p->dilation_h, dx = kx * p->dilation_w;
            const int64_t plane = (dy % p->stride_h) * p->stride_w + dx % p->stride_w;
            off[ky * d->kw + kx] = plane * s->plane + dy / p->stride_h * s->ws + dx / p->stride_w;
        }
    }
}

typedef struct {
    const real *x;
    real *split;
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
    const ai3_conv2d_wide *s;
} split_ctx;

/* Columns per block of the source-column table in split_channels. */
#define COLUMN_BLOCK 256

/* Pads and phase-splits channels [begin, end) straight from the input. The
 * source column of each padded column is looked up once per block of
 * columns, not once per element. */
static void split_channels(void *vctx, int64_t begin, int64_t end) {
    const split_ctx *c = vctx;
    const ai3_conv2d_params *p = c->p;
    const ai3_conv2d_dims *d = c->d;
    const int64_t sh = p->stride_h, sw = p->stride_w, ws = c->s->ws;
    int64_t cols[COLUMN_BLOCK];
    for (int64_t ch = begin; ch < end; ch++) {
        const real *src = c->x + ch * d->h * d->w;
        real *dst = c->split + ch * c->s->cs;
        for (int64_t ph = 0; ph < sh; ph++) {
            for (int64_t pw = 0; pw < sw; pw++) {
                real *plane = dst + (ph * sw + pw) * c->s->plane;
                for (int64_t j0 = 0; j0 < ws; j0 += COLUMN_BLOCK) {
                    const int64_t nj = AI3_MIN(COLUMN_BLOCK, ws - j0);
                    for (int64_t j = 0; j < nj; j++) {
                        const int64_t col = (j0 + j) * sw + pw;
                        cols[j] = col < d->wp ? ai3_pad_source_index(col, d->w, p->pad_left,
                                                                     p->padding_mode)
                                              : -1;
                    }
                    for (int64_t i = 0; i < c->s->hs; i++) {
                        const int64_t r = i * sh + ph;
                        const int64_t sr = r < d->hp ? ai3_pad_source_index(r, d->h, p->pad_top,
                                                                            p->padding_mode)
                                                     : -1;
                        real *out = plane + i * ws + j0;
                        if (sr < 0) {
                            for (int64_t j = 0; j < nj; j++) out[j] = 0;
                            continue;
                        }
                        const real *row = src + sr * d->w;
                        for (int64_t j = 0; j < nj; j++) out[j] = cols[j] >= 0 ? row[cols[j]] : 0;
                    }
                }
            }
        }
    }
}

void AI3_TYPED(ai3_conv2d_wide_fill)(const ai3_tensor *input, const ai3_conv2d_params *p,
                                     const ai3_conv2d_dims *d, const ai3_conv2d_wide *s,
                                     real *split) {
    if (p->stride_h == 1 && p->stride_w == 1) {
        ai3_conv2d_pad_input(input, p, d, split);
    } else {
        split_ctx c = {input->data, split, p, d, s};
        ai3_parallel_for(d->n * d->c_in, 1, split_channels, &c);
    }
}

void AI3_TYPED(ai3_conv2d_wide_store)(const real *src, int64_t q0, int64_t count, real bias,
                                      const ai3_conv2d_dims *d, const ai3_conv2d_wide *s,
                                      real *y, const ai3_epilogue *e, const real *r) {
    int64_t oy = q0 / s->ws, ox = q0 % s->ws;
    for (int64_t i = 0; i < count && oy < d->oh;) {
        const int64_t run = AI3_MIN(count - i, s->ws - ox);
        const int64_t valid = AI3_MAX(0, AI3_MIN(run, d->ow - ox));
        real *out = y + oy * d->ow + ox;
        for (int64_t k = 0; k < valid; k++) out[k] = src[i + k] + bias;
        if (e && valid > 0)
            AI3_TYPED(ai3_epilogue_apply)(out, 0, r ? r + oy * d->ow + ox : NULL, 0, 1, valid, e);
        i += run;
        oy++;
        ox = 0;
    }
}
