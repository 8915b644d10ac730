/*
 * The bfloat16 GEMM engine (CPUs with AVX512_BF16, see bf16.h):
 *
 *     C[M×N] = A[M×K] · B[K×N] (+ bias_row[i] on row i), clamped
 *
 * A and B are bfloat16; the products are summed in float32 (vdpbf16ps:
 * each product of two bfloat16 is exact in float32) over all of K, so C is
 * rounded once: written as float32, or rounded to bfloat16 as it is stored.
 * The bias and the clamp are applied in float32 before that rounding.
 *
 * The blocking is Goto's as in gemm.h, but K is never sliced (a slice's
 * partial sums would have to be stored in float32 somewhere): B is packed
 * in blocks of all K rows × as many columns as fit in L2, A in panels of MR
 * rows. Both are packed with K in pairs, the pair (k, k+1) of a row of A
 * or a column of B in one 32-bit word, which is what vdpbf16ps multiplies:
 *
 *   A panel (MR rows): word (p, i) = (A[i][2p], A[i][2p+1]) at [p·MR + i]
 *   B strip (NR cols): word (p, j) = (B[2p][j], B[2p+1][j]) at [p·NR + j]
 *
 * for p < K2 = ceil(K / 2); an odd K's last pair ends with a zero, and rows
 * (columns) past the matrix's are zeros.
 *
 * Operands: A strided (packed on the fly) or pre-packed
 * (ai3_gemm_bf16_pack_a, once, e.g. a layer's weights); B strided or packed
 * by the caller's callback (e.g. gathered from a conv2d input). C strided:
 * element (i, j) at c[i·rsc + j·csc] (rsc = ldc, csc = 1 for row-major).
 *
 * Everything here needs ai3_cpu_has_bf16(); ai3_gemm_bf16 fails with
 * AI3_ERROR_UNSUPPORTED otherwise.
 */
#ifndef AI3_GEMM_BF16_H
#define AI3_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h"
#include "gemm.h"

/* The register tile of the AVX-512 BF16 micro-kernel. */
#define AI3_GEMM_BF16_MR 14
#define AI3_GEMM_BF16_NR 32

#define AI3_GEMM_BF16_OUT 4u /* flag: C is bfloat16 (else float32) */

/* B's callback: writes B[k0 : k0+kc, n0 : n0+nc] into dst, as
 * ceil(nc / NR) strips one after the other, each ceil(kc / 2)·NR words in
 * the pair format above (kc odd: the last pair's second half zero; columns
 * past nc zero). Called from several pool threads at once (different
 * blocks); it must only read shared state and write dst. Today k0 = 0 and
 * kc = K always. dst is 64-byte aligned. */
typedef void (*ai3_gemm_bf16_pack_fn)(void *ctx, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                                      uint32_t *dst);

typedef struct ai3_gemm_bf16_operand {
    ai3_gemm_operand_kind kind;
    const void *data; /* STRIDED: ai3_bf16 elements; PACKED (A): words */
    int64_t rs, cs;   /* STRIDED: element (r, c) at data[r·rs + c·cs] */
    ai3_gemm_bf16_pack_fn pack;
    void *ctx;
} ai3_gemm_bf16_operand;

static inline ai3_gemm_bf16_operand ai3_gemm_bf16_strided(const ai3_bf16 *data, int64_t rs,
                                                          int64_t cs) {
    return (ai3_gemm_bf16_operand){.kind = AI3_GEMM_STRIDED, .data = data, .rs = rs, .cs = cs};
}
static inline ai3_gemm_bf16_operand ai3_gemm_bf16_packed(const uint32_t *data) {
    return (ai3_gemm_bf16_operand){.kind = AI3_GEMM_PACKED, .data = data};
}
static inline ai3_gemm_bf16_operand ai3_gemm_bf16_callback(ai3_gemm_bf16_pack_fn pack,
                                                           void *ctx) {
    return (ai3_gemm_bf16_operand){.kind = AI3_GEMM_CALLBACK, .pack = pack, .ctx = ctx};
}

/* A pre-packed A: its size in words, and the packing from a strided
 * bfloat16 source (element (i, k) at A[i·rs + k·cs]). */
size_t ai3_gemm_bf16_packed_a_size(int64_t M, int64_t K);
void ai3_gemm_bf16_pack_a(int64_t M, int64_t K, const ai3_bf16 *A, int64_t rs, int64_t cs,
                          uint32_t *dst);

/* One B strip block in the callback format from a strided source whose
 * element (0, 0) is the block's first: kc rows, nc columns, element (k, j)
 * at B[k·rs + j·cs]. */
void ai3_gemm_bf16_pack_b_block(int64_t kc, int64_t nc, const ai3_bf16 *B, int64_t rs,
                                int64_t cs, uint32_t *dst);

/* The product. bias_row (M floats) and clamp ([lo, hi] floats, NaN kept)
 * may be NULL; flags: AI3_GEMM_BF16_OUT, AI3_GEMM_SINGLE_THREAD. M, N or K
 * may be 0. AI3_OK, or an error with the message set. */
ai3_status ai3_gemm_bf16(int64_t M, int64_t N, int64_t K, const ai3_gemm_bf16_operand *A,
                         const ai3_gemm_bf16_operand *B, void *C, int64_t rsc, int64_t csc,
                         const float *bias_row, const float *clamp, unsigned flags);

/* The micro-kernel (gemm/kernels/gemm_avx512_bf16.c): the mr×nr tile
 *   C[i][j] = clamp(Σ_p a·b + bias_r[i])   (i < mr <= MR, j < nr <= NR)
 * from an A panel (k2·MR words) and a B strip (k2·NR words), stored at
 * c + i·rsc + j·csc as float32 or (out_bf16) bfloat16. */
void ai3_gemm_bf16_kernel_avx512(int64_t k2, const uint32_t *a, const uint32_t *b, void *c,
                                 int64_t rsc, int64_t csc, int mr, int nr, const float *bias_r,
                                 const float *clamp, bool out_bf16);

#endif
