/* flatten: argument checks, output shape and dispatch. */
#include "internal.h"
#include "op.h"

static const char *const OP = "flatten";

ai3_status ai3_flatten_output_shape(const ai3_tensor *input, int start_dim, int end_dim,
                                    int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", OP);
    if (input->ndim == 0) { /* like torch.flatten: a scalar becomes 1-d */
        if (start_dim < -1 || start_dim > 0 || end_dim < -1 || end_dim > 0)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "flatten: dimensions out of range for a 0-d input");
        out_shape[0] = 1;
        *out_ndim = 1;
        return AI3_OK;
    }
    int nd = input->ndim;
    int start = start_dim < 0 ? start_dim + nd : start_dim;
    int end = end_dim < 0 ? end_dim + nd : end_dim;
    if (start < 0 || start >= nd || end < 0 || end >= nd)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "flatten: start_dim %d / end_dim %d out of range for a %d-d input",
                             start_dim, end_dim, nd);
    if (start > end)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "flatten: start_dim (%d) comes after end_dim (%d)", start_dim,
                             end_dim);
    int o = 0;
    for (int i = 0; i < start; i++) out_shape[o++] = input->shape[i];
    int64_t merged = 1;
    for (int i = start; i <= end; i++) merged *= input->shape[i];
    out_shape[o++] = merged;
    for (int i = end + 1; i < nd; i++) out_shape[o++] = input->shape[i];
    *out_ndim = o;
    return AI3_OK;
}

ai3_status ai3_flatten(const char *algorithm, const ai3_tensor *input, int start_dim,
                       int end_dim, ai3_tensor *output) {
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_flatten_output_shape(input, start_dim, end_dim, &ndim, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, ndim, shape, OP)) != AI3_OK) return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_FLATTEN, algorithm, input, &found)) != AI3_OK) return s;
    ai3_unary_fn fn = (ai3_unary_fn)found;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    return fn(input, output);
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    const ai3_flatten_params *p = &plan->params.flatten;
    return ai3_flatten_output_shape(in[0], p->start_dim, p->end_dim, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    const ai3_flatten_params *p = &plan->params.flatten;
    return ai3_flatten(plan->algorithm, in[0], p->start_dim, p->end_dim, out);
}

const ai3_op_impl ai3_flatten_impl = {.output_shape = plan_shape, .run = plan_run};
