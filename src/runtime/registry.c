/*
 * The algorithm registry: (operation, name) -> implementation.
 * Built-in algorithms are a static table with a float and a double entry;
 * algorithms registered at run time are one function for both dtypes (they
 * read the dtype from the tensors).
 */
#define _GNU_SOURCE /* dladdr */
#include "algorithms/algorithms.h"
#include "algorithms/conv2d.h"
#include "algorithms/linear.h"
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    ai3_op op;
    const char *name;
    ai3_algorithm_fn f32, f64;     /* operations without plans */
    const void *planned32, *planned64; /* conv2d and linear: an ai3_<op>_algorithm */
} builtin_t;

#define BUILTIN(op, name, fn) {op, name, (ai3_algorithm_fn)fn##_f32, (ai3_algorithm_fn)fn##_f64, NULL, NULL}
#define CONV2D(name, impl) {AI3_OP_CONV2D, name, NULL, NULL, &impl##_f32, &impl##_f64}
#define LINEAR(name, impl) {AI3_OP_LINEAR, name, NULL, NULL, &impl##_f32, &impl##_f64}

/* To add an algorithm, add its line here (the first of an op is not
 * necessarily its default: see default_names). */
static const builtin_t builtins[] = {
    CONV2D("direct", ai3_conv2d_direct),
    CONV2D("smm", ai3_conv2d_smm),
    CONV2D("gemm", ai3_conv2d_gemm),
    CONV2D("implicit gemm", ai3_conv2d_implicit_gemm),
    CONV2D("implicit precomp gemm", ai3_conv2d_implicit_precomp_gemm),
    CONV2D("winograd", ai3_conv2d_winograd),
    /* resolved by plans into one of the above (ops/conv2d_guess.c) */
    {AI3_OP_CONV2D, "guess", NULL, NULL, NULL, NULL},
    LINEAR("gemm", ai3_linear_gemm),
    BUILTIN(AI3_OP_MAXPOOL2D, "direct", ai3_maxpool2d_direct),
    BUILTIN(AI3_OP_AVGPOOL2D, "direct", ai3_avgpool2d_direct),
    BUILTIN(AI3_OP_ADAPTIVEAVGPOOL2D, "direct", ai3_adaptiveavgpool2d_direct),
    BUILTIN(AI3_OP_RELU, "direct", ai3_relu_direct),
    BUILTIN(AI3_OP_FLATTEN, "direct", ai3_flatten_direct),
    BUILTIN(AI3_OP_BATCHNORM2D, "direct", ai3_batchnorm2d_direct),
    BUILTIN(AI3_OP_ADD, "direct", ai3_add_direct),
    BUILTIN(AI3_OP_MUL, "direct", ai3_mul_direct),
    BUILTIN(AI3_OP_CAT, "direct", ai3_cat_direct),
    BUILTIN(AI3_OP_HARDTANH, "direct", ai3_hardtanh_direct),
    BUILTIN(AI3_OP_SIGMOID, "direct", ai3_sigmoid_direct),
    BUILTIN(AI3_OP_HARDSIGMOID, "direct", ai3_hardsigmoid_direct),
    BUILTIN(AI3_OP_HARDSWISH, "direct", ai3_hardswish_direct),
    BUILTIN(AI3_OP_SILU, "direct", ai3_silu_direct),
    BUILTIN(AI3_OP_GELU, "direct", ai3_gelu_direct),
    BUILTIN(AI3_OP_MEAN, "direct", ai3_mean_direct),
    BUILTIN(AI3_OP_PERMUTE, "direct", ai3_permute_direct),
    BUILTIN(AI3_OP_LAYERNORM, "direct", ai3_layernorm_direct),
    BUILTIN(AI3_OP_SOFTMAX, "direct", ai3_softmax_direct),
};
#define N_BUILTINS (int)(sizeof builtins / sizeof builtins[0])

static const char *const default_names[AI3_OP_COUNT] = {
    [AI3_OP_CONV2D] = "guess",
    [AI3_OP_LINEAR] = "gemm",
    [AI3_OP_MAXPOOL2D] = "direct",
    [AI3_OP_AVGPOOL2D] = "direct",
    [AI3_OP_ADAPTIVEAVGPOOL2D] = "direct",
    [AI3_OP_RELU] = "direct",
    [AI3_OP_FLATTEN] = "direct",
    [AI3_OP_BATCHNORM2D] = "direct",
    [AI3_OP_ADD] = "direct",
    [AI3_OP_MUL] = "direct",
    [AI3_OP_CAT] = "direct",
    [AI3_OP_HARDTANH] = "direct",
    [AI3_OP_SIGMOID] = "direct",
    [AI3_OP_HARDSIGMOID] = "direct",
    [AI3_OP_HARDSWISH] = "direct",
    [AI3_OP_SILU] = "direct",
    [AI3_OP_GELU] = "direct",
    [AI3_OP_MEAN] = "direct",
    [AI3_OP_PERMUTE] = "direct",
    [AI3_OP_LAYERNORM] = "direct",
    [AI3_OP_SOFTMAX] = "direct",
};

