/*
 * Channel-blocked activations, NCHW[cb]c, for the CPU graphs (float32).
 *
 * A value of logical shape (N, C, H, W) is stored as
 *
 *     [N][Cp / cb][H][W][cb],   Cp = C rounded up to a multiple of cb,
 *
 * element (n, c, h, w) at ((n·Cp/cb + c/cb)·H·W + h·W + w)·cb + c%cb. The
 * block width cb is the vector width of the active ISA: 16 floats for
 * AVX-512 (NCHW16c), 8 for AVX2 (NCHW8c). The pad channels C..Cp-1 hold
 * finite values that nothing reads as data: the operations below give every
 * pad channel a zero weight where they read one. A graph keeps such values
 * between the operations that compute on them (graph/plan.c) and converts
 * at the edges; every algorithm still works on plain NCHW.
 *
 * Kernels: algorithms/conv2d_blocked_f32.c (convolutions, any kernel, stride,
 * padding and dilation; one group, or depthwise), algorithms/blocked_ops_f32.c
 * (the conversions, pooling, the channel scale of squeeze-excitation).
 */
#ifndef AI3_ALGORITHMS_BLOCKED_H
#define AI3_ALGORITHMS_BLOCKED_H

#include "internal.h"

/* The block width of the active ISA (ai3_cpu_isa()): 16 for AVX-512, 8 for
 * AVX2, 0 where there is none (generic). */
int ai3_blocked_width(void);

/* Cp: c rounded up to a multiple of cb. */
static inline int64_t ai3_blocked_channels(int64_t c, int cb) { return (c + cb - 1) / cb * cb; }

/* --- conversions (over the thread pool) ---------------------------------- */
/* x plain (n, c, hw) → y blocked, the pad channels zero. */
void ai3_blocked_from_plain(const float *x, int64_t n, int64_t c, int64_t hw, int cb, float *y);
/* x blocked → y plain (n, c, hw). */
void ai3_blocked_to_plain(const float *x, int64_t n, int64_t c, int64_t hw, int cb, float *y);

/* --- conv2d ----------------------------------------------------------------
 * Weights packed once for width cb. groups must be 1, or C_in = C_out =
 * groups (depthwise); padding_mode zeros. Otherwise AI3_ERROR_UNSUPPORTED
 * naming the parameter. */
typedef struct ai3_blocked_conv2d ai3_blocked_conv2d;

ai3_status ai3_blocked_conv2d_create(const ai3_tensor *weight, const ai3_tensor *bias,
                                     const ai3_conv2d_params *params, int cb,
                                     ai3_blocked_conv2d **out);
void ai3_blocked_conv2d_destroy(ai3_blocked_conv2d *conv);
/* Whether it is depthwise (then its input must be blocked). */
bool ai3_blocked_conv2d_depthwise(const ai3_blocked_conv2d *conv);
/* Whether, for an output of n × oh × ow, it is expected to run faster on
 * blocked values than plain "guess" would, conversions included. */
bool ai3_blocked_conv2d_preferred(const ai3_blocked_conv2d *conv, int64_t n, int64_t oh,
                                  int64_t ow);

/* input (n, C_in, h, w): blocked, or plain when in_blocked is false (one
 * group only); output blocked (n, C_out, oh, ow) with oh, ow as conv2d's
 * output shape. Bias, then the epilogue (residual blocked like the output;
 * may be NULL) are applied to each output tile in registers before it is
 * stored. Over the thread pool. AI3_ERROR_INVALID_ARGUMENT for an output
 * size below 1. */
ai3_status ai3_blocked_conv2d_run(const ai3_blocked_conv2d *conv, const float *input,
                                  bool in_blocked, int64_t n, int64_t h, int64_t w,
                                  float *output, const ai3_epilogue *epilogue);

/* A 1×1 convolution (stride 1, no padding) computed inside the depthwise
 * one that alone reads it: each task expands a band of rows of a pair of
 * channel blocks into a buffer that stays in L2 and runs the depthwise
 * tiles on it, so the expanded tensor (the largest of an inverted residual
 * block: MobileNetV2, EfficientNet) never goes to memory. _fusable: whether
 * these two convs, on input rows of width w, can run so; _run: expand on
 * blocked input (n, C_in, h, w) with epilogue e1 (no residual), then dw with
 * e2, into dw's output, as the two runs one after the other would. */
bool ai3_blocked_conv2d_expand_fusable(const ai3_blocked_conv2d *expand,
                                       const ai3_blocked_conv2d *dw, int64_t w);
