/* conv2d: argument checks, output shape, padding helpers and dispatch. */
#include "algorithms/conv2d.h"
#include "bf16.h"
#include "internal.h"
#include "op.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <string.h>

static const char *const OP = "conv2d";

ai3_conv2d_params ai3_conv2d_params_default(void) {
    ai3_conv2d_params p = {.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1,
                           .groups = 1, .padding_mode = AI3_PADDING_ZEROS};
    return p;
}

void ai3_conv2d_get_dims(const ai3_tensor *input, const ai3_tensor *weight,
                         const ai3_conv2d_params *p, ai3_conv2d_dims *d) {
    int batched = input->ndim == 4;
    d->n = batched ? input->shape[0] : 1;
    d->c_in = input->shape[batched];
    d->h = input->shape[batched + 1];
    d->w = input->shape[batched + 2];
    d->c_out = weight->shape[0];
    d->kh = weight->shape[2];
    d->kw = weight->shape[3];
    d->groups = p->groups;
    d->c_in_g = d->c_in / p->groups;
    d->c_out_g = d->c_out / p->groups;
    d->hp = d->h + p->pad_top + p->pad_bottom;
    d->wp = d->w + p->pad_left + p->pad_right;
    d->oh = (d->hp - p->dilation_h * (d->kh - 1) - 1) / p->stride_h + 1;
    d->ow = (d->wp - p->dilation_w * (d->kw - 1) - 1) / p->stride_w + 1;
    d->epilogue = NULL;
}

int64_t ai3_pad_source_index(int64_t i, int64_t size, int64_t before, ai3_padding_mode mode) {
    int64_t j = i - before;
    if (j >= 0 && j < size) return j;
    switch (mode) {
    case AI3_PADDING_REFLECT: /* mirror without repeating the edge: -1 -> 1 */
        return j < 0 ? -j : 2 * (size - 1) - j;
    case AI3_PADDING_REPLICATE:
        return j < 0 ? 0 : size - 1;
    case AI3_PADDING_CIRCULAR:
        return j < 0 ? j + size : j - size;
    case AI3_PADDING_ZEROS:
    default:
        return -1;
    }
}

typedef struct {
    const char *src;
    char *dst;
    size_t elem;
    const ai3_conv2d_params *p;
    const ai3_conv2d_dims *d;
} pad_job;

static void pad_planes(void *ctx, int64_t begin, int64_t end) {
    const pad_job *job = ctx;
    const ai3_conv2d_dims *d = job->d;
    const ai3_conv2d_params *p = job->p;
    size_t elem = job->elem;
    for (int64_t plane = begin; plane < end; plane++) {
        const char *src = job->src + (size_t)(plane * d->h * d->w) * elem;
        char *dst = job->dst + (size_t)(plane * d->hp * d->wp) * elem;
        for (int64_t i = 0; i < d->hp; i++) {
            char *row = dst + (size_t)(i * d->wp) * elem;
            int64_t r = ai3_pad_source_index(i, d->h, p->pad_top, p->padding_mode);
            if (r < 0) {
                memset(row, 0, (size_t)d->wp * elem);
                continue;
            }
            const char *src_row = src + (size_t)(r * d->w) * elem;
            memcpy(row + (size_t)p->pad_left * elem, src_row, (size_t)d->w * elem);
            for (int64_t j = 0; j < p->pad_left; j++) {
                int64_t c = ai3_pad_source_index(j, d->w, p->pad_left, p->padding_mode);
                if (c < 0) memset(row + (size_t)j * elem, 0, elem);
                else memcpy(row + (size_t)j * elem, src_row + (size_t)c * elem, elem);
            }
            for (int64_t j = p->pad_left + d->w; j < d->wp; j++) {
                int64_t c = ai3_pad_source_index(j, d->w, p->pad_left, p->padding_mode);
                if (c < 0) memset(row + (size_t)j * elem, 0, elem);
                else memcpy(row + (size_t)j * elem, src_row + (size_t)c * elem, elem);
            }
        }
    }
}

void ai3_conv2d_pad_input(const ai3_tensor *input, const ai3_conv2d_params *p,
                          const ai3_conv2d_dims *d, void *dst) {
    pad_job job = {input->data, dst, ai3_dtype_size(input->dtype), p, d};
    ai3_parallel_for(d->n * d->c_in, 1, pad_planes, &job);
}

