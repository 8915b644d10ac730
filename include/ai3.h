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

/* AI3_API marks the library's functions: exported when building libai3
 * (AI3_BUILDING_LIBRARY), imported by programs that use it. */
#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(AI3_BUILDING_LIBRARY)
#define AI3_API __declspec(dllexport)
#else
#define AI3_API __declspec(dllimport)
#endif
#define AI3_PLUGIN_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define AI3_API __attribute__((visibility("default")))
#define AI3_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define AI3_API
#define AI3_PLUGIN_EXPORT
#endif

#if defined(__GNUC__) || defined(__clang__)
#define AI3_PRINTF_FORMAT(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define AI3_PRINTF_FORMAT(fmt, args)
#endif

/* The version of this header; ai3_version() gives the library's. */
#define AI3_VERSION_MAJOR 0
#define AI3_VERSION_MINOR 2
#define AI3_VERSION_PATCH 0
#define AI3_VERSION (AI3_VERSION_MAJOR * 10000 + AI3_VERSION_MINOR * 100 + AI3_VERSION_PATCH)
/* Bumped whenever a struct, enum or function signature of this header
 * changes incompatibly; plugins are checked against it when loaded. */
#define AI3_ABI_VERSION 3

/* The library's AI3_VERSION (a program may run with a newer libai3 than
 * the header it was compiled with: same major version, same ABI). */
AI3_API int ai3_version(void);
/* The library's AI3_ABI_VERSION. */
AI3_API int ai3_abi_version(void);

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

/* A static English name for a status code, e.g. "invalid argument"; a
 * string literal, valid forever. */
AI3_API const char *ai3_status_string(ai3_status status);

/* The message of the last failure on the calling thread ("" if none);
 * valid until the next call into ai3 on that thread. */
AI3_API const char *ai3_last_error(void);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

#define AI3_MAX_DIMS 8

/* float16 (IEEE half) is computed on CUDA devices only; bfloat16 on CUDA
 * devices and on CPUs with AVX512_BF16 (others refuse it with
 * AI3_ERROR_UNSUPPORTED, as does AI3_ISA below avx512). On the CPU, conv2d
 * (direct, gemm, implicit gemm, implicit precomp gemm) and linear compute
 * bfloat16 themselves, summing in float32; the other operations compute it
 * in float32 through plans (ai3_plan_*, graphs), their one-shot functions
 * refuse it. */
typedef enum ai3_dtype {
    AI3_FLOAT32 = 0,
    AI3_FLOAT64 = 1,
    AI3_FLOAT16 = 2,
    AI3_BFLOAT16 = 3
} ai3_dtype;

typedef enum ai3_device { AI3_DEVICE_CPU = 0, AI3_DEVICE_CUDA = 1 } ai3_device;

/* A view of caller-owned, C-contiguous memory. For a CUDA tensor, data is
 * a device pointer and device_index the device's ordinal (0 for the first
 * GPU); it is ignored on the CPU. */
typedef struct ai3_tensor {
    void *data;
    ai3_dtype dtype;
    ai3_device device;
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    int device_index;
} ai3_tensor;

/* Number of elements (product of the shape; 1 for ndim == 0). */
AI3_API int64_t ai3_tensor_numel(const ai3_tensor *t);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/* Number of threads (including the caller) an operation runs on, at most.
 * 1 <= n <= 256. The default is the number of online CPUs, or the
 * environment variable AI3_NUM_THREADS. Thread-safe; operations started
 * afterwards use the new number. While an executor is installed (below), its
 * own number of threads bounds it too: ai3_get_num_threads() gives the
 * smaller of the two, which is what operations use. */
AI3_API ai3_status ai3_set_num_threads(int n);
AI3_API int ai3_get_num_threads(void);

/* --- the executor of the parallel loops ------------------------------------
 * Every operation splits its work into parallel loops. By default they run
 * on ai3's own thread pool (the caller and worker threads that sleep between
 * loops). A program that already has threads for parallel work (its own
 * pool, or the OpenMP team of a framework it embeds) can hand ai3 a
 * parallel-for instead, so that the two do not compete for the cores:
 *
 *     parallel_for(executor_ctx, n_tasks, task, task_ctx)
 *
 * must call task(task_ctx, i) exactly once for each i in [0, n_tasks) and
 * return only when every call has returned. ai3 asks for at most
 * `num_threads` tasks (and at most ai3_get_num_threads()); each task takes
 * pieces of the loop until none is left and never waits for another task,
 * so any schedule is correct: the tasks may run at once on several threads,
 * in any order, or one after another on the calling thread (say, when the
 * executor is busy); how many run at once only changes the speed.
 *
 * - Calls into it: parallel_for may be called from several threads at once
 *   (each running an operation). Loops started from inside a task run
 *   serially on that thread, so it is never entered again from its own
 *   tasks. Tasks never throw or longjmp; parallel_for must not either.
 * - Changing it: ai3_set_parallel_executor is thread-safe and may be called
 *   while other threads run operations. A loop runs to its end on the
 *   executor it started with; loops started afterwards use the new one (an
 *   operation in flight may run its later loops on it). The call returns
 *   only once no loop runs on the previous executor any more, so the
 *   previous executor_ctx may be released as soon as it returns. It must
 *   not be called from inside a task (AI3_ERROR_INVALID_ARGUMENT) nor from
 *   parallel_for itself.
 * - executor_ctx is not owned by ai3; it must stay valid until another
 *   executor (or NULL) has been set and that call has returned.
 * - num_threads (>= 1) is the number of threads parallel_for runs tasks on;
 *   it bounds ai3_get_num_threads() as long as the executor is installed
 *   (set the executor again to change it). With 1, loops run serially on
 *   the calling thread and parallel_for is not called.
 *
 * parallel_for == NULL restores ai3's own thread pool (the other arguments
 * are then ignored). Returns AI3_ERROR_INVALID_ARGUMENT if num_threads < 1
 * or if called from inside a task. */
