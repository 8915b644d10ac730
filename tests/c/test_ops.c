/* Every operation except conv2d, through the public API, against the slow
 * references of src/ref/ on random inputs and randomly drawn valid
 * parameters, for each algorithm name and dtype; then bad arguments, which
 * must give the right status and a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ai3.h"
#include "ref/ref.h"
#include "harness.h"
#include "tensors.h"
#include "internal.h"

/* ---- tensors ------------------------------------------------------------ */

/* The same memory seen as (N, C, H, W), N = 1 for an unbatched (C, H, W). */
static ai3_tensor as_4d(const ai3_tensor *t) {
    ai3_tensor v = *t;
    if (t->ndim == 3) {
        v.ndim = 4;
        v.shape[0] = 1;
        for (int i = 0; i < 3; i++) v.shape[i + 1] = t->shape[i];
    }
    return v;
}

static const ai3_dtype dtypes[] = {AI3_FLOAT32, AI3_FLOAT64};

/* ---- linear ------------------------------------------------------------- */

AI3_TEST(ops_linear_matches_reference) {
    const char *algos[] = {"gemm", "default"};
    for (int t = 0; t < 120; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int64_t in = ai3_test_randint(1, t % 7 == 0 ? 1200 : 300);
        int64_t out = ai3_test_randint(1, 200);
        int ndim = (int)ai3_test_randint(1, 4);
        int64_t ishape[AI3_MAX_DIMS];
        for (int i = 0; i < ndim - 1; i++) ishape[i] = ai3_test_randint(1, 5);
        if (ndim == 2) ishape[0] = ai3_test_randint(1, t % 3 == 0 ? 300 : 40);
        ishape[ndim - 1] = in;
        int has_bias = ai3_test_randint(0, 3) != 0;

        ai3_tensor x = test_random(dt, ndim, ishape);
        ai3_tensor w = test_random(dt, 2, (int64_t[]){out, in});
        ai3_tensor b = test_random(dt, 1, (int64_t[]){out});
        int ondim;
        int64_t oshape[AI3_MAX_DIMS];
        ai3_status s = ai3_linear_output_shape(&x, &w, &ondim, oshape);
        AI3_EXPECT(s == AI3_OK && ondim == ndim && oshape[ndim - 1] == out,
                   "linear output shape: %s", ai3_last_error());
        ai3_tensor y = test_output(dt, ondim, oshape), ref = test_tensor(dt, ondim, oshape);
        s = ai3_linear(algo, &x, &w, has_bias ? &b : NULL, &y);
        AI3_EXPECT(s == AI3_OK, "linear %s: %s", algo, ai3_last_error());
        if (dt == AI3_FLOAT64)
            ai3_ref_linear_f64(&x, &w, has_bias ? &b : NULL, &ref);
        else
            ai3_ref_linear_f32(&x, &w, has_bias ? &b : NULL, &ref);
        /* Rounding of a length-`in` dot product of terms below 1. */
        double tol = (dt == AI3_FLOAT64 ? 1e-15 : 1e-6) * (double)(in + 4);
        char what[160];
        snprintf(what, sizeof what, "linear %s %s ndim=%d in=%lld out=%lld bias=%d", algo,
                 test_dtype_name(dt), ndim, (long long)in, (long long)out, has_bias);
        test_compare(&y, &ref, tol, 0, what);
        free(x.data), free(w.data), free(b.data), free(y.data), free(ref.data);
    }
}

/* ---- pooling ------------------------------------------------------------ */

