/*
 * What each operation gives the generic plans (ops/plan.c): every ops/<op>.c
 * defines `const ai3_op_impl ai3_<op>_impl`, built on its typed functions.
 * The table of them is generated from ai3_ops.inc.
 */
#ifndef AI3_OPS_OP_H
#define AI3_OPS_OP_H

#include "internal.h"

#include "plan.h"

typedef struct ai3_op_impl {
    /* NULL, or makes plan->state from the caller's weights (then the plan
     * keeps no copies of its own) and the input hint (may be NULL). */
    ai3_status (*create)(ai3_plan *plan, const ai3_tensor *const *weights, int n_weights,
                         const ai3_tensor *hint);
    void (*destroy)(ai3_plan *plan); /* NULL: nothing beyond the copies */
    ai3_status (*output_shape)(const ai3_plan *plan, int n_inputs, const ai3_tensor *const *in,
                               int *ndim, int64_t *shape);
    /* NULL: no workspace */
    ai3_status (*workspace_size)(const ai3_plan *plan, const ai3_tensor *const *in, size_t *bytes);
    ai3_status (*run)(const ai3_plan *plan, int n_inputs, const ai3_tensor *const *in,
                      ai3_tensor *out, void *workspace, size_t workspace_bytes);
    const char *(*algorithm)(const ai3_plan *plan); /* NULL: plan->algorithm */
    /* The output may be the first input's memory (or the second's, for add
     * and mul): elementwise operations, which the graph runs in place. */
    bool in_place;
    /* Computes bfloat16 CPU tensors itself (conv2d, linear). The others get
     * float32 copies from the generic plans (ops/plan.c): weights widened
     * at create, inputs widened and the output rounded back at each run. */
    bool bf16;
} ai3_op_impl;

#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    extern const ai3_op_impl ai3_##name##_impl;
#include "ai3_ops.inc"
#undef AI3_OP

/* The weight slot i of a plan, or NULL when absent. */
static inline const ai3_tensor *ai3_plan_weight(const ai3_plan *plan, int i) {
    return plan->weights[i].data || plan->weights[i].ndim ? &plan->weights[i] : NULL;
}

/* A conv2d (linear) plan's run with the epilogue (internal.h) applied to its
 * output: a residual add and an activation fused into the operation by
 * graphs, on the CPU. The residual has the output's shape and dtype. */
ai3_status ai3_conv2d_run_epilogue(const ai3_plan *plan, const ai3_tensor *input,
                                   ai3_tensor *output, void *workspace, size_t workspace_bytes,
                                   const ai3_epilogue *epilogue);
ai3_status ai3_linear_run_epilogue(const ai3_plan *plan, const ai3_tensor *input,
                                   ai3_tensor *output, const ai3_epilogue *epilogue);

/* ai3_plan_run_stream, then `activation` (a plan of relu, hardtanh,
 * sigmoid, hardsigmoid, hardswish, silu or gelu; NULL: none) over the
 * output in place. On CUDA the activation is fused into the epilogue of
 * conv2d and linear (with the bias, one pass over the output). */
ai3_status ai3_plan_run_fused(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                              ai3_tensor *output, void *workspace, size_t workspace_bytes,
                              void *stream, const ai3_plan *activation);

/* Output shape = the first input's shape (elementwise operations). */
ai3_status ai3_same_shape(const ai3_plan *plan, int n_inputs, const ai3_tensor *const *in,
                          int *ndim, int64_t *shape);

/* The impl of an operation with no parameters or weights whose typed
 * function is `ai3_status fn(const char *algorithm, const ai3_tensor *input,
 * ai3_tensor *output)` and whose output has the input's shape. */
#define AI3_UNARY_OP_IMPL(name)                                                             \
    static ai3_status name##_plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in, \
                                      ai3_tensor *out, void *ws, size_t wsb) {              \
        return ai3_##name(plan->algorithm, in[0], out);                                     \
    }                                                                                       \
    const ai3_op_impl ai3_##name##_impl = {.output_shape = ai3_same_shape,                  \
                                           .run = name##_plan_run, .in_place = true};

#endif
