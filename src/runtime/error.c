/* Status strings and the per-thread error message. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[512];

const char *ai3_status_string(ai3_status status) {
    switch (status) {
    case AI3_OK: return "ok";
    case AI3_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case AI3_ERROR_UNSUPPORTED: return "unsupported";
    case AI3_ERROR_UNKNOWN_ALGORITHM: return "unknown algorithm";
    case AI3_ERROR_OUT_OF_MEMORY: return "out of memory";
    case AI3_ERROR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *ai3_last_error(void) { return last_error; }

ai3_status ai3_set_error(ai3_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void *ai3_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "could not allocate %zu bytes of workspace",
                      bytes);
        return NULL;
    }
    return p;
}

void ai3_free(void *p) { free(p); }