/* Draws valid pooling parameters and a 3-d or 4-d input size that fits. */
static ai3_pool2d_params random_pool(int is_max, int *ndim, int64_t shape[4]) {
    ai3_pool2d_params p = ai3_pool2d_params_default(ai3_test_randint(1, 5), ai3_test_randint(1, 5));
    p.stride_h = ai3_test_randint(1, 4);
    p.stride_w = ai3_test_randint(1, 4);
    if (is_max && ai3_test_randint(0, 2) == 0) {
        p.dilation_h = ai3_test_randint(1, 3);
        p.dilation_w = ai3_test_randint(1, 3);
    }
    int64_t ext_h = p.dilation_h * (p.kernel_h - 1) + 1;
    int64_t ext_w = p.dilation_w * (p.kernel_w - 1) + 1;
    /* torch bounds padding by half the kernel, not the dilated extent */
    p.pad_h = ai3_test_randint(0, p.kernel_h / 2);
    p.pad_w = ai3_test_randint(0, p.kernel_w / 2);
    p.ceil_mode = (int)ai3_test_randint(0, 1);
    if (!is_max) {
        p.count_include_pad = (int)ai3_test_randint(0, 1);
        if (ai3_test_randint(0, 3) == 0) p.divisor_override = ai3_test_randint(1, 12);
    }
    int64_t h = AI3_MAX(1, ext_h - 2 * p.pad_h) + ai3_test_randint(0, 14);
    int64_t w = AI3_MAX(1, ext_w - 2 * p.pad_w) + ai3_test_randint(0, 14);
    *ndim = ai3_test_randint(0, 3) == 0 ? 3 : 4;
    int i = 0;
    if (*ndim == 4) shape[i++] = ai3_test_randint(1, 3);
    shape[i++] = ai3_test_randint(1, 5);
    shape[i++] = h;
    shape[i++] = w;
    return p;
}

static void pool_sweep(int is_max) {
    const char *algos[] = {"direct", "default"};
    const char *op = is_max ? "maxpool2d" : "avgpool2d";
    for (int t = 0; t < 400; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int ndim;
        int64_t shape[4];
        ai3_pool2d_params p = random_pool(is_max, &ndim, shape);
        ai3_tensor x = test_random(dt, ndim, shape);
        int ondim;
        int64_t oshape[AI3_MAX_DIMS];
        ai3_status s = is_max ? ai3_maxpool2d_output_shape(&x, &p, &ondim, oshape)
                              : ai3_avgpool2d_output_shape(&x, &p, &ondim, oshape);
        AI3_EXPECT(s == AI3_OK && ondim == ndim, "%s output shape: %s", op, ai3_last_error());
        if (s != AI3_OK) {
            free(x.data);
            continue;
        }
        ai3_tensor y = test_output(dt, ondim, oshape), ref = test_tensor(dt, ondim, oshape);
        s = is_max ? ai3_maxpool2d(algo, &x, &p, &y) : ai3_avgpool2d(algo, &x, &p, &y);
        AI3_EXPECT(s == AI3_OK, "%s %s: %s", op, algo, ai3_last_error());
        ai3_tensor x4 = as_4d(&x), r4 = as_4d(&ref);
        if (is_max)
            (dt == AI3_FLOAT64 ? ai3_ref_maxpool2d_f64 : ai3_ref_maxpool2d_f32)(&x4, &p, &r4);
        else
            (dt == AI3_FLOAT64 ? ai3_ref_avgpool2d_f64 : ai3_ref_avgpool2d_f32)(&x4, &p, &r4);
        char what[256];
        snprintf(what, sizeof what,
                 "%s %s %s in=%lldx%lld k=%lldx%lld s=%lldx%lld p=%lldx%lld d=%lldx%lld ceil=%d "
                 "incl=%d div=%lld",
                 op, algo, test_dtype_name(dt), (long long)shape[ndim - 2], (long long)shape[ndim - 1],
                 (long long)p.kernel_h, (long long)p.kernel_w, (long long)p.stride_h,
                 (long long)p.stride_w, (long long)p.pad_h, (long long)p.pad_w,
                 (long long)p.dilation_h, (long long)p.dilation_w, p.ceil_mode,
                 p.count_include_pad, (long long)p.divisor_override);
        /* A max is one of the inputs, exactly. A window sum of n terms below 1
         * is off by at most n·eps·n, and the divisor is at least 1. */
        double n = (double)(p.kernel_h * p.kernel_w);
        double tol = is_max ? 0 : n * n * (dt == AI3_FLOAT64 ? 0x1p-53 : 0x1p-24);
        test_compare(&y, &ref, tol, 0, what);
        free(x.data), free(y.data), free(ref.data);
    }
}

