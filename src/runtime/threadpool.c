/*
 * The thread pool behind ai3_parallel_for, which splits [0, n) into
 * contiguous chunks, a few per thread, taken one at a time by the threads
 * (so a thread slowed by something else on its core takes fewer).
 *
 * Two ways to run them:
 *
 * - Inside a process that already has an OpenMP runtime loaded (PyTorch's
 *   wheels carry libgomp), on that runtime's threads, through its
 *   GOMP_parallel entry point. PyTorch's OpenMP threads spin for a while
 *   after each of its operations; a second set of threads would then share
 *   the cores with spinning ones (measured: a 1×1 conv2d of ResNet-50 ran
 *   1.6× slower right after a torch operation). On the same threads the
 *   spinning ones simply take the work. No second runtime is loaded: ai3
 *   does not link OpenMP.
 * - Otherwise (a plain C program), ai3's own pthread pool: the caller and
 *   workers that block on a condition variable between jobs.
 *
 * AI3_THREAD_POOL=own forces the pthread pool.
 */
#include "internal.h"

#define _GNU_SOURCE /* RTLD_NOLOAD */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 256
/* Chunks per thread: enough to even out a thread running at half speed. */
#define CHUNKS_PER_THREAD 4

/* One call of ai3_parallel_for. */
typedef struct {
    int64_t n, n_chunks;
    atomic_llong next_chunk;
    ai3_range_fn fn;
    void *ctx;
} job_t;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t work_ready, work_done;
    pthread_t threads[MAX_THREADS];
    int n_workers;      /* threads besides the caller */
    atomic_int wanted_threads; /* ai3_set_num_threads; 0 = not set yet */
    /* the current job */
    uint64_t generation;
    int pending;
    int job_threads;
    job_t *job;
    int stopping;
    uint64_t workers_born_at; /* the generation when the workers were made */
} pool_t;

static pool_t pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_ready = PTHREAD_COND_INITIALIZER,
    .work_done = PTHREAD_COND_INITIALIZER,
};
/* Serialises whole jobs: one ai3_parallel_for owns the pool at a time. */
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int inside_job;

static void chunk_of(int64_t n, int64_t parts, int64_t index, int64_t *begin, int64_t *end) {
    *begin = n * index / parts;
    *end = n * (index + 1) / parts;
}

/* Takes and runs chunks of `job` until none is left. */
static void run_chunks(job_t *job) {
    inside_job = 1;
    for (;;) {
        int64_t chunk = atomic_fetch_add(&job->next_chunk, 1);
        if (chunk >= job->n_chunks) break;
        int64_t begin, end;
        chunk_of(job->n, job->n_chunks, chunk, &begin, &end);
        if (begin < end) job->fn(job->ctx, begin, end);
    }
    inside_job = 0;
}

/* --- the OpenMP runtime already in the process, if any ------------------- */

typedef void (*gomp_parallel_fn)(void (*body)(void *), void *data, unsigned threads,
                                 unsigned flags);
static gomp_parallel_fn gomp_parallel;

/* Finds GOMP_parallel in an OpenMP runtime the process has loaded (GNU's,
 * or LLVM's and Intel's, which provide the same entry point), without
 * loading one. */
static void find_openmp(void) {
    const char *choice = getenv("AI3_THREAD_POOL");
    if (choice && strcmp(choice, "own") == 0) return;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return;
    char line[4096];
    while (!gomp_parallel && fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        if (!path || !(strstr(path, "libgomp") || strstr(path, "libiomp") || strstr(path, "libomp")))
            continue;
        path[strcspn(path, "\n")] = '\0';
        void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (handle) gomp_parallel = (gomp_parallel_fn)dlsym(handle, "GOMP_parallel");
    }
    fclose(maps);
}

static void openmp_body(void *job) { run_chunks(job); }

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg; /* 1..n_workers; the caller is 0 */
    pthread_mutex_lock(&pool.lock);
    uint64_t seen = pool.workers_born_at; /* jobs before this one are not ours */
    for (;;) {
        while (pool.generation == seen && !pool.stopping)
            pthread_cond_wait(&pool.work_ready, &pool.lock);
        if (pool.stopping) break;
        seen = pool.generation;
        if (index < pool.job_threads) {
            pthread_mutex_unlock(&pool.lock);
            run_chunks(pool.job);
            pthread_mutex_lock(&pool.lock);
            if (--pool.pending == 0) pthread_cond_signal(&pool.work_done);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("AI3_NUM_THREADS");
    if (env && atoi(env) > 0) n = atoi(env);
    return (int)AI3_MAX(1, AI3_MIN(n, MAX_THREADS));
}

/* A forked child has none of the parent's workers: start again from empty. */
static void reset_after_fork(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.work_ready, NULL);
    pthread_cond_init(&pool.work_done, NULL);
    pthread_mutex_init(&job_lock, NULL);
    pool.n_workers = 0;
    pool.stopping = 0;
    inside_job = 0;
}

static void stop_workers(void) {
    pthread_mutex_lock(&pool.lock);
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.work_ready);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.n_workers; i++) pthread_join(pool.threads[i], NULL);
    pool.n_workers = 0;
    pool.stopping = 0;
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, reset_after_fork); }

/* Makes the pool hold `threads - 1` workers. Called with job_lock held. */
static void resize(int threads) {
    if (pool.n_workers == threads - 1) return;
    stop_workers();
    pool.workers_born_at = pool.generation;
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&pool.threads[i], NULL, worker_main, (void *)(intptr_t)(i + 1)) != 0)
            break; /* fewer workers than asked: the work still gets done */
        pool.n_workers++;
    }
}

ai3_status ai3_set_num_threads(int n) {
    if (n < 1 || n > MAX_THREADS)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "number of threads must be between 1 and %d, got %d", MAX_THREADS, n);
    atomic_store(&pool.wanted_threads, n); /* the pool resizes at its next job */
    return AI3_OK;
}

/* Lock-free: algorithms ask from inside jobs. */
int ai3_get_num_threads(void) {
    int n = atomic_load(&pool.wanted_threads);
    if (!n) {
        n = default_threads();
        int unset = 0;
        atomic_compare_exchange_strong(&pool.wanted_threads, &unset, n);
    }
    return n;
}

void ai3_parallel_for(int64_t n, int64_t grain, ai3_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t useful = (n + grain - 1) / grain;
    int threads = (int)AI3_MIN((int64_t)ai3_get_num_threads(), useful);
    if (inside_job || threads <= 1) { /* nested, or not worth a thread */
        fn(ctx, 0, n);
        return;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, find_openmp);
    job_t job = {.n = n, .n_chunks = AI3_MIN(useful, (int64_t)threads * CHUNKS_PER_THREAD),
                 .fn = fn, .ctx = ctx};
    atomic_init(&job.next_chunk, 0);
    if (gomp_parallel) {
        gomp_parallel(openmp_body, &job, (unsigned)threads, 0);
        return;
    }

    /* Another thread is using the pool: run here. */
    if (pthread_mutex_trylock(&job_lock) != 0) {
        fn(ctx, 0, n);
        return;
    }
    static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handler_once, register_fork_handler);
    resize(ai3_get_num_threads());
    threads = AI3_MIN(threads, pool.n_workers + 1);
    job.n_chunks = AI3_MIN(useful, (int64_t)threads * CHUNKS_PER_THREAD);

    pthread_mutex_lock(&pool.lock);
    pool.job = &job;
    pool.job_threads = threads;
    pool.pending = threads - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.work_ready);
    pthread_mutex_unlock(&pool.lock);

    run_chunks(&job);

    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.work_done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&job_lock);
}
