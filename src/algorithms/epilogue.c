/* Fused epilogues (epilogue.h): the residual added, then the activation, with
 * the activations' own element functions (activation.h), so that a fused
 * epilogue gives the bits of the separate add and activation. */
#include "epilogue.h"

#include "activation.h"

/* One row: y = f(y + x), or y = f(y) without a residual. */
#define ROW(f)                                                           \
    do {                                                                 \
        if (x)                                                           \
            for (int64_t j = 0; j < cols; j++) y[j] = f(y[j] + x[j]);    \
        else                                                             \
            for (int64_t j = 0; j < cols; j++) y[j] = f(y[j]);           \
    } while (0)

static inline real identity_of(real v) { return v; }

AI3_MULTIVERSION(epilogue_block, real *, c, int64_t, ldc, const real *, r, int64_t, ldr,
                 int64_t, rows, int64_t, cols, const ai3_epilogue *, e) {
    const real lo = (real)e->lo, hi = (real)e->hi;
    if (ldc == cols && (!r || ldr == cols)) { /* contiguous: one long row vectorises best */
        cols *= rows;
        rows = 1;
    }
#define CLAMP(v) ai3_clamp_of(v, lo, hi)
    for (int64_t i = 0; i < rows; i++) {
        real *restrict y = c + i * ldc;
        const real *restrict x = r ? r + i * ldr : NULL;
        switch (e->act) {
        case AI3_ACT_NONE: ROW(identity_of); break;
        case AI3_ACT_CLAMP: ROW(CLAMP); break;
        case AI3_ACT_SIGMOID: ROW(ai3_sigmoid_of); break;
        case AI3_ACT_HARDSIGMOID: ROW(ai3_hardsigmoid_of); break;
        case AI3_ACT_HARDSWISH: ROW(ai3_hardswish_of); break;
        case AI3_ACT_SILU: ROW(ai3_silu_of); break;
        case AI3_ACT_GELU: ROW(ai3_gelu_of); break;
        case AI3_ACT_GELU_TANH: ROW(ai3_gelu_tanh_of); break;
        }
    }
#undef CLAMP
}

void AI3_TYPED(ai3_epilogue_apply)(real *c, int64_t ldc, const real *r, int64_t ldr,
                                   int64_t rows, int64_t cols, const ai3_epilogue *e) {
    epilogue_block(c, ldc, r, ldr, rows, cols, e);
}

typedef struct {
    real *y;
    const ai3_epilogue *e;
} pass_ctx;

static void pass_range(void *vctx, int64_t begin, int64_t end) {
    const pass_ctx *c = vctx;
    epilogue_block(c->y + begin, 0, ai3_epilogue_residual(c->e, begin), 0, 1, end - begin, c->e);
}

void AI3_TYPED(ai3_epilogue_pass)(real *y, int64_t n, const ai3_epilogue *e) {
    pass_ctx c = {y, e};
    /* (a clamp is bound by memory, gelu by arithmetic: a middle grain) */
    ai3_parallel_for(n, 1 << 14, pass_range, &c);
}
