/*
 * conv2d on CUDA: cuDNN's forward algorithms by name, cuDNN's heuristic
 * ("guess", "default": conv2d_heuristic.c), and ai3's own kernels ("direct",
 * "smm").
 *
 * A plan holds the filter and convolution descriptors; per input shape it
 * keeps the tensor descriptors and the algorithm cuDNN runs (found once):
 * for "guess", the execution plan of the engine cuDNN's graph-API heuristic
 * ranks first, and the legacy heuristic's algorithm for pointers that are
 * not 16-byte aligned.
 * Padding that cuDNN cannot express (the reflect, replicate and circular
 * modes, and unequal zero padding such as padding='same' with an even
 * kernel) is applied first into the workspace, then the convolution runs
 * unpadded; ai3's own kernels take any zero padding themselves.
 */
#include "cuda.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWN_DIRECT -1
#define OWN_SMM -2
#define GUESS -3
#define ENGINE -4 /* what "guess" ran: an engine of cuDNN's graph API */
#define MAX_SHAPES 8

static const struct {
    const char *name;
    int algo;
} names[] = {
    {"direct", OWN_DIRECT},
    {"smm", OWN_SMM},
    {"gemm", CUDNN_CONVOLUTION_FWD_ALGO_GEMM},
    {"implicit gemm", CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM},
    {"implicit precomp gemm", CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM},
    {"winograd", CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD},
    {"winograd nonfused", CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED},
    {"fft", CUDNN_CONVOLUTION_FWD_ALGO_FFT},
    {"fft tiling", CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING},
    {"guess", GUESS},
};
#define N_NAMES (int)(sizeof names / sizeof names[0])

const char *const ai3_cuda_conv2d_algorithms[] = {
    "direct", "smm", "gemm", "implicit gemm", "implicit precomp gemm", "winograd",
    "winograd nonfused", "fft", "fft tiling", "guess"};
const int ai3_cuda_conv2d_algorithm_count = N_NAMES;

static const char *algo_name(int algo) {
    if (algo == ENGINE) return "cudnn heuristic engine";
    for (int i = 0; i < N_NAMES; i++)
        if (names[i].algo == algo) return names[i].name;
    return "cuDNN's choice";
}

/* What one input shape needs: descriptors and cuDNN's algorithm. */
typedef struct {
    int64_t n, h, w;
    cudnnTensorDescriptor_t x, y;
    cudnnConvolutionFwdAlgo_t algo;
    size_t cudnn_bytes;              /* cuDNN's workspace for algo */
    cudnnBackendDescriptor_t engine; /* "guess": the graph API's plan... */
    size_t engine_bytes;             /* ...and its workspace */
} shape_entry;

typedef struct {
    int algo;     /* a cudnnConvolutionFwdAlgo_t, or OWN_*, GUESS */
    bool pre_pad; /* the input is padded into the workspace first */
    int64_t c_out, c_in_g, kh, kw;
    cudnnFilterDescriptor_t filter;
    cudnnConvolutionDescriptor_t conv;
    cudnnDataType_t data_type;
    pthread_mutex_t lock; /* guards entries[] growing */
    int n_entries;
    shape_entry entries[MAX_SHAPES];
    int last_algo; /* what "guess" ran last, for ai3_plan_algorithm */
    bool allow_tf32;
} conv_state;

static cudnnDataType_t cudnn_type(ai3_dtype dtype) {
    switch (dtype) {
    case AI3_FLOAT64: return CUDNN_DATA_DOUBLE;
    case AI3_FLOAT16: return CUDNN_DATA_HALF;
    case AI3_BFLOAT16: return CUDNN_DATA_BFLOAT16;
    default: return CUDNN_DATA_FLOAT;
    }
}

/* The input as 4-d sizes (an unbatched input has N = 1). */
static void input_dims(const ai3_tensor *x, int64_t *n, int64_t *c, int64_t *h, int64_t *w) {
    int b = x->ndim == 4;
    *n = b ? x->shape[0] : 1;
    *c = x->shape[b];
    *h = x->shape[b + 1];
    *w = x->shape[b + 2];
}

static void padded_size(const ai3_conv2d_params *p, int64_t h, int64_t w, int64_t *hp,
                        int64_t *wp) {
    *hp = h + p->pad_top + p->pad_bottom;
    *wp = w + p->pad_left + p->pad_right;
}

