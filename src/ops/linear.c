/* linear: argument checks, output shape and dispatch. */
#include "algorithms/linear.h"
#include "internal.h"
#include "op.h"

#include <string.h>

static const char *const OP = "linear";

ai3_status ai3_linear_output_shape(const ai3_tensor *input, const ai3_tensor *weight,
                                   int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s;
    if ((s = ai3_check_tensor(input, "input", OP)) != AI3_OK) return s;
    if ((s = ai3_check_tensor(weight, "weight", OP)) != AI3_OK) return s;
    if ((s = ai3_check_same_dtype(input, weight, OP)) != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output shape pointers are NULL", OP);
    if (weight->ndim != 2)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "linear: weight must be 2-d (out_features, in_features), got %d-d",
                             weight->ndim);
    if (input->ndim < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "linear: input must have at least 1 dimension");
    if (input->shape[input->ndim - 1] != weight->shape[1])
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "linear: input has %lld features in its last dimension, but weight "
                             "expects %lld (in_features)",
                             (long long)input->shape[input->ndim - 1], (long long)weight->shape[1]);
    for (int i = 0; i < input->ndim - 1; i++) out_shape[i] = input->shape[i];
    out_shape[input->ndim - 1] = weight->shape[0];
    *out_ndim = input->ndim;
    return AI3_OK;
}

/* A linear plan: its own copy of the weights, prepared for its algorithm. */
struct ai3_linear_plan {
    const ai3_linear_algorithm *impl; /* a built-in algorithm, or */
    ai3_linear_fn custom;             /* one registered at run time */
    ai3_linear_problem pb;
    ai3_tensor bias;
};

void ai3_linear_plan_destroy(ai3_linear_plan *plan) {
    if (!plan) return;
    if (plan->impl && plan->impl->release && plan->pb.state) plan->impl->release(plan->pb.state);
    if (plan->pb.weight.data != ai3_shape_only) ai3_free(plan->pb.weight.data);
    ai3_free(plan->bias.data);
    ai3_free(plan);
}

static ai3_status check_bias(const ai3_tensor *weight, const ai3_tensor *bias) {
    ai3_status s;
    if (!bias) return AI3_OK;
    if ((s = ai3_check_tensor(bias, "bias", OP)) != AI3_OK) return s;
    if ((s = ai3_check_same_dtype(weight, bias, OP)) != AI3_OK) return s;
    if (bias->ndim != 1 || bias->shape[0] != weight->shape[0])
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "linear: bias must be 1-d of length %lld (out_features)",
                             (long long)weight->shape[0]);
    return AI3_OK;
}


ai3_status ai3_linear_plan_create(const char *algorithm, const ai3_tensor *weight,
                                  const ai3_tensor *bias, ai3_linear_plan **out) {
    ai3_status s;
    if (!out) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "linear: plan pointer is NULL");
    *out = NULL;
    if ((s = ai3_check_tensor(weight, "weight", OP)) != AI3_OK) return s;
    if (weight->ndim != 2)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "linear: weight must be 2-d (out_features, in_features), got %d-d",
                             weight->ndim);
    if ((s = check_bias(weight, bias)) != AI3_OK) return s;
    if (!algorithm)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "linear: algorithm name is NULL");
    if ((s = ai3_require_cpu(AI3_OP_LINEAR, algorithm, weight)) != AI3_OK) return s;
    ai3_linear_plan *plan = ai3_alloc(sizeof *plan);
    if (!plan) return AI3_ERROR_OUT_OF_MEMORY;
    memset(plan, 0, sizeof *plan);
    if ((s = ai3_lookup_linear(algorithm, weight, &plan->impl, &plan->custom)) != AI3_OK) {
        ai3_linear_plan_destroy(plan);
        return s;
    }
    plan->pb.weight = *weight;
    plan->pb.weight.data = ai3_shape_only;
    plan->pb.bias = bias ? &plan->bias : NULL;
    s = bias ? ai3_tensor_copy(bias, &plan->bias) : AI3_OK;
    /* As conv2d plans: no copy of the weights when prepare makes its own. */
    if (s == AI3_OK && plan->impl && plan->impl->prepare) {
        plan->pb.weight.data = weight->data;
        s = plan->impl->prepare(&plan->pb);
        plan->pb.weight.data = ai3_shape_only;
    } else if (s == AI3_OK) {
        s = ai3_tensor_copy(weight, &plan->pb.weight);
    }
    if (s != AI3_OK) {
        ai3_linear_plan_destroy(plan);
        return s;
    }
    *out = plan;
    return AI3_OK;
}

/* The run, with a fused epilogue (NULL: none): the algorithm's, or a pass
 * after a custom algorithm. */
static ai3_status plan_run_epilogue(const ai3_linear_plan *plan, const ai3_tensor *input,
                                    ai3_tensor *output, const ai3_epilogue *epilogue) {
    if (!plan) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "linear: plan is NULL");
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_linear_output_shape(input, &plan->pb.weight, &ndim, shape);
    if (s != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, ndim, shape, OP)) != AI3_OK) return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    if (!plan->custom) return plan->impl->run(&plan->pb, input, output, epilogue);
    s = plan->custom(input, &plan->pb.weight, plan->pb.bias, output);
    if (s == AI3_OK && epilogue) ai3_epilogue_pass(output, epilogue);
    return s;
}

ai3_status ai3_linear_plan_run(const ai3_linear_plan *plan, const ai3_tensor *input,
                               ai3_tensor *output) {
    return plan_run_epilogue(plan, input, output, NULL);
}

ai3_status ai3_linear(const char *algorithm, const ai3_tensor *input, const ai3_tensor *weight,
                      const ai3_tensor *bias, ai3_tensor *output) {
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_linear_output_shape(input, weight, &ndim, shape);
    if (s != AI3_OK) return s;
    if ((s = check_bias(weight, bias)) != AI3_OK) return s;
    if ((s = ai3_check_output(output, input, ndim, shape, OP)) != AI3_OK) return s;
    ai3_linear_plan *plan;
    if ((s = ai3_linear_plan_create(algorithm, weight, bias, &plan)) != AI3_OK) return s;
    s = ai3_linear_plan_run(plan, input, output);
    ai3_linear_plan_destroy(plan);
    return s;
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_create(ai3_plan *plan, const ai3_tensor *const *w, int n,
                              const ai3_tensor *hint) {
    if (n < 1 || !w[0])
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: the weight is required", OP);
    return ai3_linear_plan_create(plan->algorithm, w[0], n > 1 ? w[1] : NULL,
                                  (ai3_linear_plan **)&plan->state);
}

static void plan_destroy(ai3_plan *plan) { ai3_linear_plan_destroy(plan->state); }

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    const ai3_linear_plan *lp = plan->state;
    return ai3_linear_output_shape(in[0], &lp->pb.weight, ndim, shape);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_linear_plan_run(plan->state, in[0], out);
}

ai3_status ai3_linear_run_epilogue(const ai3_plan *plan, const ai3_tensor *input,
                                   ai3_tensor *output, const ai3_epilogue *epilogue) {
    return plan_run_epilogue(plan->state, input, output, epilogue);
}

const ai3_op_impl ai3_linear_impl = {.create = plan_create, .destroy = plan_destroy,
                                     .output_shape = plan_shape, .run = plan_run, .bf16 = true};
