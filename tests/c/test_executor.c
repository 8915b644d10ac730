/* A parallel executor installed through ai3_set_parallel_executor: it runs
 * the loops' tasks, gives the same results as the own pool, hands the loops
 * back to the own pool when removed, and can be changed while other threads
 * run operations. */
#include "ai3.h"
#include "harness.h"
#include "internal.h"
#include "tensors.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An executor that runs each call's tasks on fresh threads (task 0 on the
 * caller), counting what it does; `alive` is cleared when a test releases
 * it, so a call after that is caught. */
typedef struct {
    atomic_long calls, tasks, in_flight, calls_when_dead, max_tasks;
    atomic_int alive;
} counting_executor;

typedef struct {
    ai3_parallel_task_fn task;
    void *task_ctx;
    int64_t index;
} task_call;

static void *task_thread(void *arg) {
    task_call *c = arg;
    c->task(c->task_ctx, c->index);
    return NULL;
}

static void threaded_parallel_for(void *executor_ctx, int64_t n_tasks, ai3_parallel_task_fn task,
                                  void *task_ctx) {
    counting_executor *e = executor_ctx;
    atomic_fetch_add(&e->in_flight, 1);
    if (!atomic_load(&e->alive)) atomic_fetch_add(&e->calls_when_dead, 1);
    atomic_fetch_add(&e->calls, 1);
    atomic_fetch_add(&e->tasks, n_tasks);
    long most = atomic_load(&e->max_tasks);
    while (n_tasks > most && !atomic_compare_exchange_weak(&e->max_tasks, &most, n_tasks)) {
    }
    task_call calls[64];
    pthread_t threads[64];
    int started[64] = {0};
    for (int64_t i = 1; i < n_tasks && i < 64; i++) {
        calls[i] = (task_call){task, task_ctx, i};
        started[i] = pthread_create(&threads[i], NULL, task_thread, &calls[i]) == 0;
        if (!started[i]) task(task_ctx, i); /* no thread: run it here */
    }
    task(task_ctx, 0);
    for (int64_t i = 1; i < n_tasks && i < 64; i++)
        if (started[i]) pthread_join(threads[i], NULL);
    for (int64_t i = 64; i < n_tasks; i++) task(task_ctx, i);
    atomic_fetch_sub(&e->in_flight, 1);
}

/* Runs the tasks one after another on the calling thread, last first. */
static void serial_parallel_for(void *executor_ctx, int64_t n_tasks, ai3_parallel_task_fn task,
                                void *task_ctx) {
    counting_executor *e = executor_ctx;
    atomic_fetch_add(&e->calls, 1);
    atomic_fetch_add(&e->tasks, n_tasks);
    for (int64_t i = n_tasks - 1; i >= 0; i--) task(task_ctx, i);
}

static void executor_init(counting_executor *e) {
    atomic_init(&e->calls, 0);
    atomic_init(&e->tasks, 0);
    atomic_init(&e->in_flight, 0);
    atomic_init(&e->calls_when_dead, 0);
    atomic_init(&e->max_tasks, 0);
    atomic_init(&e->alive, 1);
}

static void count_range(void *ctx, int64_t begin, int64_t end) {
    atomic_long *counts = ctx;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&counts[i], 1);
}

/* Every index of [0, n) exactly once. */
static int covers_once(int64_t n) {
    static atomic_long counts[1000];
    for (int i = 0; i < 1000; i++) atomic_store(&counts[i], 0);
    ai3_parallel_for(n, 1, count_range, counts);
    int ok = 1;
    for (int64_t i = 0; i < 1000; i++) ok &= atomic_load(&counts[i]) == (i < n);
    return ok;
}

