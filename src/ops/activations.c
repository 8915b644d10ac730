/* The elementwise activations (hardtanh, sigmoid, hardsigmoid, hardswish,
 * silu, gelu): argument checks and dispatch. Output has the input's shape. */
#include "internal.h"
#include "op.h"

#include <math.h>

/* Checks input and output and finds the algorithm; *fn stays NULL when
 * there is nothing to compute (an empty tensor). */
static ai3_status prepare(ai3_op op, const char *algorithm, const ai3_tensor *input,
                          ai3_tensor *output, ai3_algorithm_fn *fn) {
    const char *name = ai3_op_name(op);
    *fn = NULL;
    ai3_status s = ai3_check_tensor(input, "input", name);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, input->ndim, input->shape, name)) != AI3_OK)
        return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(op, algorithm, input, &found)) != AI3_OK) return s;
    if (ai3_tensor_numel(output) > 0) *fn = found;
    return AI3_OK;
}

ai3_status ai3_hardtanh(const char *algorithm, const ai3_tensor *input, double min_val,
                        double max_val, ai3_tensor *output) {
    if (isnan(min_val) || isnan(max_val) || min_val > max_val)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "hardtanh: min_val (%g) must not be greater than max_val (%g)",
                             min_val, max_val);
    ai3_algorithm_fn fn;
    ai3_status s = prepare(AI3_OP_HARDTANH, algorithm, input, output, &fn);
    if (s != AI3_OK || !fn) return s;
    return ((ai3_hardtanh_fn)fn)(input, min_val, max_val, output);
}

static ai3_status activation(ai3_op op, const char *algorithm, const ai3_tensor *input,
                             ai3_tensor *output) {
    ai3_algorithm_fn fn;
    ai3_status s = prepare(op, algorithm, input, output, &fn);
    if (s != AI3_OK || !fn) return s;
    return ((ai3_unary_fn)fn)(input, output);
}

ai3_status ai3_sigmoid(const char *algorithm, const ai3_tensor *input, ai3_tensor *output) {
    return activation(AI3_OP_SIGMOID, algorithm, input, output);
}

ai3_status ai3_hardsigmoid(const char *algorithm, const ai3_tensor *input, ai3_tensor *output) {
    return activation(AI3_OP_HARDSIGMOID, algorithm, input, output);
}

ai3_status ai3_hardswish(const char *algorithm, const ai3_tensor *input, ai3_tensor *output) {
    return activation(AI3_OP_HARDSWISH, algorithm, input, output);
}

ai3_status ai3_silu(const char *algorithm, const ai3_tensor *input, ai3_tensor *output) {
    return activation(AI3_OP_SILU, algorithm, input, output);
}

ai3_status ai3_gelu(const char *algorithm, const ai3_tensor *input, int tanh_approximation,
                    ai3_tensor *output) {
    ai3_algorithm_fn fn;
    ai3_status s = prepare(AI3_OP_GELU, algorithm, input, output, &fn);
    if (s != AI3_OK || !fn) return s;
    return ((ai3_gelu_fn)fn)(input, tanh_approximation != 0, output);
}

/* --- plans (ops/plan.c) --- */

static ai3_status hardtanh_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                 int *ndim, int64_t *shape) {
    double lo = plan->params.hardtanh.min_val, hi = plan->params.hardtanh.max_val;
    if (isnan(lo) || isnan(hi) || lo > hi)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "hardtanh: min_val (%g) must not be greater than max_val (%g)", lo, hi);
    return ai3_same_shape(plan, n, in, ndim, shape);
}

static ai3_status hardtanh_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                               ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_hardtanh(plan->algorithm, in[0], plan->params.hardtanh.min_val,
                        plan->params.hardtanh.max_val, out);
}

const ai3_op_impl ai3_hardtanh_impl = {.output_shape = hardtanh_shape, .run = hardtanh_run,
                                       .in_place = true};

static ai3_status gelu_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_gelu(plan->algorithm, in[0], plan->params.gelu.tanh_approximation, out);
}

const ai3_op_impl ai3_gelu_impl = {.output_shape = ai3_same_shape, .run = gelu_run,
                                   .in_place = true};

AI3_UNARY_OP_IMPL(sigmoid)
AI3_UNARY_OP_IMPL(hardsigmoid)
AI3_UNARY_OP_IMPL(hardswish)
AI3_UNARY_OP_IMPL(silu)
