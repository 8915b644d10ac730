/*
 * ai3_parallel_for splits [0, n) into contiguous chunks, a few per thread.
 * Thread t owns the t-th share of them and runs those first, so that in
 * loops split alike (a network's layers) it reads what it wrote itself, from
 * its own cache; then it takes what is left of the others' shares (so a
 * thread slowed by something else on its core does less).
 *
 * Two ways to run them:
 *
 * - On the executor the program installed with ai3_set_parallel_executor
 *   (its own thread pool, or the OpenMP threads of a framework that embeds
 *   ai3): one task per thread, each taking chunks until none is left.
 * - Otherwise, ai3's own pthread pool: the caller and workers that wait on
 *   a condition variable between jobs, after spinning for SPIN_NS. Waking a
 *   blocked thread takes tens of microseconds (measured: 80 µs per loop in
 *   a virtual machine), more than a small layer's work; a network runs its
 *   loops back to back, so a worker that spins a little finds the next one.
 */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
/* Chunks per thread: enough to even out a thread running at half speed. */
#define CHUNKS_PER_THREAD 4
/* How long a worker looks for the next job, and the caller for the end of
 * its job, before blocking. */
#define SPIN_NS 100000

/* One call of ai3_parallel_for. */
typedef struct {
    int64_t n, grain, n_chunks;
    int threads;
    atomic_llong next_chunk[MAX_THREADS]; /* per owner: the chunks of its share taken */
    ai3_range_fn fn;
    void *ctx;
} job_t;

