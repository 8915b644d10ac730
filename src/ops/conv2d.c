/* conv2d: argument checks, output shape, padding helpers and dispatch. */
#include "internal.h"

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

static ai3_status check_params(const ai3_tensor *input, const ai3_tensor *weight,
                               const ai3_conv2d_params *p) {
    ai3_status s;
    if ((s = ai3_check_tensor(input, "input", OP)) != AI3_OK) return s;
    if ((s = ai3_check_tensor(weight, "weight", OP)) != AI3_OK) return s;
    if ((s = ai3_check_same_dtype(input, weight, OP)) != AI3_OK) return s;
    if (!p) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: params is NULL");
    if (input->ndim != 3 && input->ndim != 4)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: input must be 3-d (C, H, W) or 4-d (N, C, H, W), got %d-d",
                             input->ndim);
    if (weight->ndim != 4)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: weight must be 4-d (C_out, C_in / groups, KH, KW), got %d-d",
                             weight->ndim);
    if (p->stride_h < 1 || p->stride_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: stride must be >= 1, got (%lld, %lld)",
                             (long long)p->stride_h, (long long)p->stride_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: dilation must be >= 1, got (%lld, %lld)",
                             (long long)p->dilation_h, (long long)p->dilation_w);
    if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: padding must be >= 0");
    if ((unsigned)p->padding_mode > AI3_PADDING_CIRCULAR)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: unknown padding mode %d",
                             (int)p->padding_mode);
    int64_t c_in = input->shape[input->ndim - 3];
    int64_t h = input->shape[input->ndim - 2], w = input->shape[input->ndim - 1];
    if (p->groups < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: groups must be >= 1, got %lld",
                             (long long)p->groups);
    if (weight->shape[0] % p->groups != 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: out channels (%lld) must be divisible by groups (%lld)",
                             (long long)weight->shape[0], (long long)p->groups);
    if (weight->shape[1] * p->groups != c_in)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: input has %lld channels, but weight expects %lld "
                             "(weight.shape[1] = %lld times groups = %lld)",
                             (long long)c_in, (long long)(weight->shape[1] * p->groups),
                             (long long)weight->shape[1], (long long)p->groups);
    if (weight->shape[0] < 1 || weight->shape[2] < 1 || weight->shape[3] < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: weight has an empty dimension");
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
    if (p->padding_mode != AI3_PADDING_ZEROS && (h == 0 || w == 0))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: %s padding needs a non-empty input",
                             padding_mode_name(p->padding_mode));
    int64_t ext_h = p->dilation_h * (weight->shape[2] - 1) + 1;
    int64_t ext_w = p->dilation_w * (weight->shape[3] - 1) + 1;
    int64_t hp = h + p->pad_top + p->pad_bottom, wp = w + p->pad_left + p->pad_right;
    if (ext_h > hp || ext_w > wp)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "conv2d: padded input (%lld x %lld) is smaller than the dilated "
                             "kernel (%lld x %lld)",
                             (long long)hp, (long long)wp, (long long)ext_h, (long long)ext_w);
    return AI3_OK;
}

ai3_status ai3_conv2d_output_shape(const ai3_tensor *input, const ai3_tensor *weight,
                                   const ai3_conv2d_params *params, int *out_ndim,
                                   int64_t out_shape[AI3_MAX_DIMS]) {
    ai3_status s = check_params(input, weight, params);
    if (s != AI3_OK) return s;
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

ai3_status ai3_conv2d(const char *algorithm, const ai3_tensor *input, const ai3_tensor *weight,
                      const ai3_tensor *bias, const ai3_conv2d_params *params,
                      ai3_tensor *output) {
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = ai3_conv2d_output_shape(input, weight, params, &ndim, shape);
    if (s != AI3_OK) return s;
    if (bias) {
        if ((s = ai3_check_tensor(bias, "bias", OP)) != AI3_OK) return s;
        if ((s = ai3_check_same_dtype(input, bias, OP)) != AI3_OK) return s;
        if (bias->ndim != 1 || bias->shape[0] != weight->shape[0])
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "conv2d: bias must be 1-d of length %lld (out channels)",
                                 (long long)weight->shape[0]);
    }
    if ((s = ai3_check_output(output, input->dtype, ndim, shape, OP)) != AI3_OK) return s;
    ai3_algorithm_fn found;
    if ((s = ai3_lookup_algorithm(AI3_OP_CONV2D, algorithm, input->dtype, &found)) != AI3_OK) return s;
    ai3_conv2d_fn fn = (ai3_conv2d_fn)found;
    if (ai3_tensor_numel(output) == 0) return AI3_OK;

    /* Algorithms always see 4-d tensors. */
    ai3_tensor in4 = ai3_batched_4d(input), out4 = ai3_batched_4d(output);
    return fn(&in4, weight, bias, params, &out4);
}
