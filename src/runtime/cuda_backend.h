/*
 * The interface between libai3 and its CUDA backend (libai3_cuda, built
 * from src/cuda/ when a CUDA toolkit, cuDNN and cuBLAS are found). libai3
 * opens the backend with dlopen on the first CUDA tensor it meets and asks
 * it for this table; libai3 itself links no CUDA library, so a program that
 * stays on the CPU needs none. Private to ai3: both sides are built
 * together, the ABI number only guards against a stale file.
 */
#ifndef AI3_CUDA_BACKEND_H
#define AI3_CUDA_BACKEND_H

#include "ai3.h"

#include <stddef.h>

#define AI3_CUDA_BACKEND_ABI 3

enum { AI3_COPY_TO_DEVICE = 0, AI3_COPY_ON_DEVICE = 1, AI3_COPY_TO_HOST = 2 };
#define AI3_CUDA_BACKEND_SYMBOL "ai3_cuda_backend_entry"

struct ai3_plan;

/* What libai3 lends the backend (which links no copy of libai3, so that a
 * program linking libai3 statically still has one error state). */
typedef struct ai3_cuda_host {
    ai3_status (*set_error)(ai3_status status, const char *fmt, ...) AI3_PRINTF_FORMAT(2, 3);
} ai3_cuda_host;

typedef struct ai3_cuda_backend {
    int abi;
    /* Makes plan->state for a plan whose weights (plan->weights: views of
     * the caller's device memory, checked to be on one device, one dtype)
     * are on CUDA. Plans without weights have no state: run checks their
     * algorithm. */
    ai3_status (*plan_create)(struct ai3_plan *plan, const ai3_tensor *hint);
    void (*plan_destroy)(struct ai3_plan *plan);
    /* plan->algorithm resolved ("guess": the algorithm chosen last). */
    const char *(*plan_algorithm)(const struct ai3_plan *plan);
    /* Inputs already checked: valid, one dtype, on the plan's device.
     * activation: NULL, or the plan of an activation (relu, hardtanh,
     * sigmoid, hardsigmoid, hardswish, silu, gelu) applied to the output
     * in place, fused into conv2d's and linear's epilogue. */
    ai3_status (*workspace_size)(const struct ai3_plan *plan, int n_inputs,
                                 const ai3_tensor *const *inputs, size_t *bytes);
    ai3_status (*run)(const struct ai3_plan *plan, int n_inputs, const ai3_tensor *const *inputs,
                      ai3_tensor *output, void *workspace, size_t workspace_bytes, void *stream,
                      const struct ai3_plan *activation);
    /* Graphs' fusions of permutes (tensors contiguous, on one device):
     * layernorm_channels runs a layernorm plan (over the last dimension) on
     * input (n, c, h, w) permuted to (n, h, w, c), the output;
     * permute_scale_add: output (n, c, h, w) = y (n, h, w, c) permuted to
     * channels first, plus bias (c values, or NULL), times scale (c
     * values), plus residual. */
    ai3_status (*layernorm_channels)(const struct ai3_plan *layernorm, const ai3_tensor *input,
                                     ai3_tensor *output, void *stream);
    ai3_status (*permute_scale_add)(const ai3_tensor *y, const ai3_tensor *bias,
                                    const ai3_tensor *scale, const ai3_tensor *residual,
                                    ai3_tensor *output, void *stream);
    /* Device memory of the graph executor (synchronous; `device` is the
     * ordinal), copies (kind: AI3_COPY_*; on `stream`, or synchronous when
     * stream is NULL and the copy involves host memory), and 2-d copies
     * (rows of `width` bytes) on `stream`. */
    ai3_status (*alloc)(int device, size_t bytes, void **ptr);
    void (*release)(int device, void *ptr);
    ai3_status (*copy)(int device, void *dst, const void *src, size_t bytes, int kind,
                       void *stream);
    ai3_status (*copy_rows)(int device, void *dst, size_t dst_pitch, const void *src,
                            size_t src_pitch, size_t width, size_t rows, void *stream);
    /* Ordering between streams: an event recorded on one, waited for by
     * another (NULL events are made on first record). */
    ai3_status (*record)(int device, void **event, void *stream);
    ai3_status (*wait)(int device, void *event, void *stream);
    void (*event_destroy)(void *event);
    /* CUDA graphs: begin gives a stream of its own in capture mode (any
     * stream can replay the result, the legacy default stream included);
     * what is enqueued on it until end becomes an executable graph. end
     * returns an error (and no graph) if the capture failed, and releases
     * the stream either way. */
    ai3_status (*capture_begin)(int device, void **stream);
    ai3_status (*capture_end)(int device, void *stream, void **graph);
    ai3_status (*replay)(int device, void *graph, void *stream);
    void (*graph_destroy)(void *graph);
    /* The algorithm names of op on CUDA (static strings), as ai3_list_algorithms. */
    int (*list_algorithms)(ai3_op op, const char **names, int capacity);
    /* ai3_cuda_describe's text. */
    void (*describe)(char *buf, size_t size);
} ai3_cuda_backend;

/* The backend's entry point, exported as AI3_CUDA_BACKEND_SYMBOL: its table,
 * or NULL (with the error set through host) if abi is not its own. */
typedef const ai3_cuda_backend *(*ai3_cuda_backend_fn)(int abi, const ai3_cuda_host *host);

/* libai3's side (runtime/cuda_loader.c): the backend, loaded on first call;
 * NULL with the error message set (AI3_ERROR_UNSUPPORTED) when this build
 * or machine has none. Thread-safe. */
const ai3_cuda_backend *ai3_cuda_backend_get(void);

#endif