typedef void (*ai3_parallel_task_fn)(void *task_ctx, int64_t index);
typedef void (*ai3_parallel_for_fn)(void *executor_ctx, int64_t n_tasks,
                                    ai3_parallel_task_fn task, void *task_ctx);
AI3_API ai3_status ai3_set_parallel_executor(ai3_parallel_for_fn parallel_for,
                                             void *executor_ctx, int num_threads);

/* ------------------------------------------------------------------------ */
/* Operations                                                                */
/* ------------------------------------------------------------------------ */

/* The operations, generated from ai3_ops.inc (installed beside this
 * header), which lists each with its name, default algorithm, parameter
 * struct and algorithm signature. */
typedef enum ai3_op {
#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    AI3_OP_##ID,
#include "ai3_ops.inc"
#undef AI3_OP
    AI3_OP_COUNT
} ai3_op;

/* "conv2d", "linear", ... (static strings) or NULL for an unknown op. */
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

/* --- conv2d plans: plan once, run many ---------------------------------
 * A plan holds what the algorithm derives from the weights (re-laid-out or
 * packed weights, Winograd kernel transforms), made once at creation. It
 * keeps its own copy: later changes to the caller's weight or bias need a
 * new plan. A plan runs on inputs of any batch and spatial size with the
 * channel count of its weight; it may be run by several threads at once.
 * `input_shape` (3-d or 4-d, may be NULL) is the expected input: "guess"
 * (and "default") chooses its algorithm for that shape. */
typedef struct ai3_conv2d_plan ai3_conv2d_plan;

AI3_API ai3_status ai3_conv2d_plan_create(const char *algorithm, const ai3_tensor *weight,
                                          const ai3_tensor *bias,
                                          const ai3_conv2d_params *params,
                                          const ai3_tensor *input_shape,
                                          ai3_conv2d_plan **plan);
/* The algorithm the plan runs ("guess" and "default" resolved). */
AI3_API const char *ai3_conv2d_plan_algorithm(const ai3_conv2d_plan *plan);
/* Workspace bytes ai3_conv2d_plan_run needs for an input of this shape. */
AI3_API ai3_status ai3_conv2d_plan_workspace_size(const ai3_conv2d_plan *plan,
                                                  const ai3_tensor *input, size_t *bytes);
/* Runs the plan. `workspace` may be NULL (then the plan allocates it), or
 * at least ai3_conv2d_plan_workspace_size bytes, 64-byte aligned. */
AI3_API ai3_status ai3_conv2d_plan_run(const ai3_conv2d_plan *plan, const ai3_tensor *input,
                                       ai3_tensor *output, void *workspace,
                                       size_t workspace_bytes);
AI3_API void ai3_conv2d_plan_destroy(ai3_conv2d_plan *plan);

/* --- linear: output = input · weightᵀ + bias ------------------------------
 * input (..., in_features), weight (out_features, in_features),
 * bias (out_features) or NULL, output (..., out_features). */
