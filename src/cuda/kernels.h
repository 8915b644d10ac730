/*
 * ai3's own CUDA kernels, as C functions that enqueue them (the .cu files of src/cuda).
 *
 * Every launcher takes device pointers to contiguous tensors of one dtype
 * (float32, float64, float16 or bfloat16; half types are read and written
 * as such and computed in float32, float64 in double), enqueues its work on
 * `stream` and returns at once: cudaSuccess, or the launch's error. Nothing
 * here synchronises, allocates or prints. An empty tensor (any size 0) is a
 * no-op. Sizes are int64_t; each launcher handles any size that fits in
 * device memory.
 */
#ifndef AI3_CUDA_KERNELS_H
#define AI3_CUDA_KERNELS_H

#include "ai3.h"

#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An activation run as another operation's epilogue: op is one of those
 * of ai3_cuda_activation, with its params. */
typedef struct ai3_cuda_act {
    ai3_op op;
    const ai3_op_params *params;
} ai3_cuda_act;

/* A conv2d call: input (n, c_in, h, w), weight (c_out, c_in / groups, kh,
 * kw), output (n, c_out, oh, ow) with
 *   oh = (h + pad_top + pad_bottom - dilation_h (kh - 1) - 1) / stride_h + 1
 * (likewise ow). Padding is zeros; the caller pads other modes itself. */
typedef struct ai3_cuda_conv2d_shape {
    int64_t n, c_in, h, w;
    int64_t c_out, kh, kw;
    int64_t oh, ow;
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_left; /* bottom and right follow from oh, ow */
    int64_t dilation_h, dilation_w;
    int64_t groups;
} ai3_cuda_conv2d_shape;

/* conv2d "direct": each thread block computes a tile of output channels ×
 * output pixels from input and weight tiles staged in shared memory
 * (depthwise convolutions: tiles of output pixels of several channels).
 * bias and act (applied to each output as it is written) may be NULL. */
cudaError_t ai3_cuda_conv2d_direct(ai3_dtype dtype, const void *input, const void *weight,
                                   const void *bias, void *output,
                                   const ai3_cuda_conv2d_shape *s, const ai3_cuda_act *act,
                                   cudaStream_t stream);
/* conv2d "smm" (SMM-Conv): the output is the sum over the kh·kw kernel taps
 * of (C_out × C_in/groups weight slice) · (shifted input view); each block
 * accumulates the taps of its output tile as shared-memory-tiled matrix
 * products. bias may be NULL. */
cudaError_t ai3_cuda_conv2d_smm(ai3_dtype dtype, const void *input, const void *weight,
                                const void *bias, void *output, const ai3_cuda_conv2d_shape *s,
                                cudaStream_t stream);

/* output (n, c, h + top + bottom, w + left + right): input padded with
 * `mode` (zeros, reflect, replicate or circular, as torch.nn.functional.pad;
 * reflect needs each pad < its size, circular each pad <= its size). */
cudaError_t ai3_cuda_pad2d(ai3_dtype dtype, const void *input, void *output, int64_t n,
                           int64_t c, int64_t h, int64_t w, int64_t top, int64_t bottom,
                           int64_t left, int64_t right, ai3_padding_mode mode,
                           cudaStream_t stream);


/* data (outer, c, inner) = act(data + bias (c) broadcast), in place, in one
 * pass: the epilogue of conv2d (inner = oh·ow) and linear (outer = rows,
 * inner = 1) after a library call. bias and act may each be NULL (none). */
cudaError_t ai3_cuda_bias_activation(ai3_dtype dtype, void *data, const void *bias,
                                     int64_t outer, int64_t c, int64_t inner,
                                     const ai3_cuda_act *act, cudaStream_t stream);

/* Elementwise activations over `count` elements; output may be input.
 * op is one of AI3_OP_RELU, HARDTANH (params->hardtanh), SIGMOID,
 * HARDSIGMOID, HARDSWISH, SILU, GELU (params->gelu); others return
 * cudaErrorInvalidValue. Formulas as in ai3.h (PyTorch's). */
cudaError_t ai3_cuda_activation(ai3_op op, const ai3_op_params *params, ai3_dtype dtype,
                                const void *input, void *output, int64_t count,
                                cudaStream_t stream);

/* maxpool2d and avgpool2d: input (n, c, h, w), output (n, c, oh, ow), the
 * output size computed by the caller with PyTorch's rule (ceil_mode
 * included). maxpool2d honours dilation (a NaN in a window wins, as in
 * torch); avgpool2d honours count_include_pad and divisor_override. */
