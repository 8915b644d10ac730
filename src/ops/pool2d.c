/* maxpool2d and avgpool2d: argument checks, output shape and dispatch. */
#include "internal.h"
#include "op.h"

ai3_pool2d_params ai3_pool2d_params_default(int64_t kernel_h, int64_t kernel_w) {
    ai3_pool2d_params p = {.kernel_h = kernel_h, .kernel_w = kernel_w,
                           .stride_h = kernel_h, .stride_w = kernel_w,
                           .dilation_h = 1, .dilation_w = 1, .count_include_pad = 1};
    return p;
}

/* PyTorch's pooling output size: with ceil_mode the last window must start
 * inside the input or the left padding. */
static int64_t pooled_size(int64_t size, int64_t kernel, int64_t pad, int64_t stride,
                           int64_t dilation, int ceil_mode) {
    /* sizes and parameters are at most 2^56 (checked): only this product
     * could overflow, and a kernel that wide fits no input */
    int64_t extent = ai3_size_mul(dilation, kernel - 1);
    if (extent < 0) return 0;
    int64_t span = size + 2 * pad - extent - 1 + (ceil_mode ? stride - 1 : 0);
    int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1; /* floor */
    if (ceil_mode && (out - 1) * stride >= size + pad) out--;
    return out;
}

static ai3_status check_and_shape(const char *op, int is_max, const ai3_tensor *input,
                                  const ai3_pool2d_params *p, int *out_ndim,
                                  int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s = ai3_check_tensor(input, "input", op);
    if (s != AI3_OK) return s;
    if (!p) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: params is NULL", op);
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", op);
    if (input->ndim != 3 && input->ndim != 4)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: input must be 3-d (C, H, W) or 4-d (N, C, H, W), got %d-d", op,
                             input->ndim);
    if (p->kernel_h < 1 || p->kernel_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: kernel size must be >= 1, got (%lld, %lld)",
                             op, (long long)p->kernel_h, (long long)p->kernel_w);
    if (p->stride_h < 1 || p->stride_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: stride must be >= 1, got (%lld, %lld)",
                             op, (long long)p->stride_h, (long long)p->stride_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: dilation must be >= 1", op);
    if (AI3_MAX(AI3_MAX(p->kernel_h, p->kernel_w), AI3_MAX(p->stride_h, p->stride_w)) >
            AI3_MAX_ELEMENTS ||
        AI3_MAX(p->dilation_h, p->dilation_w) > AI3_MAX_ELEMENTS)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: kernel size, stride and dilation must be at most 2^56", op);
    if (!is_max && (p->dilation_h != 1 || p->dilation_w != 1))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: dilation must be 1", op);
    if (!is_max && p->divisor_override < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: divisor_override must be positive (or 0 for none), got %lld", op,
                             (long long)p->divisor_override);
    /* As PyTorch: half the kernel size, whatever the dilation. */
    if (p->pad_h < 0 || p->pad_w < 0 || p->pad_h > p->kernel_h / 2 || p->pad_w > p->kernel_w / 2)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: padding (%lld, %lld) must be >= 0 and at most half of the "
                             "kernel size (%lld, %lld)",
                             op, (long long)p->pad_h, (long long)p->pad_w, (long long)p->kernel_h,
                             (long long)p->kernel_w);
    int batched = input->ndim == 4;
    /* As PyTorch: only the batch may be empty (padding alone is no window). */
    for (int d = batched; d < input->ndim; d++)
        if (input->shape[d] == 0)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: dimension %d of the %d-d input is empty; only the batch "
                                 "may be empty", op, d, input->ndim);
    int64_t h = input->shape[batched + 1], w = input->shape[batched + 2];
    int64_t oh = pooled_size(h, p->kernel_h, p->pad_h, p->stride_h, p->dilation_h, p->ceil_mode);
    int64_t ow = pooled_size(w, p->kernel_w, p->pad_w, p->stride_w, p->dilation_w, p->ceil_mode);
    if (oh < 1 || ow < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: input %lld x %lld is too small for kernel (%lld, %lld) with "
                             "padding (%lld, %lld) and dilation (%lld, %lld)",
                             op, (long long)h, (long long)w, (long long)p->kernel_h,
                             (long long)p->kernel_w, (long long)p->pad_h, (long long)p->pad_w,
                             (long long)p->dilation_h, (long long)p->dilation_w);
    int i = 0;
    if (batched) out_shape[i++] = input->shape[0];
    out_shape[i++] = input->shape[batched];
    out_shape[i++] = oh;
    out_shape[i++] = ow;
    *out_ndim = i;
    return AI3_OK;
}

static ai3_status run(const char *op, ai3_op id, const char *algorithm, const ai3_tensor *input,
                      const ai3_pool2d_params *p, ai3_tensor *output) {
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = check_and_shape(op, id == AI3_OP_MAXPOOL2D, input, p, &ndim, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, ndim, shape, op)) != AI3_OK) return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(id, algorithm, input, &found)) != AI3_OK) return s;
    ai3_pool2d_fn fn = (ai3_pool2d_fn)found;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    ai3_tensor in4 = ai3_batched_4d(input), out4 = ai3_batched_4d(output);
    return fn(&in4, p, &out4);
}

ai3_status ai3_maxpool2d_output_shape(const ai3_tensor *input, const ai3_pool2d_params *params,
                                      int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]) {
    return check_and_shape("maxpool2d", 1, input, params, out_ndim, out_shape);
}

ai3_status ai3_maxpool2d(const char *algorithm, const ai3_tensor *input,
                         const ai3_pool2d_params *params, ai3_tensor *output) {
    return run("maxpool2d", AI3_OP_MAXPOOL2D, algorithm, input, params, output);
}

ai3_status ai3_avgpool2d_output_shape(const ai3_tensor *input, const ai3_pool2d_params *params,
                                      int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]) {
    return check_and_shape("avgpool2d", 0, input, params, out_ndim, out_shape);
}

ai3_status ai3_avgpool2d(const char *algorithm, const ai3_tensor *input,
                         const ai3_pool2d_params *params, ai3_tensor *output) {
    return run("avgpool2d", AI3_OP_AVGPOOL2D, algorithm, input, params, output);
}

/* --- plans (ops/plan.c) --- */

static ai3_status maxpool2d_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                  int *ndim, int64_t *shape) {
    return ai3_maxpool2d_output_shape(in[0], &plan->params.maxpool2d, ndim, shape);
}

static ai3_status maxpool2d_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_maxpool2d(plan->algorithm, in[0], &plan->params.maxpool2d, out);
}

const ai3_op_impl ai3_maxpool2d_impl = {.output_shape = maxpool2d_shape, .run = maxpool2d_run};

static ai3_status avgpool2d_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                  int *ndim, int64_t *shape) {
    return ai3_avgpool2d_output_shape(in[0], &plan->params.avgpool2d, ndim, shape);
}

static ai3_status avgpool2d_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_avgpool2d(plan->algorithm, in[0], &plan->params.avgpool2d, out);
}

const ai3_op_impl ai3_avgpool2d_impl = {.output_shape = avgpool2d_shape, .run = avgpool2d_run};
