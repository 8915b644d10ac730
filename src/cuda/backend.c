/*
 * The CUDA backend's entry point and what its operations share: errors,
 * the current device, per-thread cuDNN and cuBLAS handles, workspaces, and
 * the dispatch of plans to the operations' files.
 */
#include "cuda.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ai3_status (*ai3_cuda_error)(ai3_status status, const char *fmt, ...);

/* --- errors ---------------------------------------------------------------- */

ai3_status ai3_cuda_check(cudaError_t err, const char *op, const char *what) {
    if (err == cudaSuccess) return AI3_OK;
    cudaGetLastError(); /* clear a non-sticky error so that the next call starts clean */
    ai3_status status = err == cudaErrorMemoryAllocation ? AI3_ERROR_OUT_OF_MEMORY
                        : err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver
                            ? AI3_ERROR_UNSUPPORTED
                            : AI3_ERROR_INTERNAL;
    return ai3_cuda_error(status, "%s: %s: CUDA error %s: %s", op, what, cudaGetErrorName(err),
                          cudaGetErrorString(err));
}

ai3_status ai3_cudnn_check(cudnnStatus_t status, const char *op, const char *what) {
    if (status == CUDNN_STATUS_SUCCESS) return AI3_OK;
    char detail[512];
    cudnnGetLastErrorString(detail, sizeof detail);
    ai3_status s = status == CUDNN_STATUS_ALLOC_FAILED ? AI3_ERROR_OUT_OF_MEMORY
                   : status == CUDNN_STATUS_NOT_SUPPORTED ? AI3_ERROR_UNSUPPORTED
                   : status == CUDNN_STATUS_BAD_PARAM ? AI3_ERROR_INVALID_ARGUMENT
                                                      : AI3_ERROR_INTERNAL;
    return ai3_cuda_error(s, "%s: %s: cuDNN says %s%s%s", op, what, cudnnGetErrorString(status),
                          detail[0] ? ": " : "", detail);
}

ai3_status ai3_cublas_check(cublasStatus_t status, const char *op, const char *what) {
    if (status == CUBLAS_STATUS_SUCCESS) return AI3_OK;
    ai3_status s = status == CUBLAS_STATUS_ALLOC_FAILED  ? AI3_ERROR_OUT_OF_MEMORY
                   : status == CUBLAS_STATUS_NOT_SUPPORTED ? AI3_ERROR_UNSUPPORTED
                   : status == CUBLAS_STATUS_INVALID_VALUE ? AI3_ERROR_INVALID_ARGUMENT
                                                           : AI3_ERROR_INTERNAL;
    return ai3_cuda_error(s, "%s: %s: cuBLAS says %s (%s)", op, what,
                          cublasGetStatusName(status), cublasGetStatusString(status));
}

size_t ai3_cuda_dtype_size(ai3_dtype dtype) {
    return dtype == AI3_FLOAT64 ? 8 : dtype == AI3_FLOAT32 ? 4 : 2;
}

const char *ai3_cuda_dtype_name(ai3_dtype dtype) {
    static const char *const names[] = {"float32", "float64", "float16", "bfloat16"};
    return (unsigned)dtype < 4 ? names[dtype] : "unknown dtype";
}

/* --- devices and handles ------------------------------------------------- */

ai3_status ai3_cuda_enter_device(int device, int *previous, const char *op) {
    ai3_status s = ai3_cuda_check(cudaGetDevice(previous), op, "finding the current device");
    if (s == AI3_OK && *previous != device)
        s = ai3_cuda_check(cudaSetDevice(device), op, "selecting the tensors' device");
    return s;
}

void ai3_cuda_leave_device(int device, int previous) {
    if (previous != device) cudaSetDevice(previous);
}

#define MAX_DEVICES 64

/* One cuDNN and one cuBLAS handle per device for each thread: a handle
 * holds its stream, so threads never share one. */
typedef struct {
    cudnnHandle_t cudnn[MAX_DEVICES];
    cublasHandle_t cublas[MAX_DEVICES];
    void *cublas_workspace[MAX_DEVICES];
} thread_handles;

/* cuBLAS's workspace, given to each handle so that it never allocates while
 * a CUDA graph is being captured. */
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

static pthread_key_t handles_key;
static pthread_once_t handles_once = PTHREAD_ONCE_INIT;

