/* cat: argument checks, output shape and dispatch. */
#include "internal.h"
#include "op.h"

#include <stdio.h>

static const char *const OP = "cat";

ai3_status ai3_cat_output_shape(const ai3_tensor *const *inputs, int n_inputs, int dim,
                                int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]) {
    if (!inputs) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: inputs is NULL", OP);
    if (n_inputs < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: needs at least one input, got %d",
                             OP, n_inputs);
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", OP);
    char what[32];
    for (int i = 0; i < n_inputs; i++) {
        snprintf(what, sizeof what, "input %d", i);
        ai3_status s = ai3_check_tensor(inputs[i], what, OP);
        if (s != AI3_OK) return s;
    }
    const ai3_tensor *first = inputs[0];
    int nd = first->ndim;
    if (nd < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: inputs must be at least 1-d", OP);
    int d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: dim %d out of range for %d-d inputs", OP, dim, nd);
    for (int i = 0; i < nd; i++) out_shape[i] = first->shape[i];
    for (int k = 1; k < n_inputs; k++) {
        const ai3_tensor *t = inputs[k];
        if (t->dtype != first->dtype)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: input %d has another dtype than input 0", OP, k);
        if (t->ndim != nd)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: input %d is %d-d but input 0 is %d-d", OP, k, t->ndim, nd);
        for (int i = 0; i < nd; i++)
            if (i != d && t->shape[i] != first->shape[i])
                return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                     "%s: input %d has size %lld in dimension %d, input 0 has "
                                     "%lld (only dimension %d may differ)",
                                     OP, k, (long long)t->shape[i], i,
                                     (long long)first->shape[i], d);
        if (out_shape[d] > AI3_MAX_ELEMENTS - t->shape[d]) /* (sizes are at most that) */
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: the joined size along dimension %d is above 2^56", OP, d);
        out_shape[d] += t->shape[d];
    }
    *out_ndim = nd;
    return AI3_OK;
}

ai3_status ai3_cat(const char *algorithm, const ai3_tensor *const *inputs, int n_inputs, int dim,
                   ai3_tensor *output) {
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_cat_output_shape(inputs, n_inputs, dim, &nd, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, inputs[0], nd, shape, OP)) != AI3_OK) return s;
    for (int k = 0; k < n_inputs; k++)
        if (inputs[k]->data && inputs[k]->data == output->data && ai3_tensor_numel(output) > 0)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: output must not share memory with input %d", OP, k);
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_CAT, algorithm, inputs[0], &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    return ((ai3_cat_fn)found)(inputs, n_inputs, dim < 0 ? dim + nd : dim, output);
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    return ai3_cat_output_shape(in, n, plan->params.cat.dim, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_cat(plan->algorithm, in, n, plan->params.cat.dim, out);
}

const ai3_op_impl ai3_cat_impl = {.output_shape = plan_shape, .run = plan_run};
