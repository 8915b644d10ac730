/*
 * The algorithm registry: (operation, name, device) -> implementation.
 * Built-in algorithms are a static table generated from
 * algorithms/algorithms.inc, with a float and a double entry each (and
 * for some planned ones a bfloat16 entry, in a table of their own);
 * algorithms registered at run time are one function for both dtypes (they
 * read the dtype from the tensors).
 */
#define _GNU_SOURCE /* dladdr */
#include "algorithms/algorithms.h"
#include "algorithms/conv2d.h"
#include "algorithms/linear.h"
#include "internal.h"
#include "cuda_backend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    ai3_op op;
    const char *name;
    ai3_device device;
    ai3_algorithm_fn f32, f64;         /* operations without plans */
    const void *planned32, *planned64; /* conv2d and linear: an ai3_<op>_algorithm */
} builtin_t;

static const builtin_t builtins[] = {
#define AI3_ALGORITHM(OP, name, symbol, device)                                                \
    {AI3_OP_##OP, name, AI3_DEVICE_##device, (ai3_algorithm_fn)symbol##_f32,               \
     (ai3_algorithm_fn)symbol##_f64, NULL, NULL},
#define AI3_PLANNED(OP, name, symbol, device) \
    {AI3_OP_##OP, name, AI3_DEVICE_##device, NULL, NULL, &symbol##_f32, &symbol##_f64},
#define AI3_CHOOSER(OP, name, device) {AI3_OP_##OP, name, AI3_DEVICE_##device, NULL, NULL, NULL, NULL},
#define AI3_BF16(OP, name, symbol, device)
#include "algorithms/algorithms.inc"
#undef AI3_ALGORITHM
#undef AI3_PLANNED
#undef AI3_CHOOSER
#undef AI3_BF16
};
#define N_BUILTINS (int)(sizeof builtins / sizeof builtins[0])

/* The bfloat16 versions of planned algorithms. */
static const struct {
    ai3_op op;
    const char *name;
    ai3_device device;
    const void *planned;
} bf16_builtins[] = {
#define AI3_ALGORITHM(OP, name, symbol, device)
#define AI3_PLANNED(OP, name, symbol, device)
#define AI3_CHOOSER(OP, name, device)
#define AI3_BF16(OP, name, symbol, device) {AI3_OP_##OP, name, AI3_DEVICE_##device, &symbol},
#include "algorithms/algorithms.inc"
#undef AI3_ALGORITHM
#undef AI3_PLANNED
#undef AI3_CHOOSER
#undef AI3_BF16
};
#define N_BF16_BUILTINS (int)(sizeof bf16_builtins / sizeof bf16_builtins[0])

static bool is_cpu_bf16(const ai3_tensor *t) {
    return t->device == AI3_DEVICE_CPU && t->dtype == AI3_BFLOAT16;
}

/* Each operation's name and default algorithm (ai3_ops.inc). */
static const struct {
    const char *name, *default_algorithm;
} ops[AI3_OP_COUNT] = {
#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    {#name, default_algorithm},
#include "ai3_ops.inc"
#undef AI3_OP
};

static const char *const device_names[] = {[AI3_DEVICE_CPU] = "cpu", [AI3_DEVICE_CUDA] = "cuda"};
#define N_DEVICES (int)(sizeof device_names / sizeof device_names[0])

#define MAX_REGISTERED 128
#define MAX_NAME 64

typedef struct {
    int used;
    ai3_op op;
    ai3_device device;
    char name[MAX_NAME];
    ai3_algorithm_fn fn;
} registered_t;

static registered_t registered[MAX_REGISTERED];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

int ai3_version(void) { return AI3_VERSION; }
int ai3_abi_version(void) { return AI3_ABI_VERSION; }

const char *ai3_op_name(ai3_op op) {
    return (unsigned)op < AI3_OP_COUNT ? ops[op].name : NULL;
}

const char *ai3_default_algorithm(ai3_op op) {
    return (unsigned)op < AI3_OP_COUNT ? ops[op].default_algorithm : NULL;
}

const char *ai3_device_name(ai3_device device) {
    return (unsigned)device < (unsigned)N_DEVICES ? device_names[device] : "unknown device";
}

static const builtin_t *find_builtin(ai3_op op, const char *name, ai3_device device) {
    for (int i = 0; i < N_BUILTINS; i++)
        if (builtins[i].op == op && builtins[i].device == device &&
            strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}

/* Called with registry_lock held. */
static registered_t *find_registered(ai3_op op, const char *name, ai3_device device) {
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i].used && registered[i].op == op && registered[i].device == device &&
            strcmp(registered[i].name, name) == 0)
            return &registered[i];
    return NULL;
}

bool ai3_is_registered(ai3_op op, const char *name, ai3_device device) {
    pthread_mutex_lock(&registry_lock);
    bool found = find_registered(op, name, device) != NULL;
    pthread_mutex_unlock(&registry_lock);
    return found;
}

static ai3_status check_op(ai3_op op) {
    if ((unsigned)op >= AI3_OP_COUNT)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "unknown operation %d", (int)op);
    return AI3_OK;
}