static void destroy_handles(void *p) {
    thread_handles *h = p;
    for (int d = 0; d < MAX_DEVICES; d++) {
        if (h->cudnn[d]) cudnnDestroy(h->cudnn[d]);
        if (h->cublas[d]) cublasDestroy(h->cublas[d]);
        if (h->cublas_workspace[d]) cudaFree(h->cublas_workspace[d]);
    }
    free(h);
}

static void make_handles_key(void) { pthread_key_create(&handles_key, destroy_handles); }

static thread_handles *this_thread(int *device, const char *op, ai3_status *s) {
    pthread_once(&handles_once, make_handles_key);
    *s = ai3_cuda_check(cudaGetDevice(device), op, "finding the current device");
    if (*s != AI3_OK) return NULL;
    if (*device >= MAX_DEVICES) {
        *s = ai3_cuda_error(AI3_ERROR_UNSUPPORTED, "%s: device %d (ai3 handles devices 0 to %d)",
                            op, *device, MAX_DEVICES - 1);
        return NULL;
    }
    thread_handles *h = pthread_getspecific(handles_key);
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h || pthread_setspecific(handles_key, h) != 0) {
            free(h);
            *s = ai3_cuda_error(AI3_ERROR_OUT_OF_MEMORY, "%s: out of memory", op);
            return NULL;
        }
    }
    return h;
}

ai3_status ai3_cudnn_handle(cudaStream_t stream, cudnnHandle_t *handle, const char *op) {
    int device;
    ai3_status s;
    thread_handles *h = this_thread(&device, op, &s);
    if (!h) return s;
    if (!h->cudnn[device] &&
        (s = ai3_cudnn_check(cudnnCreate(&h->cudnn[device]), op, "creating a cuDNN handle")))
        return s;
    *handle = h->cudnn[device];
    return ai3_cudnn_check(cudnnSetStream(*handle, stream), op, "setting cuDNN's stream");
}

ai3_status ai3_cublas_handle(cudaStream_t stream, cublasHandle_t *handle, const char *op) {
    int device;
    ai3_status s;
    thread_handles *h = this_thread(&device, op, &s);
    if (!h) return s;
    if (!h->cublas[device]) {
        if ((s = ai3_cublas_check(cublasCreate(&h->cublas[device]), op,
                                  "creating a cuBLAS handle")) ||
            (s = ai3_cuda_check(cudaMalloc(&h->cublas_workspace[device], CUBLAS_WORKSPACE_BYTES),
                                op, "allocating cuBLAS's workspace")) ||
            (s = ai3_cublas_check(cublasSetWorkspace(h->cublas[device],
                                                     h->cublas_workspace[device],
                                                     CUBLAS_WORKSPACE_BYTES),
                                  op, "setting cuBLAS's workspace")))
            return s;
    }
    *handle = h->cublas[device];
    return ai3_cublas_check(cublasSetStream(*handle, stream), op, "setting cuBLAS's stream");
}

/* --- workspaces -------------------------------------------------------------- */

ai3_status ai3_cuda_workspace_take(ai3_cuda_workspace *ws, void *given, size_t given_bytes,
                                   size_t needed, cudaStream_t stream, const char *op) {
    ws->base = NULL;
    ws->owned = false;
    if (needed == 0) return AI3_OK;
    if (given) {
        if (given_bytes < needed)
            return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                                  "%s: the workspace has %zu bytes but this input needs %zu", op,
                                  given_bytes, needed);
        ws->base = given;
        return AI3_OK;
    }
    ws->owned = true;
    return ai3_cuda_check(cudaMallocAsync(&ws->base, needed, stream), op,
                          "allocating the workspace");
}

void ai3_cuda_workspace_release(ai3_cuda_workspace *ws, cudaStream_t stream) {
    if (ws->owned && ws->base) cudaFreeAsync(ws->base, stream);
    ws->base = NULL;
}

/* --- plans ------------------------------------------------------------------ */

const char *ai3_cuda_op_name(ai3_op op) {
    static const char *const names[] = {
#define AI3_OP(ID, name, ...) #name,
#include "ai3_ops.inc"
#undef AI3_OP
    };
    return (unsigned)op < AI3_OP_COUNT ? names[op] : "unknown operation";
}

ai3_status ai3_cuda_check_direct(const ai3_plan *plan) {
    if (strcmp(plan->algorithm, "direct") == 0 || strcmp(plan->algorithm, "default") == 0)
        return AI3_OK;
    return ai3_cuda_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                          "%s: unknown algorithm '%s' on cuda (cuda has: 'direct')",
                          ai3_cuda_op_name(plan->op), plan->algorithm);
}

