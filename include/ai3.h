/*
 * ai3 — algorithmic control over deep-network operations.
 *
 * The public C interface of libai3. Every entry point returns an ai3_status;
 * on failure ai3_last_error() gives a message for the calling thread. The
 * library never aborts, exits or prints on bad input.
 *
 * Tensors are dense, row-major (C-contiguous) and owned by the caller: the
 * library reads inputs in place and writes into outputs the caller allocated
 * with the shape given by the matching ai3_*_output_shape function.
 *
 * Every operation takes an algorithm name. "default" picks the library's
 * choice for the operation; any other name is looked up in the registry,
 * which holds the built-in algorithms and those registered at run time with
 * ai3_register_algorithm.
 */
#ifndef AI3_H
#define AI3_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define AI3_API __declspec(dllexport)
#else
#define AI3_API __attribute__((visibility("default")))
#endif

#define AI3_VERSION_MAJOR 0
#define AI3_VERSION_MINOR 1
#define AI3_VERSION_PATCH 0

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                   */
/* ------------------------------------------------------------------------ */

typedef enum ai3_status {
    AI3_OK = 0,
    AI3_ERROR_INVALID_ARGUMENT = 1, /* bad shape, parameter, dtype or pointer */
    AI3_ERROR_UNSUPPORTED = 2,      /* valid, but the chosen algorithm cannot do it */
    AI3_ERROR_UNKNOWN_ALGORITHM = 3,/* no algorithm of that name for the operation */
    AI3_ERROR_OUT_OF_MEMORY = 4,
    AI3_ERROR_INTERNAL = 5
} ai3_status;

/* A static English name for a status code, e.g. "invalid argument". */
AI3_API const char *ai3_status_string(ai3_status status);

/* The message of the last failure on the calling thread ("" if none). */
AI3_API const char *ai3_last_error(void);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

#define AI3_MAX_DIMS 8

typedef enum ai3_dtype { AI3_FLOAT32 = 0, AI3_FLOAT64 = 1 } ai3_dtype;

typedef enum ai3_device { AI3_DEVICE_CPU = 0, AI3_DEVICE_CUDA = 1 } ai3_device;

/* A view of caller-owned, C-contiguous memory. */
typedef struct ai3_tensor {
    void *data;
    ai3_dtype dtype;
    ai3_device device;
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
} ai3_tensor;

/* Number of elements (product of the shape; 1 for ndim == 0). */
AI3_API int64_t ai3_tensor_numel(const ai3_tensor *t);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/* Number of worker threads (including the caller) used by every operation.
 * n >= 1. The default is the number of online CPUs. */
AI3_API ai3_status ai3_set_num_threads(int n);
AI3_API int ai3_get_num_threads(void);

/* ------------------------------------------------------------------------ */
/* Operations                                                                */
/* ------------------------------------------------------------------------ */

typedef enum ai3_op {
    AI3_OP_CONV2D = 0,
    AI3_OP_LINEAR,
    AI3_OP_MAXPOOL2D,
    AI3_OP_AVGPOOL2D,
    AI3_OP_ADAPTIVEAVGPOOL2D,
    AI3_OP_RELU,
    AI3_OP_FLATTEN,
    AI3_OP_COUNT
} ai3_op;

/* "conv2d", "linear", ... or NULL for an unknown op. */
AI3_API const char *ai3_op_name(ai3_op op);

/* --- conv2d --------------------------------------------------------------
 * input  (N, C_in, H, W) or unbatched (C_in, H, W)
 * weight (C_out, C_in / groups, KH, KW)
 * bias   (C_out) or NULL
 * output (N, C_out, OH, OW) or (C_out, OH, OW)
 * Padding is explicit per side, so PyTorch's padding='same' (which pads the
 * extra row/column at the bottom/right) is expressible. With a non-zero
 * padding mode the input is padded with that mode, as nn.Conv2d does. */
typedef enum ai3_padding_mode {
    AI3_PADDING_ZEROS = 0,
    AI3_PADDING_REFLECT,
    AI3_PADDING_REPLICATE,
    AI3_PADDING_CIRCULAR
} ai3_padding_mode;

typedef struct ai3_conv2d_params {
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_bottom, pad_left, pad_right;
    int64_t dilation_h, dilation_w;
    int64_t groups;
    ai3_padding_mode padding_mode;
} ai3_conv2d_params;

/* Stride 1, no padding, dilation 1, one group, zero padding mode. */
AI3_API ai3_conv2d_params ai3_conv2d_params_default(void);

