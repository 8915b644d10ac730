/* Internal helpers shared by ops/, algorithms/ and ref/. Not installed. */
#ifndef AI3_INTERNAL_H
#define AI3_INTERNAL_H

#include "ai3.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* AI3_MULTIVERSION(name, T1, p1, ...) { body }: a hot function compiled for
 * AVX-512, AVX2+FMA and baseline x86-64, the variant of ai3_cpu_isa() chosen
 * on every call. Elsewhere compiled once. */
#include "multiversion.h"

#define AI3_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AI3_MAX(a, b) ((a) > (b) ? (a) : (b))

/* --- sizes ------------------------------------------------------------------
 * Every size the library computes with (elements of a tensor, a padded
 * input, a workspace) is at most AI3_MAX_ELEMENTS, so that sums, products
 * with small factors and byte counts of such sizes cannot overflow int64_t
 * or size_t. Larger requests are refused before anything is computed: no
 * machine has that much memory. ai3_check_tensor bounds every tensor's
 * non-zero sizes so; operations bound their parameters and the sizes they
 * derive with ai3_size_mul. */
#define AI3_MAX_ELEMENTS ((int64_t)1 << 56)

/* a · b for sizes a, b >= 0; -1 if either is negative or the product is
 * above AI3_MAX_ELEMENTS (so -1 propagates through a chain of products). */
static inline int64_t ai3_size_mul(int64_t a, int64_t b) {
    if (a < 0 || b < 0 || (a && b > AI3_MAX_ELEMENTS / a)) return -1;
    return a * b;
}

/* --- memory: 64-byte aligned, NULL on failure (sets the error message). --- */
void *ai3_alloc(size_t bytes);
void ai3_free(void *p);

/* --- per-thread scratch ------------------------------------------------------
 * A buffer of the calling thread's own, at least `bytes`, 64-byte aligned,
 * kept from call to call (a fresh large allocation costs page faults every
 * time; its contents are not kept when it grows) and freed when the thread
 * exits. One per use, so that a user holding its buffer may call another
 * (a convolution's prepared input stays while its GEMM packs). NULL (error
 * set) if it cannot be had. */
typedef enum ai3_thread_buffer_use {
    AI3_BUFFER_GEMM_F32,     /* the GEMM engine's packed blocks */
    AI3_BUFFER_GEMM_F64,
    AI3_BUFFER_GEMM_BF16,
    AI3_BUFFER_BLOCKED_CONV, /* blocked conv2d's padded input */
    AI3_BUFFER_EXPAND_BAND,  /* a 1×1's band of output inside a depthwise conv2d, per task */
    AI3_BUFFER_WINOGRAD,     /* blocked Winograd's transformed tiles, per task */
    AI3_BUFFER_IM2COL,       /* conv2d gemm's band of the unrolled input, per task */
    AI3_BUFFER_GATHERED_TILE, /* conv2d implicit precomp gemm's tile of B, per task */
    AI3_THREAD_BUFFERS
} ai3_thread_buffer_use;
void *ai3_thread_buffer(ai3_thread_buffer_use use, size_t bytes);

/* --- threads --------------------------------------------------------------
 * Calls fn(ctx, begin, end) on disjoint sub-ranges covering [0, n), spread
 * over the installed executor (ai3_set_parallel_executor) or else the own
 * pool; returns when all are done. Nested calls (from inside fn), and calls
 * made while another thread uses the own pool, run serially on the calling
 * thread. `grain` is the smallest useful sub-range (>= 1). */
typedef void (*ai3_range_fn)(void *ctx, int64_t begin, int64_t end);
void ai3_parallel_for(int64_t n, int64_t grain, ai3_range_fn fn, void *ctx);

/* --- CPU features (runtime/cpu.c) ---------------------------------------
 * The instruction set the SIMD micro-kernels use. The best one the CPU (and
 * OS) supports is found from CPUID once; the environment variable
 * AI3_ISA=generic|avx2|avx512, read once, lowers it (asking for an ISA the
 * CPU lacks gives the best it has; an unknown value is ignored). */
typedef enum ai3_isa { AI3_ISA_GENERIC = 0, AI3_ISA_AVX2 = 1, AI3_ISA_AVX512 = 2 } ai3_isa;

ai3_isa ai3_cpu_best_isa(void); /* what the CPU supports */
ai3_isa ai3_cpu_isa(void);      /* the active ISA */
/* The L2 cache of a core, in bytes (1 MiB if the system does not say). */
int64_t ai3_cpu_l2_bytes(void);
/* Forces the active ISA (tests, benchmarks), clamped to ai3_cpu_best_isa();
 * returns the ISA now active. Not meant to race with running operations. */
ai3_isa ai3_cpu_set_isa(ai3_isa isa);
const char *ai3_isa_name(ai3_isa isa); /* "generic", "avx2", "avx512" */

/* --- fused epilogues ---------------------------------------------------
 * What a graph fuses into the conv2d or linear whose output it reads:
 * output = act(output + residual), applied by the algorithm to each output
 * tile as soon as the tile is final (in cache), or else in a pass of its own
 * after the algorithm (algorithms/epilogue.c). */
typedef enum ai3_activation {
    AI3_ACT_NONE = 0,
    AI3_ACT_CLAMP, /* to [lo, hi]: relu, hardtanh */
    AI3_ACT_SIGMOID,
    AI3_ACT_HARDSIGMOID,
    AI3_ACT_HARDSWISH,
    AI3_ACT_SILU,
    AI3_ACT_GELU,     /* exact: x/2 · (1 + erf(x/√2)) */
    AI3_ACT_GELU_TANH /* gelu's tanh approximation */
} ai3_activation;