static ai3_status plan_create(ai3_plan *plan, const ai3_tensor *hint) {
    switch (plan->op) {
    case AI3_OP_CONV2D: return ai3_cuda_conv2d_create(plan, hint);
    case AI3_OP_LINEAR:
        if (strcmp(plan->algorithm, "gemm") != 0 && strcmp(plan->algorithm, "default") != 0)
            return ai3_cuda_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                                  "linear: unknown algorithm '%s' on cuda (cuda has: 'gemm', "
                                  "cuBLAS)", plan->algorithm);
        return AI3_OK;
    default: return ai3_cuda_check_direct(plan); /* batchnorm2d, layernorm */
    }
}

static void plan_destroy(ai3_plan *plan) {
    if (plan->op == AI3_OP_CONV2D) ai3_cuda_conv2d_destroy(plan);
}

static const char *plan_algorithm(const ai3_plan *plan) {
    if (plan->op == AI3_OP_CONV2D) return ai3_cuda_conv2d_algorithm(plan);
    if (strcmp(plan->algorithm, "default") != 0) return plan->algorithm;
    return plan->op == AI3_OP_LINEAR ? "gemm" : "direct";
}

static ai3_status workspace_size(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                 size_t *bytes) {
    *bytes = 0;
    if (plan->op != AI3_OP_CONV2D) return AI3_OK;
    int previous;
    ai3_status s = ai3_cuda_enter_device(in[0]->device_index, &previous, "conv2d");
    if (s != AI3_OK) return s;
    s = ai3_cuda_conv2d_workspace(plan, in[0], bytes);
    ai3_cuda_leave_device(in[0]->device_index, previous);
    return s;
}

static ai3_status run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                      ai3_tensor *out, void *workspace, size_t workspace_bytes, void *stream_,
                      const ai3_plan *activation) {
    cudaStream_t stream = stream_;
    ai3_cuda_act act_ = {activation ? activation->op : AI3_OP_RELU,
                         activation ? &activation->params : NULL};
    const ai3_cuda_act *act = activation ? &act_ : NULL;
    const char *op = plan->op == AI3_OP_CONV2D ? "conv2d" : "ai3";
    int previous;
    ai3_status s = ai3_cuda_enter_device(in[0]->device_index, &previous, op);
    if (s != AI3_OK) return s;
    if (activation && (s = ai3_cuda_check_direct(activation)) != AI3_OK) {
        ai3_cuda_leave_device(in[0]->device_index, previous);
        return s;
    }
    switch (plan->op) {
    case AI3_OP_CONV2D:
        s = ai3_cuda_conv2d_run(plan, in[0], out, workspace, workspace_bytes, act, stream);
        break;
    case AI3_OP_LINEAR: s = ai3_cuda_linear_run(plan, in[0], out, act, stream); break;
    case AI3_OP_BATCHNORM2D: s = ai3_cuda_batchnorm2d_run(plan, in[0], out, stream); break;
    case AI3_OP_LAYERNORM: s = ai3_cuda_layernorm_run(plan, in[0], out, false, stream); break;
    case AI3_OP_ADD: case AI3_OP_MUL: case AI3_OP_CAT: case AI3_OP_MEAN: case AI3_OP_PERMUTE:
    case AI3_OP_SOFTMAX:
        s = ai3_cuda_check_direct(plan);
        if (s == AI3_OK) s = ai3_cuda_tensor_op_run(plan, n, in, out, stream);
        break;
    default: s = ai3_cuda_weightless_run(plan, in[0], out, stream); break;
    }
    if (s == AI3_OK && act && plan->op != AI3_OP_CONV2D && plan->op != AI3_OP_LINEAR)
        s = ai3_cuda_weightless_run(activation, out, out, stream);
    ai3_cuda_leave_device(in[0]->device_index, previous);
    return s;
}

static ai3_status layernorm_channels(const ai3_plan *layernorm, const ai3_tensor *input,
                                     ai3_tensor *output, void *stream) {
    int previous;
    ai3_status s = ai3_cuda_enter_device(input->device_index, &previous, "layernorm");
    if (s != AI3_OK) return s;
    if ((s = ai3_cuda_check_direct(layernorm)) == AI3_OK)
        s = ai3_cuda_layernorm_run(layernorm, input, output, true, stream);
    ai3_cuda_leave_device(input->device_index, previous);
    return s;
}