static void start_job(job_t *job, int threads) {
    job->threads = threads;
    job->n_chunks = AI3_MIN((job->n + job->grain - 1) / job->grain,
                            (int64_t)threads * CHUNKS_PER_THREAD);
    for (int t = 0; t < threads; t++) atomic_init(&job->next_chunk[t], 0);
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t work_ready, work_done;
    pthread_t threads[MAX_THREADS];
    int n_workers;      /* threads besides the caller */
    atomic_int wanted_threads; /* ai3_set_num_threads; 0 = not set yet */
    /* the current job */
    _Atomic uint64_t generation; /* written under lock; read by spinning threads without */
    atomic_int pending;
    int job_threads;
    job_t *job;
    atomic_int stopping;
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

/* --- an executor installed with ai3_set_parallel_executor ----------------
 * Each installation is a record; a loop pins the record it starts with
 * (users), so that replacing it can wait until no loop runs on it. */
typedef struct {
    ai3_parallel_for_fn parallel_for;
    void *ctx;
    int threads;
    int users; /* loops running on it; under executor_lock */
} executor_t;

static pthread_mutex_t executor_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t executor_idle = PTHREAD_COND_INITIALIZER; /* users fell to 0 */
static executor_t *_Atomic executor;  /* NULL: the own pool */
static atomic_int executor_threads;   /* its thread count; 0 when none */

static void chunk_of(int64_t n, int64_t parts, int64_t index, int64_t *begin, int64_t *end) {
    *begin = n * index / parts;
    *end = n * (index + 1) / parts;
}

/* Runs the chunks of `job` that thread `self` owns, then takes those of
 * the others that are left. Owning the same share of every loop, a thread
 * finds what it wrote in the loop before in its own cache (a network's
 * layers split alike). */
static void run_chunks(job_t *job, int self) {
    int was_inside = inside_job;
    inside_job = 1;
    for (int k = 0; k < job->threads; k++) {
        const int owner = (int)(((int64_t)self + k) % job->threads);
        int64_t first, last;
        chunk_of(job->n_chunks, job->threads, owner, &first, &last);
        for (;;) {
            int64_t chunk = first + atomic_fetch_add(&job->next_chunk[owner], 1);
            if (chunk >= last) break;
            int64_t begin, end;
            chunk_of(job->n, job->n_chunks, chunk, &begin, &end);
            if (begin < end) job->fn(job->ctx, begin, end);
        }
    }
    inside_job = was_inside;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spins while busy(arg), up to SPIN_NS; the caller then blocks on the
 * pool's condition variables, which settle what the spin did not. */
static void spin_while(bool (*busy)(const void *arg), const void *arg) {
    const uint64_t start = now_ns();
    for (unsigned i = 1; busy(arg); i++) {
        cpu_relax();
        if (i % 64 == 0 && now_ns() - start > SPIN_NS) return;
    }
}

/* A worker that last ran job generation *seen has no new job. */
static bool no_new_job(const void *seen) {
    return atomic_load(&pool.generation) == *(const uint64_t *)seen &&
           !atomic_load(&pool.stopping);
}

/* Workers still run the caller's job. */
static bool job_running(const void *unused) { return atomic_load(&pool.pending) > 0; }

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg; /* 1..n_workers; the caller is 0 */
    pthread_mutex_lock(&pool.lock);
    uint64_t seen = pool.workers_born_at; /* jobs before this one are not ours */
    for (;;) {
        if (pool.generation == seen && !pool.stopping) {
            pthread_mutex_unlock(&pool.lock);
            spin_while(no_new_job, &seen);
            pthread_mutex_lock(&pool.lock);
        }
        while (pool.generation == seen && !pool.stopping)
            pthread_cond_wait(&pool.work_ready, &pool.lock);
        if (pool.stopping) break;
        seen = pool.generation;
        if (index < pool.job_threads) {
            pthread_mutex_unlock(&pool.lock);
            run_chunks(pool.job, index);
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
    /* nor the loops that ran on the executor in other threads */
    pthread_mutex_init(&executor_lock, NULL);
    pthread_cond_init(&executor_idle, NULL);
    executor_t *e = atomic_load(&executor);
    if (e) e->users = 0;
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
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

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

/* What ai3_set_num_threads asked for (or the default). */
static int wanted_threads(void) {
    int n = atomic_load(&pool.wanted_threads);
    if (!n) {
        n = default_threads();
        int unset = 0;
        atomic_compare_exchange_strong(&pool.wanted_threads, &unset, n);
    }
    return n;
}

/* Lock-free: algorithms ask from inside jobs. */
int ai3_get_num_threads(void) {
    int n = wanted_threads(), limit = atomic_load(&executor_threads);
    return limit ? AI3_MIN(n, limit) : n;
}

ai3_status ai3_set_parallel_executor(ai3_parallel_for_fn parallel_for, void *executor_ctx,
                                     int num_threads) {
    if (inside_job)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "the parallel executor cannot be changed from inside a parallel task");
    executor_t *next = NULL;
    if (parallel_for) {
        if (num_threads < 1)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "an executor's number of threads must be at least 1, got %d",
                                 num_threads);
        next = malloc(sizeof *next);
        if (!next)
            return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "out of memory for the executor");
        *next = (executor_t){.parallel_for = parallel_for, .ctx = executor_ctx,
                             .threads = num_threads};
    }
    pthread_once(&fork_handler_once, register_fork_handler);
    pthread_mutex_lock(&executor_lock);
    executor_t *previous = atomic_load(&executor);
    atomic_store(&executor, next);
    atomic_store(&executor_threads, next ? next->threads : 0);
    /* Loops still running on the previous one finish there first. */
    while (previous && previous->users > 0) pthread_cond_wait(&executor_idle, &executor_lock);
    pthread_mutex_unlock(&executor_lock);
    free(previous);
    return AI3_OK;
}

/* The installed executor, pinned until unpin_executor; NULL if none. */
static executor_t *pin_executor(void) {
    if (!atomic_load(&executor)) return NULL; /* no lock on the own pool's path */
    pthread_mutex_lock(&executor_lock);
    executor_t *e = atomic_load(&executor);
    if (e) e->users++;
    pthread_mutex_unlock(&executor_lock);
    return e;
}

static void unpin_executor(executor_t *e) {
    pthread_mutex_lock(&executor_lock);
    if (e->users > 0 && --e->users == 0) pthread_cond_broadcast(&executor_idle);
    pthread_mutex_unlock(&executor_lock);
}

/* One task of a loop on the executor: chunks until none is left. */
static void executor_task(void *job, int64_t index) { run_chunks(job, (int)index); }

void ai3_parallel_for(int64_t n, int64_t grain, ai3_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t useful = (n + grain - 1) / grain;
    int threads = (int)AI3_MIN((int64_t)ai3_get_num_threads(), useful);
    if (inside_job || threads <= 1) { /* nested, or not worth a thread */
        fn(ctx, 0, n);
        return;
    }
    job_t job; /* (start_job initialises the cursors it uses) */
    job.n = n, job.grain = grain, job.fn = fn, job.ctx = ctx;

    executor_t *e = pin_executor();
    if (e) {
        threads = AI3_MIN(threads, e->threads); /* it may have been replaced meanwhile */
        if (threads <= 1) {
            fn(ctx, 0, n);
        } else {
            start_job(&job, threads);
            e->parallel_for(e->ctx, threads, executor_task, &job);
        }
        unpin_executor(e);
        return;
    }

    /* Another thread is using the pool: run here. */
    if (pthread_mutex_trylock(&job_lock) != 0) {
        fn(ctx, 0, n);
        return;
    }
    pthread_once(&fork_handler_once, register_fork_handler);
    resize(wanted_threads());
    threads = AI3_MIN(threads, pool.n_workers + 1);
    start_job(&job, threads);

    pthread_mutex_lock(&pool.lock);
    pool.job = &job;
    pool.job_threads = threads;
    pool.pending = threads - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.work_ready);
    pthread_mutex_unlock(&pool.lock);

    run_chunks(&job, 0);

    spin_while(job_running, NULL);
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.work_done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&job_lock);
}
