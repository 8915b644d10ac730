/*
 * What the bfloat16 GEMM-based conv2d algorithms (gemm, implicit gemm,
 * implicit precomp gemm) share: the weights packed once, at prepare, as the
 * bfloat16 engine's A operand (gemm/gemm_bf16.h) with the bias in float32,
 * and the pair format their B operands are written in.
 */
#ifndef AI3_CONV2D_GEMM_BF16_H
#define AI3_CONV2D_GEMM_BF16_H

#include "algorithms/conv2d.h"
#include "algorithms/conv2d_gemm.h" /* ai3_conv2d_run_gemm_jobs_f32: runs jobs of any dtype */
#include "gemm_bf16.h"

/* The plan's state: one packed M×K block per group (M = C_out / groups,
 * K = C_in / groups·KH·KW, the weight's order), and the bias as floats. */
typedef struct {
    int64_t m, k, groups;
    size_t block_words;
    uint32_t *packed;
    float *bias; /* C_out, or NULL */
} ai3_conv2d_bf16_weights;

ai3_status ai3_conv2d_bf16_prepare(ai3_conv2d_problem *pb);
void ai3_conv2d_bf16_release(void *state);

/* The product of group g's weights and B into the output from element
 * `offset` on (the group's first output channel of an image, N = OH·OW
 * columns), with the bias and d->epilogue (a residual, read at the same
 * offset, and a clamp: graphs fuse nothing else in bfloat16), stored as
 * bfloat16. */
ai3_status ai3_conv2d_bf16_gemm(const ai3_conv2d_bf16_weights *w, const ai3_conv2d_dims *d,
                                int64_t g, const ai3_gemm_bf16_operand *b, ai3_bf16 *output,
                                int64_t offset, unsigned flags);

/* One row pair of a B strip in the pair format: word j of dst =
 * (lo[j], hi[j]) for j < cnt, where lo[j] = src0[off0[j]] and hi[j] =
 * src1[off1[j]] (an offset < 0, or src1 NULL for an odd K's last row:
 * zero); words cnt..NR-1 zero. When both rows are one contiguous run
 * (`runs`), lo[j] = src0[off0[0] + j], hi[j] = src1[off1[0] + j]. */
static inline __attribute__((always_inline)) void ai3_conv2d_bf16_pair_row(
    const ai3_bf16 *src0, const int32_t *off0, const ai3_bf16 *src1, const int32_t *off1,
    int cnt, bool runs, uint32_t *restrict dst) {
    if (runs) {
        const ai3_bf16 *restrict lo = src0 + off0[0], *restrict hi = src1 + off1[0];
        for (int j = 0; j < AI3_GEMM_BF16_NR; j++) dst[j] = lo[j] | (uint32_t)hi[j] << 16;
        return;
    }
    for (int j = 0; j < cnt; j++) {
        const uint32_t lo = off0[j] >= 0 ? src0[off0[j]] : 0;
        const uint32_t hi = src1 && off1[j] >= 0 ? src1[off1[j]] : 0;
        dst[j] = lo | hi << 16;
    }
    for (int j = cnt; j < AI3_GEMM_BF16_NR; j++) dst[j] = 0;
}

#endif