static ai3_status permute_scale_add(const ai3_tensor *y, const ai3_tensor *bias,
                                    const ai3_tensor *scale, const ai3_tensor *residual,
                                    ai3_tensor *output, void *stream) {
    const int64_t *d = output->shape; /* (n, c, h, w); y (n, h, w, c) */
    int previous;
    ai3_status s = ai3_cuda_enter_device(y->device_index, &previous, "add");
    if (s != AI3_OK) return s;
    s = ai3_cuda_check(ai3_cuda_permute_scale_add(y->dtype, y->data, bias ? bias->data : NULL,
                                                  scale->data, residual->data, output->data, d[0],
                                                  d[1], d[2] * d[3], stream),
                       "add", "permute, scale and add");
    ai3_cuda_leave_device(y->device_index, previous);
    return s;
}

static int list_algorithms(ai3_op op, const char **names, int capacity) {
    static const char *const gemm[] = {"gemm"}, *const direct[] = {"direct"};
    const char *const *list = direct;
    int count = 1;
    switch (op) {
    case AI3_OP_CONV2D:
        list = ai3_cuda_conv2d_algorithms;
        count = ai3_cuda_conv2d_algorithm_count;
        break;
    case AI3_OP_LINEAR: list = gemm; break;
    case AI3_OP_MAXPOOL2D: case AI3_OP_AVGPOOL2D: case AI3_OP_ADAPTIVEAVGPOOL2D:
    case AI3_OP_RELU: case AI3_OP_FLATTEN: case AI3_OP_BATCHNORM2D: case AI3_OP_HARDTANH:
    case AI3_OP_SIGMOID: case AI3_OP_HARDSIGMOID: case AI3_OP_HARDSWISH: case AI3_OP_SILU:
    case AI3_OP_GELU: case AI3_OP_ADD: case AI3_OP_MUL: case AI3_OP_CAT: case AI3_OP_MEAN:
    case AI3_OP_PERMUTE: case AI3_OP_LAYERNORM: case AI3_OP_SOFTMAX:
        break;
    default: return 0;
    }
    for (int i = 0; i < count && i < capacity; i++) names[i] = list[i];
    return count;
}

static void describe(char *buf, size_t size) {
    int runtime = 0, devices = 0;
    cudaRuntimeGetVersion(&runtime);
    if (cudaGetDeviceCount(&devices) != cudaSuccess) {
        cudaGetLastError();
        devices = 0;
    }
    int cublas = 0;
    cublasGetProperty(MAJOR_VERSION, &cublas);
    int minor = 0, patch = 0;
    cublasGetProperty(MINOR_VERSION, &minor);
    cublasGetProperty(PATCH_LEVEL, &patch);
    size_t cudnn = cudnnGetVersion();
    snprintf(buf, size, "CUDA runtime %d.%d, cuDNN %zu.%zu.%zu, cuBLAS %d.%d.%d, %d device%s",
             runtime / 1000, runtime % 1000 / 10, cudnn / 10000, cudnn % 10000 / 100,
             cudnn % 100, cublas, minor, patch, devices, devices == 1 ? "" : "s");
}

static const ai3_cuda_backend table = {
    .abi = AI3_CUDA_BACKEND_ABI,
    .plan_create = plan_create,
    .plan_destroy = plan_destroy,
    .plan_algorithm = plan_algorithm,
    .workspace_size = workspace_size,
    .run = run,
    .layernorm_channels = layernorm_channels,
    .permute_scale_add = permute_scale_add,
    .alloc = ai3_cuda_alloc,
    .release = ai3_cuda_release,
    .copy = ai3_cuda_copy,
    .copy_rows = ai3_cuda_copy_rows,
    .record = ai3_cuda_record,
    .wait = ai3_cuda_wait,
    .event_destroy = ai3_cuda_event_destroy,
    .capture_begin = ai3_cuda_capture_begin,
    .capture_end = ai3_cuda_capture_end,
    .replay = ai3_cuda_replay,
    .graph_destroy = ai3_cuda_graph_destroy,
    .list_algorithms = list_algorithms,
    .describe = describe,
};

AI3_PLUGIN_EXPORT const ai3_cuda_backend *ai3_cuda_backend_entry(int abi, const ai3_cuda_host *host) {
    if (!host || !host->set_error) return NULL;
    if (abi != AI3_CUDA_BACKEND_ABI) {
        host->set_error(AI3_ERROR_UNSUPPORTED, "backend ABI %d, libai3 expects %d",
                        AI3_CUDA_BACKEND_ABI, abi);
        return NULL;
    }
    ai3_cuda_error = host->set_error;
    return &table;
}
