/*
 * A small pthread pool: ai3_parallel_for splits [0, n) into one contiguous
 * chunk per thread; the caller runs chunk 0 and sleeping workers the rest.
 * Workers block on a condition variable between jobs (no spinning), so they
 * never compete with PyTorch's own threads while idle.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 256

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t work_ready, work_done;
    pthread_t threads[MAX_THREADS];
    int n_workers;      /* threads besides the caller */
    int wanted_threads; /* ai3_set_num_threads; 0 = not set yet */
    /* the current job */
    uint64_t generation;
    int pending;
    int job_threads;
    int64_t n, grain;
    ai3_range_fn fn;
    void *ctx;
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

static void chunk_of(int64_t n, int parts, int index, int64_t *begin, int64_t *end) {
    *begin = n * index / parts;
    *end = n * (index + 1) / parts;
}

static void run_chunk(int index) {
    int64_t begin, end;
    chunk_of(pool.n, pool.job_threads, index, &begin, &end);
    if (begin < end) {
        inside_job = 1;
        pool.fn(pool.ctx, begin, end);
        inside_job = 0;
    }
}

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
            run_chunk(index);
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
    pthread_mutex_lock(&job_lock);
    pool.wanted_threads = n;
    pthread_mutex_unlock(&job_lock);
    return AI3_OK;
}

int ai3_get_num_threads(void) {
    pthread_mutex_lock(&job_lock);
    int n = pool.wanted_threads ? pool.wanted_threads : default_threads();
    pthread_mutex_unlock(&job_lock);
    return n;
}

void ai3_parallel_for(int64_t n, int64_t grain, ai3_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    /* Nested, or another thread is using the pool: run here. */
    if (inside_job || pthread_mutex_trylock(&job_lock) != 0) {
        fn(ctx, 0, n);
        return;
    }
    static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handler_once, register_fork_handler);
    if (!pool.wanted_threads) pool.wanted_threads = default_threads();
    int64_t useful = (n + grain - 1) / grain;
    int threads = (int)AI3_MIN((int64_t)pool.wanted_threads, useful);
    if (threads <= 1) {
        pthread_mutex_unlock(&job_lock);
        fn(ctx, 0, n);
        return;
    }
    resize(pool.wanted_threads);
    threads = AI3_MIN(threads, pool.n_workers + 1);

    pthread_mutex_lock(&pool.lock);
    pool.n = n;
    pool.grain = grain;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.job_threads = threads;
    pool.pending = threads - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.work_ready);
    pthread_mutex_unlock(&pool.lock);

    run_chunk(0);

    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.work_done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&job_lock);
}