static const char *padding_mode_name(ai3_padding_mode mode) {
    switch (mode) {
    case AI3_PADDING_ZEROS: return "zeros";
    case AI3_PADDING_REFLECT: return "reflect";
    case AI3_PADDING_REPLICATE: return "replicate";
    case AI3_PADDING_CIRCULAR: return "circular";
    }
    return "?";
}

/* The checks that need no input: weight, bias and parameters. */
static ai3_status check_weight(const ai3_tensor *weight, const ai3_tensor *bias,
                               const ai3_conv2d_params *p) {
    ai3_status s;
    if ((s = ai3_check_tensor(weight, "weight", OP)) != AI3_OK) return s;
    if (!p) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: params is NULL");
    if (weight->ndim != 4)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: weight must be 4-d (C_out, C_in / groups, KH, KW), got %d-d",
                             weight->ndim);
    if (weight->shape[0] < 1 || weight->shape[1] < 1 || weight->shape[2] < 1 ||
        weight->shape[3] < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: weight has an empty dimension");
    if (p->stride_h < 1 || p->stride_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: stride must be >= 1, got (%lld, %lld)",
                             (long long)p->stride_h, (long long)p->stride_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: dilation must be >= 1, got (%lld, %lld)",
                             (long long)p->dilation_h, (long long)p->dilation_w);
    if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: padding must be >= 0");
    const int64_t most = AI3_MAX(AI3_MAX(AI3_MAX(p->stride_h, p->stride_w),
                                         AI3_MAX(p->dilation_h, p->dilation_w)),
                                 AI3_MAX(AI3_MAX(p->pad_top, p->pad_bottom),
                                         AI3_MAX(p->pad_left, p->pad_right)));
    if (most > AI3_MAX_ELEMENTS)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: stride, dilation and padding must be at most 2^56, got "
                             "%lld", (long long)most);
    if ((unsigned)p->padding_mode > AI3_PADDING_CIRCULAR)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: unknown padding mode %d",
                             (int)p->padding_mode);
    if (p->groups < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: groups must be >= 1, got %lld",
                             (long long)p->groups);
    if (weight->shape[0] % p->groups != 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: out channels (%lld) must be divisible by groups (%lld)",
                             (long long)weight->shape[0], (long long)p->groups);
    if (bias) {
        if ((s = ai3_check_tensor(bias, "bias", OP)) != AI3_OK) return s;
        if ((s = ai3_check_same_dtype(weight, bias, OP)) != AI3_OK) return s;
        if (bias->ndim != 1 || bias->shape[0] != weight->shape[0])
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "conv2d: bias must be 1-d of length %lld (out channels)",
                                 (long long)weight->shape[0]);
    }
    return AI3_OK;
}

