/* The plan object (ai3_plan_*), shared by ops/plan.c and the CUDA backend. */
#ifndef AI3_PLAN_H
#define AI3_PLAN_H

#include "ai3.h"

#include <stdbool.h>

#define AI3_PLAN_MAX_WEIGHTS 4

struct ai3_plan {
    ai3_op op;
    char algorithm[64];      /* as asked for; the impl may resolve it */
    ai3_op_params params;
    ai3_plan_options options;
    /* Host plans: owned copies (data NULL when absent). CUDA plans: views
     * of the caller's device memory (borrowed). */
    ai3_tensor weights[AI3_PLAN_MAX_WEIGHTS];
    size_t weight_bytes;     /* of the weights it was made with */
    bool borrowed;
    ai3_device device;       /* where the weights are (CPU for none) */
    int device_index;
    void *state;             /* what the op's impl (or the CUDA backend) made */
};

#endif