static ai3_status check_device(ai3_device device) {
    if ((unsigned)device >= (unsigned)N_DEVICES)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "unknown device code %d", (int)device);
    return AI3_OK;
}

ai3_status ai3_register_algorithm(ai3_op op, const char *name, ai3_device device,
                                  ai3_algorithm_fn fn) {
    if (check_op(op) != AI3_OK || check_device(device) != AI3_OK)
        return AI3_ERROR_INVALID_ARGUMENT;
    if (!name || !fn)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "algorithm name and function are required");
    size_t len = strlen(name);
    if (len == 0 || len >= MAX_NAME)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "algorithm names must have 1 to %d bytes, got %zu", MAX_NAME - 1, len);
    if (strcmp(name, "default") == 0 || find_builtin(op, name, device))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "'%s' is a built-in %s algorithm name and cannot be replaced", name,
                             ops[op].name);
    ai3_status status = AI3_OK;
    pthread_mutex_lock(&registry_lock);
    registered_t *slot = find_registered(op, name, device);
    for (int i = 0; !slot && i < MAX_REGISTERED; i++)
        if (!registered[i].used) slot = &registered[i];
    if (slot) {
        slot->used = 1;
        slot->op = op;
        slot->device = device;
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
    int found = 0;
    pthread_mutex_lock(&registry_lock);
    for (int d = 0; d < N_DEVICES; d++) {
        registered_t *slot = find_registered(op, name, (ai3_device)d);
        if (slot) slot->used = 0, found = 1;
    }
    pthread_mutex_unlock(&registry_lock);
    if (!found)
        return ai3_set_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                             "no %s algorithm named '%s' was registered at run time", ops[op].name,
                             name);
    return AI3_OK;
}

ai3_status ai3_list_algorithms(ai3_op op, ai3_device device, const char **names, int capacity,
                               int *count) {
    if (check_op(op) != AI3_OK || check_device(device) != AI3_OK)
        return AI3_ERROR_INVALID_ARGUMENT;
    if (!count || (capacity > 0 && !names))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "names and count must not be NULL");
    int n = 0;
    if (device == AI3_DEVICE_CUDA) { /* the CUDA backend's, when this machine can load it */
        const ai3_cuda_backend *cuda = ai3_cuda_backend_get();
        if (cuda) n = cuda->list_algorithms(op, names, capacity);
    }
    for (int i = 0; i < N_BUILTINS; i++)
        if (builtins[i].op == op && builtins[i].device == device) {
            if (n < capacity) names[n] = builtins[i].name;
            n++;
        }
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < MAX_REGISTERED; i++)
        if (registered[i].used && registered[i].op == op && registered[i].device == device) {
            if (n < capacity) names[n] = registered[i].name;
            n++;
        }
    pthread_mutex_unlock(&registry_lock);
    *count = n;
    return AI3_OK;
}

/* "'a', 'b', 'c'" of the algorithms of op on device, for error messages. */
static void known_names(ai3_op op, ai3_device device, char *buf, size_t size) {
    const char *names[64];
    int count = 0;
    ai3_list_algorithms(op, device, names, 64, &count);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < count && i < 64 && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "", names[i]);
}