static void output_size(const conv_state *st, const ai3_conv2d_params *p, int64_t hp,
                        int64_t wp, int64_t *oh, int64_t *ow) {
    *oh = (hp - p->dilation_h * (st->kh - 1) - 1) / p->stride_h + 1;
    *ow = (wp - p->dilation_w * (st->kw - 1) - 1) / p->stride_w + 1;
}

static void resolve_guess(const ai3_plan *plan, const ai3_tensor *hint);

static void release_shape(shape_entry *e) {
    if (e->engine) cudnnBackendDestroyDescriptor(e->engine);
    if (e->x) cudnnDestroyTensorDescriptor(e->x);
    if (e->y) cudnnDestroyTensorDescriptor(e->y);
}

ai3_status ai3_cuda_conv2d_create(ai3_plan *plan, const ai3_tensor *hint) {
    const ai3_tensor *weight = &plan->weights[0];
    const ai3_conv2d_params *p = &plan->params.conv2d;
    const char *algorithm = strcmp(plan->algorithm, "default") == 0 ? "guess" : plan->algorithm;
    int algo = 0, found = 0;
    for (int i = 0; i < N_NAMES && !found; i++)
        if (strcmp(names[i].name, algorithm) == 0) algo = names[i].algo, found = 1;
    if (!found) {
        char known[256] = "";
        for (int i = 0; i < N_NAMES; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s'%s'",
                     i ? ", " : "", names[i].name);
        return ai3_cuda_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                              "conv2d: unknown algorithm '%s' on cuda; known: %s", plan->algorithm,
                              known);
    }
    if (weight->ndim != 4)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                              "conv2d: weight must be 4-d (C_out, C_in / groups, KH, KW)");
    if (p->groups < 1 || p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 ||
        p->dilation_w < 1 || p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 ||
        p->pad_right < 0 || (unsigned)p->padding_mode > AI3_PADDING_CIRCULAR)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                              "conv2d: stride, dilation and groups must be >= 1, padding >= 0 "
                              "and the padding mode known");
    if (weight->shape[0] % p->groups != 0)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                              "conv2d: %lld output channels are not divisible by groups=%lld",
                              (long long)weight->shape[0], (long long)p->groups);
    conv_state *st = calloc(1, sizeof *st);
    if (!st) return ai3_cuda_error(AI3_ERROR_OUT_OF_MEMORY, "conv2d: out of memory");
    plan->state = st;
    pthread_mutex_init(&st->lock, NULL);
    st->algo = st->last_algo = algo;
    st->allow_tf32 = plan->options.allow_tf32;
    st->c_out = weight->shape[0];
    st->c_in_g = weight->shape[1];
    st->kh = weight->shape[2];
    st->kw = weight->shape[3];
    bool symmetric = p->pad_top == p->pad_bottom && p->pad_left == p->pad_right;
    bool own = algo == OWN_DIRECT || algo == OWN_SMM;
    st->pre_pad = p->padding_mode != AI3_PADDING_ZEROS || (!own && !symmetric);
    if (own) return AI3_OK;

    st->data_type = cudnn_type(weight->dtype);
    ai3_status s = ai3_cudnn_check(cudnnCreateFilterDescriptor(&st->filter), "conv2d",
                                   "creating the filter descriptor");
    if (!s) s = ai3_cudnn_check(cudnnCreateConvolutionDescriptor(&st->conv), "conv2d",
                                "creating the convolution descriptor");
    if (!s) s = ai3_cudnn_check(cudnnSetFilter4dDescriptor(st->filter, st->data_type,
                                                           CUDNN_TENSOR_NCHW, (int)st->c_out,
                                                           (int)st->c_in_g, (int)st->kh,
                                                           (int)st->kw),
                                "conv2d", "describing the weight");
    int pad_h = st->pre_pad ? 0 : (int)p->pad_top, pad_w = st->pre_pad ? 0 : (int)p->pad_left;
    cudnnDataType_t compute = weight->dtype == AI3_FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    if (!s) s = ai3_cudnn_check(cudnnSetConvolution2dDescriptor(
                                    st->conv, pad_h, pad_w, (int)p->stride_h, (int)p->stride_w,
                                    (int)p->dilation_h, (int)p->dilation_w,
                                    CUDNN_CROSS_CORRELATION, compute),
                                "conv2d", "describing the convolution");
    if (!s) s = ai3_cudnn_check(cudnnSetConvolutionGroupCount(st->conv, (int)p->groups),
                                "conv2d", "setting the group count");
    /* As torch: tensor cores for half types; for float32 TF32 only when
     * allowed (FMA math otherwise). */
    cudnnMathType_t math = CUDNN_DEFAULT_MATH;
    if (weight->dtype == AI3_FLOAT16 || weight->dtype == AI3_BFLOAT16)
        math = CUDNN_TENSOR_OP_MATH;
    else if (weight->dtype == AI3_FLOAT32 && !plan->options.allow_tf32)
        math = CUDNN_FMA_MATH;
    if (!s) s = ai3_cudnn_check(cudnnSetConvolutionMathType(st->conv, math), "conv2d",
                                "setting the math type");
    if (!s && algo == GUESS && hint) resolve_guess(plan, hint);
    return s;
}

