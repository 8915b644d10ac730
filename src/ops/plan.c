/* Plans of any operation (ai3_plan_*): argument checks, weight copies, and
 * dispatch to each operation's ai3_op_impl (ops/<op>.c). */
#include "op.h"
#include "bf16.h"
#include "cuda_backend.h"

#include <stdio.h>
#include <string.h>

/* Each operation's row of ai3_ops.inc and its impl (ops/<op>.c). */
static const struct {
    const ai3_op_impl *impl;
    int n_inputs, n_weights;
} ops[AI3_OP_COUNT] = {
#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    {&ai3_##name##_impl, n_inputs, n_weights},
#include "ai3_ops.inc"
#undef AI3_OP
};

int ai3_op_num_inputs(ai3_op op) { return (unsigned)op < AI3_OP_COUNT ? ops[op].n_inputs : 0; }
int ai3_op_num_weights(ai3_op op) { return (unsigned)op < AI3_OP_COUNT ? ops[op].n_weights : 0; }
bool ai3_op_in_place(ai3_op op) { return (unsigned)op < AI3_OP_COUNT && ops[op].impl->in_place; }

ai3_status ai3_same_shape(const ai3_plan *plan, int n_inputs, const ai3_tensor *const *in,
                          int *ndim, int64_t *shape) {
    *ndim = in[0]->ndim;
    for (int i = 0; i < in[0]->ndim; i++) shape[i] = in[0]->shape[i];
    return AI3_OK;
}

static ai3_status copy_weight(const ai3_plan *plan, const ai3_tensor *t, ai3_tensor *copy) {
    ai3_status s = ai3_require_cpu(plan->op, plan->algorithm, t);
    return s != AI3_OK ? s : ai3_tensor_copy(t, copy);
}

/* Checks the weights and finds their device: every present weight valid, on
 * one device, of one dtype. *first is the first present one (or NULL). */
static ai3_status check_weights(ai3_op op, int n, const ai3_tensor *const *weights,
                                const ai3_tensor **first) {
    static const char *const what[] = {"weight 0", "weight 1", "weight 2", "weight 3"};
    *first = NULL;
    for (int i = 0; i < n; i++) {
        if (!weights[i]) continue;
        ai3_status s = ai3_check_tensor(weights[i], what[i], ai3_op_name(op));
        if (s == AI3_OK && *first) s = ai3_check_same_dtype(*first, weights[i], ai3_op_name(op));
        if (s != AI3_OK) return s;
        if (!*first) *first = weights[i];
    }
    return AI3_OK;
}

/* --- bfloat16 on the CPU for operations that compute in float32 ----------------
 * (memory-bound ones: pooling, elementwise, normalisation, ...). Their
 * bfloat16 weights are widened once, at create; at each run the inputs are
 * widened into the workspace, the operation runs on float32 views there,
 * and its float32 output is rounded into the output. */

static bool widened(ai3_op op, const ai3_tensor *t) {
    return t && t->device == AI3_DEVICE_CPU && t->dtype == AI3_BFLOAT16 && !ops[op].impl->bf16;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

#define WIDENED_MAX_INPUTS 64

/* Float32 copies of the present weights into copies[] (pointers in
 * `widened_weights`); the caller frees their data. */
static ai3_status widen_weights(int n, const ai3_tensor *const *weights, ai3_tensor *copies,
                                const ai3_tensor **widened_weights) {
    for (int i = 0; i < n; i++) {
        widened_weights[i] = NULL;
        copies[i].data = NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!weights[i]) continue;
        if (weights[i]->dtype != AI3_BFLOAT16) { /* (float32 statistics of a batchnorm2d) */
            widened_weights[i] = weights[i];
            continue;
        }
        float *data = ai3_alloc(sizeof(float) * (size_t)ai3_tensor_numel(weights[i]));
        if (!data) return AI3_ERROR_OUT_OF_MEMORY;
        ai3_bf16_tensor_to_float(weights[i], data, &copies[i]);
        widened_weights[i] = &copies[i];
    }
    return AI3_OK;
}

