/* Status strings and the per-thread error message. */
#include "internal.h"

#include <stdarg.h>
#include <stdint.h>
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
 * makes and frees many such temporaries. Blocks of a huge page and more
 * start on a huge page boundary and ask for transparent huge pages: a
 * network at batch 1 streams its weights from memory, and with 4 KiB pages
 * that costs a TLB miss every 4 KiB. */
#define HEADER 64
#define MAPPED_FROM ((size_t)1 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

static void *map_block(size_t total) {
    if (total < HUGE_PAGE) {
        void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return m == MAP_FAILED ? NULL : m;
    }
    /* map a huge page more, then unmap what lies before the boundary and
     * after the block */
    const size_t span = total + HUGE_PAGE;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    char *start = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    const size_t end = ((size_t)(start - m) + total + 4095) & ~(size_t)4095;
    if (start > m) munmap(m, (size_t)(start - m));
    if (end < span) munmap(m + end, span - end);
#ifdef MADV_HUGEPAGE
    madvise(start, total & ~(HUGE_PAGE - 1), MADV_HUGEPAGE); /* (advice: may be refused) */
#endif
    return start;
}

void *ai3_alloc(size_t bytes) {
    size_t total = ((bytes + 63) & ~(size_t)63) + HEADER;
    char *base = NULL;
    if (total >= MAPPED_FROM) base = map_block(total);
    else if (posix_memalign((void **)&base, 64, total) != 0) base = NULL;
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