void ai3_cuda_conv2d_destroy(ai3_plan *plan) {
    conv_state *st = plan->state;
    for (int i = 0; i < st->n_entries; i++) release_shape(&st->entries[i]);
    if (st->filter) cudnnDestroyFilterDescriptor(st->filter);
    if (st->conv) cudnnDestroyConvolutionDescriptor(st->conv);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

const char *ai3_cuda_conv2d_algorithm(const ai3_plan *plan) {
    const conv_state *st = plan->state;
    return algo_name(__atomic_load_n(&st->last_algo, __ATOMIC_RELAXED));
}

/* Fills e for the input (n, c, h, w) (h, w: as convolved, padded if
 * pre_pad): its descriptors and the algorithm cuDNN will run. */
static ai3_status describe_shape(const ai3_plan *plan, conv_state *st, int64_t n, int64_t c,
                                 int64_t h, int64_t w, shape_entry *e) {
    const ai3_conv2d_params *p = &plan->params.conv2d;
    int64_t hp = h, wp = w, oh, ow;
    if (!st->pre_pad) padded_size(p, h, w, &hp, &wp);
    output_size(st, p, hp, wp, &oh, &ow);
    memset(e, 0, sizeof *e);
    ai3_status s = ai3_cudnn_check(cudnnCreateTensorDescriptor(&e->x), "conv2d",
                                   "creating a tensor descriptor");
    if (!s) s = ai3_cudnn_check(cudnnCreateTensorDescriptor(&e->y), "conv2d",
                                "creating a tensor descriptor");
    if (!s) s = ai3_cudnn_check(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, st->data_type,
                                                           (int)n, (int)c, (int)h, (int)w),
                                "conv2d", "describing the input");
    if (!s) s = ai3_cudnn_check(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, st->data_type,
                                                           (int)n, (int)st->c_out, (int)oh,
                                                           (int)ow),
                                "conv2d", "describing the output");
    cudnnHandle_t handle;
    if (!s) s = ai3_cudnn_handle(NULL, &handle, "conv2d");
    if (s) return s;
    if (st->algo == GUESS) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        int count = 0;
        s = ai3_cudnn_check(cudnnGetConvolutionForwardAlgorithm_v7(
                                handle, e->x, st->filter, st->conv, e->y,
                                CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf),
                            "conv2d", "asking cuDNN's heuristic for an algorithm");
        if (s) return s;
        int i = 0;
        while (i < count && perf[i].status != CUDNN_STATUS_SUCCESS) i++;
        if (i == count)
            return ai3_cuda_error(AI3_ERROR_UNSUPPORTED,
                                  "conv2d 'guess': cuDNN has no algorithm for this convolution");
        e->algo = perf[i].algo;
    } else {
        e->algo = (cudnnConvolutionFwdAlgo_t)st->algo;
    }
    cudnnStatus_t status = cudnnGetConvolutionForwardWorkspaceSize(
        handle, e->x, st->filter, st->conv, e->y, e->algo, &e->cudnn_bytes);
    if (status == CUDNN_STATUS_NOT_SUPPORTED || status == CUDNN_STATUS_BAD_PARAM) {
        char detail[512];
        cudnnGetLastErrorString(detail, sizeof detail);
        return ai3_cuda_error(
            AI3_ERROR_UNSUPPORTED,
            "conv2d: cuDNN's '%s' algorithm does not support this convolution (%s, input "
            "(%lld, %lld, %lld, %lld), kernel %lldx%lld, stride %lldx%lld, dilation %lldx%lld, "
            "groups %lld): %s%s%s", algo_name(e->algo), ai3_cuda_dtype_name(plan->weights[0].dtype),
            (long long)n, (long long)c, (long long)h, (long long)w, (long long)st->kh,
            (long long)st->kw, (long long)p->stride_h, (long long)p->stride_w,
            (long long)p->dilation_h, (long long)p->dilation_w, (long long)p->groups,
            cudnnGetErrorString(status), detail[0] ? ": " : "", detail);
    }
    if ((s = ai3_cudnn_check(status, "conv2d", "sizing cuDNN's workspace")) != AI3_OK ||
        st->algo != GUESS)
        return s;
    int64_t pad = st->pre_pad ? 0 : 1;
    int64_t x_dims[4] = {n, c, h, w}, w_dims[4] = {st->c_out, st->c_in_g, st->kh, st->kw},
            y_dims[4] = {n, st->c_out, oh, ow},
            pre[2] = {pad * p->pad_top, pad * p->pad_left},
            post[2] = {pad * p->pad_bottom, pad * p->pad_right},
            stride[2] = {p->stride_h, p->stride_w}, dilation[2] = {p->dilation_h, p->dilation_w};
    return ai3_cudnn_heuristic_plan(handle, plan->weights[0].dtype, st->allow_tf32, x_dims,
                                    w_dims, y_dims, pre, post, stride, dilation, &e->engine,
                                    &e->engine_bytes);
}

