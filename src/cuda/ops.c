/* batchnorm2d and the operations without weights on CUDA: checks, then one
 * of ai3's own kernels (kernels.h). */
#include "cuda.h"

/* (n, c, h, w) of a 4-d input or an unbatched 3-d one. */
static void dims4(const ai3_tensor *t, int64_t d[4]) {
    int b = t->ndim == 4;
    d[0] = b ? t->shape[0] : 1;
    for (int i = 0; i < 3; i++) d[i + 1] = t->shape[b + i];
}

ai3_status ai3_cuda_batchnorm2d_run(const ai3_plan *plan, const ai3_tensor *input,
                                    ai3_tensor *output, cudaStream_t stream) {
    const ai3_tensor *mean = &plan->weights[0], *var = &plan->weights[1];
    const ai3_tensor *weight = plan->weights[2].data ? &plan->weights[2] : NULL;
    const ai3_tensor *bias = plan->weights[3].data ? &plan->weights[3] : NULL;
    if (input->ndim != 3 && input->ndim != 4)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                              "batchnorm2d: input must be (N, C, H, W) or (C, H, W), got %d "
                              "dimensions", input->ndim);
    if (!mean->data || !var->data)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                              "batchnorm2d: running_mean and running_var are needed");
    int64_t d[4];
    dims4(input, d);
    const ai3_tensor *params[] = {mean, var, weight, bias};
    for (int i = 0; i < 4; i++)
        if (params[i] && (params[i]->ndim != 1 || params[i]->shape[0] != d[1]))
            return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                                  "batchnorm2d: the input has %lld channels but a statistic "
                                  "or affine parameter is not of shape (%lld,)",
                                  (long long)d[1], (long long)d[1]);
    /* float32 statistics with a half input (as under autocast) are read as
     * float32; otherwise input and statistics share one dtype */
    bool mixed = mean->dtype == AI3_FLOAT32 &&
                 (input->dtype == AI3_FLOAT16 || input->dtype == AI3_BFLOAT16);
    if (input->dtype != mean->dtype && !mixed)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                              "batchnorm2d: input is %s but the statistics are %s",
                              ai3_cuda_dtype_name(input->dtype), ai3_cuda_dtype_name(mean->dtype));
    return ai3_cuda_check(
        ai3_cuda_batchnorm2d(input->dtype, mean->dtype, input->data, mean->data, var->data,
                             weight ? weight->data : NULL, bias ? bias->data : NULL,
                             plan->params.batchnorm2d.eps, output->data, d[0], d[1],
                             d[2] * d[3], stream),
        "batchnorm2d", "the kernel");
}

ai3_status ai3_cuda_weightless_run(const ai3_plan *plan, const ai3_tensor *input,
                                   ai3_tensor *output, cudaStream_t stream) {
    switch (plan->op) {
    case AI3_OP_MAXPOOL2D: case AI3_OP_AVGPOOL2D: case AI3_OP_ADAPTIVEAVGPOOL2D:
    case AI3_OP_FLATTEN: case AI3_OP_RELU: case AI3_OP_HARDTANH: case AI3_OP_SIGMOID:
    case AI3_OP_HARDSIGMOID: case AI3_OP_HARDSWISH: case AI3_OP_SILU: case AI3_OP_GELU: break;
    default:
        return ai3_cuda_error(AI3_ERROR_INTERNAL, "%s: not an operation without weights",
                              ai3_cuda_op_name(plan->op));
    }
    const char *op = ai3_cuda_op_name(plan->op);
    ai3_status s = ai3_cuda_check_direct(plan);
    if (s != AI3_OK) return s;
    int64_t count = 1;
    for (int i = 0; i < input->ndim; i++) count *= input->shape[i];
    if (count == 0) return AI3_OK;
    int64_t d[4] = {0}, o[4] = {0};
    if (plan->op == AI3_OP_MAXPOOL2D || plan->op == AI3_OP_AVGPOOL2D ||
        plan->op == AI3_OP_ADAPTIVEAVGPOOL2D) {
        dims4(input, d);
        dims4(output, o);
    }
    cudaError_t err;
    switch (plan->op) {
    case AI3_OP_MAXPOOL2D:
        err = ai3_cuda_maxpool2d(input->dtype, input->data, output->data, d[0], d[1], d[2], d[3],
                                 o[2], o[3], &plan->params.maxpool2d, stream);
        break;
    case AI3_OP_AVGPOOL2D:
        err = ai3_cuda_avgpool2d(input->dtype, input->data, output->data, d[0], d[1], d[2], d[3],
                                 o[2], o[3], &plan->params.avgpool2d, stream);
        break;
    case AI3_OP_ADAPTIVEAVGPOOL2D:
        err = ai3_cuda_adaptiveavgpool2d(input->dtype, input->data, output->data, d[0], d[1],
                                         d[2], d[3], o[2], o[3], stream);
        break;
    case AI3_OP_FLATTEN:
        err = output->data == input->data
                  ? cudaSuccess
                  : cudaMemcpyAsync(output->data, input->data,
                                    (size_t)count * ai3_cuda_dtype_size(input->dtype),
                                    cudaMemcpyDeviceToDevice, stream);
        break;
    default:
        err = ai3_cuda_activation(plan->op, &plan->params, input->dtype, input->data,
                                  output->data, count, stream);
        break;
    }
    return ai3_cuda_check(err, op, "the kernel");
}