/* The checks of an input against checked weight and parameters. */
static ai3_status check_input(const ai3_tensor *input, const ai3_tensor *weight,
                              const ai3_conv2d_params *p) {
    ai3_status s;
    if ((s = ai3_check_tensor(input, "input", OP)) != AI3_OK) return s;
    if ((s = ai3_check_same_dtype(input, weight, OP)) != AI3_OK) return s;
    if (input->ndim != 3 && input->ndim != 4)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: input must be 3-d (C, H, W) or 4-d (N, C, H, W), got %d-d",
                             input->ndim);
    int64_t c_in = input->shape[input->ndim - 3];
    int64_t h = input->shape[input->ndim - 2], w = input->shape[input->ndim - 1];
    if (weight->shape[1] * p->groups != c_in)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: input has %lld channels, but weight expects %lld "
                             "(weight.shape[1] = %lld times groups = %lld)",
                             (long long)c_in, (long long)(weight->shape[1] * p->groups),
                             (long long)weight->shape[1], (long long)p->groups);
    if (p->padding_mode == AI3_PADDING_REFLECT &&
        (AI3_MAX(p->pad_top, p->pad_bottom) >= h || AI3_MAX(p->pad_left, p->pad_right) >= w))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: reflect padding must be smaller than the input size "
                             "(%lld x %lld)", (long long)h, (long long)w);
    if (p->padding_mode == AI3_PADDING_CIRCULAR &&
        (AI3_MAX(p->pad_top, p->pad_bottom) > h || AI3_MAX(p->pad_left, p->pad_right) > w))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: circular padding must not exceed the input size "
                             "(%lld x %lld)", (long long)h, (long long)w);
    /* As PyTorch: the batch or the channels may be empty, not the planes
     * (the output would be padding and bias alone). */
    if (h == 0 || w == 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: the input planes are empty (%lld x %lld, %s padding); only "
                             "the batch or the channels may be empty", (long long)h, (long long)w,
                             padding_mode_name(p->padding_mode));
    /* every size and parameter is at most 2^56 (checked): these sums fit */
    int64_t hp = h + p->pad_top + p->pad_bottom, wp = w + p->pad_left + p->pad_right;
    int64_t ext_h = ai3_size_mul(p->dilation_h, weight->shape[2] - 1);
    int64_t ext_w = ai3_size_mul(p->dilation_w, weight->shape[3] - 1);
    if (ext_h < 0 || ext_w < 0 || ext_h + 1 > hp || ext_w + 1 > wp)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: padded input (%lld x %lld) is smaller than the dilated "
                             "kernel (%lld x %lld, dilation (%lld, %lld))",
                             (long long)hp, (long long)wp, (long long)weight->shape[2],
                             (long long)weight->shape[3], (long long)p->dilation_h,
                             (long long)p->dilation_w);
    /* What the algorithms derive (padded and stride-split copies of the
     * input, unrolled columns, the output) stays below AI3_MAX_ELEMENTS, so
     * that no workspace size overflows. */
    int64_t n = input->ndim == 4 && input->shape[0] > 1 ? input->shape[0] : 1; /* 0: as 1 */
    int64_t c = AI3_MAX(c_in, weight->shape[0]);
    int64_t oh = (hp - ext_h - 1) / p->stride_h + 1, ow = (wp - ext_w - 1) / p->stride_w + 1;
    int64_t sh = AI3_MIN(p->stride_h, hp), sw = AI3_MIN(p->stride_w, wp); /* as run_problem */
    int64_t padded = ai3_size_mul(ai3_size_mul(ai3_size_mul(n, c), hp + 2 * sh), wp + 2 * sw);
    int64_t columns = ai3_size_mul(ai3_size_mul(ai3_size_mul(n, c), weight->shape[2]),
                                   ai3_size_mul(weight->shape[3], ai3_size_mul(oh + 1, ow + 1)));
    if (padded < 0 || columns < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: too large: the input (%lld x %lld padded, stride "
                             "(%lld, %lld)) and kernel would need more than 2^56 elements of "
                             "workspace", (long long)hp, (long long)wp, (long long)p->stride_h,
                             (long long)p->stride_w);
    return AI3_OK;
}

ai3_status ai3_conv2d_output_shape(const ai3_tensor *input, const ai3_tensor *weight,
                                   const ai3_conv2d_params *params, int *out_ndim,
                                   int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s;
    if ((s = check_weight(weight, NULL, params)) != AI3_OK) return s;
    if ((s = check_input(input, weight, params)) != AI3_OK) return s;
    if (!out_ndim || !out_shape)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: output shape pointers are NULL");
    ai3_conv2d_dims d;
    ai3_conv2d_get_dims(input, weight, params, &d);
    int i = 0;
    if (input->ndim == 4) out_shape[i++] = d.n;
    out_shape[i++] = d.c_out;
    out_shape[i++] = d.oh;
    out_shape[i++] = d.ow;
    *out_ndim = i;
    return AI3_OK;
}

/* --- plans --------------------------------------------------------------- */

struct ai3_conv2d_plan {
    char algorithm[64];
    const ai3_conv2d_algorithm *impl; /* a built-in algorithm, or */
    ai3_conv2d_fn custom;             /* one registered at run time */
    ai3_conv2d_problem pb;
    ai3_tensor weight_shape; /* the weight's shape (no data): never changes */
    ai3_tensor bias;
    /* "guess" without an expected input: the choice (and the prepared
     * weights) wait for the first input, the weights in pb.weight until then.
     * The choice is made once, under choice_lock, which also guards reading
     * `algorithm`. */
    atomic_int pending;
    pthread_mutex_t choice_lock;
    /* The workspace kept between runs (grown as needed), so that repeated
     * runs do not pay for fresh pages; a run finding it busy allocates. */
    pthread_mutex_t workspace_lock;
    void *workspace;
    size_t workspace_bytes;
};

void ai3_conv2d_plan_destroy(ai3_conv2d_plan *plan) {
    if (!plan) return;
    if (plan->impl && plan->impl->release && plan->pb.state) plan->impl->release(plan->pb.state);
    pthread_mutex_destroy(&plan->workspace_lock);
    pthread_mutex_destroy(&plan->choice_lock);
    ai3_free(plan->workspace);
    if (plan->pb.weight.data != ai3_shape_only) ai3_free(plan->pb.weight.data);
    ai3_free(plan->bias.data);
    ai3_free(plan);
}