/* The float32 views of n inputs and of the output (shape-only data), and
 * the workspace that widened runs need: the float inputs, the float output
 * (from *inner_offset on: the operation's own workspace). */
static ai3_status widened_layout(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                 ai3_tensor *views, ai3_tensor *out_view, size_t *inner_offset,
                                 size_t *bytes) {
    if (n > WIDENED_MAX_INPUTS)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: bfloat16 on the CPU with more "
                             "than %d inputs", ai3_op_name(plan->op), WIDENED_MAX_INPUTS);
    size_t used = 0;
    const ai3_tensor *view_ptrs[WIDENED_MAX_INPUTS];
    for (int i = 0; i < n; i++) {
        views[i] = *in[i];
        views[i].dtype = AI3_FLOAT32;
        views[i].data = ai3_shape_only;
        view_ptrs[i] = &views[i];
        used += align64(sizeof(float) * (size_t)ai3_tensor_numel(in[i]));
    }
    *out_view = views[0];
    const ai3_op_impl *impl = ops[plan->op].impl;
    ai3_status s = impl->output_shape(plan, n, view_ptrs, &out_view->ndim, out_view->shape);
    if (s != AI3_OK) return s;
    used += align64(sizeof(float) * (size_t)ai3_tensor_numel(out_view));
    *inner_offset = used;
    size_t inner = 0;
    if (impl->workspace_size && (s = impl->workspace_size(plan, view_ptrs, &inner)) != AI3_OK)
        return s;
    *bytes = used + inner;
    return AI3_OK;
}

/* The plan's run on float32 copies of bfloat16 inputs (see above). */
static ai3_status run_widened(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                              ai3_tensor *output, void *workspace, size_t workspace_bytes) {
    const char *name = ai3_op_name(plan->op);
    ai3_tensor views[WIDENED_MAX_INPUTS], out_view;
    size_t inner_offset, need;
    ai3_status s = widened_layout(plan, n, in, views, &out_view, &inner_offset, &need);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, in[0], out_view.ndim, out_view.shape, name)) != AI3_OK)
        return s;
    void *owned = NULL;
    if (workspace && workspace_bytes < need)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: the workspace has %zu bytes, the plan needs %zu", name,
                             workspace_bytes, need);
    if (!workspace && !(workspace = owned = ai3_alloc(need))) return AI3_ERROR_OUT_OF_MEMORY;
    const ai3_tensor *view_ptrs[WIDENED_MAX_INPUTS];
    char *at = workspace;
    for (int i = 0; i < n; i++) {
        ai3_bf16_tensor_to_float(in[i], (float *)at, &views[i]);
        view_ptrs[i] = &views[i];
        at += align64(sizeof(float) * (size_t)ai3_tensor_numel(in[i]));
    }
    out_view.data = at;
    s = ops[plan->op].impl->run(plan, n, view_ptrs, &out_view, (char *)workspace + inner_offset,
                                need - inner_offset);
    if (s == AI3_OK) ai3_float_to_bf16_n(out_view.data, output->data, ai3_tensor_numel(output));
    ai3_free(owned);
    return s;
}

/* The plan's weights as views of the caller's device memory, and the CUDA
 * backend's state. */
static ai3_status create_cuda_plan(ai3_plan *plan, int n, const ai3_tensor *const *weights,
                                   const ai3_tensor *hint) {
    const ai3_cuda_backend *cuda = ai3_cuda_backend_get();
    if (!cuda) return AI3_ERROR_UNSUPPORTED;
    plan->borrowed = true;
    for (int i = 0; i < n; i++)
        if (weights[i]) plan->weights[i] = *weights[i];
    return cuda->plan_create(plan, hint);
}

static ai3_status create_plan(ai3_op op, const char *algorithm, int n_weights,
                              const ai3_tensor *const *weights, const ai3_op_params *params,
                              const ai3_tensor *hint, const ai3_plan_options *options,
                              const ai3_tensor *first, ai3_plan **out);

