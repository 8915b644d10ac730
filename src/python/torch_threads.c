/*
 * Runs ai3's parallel loops on the OpenMP threads of PyTorch.
 *
 * The _core module's init calls ai3_py_install_torch_executor() (declared
 * there: int ai3_py_install_torch_executor(void);) once it has imported
 * torch, holding the GIL. PyTorch's wheels carry an OpenMP runtime (GNU's libgomp,
 * or LLVM's / Intel's, which provide the same GOMP_parallel entry point),
 * whose threads spin for a while after each torch operation; a second set of
 * threads (ai3's own pool) would then share the cores with spinning ones
 * (measured: a 1x1 conv2d of ResNet-50 ran 1.6x slower right after a torch
 * operation). On the same threads the spinning ones simply take the work.
 *
 * The runtime is found among the libraries the process has already loaded
 * (/proc/self/maps), opened with RTLD_NOLOAD and used through dlsym: the
 * extension does not link OpenMP, and never loads a runtime of its own.
 * AI3_THREAD_POOL=own keeps ai3's own pool.
 *
 * A forked child (DataLoader workers, multiprocessing's fork) has none of
 * its parent's OpenMP threads, and GNU's libgomp never returns from a
 * parallel region in a child whose parent ran one (torch's own operations
 * hang there too unless torch.set_num_threads(1), which DataLoader workers
 * call). So in a forked child ai3's loops run their tasks one after another
 * on the calling thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NOLOAD */
#endif
#include "ai3.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ai3_py_install_torch_executor(void);

typedef void (*gomp_parallel_fn)(void (*body)(void *), void *data, unsigned threads,
                                 unsigned flags);
typedef int (*omp_int_fn)(void);

/* The runtime's entry points, and the executor's context: found once and
 * kept for the life of the process. */
typedef struct {
    gomp_parallel_fn parallel;
    omp_int_fn max_threads;
} openmp_runtime;

static openmp_runtime runtime;

/* Set in a forked child (see above). */
static atomic_int forked;
static void note_fork(void) { atomic_store(&forked, 1); }
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
static void register_fork_handler(void) { pthread_atfork(NULL, NULL, note_fork); }

/* One ai3 loop on the OpenMP team: each thread of the team takes task
 * indices until none is left, so that a smaller team (a nested region gets
 * one thread) still runs every task. */
typedef struct {
    int64_t n_tasks;
    atomic_llong next;
    ai3_parallel_task_fn task;
    void *task_ctx;
} team_job;

static void team_body(void *data) {
    team_job *job = data;
    for (;;) {
        int64_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n_tasks) break;
        job->task(job->task_ctx, i);
    }
}

static void openmp_parallel_for(void *executor_ctx, int64_t n_tasks, ai3_parallel_task_fn task,
                                void *task_ctx) {
    const openmp_runtime *rt = executor_ctx;
    if (n_tasks == 1 || atomic_load_explicit(&forked, memory_order_relaxed)) {
        for (int64_t i = 0; i < n_tasks; i++) task(task_ctx, i);
        return;
    }
    team_job job = {.n_tasks = n_tasks, .task = task, .task_ctx = task_ctx};
    atomic_init(&job.next, 0);
    rt->parallel(team_body, &job, (unsigned)n_tasks, 0);
}

/* Finds the OpenMP runtime the process has loaded, without loading one. */
static int find_openmp(openmp_runtime *rt) {
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return 0;
    char line[4096];
    while (!rt->parallel && fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        if (!path || !(strstr(path, "libgomp") || strstr(path, "libiomp") || strstr(path, "libomp")))
            continue;
        path[strcspn(path, "\n")] = '\0';
        void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (!handle) continue;
        rt->parallel = (gomp_parallel_fn)dlsym(handle, "GOMP_parallel");
        rt->max_threads = (omp_int_fn)dlsym(handle, "omp_get_max_threads");
        if (!rt->parallel) {
            rt->max_threads = NULL;
            dlclose(handle);
        } /* else the handle stays open: the entry points stay valid */
    }
    fclose(maps);
    return rt->parallel != NULL;
}

/* Installs an executor running on the OpenMP threads of PyTorch, sized as
 * its team (omp_get_max_threads, as torch.get_num_threads); 1 if installed,
 * 0 if not (AI3_THREAD_POOL=own, no OpenMP runtime loaded, or a failure):
 * ai3 then keeps its own pool. Call it again to follow a new thread count. */
int ai3_py_install_torch_executor(void) {
    const char *choice = getenv("AI3_THREAD_POOL");
    if (choice && strcmp(choice, "own") == 0) return 0;
    if (!runtime.parallel && !find_openmp(&runtime)) return 0;
    pthread_once(&fork_handler_once, register_fork_handler);
    int threads = runtime.max_threads ? runtime.max_threads() : 0;
    if (threads < 1) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    return ai3_set_parallel_executor(openmp_parallel_for, &runtime, threads) == AI3_OK;
}
