/*
 * The interface of a built-in linear algorithm, split the way a plan runs it:
 * `prepare` once per plan (e.g. packing the weight for the GEMM engine),
 * `run` per input. Each algorithm file defines one `const
 * ai3_linear_algorithm` per dtype, AI3_TYPED(ai3_linear_<name>).
 */
#ifndef AI3_ALGORITHMS_LINEAR_H
#define AI3_ALGORITHMS_LINEAR_H

#include "internal.h"

typedef struct ai3_linear_problem {
    /* (out_features, in_features): data as for conv2d (conv2d.h) */
    ai3_tensor weight;
    const ai3_tensor *bias; /* the plan's own copy, or NULL */
    void *state;            /* what prepare made, or NULL */
} ai3_linear_problem;

typedef struct ai3_linear_algorithm {
    ai3_status (*prepare)(ai3_linear_problem *pb); /* NULL: nothing to prepare */
    void (*release)(void *state);
    /* input (..., in_features) → output (..., out_features), then the
     * epilogue (NULL: none; runtime/internal.h) applied to each output tile
     * as soon as it is final. */
    ai3_status (*run)(const ai3_linear_problem *pb, const ai3_tensor *input, ai3_tensor *output,
                      const ai3_epilogue *epilogue);
} ai3_linear_algorithm;

extern const ai3_linear_algorithm ai3_linear_gemm_f32;
extern const ai3_linear_algorithm ai3_linear_gemm_f64;
extern const ai3_linear_algorithm ai3_linear_gemm_bf16; /* linear_gemm_bf16.c */

/* Finds the linear algorithm `name` ("default" resolved): a built-in
 * (*impl) or one registered at run time (*registered). */
ai3_status ai3_lookup_linear(const char *name, const ai3_tensor *like, const ai3_linear_algorithm **impl,
                             ai3_linear_fn *registered);

#endif