ai3_status ai3_plan_create_with(ai3_op op, const char *algorithm, int n_weights,
                                const ai3_tensor *const *weights, const ai3_op_params *params,
                                const ai3_tensor *hint, const ai3_plan_options *options,
                                ai3_plan **out) {
    if (!out) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "plan: plan pointer is NULL");
    *out = NULL;
    if ((unsigned)op >= AI3_OP_COUNT)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "plan: unknown operation %d", (int)op);
    const char *name = ai3_op_name(op);
    if (!algorithm)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: algorithm name is NULL", name);
    if (n_weights < 0 || n_weights > ops[op].n_weights || (n_weights > 0 && !weights))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: takes 0 to %d weights, got %d%s",
                             name, ops[op].n_weights, n_weights,
                             n_weights > 0 && !weights ? " and a NULL array" : "");
    const ai3_tensor *first;
    ai3_status s = check_weights(op, n_weights, weights, &first);
    if (s != AI3_OK) return s;
    /* bfloat16 weights of an operation computed in float32: widened here */
    ai3_tensor copies[AI3_PLAN_MAX_WEIGHTS];
    const ai3_tensor *widened_weights[AI3_PLAN_MAX_WEIGHTS];
    const bool widen = n_weights > 0 && widened(op, first);
    if (widen) {
        s = widen_weights(n_weights, weights, copies, widened_weights);
        weights = widened_weights;
    }
    if (s == AI3_OK) s = create_plan(op, algorithm, n_weights, weights, params, hint, options,
                                     first, out);
    for (int i = 0; widen && i < n_weights; i++) ai3_free(copies[i].data);
    return s;
}

/* ai3_plan_create_with after the weights' checks; `first` the first present
 * weight (or NULL). */
static ai3_status create_plan(ai3_op op, const char *algorithm, int n_weights,
                              const ai3_tensor *const *weights, const ai3_op_params *params,
                              const ai3_tensor *hint, const ai3_plan_options *options,
                              const ai3_tensor *first, ai3_plan **out) {
    const char *name = ai3_op_name(op);
    ai3_status s;
    bool cuda = first && first->device == AI3_DEVICE_CUDA;
    /* the CUDA backend knows its own names (cuDNN's algorithms) */
    if (!cuda && (s = ai3_check_algorithm_name(op, algorithm)) != AI3_OK) return s;
    ai3_tensor hint_shape; /* only the shape is read */
    if (hint) {
        hint_shape = *hint;
        hint_shape.data = ai3_shape_only;
        if (first) {
            hint_shape.dtype = first->dtype;
            hint_shape.device = first->device;
        }
        hint = &hint_shape;
        if ((s = ai3_check_tensor(hint, "hint", name)) != AI3_OK) return s;
    }
    ai3_plan *plan = ai3_alloc(sizeof *plan);
    if (!plan) return AI3_ERROR_OUT_OF_MEMORY;
    memset(plan, 0, sizeof *plan);
    plan->op = op;
    snprintf(plan->algorithm, sizeof plan->algorithm, "%s", algorithm);
    if (params) plan->params = *params;
    if (options) plan->options = *options;
    plan->device = first ? first->device : AI3_DEVICE_CPU;
    plan->device_index = cuda ? first->device_index : 0;
    for (int i = 0; i < n_weights; i++)
        if (weights[i])
            plan->weight_bytes +=
                (size_t)ai3_tensor_numel(weights[i]) * ai3_dtype_size(weights[i]->dtype);
    const ai3_op_impl *impl = ops[op].impl;
    if (cuda) {
        s = create_cuda_plan(plan, n_weights, weights, hint);
    } else if (impl->create) {
        s = impl->create(plan, weights, n_weights, hint);
    } else {
        for (int i = 0; s == AI3_OK && i < n_weights; i++)
            if (weights[i]) s = copy_weight(plan, weights[i], &plan->weights[i]);
    }
    if (s != AI3_OK) {
        ai3_plan_destroy(plan);
        return s;
    }
    *out = plan;
    return AI3_OK;
}

