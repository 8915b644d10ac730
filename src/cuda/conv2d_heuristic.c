/*
 * conv2d "guess" and "default" on CUDA: cuDNN's graph API, as torch uses it.
 * For each input shape the convolution is described once as an operation
 * graph, cuDNN's heuristic (instant mode, as torch) ranks its engines, and the first that
 * builds into an execution plan (and, for float32 without TF32, does not use
 * tensor cores) is kept; each run then only binds the data pointers and
 * executes it. The legacy API's cudnnConvolutionForward, which the named
 * algorithms need, costs tens of microseconds of host time per call in
 * cuDNN 9; this path costs a few.
 */
#include "cuda.h"

#include <stdlib.h>

#define UID_X 1
#define UID_W 2
#define UID_Y 3
#define ALIGNMENT 16

/* Sets an attribute, keeping the first failure in *s. */
static void set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                cudnnBackendAttributeType_t type, int64_t count, const void *value,
                cudnnStatus_t *s) {
    if (*s == CUDNN_STATUS_SUCCESS) *s = cudnnBackendSetAttribute(d, name, type, count, value);
}

static cudnnBackendDescriptor_t make(cudnnBackendDescriptorType_t type, cudnnStatus_t *s) {
    cudnnBackendDescriptor_t d = NULL;
    if (*s == CUDNN_STATUS_SUCCESS) *s = cudnnBackendCreateDescriptor(type, &d);
    return d;
}

static void drop(cudnnBackendDescriptor_t d) {
    if (d) cudnnBackendDestroyDescriptor(d);
}

static cudnnBackendDescriptor_t tensor(int64_t uid, cudnnDataType_t type, const int64_t dims[4],
                                       cudnnStatus_t *s) {
    int64_t strides[4] = {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
    int64_t alignment = ALIGNMENT;
    cudnnBackendDescriptor_t t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, s);
    set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, s);
    set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims, s);
    set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides, s);
    set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, s);
    set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, s);
    if (*s == CUDNN_STATUS_SUCCESS) *s = cudnnBackendFinalize(t);
    return t;
}

/* Whether the engine of `config` may run (the filter torch applies): never
 * one that converts its inputs to a lower precision; for float32 without
 * TF32, none on tensor cores either (they compute float32 as TF32). */
static bool allowed(cudnnBackendDescriptor_t config, bool exact_float32) {
    cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
    cudnnBackendDescriptor_t engine = make(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &s);
    int64_t count = 0;
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &count, &engine);
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                     CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                     &count, notes);
    bool ok = s == CUDNN_STATUS_SUCCESS;
    for (int64_t i = 0; ok && i < count; i++)
        ok = notes[i] != CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS &&
             !(exact_float32 && notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE);
    drop(engine);
    return ok;
}

