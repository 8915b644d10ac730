/*
 * Applying a fused epilogue (runtime/internal.h: output = act(output +
 * residual)) to a block of an output, over `real`: the GEMM engine calls it
 * on each C tile once the tile is final, the conv2d algorithms on the
 * tiles they write.
 */
#ifndef AI3_EPILOGUE_H
#define AI3_EPILOGUE_H

#include "internal.h"
#include "real.h"

/* c[i·ldc + j] = act(c[i·ldc + j] + r[i·ldr + j]) for i < rows, j < cols,
 * with e's activation; r NULL: no residual (e->residual is not read: the
 * caller positions r, e.g. with ai3_epilogue_residual). */
void AI3_TYPED(ai3_epilogue_apply)(real *c, int64_t ldc, const real *r, int64_t ldr,
                                   int64_t rows, int64_t cols, const ai3_epilogue *e);

/* e's residual at element `offset` of the output, or NULL (none, or no e). */
static inline const real *ai3_epilogue_residual(const ai3_epilogue *e, int64_t offset) {
    return e && e->residual ? (const real *)e->residual + offset : NULL;
}

/* e with its residual moved on by `offset` elements (for a call that writes
 * the part of the output starting there), made in *buf; e itself when it
 * has no residual. */
static inline const ai3_epilogue *ai3_epilogue_at(const ai3_epilogue *e, int64_t offset,
                                                  ai3_epilogue *buf) {
    if (!e || !e->residual) return e;
    *buf = *e;
    buf->residual = (const real *)e->residual + offset;
    return buf;
}

#endif