/* The error for `name` missing on `device`: which devices have it, if any. */
/* Whether the CUDA backend (if this machine loads one) has `name` for op. */
static bool cuda_backend_has(ai3_op op, const char *name) {
    const ai3_cuda_backend *cuda = ai3_cuda_backend_get();
    const char *names[64];
    int n = cuda ? cuda->list_algorithms(op, names, 64) : 0;
    for (int i = 0; i < n && i < 64; i++)
        if (strcmp(names[i], name) == 0 || strcmp(name, "default") == 0) return true;
    return false;
}

static ai3_status not_found(ai3_op op, const char *name, ai3_device device) {
    char elsewhere[64] = "";
    size_t used = 0;
    for (int d = 0; d < N_DEVICES; d++) {
        if (d == (int)device) continue;
        pthread_mutex_lock(&registry_lock);
        int has = find_builtin(op, name, (ai3_device)d) || find_registered(op, name, (ai3_device)d);
        pthread_mutex_unlock(&registry_lock);
        if (has && used < sizeof elsewhere)
            used += (size_t)snprintf(elsewhere + used, sizeof elsewhere - used, "%s%s",
                                     used ? ", " : "", device_names[d]);
    }
    if (used)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "%s: algorithm '%s' runs on %s only, but the tensors are on %s%s",
                             ops[op].name, name, elsewhere, device_names[device],
                             device == AI3_DEVICE_CUDA && cuda_backend_has(op, name)
                                 ? " (the CUDA backend runs it through plans: "
                                   "ai3_plan_create, ai3_plan_run_stream)"
                                 : "");
    char known[512];
    known_names(op, device, known, sizeof known);
    if (!known[0])
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "%s: this build of ai3 has no algorithm for tensors on %s",
                             ops[op].name, device_names[device]);
    return ai3_set_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                         "%s: unknown algorithm '%s'; known on %s: 'default', %s%s", ops[op].name,
                         name, device_names[device], known,
                         strcmp(name, "custom") == 0
                             ? " (a 'custom' algorithm must be registered first, e.g. with "
                               "ai3_load_algorithms)"
                             : "");
}

/* Finds `name` (already resolved from "default") among the built-ins and
 * the run-time registrations of op on device; sets the error when there is
 * none. */
static ai3_status lookup(ai3_op op, const char *name, ai3_device device,
                         const builtin_t **builtin, ai3_algorithm_fn *registered_fn) {
    if (check_device(device) != AI3_OK) return AI3_ERROR_INVALID_ARGUMENT;
    *builtin = find_builtin(op, name, device);
    *registered_fn = NULL;
    if (*builtin) return AI3_OK;
    pthread_mutex_lock(&registry_lock);
    registered_t *r = find_registered(op, name, device);
    *registered_fn = r ? r->fn : NULL;
    pthread_mutex_unlock(&registry_lock);
    if (*registered_fn) return AI3_OK;
    return not_found(op, name, device);
}

static const char *resolve_default(ai3_op op, const char *name) {
    return strcmp(name, "default") == 0 ? ops[op].default_algorithm : name;
}

ai3_status ai3_lookup_algorithm(ai3_op op, const char *name, const ai3_tensor *like,
                                ai3_algorithm_fn *fn) {
    if (!name)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: algorithm name is NULL",
                             ops[op].name);
    const builtin_t *b;
    ai3_status s = lookup(op, resolve_default(op, name), like->device, &b, fn);
    if (s == AI3_OK && b && is_cpu_bf16(like))
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "%s: bfloat16 on the CPU is computed through plans "
                             "(ai3_plan_create, ai3_plan_run), which run '%s' in float32",
                             ops[op].name, name);
    if (s == AI3_OK && b) *fn = like->dtype == AI3_FLOAT64 ? b->f64 : b->f32;
    return s;
}