/* The entry for this input shape: a kept one, a new kept one, or (once
 * MAX_SHAPES are kept) *scratch, which the caller releases. */
static ai3_status find_shape(const ai3_plan *plan, int64_t n, int64_t c, int64_t h, int64_t w,
                             shape_entry *scratch, const shape_entry **out) {
    conv_state *st = plan->state;
    int kept = __atomic_load_n(&st->n_entries, __ATOMIC_ACQUIRE);
    for (int i = 0; i < kept; i++) {
        const shape_entry *e = &st->entries[i];
        if (e->n == n && e->h == h && e->w == w) {
            *out = e;
            return AI3_OK;
        }
    }
    pthread_mutex_lock(&st->lock);
    ai3_status s = AI3_OK;
    const shape_entry *found = NULL;
    for (int i = 0; i < st->n_entries && !found; i++)
        if (st->entries[i].n == n && st->entries[i].h == h && st->entries[i].w == w)
            found = &st->entries[i];
    if (!found) {
        shape_entry *e = st->n_entries < MAX_SHAPES ? &st->entries[st->n_entries] : scratch;
        s = describe_shape(plan, st, n, c, h, w, e);
        e->n = n, e->h = h, e->w = w;
        if (s != AI3_OK) {
            release_shape(e);
            memset(e, 0, sizeof *e);
        } else if (e != scratch) {
            __atomic_store_n(&st->n_entries, st->n_entries + 1, __ATOMIC_RELEASE);
        }
        found = e;
    }
    pthread_mutex_unlock(&st->lock);
    *out = found;
    return s;
}

/* What "guess" picks for the hinted input, so that the plan names it before
 * its first run. A hint that cannot be planned (no GPU now, say) is only a
 * hint: the choice is then made, and errors raised, on the first run. */
/* Whether "guess" runs ai3's own tiled depthwise kernel (conv2d_direct.cu)
 * for this output size rather than cuDNN's choice. Timed on an H200 on the
 * depthwise layers of MobileNetV2, EfficientNet-B0 and ConvNeXt-T at batch
 * 1 and 32 (bench/gpu_conv2d.py --shapes depthwise), the kernel was faster
 * for 5×5 and 7×7 kernels and for 3×3 ones on planes of at most 16×16
 * outputs in float32 (up to 2.7× at 7×7), and in half precision for 7×7
 * kernels (counting the bias pass cuDNN needs) and small 3×3 planes. */
static bool guess_direct(const ai3_plan *plan, int64_t oh, int64_t ow) {
    const conv_state *st = plan->state;
    const ai3_conv2d_params *p = &plan->params.conv2d;
    if (st->algo != GUESS || st->pre_pad || st->c_in_g != 1 || st->c_out != p->groups ||
        st->kh != st->kw || p->stride_h != p->stride_w || p->stride_h > 2 ||
        p->dilation_h != 1 || p->dilation_w != 1)
        return false;
    bool small = oh * ow <= 256;
    ai3_dtype dtype = plan->weights[0].dtype;
    if (dtype == AI3_FLOAT16 || dtype == AI3_BFLOAT16) return st->kh == 7 || (st->kh == 3 && small);
    return st->kh == 5 || st->kh == 7 || (st->kh == 3 && small);
}

