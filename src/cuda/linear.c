/* linear on CUDA: output = input · weightᵀ (one cuBLAS GEMM), then the bias
 * and a fused activation in one pass (ai3_cuda_bias_activation). float16 and bfloat16 run on tensor cores with float32
 * accumulation; float32 on TF32 tensor cores only when the plan allows. */
#include "cuda.h"

static cudaDataType_t cuda_type(ai3_dtype dtype) {
    switch (dtype) {
    case AI3_FLOAT64: return CUDA_R_64F;
    case AI3_FLOAT16: return CUDA_R_16F;
    case AI3_BFLOAT16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
    }
}

ai3_status ai3_cuda_linear_run(const ai3_plan *plan, const ai3_tensor *input,
                               ai3_tensor *output, const ai3_cuda_act *act,
                               cudaStream_t stream) {
    const ai3_tensor *weight = &plan->weights[0];
    const ai3_tensor *bias = plan->weights[1].data ? &plan->weights[1] : NULL;
    if (input->dtype != weight->dtype)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT, "linear: input is %s but weight is %s",
                              ai3_cuda_dtype_name(input->dtype),
                              ai3_cuda_dtype_name(weight->dtype));
    int64_t out_f = weight->shape[0], in_f = weight->shape[1], rows = 1;
    for (int i = 0; i < input->ndim - 1; i++) rows *= input->shape[i];
    if (rows == 0 || out_f == 0) return AI3_OK;
    if (rows > INT32_MAX || out_f > INT32_MAX || in_f > INT32_MAX)
        return ai3_cuda_error(AI3_ERROR_UNSUPPORTED,
                              "linear 'gemm': cuBLAS takes sizes below 2^31, got %lld rows of "
                              "%lld features", (long long)rows, (long long)in_f);
    ai3_status s;
    if (in_f == 0) { /* an empty sum: zeros (then the bias) */
        s = ai3_cuda_check(cudaMemsetAsync(output->data, 0, (size_t)(rows * out_f) *
                                           ai3_cuda_dtype_size(input->dtype), stream),
                           "linear", "zeroing the output");
    } else {
        cublasHandle_t handle;
        if ((s = ai3_cublas_handle(stream, &handle, "linear")) != AI3_OK) return s;
        bool dbl = input->dtype == AI3_FLOAT64;
        cublasComputeType_t compute = dbl ? CUBLAS_COMPUTE_64F
                                      : input->dtype == AI3_FLOAT32 && plan->options.allow_tf32
                                          ? CUBLAS_COMPUTE_32F_FAST_TF32
                                          : CUBLAS_COMPUTE_32F;
        float one_f = 1, zero_f = 0;
        double one_d = 1, zero_d = 0;
        cudaDataType_t type = cuda_type(input->dtype);
        /* Column-major view: outputᵀ (out_f × rows) = W (out_f × in_f, stored as
         * its transpose) · inputᵀ (in_f × rows). */
        s = ai3_cublas_check(
            cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)out_f, (int)rows, (int)in_f,
                         dbl ? (void *)&one_d : (void *)&one_f, weight->data, type, (int)in_f,
                         input->data, type, (int)in_f, dbl ? (void *)&zero_d : (void *)&zero_f,
                         output->data, type, (int)out_f, compute, CUBLAS_GEMM_DEFAULT),
            "linear", "the matrix product");
    }
    if (s == AI3_OK && (bias || act))
        s = ai3_cuda_check(ai3_cuda_bias_activation(input->dtype, output->data,
                                                    bias ? bias->data : NULL, rows, out_f, 1, act,
                                                    stream),
                           "linear", "the bias and activation");
    return s;
}
