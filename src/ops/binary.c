/* add and mul with broadcasting: argument checks, the broadcast shape, and
 * dispatch. Before the call the three shapes are simplified without
 * changing the result: padded to one ndim with leading 1s, size-1 output
 * dimensions dropped, and neighbouring dimensions merged where each operand
 * is either whole in both or broadcast in both (so (N, C, H, W) + (N, C, 1, 1)
 * reaches the algorithm as (N·C, H·W) + (N·C, 1)). */
#include "internal.h"
#include "op.h"

#include <string.h>

ai3_status ai3_broadcast_output_shape(const ai3_tensor *a, const ai3_tensor *b, int *out_ndim,
                                      int64_t out_shape[AI3_MAX_DIMS]) {
    static const char *const OP = "broadcast";
    ai3_status s = ai3_check_tensor(a, "a", OP);
    if (s != AI3_OK || (s = ai3_check_tensor(b, "b", OP)) != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", OP);
    int nd = AI3_MAX(a->ndim, b->ndim);
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "shapes cannot be broadcast: size %lld of a and size %lld of b "
                                 "in dimension %d (counting from the end: %d)",
                                 (long long)sa, (long long)sb, i, i - nd);
        out_shape[i] = sa == 1 ? sb : sa;
    }
    *out_ndim = nd;
    return AI3_OK;
}

static ai3_status run(ai3_op op, const char *algorithm, const ai3_tensor *a,
                      const ai3_tensor *b, ai3_tensor *output) {
    const char *name = ai3_op_name(op);
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_broadcast_output_shape(a, b, &nd, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_same_dtype(a, b, name)) != AI3_OK) return s;
    if ((s = ai3_check_output(output, a, nd, shape, name)) != AI3_OK) return s;
    const ai3_tensor *operands[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        const ai3_tensor *t = operands[k];
        /* (empty tensors share no elements, whatever their addresses) */
        if (t->data && t->data == output->data && ai3_tensor_numel(output) > 0 &&
            (t->ndim != nd || memcmp(t->shape, shape, sizeof(int64_t) * (size_t)nd) != 0))
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: output may share memory with %s only when it has the "
                                 "output's shape",
                                 name, k ? "b" : "a");
    }
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(op, algorithm, a, &found)) != AI3_OK) return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;

    ai3_tensor va = *a, vb = *b, vo = *output;
    int m = 0;
    for (int i = 0; i < nd; i++) {
        if (shape[i] == 1) continue;
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        /* Merge with the previous kept dimension when both operands keep
         * their kind (whole or broadcast) across the two. */
        if (m > 0 && (va.shape[m - 1] == 1) == (sa == 1) && (vb.shape[m - 1] == 1) == (sb == 1)) {
            va.shape[m - 1] *= sa;
            vb.shape[m - 1] *= sb;
            vo.shape[m - 1] *= shape[i];
        } else {
            va.shape[m] = sa;
            vb.shape[m] = sb;
            vo.shape[m] = shape[i];
            m++;
        }
    }
    if (m == 0) va.shape[m] = vb.shape[m] = vo.shape[m] = 1, m = 1;
    va.ndim = vb.ndim = vo.ndim = m;
    return ((ai3_binary_fn)found)(&va, &vb, &vo);
}

ai3_status ai3_add(const char *algorithm, const ai3_tensor *a, const ai3_tensor *b,
                   ai3_tensor *output) {
    return run(AI3_OP_ADD, algorithm, a, b, output);
}

ai3_status ai3_mul(const char *algorithm, const ai3_tensor *a, const ai3_tensor *b,
                   ai3_tensor *output) {
    return run(AI3_OP_MUL, algorithm, a, b, output);
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    return ai3_broadcast_output_shape(in[0], in[1], ndim, shape);
}

static ai3_status add_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                          ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_add(plan->algorithm, in[0], in[1], out);
}

static ai3_status mul_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                          ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_mul(plan->algorithm, in[0], in[1], out);
}

const ai3_op_impl ai3_add_impl = {.output_shape = plan_shape, .run = add_run,
                                  .in_place = true};
const ai3_op_impl ai3_mul_impl = {.output_shape = plan_shape, .run = mul_run,
                                  .in_place = true};
