/*
 * What the GEMM-based conv2d algorithms (gemm, implicit gemm, implicit
 * precomp gemm, smm) share: the weights packed once, at prepare, as the
 * engine's A operand, and the loop that runs one GEMM per job (image,
 * group) over the thread pool; for the GEMM algorithms but smm on AVX2 and
 * AVX-512, the column kernel's path instead.
 */
#ifndef AI3_CONV2D_GEMM_H
#define AI3_CONV2D_GEMM_H

#include "algorithms/conv2d.h"
#include "gemm.h"

#define AI3_ALWAYS_INLINE static inline __attribute__((always_inline))
/* For the B-packing callbacks: their short copy loops stay loops (GCC would
 * make each a call to memcpy of a few dozen bytes, which costs more than
 * the copy). */
#if defined(__GNUC__) && !defined(__clang__)
#define AI3_NO_MEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define AI3_NO_MEMCPY
#endif

/* The plan's state: `blocks` packed A matrices of M = C_out / groups rows,
 * one per group, or per (group, tap) for smm. */
typedef struct {
    const ai3_gemm_config *cfg; /* the config they were packed for, and run with */
    /* or, when not NULL, the column kernel they were packed for instead
     * (ai3_conv2d_pack_weights_cols) */
    const ai3_gemm_cols_config *cols;
    int64_t m, k;               /* each block is M×K */
    int64_t blocks;
    size_t block_elems;
    real *packed;
} ai3_conv2d_packed_weights;

/* pb->state = the weights of each group as M×K, K = C_in/groups·KH·KW in
 * the weight's order (channel, row, column); with per_tap, one M×(C_in /
 * groups) matrix per (group, tap), block g·taps + t. */
ai3_status AI3_TYPED(ai3_conv2d_pack_weights)(ai3_conv2d_problem *pb, bool per_tap);
void AI3_TYPED(ai3_conv2d_packed_weights_release)(void *state);

static inline ai3_gemm_operand ai3_conv2d_packed_block(const ai3_conv2d_packed_weights *pw,
                                                       int64_t block) {
    return ai3_gemm_packed(pw->packed + (size_t)block * pw->block_elems);
}

/* The column kernel's path (AVX2, AVX-512: gemm.h's cols config), where B is
 * read in place at row offsets instead of packed by the engine.
 *
 * pb->state = the weights of each group as ceil(M / MR) panels of MR rows ×
 * all of K, M = C_out / groups, K = C_in/groups·KH·KW: element (row s·MR +
 * i, p) of panel s at [p·MR + i]. */
ai3_status AI3_TYPED(ai3_conv2d_pack_weights_cols)(ai3_conv2d_problem *pb,
                                                   const ai3_gemm_cols_config *cols);

/* Where B of the tile of nr <= NR output positions from position `pos` of
 * image n, group g lies: row k (k < K) starts at the returned pointer +
 * (*off)[k], its positions consecutive; the function may gather them into
 * a buffer of the calling thread's. NULL (error set) when it cannot. */
typedef const real *(*ai3_conv2d_cols_tile_fn)(void *ctx, int64_t n, int64_t g, int64_t pos,
                                               int nr, const int64_t **off);

/* B of every image and group, for the output positions seen as `rows` runs
 * of `width` (rows · width = OH·OW), each cut into tiles of at most NR as
 * even as can be: row k of B (k < K) for run r of image n, group g starts
 * at b + n·b_image + g·b_group + r·b_run + off[k], its positions
 * consecutive; or, where `tile` is set, where tile(tile_ctx, ...) says.
 * Offsets have the kernel's look-ahead entries past K. */
typedef struct {
    const real *b;
    int64_t b_image, b_group, b_run;
    const int64_t *off;
    int64_t rows, width;
    ai3_conv2d_cols_tile_fn tile;
    void *tile_ctx;
} ai3_conv2d_cols_b;

/* output (images d->n, offset `y_offset` elements into the tensor the
 * epilogue's residual indexes) = weights · B + bias, then the epilogue,
 * tile by tile over the pool. Fails only where b->tile does. */
ai3_status AI3_TYPED(ai3_conv2d_run_cols)(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                                          const ai3_conv2d_cols_b *b, real *output,
                                          int64_t y_offset);

/* Calls job(ctx, i, flags) for every i in [0, jobs): spread over the pool,
 * each job's GEMMs single-threaded (flags = AI3_GEMM_SINGLE_THREAD), when
 * the jobs split evenly over the threads; otherwise one job after another,
 * each GEMM on the whole pool (flags = 0). Stops at the first failure and
 * returns its status (the message is set on the calling thread). */
typedef ai3_status (*ai3_conv2d_gemm_job)(void *ctx, int64_t i, unsigned flags);
ai3_status AI3_TYPED(ai3_conv2d_run_gemm_jobs)(int64_t jobs, ai3_conv2d_gemm_job job, void *ctx);

#endif