static const char *const op_names[AI3_OP_COUNT] = {
    [AI3_OP_CONV2D] = "conv2d",
    [AI3_OP_LINEAR] = "linear",
    [AI3_OP_MAXPOOL2D] = "maxpool2d",
    [AI3_OP_AVGPOOL2D] = "avgpool2d",
    [AI3_OP_ADAPTIVEAVGPOOL2D] = "adaptiveavgpool2d",
    [AI3_OP_RELU] = "relu",
    [AI3_OP_FLATTEN] = "flatten",
    [AI3_OP_BATCHNORM2D] = "batchnorm2d",
    [AI3_OP_ADD] = "add",
    [AI3_OP_MUL] = "mul",
    [AI3_OP_CAT] = "cat",
    [AI3_OP_HARDTANH] = "hardtanh",
    [AI3_OP_SIGMOID] = "sigmoid",
    [AI3_OP_HARDSIGMOID] = "hardsigmoid",
    [AI3_OP_HARDSWISH] = "hardswish",
    [AI3_OP_SILU] = "silu",
    [AI3_OP_GELU] = "gelu",
    [AI3_OP_MEAN] = "mean",
    [AI3_OP_PERMUTE] = "permute",
    [AI3_OP_LAYERNORM] = "layernorm",
    [AI3_OP_SOFTMAX] = "softmax",
};

#define MAX_REGISTERED 128
#define MAX_NAME 64

typedef struct {
    int used;
    ai3_op op;
    char name[MAX_NAME];
    ai3_algorithm_fn fn;
} registered_t;

static registered_t registered[MAX_REGISTERED];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

const char *ai3_op_name(ai3_op op) {
    return (unsigned)op < AI3_OP_COUNT ? op_names[op] : NULL;
}

const char *ai3_default_algorithm(ai3_op op) {
    return (unsigned)op < AI3_OP_COUNT ? default_names[op] : NULL;
}

static const builtin_t *find_builtin(ai3_op op, const char *name) {
    for (int i = 0; i < N_BUILTINS; i++)
        if (builtins[i].op == op && strcmp(builtins[i].name, name) == 0) return &builtins[i];
    return NULL;
}

/* Called with registry_lock held. */
static registered_t *find_registered(ai3_op op, const char *name) {
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i].used && registered[i].op == op && strcmp(registered[i].name, name) == 0)
            return &registered[i];
    return NULL;
}

static ai3_status check_op(ai3_op op) {
    if ((unsigned)op >= AI3_OP_COUNT)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "unknown operation %d", (int)op);
    return AI3_OK;
}

ai3_status ai3_register_algorithm(ai3_op op, const char *name, ai3_algorithm_fn fn) {
    if (check_op(op) != AI3_OK) return AI3_ERROR_INVALID_ARGUMENT;
    if (!name || !fn)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "algorithm name and function are required");
    size_t len = strlen(name);
    if (len == 0 || len >= MAX_NAME)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "algorithm names must have 1 to %d bytes, got %zu", MAX_NAME - 1, len);
    if (strcmp(name, "default") == 0 || find_builtin(op, name))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "'%s' is a built-in %s algorithm name and cannot be replaced", name,
                             op_names[op]);
    ai3_status status = AI3_OK;
    pthread_mutex_lock(&registry_lock);
    registered_t *slot = find_registered(op, name);
    for (int i = 0; !slot && i < MAX_REGISTERED; i++)
        if (!registered[i].used) slot = &registered[i];
    if (slot) {
        slot->used = 1;
        slot->op = op;
        memcpy(slot->name, name, len + 1);
        slot->fn = fn;
    } else {
        status = ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "at most %d algorithms can be registered",
                               MAX_REGISTERED);
    }
    pthread_mutex_unlock(&registry_lock);
    return status;
}

ai3_status ai3_unregister_algorithm(ai3_op op, const char *name) {
    if (check_op(op) != AI3_OK) return AI3_ERROR_INVALID_ARGUMENT;
    if (!name) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "algorithm name is NULL");
    pthread_mutex_lock(&registry_lock);
    registered_t *slot = find_registered(op, name);
    if (slot) slot->used = 0;
    pthread_mutex_unlock(&registry_lock);
    if (!slot)
        return ai3_set_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                             "no %s algorithm named '%s' was registered at run time", op_names[op],
                             name);
    return AI3_OK;
}

