/* Per-thread scratch buffers (internal.h: ai3_thread_buffer). */
#include "internal.h"

#include <pthread.h>

typedef struct {
    void *data[AI3_THREAD_BUFFERS];
    size_t bytes[AI3_THREAD_BUFFERS];
} buffers;

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static bool key_ok;
/* the thread's buffers, also held by `key` so that they are freed at exit */
static _Thread_local buffers *mine;

static void free_buffers(void *p) {
    buffers *b = p;
    for (int i = 0; i < AI3_THREAD_BUFFERS; i++) ai3_free(b->data[i]);
    ai3_free(b);
}

static void make_key(void) { key_ok = pthread_key_create(&key, free_buffers) == 0; }

void *ai3_thread_buffer(ai3_thread_buffer_use use, size_t bytes) {
    buffers *b = mine;
    if (b && bytes <= b->bytes[use]) return b->data[use];
    if (!b) {
        pthread_once(&key_once, make_key);
        if (!key_ok) {
            ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "no thread-specific storage for a buffer");
            return NULL;
        }
        if (!(b = ai3_alloc(sizeof *b))) return NULL;
        *b = (buffers){0};
        pthread_setspecific(key, b);
        mine = b;
    }
    void *p = ai3_alloc(bytes);
    if (!p) return NULL;
    ai3_free(b->data[use]);
    b->data[use] = p;
    b->bytes[use] = bytes;
    return p;
}