static void resolve_guess(const ai3_plan *plan, const ai3_tensor *hint) {
    conv_state *st = plan->state;
    int64_t n, c, h, w, hp, wp, oh, ow;
    if (hint->ndim != 3 && hint->ndim != 4) return;
    input_dims(hint, &n, &c, &h, &w);
    padded_size(&plan->params.conv2d, h, w, &hp, &wp);
    if (c != st->c_in_g * plan->params.conv2d.groups || hp < 1 || wp < 1) return;
    output_size(st, &plan->params.conv2d, hp, wp, &oh, &ow);
    if (oh >= 1 && ow >= 1 && guess_direct(plan, oh, ow)) {
        __atomic_store_n(&st->last_algo, OWN_DIRECT, __ATOMIC_RELAXED);
        return;
    }
    shape_entry scratch = {0};
    const shape_entry *e;
    if (find_shape(plan, n, c, st->pre_pad ? hp : h, st->pre_pad ? wp : w, &scratch, &e) == AI3_OK)
        __atomic_store_n(&st->last_algo, e->engine ? ENGINE : (int)e->algo, __ATOMIC_RELAXED);
    release_shape(&scratch);
}

/* The workspace's parts: the padded input, then cuDNN's. */
static size_t pad_bytes(const ai3_plan *plan, int64_t n, int64_t c, int64_t h, int64_t w) {
    const conv_state *st = plan->state;
    if (!st->pre_pad) return 0;
    int64_t hp, wp;
    padded_size(&plan->params.conv2d, h, w, &hp, &wp);
    return ai3_cuda_align((size_t)(n * c * hp * wp) * ai3_cuda_dtype_size(plan->weights[0].dtype));
}

ai3_status ai3_cuda_conv2d_workspace(const ai3_plan *plan, const ai3_tensor *input,
                                     size_t *bytes) {
    const conv_state *st = plan->state;
    int64_t n, c, h, w, hp, wp, oh, ow;
    input_dims(input, &n, &c, &h, &w);
    padded_size(&plan->params.conv2d, h, w, &hp, &wp);
    output_size(st, &plan->params.conv2d, hp, wp, &oh, &ow);
    *bytes = 0;
    if (n * st->c_out * oh * ow == 0) return AI3_OK; /* nothing to compute (cuDNN refuses n = 0) */
    *bytes = pad_bytes(plan, n, c, h, w);
    if (st->algo == OWN_DIRECT || st->algo == OWN_SMM || guess_direct(plan, oh, ow)) return AI3_OK;
    if (!st->pre_pad) hp = h, wp = w;
    shape_entry scratch = {0};
    const shape_entry *e;
    ai3_status s = find_shape(plan, n, c, hp, wp, &scratch, &e);
    if (s == AI3_OK) *bytes += e->engine ? e->engine_bytes : e->cudnn_bytes;
    release_shape(&scratch);
    return s;
}

