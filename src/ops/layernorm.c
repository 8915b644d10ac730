/* layernorm: argument checks and dispatch. */
#include "internal.h"
#include "op.h"

#include <math.h>

static const char *const OP = "layernorm";

/* weight or bias: the shape of the input's last normalized_ndim dims. */
static ai3_status check_affine(const ai3_tensor *t, const char *what, const ai3_tensor *input,
                               int normalized_ndim) {
    ai3_status s = ai3_check_tensor(t, what, OP);
    if (s != AI3_OK) return s;
    int ok = t->ndim == normalized_ndim && t->dtype == input->dtype;
    for (int i = 0; ok && i < normalized_ndim; i++)
        ok = t->shape[i] == input->shape[input->ndim - normalized_ndim + i];
    if (!ok)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: %s must have the input's dtype and the shape of its last %d "
                             "dimension(s)",
                             OP, what, normalized_ndim);
    return AI3_OK;
}

static ai3_status check(const ai3_tensor *input, int normalized_ndim, const ai3_tensor *weight,
                        const ai3_tensor *bias, double eps) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    if (normalized_ndim < 1 || normalized_ndim > input->ndim)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: normalized_ndim must be in 1..%d for a %d-d input, got %d", OP,
                             input->ndim, input->ndim, normalized_ndim);
    if (weight && (s = check_affine(weight, "weight", input, normalized_ndim)) != AI3_OK) return s;
    if (bias && (s = check_affine(bias, "bias", input, normalized_ndim)) != AI3_OK) return s;
    if (!(eps > 0) || isinf(eps))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: eps must be positive and finite, got %g", OP, eps);
    return AI3_OK;
}

ai3_status ai3_layernorm(const char *algorithm, const ai3_tensor *input, int normalized_ndim,
                         const ai3_tensor *weight, const ai3_tensor *bias, double eps,
                         ai3_tensor *output) {
    ai3_status s = check(input, normalized_ndim, weight, bias, eps);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, input->ndim, input->shape, OP)) != AI3_OK)
        return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_LAYERNORM, algorithm, input, &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    return ((ai3_layernorm_fn)found)(input, normalized_ndim, weight, bias, eps, output);
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    const ai3_layernorm_params *p = &plan->params.layernorm;
    ai3_status s = check(in[0], p->normalized_ndim, ai3_plan_weight(plan, 0),
                         ai3_plan_weight(plan, 1), p->eps);
    return s != AI3_OK ? s : ai3_same_shape(plan, n, in, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    const ai3_layernorm_params *p = &plan->params.layernorm;
    return ai3_layernorm(plan->algorithm, in[0], p->normalized_ndim, ai3_plan_weight(plan, 0),
                         ai3_plan_weight(plan, 1), p->eps, out);
}

const ai3_op_impl ai3_layernorm_impl = {.output_shape = plan_shape, .run = plan_run,
                                        .in_place = true};
