/* Tensors for the C tests: allocation, element access, filling, comparing. */
#ifndef AI3_TEST_TENSORS_H
#define AI3_TEST_TENSORS_H

#include "ai3.h"

/* A zeroed CPU tensor (one spare element, so empty tensors have data);
 * free its data with free(). */
ai3_tensor test_tensor(ai3_dtype dtype, int ndim, const int64_t *shape);
double test_get(const ai3_tensor *t, int64_t i);
void test_set(ai3_tensor *t, int64_t i, double v);
/* Uniform in [-1, 1), from the harness's seeded generator. */
void test_fill_random(ai3_tensor *t);
/* NaN everywhere, so that an element an algorithm forgets to write shows. */
void test_fill_nan(ai3_tensor *t);
/* A test_tensor filled with test_fill_random. */
ai3_tensor test_random(ai3_dtype dtype, int ndim, const int64_t *shape);
/* A test_tensor filled with 1e30, for outputs (unwritten elements show). */
ai3_tensor test_output(ai3_dtype dtype, int ndim, const int64_t *shape);
/* Largest |a - b| over the largest |b| (NaN counts as infinite). */
double test_relative_error(const ai3_tensor *a, const ai3_tensor *b);
/* Counts elements differing by more than atol + rtol·|ref| (NaN must match
 * NaN) and reports the first few as failures of the running test. */
int64_t test_compare(const ai3_tensor *got, const ai3_tensor *ref, double atol, double rtol,
                     const char *what);
const char *test_dtype_name(ai3_dtype dtype); /* "f32" or "f64" */
/* The channel-block widths (8, 16) whose tiles this build has and this CPU
 * runs, into out; returns how many. */
int test_blocked_widths(int out[2]);

#endif