/* Chooses the plan's algorithm `name` ("guess": by the input dims d) and
 * hands it the weights `weight`. An algorithm that prepares its own form of
 * the weights reads them only in prepare, so the plan keeps no copy; the
 * others read pb.weight at each run: the plan's own copy (`owned`, if it has
 * one already, or a new one). */
static ai3_status choose(ai3_conv2d_plan *plan, const char *name, const ai3_tensor *weight,
                         const ai3_conv2d_dims *d, int owned) {
    if (strcmp(name, "guess") == 0) name = ai3_conv2d_guess(&plan->pb, d);
    snprintf(plan->algorithm, sizeof plan->algorithm, "%s", name);
    ai3_status s = ai3_lookup_conv2d(name, weight, &plan->impl, &plan->custom);
    if (s == AI3_OK && plan->impl && plan->impl->supports) s = plan->impl->supports(&plan->pb);
    if (s != AI3_OK) return s;
    if (plan->impl && plan->impl->prepare) {
        plan->pb.weight.data = weight->data;
        s = plan->impl->prepare(&plan->pb);
        if (owned) ai3_free(weight->data);
        plan->pb.weight.data = ai3_shape_only;
        return s;
    }
    return owned ? AI3_OK : ai3_tensor_copy(weight, &plan->pb.weight);
}

