/*
 * conv2d "direct" in bfloat16: the float direct algorithm
 * (conv2d_direct.c) on float32 copies. Its layers (depthwise, few input
 * channels) do few multiply-adds per element moved, so the conversions cost
 * little: the weights and bias are widened once, at prepare; per run the
 * input is widened into the workspace, the float algorithm computes (and
 * clamps) a float32 output there, and that is rounded to bfloat16. A fused
 * residual, bfloat16, is added (and the activation applied) as the output
 * is rounded.
 */
#include "algorithms/conv2d.h"
#include "bf16.h"

#include <string.h>

typedef struct {
    ai3_conv2d_problem inner; /* the float problem: float32 weight and bias */
    ai3_tensor bias;
} state_t;

static const ai3_conv2d_algorithm *const FLOAT = &ai3_conv2d_direct_f32;

static void release(void *vstate) {
    state_t *st = vstate;
    if (!st) return;
    if (FLOAT->release && st->inner.state) FLOAT->release(st->inner.state);
    ai3_free(st->inner.weight.data);
    ai3_free(st->bias.data);
    ai3_free(st);
}

static ai3_status prepare(ai3_conv2d_problem *pb) {
    ai3_status s = ai3_require_cpu_bf16("conv2d");
    if (s != AI3_OK) return s;
    state_t *st = ai3_alloc(sizeof *st);
    if (!st) return AI3_ERROR_OUT_OF_MEMORY;
    memset(st, 0, sizeof *st);
    st->inner = *pb;
    st->inner.state = NULL;
    const int64_t nw = ai3_tensor_numel(&pb->weight);
    float *w = ai3_alloc(sizeof(float) * (size_t)nw);
    float *b = pb->bias ? ai3_alloc(sizeof(float) * (size_t)pb->bias->shape[0]) : NULL;
    st->inner.weight.data = w;
    st->bias.data = b;
    if (!w || (pb->bias && !b)) {
        release(st);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    ai3_bf16_tensor_to_float(&pb->weight, w, &st->inner.weight);
    if (pb->bias) ai3_bf16_tensor_to_float(pb->bias, b, &st->bias);
    st->inner.bias = pb->bias ? &st->bias : NULL;
    if (FLOAT->prepare && (s = FLOAT->prepare(&st->inner)) != AI3_OK) {
        release(st);
        return s;
    }
    pb->state = st;
    return AI3_OK;
}

/* The float problem for this run (pb's parameters: the plan may have
 * clamped its strides). */
static ai3_conv2d_problem inner_of(const ai3_conv2d_problem *pb) {
    const state_t *st = pb->state;
    ai3_conv2d_problem inner = st->inner;
    inner.params = pb->params;
    return inner;
}

/* Workspace: the float input, the float output, the float algorithm's. */
static void carve(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d, ai3_arena *a,
                  float **x, float **y, void **rest) {
    const ai3_conv2d_problem inner = inner_of(pb);
    *x = ai3_arena_take(a, sizeof(float) * (size_t)(d->n * d->c_in * d->h * d->w));
    *y = ai3_arena_take(a, sizeof(float) * (size_t)(d->n * d->c_out * d->oh * d->ow));
    *rest = ai3_arena_take(a, FLOAT->workspace_size ? FLOAT->workspace_size(&inner, d) : 0);
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    ai3_arena a = {NULL, 0};
    float *x, *y;
    void *rest;
    carve(pb, d, &a, &x, &y, &rest);
    return a.used;
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    ai3_arena a = {workspace, 0};
    float *x, *y;
    void *rest;
    carve(pb, d, &a, &x, &y, &rest);
    const ai3_conv2d_problem inner = inner_of(pb);
    ai3_tensor in32, out32;
    ai3_bf16_tensor_to_float(input, x, &in32);
    out32 = *output;
    out32.dtype = AI3_FLOAT32;
    out32.data = y;
    /* d->epilogue applied by the float algorithm, or as the output is
     * rounded where its residual is bfloat16 */
    const ai3_epilogue *e = d->epilogue;
    ai3_conv2d_dims d32 = *d;
    if (e && e->residual) d32.epilogue = NULL;
    ai3_status s = FLOAT->run(&inner, &d32, &in32, &out32, rest);
    if (s != AI3_OK) return s;
    if (e && e->residual) ai3_epilogue_pass_bf16(output->data, y, ai3_tensor_numel(output), e);
    else ai3_float_to_bf16_n(y, output->data, ai3_tensor_numel(output));
    return AI3_OK;
}

const ai3_conv2d_algorithm ai3_conv2d_direct_bf16 = {
    .prepare = prepare,
    .release = release,
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* the float algorithm applies it */
};