AI3_TEST(ops_maxpool2d_matches_reference) { pool_sweep(1); }
AI3_TEST(ops_avgpool2d_matches_reference) { pool_sweep(0); }

/* Output sizes as torch.nn.functional.max_pool2d gives them, including
 * ceil_mode's rule that the last window must start inside the input or the
 * left padding (e.g. size 4, kernel 4, stride 3, padding 2: 2, not 3). */
AI3_TEST(ops_pool2d_output_size_cases) {
    static const struct {
        int64_t size, k, s, p, d;
        int ceil;
        int64_t out;
    } cases[] = {
        {7, 2, 2, 0, 1, 0, 3}, {7, 2, 2, 0, 1, 1, 4}, {6, 2, 2, 0, 1, 1, 3},
        {5, 3, 2, 1, 1, 1, 3}, {6, 3, 2, 1, 1, 1, 4}, {6, 3, 3, 1, 1, 1, 3},
        {112, 3, 2, 1, 1, 0, 56}, {10, 3, 1, 0, 2, 0, 6}, {4, 4, 3, 2, 1, 1, 2},
        {1, 1, 1, 0, 1, 0, 1},   {5, 2, 4, 1, 1, 1, 2}, {2, 3, 3, 1, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ai3_pool2d_params p = ai3_pool2d_params_default(cases[i].k, 1);
        p.stride_h = cases[i].s;
        p.stride_w = 1;
        p.pad_h = cases[i].p;
        p.dilation_h = cases[i].d;
        p.ceil_mode = cases[i].ceil;
        ai3_tensor x = {.dtype = AI3_FLOAT32, .ndim = 3, .shape = {1, cases[i].size, 3}};
        float dummy = 0;
        x.data = &dummy;
        int ndim;
        int64_t shape[AI3_MAX_DIMS];
        ai3_status s = ai3_maxpool2d_output_shape(&x, &p, &ndim, shape);
        AI3_EXPECT(s == AI3_OK && shape[1] == cases[i].out,
                   "case %zu: size %lld k %lld s %lld p %lld d %lld ceil %d: got %lld, want %lld",
                   i, (long long)cases[i].size, (long long)cases[i].k, (long long)cases[i].s,
                   (long long)cases[i].p, (long long)cases[i].d, cases[i].ceil,
                   (long long)shape[1], (long long)cases[i].out);
    }
}

AI3_TEST(ops_adaptiveavgpool2d_matches_reference) {
    const char *algos[] = {"direct", "default"};
    for (int t = 0; t < 200; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int ndim = ai3_test_randint(0, 3) == 0 ? 3 : 4;
        int64_t shape[4];
        int i = 0;
        if (ndim == 4) shape[i++] = ai3_test_randint(1, 3);
        shape[i++] = ai3_test_randint(1, 5);
        shape[i++] = ai3_test_randint(1, 20);
        shape[i++] = ai3_test_randint(1, 20);
        int64_t oh = ai3_test_randint(1, 12), ow = ai3_test_randint(1, 12);
        ai3_tensor x = test_random(dt, ndim, shape);
        int ondim;
        int64_t oshape[AI3_MAX_DIMS];
        ai3_status s = ai3_adaptiveavgpool2d_output_shape(&x, oh, ow, &ondim, oshape);
        AI3_EXPECT(s == AI3_OK && ondim == ndim && oshape[ndim - 2] == oh &&
                       oshape[ndim - 1] == ow,
                   "adaptiveavgpool2d output shape: %s", ai3_last_error());
        ai3_tensor y = test_output(dt, ondim, oshape), ref = test_tensor(dt, ondim, oshape);
        s = ai3_adaptiveavgpool2d(algo, &x, oh, ow, &y);
        AI3_EXPECT(s == AI3_OK, "adaptiveavgpool2d %s: %s", algo, ai3_last_error());
        ai3_tensor x4 = as_4d(&x), r4 = as_4d(&ref);
        (dt == AI3_FLOAT64 ? ai3_ref_adaptiveavgpool2d_f64 : ai3_ref_adaptiveavgpool2d_f32)(&x4,
                                                                                          &r4);
        char what[160];
        snprintf(what, sizeof what, "adaptiveavgpool2d %s %s %lldx%lld -> %lldx%lld", algo,
                 test_dtype_name(dt), (long long)shape[ndim - 2], (long long)shape[ndim - 1],
                 (long long)oh, (long long)ow);
        test_compare(&y, &ref, dt == AI3_FLOAT64 ? 1e-14 : 1e-6, 0, what);
        free(x.data), free(y.data), free(ref.data);
    }
}

/* ---- relu and flatten ---------------------------------------------------- */

static int random_shape(int64_t *shape, int64_t max_numel) {
    int ndim = (int)ai3_test_randint(0, 5);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = ai3_test_randint(1, AI3_MAX(1, AI3_MIN(9, max_numel / numel)));
        numel *= shape[i];
    }
    return ndim;
}

