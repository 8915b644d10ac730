/* permute: argument checks, output shape and dispatch. Before the call the
 * shapes are simplified without changing the result: size-1 dimensions
 * dropped and input dimensions that stay neighbours, in order, merged (a
 * channel shuffle (N, g, C/g, H, W) -> (N, C/g, g, H, W) reaches the
 * algorithm as (N, g, C/g, H·W) with perm (0, 2, 1, 3)). */
#include "internal.h"
#include "op.h"

static const char *const OP = "permute";

static ai3_status normalise_perm(const ai3_tensor *input, const int *perm, int p[AI3_MAX_DIMS]) {
    int nd = input->ndim, seen[AI3_MAX_DIMS] = {0};
    if (nd > 0 && !perm)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: perm is NULL", OP);
    for (int i = 0; i < nd; i++) {
        int d = perm[i] < 0 ? perm[i] + nd : perm[i];
        if (d < 0 || d >= nd)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: perm[%d] = %d is out of range for a %d-d input", OP, i,
                                 perm[i], nd);
        if (seen[d])
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: perm is not a permutation: dimension %d appears twice", OP,
                                 d);
        seen[d] = 1;
        p[i] = d;
    }
    return AI3_OK;
}

ai3_status ai3_permute_output_shape(const ai3_tensor *input, const int *perm, int *out_ndim,
                                    int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s = ai3_check_tensor(input, "input", OP);
    if (s != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", OP);
    int p[AI3_MAX_DIMS];
    if ((s = normalise_perm(input, perm, p)) != AI3_OK) return s;
    for (int i = 0; i < input->ndim; i++) out_shape[i] = input->shape[p[i]];
    *out_ndim = input->ndim;
    return AI3_OK;
}

ai3_status ai3_permute(const char *algorithm, const ai3_tensor *input, const int *perm,
                       ai3_tensor *output) {
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_permute_output_shape(input, perm, &nd, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, nd, shape, OP)) != AI3_OK) return s;
    if (input->data && input->data == output->data && ai3_tensor_numel(output) > 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: output must not share memory with input", OP);
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_PERMUTE, algorithm, input, &found)) != AI3_OK)
        return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;

    int p[AI3_MAX_DIMS];
    normalise_perm(input, perm, p);
    /* Number the input dimensions of size > 1 in input order (r), list them
     * in output order (seq), and cut that list into groups of consecutive
     * numbers: each group is one merged dimension. */
    int r[AI3_MAX_DIMS], seq[AI3_MAX_DIMS], k = 0, n = 0;
    for (int d = 0; d < nd; d++) r[d] = input->shape[d] > 1 ? n++ : -1;
    for (int i = 0; i < nd; i++)
        if (r[p[i]] >= 0) seq[k++] = p[i];
    int n_groups = 0, first[AI3_MAX_DIMS];
    int64_t size[AI3_MAX_DIMS];
    for (int j = 0; j < k; j++) {
        if (j > 0 && r[seq[j]] == r[seq[j - 1]] + 1) {
            size[n_groups - 1] *= input->shape[seq[j]];
        } else {
            first[n_groups] = r[seq[j]];
            size[n_groups++] = input->shape[seq[j]];
        }
    }
    ai3_tensor vin = *input, vout = *output;
    int vperm[AI3_MAX_DIMS];
    if (n_groups == 0) { /* a single element */
        vin.shape[0] = vout.shape[0] = 1;
        vperm[0] = 0;
        n_groups = 1;
    } else {
        for (int g = 0; g < n_groups; g++) {
            int rank = 0; /* the group's place in input order */
            for (int h = 0; h < n_groups; h++) rank += first[h] < first[g];
            vin.shape[rank] = size[g];
            vout.shape[g] = size[g];
            vperm[g] = rank;
        }
    }
    vin.ndim = vout.ndim = n_groups;
    return ((ai3_permute_fn)found)(&vin, vperm, &vout);
}

/* --- plans (ops/plan.c) --- */

/* The permutation must have one entry per input dimension. */
static ai3_status check_rank(const ai3_plan *plan, const ai3_tensor *input) {
    if (plan->params.permute.ndim != input->ndim)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: %d dimensions in the order for an input of %d", OP,
                             plan->params.permute.ndim, input->ndim);
    return AI3_OK;
}

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    ai3_status s = check_rank(plan, in[0]);
    return s != AI3_OK ? s : ai3_permute_output_shape(in[0], plan->params.permute.perm, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    ai3_status s = check_rank(plan, in[0]);
    return s != AI3_OK ? s : ai3_permute(plan->algorithm, in[0], plan->params.permute.perm, out);
}

const ai3_op_impl ai3_permute_impl = {.output_shape = plan_shape, .run = plan_run};