AI3_TEST(executor_runs_the_tasks_of_parallel_loops) {
    const int threads = ai3_get_num_threads();
    ai3_set_num_threads(8);
    static counting_executor e;
    executor_init(&e);
    AI3_EXPECT(ai3_set_parallel_executor(threaded_parallel_for, &e, 3) == AI3_OK, "%s",
               ai3_last_error());
    AI3_EXPECT(ai3_get_num_threads() == 3, "executor's 3 threads bound 8: got %d",
               ai3_get_num_threads());
    for (int64_t n = 0; n < 1000; n += 97)
        AI3_EXPECT(covers_once(n), "n=%lld not covered once", (long long)n);
    AI3_EXPECT(atomic_load(&e.calls) == 10, "10 loops of 2+ items, %ld calls",
               atomic_load(&e.calls));
    AI3_EXPECT(atomic_load(&e.max_tasks) == 3, "at most 3 tasks asked, got %ld",
               atomic_load(&e.max_tasks));

    /* A loop of one item, or with one thread asked for, does not call it. */
    long before = atomic_load(&e.calls);
    AI3_EXPECT(covers_once(1), "n=1");
    ai3_set_num_threads(1);
    AI3_EXPECT(covers_once(500), "one thread");
    AI3_EXPECT(atomic_load(&e.calls) == before, "called for a serial loop");

    /* The other way round: the number set bounds the executor's. */
    ai3_set_num_threads(2);
    AI3_EXPECT(ai3_get_num_threads() == 2, "got %d", ai3_get_num_threads());
    atomic_store(&e.max_tasks, 0);
    AI3_EXPECT(covers_once(500), "two threads");
    AI3_EXPECT(atomic_load(&e.max_tasks) == 2, "2 tasks asked, got %ld",
               atomic_load(&e.max_tasks));

    /* Any schedule of the tasks is correct, even one after another. */
    static counting_executor s;
    executor_init(&s);
    ai3_set_num_threads(8);
    AI3_EXPECT(ai3_set_parallel_executor(serial_parallel_for, &s, 6) == AI3_OK, "serial");
    AI3_EXPECT(covers_once(999), "serial executor");
    AI3_EXPECT(atomic_load(&s.tasks) == 6, "6 tasks, got %ld", atomic_load(&s.tasks));

    /* NULL gives the loops back to the own pool. */
    AI3_EXPECT(ai3_set_parallel_executor(NULL, NULL, 0) == AI3_OK, "restore");
    AI3_EXPECT(ai3_get_num_threads() == 8, "own pool: got %d", ai3_get_num_threads());
    before = atomic_load(&e.calls) + atomic_load(&s.calls);
    AI3_EXPECT(covers_once(999), "own pool");
    AI3_EXPECT(atomic_load(&e.calls) + atomic_load(&s.calls) == before, "executor still called");
    ai3_set_num_threads(threads);
}

AI3_TEST(executor_rejects_bad_arguments) {
    static counting_executor e;
    executor_init(&e);
    AI3_EXPECT(ai3_set_parallel_executor(threaded_parallel_for, &e, 0) ==
                   AI3_ERROR_INVALID_ARGUMENT, "0 threads accepted");
    AI3_EXPECT(ai3_last_error()[0], "no message");
    AI3_EXPECT(ai3_set_parallel_executor(threaded_parallel_for, &e, -2) ==
                   AI3_ERROR_INVALID_ARGUMENT, "-2 threads accepted");
    AI3_EXPECT(atomic_load(&e.calls) == 0 && covers_once(999) && atomic_load(&e.calls) == 0,
               "a rejected executor was installed");
}

/* From inside a task: nested loops run serially (the executor is not
 * entered again), and the executor cannot be changed. */
static atomic_long nested_counts[10];
static atomic_int nested_set_status;

static void nested_range(void *ctx, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) ai3_parallel_for(10, 1, count_range, nested_counts);
    atomic_store(&nested_set_status, (int)ai3_set_parallel_executor(NULL, NULL, 0));
}

AI3_TEST(executor_nested_loops_run_serially) {
    const int threads = ai3_get_num_threads();
    ai3_set_num_threads(4);
    static counting_executor e;
    executor_init(&e);
    ai3_set_parallel_executor(threaded_parallel_for, &e, 4);
    for (int i = 0; i < 10; i++) atomic_store(&nested_counts[i], 0);
    atomic_store(&nested_set_status, -1);
    ai3_parallel_for(5, 1, nested_range, NULL);
    for (int i = 0; i < 10; i++)
        AI3_EXPECT(atomic_load(&nested_counts[i]) == 5, "count %d: %ld", i,
                   atomic_load(&nested_counts[i]));
    AI3_EXPECT(atomic_load(&e.calls) == 1, "%ld calls: nested loops entered it",
               atomic_load(&e.calls));
    AI3_EXPECT(atomic_load(&nested_set_status) == AI3_ERROR_INVALID_ARGUMENT,
               "changed from inside a task: status %d", atomic_load(&nested_set_status));
    ai3_set_parallel_executor(NULL, NULL, 0);
    ai3_set_num_threads(threads);
}