AI3_TEST(ops_relu_matches_reference) {
    const char *algos[] = {"direct", "default"};
    for (int t = 0; t < 60; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int64_t shape[AI3_MAX_DIMS];
        int ndim = random_shape(shape, 4000);
        if (t % 10 == 0) { /* big enough for several threads */
            ndim = 2;
            shape[0] = 300;
            shape[1] = 1000 + t;
        }
        ai3_tensor x = test_random(dt, ndim, shape);
        int64_t n = ai3_tensor_numel(&x);
        /* Special values: NaN, infinities, signed zeros. */
        const double specials[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0};
        for (int k = 0; k < 5 && n > 1; k++) test_set(&x, ai3_test_randint(0, n - 1), specials[k]);
        ai3_tensor ref = test_tensor(dt, ndim, shape);
        (dt == AI3_FLOAT64 ? ai3_ref_relu_f64 : ai3_ref_relu_f32)(&x, &ref);
        char what[96];
        snprintf(what, sizeof what, "relu %s %s numel=%lld", algo, test_dtype_name(dt), (long long)n);
        if (t % 3 == 0) { /* in place */
            AI3_EXPECT(ai3_relu(algo, &x, &x) == AI3_OK, "relu in place: %s", ai3_last_error());
            test_compare(&x, &ref, 0, 0, what);
        } else {
            ai3_tensor y = test_output(dt, ndim, shape);
            AI3_EXPECT(ai3_relu(algo, &x, &y) == AI3_OK, "relu: %s", ai3_last_error());
            test_compare(&y, &ref, 0, 0, what);
            free(y.data);
        }
        free(x.data), free(ref.data);
    }
}

AI3_TEST(ops_relu_propagates_nan) {
    for (int d = 0; d < 2; d++) {
        ai3_tensor x = test_tensor(dtypes[d], 1, (int64_t[]){40});
        for (int64_t i = 0; i < 40; i++) test_set(&x, i, i % 2 ? NAN : -1.0 - (double)i);
        AI3_EXPECT(ai3_relu("direct", &x, &x) == AI3_OK, "relu: %s", ai3_last_error());
        for (int64_t i = 0; i < 40; i++)
            AI3_EXPECT(i % 2 ? isnan(test_get(&x, i)) : test_get(&x, i) == 0, "relu %s element %lld = %g",
                       test_dtype_name(dtypes[d]), (long long)i, test_get(&x, i));
        free(x.data);
    }
}