ai3_status ai3_cuda_conv2d_run(const ai3_plan *plan, const ai3_tensor *input,
                               ai3_tensor *output, void *workspace, size_t workspace_bytes,
                               const ai3_cuda_act *act, cudaStream_t stream) {
    conv_state *st = plan->state;
    const ai3_conv2d_params *p = &plan->params.conv2d;
    const ai3_tensor *weight = &plan->weights[0], *bias = plan->weights[1].data ? &plan->weights[1] : NULL;
    if (input->dtype != weight->dtype)
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT, "conv2d: input is %s but weight is %s",
                              ai3_cuda_dtype_name(input->dtype),
                              ai3_cuda_dtype_name(weight->dtype));
    int64_t n, c, h, w, hp, wp, oh, ow;
    input_dims(input, &n, &c, &h, &w);
    padded_size(p, h, w, &hp, &wp);
    output_size(st, p, hp, wp, &oh, &ow);
    if (n * st->c_out * oh * ow == 0) return AI3_OK;
    bool direct = st->algo == OWN_DIRECT || guess_direct(plan, oh, ow);
    bool own = direct || st->algo == OWN_SMM;
    shape_entry scratch = {0};
    const shape_entry *e = NULL;
    ai3_status s = AI3_OK;
    size_t padded = pad_bytes(plan, n, c, h, w), needed = padded;
    /* "guess" runs its graph-API engine on 16-byte aligned data (torch's
     * allocations are), else the legacy heuristic's algorithm, which may need
     * more workspace than was sized: then it takes its own. */
    bool engine = false;
    if (!own) {
        s = find_shape(plan, n, c, st->pre_pad ? hp : h, st->pre_pad ? wp : w, &scratch, &e);
        engine = s == AI3_OK && e->engine &&
                 ai3_cudnn_heuristic_aligned(st->pre_pad ? NULL : input->data, weight->data,
                                             output->data, workspace);
        if (s == AI3_OK) needed += engine ? e->engine_bytes : e->cudnn_bytes;
        if (s == AI3_OK && e->engine && !engine && workspace_bytes < needed) workspace = NULL;
    }
    ai3_cuda_workspace ws = {0};
    if (s == AI3_OK)
        s = ai3_cuda_workspace_take(&ws, workspace, workspace_bytes, needed, stream, "conv2d");
    const void *x = input->data;
    if (s == AI3_OK && st->pre_pad) {
        s = ai3_cuda_check(ai3_cuda_pad2d(input->dtype, input->data, ws.base, n, c, h, w,
                                          p->pad_top, p->pad_bottom, p->pad_left, p->pad_right,
                                          p->padding_mode, stream),
                           "conv2d", "padding the input");
        x = ws.base;
    }
    if (s == AI3_OK && own) {
        ai3_cuda_conv2d_shape shape = {
            .n = n, .c_in = c, .h = st->pre_pad ? hp : h, .w = st->pre_pad ? wp : w,
            .c_out = st->c_out, .kh = st->kh, .kw = st->kw, .oh = oh, .ow = ow,
            .stride_h = p->stride_h, .stride_w = p->stride_w,
            .pad_top = st->pre_pad ? 0 : p->pad_top, .pad_left = st->pre_pad ? 0 : p->pad_left,
            .dilation_h = p->dilation_h, .dilation_w = p->dilation_w, .groups = p->groups};
        if (st->algo == GUESS) __atomic_store_n(&st->last_algo, OWN_DIRECT, __ATOMIC_RELAXED);
        cudaError_t err = direct
            ? ai3_cuda_conv2d_direct(input->dtype, x, weight->data, bias ? bias->data : NULL,
                                     output->data, &shape, act, stream)
            : ai3_cuda_conv2d_smm(input->dtype, x, weight->data, bias ? bias->data : NULL,
                                  output->data, &shape, stream);
        s = ai3_cuda_check(err, "conv2d", algo_name(direct ? OWN_DIRECT : st->algo));
    } else if (s == AI3_OK) {
        cudnnHandle_t handle;
        s = ai3_cudnn_handle(stream, &handle, "conv2d");
        float one_f = 1, zero_f = 0;
        double one_d = 1, zero_d = 0;
        bool dbl = input->dtype == AI3_FLOAT64;
        void *cudnn_ws = ws.base ? (char *)ws.base + padded : NULL;
        if (s == AI3_OK && engine)
            s = ai3_cudnn_heuristic_run(handle, e->engine, x, weight->data, output->data,
                                        cudnn_ws);
        else if (s == AI3_OK)
            s = ai3_cudnn_check(
                cudnnConvolutionForward(handle, dbl ? (void *)&one_d : (void *)&one_f, e->x, x,
                                        st->filter, weight->data, st->conv, e->algo,
                                        cudnn_ws, e->cudnn_bytes,
                                        dbl ? (void *)&zero_d : (void *)&zero_f, e->y,
                                        output->data),
                "conv2d", algo_name(e->algo));
        if (s == AI3_OK && st->algo == GUESS)
            __atomic_store_n(&st->last_algo, engine ? ENGINE : (int)e->algo, __ATOMIC_RELAXED);
    }
    /* the bias (own kernels add theirs) and the activation ("direct" applies
     * it too), in one pass */
    if (s == AI3_OK && ((bias && !own) || (act && !direct)))
        s = ai3_cuda_check(ai3_cuda_bias_activation(input->dtype, output->data,
                                                    bias && !own ? bias->data : NULL, n,
                                                    st->c_out, oh * ow, act, stream),
                           "conv2d", "the bias and activation");
    ai3_cuda_workspace_release(&ws, stream);
    release_shape(&scratch);
    return s;
}