/* --- the same results as the own pool --------------------------------------- */

typedef struct {
    ai3_tensor input, weight, bias;
    ai3_conv2d_params p;
    int64_t out_shape[AI3_MAX_DIMS];
    int out_ndim;
} conv_case;

static conv_case conv_case_make(ai3_dtype dtype) {
    conv_case c;
    const int64_t in_shape[4] = {2, 16, 19, 17}, w_shape[4] = {24, 16, 3, 3}, b_shape[1] = {24};
    c.input = test_random(dtype, 4, in_shape);
    c.weight = test_random(dtype, 4, w_shape);
    c.bias = test_random(dtype, 1, b_shape);
    c.p = ai3_conv2d_params_default();
    c.p.pad_top = c.p.pad_bottom = c.p.pad_left = c.p.pad_right = 1;
    ai3_conv2d_output_shape(&c.input, &c.weight, &c.p, &c.out_ndim, c.out_shape);
    return c;
}

static void conv_case_free(conv_case *c) {
    free(c->input.data);
    free(c->weight.data);
    free(c->bias.data);
}

AI3_TEST(executor_gives_the_results_of_the_own_pool) {
    const int threads = ai3_get_num_threads();
    ai3_set_num_threads(3);
    static counting_executor e;
    executor_init(&e);
    const char *names[64];
    int n_names = 0;
    ai3_list_algorithms(AI3_OP_CONV2D, AI3_DEVICE_CPU, names, 64, &n_names);
    AI3_EXPECT(n_names > 0, "no conv2d algorithm");
    for (int dt = 0; dt < 2; dt++) {
        const ai3_dtype dtype = dt ? AI3_FLOAT64 : AI3_FLOAT32;
        conv_case c = conv_case_make(dtype);
        ai3_tensor own = test_output(dtype, c.out_ndim, c.out_shape);
        ai3_tensor got = test_output(dtype, c.out_ndim, c.out_shape);
        for (int a = 0; a < n_names && a < 64; a++) {
            ai3_set_parallel_executor(NULL, NULL, 0);
            ai3_status s_own = ai3_conv2d(names[a], &c.input, &c.weight, &c.bias, &c.p, &own);
            ai3_set_parallel_executor(threaded_parallel_for, &e, 3);
            long calls = atomic_load(&e.calls);
            ai3_status s_got = ai3_conv2d(names[a], &c.input, &c.weight, &c.bias, &c.p, &got);
            AI3_EXPECT(s_own == s_got, "%s: status %d on the own pool, %d on the executor",
                       names[a], s_own, s_got);
            if (s_own != AI3_OK) continue;
            char what[96];
            snprintf(what, sizeof what, "conv2d %s %s", names[a], test_dtype_name(dtype));
            test_compare(&got, &own, 0.0, 0.0, what);
            AI3_EXPECT(atomic_load(&e.calls) > calls, "%s: the executor ran nothing", what);
        }
        /* and an elementwise operation */
        ai3_tensor r_own = test_output(dtype, 4, c.input.shape);
        ai3_tensor r_got = test_output(dtype, 4, c.input.shape);
        ai3_set_parallel_executor(NULL, NULL, 0);
        AI3_EXPECT(ai3_relu("default", &c.input, &r_own) == AI3_OK, "relu: %s", ai3_last_error());
        ai3_set_parallel_executor(threaded_parallel_for, &e, 3);
        AI3_EXPECT(ai3_relu("default", &c.input, &r_got) == AI3_OK, "relu: %s", ai3_last_error());
        test_compare(&r_got, &r_own, 0.0, 0.0, "relu");
        free(r_own.data);
        free(r_got.data);
        free(own.data);
        free(got.data);
        conv_case_free(&c);
    }
    ai3_set_parallel_executor(NULL, NULL, 0);
    ai3_set_num_threads(threads);
}

/* --- changed while other threads compute ------------------------------------ */

