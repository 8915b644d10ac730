/* Loading the CUDA backend (libai3_cuda) on first use: see cuda_backend.h. */
#define _GNU_SOURCE /* dladdr */
#include "cuda_backend.h"
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const ai3_cuda_backend *backend;
static char why_not[512]; /* when backend is NULL */

static const ai3_cuda_host host = {.set_error = ai3_set_error};

/* The folder libai3 was loaded from (the backend is installed beside it). */
static void library_folder(char *buf, size_t size) {
    Dl_info info;
    buf[0] = '\0';
    if (dladdr((void *)ai3_version, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash) snprintf(buf, size, "%.*s", (int)(slash - info.dli_fname + 1), info.dli_fname);
    }
}

static void load(void) {
    char path[4096];
    library_folder(path, sizeof path);
    size_t used = strlen(path);
    snprintf(path + used, sizeof path - used, "libai3_cuda.so");
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libai3_cuda.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *err = dlerror();
        snprintf(why_not, sizeof why_not,
                 "this build of ai3 has no usable CUDA backend (%s); build it with a CUDA "
                 "toolkit, cuDNN and cuBLAS present",
                 err ? err : "libai3_cuda.so not found");
        return;
    }
    ai3_cuda_backend_fn entry;
    *(void **)&entry = dlsym(lib, AI3_CUDA_BACKEND_SYMBOL);
    backend = entry ? entry(AI3_CUDA_BACKEND_ABI, &host) : NULL;
    if (!backend)
        snprintf(why_not, sizeof why_not, "the CUDA backend %.300s does not match this libai3: %.150s",
                 path, entry ? ai3_last_error() : "no entry point");
}

const ai3_cuda_backend *ai3_cuda_backend_get(void) {
    pthread_once(&once, load);
    if (!backend) ai3_set_error(AI3_ERROR_UNSUPPORTED, "%s", why_not);
    return backend;
}

ai3_status ai3_cuda_available(void) {
    return ai3_cuda_backend_get() ? AI3_OK : AI3_ERROR_UNSUPPORTED;
}

const char *ai3_cuda_describe(void) {
    static _Thread_local char text[256];
    const ai3_cuda_backend *b = ai3_cuda_backend_get();
    text[0] = '\0';
    if (b) b->describe(text, sizeof text);
    return text;
}
