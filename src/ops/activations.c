/* The elementwise activations (hardtanh, sigmoid, hardsigmoid, hardswish,
 * silu, gelu): argument checks and dispatch. Output has the input's shape. */
#include "internal.h"

#include <math.h>

/* Checks input and output and finds the algorithm; *fn stays NULL when
 * there is nothing to compute (an empty tensor). */
static ai3_status prepare(ai3_op op, const char *algorithm, const ai3_tensor *input,
                          ai3_tensor *output, ai3_algorithm_fn *fn) {
    const char *name = ai3_op_name(op);
    *fn = NULL;
    ai3_status s = ai3_check_tensor(input, "input", name);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input->dtype, input->ndim, input->shape, name)) != AI3_OK)
        return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(op, algorithm, input->dtype, &found)) != AI3_OK) return s;
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
    return ((ai3_activation_fn)fn)(input, output);
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
