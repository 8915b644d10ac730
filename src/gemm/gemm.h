/*
 * The GEMM engine, for float and double.
 *
 *     C[M×N] = A[M×K] · B[K×N]  (+ C if AI3_GEMM_ACCUMULATE)
 *              (+ bias_row[i] on row i) (+ bias_col[j] on column j)
 *
 * C is row-major with row stride ldc. It is computed the way of Goto and
 * BLIS: B in NC-column blocks and K in slices of at most KC; each slice of
 * B is packed into strips of NR columns and each MC-row block of A into
 * panels of MR rows, and a register-blocked MR×NR micro-kernel
 * (gemm/kernels/) multiplies a panel by a strip. The micro-kernel and the
 * blocking are chosen at run time for the CPU (ai3_cpu_isa(); AI3_ISA=
 * generic|avx2|avx512 forces one) and described by an ai3_gemm_config.
 *
 * Each operand is one of
 *   strided   element (r, c) at data[r·rs + c·cs]: row-major (rs = ld,
 *             cs = 1) or transposed (rs = 1, cs = ld), packed on the fly;
 *   packed    packed once, ahead of time, by ai3_gemm_pack_a/_b into the
 *             engine's format for one config (e.g. a layer's weights);
 *   callback  packed on the fly by the caller's function (see
 *             ai3_gemm_pack_fn), e.g. gathering B from a conv2d input
 *             without an im2col buffer.
 *
 * The work is split over the thread pool into blocks of C (by columns, by
 * rows, or both, whichever balances best); AI3_GEMM_SINGLE_THREAD keeps it
 * on the calling thread, for callers that parallelise outside.
 */
#ifndef AI3_GEMM_H
#define AI3_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "real.h"

/* Everything below exists for float (suffix _f32) and double (_f64), with
 * explicit names: ai3_gemm_f32, ai3_gemm_config_f32, ... Code written over
 * `real` (runtime/real.h) can use the unsuffixed aliases at the end. */

typedef enum ai3_gemm_operand_kind {
    AI3_GEMM_STRIDED = 0,
    AI3_GEMM_PACKED,
    AI3_GEMM_CALLBACK
} ai3_gemm_operand_kind;

#define AI3_GEMM_ACCUMULATE 1u    /* add to C instead of overwriting it */
#define AI3_GEMM_SINGLE_THREAD 2u /* run on the calling thread only */

