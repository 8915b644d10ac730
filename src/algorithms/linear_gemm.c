/*
 * linear via the GEMM engine: output[rows × out] = input[rows × in] · weightᵀ
 * + bias. The weight is packed once per plan as the engine's B operand
 * (weightᵀ, in × out); the input is read in place as A; the bias is added
 * per output column by the micro-kernel, a fused epilogue by the engine.
 */
#include "algorithms/linear.h"
#include "gemm.h"
#include "real.h"

typedef struct {
    const ai3_gemm_config *cfg; /* the packing belongs to this config */
    real *packed;
} packed_weight;

static void release(void *state) {
    packed_weight *pw = state;
    if (!pw) return;
    ai3_free(pw->packed);
    ai3_free(pw);
}

static ai3_status prepare(ai3_linear_problem *pb) {
    const int64_t out = pb->weight.shape[0], in = pb->weight.shape[1];
    packed_weight *pw = ai3_alloc(sizeof *pw);
    if (!pw) return AI3_ERROR_OUT_OF_MEMORY;
    pw->cfg = AI3_TYPED(ai3_gemm_get_config)();
    pw->packed = ai3_alloc(AI3_TYPED(ai3_gemm_packed_b_size)(pw->cfg, in, out) * sizeof(real));
    if (!pw->packed) {
        ai3_free(pw);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    /* B(k, n) = weight[n][k]: row stride 1, column stride in */
    AI3_TYPED(ai3_gemm_pack_b)(pw->cfg, in, out, pb->weight.data, 1, in, pw->packed);
    pb->state = pw;
    return AI3_OK;
}

static ai3_status run(const ai3_linear_problem *pb, const ai3_tensor *input, ai3_tensor *output,
                      const ai3_epilogue *epilogue) {
    const packed_weight *pw = pb->state;
    const int64_t out = pb->weight.shape[0], in = pb->weight.shape[1];
    const int64_t rows = ai3_tensor_numel(output) / out;
    const ai3_gemm_operand a = ai3_gemm_strided(input->data, in, 1);
    const ai3_gemm_operand b = ai3_gemm_packed(pw->packed);
    return AI3_TYPED(ai3_gemm_epilogue)(pw->cfg, rows, out, in, &a, &b, output->data, out, NULL,
                                        pb->bias ? pb->bias->data : NULL, 0, epilogue);
}

const ai3_linear_algorithm AI3_TYPED(ai3_linear_gemm) = {
    .prepare = prepare,
    .release = release,
    .run = run,
};