ai3_status ai3_cudnn_heuristic_plan(cudnnHandle_t handle, ai3_dtype dtype, bool allow_tf32,
                                    const int64_t x_dims[4], const int64_t w_dims[4],
                                    const int64_t y_dims[4], const int64_t pre_pad[2],
                                    const int64_t post_pad[2], const int64_t stride[2],
                                    const int64_t dilation[2], cudnnBackendDescriptor_t *plan,
                                    size_t *workspace) {
    cudnnDataType_t type = dtype == AI3_FLOAT64   ? CUDNN_DATA_DOUBLE
                           : dtype == AI3_FLOAT16 ? CUDNN_DATA_HALF
                           : dtype == AI3_BFLOAT16 ? CUDNN_DATA_BFLOAT16
                                                   : CUDNN_DATA_FLOAT;
    cudnnDataType_t compute = dtype == AI3_FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
    *plan = NULL;
    cudnnBackendDescriptor_t x = tensor(UID_X, type, x_dims, &s), w = tensor(UID_W, type, w_dims, &s),
                             y = tensor(UID_Y, type, y_dims, &s);
    cudnnBackendDescriptor_t conv = make(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &s);
    int64_t spatial = 2;
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    set(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute, &s);
    set(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode, &s);
    set(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial, &s);
    set(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dilation, &s);
    set(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride, &s);
    set(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pre_pad, &s);
    set(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, post_pad, &s);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(conv);

    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, &s);
    float one_f = 1, zero_f = 0;
    double one_d = 1, zero_d = 0;
    bool dbl = dtype == AI3_FLOAT64;
    cudnnBackendAttributeType_t scale = dbl ? CUDNN_TYPE_DOUBLE : CUDNN_TYPE_FLOAT;
    set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, &s);
    set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w, &s);
    set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, &s);
    set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
        &conv, &s);
    set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, scale, 1,
        dbl ? (void *)&one_d : (void *)&one_f, &s);
    set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, scale, 1,
        dbl ? (void *)&zero_d : (void *)&zero_f, &s);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(op);

    cudnnBackendDescriptor_t graph = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &s);
    set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op, &s);
    set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, &s);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(graph);

    cudnnBackendDescriptor_t heuristic = make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &s);
    cudnnBackendHeurMode_t heur_mode = CUDNN_HEUR_MODE_INSTANT; /* as torch */
    set(heuristic, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph,
        &s);
    set(heuristic, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &heur_mode, &s);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(heuristic);
    int64_t count = 0;
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(heuristic, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
    cudnnBackendDescriptor_t *configs = count > 0 ? calloc((size_t)count, sizeof *configs) : NULL;
    int64_t made = 0;
    for (int64_t i = 0; configs && s == CUDNN_STATUS_SUCCESS && i < count; i++, made++)
        configs[i] = make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &s);
    if (configs && s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(heuristic, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count, configs);
    ai3_status status = ai3_cudnn_check(s, "conv2d 'guess'", "describing the convolution");
    bool exact = dtype == AI3_FLOAT32 && !allow_tf32;
    for (int64_t i = 0; status == AI3_OK && !*plan && i < count; i++) {
        if (!allowed(configs[i], exact)) continue;
        cudnnStatus_t p = CUDNN_STATUS_SUCCESS;
        cudnnBackendDescriptor_t candidate = make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &p);
        set(candidate, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, &p);
        set(candidate, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
            &configs[i], &p);
        if (p == CUDNN_STATUS_SUCCESS) p = cudnnBackendFinalize(candidate);
        int64_t bytes = 0, n = 0;
        if (p == CUDNN_STATUS_SUCCESS)
            p = cudnnBackendGetAttribute(candidate, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                         CUDNN_TYPE_INT64, 1, &n, &bytes);
        if (p == CUDNN_STATUS_SUCCESS) {
            *plan = candidate;
            *workspace = (size_t)bytes;
        } else {
            drop(candidate);
        }
    }
    if (status == AI3_OK && !*plan)
        status = ai3_cuda_error(AI3_ERROR_UNSUPPORTED,
                                "conv2d 'guess': none of the %lld engines cuDNN's heuristic "
                                "proposes can run this convolution%s", (long long)count,
                                exact ? " without TF32" : "");
    for (int64_t i = 0; i < made; i++) drop(configs[i]);
    free(configs);
    drop(heuristic);
    drop(graph);
    drop(op);
    drop(conv);
    drop(x);
    drop(w);
    drop(y);
    return status;
}

ai3_status ai3_cudnn_heuristic_run(cudnnHandle_t handle, cudnnBackendDescriptor_t plan,
                                   const void *x, const void *w, void *y, void *workspace) {
    cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
    cudnnBackendDescriptor_t pack = make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &s);
    int64_t uids[3] = {UID_X, UID_W, UID_Y};
    void *pointers[3] = {(void *)x, (void *)w, y};
    set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids, &s);
    set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, pointers, &s);
    set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace, &s);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(pack);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendExecute(handle, plan, pack);
    drop(pack);
    return ai3_cudnn_check(s, "conv2d 'guess'", "running cuDNN's engine");
}

bool ai3_cudnn_heuristic_aligned(const void *x, const void *w, const void *y,
                                 const void *workspace) {
    return ((uintptr_t)x | (uintptr_t)w | (uintptr_t)y | (uintptr_t)workspace) % ALIGNMENT == 0;
}
