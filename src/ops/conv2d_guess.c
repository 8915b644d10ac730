/*
 * conv2d "guess": the algorithm expected to be fastest for a convolution,
 * from its shape alone. The rules follow bench/conv2d.py on the seed's four
 * shapes at batch 1 and 10 and the layers of ResNet-50 (AVX-512, 2 threads).
 */
#include "algorithms/conv2d.h"

const char *ai3_conv2d_guess(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    const ai3_conv2d_params *p = &pb->params;
    const int64_t depth = d->c_in_g * d->kh * d->kw; /* multiply-adds per output */
    const int strided = p->stride_h > 1 || p->stride_w > 1;
    /* Depthwise or thin layers (first layers: few input channels): the GEMM
     * tiles would be mostly empty, while the direct loop keeps its
     * registers busy. In bfloat16 the direct loop computes on float32
     * copies, and a deep enough thin layer (ResNet's 7×7 first one: 2×
     * faster, AMX or AVX512_BF16) goes to the GEMM. */
    const bool bf16_gemm = pb->weight.dtype == AI3_BFLOAT16 && d->c_out_g >= 16 && depth >= 64;
    if ((d->c_in_g < 8 && !bf16_gemm) || d->c_out_g < 4) return "direct";
    /* 1×1 without padding: the input itself (stride 1) or a cheap strided
     * copy of it is the GEMM's B, even for a short K. */
    if (d->kh == 1 && d->kw == 1 && d->hp == d->h && d->wp == d->w) return "gemm";
    if (depth < 64) return "direct";
    /* 3×3, stride 1: Winograd does 2.25× (F(4×4)) fewer products (in float;
     * bfloat16 has no Winograd, its GEMM gathers the taps from the offsets). */
    if (d->kh == 3 && d->kw == 3 && !strided && p->dilation_h == 1 && p->dilation_w == 1 &&
        d->c_in_g >= 32 && d->c_out_g >= 32)
        return pb->weight.dtype == AI3_BFLOAT16 ? "implicit precomp gemm" : "winograd";
    /* Strided windows: precomputed offsets gather them fastest. */
    if (strided) return "implicit precomp gemm";
    return "implicit gemm";
}