/* --- the config (per dtype T) ------------------------------------------------
 *   typedef void (*ai3_gemm_ukernel_sfx)(kc, a, b, ldb, c, ldc, mr, nr, bias_r,
 *                                        bias_c, accumulate);
 *     the micro-kernel; its contract is in gemm/kernels/kernels.h.
 *   typedef struct ai3_gemm_config_sfx {
 *       const char *name;      the micro-kernel, e.g. "f32_gemm_14x32_avx512"
 *       ai3_isa isa;
 *       int mr, nr;            register tile: A panels have mr rows, B strips nr columns
 *       int64_t mc, kc, nc;    cache blocks: rows of A, depth of K, columns of B
 *       ai3_gemm_ukernel_sfx ukernel;
 *   } ai3_gemm_config_sfx;
 *   ai3_gemm_get_config_sfx()       the config of the active ISA (ai3_cpu_isa())
 *   ai3_gemm_config_for_isa_sfx(i)  the config declaring the highest ISA neither
 *                                   above i nor above what the CPU has
 * The pointers stay valid for the program's life.
 *
 * --- the callback contract ------------------------------------------------
 *   typedef void (*ai3_gemm_pack_fn_sfx)(void *ctx, int64_t k0, int64_t kc,
 *                                        int64_t x0, int64_t xc, T *dst);
 * The engine asks for one block of an operand at a time and gives the
 * callback the destination, 64-byte aligned:
 *
 *   B operand: pack(ctx, k0, kc, n0, nc, dst) writes B[k0 : k0+kc, n0 : n0+nc]
 *     as ceil(nc / NR) strips one after the other, each NR·kc elements:
 *     element (k0 + p, n0 + s·NR + j) at dst[s·NR·kc + p·NR + j]. Columns
 *     past nc in the last strip must be written as zeros.
 *   A operand: pack(ctx, k0, kc, m0, mc, dst) writes A[m0 : m0+mc, k0 : k0+kc]
 *     as ceil(mc / MR) panels, each MR·kc elements: element
 *     (m0 + s·MR + i, k0 + p) at dst[s·MR·kc + p·MR + i]. Rows past mc in
 *     the last panel must be written as zeros.
 *
 * MR, NR are cfg->mr, cfg->nr of the config the GEMM runs with; kc <= cfg->kc,
 * nc <= cfg->nc, mc <= cfg->mc; n0 is a multiple of NR and m0 of MR. The
 * callback may be called from several pool threads at once (with different
 * blocks), so it must only read shared state and write dst; it must not
 * call ai3_gemm itself (dst is in the calling thread's packing buffer).
 * ai3_gemm_pack_a_block/_b_block write this format from a strided source.
 *
 * --- operands ----------------------------------------------------------------
 *   typedef struct ai3_gemm_operand_sfx {
 *       ai3_gemm_operand_kind kind;
 *       const T *data;    STRIDED: the matrix; PACKED: from ai3_gemm_pack_a/_b
 *       int64_t rs, cs;   STRIDED: element (r, c) at data[r·rs + c·cs]
 *       ai3_gemm_pack_fn_sfx pack; void *ctx;   CALLBACK
 *   } ai3_gemm_operand_sfx;
 * made by ai3_gemm_strided_sfx(data, rs, cs), ai3_gemm_packed_sfx(data),
 * ai3_gemm_callback_sfx(pack, ctx).
 *
 * --- pre-packed operands ----------------------------------------------------
 *   size_t ai3_gemm_packed_a_size_sfx(cfg, M, K)     in elements
 *   size_t ai3_gemm_packed_b_size_sfx(cfg, K, N)
 *   void ai3_gemm_pack_a_sfx(cfg, M, K, A, rs, cs, dst)
 *   void ai3_gemm_pack_b_sfx(cfg, K, N, B, rs, cs, dst)
 * The whole matrix in the engine's format for `cfg` (opaque to callers). The
 * buffer should be 64-byte aligned (ai3_alloc). A packed operand may only be
 * used with the config it was packed for. The source is strided as above.
 *   void ai3_gemm_pack_a_block_sfx(cfg, mc, kc, A, rs, cs, dst)
 *   void ai3_gemm_pack_b_block_sfx(cfg, kc, nc, B, rs, cs, dst)
 * One block in the callback format, from a strided source whose element
 * (0, 0) is the block's first: A block mc×kc, B block kc×nc.
 *
 * --- the product ---------------------------------------------------------------
 *   ai3_status ai3_gemm_sfx(cfg, M, N, K, A, B, C, ldc, bias_row, bias_col, flags)
 * cfg NULL means ai3_gemm_get_config_sfx(). bias_row (length M) and bias_col
 * (length N) may be NULL; flags are AI3_GEMM_ACCUMULATE and
 * AI3_GEMM_SINGLE_THREAD. M, N or K may be 0. Returns AI3_OK, or
 * AI3_ERROR_INVALID_ARGUMENT / AI3_ERROR_OUT_OF_MEMORY with the message set
 * (C is then unspecified).
 *
 * --- the older entry points, single-threaded, on top of ai3_gemm ------------
 *   ai3_gemm_nn_sfx:  C[M×N] (+)= A[M×K] · B[K×N]      B rows are contiguous
 *   ai3_gemm_nt_sfx:  C[M×N] (+)= A[M×K] · B[N×K]ᵀ     both operands contiguous along K
 * lda/ldb/ldc are row strides in elements. */
