/* Status strings and the per-thread error message. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

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

/* Every block starts with a 64-byte header holding its mapping's size (0
 * for a heap block). Large blocks (weights, packed weights, workspaces) are
 * mapped on their own, so that freeing one gives its memory back to the
 * system at once instead of leaving a hole in the heap: building a network
 * makes and frees many such temporaries. */
#define HEADER 64
#define MAPPED_FROM ((size_t)1 << 20)

void *ai3_alloc(size_t bytes) {
    size_t total = ((bytes + 63) & ~(size_t)63) + HEADER;
    char *base = NULL;
    if (total >= MAPPED_FROM) {
        void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        base = m == MAP_FAILED ? NULL : m;
    } else if (posix_memalign((void **)&base, 64, total) != 0) {
        base = NULL;
    }
    if (!base) {
        ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "could not allocate %zu bytes", bytes);
        return NULL;
    }
    *(size_t *)base = total >= MAPPED_FROM ? total : 0;
    return base + HEADER;
}

void ai3_free(void *p) {
    if (!p) return;
    char *base = (char *)p - HEADER;
    size_t mapped = *(size_t *)base;
    if (mapped) munmap(base, mapped);
    else free(base);
}
