/* softmax: argument checks and dispatch. */
#include "internal.h"
#include "op.h"

static const char *const OP = "softmax";

/* Checks input and dim; *d is dim made non-negative. */
static ai3_status check(const ai3_tensor *input, int dim, int *d) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    int nd = input->ndim, span = nd > 0 ? nd : 1; /* a 0-d input has one dimension to name */
    *d = dim < 0 ? dim + span : dim;
    if (*d < 0 || *d >= span)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: dim %d out of range for a %d-d input", OP, dim, nd);
    return AI3_OK;
}

ai3_status ai3_softmax(const char *algorithm, const ai3_tensor *input, int dim,
                       ai3_tensor *output) {
    int d, nd = input ? input->ndim : 0;
    ai3_status s = check(input, dim, &d);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, nd, input->shape, OP)) != AI3_OK) return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_SOFTMAX, algorithm, input, &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    ai3_tensor vin = *input, vout = *output;
    if (nd == 0) {
        vin.ndim = vout.ndim = 1;
        vin.shape[0] = vout.shape[0] = 1;
    }
    return ((ai3_softmax_fn)found)(&vin, d, &vout);
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    int d;
    ai3_status s = check(in[0], plan->params.softmax.dim, &d);
    return s != AI3_OK ? s : ai3_same_shape(plan, n, in, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_softmax(plan->algorithm, in[0], plan->params.softmax.dim, out);
}

const ai3_op_impl ai3_softmax_impl = {.output_shape = plan_shape, .run = plan_run,
                                      .in_place = true};