#define AI3_GEMM_DECLARE(sfx, T)                                                                \
    typedef void (*ai3_gemm_ukernel_##sfx)(int64_t kc, const T *a, const T *b, int64_t ldb,    \
                                           T *c, int64_t ldc, int mr, int nr, const T *bias_r, \
                                           const T *bias_c, bool accumulate);                  \
    typedef struct ai3_gemm_config_##sfx {                                                     \
        const char *name;                                                                      \
        ai3_isa isa;                                                                           \
        int mr, nr;                                                                            \
        int64_t mc, kc, nc;                                                                    \
        ai3_gemm_ukernel_##sfx ukernel;                                                        \
    } ai3_gemm_config_##sfx;                                                                   \
    const ai3_gemm_config_##sfx *ai3_gemm_get_config_##sfx(void);                              \
    const ai3_gemm_config_##sfx *ai3_gemm_config_for_isa_##sfx(ai3_isa isa);                   \
                                                                                               \
    typedef void (*ai3_gemm_pack_fn_##sfx)(void *ctx, int64_t k0, int64_t kc, int64_t x0,      \
                                           int64_t xc, T *dst);                                \
    typedef struct ai3_gemm_operand_##sfx {                                                    \
        ai3_gemm_operand_kind kind;                                                            \
        const T *data;                                                                         \
        int64_t rs, cs;                                                                        \
        ai3_gemm_pack_fn_##sfx pack;                                                           \
        void *ctx;                                                                             \
    } ai3_gemm_operand_##sfx;                                                                  \
    static inline ai3_gemm_operand_##sfx ai3_gemm_strided_##sfx(const T *data, int64_t rs,     \
                                                                int64_t cs) {                  \
        return (ai3_gemm_operand_##sfx){                                                       \
            .kind = AI3_GEMM_STRIDED, .data = data, .rs = rs, .cs = cs};                       \
    }                                                                                          \
    static inline ai3_gemm_operand_##sfx ai3_gemm_packed_##sfx(const T *data) {                \
        return (ai3_gemm_operand_##sfx){.kind = AI3_GEMM_PACKED, .data = data};                \
    }                                                                                          \
    static inline ai3_gemm_operand_##sfx ai3_gemm_callback_##sfx(ai3_gemm_pack_fn_##sfx pack,  \
                                                                 void *ctx) {                  \
        return (ai3_gemm_operand_##sfx){.kind = AI3_GEMM_CALLBACK, .pack = pack, .ctx = ctx};  \
    }                                                                                          \
                                                                                               \
    size_t ai3_gemm_packed_a_size_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t M,          \
                                        int64_t K);                                            \
    size_t ai3_gemm_packed_b_size_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t K,          \
                                        int64_t N);                                            \
    void ai3_gemm_pack_a_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t M, int64_t K,         \
                               const T *A, int64_t rs, int64_t cs, T *dst);                    \
    void ai3_gemm_pack_b_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t K, int64_t N,         \
                               const T *B, int64_t rs, int64_t cs, T *dst);                    \
    void ai3_gemm_pack_a_block_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t mc, int64_t kc, \
                                     const T *A, int64_t rs, int64_t cs, T *dst);              \
    void ai3_gemm_pack_b_block_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t kc, int64_t nc, \
                                     const T *B, int64_t rs, int64_t cs, T *dst);              \
                                                                                               \
    ai3_status ai3_gemm_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t M, int64_t N,          \
                              int64_t K, const ai3_gemm_operand_##sfx *A,                      \
                              const ai3_gemm_operand_##sfx *B, T *C, int64_t ldc,              \
                              const T *bias_row, const T *bias_col, unsigned flags);           \
    /* ai3_gemm, then the epilogue (NULL: none) applied to each tile of C as \
     * soon as it is final, while it is in cache: C = act(C + R), R (the     \
     * epilogue's residual, of T) laid out as C, element (i, j) at           \
     * residual[i·ldc + j]. */                                               \
    ai3_status ai3_gemm_epilogue_##sfx(const ai3_gemm_config_##sfx *cfg, int64_t M, int64_t N, \
                                       int64_t K, const ai3_gemm_operand_##sfx *A,             \
                                       const ai3_gemm_operand_##sfx *B, T *C, int64_t ldc,     \
                                       const T *bias_row, const T *bias_col, unsigned flags,   \
                                       const ai3_epilogue *epilogue);                          \
                                                                                               \
    /* The column kernel (kernels/kernels.h: a tile of C as vectors along its \
     * rows, B read in place at row offsets) of the active ISA; NULL below    \
     * AVX2. */                                                               \
    typedef struct ai3_gemm_cols_config_##sfx {                                                \
        const char *name; /* e.g. "f32_gemm_cols_32x14_avx512" */                              \
        int mr, nr;                                                                            \
        int lookahead; /* entries the kernel's off needs past kc */                            \
        void (*kernel)(int64_t kc, const T *a, const T *b, const int64_t *off, T *c,           \
                       int64_t ldc, int mr, int nr, const T *bias_r, bool accumulate);         \
    } ai3_gemm_cols_config_##sfx;                                                              \
    const ai3_gemm_cols_config_##sfx *ai3_gemm_get_cols_config_##sfx(void);                   \
                                                                                               \
    void ai3_gemm_nn_##sfx(int64_t M, int64_t N, int64_t K, const T *A, int64_t lda,           \
                           const T *B, int64_t ldb, T *C, int64_t ldc, bool accumulate);       \
    void ai3_gemm_nt_##sfx(int64_t M, int64_t N, int64_t K, const T *A, int64_t lda,           \
                           const T *B, int64_t ldb, T *C, int64_t ldc, bool accumulate);

AI3_GEMM_DECLARE(f32, float)
AI3_GEMM_DECLARE(f64, double)

/* Aliases over `real` for code compiled once per dtype (real.h). */
typedef AI3_TYPED(ai3_gemm_ukernel) ai3_gemm_ukernel;
typedef AI3_TYPED(ai3_gemm_config) ai3_gemm_config;
typedef AI3_TYPED(ai3_gemm_pack_fn) ai3_gemm_pack_fn;
typedef AI3_TYPED(ai3_gemm_operand) ai3_gemm_operand;
typedef AI3_TYPED(ai3_gemm_cols_config) ai3_gemm_cols_config;
#define ai3_gemm_strided AI3_TYPED(ai3_gemm_strided)
#define ai3_gemm_packed AI3_TYPED(ai3_gemm_packed)
#define ai3_gemm_callback AI3_TYPED(ai3_gemm_callback)

#endif