typedef struct {
    const conv_case *c;
    const ai3_tensor *want;
    atomic_int *stop;
    atomic_long runs, wrong, failed;
} worker_arg;

static void *conv_worker(void *arg) {
    worker_arg *w = arg;
    ai3_tensor out = test_tensor(w->want->dtype, w->c->out_ndim, w->c->out_shape);
    while (!atomic_load(w->stop)) {
        memset(out.data, 0, (size_t)ai3_tensor_numel(&out) * sizeof(float));
        if (ai3_conv2d("default", &w->c->input, &w->c->weight, &w->c->bias, &w->c->p, &out) !=
            AI3_OK) {
            atomic_fetch_add(&w->failed, 1);
            continue;
        }
        if (memcmp(out.data, w->want->data, (size_t)ai3_tensor_numel(&out) * sizeof(float)))
            atomic_fetch_add(&w->wrong, 1);
        atomic_fetch_add(&w->runs, 1);
    }
    free(out.data);
    return NULL;
}

AI3_TEST(executor_can_be_changed_while_operations_run) {
    enum { WORKERS = 3, SWITCHES = 3000 };
    const int threads = ai3_get_num_threads();
    ai3_set_num_threads(3);
    conv_case c = conv_case_make(AI3_FLOAT32);
    ai3_tensor want = test_output(AI3_FLOAT32, c.out_ndim, c.out_shape);
    AI3_EXPECT(ai3_conv2d("default", &c.input, &c.weight, &c.bias, &c.p, &want) == AI3_OK, "%s",
               ai3_last_error());

    static counting_executor ex[2];
    executor_init(&ex[0]);
    executor_init(&ex[1]);
    atomic_int stop;
    atomic_init(&stop, 0);
    worker_arg args[WORKERS];
    pthread_t workers[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        args[i].c = &c;
        args[i].want = &want;
        args[i].stop = &stop;
        atomic_init(&args[i].runs, 0);
        atomic_init(&args[i].wrong, 0);
        atomic_init(&args[i].failed, 0);
        pthread_create(&workers[i], NULL, conv_worker, &args[i]);
    }
    /* Cycle: executor 0, executor 1, own pool. Once a call returns, the
     * executor it replaced is released: it must be neither running a loop
     * nor called again until it is installed anew. */
    int current = -1;
    for (int k = 0; k < SWITCHES; k++) {
        int next = k % 3 == 2 ? -1 : k % 3;
        if (next >= 0) atomic_store(&ex[next].alive, 1);
        ai3_status s = next >= 0 ? ai3_set_parallel_executor(threaded_parallel_for, &ex[next], 3)
                                 : ai3_set_parallel_executor(NULL, NULL, 0);
        AI3_EXPECT(s == AI3_OK, "switch %d: %s", k, ai3_last_error());
        if (current >= 0) {
            AI3_EXPECT(atomic_load(&ex[current].in_flight) == 0,
                       "switch %d: executor %d still running a loop after being replaced", k,
                       current);
            atomic_store(&ex[current].alive, 0);
        }
        current = next;
        if (k % 4 == 0) { /* let the workers run a little */
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    ai3_set_parallel_executor(NULL, NULL, 0);
    if (current >= 0) atomic_store(&ex[current].alive, 0);
    atomic_store(&stop, 1);
    long runs = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(workers[i], NULL);
        runs += atomic_load(&args[i].runs);
        AI3_EXPECT(atomic_load(&args[i].wrong) == 0, "worker %d: %ld wrong results", i,
                   atomic_load(&args[i].wrong));
        AI3_EXPECT(atomic_load(&args[i].failed) == 0, "worker %d: %ld failures", i,
                   atomic_load(&args[i].failed));
    }
    for (int j = 0; j < 2; j++)
        AI3_EXPECT(atomic_load(&ex[j].calls_when_dead) == 0,
                   "executor %d called %ld times after being released", j,
                   atomic_load(&ex[j].calls_when_dead));
    AI3_EXPECT(runs > 0, "the workers ran nothing");
    AI3_EXPECT(atomic_load(&ex[0].calls) + atomic_load(&ex[1].calls) > 0,
               "no loop ran on the executors");
    free(want.data);
    conv_case_free(&c);
    ai3_set_num_threads(threads);
}