AI3_API ai3_status ai3_conv2d_output_shape(const ai3_tensor *input, const ai3_tensor *weight,
                                           const ai3_conv2d_params *params, int *out_ndim,
                                           int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_conv2d(const char *algorithm, const ai3_tensor *input,
                              const ai3_tensor *weight, const ai3_tensor *bias,
                              const ai3_conv2d_params *params, ai3_tensor *output);

/* --- linear: output = input · weightᵀ + bias ------------------------------
 * input (..., in_features), weight (out_features, in_features),
 * bias (out_features) or NULL, output (..., out_features). */
AI3_API ai3_status ai3_linear_output_shape(const ai3_tensor *input, const ai3_tensor *weight,
                                           int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_linear(const char *algorithm, const ai3_tensor *input,
                              const ai3_tensor *weight, const ai3_tensor *bias,
                              ai3_tensor *output);

/* --- pooling: input (N, C, H, W) or (C, H, W) ------------------------------ */
typedef struct ai3_pool2d_params {
    int64_t kernel_h, kernel_w;
    int64_t stride_h, stride_w;
    int64_t pad_h, pad_w;           /* symmetric, at most half the kernel */
    int64_t dilation_h, dilation_w; /* maxpool2d only; must be 1 for avgpool2d */
    int ceil_mode;
    int count_include_pad;          /* avgpool2d only */
    int64_t divisor_override;       /* avgpool2d only; 0 = none */
} ai3_pool2d_params;

/* kernel k×k, stride = kernel, no padding, dilation 1, floor mode,
 * count_include_pad on, no divisor override (PyTorch's defaults). */
AI3_API ai3_pool2d_params ai3_pool2d_params_default(int64_t kernel_h, int64_t kernel_w);

AI3_API ai3_status ai3_maxpool2d_output_shape(const ai3_tensor *input,
                                              const ai3_pool2d_params *params, int *out_ndim,
                                              int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_maxpool2d(const char *algorithm, const ai3_tensor *input,
                                 const ai3_pool2d_params *params, ai3_tensor *output);

AI3_API ai3_status ai3_avgpool2d_output_shape(const ai3_tensor *input,
                                              const ai3_pool2d_params *params, int *out_ndim,
                                              int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_avgpool2d(const char *algorithm, const ai3_tensor *input,
                                 const ai3_pool2d_params *params, ai3_tensor *output);

/* Output (N, C, out_h, out_w); bins as in PyTorch: start = floor(i·H/out_h),
 * end = ceil((i+1)·H/out_h). */
AI3_API ai3_status ai3_adaptiveavgpool2d_output_shape(const ai3_tensor *input, int64_t out_h,
                                                      int64_t out_w, int *out_ndim,
                                                      int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_adaptiveavgpool2d(const char *algorithm, const ai3_tensor *input,
                                         int64_t out_h, int64_t out_w, ai3_tensor *output);

/* --- relu: any shape; output has the input's shape. Output may alias input. */
AI3_API ai3_status ai3_relu(const char *algorithm, const ai3_tensor *input, ai3_tensor *output);

/* --- flatten: dims start_dim..end_dim (negative counts from the end) merged. */
AI3_API ai3_status ai3_flatten_output_shape(const ai3_tensor *input, int start_dim, int end_dim,
                                            int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_flatten(const char *algorithm, const ai3_tensor *input, int start_dim,
                               int end_dim, ai3_tensor *output);

/* ------------------------------------------------------------------------ */
/* Algorithms: the registry                                                  */
/* ------------------------------------------------------------------------ */

/* The signature of an algorithm for each operation. The library validates
 * every argument and allocates nothing for the algorithm: it receives
 * contiguous tensors of one dtype on the CPU, 4-d for conv2d and the
 * pooling operations (an unbatched input arrives with N = 1), and writes
 * every element of output. It returns AI3_OK or a status after calling
 * ai3_set_error. */
typedef ai3_status (*ai3_conv2d_fn)(const ai3_tensor *input, const ai3_tensor *weight,
                                    const ai3_tensor *bias, const ai3_conv2d_params *params,
                                    ai3_tensor *output);
typedef ai3_status (*ai3_linear_fn)(const ai3_tensor *input, const ai3_tensor *weight,
                                    const ai3_tensor *bias, ai3_tensor *output);
typedef ai3_status (*ai3_pool2d_fn)(const ai3_tensor *input, const ai3_pool2d_params *params,
                                    ai3_tensor *output);
typedef ai3_status (*ai3_adaptiveavgpool2d_fn)(const ai3_tensor *input, ai3_tensor *output);
typedef ai3_status (*ai3_relu_fn)(const ai3_tensor *input, ai3_tensor *output);
typedef ai3_status (*ai3_flatten_fn)(const ai3_tensor *input, ai3_tensor *output);

/* Any of the above, cast; ai3_register_algorithm casts it back by op. */
typedef void (*ai3_algorithm_fn)(void);

/* Registers (or replaces a run-time registration of) the algorithm `name`
 * for `op`. Built-in names cannot be replaced; "default" is reserved.
 * The name is copied (at most 63 bytes). Thread-safe. */
AI3_API ai3_status ai3_register_algorithm(ai3_op op, const char *name, ai3_algorithm_fn fn);

/* Removes a run-time registration. */
AI3_API ai3_status ai3_unregister_algorithm(ai3_op op, const char *name);

/* Writes up to `capacity` names of the algorithms of `op` (built-in first,
 * then registered) into `names` and their total count into `*count`. The
 * strings stay valid until that registration is removed. */
AI3_API ai3_status ai3_list_algorithms(ai3_op op, const char **names, int capacity, int *count);

/* The algorithm that "default" stands for, for `op`. */
AI3_API const char *ai3_default_algorithm(ai3_op op);

/* For algorithms: set the calling thread's error message, printf-style, and
 * return `status`. */
AI3_API ai3_status ai3_set_error(ai3_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The name of the symbol a shared library of custom algorithms exports:
 * `ai3_status ai3_init_algorithms(void)`, called by ai3_load_algorithms. */
#define AI3_INIT_SYMBOL "ai3_init_algorithms"

/* Opens the shared library at `path` and calls its ai3_init_algorithms,
 * which registers its algorithms. */
AI3_API ai3_status ai3_load_algorithms(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* AI3_H */