ai3_status ai3_conv2d_plan_create(const char *algorithm, const ai3_tensor *weight,
                                  const ai3_tensor *bias, const ai3_conv2d_params *params,
                                  const ai3_tensor *input_shape, ai3_conv2d_plan **out) {
    ai3_status s;
    if (!out) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: plan pointer is NULL");
    *out = NULL;
    if ((s = check_weight(weight, bias, params)) != AI3_OK) return s;
    if (input_shape && (s = check_input(input_shape, weight, params)) != AI3_OK) return s;
    if (!algorithm)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: algorithm name is NULL");
    if ((s = ai3_require_cpu(AI3_OP_CONV2D, algorithm, weight)) != AI3_OK) return s;

    ai3_conv2d_plan *plan = ai3_alloc(sizeof *plan);
    if (!plan) return AI3_ERROR_OUT_OF_MEMORY;
    memset(plan, 0, sizeof *plan);
    pthread_mutex_init(&plan->workspace_lock, NULL);
    pthread_mutex_init(&plan->choice_lock, NULL);
    plan->pb.params = *params;
    plan->weight_shape = *weight;
    plan->weight_shape.data = ai3_shape_only;
    plan->pb.weight = plan->weight_shape; /* the data: once the algorithm is known */
    if (bias && ai3_tensor_copy(bias, &plan->bias) != AI3_OK) {
        ai3_conv2d_plan_destroy(plan);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    plan->pb.bias = bias ? &plan->bias : NULL;
    const char *name = strcmp(algorithm, "default") == 0 ? ai3_default_algorithm(AI3_OP_CONV2D)
                                                         : algorithm;
    if (input_shape) {
        plan->pb.has_hint = 1;
        ai3_conv2d_get_dims(input_shape, weight, params, &plan->pb.hint);
        s = choose(plan, name, weight, &plan->pb.hint, 0);
    } else if (strcmp(name, "guess") == 0) {
        snprintf(plan->algorithm, sizeof plan->algorithm, "guess");
        atomic_store(&plan->pending, 1);
        s = ai3_tensor_copy(weight, &plan->pb.weight);
    } else {
        s = choose(plan, name, weight, NULL, 0);
    }
    if (s != AI3_OK) {
        ai3_conv2d_plan_destroy(plan);
        return s;
    }
    *out = plan;
    return AI3_OK;
}

/* Makes the choice a pending "guess" plan waited for, for input dims d. */
static ai3_status settle(const ai3_conv2d_plan *plan, const ai3_conv2d_dims *d) {
    if (!atomic_load_explicit(&plan->pending, memory_order_acquire)) return AI3_OK;
    ai3_conv2d_plan *mut = (ai3_conv2d_plan *)plan; /* made once, under the lock */
    ai3_status s = AI3_OK;
    pthread_mutex_lock(&mut->choice_lock);
    if (atomic_load_explicit(&mut->pending, memory_order_relaxed)) {
        mut->pb.has_hint = 1;
        mut->pb.hint = *d;
        ai3_tensor weight = mut->pb.weight;
        s = choose(mut, "guess", &weight, d, 1);
        if (s == AI3_OK) atomic_store_explicit(&mut->pending, 0, memory_order_release);
    }
    pthread_mutex_unlock(&mut->choice_lock);
    return s;
}

const char *ai3_conv2d_plan_algorithm(const ai3_conv2d_plan *plan) {
    if (!plan || !atomic_load_explicit(&plan->pending, memory_order_acquire))
        return plan ? plan->algorithm : NULL; /* fixed from here on */
    return "guess";
}

/* Checks input and output (unless NULL) against the plan; fills the 4-d
 * views and dims. */
static ai3_status check_run(const ai3_conv2d_plan *plan, const ai3_tensor *input,
                            ai3_tensor *output, ai3_tensor *in4, ai3_tensor *out4,
                            ai3_conv2d_dims *d) {
    ai3_status s;
    if (!plan) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: plan is NULL");
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    if ((s = ai3_conv2d_output_shape(input, &plan->weight_shape, &plan->pb.params, &ndim, shape)) !=
        AI3_OK)
        return s;
    if (output && (s = ai3_check_output(output, input, ndim, shape, OP)) != AI3_OK)
        return s;
    *in4 = ai3_batched_4d(input);
    if (output) *out4 = ai3_batched_4d(output);
    ai3_conv2d_get_dims(in4, &plan->weight_shape, &plan->pb.params, d);
    return settle(plan, d);
}

/* The problem the algorithm runs: the plan's, but with a stride larger than
 * the padded input clamped to the padded size. Either gives one output row
 * (column), so the result is the same, and layouts of stride phases are
 * not sized by a stride that only skips past the input (found by the
 * fuzzer: `direct` took 2 GB for a 3x2x8 input with stride 10^7). */
static const ai3_conv2d_problem *run_problem(const ai3_conv2d_plan *plan,
                                             const ai3_conv2d_dims *d, ai3_conv2d_problem *copy) {
    const ai3_conv2d_params *p = &plan->pb.params;
    if (p->stride_h <= d->hp && p->stride_w <= d->wp) return &plan->pb;
    *copy = plan->pb;
    copy->params.stride_h = AI3_MIN(p->stride_h, d->hp);
    copy->params.stride_w = AI3_MIN(p->stride_w, d->wp);
    return copy;
}

static size_t workspace_bytes(const ai3_conv2d_plan *plan, const ai3_conv2d_dims *d) {
    ai3_conv2d_problem copy;
    return plan->impl && plan->impl->workspace_size
               ? plan->impl->workspace_size(run_problem(plan, d, &copy), d)
               : 0;
}

ai3_status ai3_conv2d_plan_workspace_size(const ai3_conv2d_plan *plan, const ai3_tensor *input,
                                          size_t *bytes) {
    ai3_tensor in4, out4;
    ai3_conv2d_dims d;
    ai3_status s = check_run(plan, input, NULL, &in4, &out4, &d);
    if (s != AI3_OK) return s;
    if (!bytes) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: bytes is NULL");
    *bytes = workspace_bytes(plan, &d);
    return AI3_OK;
}

/* The algorithm's run with the plan's workspace (the caller's, the plan's
 * cached one, or one of its own while another thread holds that). */
static ai3_status run_algorithm(const ai3_conv2d_plan *plan, const ai3_conv2d_dims *d,
                                const ai3_tensor *in4, ai3_tensor *out4, void *workspace,
                                size_t workspace_size) {
    ai3_conv2d_problem copy;
    const ai3_conv2d_problem *pb = run_problem(plan, d, &copy);
    size_t need = workspace_bytes(plan, d);
    if (workspace && workspace_size < need)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: the workspace has %zu bytes, the plan needs %zu",
                             workspace_size, need);
    if (workspace || !need) return plan->impl->run(pb, d, in4, out4, workspace);

    ai3_conv2d_plan *mut = (ai3_conv2d_plan *)plan; /* only the workspace cache changes */
    ai3_status s;
    if (pthread_mutex_trylock(&mut->workspace_lock) == 0) {
        if (mut->workspace_bytes < need) {
            ai3_free(mut->workspace);
            mut->workspace_bytes = 0;
            if (!(mut->workspace = ai3_alloc(need))) {
                pthread_mutex_unlock(&mut->workspace_lock);
                return AI3_ERROR_OUT_OF_MEMORY;
            }
            mut->workspace_bytes = need;
        }
        s = plan->impl->run(pb, d, in4, out4, mut->workspace);
        pthread_mutex_unlock(&mut->workspace_lock);
        return s;
    }
    void *owned = ai3_alloc(need);
    if (!owned) return AI3_ERROR_OUT_OF_MEMORY;
    s = plan->impl->run(pb, d, in4, out4, owned);
    ai3_free(owned);
    return s;
}

