/* The runtime: status strings, errors, the thread pool, the registry and the
 * padding helper shared by the conv2d algorithms. */
#include "ai3.h"
#include "harness.h"
#include "internal.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

AI3_TEST(runtime_status_strings_are_distinct) {
    const char *seen[6];
    for (int s = AI3_OK; s <= AI3_ERROR_INTERNAL; s++) {
        seen[s] = ai3_status_string((ai3_status)s);
        AI3_EXPECT(seen[s] && seen[s][0], "status %d has no string", s);
        for (int t = 0; t < s; t++) AI3_EXPECT(strcmp(seen[s], seen[t]) != 0, "dup string");
    }
}

AI3_TEST(runtime_set_error_formats_message) {
    ai3_status s = ai3_set_error(AI3_ERROR_UNSUPPORTED, "x=%d y=%s", 7, "z");
    AI3_EXPECT(s == AI3_ERROR_UNSUPPORTED, "returned %d", s);
    AI3_EXPECT(strcmp(ai3_last_error(), "x=7 y=z") == 0, "message '%s'", ai3_last_error());
}

static void add_range(void *ctx, int64_t begin, int64_t end) {
    atomic_long *counts = ctx;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&counts[i], 1);
}

AI3_TEST(runtime_parallel_for_covers_range_once) {
    static atomic_long counts[1000];
    for (int threads = 1; threads <= 4; threads++) {
        AI3_EXPECT(ai3_set_num_threads(threads) == AI3_OK, "set threads");
        AI3_EXPECT(ai3_get_num_threads() == threads, "get threads");
        for (int64_t n = 0; n < 1000; n += 97) {
            for (int i = 0; i < 1000; i++) atomic_store(&counts[i], 0);
            ai3_parallel_for(n, 1, add_range, counts);
            for (int64_t i = 0; i < 1000; i++)
                AI3_EXPECT(atomic_load(&counts[i]) == (i < n), "n=%lld i=%lld count=%ld",
                           (long long)n, (long long)i, atomic_load(&counts[i]));
        }
    }
    AI3_EXPECT(ai3_set_num_threads(0) == AI3_ERROR_INVALID_ARGUMENT, "0 threads accepted");
    AI3_EXPECT(ai3_last_error()[0], "no message");
    ai3_set_num_threads(2);
}

/* Loops back to back (the workers still spinning), and after pauses past
 * the spin (the workers blocked, woken by the next loop), by 2 and 3
 * threads: every index once. */
AI3_TEST(runtime_parallel_for_wakes_spinning_and_blocked_workers) {
    static atomic_long counts[64];
    for (int threads = 2; threads <= 3; threads++) {
        ai3_set_num_threads(threads);
        for (int loop = 0; loop < 300; loop++) {
            for (int i = 0; i < 64; i++) atomic_store(&counts[i], 0);
            if (loop % 50 == 49) {
                struct timespec pause = {0, 2000000}; /* 2 ms */
                nanosleep(&pause, NULL);
            }
            ai3_parallel_for(64, 1, add_range, counts);
            for (int i = 0; i < 64; i++)
                AI3_EXPECT(atomic_load(&counts[i]) == 1, "threads %d loop %d i %d count %ld",
                           threads, loop, i, atomic_load(&counts[i]));
        }
    }
    ai3_set_num_threads(2);
}

static void nested(void *ctx, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) ai3_parallel_for(10, 1, add_range, ctx);
}

AI3_TEST(runtime_nested_parallel_for_runs_serially) {
    static atomic_long counts[10];
    for (int i = 0; i < 10; i++) atomic_store(&counts[i], 0);
    ai3_parallel_for(5, 1, nested, counts);
    for (int i = 0; i < 10; i++) AI3_EXPECT(atomic_load(&counts[i]) == 5, "count %d", i);
}