/* A planned operation's built-in (*impl) or run-time (*registered) algorithm. */
static ai3_status lookup_planned(ai3_op op, const char *name, const ai3_tensor *like,
                                 const void **impl, ai3_algorithm_fn *registered) {
    const builtin_t *b;
    *impl = NULL;
    if (!name)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: algorithm name is NULL",
                             ops[op].name);
    ai3_status s = lookup(op, resolve_default(op, name), like->device, &b, registered);
    *impl = b ? (like->dtype == AI3_FLOAT64 ? b->planned64 : b->planned32) : NULL;
    if (s == AI3_OK && b && !*impl)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: '%s' is not an algorithm itself",
                             ops[op].name, name);
    if (s == AI3_OK && b && is_cpu_bf16(like)) {
        *impl = NULL;
        char have[256] = "";
        size_t used = 0;
        for (int i = 0; i < N_BF16_BUILTINS; i++) {
            if (bf16_builtins[i].op != op || bf16_builtins[i].device != like->device) continue;
            if (strcmp(bf16_builtins[i].name, b->name) == 0) *impl = bf16_builtins[i].planned;
            if (used < sizeof have)
                used += (size_t)snprintf(have + used, sizeof have - used, "%s'%s'",
                                         used ? ", " : "", bf16_builtins[i].name);
        }
        if (!*impl)
            return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                                 "%s: algorithm '%s' does not compute bfloat16 on the CPU; "
                                 "those that do: %s", ops[op].name, b->name, have);
    }
    return s;
}

ai3_status ai3_lookup_conv2d(const char *name, const ai3_tensor *like,
                             const ai3_conv2d_algorithm **impl, ai3_conv2d_fn *registered) {
    const void *found;
    ai3_algorithm_fn fn;
    ai3_status s = lookup_planned(AI3_OP_CONV2D, name, like, &found, &fn);
    *impl = found;
    *registered = (ai3_conv2d_fn)fn;
    return s;
}

ai3_status ai3_lookup_linear(const char *name, const ai3_tensor *like,
                             const ai3_linear_algorithm **impl, ai3_linear_fn *registered) {
    const void *found;
    ai3_algorithm_fn fn;
    ai3_status s = lookup_planned(AI3_OP_LINEAR, name, like, &found, &fn);
    *impl = found;
    *registered = (ai3_linear_fn)fn;
    return s;
}

ai3_status ai3_check_algorithm_name(ai3_op op, const char *name) {
    if (check_op(op) != AI3_OK) return AI3_ERROR_INVALID_ARGUMENT;
    if (!name)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: algorithm name is NULL",
                             ops[op].name);
    if (strlen(name) >= MAX_NAME)
        return ai3_set_error(AI3_ERROR_UNKNOWN_ALGORITHM, "%s: algorithm name '%.40s...' is too "
                             "long", ops[op].name, name);
    name = resolve_default(op, name);
    for (int d = 0; d < N_DEVICES; d++) {
        pthread_mutex_lock(&registry_lock);
        int has = find_builtin(op, name, (ai3_device)d) || find_registered(op, name, (ai3_device)d);
        pthread_mutex_unlock(&registry_lock);
        if (has) return AI3_OK;
    }
    return not_found(op, name, AI3_DEVICE_CPU);
}

ai3_status ai3_require_cpu(ai3_op op, const char *name, const ai3_tensor *t) {
    if (t->device == AI3_DEVICE_CPU) return AI3_OK;
    const builtin_t *b;
    ai3_algorithm_fn fn;
    ai3_status s = lookup(op, resolve_default(op, name), t->device, &b, &fn);
    if (s != AI3_OK) return s;
    return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                         "%s: plans keep their weights in host memory; algorithm '%s' on %s "
                         "cannot be planned", ops[op].name, name, device_names[t->device]);
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
    ai3_status (*init)(int) = (ai3_status(*)(int))dlsym(handle, AI3_INIT_SYMBOL);
    if (!init) {
        dlclose(handle);
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "'%s' has no function %s", path,
                             AI3_INIT_SYMBOL);
    }
    ai3_set_error(AI3_OK, "%s", ""); /* so that a failing init without a message is seen */
    ai3_status status = init(AI3_ABI_VERSION);
    if (status != AI3_OK) {
        char why[384];
        snprintf(why, sizeof why, "%s", ai3_last_error());
        return ai3_set_error(status, "%s of '%s' failed%s%s", AI3_INIT_SYMBOL, path,
                             why[0] ? ": " : "", why);
    }
    return AI3_OK; /* the library stays loaded: its functions are registered */
}
