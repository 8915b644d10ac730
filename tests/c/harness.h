/*
 * A tiny test harness. Write
 *
 *     AI3_TEST(conv2d_direct_matches_reference) { ... AI3_EXPECT(cond, "fmt", ...); }
 *
 * in any file under tests/c/; tests register themselves at load time and
 * main() (test_main.c) runs them all and prints "N passed, N failed".
 * AI3_TEST_SEED (environment) fixes the random seed; it is printed.
 */
#ifndef AI3_TEST_HARNESS_H
#define AI3_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>

typedef void (*ai3_test_fn)(void);
void ai3_test_register(const char *name, ai3_test_fn fn);
/* Records a failure of the running test (does not stop it). */
void ai3_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define AI3_TEST(name)                                                        \
    static void name(void);                                                   \
    __attribute__((constructor)) static void name##_register(void) {          \
        ai3_test_register(#name, name);                                       \
    }                                                                         \
    static void name(void)

#define AI3_EXPECT(cond, ...)                                                 \
    do {                                                                      \
        if (!(cond)) ai3_test_fail(__FILE__, __LINE__, __VA_ARGS__);          \
    } while (0)

/* Expects `call` to return status `want` with a message set (ai3.h). */
#define AI3_EXPECT_STATUS(call, want)                                                  \
    do {                                                                               \
        ai3_status got_ = (call);                                                      \
        AI3_EXPECT(got_ == (want) && ai3_last_error()[0] != '\0',                      \
                   "%s gave %s (\"%s\"), expected %s", #call, ai3_status_string(got_), \
                   ai3_last_error(), ai3_status_string(want));                         \
    } while (0)

/* Deterministic random numbers for the running test (seeded per test). */
uint64_t ai3_test_rand(void);
/* Uniform integer in [lo, hi]. */
int64_t ai3_test_randint(int64_t lo, int64_t hi);
/* Uniform double in [-1, 1). */
double ai3_test_uniform(void);

#endif