static ai3_status plan_run_epilogue(const ai3_conv2d_plan *plan, const ai3_tensor *input,
                                    ai3_tensor *output, void *workspace, size_t workspace_size,
                                    const ai3_epilogue *epilogue) {
    ai3_tensor in4, out4;
    ai3_conv2d_dims d;
    if (!output) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: output is NULL");
    ai3_status s = check_run(plan, input, output, &in4, &out4, &d);
    if (s != AI3_OK) return s;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;
    bool fused = epilogue && !plan->custom && plan->impl->fuses_epilogue;
    if (fused) d.epilogue = epilogue;
    if (plan->custom)
        s = plan->custom(&in4, &plan->pb.weight, plan->pb.bias, &plan->pb.params, &out4);
    else
        s = run_algorithm(plan, &d, &in4, &out4, workspace, workspace_size);
    if (s == AI3_OK && epilogue && !fused) { /* a pass of its own after the algorithm */
        if (output->dtype == AI3_BFLOAT16)
            ai3_epilogue_pass_bf16(output->data, NULL, ai3_tensor_numel(output), epilogue);
        else ai3_epilogue_pass(output, epilogue);
    }
    return s;
}

ai3_status ai3_conv2d_plan_run(const ai3_conv2d_plan *plan, const ai3_tensor *input,
                               ai3_tensor *output, void *workspace, size_t workspace_size) {
    return plan_run_epilogue(plan, input, output, workspace, workspace_size, NULL);
}

ai3_status ai3_conv2d(const char *algorithm, const ai3_tensor *input, const ai3_tensor *weight,
                      const ai3_tensor *bias, const ai3_conv2d_params *params,
                      ai3_tensor *output) {
    ai3_status s;
    if ((s = check_weight(weight, bias, params)) != AI3_OK) return s;
    if ((s = check_input(input, weight, params)) != AI3_OK) return s;
    ai3_conv2d_plan *plan;
    if ((s = ai3_conv2d_plan_create(algorithm, weight, bias, params, input, &plan)) != AI3_OK)
        return s;
    s = ai3_conv2d_plan_run(plan, input, output, NULL, 0);
    ai3_conv2d_plan_destroy(plan);
    return s;
}

/* --- plans (ops/plan.c) --- */

static ai3_status plan_create(ai3_plan *plan, const ai3_tensor *const *w, int n,
                              const ai3_tensor *hint) {
    if (n < 1 || !w[0])
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: the weight is required", OP);
    return ai3_conv2d_plan_create(plan->algorithm, w[0], n > 1 ? w[1] : NULL,
                                  &plan->params.conv2d, hint, (ai3_conv2d_plan **)&plan->state);
}

static void plan_destroy(ai3_plan *plan) { ai3_conv2d_plan_destroy(plan->state); }

static ai3_status plan_shape(const ai3_plan *plan, int n, const ai3_tensor *const *in, int *ndim,
                             int64_t *shape) {
    const ai3_conv2d_plan *cp = plan->state;
    return ai3_conv2d_output_shape(in[0], &cp->weight_shape, &cp->pb.params, ndim, shape);
}

static ai3_status plan_workspace(const ai3_plan *plan, const ai3_tensor *const *in,
                                 size_t *bytes) {
    return ai3_conv2d_plan_workspace_size(plan->state, in[0], bytes);
}

static ai3_status plan_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    return ai3_conv2d_plan_run(plan->state, in[0], out, workspace, workspace_bytes);
}

static const char *plan_algorithm(const ai3_plan *plan) {
    return ai3_conv2d_plan_algorithm(plan->state);
}

ai3_status ai3_conv2d_run_epilogue(const ai3_plan *plan, const ai3_tensor *input,
                                   ai3_tensor *output, void *workspace, size_t workspace_bytes,
                                   const ai3_epilogue *epilogue) {
    return plan_run_epilogue(plan->state, input, output, workspace, workspace_bytes, epilogue);
}

const ai3_op_impl ai3_conv2d_impl = {.create = plan_create, .destroy = plan_destroy,
                                     .output_shape = plan_shape, .workspace_size = plan_workspace,
                                     .run = plan_run, .algorithm = plan_algorithm, .bf16 = true};
