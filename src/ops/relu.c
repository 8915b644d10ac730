/* relu: argument checks and dispatch. */
#include "internal.h"
#include "op.h"

ai3_status ai3_relu(const char *algorithm, const ai3_tensor *input, ai3_tensor *output) {
    ai3_status s = ai3_check_tensor(input, "input", "relu");
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, input->ndim, input->shape, "relu")) != AI3_OK)
        return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_RELU, algorithm, input, &found)) != AI3_OK) return s;
    ai3_unary_fn fn = (ai3_unary_fn)found;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    return fn(input, output);
}

/* --- plans (ops/plan.c) --- */

AI3_UNARY_OP_IMPL(relu)