cudaError_t ai3_cuda_maxpool2d(ai3_dtype dtype, const void *input, void *output, int64_t n,
                               int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                               const ai3_pool2d_params *p, cudaStream_t stream);
cudaError_t ai3_cuda_avgpool2d(ai3_dtype dtype, const void *input, void *output, int64_t n,
                               int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                               const ai3_pool2d_params *p, cudaStream_t stream);

/* PyTorch's adaptive average pooling bins: start = floor(i·h/oh),
 * end = ceil((i+1)·h/oh). */
cudaError_t ai3_cuda_adaptiveavgpool2d(ai3_dtype dtype, const void *input, void *output,
                                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh,
                                       int64_t ow, cudaStream_t stream);

/* Inference batch norm over input (n, c, hw): (x - mean) / sqrt(var + eps)
 * * weight + bias per channel. The four per-channel tensors have
 * `param_dtype` (float32 under autocast with a half input, else dtype);
 * weight and bias may be NULL (1 and 0). Output may be input. */
cudaError_t ai3_cuda_batchnorm2d(ai3_dtype dtype, ai3_dtype param_dtype, const void *input,
                                 const void *mean, const void *var, const void *weight,
                                 const void *bias, double eps, void *output, int64_t n,
                                 int64_t c, int64_t hw, cudaStream_t stream);

/* output = a op b (op AI3_OP_ADD or AI3_OP_MUL, else cudaErrorInvalidValue)
 * with broadcasting: output is contiguous with `shape` (ndim 1..8) and
 * a_strides / b_strides give each operand's element stride per output
 * dimension (0 where broadcast). Output may be a or b when that operand
 * has the output's shape. */
cudaError_t ai3_cuda_binary(ai3_op op, ai3_dtype dtype, const void *a, const int64_t *a_strides,
                            const void *b, const int64_t *b_strides, void *output, int ndim,
                            const int64_t *shape, cudaStream_t stream);

/* Mean of contiguous input (`shape`, ndim 1..8) over the dimensions with
 * reduce[d] != 0; output is contiguous with the kept dimensions (the
 * reduced ones size 1). Sums in float (double for float64); a reduction
 * over no elements gives NaN, as in torch. */
cudaError_t ai3_cuda_mean(ai3_dtype dtype, const void *input, void *output, int ndim,
                          const int64_t *shape, const int *reduce, cudaStream_t stream);

/* output = input.permute(perm): output dimension i is input dimension
 * perm[i] of contiguous input (`shape`, ndim 1..8); output contiguous and
 * not overlapping input. */
cudaError_t ai3_cuda_permute(ai3_dtype dtype, const void *input, void *output, int ndim,
                             const int64_t *shape, const int *perm, cudaStream_t stream);

/* Layer norm of each row of input (rows, cols): (x - mean) / sqrt(var +
 * eps) * weight[col] + bias[col], mean and biased variance over the row.
 * weight and bias have dtype and may be NULL (1 and 0). Output may be
 * input. */
cudaError_t ai3_cuda_layernorm(ai3_dtype dtype, const void *input, const void *weight,
                               const void *bias, double eps, void *output, int64_t rows,
                               int64_t cols, cudaStream_t stream);

/* Graph fusions of ConvNeXt's permutes (output never aliases an input):
 *  - layernorm_channels: input (n, c, hw) permuted to (n, hw, c) and
 *    normalised over c, as ai3_cuda_layernorm (weight, bias of c or NULL);
 *  - permute_scale_add: out (n, c, hw) = y (n, hw, c) permuted to channels
 *    first, plus bias (c; NULL: 0), times scale (c; NULL: 1), plus residual
 *    (n, c, hw; NULL: 0). */
cudaError_t ai3_cuda_layernorm_channels(ai3_dtype dtype, const void *input, const void *weight,
                                        const void *bias, double eps, void *output, int64_t n,
                                        int64_t c, int64_t hw, cudaStream_t stream);
cudaError_t ai3_cuda_permute_scale_add(ai3_dtype dtype, const void *y, const void *bias,
                                       const void *scale, const void *residual, void *out,
                                       int64_t n, int64_t c, int64_t hw, cudaStream_t stream);

/* Softmax over the middle dimension of input (outer, n, inner), the
 * maximum subtracted before exp. Output may be input. */
cudaError_t ai3_cuda_softmax(ai3_dtype dtype, const void *input, void *output, int64_t outer,
                             int64_t n, int64_t inner, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