ai3_status ai3_plan_create(ai3_op op, const char *algorithm, int n_weights,
                           const ai3_tensor *const *weights, const ai3_op_params *params,
                           const ai3_tensor *hint, ai3_plan **out) {
    return ai3_plan_create_with(op, algorithm, n_weights, weights, params, hint, NULL, out);
}

void ai3_plan_destroy(ai3_plan *plan) {
    if (!plan) return;
    if (plan->borrowed) {
        const ai3_cuda_backend *cuda = ai3_cuda_backend_get(); /* loaded when it was made */
        if (cuda && plan->state) cuda->plan_destroy(plan);
        ai3_free(plan);
        return;
    }
    if (ops[plan->op].impl->destroy) ops[plan->op].impl->destroy(plan);
    for (int i = 0; i < AI3_PLAN_MAX_WEIGHTS; i++) ai3_free(plan->weights[i].data);
    ai3_free(plan);
}

ai3_op ai3_plan_op(const ai3_plan *plan) { return plan ? plan->op : AI3_OP_COUNT; }

const char *ai3_plan_algorithm(const ai3_plan *plan) {
    if (!plan) return NULL;
    if (plan->borrowed) return ai3_cuda_backend_get()->plan_algorithm(plan);
    if (ops[plan->op].impl->algorithm) return ops[plan->op].impl->algorithm(plan);
    return strcmp(plan->algorithm, "default") == 0 ? ai3_default_algorithm(plan->op)
                                                   : plan->algorithm;
}

/* Checks the plan and its n inputs (count, each a valid tensor of one dtype
 * and device, the plan's device if it has weights). */
static ai3_status check_inputs(const ai3_plan *plan, int n, const ai3_tensor *const *in) {
    if (!plan) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "plan is NULL");
    const char *name = ai3_op_name(plan->op);
    int want = ops[plan->op].n_inputs;
    if ((want >= 0 && n != want) || (want < 0 && n < 1) || !in)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: takes %s%d input%s, got %d", name,
                             want < 0 ? "at least " : "", want < 0 ? 1 : want,
                             want == 1 || want < 0 ? "" : "s", n);
    for (int i = 0; i < n; i++) {
        char what[24];
        snprintf(what, sizeof what, "input %d", i);
        ai3_status s = ai3_check_tensor(in[i], what, name);
        if (s == AI3_OK && i > 0) s = ai3_check_same_dtype(in[0], in[i], name);
        if (s != AI3_OK) return s;
    }
    bool has_weights = false;
    for (int i = 0; i < AI3_PLAN_MAX_WEIGHTS; i++) has_weights |= ai3_plan_weight(plan, i) != NULL;
    if (has_weights && (plan->device != in[0]->device ||
                        (plan->device == AI3_DEVICE_CUDA &&
                         plan->device_index != in[0]->device_index))) {
        char weights_on[32], input_on[32];
        ai3_device_label(plan->device, plan->device_index, weights_on, sizeof weights_on);
        ai3_device_label(in[0]->device, in[0]->device_index, input_on, sizeof input_on);
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: the plan's weights are on %s but the input is on %s; make "
                             "the plan with weights on the input's device", name, weights_on,
                             input_on);
    }
    return AI3_OK;
}

/* A CUDA backend for inputs on a CUDA device, or NULL with the error set. */
static const ai3_cuda_backend *cuda_for(const ai3_tensor *in) {
    return in->device == AI3_DEVICE_CUDA ? ai3_cuda_backend_get() : NULL;
}

/* A plan without weights whose algorithm was registered at run time for
 * CUDA tensors: its typed function calls that (the CUDA backend is not
 * involved). */
static bool registered_for_cuda(const ai3_plan *plan) {
    return !plan->borrowed && ai3_is_registered(plan->op, plan->algorithm, AI3_DEVICE_CUDA);
}

