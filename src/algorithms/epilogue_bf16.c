/* Fused epilogues on bfloat16 outputs (bf16.h): the float epilogue
 * (epilogue.h) on float32 copies of a few hundred elements at a time, so
 * that its results round once, as the GEMM's do. */
#include "bf16.h"
#include "epilogue.h"

/* Elements per float32 copy (on the stack). */
#define CHUNK 512

typedef struct {
    ai3_bf16 *y;
    const float *from;
    const ai3_epilogue *e;
} pass_ctx;

static void pass_range(void *vctx, int64_t begin, int64_t end) {
    const pass_ctx *c = vctx;
    const ai3_bf16 *res = c->e->residual;
    float v[CHUNK], r[CHUNK];
    for (int64_t i = begin; i < end; i += CHUNK) {
        const int64_t n = AI3_MIN(CHUNK, end - i);
        for (int64_t j = 0; j < n; j++)
            v[j] = c->from ? c->from[i + j] : ai3_bf16_to_float(c->y[i + j]);
        if (res)
            for (int64_t j = 0; j < n; j++) r[j] = ai3_bf16_to_float(res[i + j]);
        ai3_epilogue_apply_f32(v, n, res ? r : NULL, n, 1, n, c->e);
        for (int64_t j = 0; j < n; j++) c->y[i + j] = ai3_float_to_bf16(v[j]);
    }
}

void ai3_epilogue_pass_bf16(ai3_bf16 *y, const float *from, int64_t n, const ai3_epilogue *e) {
    pass_ctx c = {y, from, e};
    ai3_parallel_for(n, 1 << 14, pass_range, &c);
}
