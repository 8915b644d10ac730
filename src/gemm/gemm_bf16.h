/*
 * The bfloat16 GEMM engine (CPUs with AVX512_BF16, see bf16.h):
 *
 *     C[M×N] = A[M×K] · B[K×N] (+ bias_row[i] on row i) (+ R[M×N]), clamped
 *
 * A and B are bfloat16; the products are summed in float32 (each product
 * of two bfloat16 is exact in float32) over all of K, so C is rounded
 * once: written as float32, or rounded to bfloat16 as it is stored. The
 * bias, the residual R and the clamp are applied in float32 before that
 * rounding.
 *
 * Two micro-kernels (ai3_gemm_bf16_kernel): AMX tiles (tdpbf16ps, 32×32
 * blocks) where ai3_cpu_has_amx_bf16(), else AVX512_BF16 (vdpbf16ps, 14×32).
 * AI3_BF16_KERNEL=avx512 in the environment (read once) or
 * ai3_gemm_bf16_set_kernel chooses the AVX-512 one on an AMX CPU.
 *
 * The blocking is Goto's as in gemm.h, but K is never sliced (a slice's
 * partial sums would have to be stored in float32 somewhere): B is packed
 * in blocks of all K rows × as many columns as fit in L2, A in panels of MR
 * rows (the kernel's). Both are packed with K in pairs, the pair (k, k+1)
 * of a row of A or a column of B in one 32-bit word, which is what both
 * kernels multiply. B, for both kernels:
 *
 *   B strip (NR cols): word (p, j) = (B[2p][j], B[2p+1][j]) at [p·NR + j]
 *
 * for p < K2 = ceil(K / 2); an odd K's last pair ends with a zero, and
 * columns past the matrix's are zeros. A panel, per kernel:
 *
 *   AVX-512 (MR = 14): word (p, i) = (A[i][2p], A[i][2p+1]) at [p·MR + i]
 *   AMX (MR = 32): K2 padded with zero pairs to a multiple of 16; word
 *     (p, i) at [s·512 + (i / 16)·256 + (i % 16)·16 + p % 16], s = p / 16
 *     (per step of 16 pairs, two 16×16 tiles, each row-major)
 *
 * with rows past the matrix's zeros.
 *
 * Operands: A strided (packed on the fly) or pre-packed
 * (ai3_gemm_bf16_pack_a, once, e.g. a layer's weights: the packed A
 * records its M, K and kernel, and the product runs on that kernel); B
 * strided or packed by the caller's callback (e.g. gathered from a conv2d
 * input). C strided: element (i, j) at c[i·rsc + j·csc] (rsc = ldc, csc = 1
 * for row-major).
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

/* The register tile of the AVX-512 BF16 micro-kernel; NR is both kernels'. */
#define AI3_GEMM_BF16_MR 14
#define AI3_GEMM_BF16_NR 32
/* The AMX kernel's rows (two tiles) and pairs of k per tile product. */
#define AI3_GEMM_BF16_AMX_MR 32
#define AI3_GEMM_BF16_AMX_STEP 16

typedef enum ai3_gemm_bf16_kernel {
    AI3_GEMM_BF16_AVX512 = 0, /* vdpbf16ps */
    AI3_GEMM_BF16_AMX = 1,    /* tdpbf16ps */
} ai3_gemm_bf16_kernel;

/* The kernel new products and packings use: AMX where
 * ai3_cpu_has_amx_bf16(), unless AI3_BF16_KERNEL=avx512 (read on the first
 * call; "amx" or an unknown name: the best there is). */
ai3_gemm_bf16_kernel ai3_gemm_bf16_get_kernel(void);
/* Forces the kernel (tests, benchmarks); AMX only where the CPU has it.
 * Returns the kernel now in use. A packed A keeps the kernel it was packed
 * for. */
ai3_gemm_bf16_kernel ai3_gemm_bf16_set_kernel(ai3_gemm_bf16_kernel kernel);
const char *ai3_gemm_bf16_kernel_name(ai3_gemm_bf16_kernel kernel); /* "avx512", "amx" */

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

/* A pre-packed A, for the kernel in use: its size in words (a 64-byte
 * header, then the panels), and the packing from a strided bfloat16 source
 * (element (i, k) at A[i·rs + k·cs]). dst must be 64-byte aligned. */
size_t ai3_gemm_bf16_packed_a_size(int64_t M, int64_t K);
void ai3_gemm_bf16_pack_a(int64_t M, int64_t K, const ai3_bf16 *A, int64_t rs, int64_t cs,
                          uint32_t *dst);

/* One B strip block in the callback format from a strided source whose
 * element (0, 0) is the block's first: kc rows, nc columns, element (k, j)
 * at B[k·rs + j·cs]. */
void ai3_gemm_bf16_pack_b_block(int64_t kc, int64_t nc, const ai3_bf16 *B, int64_t rs,
                                int64_t cs, uint32_t *dst);

/* What the product adds to its sums and how it clamps them; every member
 * may be NULL. */
typedef struct ai3_gemm_bf16_epilogue {
    const float *bias_row; /* M floats, bias_row[i] added to row i */
    const void *residual;  /* R: of C's type, element (i, j) at residual[i·rsc + j·csc] */
    const float *clamp;    /* [lo, hi] (NaN kept) */
} ai3_gemm_bf16_epilogue;

/* The product. epilogue may be NULL; flags: AI3_GEMM_BF16_OUT,
 * AI3_GEMM_SINGLE_THREAD. M, N or K may be 0. The residual must not overlap
 * C. AI3_OK, or an error with the message set. */
ai3_status ai3_gemm_bf16(int64_t M, int64_t N, int64_t K, const ai3_gemm_bf16_operand *A,
                         const ai3_gemm_bf16_operand *B, void *C, int64_t rsc, int64_t csc,
                         const ai3_gemm_bf16_epilogue *epilogue, unsigned flags);

/* The micro-kernels (gemm/kernels/gemm_avx512_bf16.c, gemm_amx_bf16.c):
 * the mr×nr tile
 *   C[i][j] = clamp(Σ_p a·b + bias_row[i] + R[i][j])   (i < mr <= MR, j < nr <= NR)
 * from an A panel of the kernel's format and MR and a B strip (k2·NR
 * words), stored at c + i·rsc + j·csc as float32 or (out_bf16) bfloat16;
 * e (not NULL) is positioned at the tile: its bias_row at the tile's first
 * row, its residual at the tile's first element, with C's strides. */
void ai3_gemm_bf16_kernel_avx512(int64_t k2, const uint32_t *a, const uint32_t *b, void *c,
                                 int64_t rsc, int64_t csc, int mr, int nr,
                                 const ai3_gemm_bf16_epilogue *e, bool out_bf16);
void ai3_gemm_bf16_kernel_amx(int64_t k2, const uint32_t *a, const uint32_t *b, void *c,
                              int64_t rsc, int64_t csc, int mr, int nr,
                              const ai3_gemm_bf16_epilogue *e, bool out_bf16);
/* The AMX tile configuration, loaded by a thread before its first AMX
 * kernel call and released after its last (the tiles are per thread and
 * other code on the thread may configure them differently in between). */
void ai3_gemm_bf16_amx_begin(void);
void ai3_gemm_bf16_amx_end(void);

#endif