static ai3_status output_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                               int *ndim, int64_t *shape) {
    if (plan->borrowed && plan->op == AI3_OP_CONV2D)
        return ai3_conv2d_output_shape(in[0], &plan->weights[0], &plan->params.conv2d, ndim,
                                       shape);
    if (plan->borrowed && plan->op == AI3_OP_LINEAR)
        return ai3_linear_output_shape(in[0], &plan->weights[0], ndim, shape);
    return ops[plan->op].impl->output_shape(plan, n, in, ndim, shape);
}

ai3_status ai3_plan_output_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                 int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s = check_inputs(plan, n, in);
    if (s != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL",
                             ai3_op_name(plan->op));
    return output_shape(plan, n, in, out_ndim, out_shape);
}

ai3_status ai3_plan_workspace_size(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                   size_t *bytes) {
    ai3_status s = check_inputs(plan, n, in);
    if (s != AI3_OK) return s;
    if (!bytes)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: bytes is NULL",
                             ai3_op_name(plan->op));
    *bytes = 0;
    if (in[0]->device == AI3_DEVICE_CUDA && !registered_for_cuda(plan)) {
        const ai3_cuda_backend *cuda = cuda_for(in[0]);
        if (!cuda) return AI3_ERROR_UNSUPPORTED;
        int ndim; /* the input checked against the weights first */
        int64_t shape[AI3_MAX_DIMS];
        if ((s = output_shape(plan, n, in, &ndim, shape)) != AI3_OK) return s;
        return cuda->workspace_size(plan, n, in, bytes);
    }
    if (widened(plan->op, in[0])) {
        ai3_tensor views[WIDENED_MAX_INPUTS], out_view;
        size_t inner_offset;
        return widened_layout(plan, n, in, views, &out_view, &inner_offset, bytes);
    }
    const ai3_op_impl *impl = ops[plan->op].impl;
    return impl->workspace_size ? impl->workspace_size(plan, in, bytes) : AI3_OK;
}

ai3_status ai3_plan_run_fused(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                              ai3_tensor *output, void *workspace, size_t workspace_bytes,
                              void *stream, const ai3_plan *activation) {
    ai3_status s = check_inputs(plan, n, in);
    if (s != AI3_OK) return s;
    const char *name = ai3_op_name(plan->op);
    if (!output) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output is NULL", name);
    if (in[0]->device == AI3_DEVICE_CUDA && !registered_for_cuda(plan)) {
        const ai3_cuda_backend *cuda = cuda_for(in[0]);
        if (!cuda) return AI3_ERROR_UNSUPPORTED;
        int ndim;
        int64_t shape[AI3_MAX_DIMS];
        if ((s = output_shape(plan, n, in, &ndim, shape)) != AI3_OK ||
            (s = ai3_check_output(output, in[0], ndim, shape, name)) != AI3_OK)
            return s;
        if (!activation || !registered_for_cuda(activation))
            return cuda->run(plan, n, in, output, workspace, workspace_bytes, stream, activation);
        s = cuda->run(plan, n, in, output, workspace, workspace_bytes, stream, NULL);
    } else if (widened(plan->op, in[0])) {
        s = run_widened(plan, n, in, output, workspace, workspace_bytes);
    } else {
        s = ops[plan->op].impl->run(plan, n, in, output, workspace, workspace_bytes);
    }
    if (s == AI3_OK && activation) { /* not fused: a pass of its own */
        const ai3_tensor *out = output;
        s = ai3_plan_run_stream(activation, 1, &out, output, NULL, 0, stream);
    }
    return s;
}

ai3_status ai3_plan_run_stream(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                               ai3_tensor *output, void *workspace, size_t workspace_bytes,
                               void *stream) {
    return ai3_plan_run_fused(plan, n, in, output, workspace, workspace_bytes, stream, NULL);
}

ai3_status ai3_plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                        ai3_tensor *output, void *workspace, size_t workspace_bytes) {
    return ai3_plan_run_stream(plan, n, in, output, workspace, workspace_bytes, NULL);
}