AI3_TEST(runtime_registry_lists_builtins_and_defaults) {
    for (int op = 0; op < AI3_OP_COUNT; op++) {
        const char *names[32];
        int count = 0;
        AI3_EXPECT(ai3_list_algorithms((ai3_op)op, AI3_DEVICE_CPU, names, 32, &count) == AI3_OK, "list");
        AI3_EXPECT(count >= 1, "op %s has no algorithm", ai3_op_name((ai3_op)op));
        const char *def = ai3_default_algorithm((ai3_op)op);
        int found = 0;
        for (int i = 0; i < count; i++) found |= strcmp(names[i], def) == 0;
        AI3_EXPECT(found, "default '%s' of %s is not registered", def, ai3_op_name((ai3_op)op));
    }
    int count;
    AI3_EXPECT(ai3_list_algorithms(AI3_OP_COUNT, AI3_DEVICE_CPU, NULL, 0, &count) == AI3_ERROR_INVALID_ARGUMENT,
               "bad op accepted");
    AI3_EXPECT(ai3_op_name(AI3_OP_COUNT) == NULL, "name of bad op");
}

static int custom_calls;

static ai3_status negate_relu(const ai3_tensor *input, ai3_tensor *output) {
    custom_calls++;
    const float *x = input->data;
    float *y = output->data;
    for (int64_t i = 0; i < ai3_tensor_numel(input); i++) y[i] = -x[i];
    return AI3_OK;
}

static ai3_status failing_relu(const ai3_tensor *input, ai3_tensor *output) {
    return ai3_set_error(AI3_ERROR_UNSUPPORTED, "failing_relu: never works");
}

AI3_TEST(runtime_registry_runs_registered_algorithm) {
    float x[4] = {1, -2, 3, -4}, y[4] = {0};
    ai3_tensor in = {.data = x, .dtype = AI3_FLOAT32, .ndim = 1, .shape = {4}};
    ai3_tensor out = {.data = y, .dtype = AI3_FLOAT32, .ndim = 1, .shape = {4}};
    AI3_EXPECT(ai3_relu("custom", &in, &out) == AI3_ERROR_UNKNOWN_ALGORITHM, "unregistered ran");
    AI3_EXPECT(strstr(ai3_last_error(), "custom"), "message '%s'", ai3_last_error());
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "custom", AI3_DEVICE_CPU,
                                      (ai3_algorithm_fn)negate_relu) == AI3_OK, "register");
    custom_calls = 0;
    AI3_EXPECT(ai3_relu("custom", &in, &out) == AI3_OK, "custom failed: %s", ai3_last_error());
    AI3_EXPECT(custom_calls == 1 && y[0] == -1 && y[3] == 4, "custom not called");
    const char *names[32];
    int count = 0;
    ai3_list_algorithms(AI3_OP_RELU, AI3_DEVICE_CPU, names, 32, &count);
    AI3_EXPECT(strcmp(names[count - 1], "custom") == 0, "not listed");

    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "bad", AI3_DEVICE_CPU,
                                      (ai3_algorithm_fn)failing_relu) == AI3_OK, "register");
    AI3_EXPECT(ai3_relu("bad", &in, &out) == AI3_ERROR_UNSUPPORTED, "status not passed on");
    AI3_EXPECT(strcmp(ai3_last_error(), "failing_relu: never works") == 0, "message");

    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "direct", AI3_DEVICE_CPU,
                                      (ai3_algorithm_fn)negate_relu) == AI3_ERROR_INVALID_ARGUMENT,
               "built-in replaced");
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "default", AI3_DEVICE_CPU,
                                      (ai3_algorithm_fn)negate_relu) == AI3_ERROR_INVALID_ARGUMENT,
               "default replaced");
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "", AI3_DEVICE_CPU,
                                      (ai3_algorithm_fn)negate_relu) == AI3_ERROR_INVALID_ARGUMENT,
               "empty name");
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "x", AI3_DEVICE_CPU, NULL) ==
                   AI3_ERROR_INVALID_ARGUMENT, "NULL fn");
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "x", (ai3_device)9,
                                      (ai3_algorithm_fn)negate_relu) == AI3_ERROR_INVALID_ARGUMENT,
               "unknown device");
    AI3_EXPECT(ai3_unregister_algorithm(AI3_OP_RELU, "custom") == AI3_OK, "unregister");
    AI3_EXPECT(ai3_unregister_algorithm(AI3_OP_RELU, "bad") == AI3_OK, "unregister");
    AI3_EXPECT(ai3_unregister_algorithm(AI3_OP_RELU, "custom") == AI3_ERROR_UNKNOWN_ALGORITHM,
               "double unregister");
    AI3_EXPECT(ai3_relu("custom", &in, &out) == AI3_ERROR_UNKNOWN_ALGORITHM, "still registered");
}

