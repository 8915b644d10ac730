/* softmax: argument checks and dispatch. */
#include "internal.h"

static const char *const OP = "softmax";

ai3_status ai3_softmax(const char *algorithm, const ai3_tensor *input, int dim,
                       ai3_tensor *output) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    int nd = input->ndim, span = nd > 0 ? nd : 1; /* a 0-d input has one dimension to name */
    int d = dim < 0 ? dim + span : dim;
    if (d < 0 || d >= span)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: dim %d out of range for a %d-d input", OP, dim, nd);
    if ((s = ai3_check_output(output, input->dtype, nd, input->shape, OP)) != AI3_OK) return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_SOFTMAX, algorithm, input->dtype, &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    ai3_tensor vin = *input, vout = *output;
    if (nd == 0) {
        vin.ndim = vout.ndim = 1;
        vin.shape[0] = vout.shape[0] = 1;
    }
    return ((ai3_softmax_fn)found)(&vin, d, &vout);
}
