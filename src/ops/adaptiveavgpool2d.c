/* adaptiveavgpool2d: argument checks, output shape and dispatch. */
#include "internal.h"
#include "op.h"

static const char *const OP = "adaptiveavgpool2d";

ai3_status ai3_adaptiveavgpool2d_output_shape(const ai3_tensor *input, int64_t out_h,
                                              int64_t out_w, int *out_ndim,
                                              int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", OP);
    if (input->ndim != 3 && input->ndim != 4)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: input must be 3-d (C, H, W) or 4-d (N, C, H, W), got %d-d", OP,
                             input->ndim);
    if (out_h < 1 || out_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: output size must be >= 1, got (%lld, %lld)", OP,
                             (long long)out_h, (long long)out_w);
    int batched = input->ndim == 4;
    if (input->shape[batched + 1] < 1 || input->shape[batched + 2] < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: input has an empty spatial size", OP);
    /* the bins' bounds are i · size / out (i < out) and the output has
     * n · c · out_h · out_w elements: all within 2^56 (found by the fuzzer) */
    int64_t planes = batched ? ai3_size_mul(input->shape[0], input->shape[1]) : input->shape[0];
    if (ai3_size_mul(out_h, input->shape[batched + 1]) < 0 ||
        ai3_size_mul(out_w, input->shape[batched + 2]) < 0 ||
        ai3_size_mul(ai3_size_mul(planes, out_h), out_w) < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: output size (%lld, %lld) too large", OP, (long long)out_h,
                             (long long)out_w);
    int i = 0;
    if (batched) out_shape[i++] = input->shape[0];
    out_shape[i++] = input->shape[batched];
    out_shape[i++] = out_h;
    out_shape[i++] = out_w;
    *out_ndim = i;
    return AI3_OK;
}

ai3_status ai3_adaptiveavgpool2d(const char *algorithm, const ai3_tensor *input, int64_t out_h,
                                 int64_t out_w, ai3_tensor *output) {
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_adaptiveavgpool2d_output_shape(input, out_h, out_w, &ndim, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, ndim, shape, OP)) != AI3_OK) return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_ADAPTIVEAVGPOOL2D, algorithm, input, &found)) != AI3_OK) return s;
    ai3_unary_fn fn = (ai3_unary_fn)found;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    ai3_tensor in4 = ai3_batched_4d(input), out4 = ai3_batched_4d(output);
    return fn(&in4, &out4);
}

/* --- plans (ops/plan.c) --- */

/* The plan's output size for input x (0 keeps the input's size). */
static void out_size(const ai3_plan *plan, const ai3_tensor *x, int64_t *h, int64_t *w) {
    *h = plan->params.adaptiveavgpool2d.out_h;
    *w = plan->params.adaptiveavgpool2d.out_w;
    if (x->ndim >= 2) {
        if (!*h) *h = x->shape[x->ndim - 2];
        if (!*w) *w = x->shape[x->ndim - 1];
    }
}

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    int64_t h, w;
    out_size(plan, in[0], &h, &w);
    return ai3_adaptiveavgpool2d_output_shape(in[0], h, w, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    int64_t h, w;
    out_size(plan, in[0], &h, &w);
    return ai3_adaptiveavgpool2d(plan->algorithm, in[0], h, w, out);
}

const ai3_op_impl ai3_adaptiveavgpool2d_impl = {.output_shape = plan_shape, .run = plan_run};
