/*
 * The host side of the CUDA backend (the .c files of src/cuda): what its files share.
 * Written in C against the CUDA runtime, cuDNN and cuBLAS; the kernels it
 * launches are in kernels.h.
 */
#ifndef AI3_CUDA_H
#define AI3_CUDA_H

#include "ai3.h"
#include "cuda_backend.h"
#include "kernels.h"
#include "plan.h"

/* The named convolution algorithms (cudnnConvolutionFwdAlgo_t) exist only
 * in cuDNN's legacy API, deprecated in cuDNN 9 and used here on purpose
 * (the graph API has engines, not these algorithms). This is the one place
 * that decides about its deprecation warnings: off. */
#undef CUDNN_WARN_DEPRECATED
#include <cudnn.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stddef.h>

/* libai3's ai3_set_error (see backend.c). */
extern ai3_status (*ai3_cuda_error)(ai3_status status, const char *fmt, ...)
    AI3_PRINTF_FORMAT(2, 3);

/* AI3_OK, or the CUDA runtime / cuDNN / cuBLAS error as an ai3 error whose
 * message names the operation, what was being done and the library's own
 * text (never a bare number). */
ai3_status ai3_cuda_check(cudaError_t err, const char *op, const char *what);
ai3_status ai3_cudnn_check(cudnnStatus_t status, const char *op, const char *what);
ai3_status ai3_cublas_check(cublasStatus_t status, const char *op, const char *what);

/* Makes `device` current for the calling thread until ai3_cuda_leave_device
 * restores the previous one. */
ai3_status ai3_cuda_enter_device(int device, int *previous, const char *op);
void ai3_cuda_leave_device(int device, int previous);

/* The calling thread's cuDNN / cuBLAS handle for the current device (made on
 * first use, destroyed when the thread ends), set to `stream`. */
ai3_status ai3_cudnn_handle(cudaStream_t stream, cudnnHandle_t *handle, const char *op);
ai3_status ai3_cublas_handle(cudaStream_t stream, cublasHandle_t *handle, const char *op);

/* Device workspace: the caller's, or taken from the stream-ordered pool for
 * this run (ai3_cuda_workspace_release gives it back, stream-ordered). */
typedef struct {
    void *base;
    bool owned;
} ai3_cuda_workspace;
ai3_status ai3_cuda_workspace_take(ai3_cuda_workspace *ws, void *given, size_t given_bytes,
                                   size_t needed, cudaStream_t stream, const char *op);
void ai3_cuda_workspace_release(ai3_cuda_workspace *ws, cudaStream_t stream);

/* Bytes rounded up so that the next part of a workspace stays aligned. */
static inline size_t ai3_cuda_align(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* "conv2d", ... (ai3_op_name without linking libai3). */
const char *ai3_cuda_op_name(ai3_op op);
/* AI3_OK for "direct" and "default", the one CUDA algorithm of most
 * operations (ai3's own kernel); else the error. */
ai3_status ai3_cuda_check_direct(const ai3_plan *plan);

size_t ai3_cuda_dtype_size(ai3_dtype dtype);
const char *ai3_cuda_dtype_name(ai3_dtype dtype);

/* --- what the graph executor uses (memory.c; see cuda_backend.h) --- */
ai3_status ai3_cuda_alloc(int device, size_t bytes, void **ptr);
void ai3_cuda_release(int device, void *ptr);
ai3_status ai3_cuda_copy(int device, void *dst, const void *src, size_t bytes, int kind,
                         void *stream);
ai3_status ai3_cuda_copy_rows(int device, void *dst, size_t dst_pitch, const void *src,
                              size_t src_pitch, size_t width, size_t rows, void *stream);
ai3_status ai3_cuda_record(int device, void **event, void *stream);
ai3_status ai3_cuda_wait(int device, void *event, void *stream);
void ai3_cuda_event_destroy(void *event);
ai3_status ai3_cuda_capture_begin(int device, void **stream);
ai3_status ai3_cuda_capture_end(int device, void *stream, void **graph);
ai3_status ai3_cuda_replay(int device, void *graph, void *stream);
void ai3_cuda_graph_destroy(void *graph);

/* --- the operations' plans -------------------------------------------------
 * Each file (conv2d.c, linear.c, batchnorm2d.c, elementwise.c) gives a
 * create/destroy/workspace/run set; backend.c dispatches on plan->op. */
ai3_status ai3_cuda_conv2d_create(ai3_plan *plan, const ai3_tensor *hint);
void ai3_cuda_conv2d_destroy(ai3_plan *plan);
const char *ai3_cuda_conv2d_algorithm(const ai3_plan *plan);
ai3_status ai3_cuda_conv2d_workspace(const ai3_plan *plan, const ai3_tensor *input,
                                     size_t *bytes);
/* act: an activation fused into the run as its epilogue, or NULL (also linear's). */
ai3_status ai3_cuda_conv2d_run(const ai3_plan *plan, const ai3_tensor *input,
                               ai3_tensor *output, void *workspace, size_t workspace_bytes,
                               const ai3_cuda_act *act, cudaStream_t stream);
extern const char *const ai3_cuda_conv2d_algorithms[];
extern const int ai3_cuda_conv2d_algorithm_count;

/* conv2d "guess" through cuDNN's graph API (conv2d_heuristic.c): an
 * execution plan for one input shape (NCHW, dims of x, w, y), chosen by
 * cuDNN's heuristic, with its workspace bytes; then runs of it. Pointers
 * must be 16-byte aligned (ai3_cudnn_heuristic_aligned). */
ai3_status ai3_cudnn_heuristic_plan(cudnnHandle_t handle, ai3_dtype dtype, bool allow_tf32,
                                    const int64_t x_dims[4], const int64_t w_dims[4],
                                    const int64_t y_dims[4], const int64_t pre_pad[2],
                                    const int64_t post_pad[2], const int64_t stride[2],
                                    const int64_t dilation[2], cudnnBackendDescriptor_t *plan,
                                    size_t *workspace);
ai3_status ai3_cudnn_heuristic_run(cudnnHandle_t handle, cudnnBackendDescriptor_t plan,
                                   const void *x, const void *w, void *y, void *workspace);
bool ai3_cudnn_heuristic_aligned(const void *x, const void *w, const void *y,
                                 const void *workspace);

ai3_status ai3_cuda_linear_run(const ai3_plan *plan, const ai3_tensor *input,
                               ai3_tensor *output, const ai3_cuda_act *act,
                               cudaStream_t stream);
ai3_status ai3_cuda_batchnorm2d_run(const ai3_plan *plan, const ai3_tensor *input,
                                    ai3_tensor *output, cudaStream_t stream);
/* layernorm, and add, mul, cat, mean, permute, softmax (tensor_ops.c). */
/* channels: input (n, c, h, w) normalised over c and written (n, h, w, c)
 * (a graph's permute fused in), else over the last normalized_ndim dims. */
ai3_status ai3_cuda_layernorm_run(const ai3_plan *plan, const ai3_tensor *input,
                                  ai3_tensor *output, bool channels, cudaStream_t stream);
ai3_status ai3_cuda_tensor_op_run(const ai3_plan *plan, int n_inputs,
                                  const ai3_tensor *const *inputs, ai3_tensor *output,
                                  cudaStream_t stream);
/* The other operations without weights (own kernels). */
ai3_status ai3_cuda_weightless_run(const ai3_plan *plan, const ai3_tensor *input,
                                   ai3_tensor *output, cudaStream_t stream);

#endif