AI3_TEST(ops_flatten_matches_reference) {
    const char *algos[] = {"direct", "default"};
    for (int t = 0; t < 80; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int64_t shape[AI3_MAX_DIMS];
        int ndim = random_shape(shape, 5000);
        if (t % 10 == 0) {
            ndim = 4;
            shape[0] = 2, shape[1] = 64, shape[2] = 90, shape[3] = 90 + t;
        }
        int span = AI3_MAX(ndim, 1);
        int start = (int)ai3_test_randint(0, span - 1);
        int end = (int)ai3_test_randint(start, span - 1);
        if (ai3_test_randint(0, 1)) start -= span; /* negative dims count from the end */
        if (ai3_test_randint(0, 1)) end -= span;
        ai3_tensor x = test_random(dt, ndim, shape);
        int ondim;
        int64_t oshape[AI3_MAX_DIMS];
        ai3_status s = ai3_flatten_output_shape(&x, start, end, &ondim, oshape);
        AI3_EXPECT(s == AI3_OK, "flatten ndim=%d start=%d end=%d: %s", ndim, start, end,
                   ai3_last_error());
        if (s != AI3_OK) {
            free(x.data);
            continue;
        }
        ai3_tensor y = test_output(dt, ondim, oshape), ref = test_tensor(dt, ondim, oshape);
        AI3_EXPECT(ai3_flatten(algo, &x, start, end, &y) == AI3_OK, "flatten: %s",
                   ai3_last_error());
        (dt == AI3_FLOAT64 ? ai3_ref_flatten_f64 : ai3_ref_flatten_f32)(&x, &ref);
        char what[96];
        snprintf(what, sizeof what, "flatten %s %s ndim=%d %d..%d", algo, test_dtype_name(dt), ndim,
                 start, end);
        test_compare(&y, &ref, 0, 0, what);
        /* Output aliasing the input: the data must come through unchanged. */
        ai3_tensor alias = y;
        alias.data = x.data;
        AI3_EXPECT(ai3_flatten(algo, &x, start, end, &alias) == AI3_OK, "flatten in place: %s",
                   ai3_last_error());
        test_compare(&alias, &ref, 0, 0, what);
        free(x.data), free(y.data), free(ref.data);
    }
}

/* ---- bad arguments --------------------------------------------------------
 * Each must return `want` and leave a message (the previous one is cleared
 * first, so the message is this call's). */

static void clear_error(void) { ai3_set_error(AI3_ERROR_INTERNAL, "%s", ""); }

