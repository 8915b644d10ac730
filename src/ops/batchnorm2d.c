/* batchnorm2d (inference form): argument checks and dispatch. */
#include "internal.h"
#include "op.h"

#include <math.h>

static const char *const OP = "batchnorm2d";

/* A per-channel parameter: 1-d of `channels` elements, the input's dtype. */
static ai3_status check_channel_vector(const ai3_tensor *t, const char *what, int64_t channels,
                                       ai3_dtype dtype) {
    ai3_status s = ai3_check_tensor(t, what, OP);
    if (s != AI3_OK) return s;
    if (t->ndim != 1 || t->shape[0] != channels)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: %s must be 1-d with %lld elements (the input's channels), got "
                             "%d-d with %lld",
                             OP, what, (long long)channels, t->ndim,
                             (long long)ai3_tensor_numel(t));
    /* float32 statistics with a half input (CUDA under autocast) are read as such */
    bool half_input = dtype == AI3_FLOAT16 || dtype == AI3_BFLOAT16;
    if (t->dtype != dtype && !(half_input && t->dtype == AI3_FLOAT32))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: %s must have the input's dtype (or float32 for a half input)",
                             OP, what);
    return AI3_OK;
}

static ai3_status check(const ai3_tensor *input, const ai3_tensor *running_mean,
                        const ai3_tensor *running_var, const ai3_tensor *weight,
                        const ai3_tensor *bias, double eps) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    if (input->ndim != 3 && input->ndim != 4)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: input must be 3-d (C, H, W) or 4-d (N, C, H, W), got %d-d", OP,
                             input->ndim);
    int64_t channels = input->shape[input->ndim - 3];
    if ((s = check_channel_vector(running_mean, "running_mean", channels, input->dtype)) != AI3_OK)
        return s;
    if ((s = check_channel_vector(running_var, "running_var", channels, input->dtype)) != AI3_OK)
        return s;
    if (weight && (s = check_channel_vector(weight, "weight", channels, input->dtype)) != AI3_OK)
        return s;
    if (bias && (s = check_channel_vector(bias, "bias", channels, input->dtype)) != AI3_OK)
        return s;
    if (!(eps > 0) || isinf(eps))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: eps must be positive and finite, got %g", OP, eps);
    return AI3_OK;
}

ai3_status ai3_batchnorm2d(const char *algorithm, const ai3_tensor *input,
                           const ai3_tensor *running_mean, const ai3_tensor *running_var,
                           const ai3_tensor *weight, const ai3_tensor *bias, double eps,
                           ai3_tensor *output) {
    ai3_status s = check(input, running_mean, running_var, weight, bias, eps);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, input->ndim, input->shape, OP)) != AI3_OK)
        return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_BATCHNORM2D, algorithm, input, &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    ai3_tensor in4 = ai3_batched_4d(input), out4 = ai3_batched_4d(output);
    return ((ai3_batchnorm2d_fn)found)(&in4, running_mean, running_var, weight, bias, eps, &out4);
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    const ai3_tensor *w[4];
    for (int i = 0; i < 4; i++) w[i] = ai3_plan_weight(plan, i);
    ai3_status s = check(in[0], w[0], w[1], w[2], w[3], plan->params.batchnorm2d.eps);
    return s != AI3_OK ? s : ai3_same_shape(plan, n, in, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    const ai3_tensor *w[4];
    for (int i = 0; i < 4; i++) w[i] = ai3_plan_weight(plan, i);
    return ai3_batchnorm2d(plan->algorithm, in[0], w[0], w[1], w[2], w[3],
                           plan->params.batchnorm2d.eps, out);
}

const ai3_op_impl ai3_batchnorm2d_impl = {.output_shape = plan_shape, .run = plan_run,
                                          .in_place = true};
