/* mean over dimensions: argument checks, output shape and dispatch.
 * Before the call the shapes are simplified without changing the result:
 * size-1 dimensions dropped and neighbouring dimensions merged where both
 * are reduced or both kept, so a mean over (H, W) of (N, C, H, W) reaches
 * the algorithm as (N·C, H·W) reduced over dimension 1. */
#include "internal.h"
#include "op.h"

static const char *const OP = "mean";

/* Marks the reduced dimensions of input in reduced[]. */
static ai3_status reduced_dims(const ai3_tensor *input, const int *dims, int n_dims,
                               int reduced[AI3_MAX_DIMS]) {
    int nd = input->ndim;
    if (n_dims < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: n_dims must be >= 0, got %d", OP,
                             n_dims);
    if (n_dims > 0 && !dims)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: dims is NULL but n_dims is %d", OP,
                             n_dims);
    for (int i = 0; i < nd; i++) reduced[i] = n_dims == 0;
    for (int k = 0; k < n_dims; k++) {
        int d = dims[k] < 0 ? dims[k] + nd : dims[k];
        if (d < 0 || d >= nd)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: dimension %d out of range for a %d-d input", OP, dims[k],
                                 nd);
        if (reduced[d])
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: dimension %d appears more than once in dims", OP, d);
        reduced[d] = 1;
    }
    return AI3_OK;
}

ai3_status ai3_mean_output_shape(const ai3_tensor *input, const int *dims, int n_dims,
                                 int keepdim, int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", OP);
    int reduced[AI3_MAX_DIMS];
    if ((s = reduced_dims(input, dims, n_dims, reduced)) != AI3_OK) return s;
    int o = 0;
    for (int i = 0; i < input->ndim; i++) {
        if (!reduced[i]) out_shape[o++] = input->shape[i];
        else if (keepdim) out_shape[o++] = 1;
    }
    *out_ndim = o;
    return AI3_OK;
}

ai3_status ai3_mean(const char *algorithm, const ai3_tensor *input, const int *dims, int n_dims,
                    int keepdim, ai3_tensor *output) {
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_mean_output_shape(input, dims, n_dims, keepdim, &nd, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, nd, shape, OP)) != AI3_OK) return s;
    if (input->data && input->data == output->data && ai3_tensor_numel(output) > 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: output must not share memory with input", OP);
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_MEAN, algorithm, input, &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;

    int reduced[AI3_MAX_DIMS];
    reduced_dims(input, dims, n_dims, reduced);
    ai3_tensor vin = *input, vout = *output;
    if (!vin.data) vin.data = ai3_shape_only; /* empty, as in ai3_batched_4d */
    int kind[AI3_MAX_DIMS + 1], m = 0;
    for (int i = 0; i < input->ndim; i++) {
        int64_t size = input->shape[i];
        if (size == 1) continue;
        if (m > 0 && kind[m - 1] == reduced[i]) {
            vin.shape[m - 1] *= size;
        } else {
            vin.shape[m] = size;
            kind[m++] = reduced[i];
        }
    }
    int has_reduced = 0;
    for (int i = 0; i < m; i++) has_reduced |= kind[i];
    if (!has_reduced) { /* only size-1 dimensions reduced: a trailing 1 stands for them */
        vin.shape[m] = 1;
        kind[m++] = 1;
    }
    int vdims[AI3_MAX_DIMS], nv = 0;
    for (int i = 0; i < m; i++) {
        vout.shape[i] = kind[i] ? 1 : vin.shape[i];
        if (kind[i]) vdims[nv++] = i;
    }
    vin.ndim = vout.ndim = m;
    return ((ai3_mean_fn)found)(&vin, vdims, nv, &vout);
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    const ai3_mean_params *p = &plan->params.mean;
    return ai3_mean_output_shape(in[0], p->dims, p->n_dims, p->keepdim, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    const ai3_mean_params *p = &plan->params.mean;
    return ai3_mean(plan->algorithm, in[0], p->dims, p->n_dims, p->keepdim, out);
}

const ai3_op_impl ai3_mean_impl = {.output_shape = plan_shape, .run = plan_run};