AI3_TEST(runtime_load_algorithms_reports_bad_paths) {
    AI3_EXPECT(ai3_load_algorithms("/nonexistent/libnothing.so") == AI3_ERROR_INVALID_ARGUMENT,
               "loaded nothing");
    AI3_EXPECT(strstr(ai3_last_error(), "libnothing"), "message '%s'", ai3_last_error());
    AI3_EXPECT(ai3_load_algorithms(NULL) == AI3_ERROR_INVALID_ARGUMENT, "NULL path");
}

AI3_TEST(runtime_pad_source_index_matches_modes) {
    /* axis of 4 elements padded by 2 before: padded index 0..7 */
    const int64_t reflect[] = {2, 1, 0, 1, 2, 3, 2, 1};
    const int64_t replicate[] = {0, 0, 0, 1, 2, 3, 3, 3};
    const int64_t circular[] = {2, 3, 0, 1, 2, 3, 0, 1};
    const int64_t zeros[] = {-1, -1, 0, 1, 2, 3, -1, -1};
    for (int i = 0; i < 8; i++) {
        AI3_EXPECT(ai3_pad_source_index(i, 4, 2, AI3_PADDING_REFLECT) == reflect[i], "reflect %d", i);
        AI3_EXPECT(ai3_pad_source_index(i, 4, 2, AI3_PADDING_REPLICATE) == replicate[i], "replicate %d", i);
        AI3_EXPECT(ai3_pad_source_index(i, 4, 2, AI3_PADDING_CIRCULAR) == circular[i], "circular %d", i);
        AI3_EXPECT(ai3_pad_source_index(i, 4, 2, AI3_PADDING_ZEROS) == zeros[i], "zeros %d", i);
    }
}

AI3_TEST(runtime_tensor_checks_reject_bad_descriptors) {
    float x[4] = {0};
    ai3_tensor out = {.data = x, .dtype = AI3_FLOAT32, .ndim = 1, .shape = {4}};
    ai3_tensor bad = out;
    bad.dtype = (ai3_dtype)7;
    AI3_EXPECT(ai3_relu("direct", &bad, &out) == AI3_ERROR_INVALID_ARGUMENT, "dtype code");
    bad = out;
    bad.device = (ai3_device)5;
    AI3_EXPECT(ai3_relu("direct", &bad, &out) == AI3_ERROR_INVALID_ARGUMENT, "device code");
    /* CUDA tensors are valid, but no built-in relu runs on them */
    ai3_tensor cuda_out = out;
    cuda_out.device = AI3_DEVICE_CUDA;
    bad = cuda_out;
    AI3_EXPECT(ai3_relu("direct", &bad, &cuda_out) == AI3_ERROR_UNSUPPORTED, "cuda");
    AI3_EXPECT(strstr(ai3_last_error(), "cuda"), "message '%s'", ai3_last_error());
    AI3_EXPECT(ai3_relu("direct", &bad, &out) == AI3_ERROR_INVALID_ARGUMENT, "mixed devices");
    bad = out;
    bad.data = NULL;
    AI3_EXPECT(ai3_relu("direct", &bad, &out) == AI3_ERROR_INVALID_ARGUMENT, "NULL data");
    bad = out;
    bad.ndim = 9;
    AI3_EXPECT(ai3_relu("direct", &bad, &out) == AI3_ERROR_INVALID_ARGUMENT, "ndim");
    bad = out;
    bad.shape[0] = -1;
    AI3_EXPECT(ai3_relu("direct", &bad, &out) == AI3_ERROR_INVALID_ARGUMENT, "negative size");
    AI3_EXPECT(ai3_relu("direct", NULL, &out) == AI3_ERROR_INVALID_ARGUMENT, "NULL tensor");
    AI3_EXPECT(ai3_relu("direct", &out, NULL) == AI3_ERROR_INVALID_ARGUMENT, "NULL output");
    AI3_EXPECT(ai3_relu(NULL, &out, &out) == AI3_ERROR_INVALID_ARGUMENT, "NULL algorithm");
}
