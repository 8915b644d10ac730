/*
 * conv2d "guess": the algorithm expected to be fastest for a convolution,
 * from its shape alone (measured on the seed's benchmark shapes, bench/).
 */
#include "algorithms/conv2d.h"

const char *ai3_conv2d_guess(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    /* Few multiply-adds per output (first layers, depthwise): the GEMM of
     * smm would be too thin, the direct loop keeps its registers busy. */
    if (d->c_in_g * d->kh * d->kw < 64) return "direct";
    return "smm";
}
