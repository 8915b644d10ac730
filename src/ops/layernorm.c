/* layernorm: argument checks and dispatch. */
#include "internal.h"

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

ai3_status ai3_layernorm(const char *algorithm, const ai3_tensor *input, int normalized_ndim,
                         const ai3_tensor *weight, const ai3_tensor *bias, double eps,
                         ai3_tensor *output) {
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
    if ((s = ai3_check_output(output, input->dtype, input->ndim, input->shape, OP)) != AI3_OK)
        return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_LAYERNORM, algorithm, input->dtype, &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    return ((ai3_layernorm_fn)found)(input, normalized_ndim, weight, bias, eps, output);
}
