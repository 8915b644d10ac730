/*
 * linear "gemm" in bfloat16: output[rows × out] = input · weightᵀ + bias
 * on the bfloat16 GEMM engine (gemm/gemm_bf16.h), sums in float32, the
 * bias added in float32 before the output is rounded. The weight is packed
 * once per plan as the engine's A (out × in); B is the input read in place
 * as in × rows, and C is written transposed into the rows × out output.
 */
#include "algorithms/linear.h"
#include "gemm_bf16.h"

typedef struct {
    uint32_t *packed;
    float *bias;
} packed_weight;

static void release(void *state) {
    packed_weight *pw = state;
    if (!pw) return;
    ai3_free(pw->packed);
    ai3_free(pw->bias);
    ai3_free(pw);
}

static ai3_status prepare(ai3_linear_problem *pb) {
    ai3_status s = ai3_require_cpu_bf16("linear");
    if (s != AI3_OK) return s;
    const int64_t out = pb->weight.shape[0], in = pb->weight.shape[1];
    packed_weight *pw = ai3_alloc(sizeof *pw);
    if (!pw) return AI3_ERROR_OUT_OF_MEMORY;
    pw->packed = ai3_alloc(ai3_gemm_bf16_packed_a_size(out, in) * sizeof(uint32_t));
    pw->bias = pb->bias ? ai3_alloc(sizeof(float) * (size_t)out) : NULL;
    if (!pw->packed || (pb->bias && !pw->bias)) {
        release(pw);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    ai3_gemm_bf16_pack_a(out, in, pb->weight.data, in, 1, pw->packed);
    if (pb->bias) ai3_bf16_to_float_n(pb->bias->data, pw->bias, out);
    pb->state = pw;
    return AI3_OK;
}

static ai3_status run(const ai3_linear_problem *pb, const ai3_tensor *input, ai3_tensor *output,
                      const ai3_epilogue *epilogue) {
    if (epilogue) /* graphs fuse nothing into a bfloat16 linear */
        return ai3_set_error(AI3_ERROR_UNSUPPORTED, "linear: no fused epilogue in bfloat16");
    const packed_weight *pw = pb->state;
    const int64_t out = pb->weight.shape[0], in = pb->weight.shape[1];
    const int64_t rows = ai3_tensor_numel(output) / out;
    const ai3_gemm_bf16_operand a = ai3_gemm_bf16_packed(pw->packed);
    const ai3_gemm_bf16_operand b = ai3_gemm_bf16_strided(input->data, 1, in);
    const ai3_gemm_bf16_epilogue e = {.bias_row = pw->bias};
    return ai3_gemm_bf16(out, rows, in, &a, &b, output->data, 1, out, &e, AI3_GEMM_BF16_OUT);
}

const ai3_linear_algorithm ai3_linear_gemm_bf16 = {
    .prepare = prepare,
    .release = release,
    .run = run,
};
