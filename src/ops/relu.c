/* relu: argument checks and dispatch. */
#include "internal.h"

ai3_status ai3_relu(const char *algorithm, const ai3_tensor *input, ai3_tensor *output) {
    ai3_status s = ai3_check_tensor(input, "input", "relu");
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input->dtype, input->ndim, input->shape, "relu")) != AI3_OK)
        return s;
    ai3_relu_fn fn = (ai3_relu_fn)ai3_lookup_algorithm(AI3_OP_RELU, algorithm, input->dtype);
    if (!fn) return AI3_ERROR_UNKNOWN_ALGORITHM;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    return fn(input, output);
}
