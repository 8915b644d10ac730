#include "tensors.h"

#include <math.h>
#include <stdlib.h>

#include "harness.h"
#include "internal.h"
#include "runtime/multiversion.h"

ai3_tensor test_tensor(ai3_dtype dtype, int ndim, const int64_t *shape) {
    ai3_tensor t = {.dtype = dtype, .device = AI3_DEVICE_CPU, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    size_t elem = dtype == AI3_FLOAT64 ? sizeof(double) : sizeof(float);
    t.data = calloc((size_t)ai3_tensor_numel(&t) + 1, elem);
    return t;
}

double test_get(const ai3_tensor *t, int64_t i) {
    return t->dtype == AI3_FLOAT64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

void test_set(ai3_tensor *t, int64_t i, double v) {
    if (t->dtype == AI3_FLOAT64) ((double *)t->data)[i] = v;
    else ((float *)t->data)[i] = (float)v;
}

void test_fill_random(ai3_tensor *t) {
    for (int64_t i = 0; i < ai3_tensor_numel(t); i++) test_set(t, i, ai3_test_uniform());
}

void test_fill_nan(ai3_tensor *t) {
    for (int64_t i = 0; i < ai3_tensor_numel(t); i++) test_set(t, i, NAN);
}

ai3_tensor test_random(ai3_dtype dtype, int ndim, const int64_t *shape) {
    ai3_tensor t = test_tensor(dtype, ndim, shape);
    test_fill_random(&t);
    return t;
}

ai3_tensor test_output(ai3_dtype dtype, int ndim, const int64_t *shape) {
    ai3_tensor t = test_tensor(dtype, ndim, shape);
    for (int64_t i = 0; i < ai3_tensor_numel(&t); i++) test_set(&t, i, 1e30);
    return t;
}

double test_relative_error(const ai3_tensor *a, const ai3_tensor *b) {
    double scale = 1e-30, err = 0;
    for (int64_t i = 0; i < ai3_tensor_numel(b); i++) {
        scale = fmax(scale, fabs(test_get(b, i)));
        const double e = fabs(test_get(a, i) - test_get(b, i));
        err = e <= err ? err : (isnan(e) ? INFINITY : e);
    }
    return err / scale;
}

int64_t test_compare(const ai3_tensor *got, const ai3_tensor *ref, double atol, double rtol,
                     const char *what) {
    int64_t n = ai3_tensor_numel(ref), bad = 0;
    AI3_EXPECT(ai3_tensor_numel(got) == n, "%s: %lld elements, expected %lld", what,
               (long long)ai3_tensor_numel(got), (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double g = test_get(got, i), r = test_get(ref, i);
        int ok = isnan(r) ? isnan(g) : g == r || fabs(g - r) <= atol + rtol * fabs(r);
        if (!ok && bad++ < 3)
            AI3_EXPECT(0, "%s: element %lld is %.9g, expected %.9g", what, (long long)i, g, r);
    }
    return bad;
}

const char *test_dtype_name(ai3_dtype dtype) { return dtype == AI3_FLOAT64 ? "f64" : "f32"; }

int test_blocked_widths(int out[2]) {
    int k = 0;
    if (!AI3_MV_ENABLED) return 0; /* the tiles are multiversioned: GCC builds only */
    if (ai3_cpu_best_isa() >= AI3_ISA_AVX2) out[k++] = 8;
    if (ai3_cpu_best_isa() >= AI3_ISA_AVX512) out[k++] = 16;
    return k;
}