typedef struct ai3_epilogue {
    ai3_activation act;
    double lo, hi; /* AI3_ACT_CLAMP's bounds */
    /* NULL, or memory of the output's dtype and layout (never the output's
     * own) added to the output before the activation. */
    const void *residual;
} ai3_epilogue;

/* The epilogue over a whole host output of n elements, in a pass over
 * memory (for algorithms that do not apply it tile by tile). */
void ai3_epilogue_pass_f32(float *y, int64_t n, const ai3_epilogue *e);
void ai3_epilogue_pass_f64(double *y, int64_t n, const ai3_epilogue *e);
static inline void ai3_epilogue_pass(ai3_tensor *output, const ai3_epilogue *e) {
    int64_t n = ai3_tensor_numel(output);
    if (output->dtype == AI3_FLOAT64) ai3_epilogue_pass_f64(output->data, n, e);
    else ai3_epilogue_pass_f32(output->data, n, e);
}

/* --- conv2d helpers ---------------------------------------------------- */

/* Resolved sizes of a validated conv2d call (input viewed as 4-d). */
typedef struct ai3_conv2d_dims {
    int64_t n, c_in, h, w;      /* input */
    int64_t c_out, kh, kw;      /* weight: (c_out, c_in / groups, kh, kw) */
    int64_t oh, ow;             /* output */
    int64_t groups, c_in_g, c_out_g; /* channels per group */
    int64_t hp, wp;             /* padded input: h + top + bottom, w + left + right */
    /* The run's epilogue (fused by graphs), or NULL: algorithms whose
     * struct says `fuses_epilogue` apply it, others get a pass after them. */
    const ai3_epilogue *epilogue;
} ai3_conv2d_dims;

void ai3_conv2d_get_dims(const ai3_tensor *input, const ai3_tensor *weight,
                         const ai3_conv2d_params *p, ai3_conv2d_dims *d);

/* Source index of padded coordinate i (0 <= i < size + before + after) of an
 * axis of length `size`, under `mode`; -1 means "zero" (zeros mode only). */
int64_t ai3_pad_source_index(int64_t i, int64_t size, int64_t before, ai3_padding_mode mode);

/* Writes the padded input (n, c_in, hp, wp) for the conv2d call into `dst`
 * (element size `elem`), filling the border according to the padding mode. */
void ai3_conv2d_pad_input(const ai3_tensor *input, const ai3_conv2d_params *p,
                          const ai3_conv2d_dims *d, void *dst);

/* --- registry (runtime/registry.c) -------------------------------------- */

/* Finds the implementation of `name` ("default" resolved) for `op` on the
 * device and dtype of `like`; AI3_ERROR_UNKNOWN_ALGORITHM (message set) if
 * there is none, AI3_ERROR_UNSUPPORTED if only other devices have it. */
ai3_status ai3_lookup_algorithm(ai3_op op, const char *name, const ai3_tensor *like,
                                ai3_algorithm_fn *fn);
const char *ai3_device_name(ai3_device device); /* "cpu", "cuda" */
/* AI3_OK when some device has algorithm `name` ("default" included) for op. */
ai3_status ai3_check_algorithm_name(ai3_op op, const char *name);
/* Whether `name` was registered at run time for op on device. */
bool ai3_is_registered(ai3_op op, const char *name, ai3_device device);
/* Columns of ai3_ops.inc: tensors computed on (-1: one or more) and
 * weights a plan keeps. */
int ai3_op_num_inputs(ai3_op op);
int ai3_op_num_weights(ai3_op op);
/* Whether the op's output may be its input's memory (ops/op.h). */
bool ai3_op_in_place(ai3_op op);
/* AI3_OK for a CPU tensor; otherwise the lookup's error for `name` on the
 * tensor's device, or AI3_ERROR_UNSUPPORTED (plans hold host copies). */
ai3_status ai3_require_cpu(ai3_op op, const char *name, const ai3_tensor *t);

/* Shared checks, each setting the error message on failure. The output
 * must have `like`'s dtype and device; same_dtype also checks the device. */
ai3_status ai3_check_tensor(const ai3_tensor *t, const char *what, const char *op);
ai3_status ai3_check_same_dtype(const ai3_tensor *a, const ai3_tensor *b, const char *op);
ai3_status ai3_check_output(const ai3_tensor *out, const ai3_tensor *like, int ndim,
                            const int64_t *shape, const char *op);

size_t ai3_dtype_size(ai3_dtype dtype);
const char *ai3_dtype_name(ai3_dtype dtype); /* "float32", ... */
/* "cpu" or "cuda:<index>" into buf. */
void ai3_device_label(ai3_device device, int index, char *buf, size_t size);

/* A non-NULL data pointer for shape-only tensor views: the shape functions
 * check that data is present but never read it. */
extern char ai3_shape_only[1];

/* *dst = src with its data copied into fresh 64-byte aligned memory (host
 * tensors); AI3_ERROR_OUT_OF_MEMORY with the message set on failure. */
ai3_status ai3_tensor_copy(const ai3_tensor *src, ai3_tensor *dst);

/* A 3-d (C, H, W) tensor viewed as (1, C, H, W); a 4-d one unchanged. */
ai3_tensor ai3_batched_4d(const ai3_tensor *t);

#endif