ai3_status ai3_blocked_conv2d_run_expand_dw(const ai3_blocked_conv2d *expand,
                                            const ai3_epilogue *e1, const ai3_blocked_conv2d *dw,
                                            const ai3_epilogue *e2, const float *input, int64_t n,
                                            int64_t h, int64_t w, float *output);

/* What it computes an output of n × oh × ow by, for reports: "direct
 * (NCHW16c)", "winograd (NCHW8c)", ... */
const char *ai3_blocked_conv2d_algorithm(const ai3_blocked_conv2d *conv, int64_t n, int64_t oh,
                                         int64_t ow);

/* For the Winograd convolution (conv2d_blocked_winograd_f32.c), which
 * ai3_blocked_conv2d_run uses for the 3×3 stride-1 shapes where
 * ai3_blocked_winograd_tile says so, once ai3_blocked_conv2d_prepare has
 * made its transformed weights for that shape (a plan does, when it is
 * made): */
/* Makes what running the convolution on an output of n × oh × ow needs
 * beyond its direct weights (the Winograd weights, where it will use them);
 * not thread-safe with itself on the same conv, safe with runs. */
ai3_status ai3_blocked_conv2d_prepare(ai3_blocked_conv2d *conv, int64_t n, int64_t oh,
                                      int64_t ow);
/* m of F(m×m, 3×3) (2 or 4) for a 3×3 stride-1 convolution of c_in → c_out
 * channels with an output of n × oh × ow, or 0 where the direct tiles are
 * faster. */
int ai3_blocked_winograd_tile(int64_t c_in, int64_t c_out, int64_t n, int64_t oh, int64_t ow);
typedef struct ai3_blocked_winograd ai3_blocked_winograd;
/* weight (C_out, C_in, 3, 3), float32, checked by the caller. */
ai3_status ai3_blocked_winograd_create(const ai3_tensor *weight, const ai3_tensor *bias, int m,
                                       int cb, ai3_blocked_winograd **out);
void ai3_blocked_winograd_destroy(ai3_blocked_winograd *wg);
/* x blocked (n, C_in, h, w); p the convolution's (its padding used); y and
 * the epilogue as ai3_blocked_conv2d_run. Over the thread pool. */
ai3_status ai3_blocked_winograd_run(const ai3_blocked_winograd *wg, const ai3_conv2d_params *p,
                                    const float *x, int64_t n, int64_t h, int64_t w, float *y,
                                    const ai3_epilogue *e);
/* Its parts in conv2d_blocked_f32.c: a 1×1 stride-1 unpadded conv on one
 * blocked image of `pixels` pixels, output pairs [pair0, pair1) (2·cb
 * channels each), no bias or epilogue, on the calling thread; and x's
 * planes (h, w) copied into y with `top` rows and `left` columns of zeros
 * before them and zeros after, to (hq, wq), over the thread pool. */
int ai3_blocked_conv2d_tile_pixels(const ai3_blocked_conv2d *k); /* its widest tile */
void ai3_blocked_conv2d_run_pairs(const ai3_blocked_conv2d *k, const float *x, int64_t pixels,
                                  int64_t pair0, int64_t pair1, float *y);
void ai3_blocked_pad(const float *x, int64_t planes, int64_t h, int64_t w, int cb, int64_t top,
                     int64_t left, int64_t hq, int64_t wq, float *y);

/* --- other operations on blocked values (over the thread pool) -------------
 * maxpool2d (max true) or avgpool2d with PyTorch's semantics for `params`
 * (as ai3_maxpool2d / ai3_avgpool2d), x blocked (n, c, h, w) → y blocked
 * (n, c, oh, ow), oh, ow as their output shape. */
ai3_status ai3_blocked_pool2d(bool max, const ai3_pool2d_params *params, const float *x,
                              int64_t n, int64_t c, int64_t h, int64_t w, int cb, float *y);
/* adaptiveavgpool2d to 1×1 (and mean over H, W with keepdim): y blocked
 * (n, c, 1, 1), the mean of each channel's plane. */
void ai3_blocked_global_avgpool(const float *x, int64_t n, int64_t c, int64_t hw, int cb,
                                float *y);
/* y = x · s with s (n, c, 1, 1) broadcast over each plane (squeeze and
 * excitation), x, s, y blocked; y may be x. */
void ai3_blocked_scale_channels(const float *x, const float *s, int64_t n, int64_t c,
                                int64_t hw, int cb, float *y);

/* Whether the blocked convolutions apply e's activation to the stored
 * output (gelu's two forms, which call libm) rather than to the tiles'
 * accumulators before the store. */
static inline bool ai3_blocked_act_after(const ai3_epilogue *e) {
    return e && (e->act == AI3_ACT_GELU || e->act == AI3_ACT_GELU_TANH);
}

#endif