#define EXPECT_FAILS(want, call)                                                          \
    do {                                                                                  \
        clear_error();                                                                    \
        ai3_status got_ = (call);                                                         \
        AI3_EXPECT(got_ == (want), "%s: got status %d (%s), want %d", #call, (int)got_,    \
                   ai3_last_error(), (int)(want));                                        \
        AI3_EXPECT(ai3_last_error()[0] != '\0', "%s: no error message", #call);           \
    } while (0)

AI3_TEST(ops_linear_rejects_bad_arguments) {
    const ai3_status INVALID = AI3_ERROR_INVALID_ARGUMENT;
    ai3_tensor x = test_random(AI3_FLOAT32, 2, (int64_t[]){3, 5});
    ai3_tensor w = test_random(AI3_FLOAT32, 2, (int64_t[]){4, 5});
    ai3_tensor b = test_random(AI3_FLOAT32, 1, (int64_t[]){4});
    ai3_tensor y = test_tensor(AI3_FLOAT32, 2, (int64_t[]){3, 4});
    AI3_EXPECT(ai3_linear("gemm", &x, &w, &b, &y) == AI3_OK, "valid call: %s", ai3_last_error());

    ai3_tensor scalar = x;
    scalar.ndim = 0;
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &scalar, &w, &b, &y));
    ai3_tensor w1 = w;
    w1.ndim = 1;
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w1, &b, &y));
    ai3_tensor w3 = w;
    w3.ndim = 3;
    w3.shape[2] = 1;
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w3, &b, &y));
    ai3_tensor x_mismatch = test_random(AI3_FLOAT32, 2, (int64_t[]){3, 6});
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x_mismatch, &w, &b, &y));
    ai3_tensor b_long = test_random(AI3_FLOAT32, 1, (int64_t[]){5});
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w, &b_long, &y));
    ai3_tensor b_2d = b;
    b_2d.ndim = 2;
    b_2d.shape[0] = 1, b_2d.shape[1] = 4;
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w, &b_2d, &y));
    ai3_tensor y_bad = y;
    y_bad.shape[1] = 5;
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w, &b, &y_bad));
    ai3_tensor y_rank = y;
    y_rank.ndim = 1;
    y_rank.shape[0] = 12;
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w, &b, &y_rank));
    ai3_tensor w64 = test_random(AI3_FLOAT64, 2, (int64_t[]){4, 5});
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w64, &b, &y));
    ai3_tensor b64 = test_random(AI3_FLOAT64, 1, (int64_t[]){4});
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w, &b64, &y));
    ai3_tensor y64 = test_tensor(AI3_FLOAT64, 2, (int64_t[]){3, 4});
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &x, &w, &b, &y64));
    ai3_tensor null_data = x;
    null_data.data = NULL;
    EXPECT_FAILS(INVALID, ai3_linear("gemm", &null_data, &w, &b, &y));
    EXPECT_FAILS(INVALID, ai3_linear("gemm", NULL, &w, &b, &y));
    EXPECT_FAILS(AI3_ERROR_UNKNOWN_ALGORITHM, ai3_linear("no such algorithm", &x, &w, &b, &y));
    EXPECT_FAILS(AI3_ERROR_UNKNOWN_ALGORITHM, ai3_linear("direct", &x, &w, &b, &y));
    free(x.data), free(w.data), free(b.data), free(y.data), free(x_mismatch.data);
    free(b_long.data), free(w64.data), free(b64.data), free(y64.data);
}