AI3_API ai3_status ai3_linear_output_shape(const ai3_tensor *input, const ai3_tensor *weight,
                                           int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_linear(const char *algorithm, const ai3_tensor *input,
                              const ai3_tensor *weight, const ai3_tensor *bias,
                              ai3_tensor *output);

/* --- linear plans: the weight packed once (see conv2d plans). */
typedef struct ai3_linear_plan ai3_linear_plan;

AI3_API ai3_status ai3_linear_plan_create(const char *algorithm, const ai3_tensor *weight,
                                          const ai3_tensor *bias, ai3_linear_plan **plan);
AI3_API ai3_status ai3_linear_plan_run(const ai3_linear_plan *plan, const ai3_tensor *input,
                                       ai3_tensor *output);
AI3_API void ai3_linear_plan_destroy(ai3_linear_plan *plan);

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
/* More operations, for whole networks (graph executor)                      */
/* ------------------------------------------------------------------------ */

/* Reshape, view, flatten and squeeze are metadata only on contiguous
 * buffers, and dropout, stochastic depth and identity are the identity in
 * inference, so none of them needs an operation here. */

/* --- batchnorm2d, inference form ------------------------------------------
 * input (N, C, H, W) or (C, H, W); running_mean, running_var (C);
 * weight, bias (C) or NULL (taken as 1 and 0); eps > 0.
 * output = (input - mean) / sqrt(var + eps) * weight + bias, per channel.
 * Output has the input's shape and may alias input. */
AI3_API ai3_status ai3_batchnorm2d(const char *algorithm, const ai3_tensor *input,
                                   const ai3_tensor *running_mean,
                                   const ai3_tensor *running_var, const ai3_tensor *weight,
                                   const ai3_tensor *bias, double eps, ai3_tensor *output);

/* --- add, mul: elementwise with NumPy / PyTorch broadcasting ---------------
 * Shapes are aligned at their last dimension; each pair of sizes must be
 * equal or one of them 1 (e.g. (N, C, H, W) * (N, C, 1, 1) for
 * squeeze-and-excitation). Output has the broadcast shape and may alias a
 * or b where that operand has the output's shape. */
AI3_API ai3_status ai3_broadcast_output_shape(const ai3_tensor *a, const ai3_tensor *b,
                                              int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_add(const char *algorithm, const ai3_tensor *a, const ai3_tensor *b,
                           ai3_tensor *output);
AI3_API ai3_status ai3_mul(const char *algorithm, const ai3_tensor *a, const ai3_tensor *b,
                           ai3_tensor *output);

/* --- cat: n_inputs >= 1 tensors of one dtype and ndim (>= 1), equal sizes
 * except along `dim` (negative counts from the end), joined along `dim`. */
AI3_API ai3_status ai3_cat_output_shape(const ai3_tensor *const *inputs, int n_inputs, int dim,
                                        int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_cat(const char *algorithm, const ai3_tensor *const *inputs, int n_inputs,
                           int dim, ai3_tensor *output);

/* --- activations: any shape; output has the input's shape and may alias
 * input. The formulas are PyTorch's:
 *   hardtanh(x)    = min(max(x, min_val), max_val)   (min_val <= max_val;
 *                    ReLU6 is hardtanh(0, 6))
 *   sigmoid(x)     = 1 / (1 + exp(-x))
 *   hardsigmoid(x) = min(max(x + 3, 0), 6) / 6
 *   hardswish(x)   = x * min(max(x + 3, 0), 6) / 6
 *   silu(x)        = x * sigmoid(x)
 *   gelu(x)        = x / 2 * (1 + erf(x / sqrt(2)))                   exact
 *                  = x / 2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *                    with tanh_approximation (approximate='tanh') */
AI3_API ai3_status ai3_hardtanh(const char *algorithm, const ai3_tensor *input, double min_val,
                                double max_val, ai3_tensor *output);
AI3_API ai3_status ai3_sigmoid(const char *algorithm, const ai3_tensor *input,
                               ai3_tensor *output);
AI3_API ai3_status ai3_hardsigmoid(const char *algorithm, const ai3_tensor *input,
                                   ai3_tensor *output);
AI3_API ai3_status ai3_hardswish(const char *algorithm, const ai3_tensor *input,
                                 ai3_tensor *output);
AI3_API ai3_status ai3_silu(const char *algorithm, const ai3_tensor *input, ai3_tensor *output);
AI3_API ai3_status ai3_gelu(const char *algorithm, const ai3_tensor *input,
                            int tanh_approximation, ai3_tensor *output);

/* --- mean over dims -------------------------------------------------------
 * dims: n_dims distinct dimensions of input (negative counts from the end);
 * n_dims == 0 (dims may then be NULL) means every dimension, as
 * torch.mean(input). keepdim keeps the reduced dimensions with size 1,
 * otherwise they are removed. E.g. global average pooling is dims {2, 3}. */
AI3_API ai3_status ai3_mean_output_shape(const ai3_tensor *input, const int *dims, int n_dims,
                                         int keepdim, int *out_ndim,
                                         int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_mean(const char *algorithm, const ai3_tensor *input, const int *dims,
                            int n_dims, int keepdim, ai3_tensor *output);

/* --- permute: output dimension i is input dimension perm[i]; perm has
 * input->ndim entries, a permutation (negative entries count from the end).
 * Transpose and channel shuffle are permutes (with metadata-only reshapes
 * around them). Output must not overlap input. */
AI3_API ai3_status ai3_permute_output_shape(const ai3_tensor *input, const int *perm,
                                            int *out_ndim, int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_permute(const char *algorithm, const ai3_tensor *input, const int *perm,
                               ai3_tensor *output);

/* --- layernorm (torch.nn.LayerNorm): each slice over the last
 * normalized_ndim dimensions (1 <= normalized_ndim <= input->ndim) is
 * normalised with its mean and biased variance:
 *   output = (x - mean) / sqrt(var + eps) * weight + bias
 * weight, bias: the shape of those last dimensions, or NULL (1 and 0);
 * eps > 0. Output has the input's shape and may alias input. */
AI3_API ai3_status ai3_layernorm(const char *algorithm, const ai3_tensor *input,
                                 int normalized_ndim, const ai3_tensor *weight,
                                 const ai3_tensor *bias, double eps, ai3_tensor *output);

/* --- softmax along `dim` (negative counts from the end), computed stably
 * (the maximum subtracted first). Output has the input's shape and may alias
 * input. A 0-d input is a single element (dim 0 or -1). */
AI3_API ai3_status ai3_softmax(const char *algorithm, const ai3_tensor *input, int dim,
                               ai3_tensor *output);

/* ------------------------------------------------------------------------ */
/* Any operation through one interface: plans                                */
/* ------------------------------------------------------------------------ */

/* The parameters of each operation, as the typed functions above take them
 * (the conv2d and pooling structs are above). */
typedef struct ai3_no_params {
    char unused;
} ai3_no_params;
/* out_h or out_w 0 keeps that size of the input (None in PyTorch). */
typedef struct ai3_adaptiveavgpool2d_params {
    int64_t out_h, out_w;
} ai3_adaptiveavgpool2d_params;
typedef struct ai3_flatten_params {
    int start_dim, end_dim;
} ai3_flatten_params;
typedef struct ai3_batchnorm2d_params {
    double eps;
} ai3_batchnorm2d_params;
typedef struct ai3_cat_params {
    int dim;
} ai3_cat_params;
typedef struct ai3_hardtanh_params {
    double min_val, max_val;
} ai3_hardtanh_params;
typedef struct ai3_gelu_params {
    int tanh_approximation;
} ai3_gelu_params;
typedef struct ai3_mean_params {
    int n_dims; /* 0: every dimension */
    int dims[AI3_MAX_DIMS];
    int keepdim;
} ai3_mean_params;
typedef struct ai3_permute_params {
    int ndim;
    int perm[AI3_MAX_DIMS];
} ai3_permute_params;
typedef struct ai3_layernorm_params {
    int normalized_ndim;
    double eps;
} ai3_layernorm_params;
typedef struct ai3_softmax_params {
    int dim;
} ai3_softmax_params;

/* The parameters of any operation: the member named after it. */
typedef union ai3_op_params {
#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    params name;
#include "ai3_ops.inc"
#undef AI3_OP
} ai3_op_params;

/* A plan computes one operation with one algorithm, for any input the
 * operation accepts (plan once, run many, as the conv2d and linear plans
 * above, which it uses for those two operations):
 *
 *   weights   the operation's constant tensors, copied into the plan:
 *             conv2d and linear (weight, bias), batchnorm2d (running_mean,
 *             running_var, weight, bias), layernorm (weight, bias); a bias,
 *             a norm's weight and bias may be NULL. n_weights may be less
 *             than the operation has (the rest are NULL). Others: none.
 *   params    the operation's parameters (NULL for those without).
 *   hint      the expected input (may be NULL; only its shape is read), for
 *             the choice of "guess"/"default".
 *
 * ai3_plan_run computes on n_inputs tensors (two for add and mul, one or
 * more for cat, one for the others) into output, of the shape
 * ai3_plan_output_shape gives. `workspace` may be NULL (the plan then uses
 * its own) or ai3_plan_workspace_size bytes, 64-byte aligned. A plan is
 * immutable once made: several threads may run it at once. */
typedef struct ai3_plan ai3_plan;

AI3_API ai3_status ai3_plan_create(ai3_op op, const char *algorithm, int n_weights,
                                   const ai3_tensor *const *weights, const ai3_op_params *params,
                                   const ai3_tensor *hint, ai3_plan **plan);
AI3_API ai3_status ai3_plan_output_shape(const ai3_plan *plan, int n_inputs,
                                         const ai3_tensor *const *inputs, int *out_ndim,
                                         int64_t out_shape[AI3_MAX_DIMS]);
AI3_API ai3_status ai3_plan_workspace_size(const ai3_plan *plan, int n_inputs,
                                           const ai3_tensor *const *inputs, size_t *bytes);
AI3_API ai3_status ai3_plan_run(const ai3_plan *plan, int n_inputs,
                                const ai3_tensor *const *inputs, ai3_tensor *output,
                                void *workspace, size_t workspace_bytes);
AI3_API ai3_op ai3_plan_op(const ai3_plan *plan);

/* --- plans on CUDA devices -------------------------------------------------
 * A plan whose weights are on a CUDA device computes there (a plan without
 * weights computes on whichever device its inputs are). Its work goes to the
 * CUDA backend, a second shared library (libai3_cuda, beside libai3) loaded
 * on first use, which uses the cuDNN, cuBLAS and CUDA runtime libraries the
 * process has loaded or the loader finds; a program that never passes a
 * CUDA tensor needs neither them nor a GPU.
 *
 * Unlike host plans, a CUDA plan does not copy its weights: it reads them
 * in place on every run (so a plan stays valid while they are trained in
 * place), and they must outlive it. Inputs, output and weights must all be
 * on the plan's device (same device_index). ai3_plan_run on CUDA tensors
 * runs on the default stream; ai3_plan_run_stream takes the stream. Both
 * return as soon as the work is enqueued: the output is ready when the
 * stream reaches it. The workspace is device memory of at least
 * ai3_plan_workspace_size bytes, which must stay untouched until the
 * stream has done the work; NULL makes the plan take (and give back) its
 * own, stream-ordered. Errors a launch reports are returned; errors the GPU
 * meets later surface at the caller's next synchronisation. */
typedef struct ai3_plan_options {
    /* float32 conv2d and linear may compute with TF32 tensor cores (as
     * torch.backends.cudnn.allow_tf32 / torch.backends.cuda.matmul.allow_tf32);
     * 0 keeps full float32 precision. Ignored elsewhere. */
    int allow_tf32;
} ai3_plan_options;

/* ai3_plan_create with options (NULL: all zero). */
AI3_API ai3_status ai3_plan_create_with(ai3_op op, const char *algorithm, int n_weights,
                                        const ai3_tensor *const *weights,
                                        const ai3_op_params *params, const ai3_tensor *hint,
                                        const ai3_plan_options *options, ai3_plan **plan);
/* ai3_plan_run on `stream` (a cudaStream_t of the tensors' device; NULL:
 * the default stream). Host plans ignore it. */
AI3_API ai3_status ai3_plan_run_stream(const ai3_plan *plan, int n_inputs,
                                       const ai3_tensor *const *inputs, ai3_tensor *output,
                                       void *workspace, size_t workspace_bytes, void *stream);

/* AI3_OK when the CUDA backend is built and loads (it need not find a
 * GPU); otherwise AI3_ERROR_UNSUPPORTED with the reason as the message. */
AI3_API ai3_status ai3_cuda_available(void);
/* What the CUDA backend computes with, e.g. "CUDA runtime 13000, cuDNN
 * 91900, cuBLAS 130000, 1 device"; "" when it is not available. Valid
 * until the next call. */
AI3_API const char *ai3_cuda_describe(void);
/* The algorithm the plan runs ("default" and "guess" resolved); valid for
 * the plan's lifetime. */
AI3_API const char *ai3_plan_algorithm(const ai3_plan *plan);
AI3_API void ai3_plan_destroy(ai3_plan *plan);

/* ------------------------------------------------------------------------ */
/* Graphs: a whole network run by the C core                                 */
/* ------------------------------------------------------------------------ */

/* A graph is a whole network: inputs, constants and operation nodes, each
 * producing values identified by small integers (value ids, >= 0). It is
 * built once (weights copied and conv2d/linear plans made while building)
 * and then run with one call per forward pass:
 *
 *     ai3_graph *g;  int x, y, z;
 *     ai3_graph_create(AI3_FLOAT32, &g);
 *     ai3_graph_add_input(g, &x);
 *     const ai3_tensor *w[] = {&weight, &bias};
 *     ai3_graph_op(g, AI3_OP_CONV2D, "default", 1, &x, 2, w, &params, NULL, &y);
 *     ai3_graph_op(g, AI3_OP_RELU, "default", 1, &y, 0, NULL, NULL, NULL, &z);
 *     ai3_graph_set_outputs(g, 1, &z);
 *     ai3_graph_output_shapes(g, 1, &input, 1, &out_ndim, &out_shape);  (allocate)
 *     ai3_graph_run(g, 1, &input, 1, &output);
 *
 * Nodes may only use values defined before them, so the order of definition
 * is an order of execution; a value may feed any number of nodes (branches)
 * and a node may take several (joins).
 *
 * Shapes are not fixed when building: each run takes inputs of any shape
 * the network accepts. For each new combination of input shapes the graph
 * makes an execution plan: every value's shape (with the operations'
 * ai3_*_output_shape functions), and one memory arena in which each
 * intermediate tensor gets an offset, shared with tensors whose lifetimes
 * (from the node that writes it to the last node that reads it) do not
 * overlap. Reshape, flatten ("default" algorithm) and the like are views of
 * their input's buffer; elementwise operations, batchnorm2d, layernorm and
 * softmax write over their input when no later node reads it. A graph
 * output is written straight into the caller's output tensor. The last few
 * plans are cached, with the arena of the latest run.
 *
 * Building (ai3_graph_add_*, ai3_graph_<op>, ai3_graph_set_*) is not
 * thread-safe; ai3_graph_run, ai3_graph_output_shapes and
 * ai3_graph_peak_bytes may be called by several threads at once (a run that
 * finds the cached arena busy allocates its own).
 *
 * Errors: a bad value id, a weight of the wrong dtype or an unknown
 * algorithm fails when the node is added; an input the network cannot take
 * (wrong rank, channel count, dtype, too small a spatial size) fails the run
 * before anything is computed, with a message naming the node (its name as
 * given by ai3_graph_set_name, else its index) and the operation's own
 * message. */
typedef struct ai3_graph ai3_graph;

AI3_API ai3_status ai3_graph_create(ai3_dtype dtype, ai3_graph **graph);
AI3_API void ai3_graph_destroy(ai3_graph *graph);

/* --- graphs on a CUDA device -----------------------------------------------
 * ai3_graph_create_on(dtype, AI3_DEVICE_CUDA, index, &g) makes a graph that
 * computes on that GPU (float16 and bfloat16 too): constants and weights
 * (host tensors, or tensors on that device) are copied to device memory it
 * owns, intermediate tensors live in a device arena planned per input
 * shape, and inputs and outputs are device tensors. ai3_graph_run_stream
 * enqueues the whole run on `stream` (a cudaStream_t; NULL: the default
 * stream) and returns without waiting. The first run with an input shape
 * runs operation by operation; the next one is captured as a CUDA graph
 * (with buffers of the plan's own for the arena, inputs and outputs) and it
 * and every later run of that shape replay it: the inputs are copied in,
 * the graph launched, the outputs copied out. A run whose capture fails
 * falls back to running operation by operation, as do runs made while
 * another thread replays the same shape. ai3_graph_set_cuda_graphs(g, 0)
 * turns capture off. ai3_graph_create_on(dtype, AI3_DEVICE_CPU, 0, &g) is
 * ai3_graph_create. */
AI3_API ai3_status ai3_graph_create_on(ai3_dtype dtype, ai3_device device, int device_index,
                                       ai3_graph **graph);
AI3_API ai3_status ai3_graph_set_cuda_graphs(ai3_graph *graph, int enabled);
/* A float32 graph on the CPU keeps activations channel-blocked (NCHW16c
 * with AVX-512, NCHW8c with AVX2) between the operations that compute on
 * that layout: convolutions whose algorithm is "guess" (or "default") with
 * one group or depthwise, and the pooling and element-wise operations
 * between them; it converts at the inputs and outputs and around every
 * other operation, so results are those of plain NCHW. On by default (the
 * environment variable AI3_LAYOUT=plain turns it off for new graphs);
 * ai3_graph_set_blocked_layout(g, 0) turns it off, 1 on again. */
AI3_API ai3_status ai3_graph_set_blocked_layout(ai3_graph *graph, int enabled);
/* A graph on the CPU runs a large batch in slices of a few images, each
 * through the plan for that batch, where its early layers' inputs and
 * outputs would not stay in the cache the cores share: a layer's output is
 * then still in cache when the next reads it. It does so only when every
 * operation computes each image (index along dimension 0 of every input,
 * value and output) on its own, and when reading the weights once per slice
 * costs less than the activations' trips to memory saved; the results are
 * those of one run, up to rounding where an algorithm's summation order
 * depends on the batch. On by default; ai3_graph_set_batch_split(g, 0)
 * turns it off, 1 on again. ai3_graph_sub_batch says the slice size. */
AI3_API ai3_status ai3_graph_set_batch_split(ai3_graph *graph, int enabled);

/* A new input of the graph; inputs are numbered in the order added. */
AI3_API ai3_status ai3_graph_add_input(ai3_graph *graph, int *value);
/* A constant tensor (of the graph's dtype), copied. */
AI3_API ai3_status ai3_graph_add_constant(ai3_graph *graph, const ai3_tensor *tensor,
                                          int *value);
/* Names the node that produces `value` (or the input/constant) in messages;
 * copied, at most 63 bytes kept. */
AI3_API ai3_status ai3_graph_set_name(ai3_graph *graph, int value, const char *name);
/* The graph's outputs, in order (at least one; a value may appear twice). */
AI3_API ai3_status ai3_graph_set_outputs(ai3_graph *graph, int n_outputs, const int *values);
AI3_API int ai3_graph_num_inputs(const ai3_graph *graph);
AI3_API int ai3_graph_num_outputs(const ai3_graph *graph);

/* --- nodes: any operation, through a plan made now (see ai3_plan_create):
 * `inputs` are n_inputs value ids, `weights` are copied into the plan.
 * `hint` (may be NULL; its data is not read) is the expected input, for
 * "guess"/"default". Writes the id of the value produced into *output.
 * With "default", flatten is a view of its input (no copy). */
AI3_API ai3_status ai3_graph_op(ai3_graph *graph, ai3_op op, const char *algorithm, int n_inputs,
                                const int *inputs, int n_weights,
                                const ai3_tensor *const *weights, const ai3_op_params *params,
                                const ai3_tensor *hint, int *output);
/* The algorithm the node producing `value` runs ("guess" and "default"
 * resolved; a conv2d that the latest run computed on channel-blocked
 * values: "direct (NCHW16c)" or "direct (NCHW8c)"), or NULL if `value` is
 * not a node's; valid while the graph lives. */
AI3_API const char *ai3_graph_algorithm(const ai3_graph *graph, int value);
/* Swaps dimensions dim0 and dim1 (negative count from the end): a permute
 * whose rank is that of the input at run time. */
AI3_API ai3_status ai3_graph_transpose(ai3_graph *graph, const char *algorithm, int input,
                                       int dim0, int dim1, int *output);

/* One dimension of a reshape target: when `value` < 0, `size` (-1 for the
 * one dimension inferred from the element count); otherwise the size of
 * dimension `dim` (negative counts from the end) of graph value `value` in
 * the current run, e.g. {.value = x, .dim = 0} for x.size(0). */
typedef struct ai3_graph_dim {
    int value;
    int dim;
    int64_t size;
} ai3_graph_dim;

/* view/reshape of the input to `ndim` dimensions: a view, no copy. */
AI3_API ai3_status ai3_graph_reshape(ai3_graph *graph, int input, int ndim,
                                     const ai3_graph_dim *dims, int *output);
/* torch.chunk(input, chunks, dim): `chunks` values written to outputs[];
 * a run fails if torch would make fewer pieces for the input's size. */
AI3_API ai3_status ai3_graph_chunk(ai3_graph *graph, int input, int chunks, int dim,
                                   int *outputs);

/* --- running ------------------------------------------------------------- */

/* The output shapes for inputs of these shapes (their data is not read and
 * may be NULL): out_ndims[i], out_shapes[i] for each of n_outputs. */
AI3_API ai3_status ai3_graph_output_shapes(ai3_graph *graph, int n_inputs,
                                           const ai3_tensor *inputs, int n_outputs,
                                           int *out_ndims,
                                           int64_t (*out_shapes)[AI3_MAX_DIMS]);
/* Runs the graph: inputs (contiguous, the graph's dtype) in, outputs (the
 * shapes ai3_graph_output_shapes gives, caller-allocated) written. */
AI3_API ai3_status ai3_graph_run(ai3_graph *graph, int n_inputs, const ai3_tensor *inputs,
                                 int n_outputs, ai3_tensor *outputs);
/* ai3_graph_run on `stream` (graphs on a CUDA device; ignored on the CPU). */
AI3_API ai3_status ai3_graph_run_stream(ai3_graph *graph, int n_inputs,
                                        const ai3_tensor *inputs, int n_outputs,
                                        ai3_tensor *outputs, void *stream);
/* Memory of the plan for inputs of these shapes (data not read):
 * *peak_bytes, the arena holding every intermediate tensor with buffers
 * reused by lifetime (a 1×1 conv2d computed inside the depthwise conv2d
 * after it stores no output there); *total_bytes, the sum of the sizes of every
 * intermediate tensor (each node's result that is not a graph output), as
 * if none were reused or written in place; *workspace_bytes (may be NULL),
 * the scratch the operations need besides (conv2d workspaces). */
AI3_API ai3_status ai3_graph_peak_bytes(ai3_graph *graph, int n_inputs,
                                        const ai3_tensor *inputs, size_t *peak_bytes,
                                        size_t *total_bytes, size_t *workspace_bytes);
/* How the plan for inputs of these shapes lays its values out:
 * *blocked_nodes, the nodes that compute on channel-blocked values
 * (ai3_graph_set_blocked_layout), *conversions, the values it converts
 * between the blocked and the plain layout. */
AI3_API ai3_status ai3_graph_layout_counts(ai3_graph *graph, int n_inputs,
                                           const ai3_tensor *inputs, int *blocked_nodes,
                                           int *conversions);
/* *sub_batch: the images per slice a run on inputs of these shapes takes
 * (ai3_graph_set_batch_split); the whole batch where it does not split. */
AI3_API ai3_status ai3_graph_sub_batch(ai3_graph *graph, int n_inputs, const ai3_tensor *inputs,
                                       int64_t *sub_batch);

/* ------------------------------------------------------------------------ */
/* Algorithms: the registry                                                  */
/* ------------------------------------------------------------------------ */

/* The signature of an algorithm for each operation. The library validates
 * every argument and allocates nothing for the algorithm: it receives
 * contiguous tensors of one dtype on the device it was registered for
 * (a CUDA algorithm registered at run time gets device pointers through the
 * typed functions and plans without weights, and chooses its own stream;
 * plans with CUDA weights run ai3's built-in CUDA algorithms), 4-d for conv2d and the
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
/* relu, flatten, adaptiveavgpool2d (the output's shape says the size),
 * sigmoid, hardsigmoid, hardswish, silu; output may alias input except for
 * adaptiveavgpool2d. */
typedef ai3_status (*ai3_unary_fn)(const ai3_tensor *input, ai3_tensor *output);
/* batchnorm2d: input and output 4-d; weight and bias may be NULL. */
typedef ai3_status (*ai3_batchnorm2d_fn)(const ai3_tensor *input, const ai3_tensor *running_mean,
                                         const ai3_tensor *running_var, const ai3_tensor *weight,
                                         const ai3_tensor *bias, double eps, ai3_tensor *output);
/* add and mul: a, b and output arrive with one ndim (>= 1); each size of
 * a and b equals the output's or is 1. (The library may first merge
 * dimensions, which does not change the result.) Output may alias a or b. */
typedef ai3_status (*ai3_binary_fn)(const ai3_tensor *a, const ai3_tensor *b, ai3_tensor *output);
/* cat: dim in [0, ndim). */
typedef ai3_status (*ai3_cat_fn)(const ai3_tensor *const *inputs, int n_inputs, int dim,
                                 ai3_tensor *output);
typedef ai3_status (*ai3_hardtanh_fn)(const ai3_tensor *input, double min_val, double max_val,
                                      ai3_tensor *output);
typedef ai3_status (*ai3_gelu_fn)(const ai3_tensor *input, int tanh_approximation,
                                  ai3_tensor *output);
/* mean: input at least 1-d; dims sorted ascending, distinct, in
 * [0, input->ndim), n_dims >= 1; output arrives with the input's ndim
 * (reduced dimensions of size 1). The library may first merge dimensions. */
typedef ai3_status (*ai3_mean_fn)(const ai3_tensor *input, const int *dims, int n_dims,
                                  ai3_tensor *output);
/* permute: input at least 1-d, perm a permutation of [0, ndim). The
 * library may first merge dimensions. */
typedef ai3_status (*ai3_permute_fn)(const ai3_tensor *input, const int *perm,
                                     ai3_tensor *output);
/* layernorm: weight and bias may be NULL. */
typedef ai3_status (*ai3_layernorm_fn)(const ai3_tensor *input, int normalized_ndim,
                                       const ai3_tensor *weight, const ai3_tensor *bias,
                                       double eps, ai3_tensor *output);
/* softmax: input at least 1-d, dim in [0, ndim). */
typedef ai3_status (*ai3_softmax_fn)(const ai3_tensor *input, int dim, ai3_tensor *output);

/* Any of the above, cast; ai3_register_algorithm casts it back by op. */
typedef void (*ai3_algorithm_fn)(void);

/* Registers (or replaces a run-time registration of) the algorithm `name`
 * for `op` on `device`: tensors on that device go to `fn`, which must have
 * the op's signature (ai3_<kind>_fn, see ai3_ops.inc). The same name may
 * be registered for several devices. Built-in names cannot be replaced;
 * "default" is reserved. The name is copied (at most 63 bytes).
 * Thread-safe, also against operations running on other threads. */
AI3_API ai3_status ai3_register_algorithm(ai3_op op, const char *name, ai3_device device,
                                          ai3_algorithm_fn fn);

/* Removes a run-time registration (of every device). Plans made with it
 * keep the function: unload its library only after destroying them. */
AI3_API ai3_status ai3_unregister_algorithm(ai3_op op, const char *name);

/* Writes up to `capacity` names of the algorithms of `op` on `device`
 * (built-in first, then registered) into `names` and their total count
 * into `*count`. Built-in names are static; registered ones stay valid
 * until that registration is removed. */
AI3_API ai3_status ai3_list_algorithms(ai3_op op, ai3_device device, const char **names,
                                       int capacity, int *count);

/* The algorithm that "default" stands for, for `op`. */
AI3_API const char *ai3_default_algorithm(ai3_op op);

/* For algorithms: set the calling thread's error message, printf-style, and
 * return `status`. */
AI3_API ai3_status ai3_set_error(ai3_status status, const char *fmt, ...)
    AI3_PRINTF_FORMAT(2, 3);

/* --- plugins: shared libraries of algorithms ------------------------------
 * A plugin exports
 *
 *     AI3_PLUGIN_EXPORT ai3_status ai3_init_algorithms(int abi_version);
 *
 * which registers its algorithms with ai3_register_algorithm. The library
 * passes its AI3_ABI_VERSION; a plugin built against another returns
 * AI3_ERROR_UNSUPPORTED (ai3_plugin_check_abi does this, with a message)
 * instead of calling functions whose layout changed. Registration is
 * thread-safe; a loaded plugin stays loaded for the process's lifetime. */
#define AI3_INIT_SYMBOL "ai3_init_algorithms"

/* For plugins: AI3_OK when `abi_version` (what ai3_init_algorithms was
 * passed) is the AI3_ABI_VERSION this plugin was compiled with; else
 * AI3_ERROR_UNSUPPORTED with the message set. */
static inline ai3_status ai3_plugin_check_abi(int abi_version) {
    if (abi_version == AI3_ABI_VERSION) return AI3_OK;
    return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                         "the plugin was built for ai3 ABI %d but this library has ABI %d; "
                         "rebuild it against this ai3.h", AI3_ABI_VERSION, abi_version);
}

/* Opens the shared library at `path` and calls its ai3_init_algorithms
 * with AI3_ABI_VERSION. */
AI3_API ai3_status ai3_load_algorithms(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* AI3_H */
