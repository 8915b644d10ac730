/*
 * The interface of a built-in conv2d algorithm, split the way a plan runs it
 * (plan once, run many): `prepare` once per plan, from the weights;
 * `workspace_size` and `run` per input shape.
 *
 * Each algorithm file defines one `const ai3_conv2d_algorithm` per dtype,
 * AI3_TYPED(ai3_conv2d_<name>), and the registry (runtime/registry.c)
 * lists it. Everything reaching an algorithm is validated, contiguous, of
 * one dtype, and 4-d.
 */
#ifndef AI3_ALGORITHMS_CONV2D_H
#define AI3_ALGORITHMS_CONV2D_H

#include "internal.h"

/* What a plan knows before it sees an input. */
typedef struct ai3_conv2d_problem {
    ai3_conv2d_params params;
    /* (C_out, C_in / groups, KH, KW). Its data is the caller's during
     * prepare, for algorithms that have one (the plan keeps only what prepare
     * makes: run must not read it); the plan's own copy for the others. */
    ai3_tensor weight;
    const ai3_tensor *bias;  /* the plan's own copy, or NULL */
    void *state;             /* what prepare made, or NULL */
    /* The input the plan expects (the caller's input_shape), if given: a
     * hint for choices such as Winograd's tile size; any input may come. */
    int has_hint;
    ai3_conv2d_dims hint;
} ai3_conv2d_problem;

typedef struct ai3_conv2d_algorithm {
    /* NULL when every conv2d is supported; otherwise AI3_OK or
     * AI3_ERROR_UNSUPPORTED with a message naming the algorithm and the
     * parameter it cannot handle. */
    ai3_status (*supports)(const ai3_conv2d_problem *pb);
    /* NULL, or sets pb->state from the weights (re-layout, transforms). */
    ai3_status (*prepare)(ai3_conv2d_problem *pb);
    void (*release)(void *state);
    /* NULL when no workspace is needed. */
    size_t (*workspace_size)(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d);
    /* input (N, C_in, H, W) → output (N, C_out, OH, OW), with workspace of
     * workspace_size bytes, 64-byte aligned. */
    ai3_status (*run)(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace);
    /* run applies d->epilogue itself (while each output tile is in cache). */
    bool fuses_epilogue;
} ai3_conv2d_algorithm;

/* Carving one workspace into parts: the same sequence of ai3_arena_take
 * calls sizes it (base NULL: only counts) and then hands out the parts. */
typedef struct {
    char *base;
    size_t used;
} ai3_arena;

static inline void *ai3_arena_take(ai3_arena *a, size_t bytes) {
    void *p = a->base ? a->base + a->used : NULL;
    a->used += (bytes + 63) & ~(size_t)63;
    return p;
}

/* Whether the convolution pads its input on any side. */
static inline bool ai3_conv2d_is_padded(const ai3_conv2d_params *p) {
    return p->pad_top || p->pad_bottom || p->pad_left || p->pad_right;
}

/* "implicit precomp gemm"'s indirection buffer (both dtypes; built in
 * ops/conv2d_indirection.c): for each kernel tap t and output position j,
 * offset[t·OH·OW + j] is the element (row · W + column) of an input channel
 * the tap meets there, the padding mode applied, or -1 for a zero of zero
 * padding; run[t·strips + s] says whether strip s (nr positions) has
 * consecutive offsets (no strips where nr is 0). */
typedef struct {
    const int32_t *offset;
    const uint8_t *run;
    int64_t strips; /* ceil(OH·OW / nr) */
} ai3_conv2d_indirection;

/* Its workspace for strips of nr positions, in bytes. */
size_t ai3_conv2d_indirection_size(const ai3_conv2d_dims *d, int64_t nr);
/* Builds it in `workspace` (of that size) over the thread pool;
 * AI3_ERROR_UNSUPPORTED for input planes past 32-bit offsets. */
ai3_status ai3_conv2d_indirection_build(const ai3_conv2d_params *p, const ai3_conv2d_dims *d,
                                        int64_t nr, void *workspace,
                                        ai3_conv2d_indirection *ind);

#define AI3_DECLARE_CONV2D_ALGORITHM(name)                                               \
    extern const ai3_conv2d_algorithm name##_f32;                                        \
    extern const ai3_conv2d_algorithm name##_f64;

AI3_DECLARE_CONV2D_ALGORITHM(ai3_conv2d_direct)
AI3_DECLARE_CONV2D_ALGORITHM(ai3_conv2d_smm)
AI3_DECLARE_CONV2D_ALGORITHM(ai3_conv2d_gemm)
AI3_DECLARE_CONV2D_ALGORITHM(ai3_conv2d_implicit_gemm)
AI3_DECLARE_CONV2D_ALGORITHM(ai3_conv2d_implicit_precomp_gemm)
AI3_DECLARE_CONV2D_ALGORITHM(ai3_conv2d_winograd)
/* bfloat16 versions (<name>_bf16.c) */
extern const ai3_conv2d_algorithm ai3_conv2d_direct_bf16, ai3_conv2d_gemm_bf16,
    ai3_conv2d_implicit_gemm_bf16, ai3_conv2d_implicit_precomp_gemm_bf16;

/* Finds the conv2d algorithm `name` ("default" and "guess" already
 * resolved): a built-in (*impl) or one registered at run time (*registered). */
ai3_status ai3_lookup_conv2d(const char *name, const ai3_tensor *like, const ai3_conv2d_algorithm **impl,
                             ai3_conv2d_fn *registered);

/* The algorithm "guess" picks for this problem and input, by name. */
const char *ai3_conv2d_guess(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d);

#endif