AI3_TEST(ops_pool2d_rejects_bad_arguments) {
    const ai3_status INVALID = AI3_ERROR_INVALID_ARGUMENT;
    ai3_tensor x = test_random(AI3_FLOAT64, 4, (int64_t[]){2, 3, 8, 8});
    ai3_tensor y = test_tensor(AI3_FLOAT64, 4, (int64_t[]){2, 3, 4, 4});
    ai3_pool2d_params good = ai3_pool2d_params_default(2, 2);
    AI3_EXPECT(ai3_maxpool2d("direct", &x, &good, &y) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(ai3_avgpool2d("direct", &x, &good, &y) == AI3_OK, "%s", ai3_last_error());

    for (int is_max = 0; is_max < 2; is_max++) {
#define POOL(params, in, out)                                                             \
    (is_max ? ai3_maxpool2d("direct", (in), (params), (out))                               \
            : ai3_avgpool2d("direct", (in), (params), (out)))
        ai3_tensor x2 = x;
        x2.ndim = 2;
        x2.shape[0] = 8, x2.shape[1] = 8;
        EXPECT_FAILS(INVALID, POOL(&good, &x2, &y));
        ai3_tensor x5 = x;
        x5.ndim = 5;
        x5.shape[0] = 1, x5.shape[1] = 2, x5.shape[2] = 3, x5.shape[3] = 8, x5.shape[4] = 8;
        EXPECT_FAILS(INVALID, POOL(&good, &x5, &y));
        ai3_pool2d_params p = good;
        p.kernel_h = 0;
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        p = good;
        p.kernel_w = -2;
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        p = good;
        p.stride_h = 0;
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        p = good;
        p.stride_w = -1;
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        p = good;
        p.pad_h = 2; /* more than half of a 2-wide kernel */
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        p = good;
        p.dilation_h = 3;
        p.pad_h = 2; /* half the dilated extent (4 / 2), but torch allows kernel / 2 = 1 */
        if (is_max) {
            int nd;
            int64_t shape[AI3_MAX_DIMS];
            EXPECT_FAILS(INVALID, ai3_maxpool2d_output_shape(&x, &p, &nd, shape));
        }
        p = good;
        p.pad_w = -1;
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        p = good;
        p.dilation_w = 0;
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        p = ai3_pool2d_params_default(9, 9); /* bigger than the 8×8 input */
        EXPECT_FAILS(INVALID, POOL(&p, &x, &y));
        ai3_tensor y_bad = y;
        y_bad.shape[3] = 5;
        EXPECT_FAILS(INVALID, POOL(&good, &x, &y_bad));
        ai3_tensor y_unbatched = y;
        y_unbatched.ndim = 3;
        y_unbatched.shape[0] = 3, y_unbatched.shape[1] = 4, y_unbatched.shape[2] = 4;
        EXPECT_FAILS(INVALID, POOL(&good, &x, &y_unbatched));
        ai3_tensor y32 = y;
        y32.dtype = AI3_FLOAT32;
        EXPECT_FAILS(INVALID, POOL(&good, &x, &y32));
        EXPECT_FAILS(INVALID, POOL(NULL, &x, &y));
        EXPECT_FAILS(AI3_ERROR_UNKNOWN_ALGORITHM,
                     is_max ? ai3_maxpool2d("winograd", &x, &good, &y)
                            : ai3_avgpool2d("winograd", &x, &good, &y));
#undef POOL
    }
    ai3_pool2d_params p = good;
    p.dilation_h = 2; /* avgpool2d has no dilation */
    EXPECT_FAILS(INVALID, ai3_avgpool2d("direct", &x, &p, &y));
    p = good;
    p.divisor_override = -3;
    EXPECT_FAILS(INVALID, ai3_avgpool2d("direct", &x, &p, &y));
    free(x.data), free(y.data);
}

AI3_TEST(ops_adaptive_relu_flatten_reject_bad_arguments) {
    const ai3_status INVALID = AI3_ERROR_INVALID_ARGUMENT;
    ai3_tensor x = test_random(AI3_FLOAT32, 4, (int64_t[]){1, 2, 7, 7});
    ai3_tensor y = test_tensor(AI3_FLOAT32, 4, (int64_t[]){1, 2, 3, 3});
    AI3_EXPECT(ai3_adaptiveavgpool2d("direct", &x, 3, 3, &y) == AI3_OK, "%s", ai3_last_error());
    EXPECT_FAILS(INVALID, ai3_adaptiveavgpool2d("direct", &x, 0, 3, &y));
    EXPECT_FAILS(INVALID, ai3_adaptiveavgpool2d("direct", &x, 3, -1, &y));
    EXPECT_FAILS(INVALID, ai3_adaptiveavgpool2d("direct", &x, 3, 2, &y));
    ai3_tensor x2 = x;
    x2.ndim = 2;
    x2.shape[0] = 7, x2.shape[1] = 7;
    EXPECT_FAILS(INVALID, ai3_adaptiveavgpool2d("direct", &x2, 3, 3, &y));
    EXPECT_FAILS(AI3_ERROR_UNKNOWN_ALGORITHM, ai3_adaptiveavgpool2d("gemm", &x, 3, 3, &y));

    ai3_tensor same = test_tensor(AI3_FLOAT32, 4, (int64_t[]){1, 2, 7, 7});
    ai3_tensor y_bad = same;
    y_bad.shape[2] = 6;
    EXPECT_FAILS(INVALID, ai3_relu("direct", &x, &y_bad));
    ai3_tensor y64 = same;
    y64.dtype = AI3_FLOAT64;
    EXPECT_FAILS(INVALID, ai3_relu("direct", &x, &y64));
    EXPECT_FAILS(AI3_ERROR_UNKNOWN_ALGORITHM, ai3_relu("smm", &x, &same));
    EXPECT_FAILS(AI3_ERROR_UNKNOWN_ALGORITHM, ai3_relu("", &x, &same));

    ai3_tensor flat = test_tensor(AI3_FLOAT32, 2, (int64_t[]){1, 98});
    AI3_EXPECT(ai3_flatten("direct", &x, 1, -1, &flat) == AI3_OK, "%s", ai3_last_error());
    EXPECT_FAILS(INVALID, ai3_flatten("direct", &x, 4, -1, &flat));
    EXPECT_FAILS(INVALID, ai3_flatten("direct", &x, -5, -1, &flat));
    EXPECT_FAILS(INVALID, ai3_flatten("direct", &x, 2, 1, &flat));
    ai3_tensor flat_bad = flat;
    flat_bad.shape[1] = 97;
    EXPECT_FAILS(INVALID, ai3_flatten("direct", &x, 1, -1, &flat_bad));
    ai3_tensor flat64 = flat;
    flat64.dtype = AI3_FLOAT64;
    EXPECT_FAILS(INVALID, ai3_flatten("direct", &x, 1, -1, &flat64));
    EXPECT_FAILS(AI3_ERROR_UNKNOWN_ALGORITHM, ai3_flatten("gemm", &x, 1, -1, &flat));
    free(x.data), free(y.data), free(same.data), free(flat.data);
}

/* A linear plan keeps its own weights and runs any batch. */
AI3_TEST(ops_linear_plan_matches_reference) {
    for (int di = 0; di < 2; di++) {
        const ai3_dtype dt = dtypes[di];
        const int64_t w_shape[2] = {7, 13}, out_features = 7;
        ai3_tensor w = test_random(dt, 2, w_shape), b = test_random(dt, 1, &out_features);
        ai3_linear_plan *plan = NULL;
        AI3_EXPECT(ai3_linear_plan_create("default", &w, &b, &plan) == AI3_OK, "create: %s",
                   ai3_last_error());
        ai3_tensor w_copy = test_tensor(dt, 2, w_shape);
        memcpy(w_copy.data, w.data, (size_t)ai3_tensor_numel(&w) * (dt == AI3_FLOAT64 ? 8 : 4));
        for (int64_t i = 0; i < ai3_tensor_numel(&w); i++) test_set(&w, i, 99); /* must not matter */
        for (int64_t rows = 1; rows <= 9; rows += 4) {
            const int64_t x_shape[2] = {rows, 13}, y_shape[2] = {rows, 7};
            ai3_tensor x = test_random(dt, 2, x_shape);
            ai3_tensor want = test_output(dt, 2, y_shape), got = test_output(dt, 2, y_shape);
            if (dt == AI3_FLOAT64) ai3_ref_linear_f64(&x, &w_copy, &b, &want);
            else ai3_ref_linear_f32(&x, &w_copy, &b, &want);
            AI3_EXPECT(ai3_linear_plan_run(plan, &x, &got) == AI3_OK, "run: %s", ai3_last_error());
            test_compare(&got, &want, 1e-5, 1e-4, "linear plan");
            free(x.data);
            free(want.data);
            free(got.data);
        }
        const int64_t bad_shape[2] = {2, 12}, y_shape[2] = {2, 7};
        ai3_tensor x = test_random(dt, 2, bad_shape), y = test_output(dt, 2, y_shape);
        AI3_EXPECT(ai3_linear_plan_run(plan, &x, &y) == AI3_ERROR_INVALID_ARGUMENT,
                   "12 features ran on a 13-feature plan");
        ai3_linear_plan *other = NULL;
        AI3_EXPECT(ai3_linear_plan_create("nope", &w_copy, NULL, &other) ==
                       AI3_ERROR_UNKNOWN_ALGORITHM && other == NULL, "unknown name");
        ai3_linear_plan_destroy(plan);
        free(x.data);
        free(y.data);
        free(w.data);
        free(w_copy.data);
        free(b.data);
    }
}
