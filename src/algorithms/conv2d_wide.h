/*
 * The "wide" layout shared by the conv2d algorithms direct and smm.
 *
 * The input is padded once (any padding mode). With a stride, each padded
 * channel is also split into stride phases: element (r, c) goes to plane
 * (r % stride_h, c % stride_w) at (r / stride_h, c / stride_w). Every kernel
 * tap then reads a stride-1 window of one plane.
 *
 * Outputs are computed wide: output pixel (oy, ox) sits at position
 * q = oy·ws + ox (ws = plane width), and tap t reads the input at
 * q + off[t]. So a run of consecutive positions is one contiguous slice of a
 * channel for every tap, with no bounds checks; the positions ox >= ow are
 * computed too and dropped on the store.
 */
#ifndef AI3_CONV2D_WIDE_H
#define AI3_CONV2D_WIDE_H

#include "internal.h"
#include "real.h"

typedef struct {
    int64_t hs, ws;    /* one stride-phase plane */
    int64_t plane;     /* hs·ws */
    int64_t cs;        /* channel stride: stride_h·stride_w planes */
    int64_t elems;     /* the whole prepared input */
    int64_t positions; /* wide positions per channel, up to the last valid one */
} ai3_conv2d_wide;

/* Fills the layout and, unless off is NULL, off[kh·kw]: each tap's offset. */
void AI3_TYPED(ai3_conv2d_wide_layout)(const ai3_conv2d_params *p, const ai3_conv2d_dims *d,
                                       ai3_conv2d_wide *wide, int64_t *off);

/* Writes the padded, phase-split input into `dst` (wide->elems elements). */
void AI3_TYPED(ai3_conv2d_wide_fill)(const ai3_tensor *input, const ai3_conv2d_params *p,
                                     const ai3_conv2d_dims *d, const ai3_conv2d_wide *wide,
                                     real *dst);

/* Writes wide positions [q0, q0 + count) of one output channel, src[0..count),
 * to that channel's output plane y (oh × ow), adding bias, then applies the
 * epilogue e (NULL: none) with the channel's residual plane r (NULL: none)
 * to what it wrote. */
void AI3_TYPED(ai3_conv2d_wide_store)(const real *src, int64_t q0, int64_t count, real bias,
                                      const ai3_conv2d_dims *d, const ai3_conv2d_wide *wide,
                                      real *y, const ai3_epilogue *e, const real *r);

#endif