ai3_status ai3_list_algorithms(ai3_op op, const char **names, int capacity, int *count) {
    if (check_op(op) != AI3_OK) return AI3_ERROR_INVALID_ARGUMENT;
    if (!count || (capacity > 0 && !names))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "names and count must not be NULL");
    int n = 0;
    for (int i = 0; i < N_BUILTINS; i++)
        if (builtins[i].op == op) {
            if (n < capacity) names[n] = builtins[i].name;
            n++;
        }
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i].used && registered[i].op == op) {
            if (n < capacity) names[n] = registered[i].name;
            n++;
        }
    pthread_mutex_unlock(&registry_lock);
    *count = n;
    return AI3_OK;
}

/* "a, b, c" of the algorithms of op, for error messages. */
static void known_names(ai3_op op, char *buf, size_t size) {
    const char *names[64];
    int count = 0;
    ai3_list_algorithms(op, names, 64, &count);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < count && i < 64 && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "", names[i]);
}

/* Finds `name` (already resolved from "default") among the built-ins and
 * the run-time registrations of op; sets the error when there is none. */
static ai3_status lookup(ai3_op op, const char *name, const builtin_t **builtin,
                         ai3_algorithm_fn *registered_fn) {
    *builtin = find_builtin(op, name);
    *registered_fn = NULL;
    if (*builtin) return AI3_OK;
    pthread_mutex_lock(&registry_lock);
    registered_t *r = find_registered(op, name);
    *registered_fn = r ? r->fn : NULL;
    pthread_mutex_unlock(&registry_lock);
    if (*registered_fn) return AI3_OK;
    char known[512];
    known_names(op, known, sizeof known);
    return ai3_set_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                         "%s: unknown algorithm '%s'; known: 'default', %s%s", op_names[op], name,
                         known,
                         strcmp(name, "custom") == 0
                             ? " (a 'custom' algorithm must be registered first, e.g. with "
                               "ai3_load_algorithms)"
                             : "");
}

ai3_status ai3_lookup_algorithm(ai3_op op, const char *name, ai3_dtype dtype,
                                ai3_algorithm_fn *fn) {
    if (!name)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: algorithm name is NULL",
                             op_names[op]);
    if (strcmp(name, "default") == 0) name = default_names[op];
    const builtin_t *b;
    ai3_status s = lookup(op, name, &b, fn);
    if (s == AI3_OK && b) *fn = dtype == AI3_FLOAT64 ? b->f64 : b->f32;
    return s;
}

/* A planned operation's built-in (*impl) or run-time (*registered) algorithm. */
static ai3_status lookup_planned(ai3_op op, const char *name, ai3_dtype dtype, const void **impl,
                                 ai3_algorithm_fn *registered) {
    const builtin_t *b;
    ai3_status s = lookup(op, name, &b, registered);
    *impl = b ? (dtype == AI3_FLOAT64 ? b->planned64 : b->planned32) : NULL;
    if (s == AI3_OK && b && !*impl)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: '%s' is not an algorithm itself",
                             op_names[op], name);
    return s;
}

ai3_status ai3_lookup_conv2d(const char *name, ai3_dtype dtype, const ai3_conv2d_algorithm **impl,
                             ai3_conv2d_fn *registered) {
    const void *found;
    ai3_algorithm_fn fn;
    ai3_status s = lookup_planned(AI3_OP_CONV2D, name, dtype, &found, &fn);
    *impl = found;
    *registered = (ai3_conv2d_fn)fn;
    return s;
}

ai3_status ai3_lookup_linear(const char *name, ai3_dtype dtype, const ai3_linear_algorithm **impl,
                             ai3_linear_fn *registered) {
    if (!name) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "linear: algorithm name is NULL");
    if (strcmp(name, "default") == 0) name = default_names[AI3_OP_LINEAR];
    const void *found;
    ai3_algorithm_fn fn;
    ai3_status s = lookup_planned(AI3_OP_LINEAR, name, dtype, &found, &fn);
    *impl = found;
    *registered = (ai3_linear_fn)fn;
    return s;
}

ai3_status ai3_load_algorithms(const char *path) {
    if (!path) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "library path is NULL");
    /* Make this library's symbols visible to the one being loaded, so it
     * may call ai3_register_algorithm without linking with -lai3. */
    Dl_info self;
    if (dladdr((void *)ai3_load_algorithms, &self) && self.dli_fname)
        dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "could not load '%s': %s", path,
                             dlerror());
    ai3_status (*init)(void) = (ai3_status(*)(void))dlsym(handle, AI3_INIT_SYMBOL);
    if (!init) {
        dlclose(handle);
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "'%s' has no function %s", path,
                             AI3_INIT_SYMBOL);
    }
    ai3_status status = init();
    if (status != AI3_OK) {
        const char *why = ai3_last_error();
        if (!why[0]) ai3_set_error(status, "%s of '%s' failed", AI3_INIT_SYMBOL, path);
        return status;
    }
    return AI3_OK; /* the library stays loaded: its functions are registered */
}
