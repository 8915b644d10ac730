#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TESTS 512

static struct {
    const char *name;
    ai3_test_fn fn;
} tests[MAX_TESTS];
static int n_tests;
static int current_failures;
static uint64_t rng_state;

void ai3_test_register(const char *name, ai3_test_fn fn) {
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void ai3_test_fail(const char *file, int line, const char *fmt, ...) {
    if (current_failures < 5) { /* enough to diagnose, not a flood */
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "    %s:%d: ", file, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    current_failures++;
}

uint64_t ai3_test_rand(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int64_t ai3_test_randint(int64_t lo, int64_t hi) {
    return lo + (int64_t)(ai3_test_rand() % (uint64_t)(hi - lo + 1));
}

double ai3_test_uniform(void) { return (double)(ai3_test_rand() >> 11) * 0x1.0p-52 - 1.0; }

static int by_name(const void *a, const void *b) {
    return strcmp(((const char *const *)a)[0], ((const char *const *)b)[0]);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *env_seed = getenv("AI3_TEST_SEED");
    uint64_t seed = env_seed ? strtoull(env_seed, NULL, 10) : 20261125u;
    int passed = 0, failed = 0;
    qsort(tests, (size_t)n_tests, sizeof tests[0], by_name);
    printf("ai3 C tests, seed %llu (set AI3_TEST_SEED to change)\n", (unsigned long long)seed);
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        current_failures = 0;
        rng_state = seed ^ (0x51ED2701ull * (uint64_t)(i + 1));
        tests[i].fn();
        printf("%s %s\n", current_failures ? "FAIL" : "ok  ", tests[i].name);
        fflush(stdout);
        if (current_failures) failed++;
        else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed || passed == 0 ? 1 : 0;
}
