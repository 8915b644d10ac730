/* Sizes and parameters at the edges, each found by the fuzzer (tests/fuzz):
 * sizes whose arithmetic would overflow are refused (the sanitizer build of
 * these tests reports any overflow), strides and windows far wider than the
 * input compute only what lands in it, and empty tensors may come without
 * data. */
#include "ref/ref.h"
#include "harness.h"
#include "tensors.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>

static const char *const CONV_ALGORITHMS[] = {"direct", "smm", "gemm", "implicit gemm",
                                              "implicit precomp gemm", "guess"};
#define N_CONV (sizeof CONV_ALGORITHMS / sizeof CONV_ALGORITHMS[0])

/* A descriptor whose data the shape functions never read. */
static ai3_tensor shape_only(int ndim, const int64_t *shape) {
    static float dummy[1];
    ai3_tensor t = {.data = dummy, .dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

AI3_TEST(limits_sizes_that_overflow_are_refused) {
    const ai3_status BAD = AI3_ERROR_INVALID_ARGUMENT;
    int nd;
    int64_t out[AI3_MAX_DIMS];
    ai3_tensor huge = shape_only(2, (int64_t[]){(int64_t)1 << 40, (int64_t)1 << 40});
    AI3_EXPECT_STATUS(ai3_relu("direct", &huge, &huge), BAD);
    ai3_tensor_numel(&huge); /* wraps, no overflow */

    ai3_tensor x = shape_only(4, (int64_t[]){1, 1, 8, 8});
    ai3_tensor w = shape_only(4, (int64_t[]){1, 1, 3, 3});
    const int64_t big[] = {INT64_MAX, INT64_MAX / 2, (int64_t)1 << 57};
    for (int i = 0; i < 3; i++) {
        ai3_conv2d_params p = ai3_conv2d_params_default();
        p.stride_h = big[i];
        AI3_EXPECT_STATUS(ai3_conv2d_output_shape(&x, &w, &p, &nd, out), BAD);
        p = ai3_conv2d_params_default();
        p.dilation_w = big[i];
        AI3_EXPECT_STATUS(ai3_conv2d_output_shape(&x, &w, &p, &nd, out), BAD);
        p = ai3_conv2d_params_default();
        p.pad_top = p.pad_bottom = big[i];
        AI3_EXPECT_STATUS(ai3_conv2d_output_shape(&x, &w, &p, &nd, out), BAD);
    }
    /* a dilated kernel extent above 2^62, and a padded input of 2^58 elements */
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.dilation_h = (int64_t)1 << 40;
    ai3_tensor tall = shape_only(4, (int64_t[]){1, 1, (int64_t)1 << 30, 1});
    AI3_EXPECT_STATUS(ai3_conv2d_output_shape(&x, &tall, &p, &nd, out), BAD);
    p = ai3_conv2d_params_default();
    p.pad_top = p.pad_left = (int64_t)1 << 29;
    ai3_tensor wide = shape_only(4, (int64_t[]){1, 1, (int64_t)1 << 27, (int64_t)1 << 27});
    AI3_EXPECT_STATUS(ai3_conv2d_output_shape(&wide, &w, &p, &nd, out), BAD);

    for (int i = 0; i < 3; i++) {
        ai3_pool2d_params q = ai3_pool2d_params_default(big[i], 1);
        AI3_EXPECT_STATUS(ai3_maxpool2d_output_shape(&x, &q, &nd, out), BAD);
        q = ai3_pool2d_params_default(2, 2);
        q.stride_w = big[i];
        AI3_EXPECT_STATUS(ai3_avgpool2d_output_shape(&x, &q, &nd, out), BAD);
    }
    ai3_pool2d_params q = ai3_pool2d_params_default((int64_t)1 << 40, 1);
    q.dilation_h = (int64_t)1 << 40;
    AI3_EXPECT_STATUS(ai3_maxpool2d_output_shape(&x, &q, &nd, out), BAD);
}

/* A stride past the padded input gives one output row or column; the
 * algorithms compute it without layouts sized by the stride (direct took
 * 2 GB for this depthwise case). */
AI3_TEST(limits_strides_wider_than_the_input) {
    for (int depthwise = 0; depthwise < 2; depthwise++) {
        ai3_conv2d_params p = ai3_conv2d_params_default();
        p.stride_h = 9988017;
        p.stride_w = depthwise ? 1 : (int64_t)1 << 40;
        p.groups = depthwise ? 3 : 1;
        ai3_tensor x = test_random(AI3_FLOAT32, 4, (int64_t[]){1, 3, 2, 8});
        ai3_tensor w = test_random(AI3_FLOAT32, 4, (int64_t[]){3, depthwise ? 1 : 3, 1, 3});
        int nd;
        int64_t shape[AI3_MAX_DIMS];
        AI3_EXPECT(ai3_conv2d_output_shape(&x, &w, &p, &nd, shape) == AI3_OK && shape[2] == 1 &&
                       shape[3] == (depthwise ? 6 : 1),
                   "%s", ai3_last_error());
        ai3_tensor want = test_tensor(AI3_FLOAT32, 4, shape);
        ai3_ref_conv2d_f32(&x, &w, NULL, &p, &want);
        for (size_t a = 0; a < N_CONV; a++) {
            ai3_conv2d_plan *plan = NULL;
            size_t bytes = 0;
            ai3_status s = ai3_conv2d_plan_create(CONV_ALGORITHMS[a], &w, NULL, &p, &x, &plan);
            AI3_EXPECT(s == AI3_OK, "%s: %s", CONV_ALGORITHMS[a], ai3_last_error());
            if (s != AI3_OK) continue;
            AI3_EXPECT(ai3_conv2d_plan_workspace_size(plan, &x, &bytes) == AI3_OK &&
                           bytes < ((size_t)1 << 20),
                       "%s: workspace of %zu bytes", CONV_ALGORITHMS[a], bytes);
            ai3_tensor got = test_output(AI3_FLOAT32, 4, shape);
            AI3_EXPECT(ai3_conv2d_plan_run(plan, &x, &got, NULL, 0) == AI3_OK, "%s: %s",
                       CONV_ALGORITHMS[a], ai3_last_error());
            test_compare(&got, &want, 1e-6, 1e-5, CONV_ALGORITHMS[a]);
            ai3_conv2d_plan_destroy(plan);
            free(got.data);
        }
        free(x.data), free(w.data), free(want.data);
    }
}

/* With ceil_mode and a huge stride, a window may be 10^10 rows tall over an
 * 8-row input: only its rows in the input are visited (it looped 10^10
 * times). */
AI3_TEST(limits_pooling_windows_taller_than_the_input) {
    ai3_tensor x = test_random(AI3_FLOAT64, 4, (int64_t[]){1, 2, 8, 8});
    ai3_pool2d_params p = ai3_pool2d_params_default(10000000000LL, 1);
    p.stride_h = (int64_t)1 << 40;
    p.stride_w = 1;
    p.ceil_mode = 1;
    p.count_include_pad = 0;
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    AI3_EXPECT(ai3_maxpool2d_output_shape(&x, &p, &nd, shape) == AI3_OK && shape[2] == 1 &&
                   shape[3] == 8,
               "%s", ai3_last_error());
    ai3_tensor mx = test_output(AI3_FLOAT64, 4, shape), avg = test_output(AI3_FLOAT64, 4, shape);
    AI3_EXPECT(ai3_maxpool2d("direct", &x, &p, &mx) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(ai3_avgpool2d("direct", &x, &p, &avg) == AI3_OK, "%s", ai3_last_error());
    for (int c = 0; c < 2; c++) {
        for (int j = 0; j < 8; j++) { /* each column's max and mean */
            double m = -INFINITY, sum = 0;
            for (int i = 0; i < 8; i++) {
                double v = test_get(&x, (c * 8 + i) * 8 + j);
                m = fmax(m, v);
                sum += v;
            }
            AI3_EXPECT(test_get(&mx, c * 8 + j) == m, "max %d %d", c, j);
            AI3_EXPECT(fabs(test_get(&avg, c * 8 + j) - sum / 8) < 1e-12, "avg %d %d", c, j);
        }
    }
    free(x.data), free(mx.data), free(avg.data);
}

/* An empty tensor may come with NULL data: nothing computes an address
 * from it (undefined in C even with offset 0). */
AI3_TEST(limits_empty_tensors_without_data) {
    ai3_tensor x = {.dtype = AI3_FLOAT32, .ndim = 2, .shape = {2, 0}};
    ai3_tensor w = {.dtype = AI3_FLOAT32, .ndim = 2, .shape = {3, 0}};
    ai3_tensor b = test_random(AI3_FLOAT32, 1, (int64_t[]){3});
    ai3_tensor y = test_output(AI3_FLOAT32, 2, (int64_t[]){2, 3});
    AI3_EXPECT(ai3_linear("gemm", &x, &w, &b, &y) == AI3_OK, "%s", ai3_last_error());
    for (int i = 0; i < 6; i++) /* no input features: the bias */
        AI3_EXPECT(test_get(&y, i) == test_get(&b, i % 3), "y[%d] = %g", i, test_get(&y, i));
    ai3_tensor m = test_output(AI3_FLOAT32, 1, (int64_t[]){2});
    AI3_EXPECT(ai3_mean("direct", &x, (int[]){1}, 1, 0, &m) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(isnan(test_get(&m, 0)) && isnan(test_get(&m, 1)), "mean of nothing: %g",
               test_get(&m, 0)); /* 0 / 0, as torch */
    free(b.data), free(y.data), free(m.data);
}

/* Output sizes from parameters: adaptiveavgpool2d's bins are i · size / out,
 * cat sums sizes; both stay within 2^56 (found by the fuzzer: an output
 * size of 2^63 - 1 was accepted and a graph's chunk after it overflowed). */
AI3_TEST(limits_output_sizes_from_parameters) {
    int nd;
    int64_t out[AI3_MAX_DIMS];
    ai3_tensor x = shape_only(4, (int64_t[]){1, 4, 3, 3});
    AI3_EXPECT_STATUS(ai3_adaptiveavgpool2d_output_shape(&x, INT64_MAX, 1, &nd, out),
                      AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_adaptiveavgpool2d_output_shape(&x, (int64_t)1 << 30, (int64_t)1 << 30,
                                                         &nd, out),
                      AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT(ai3_adaptiveavgpool2d_output_shape(&x, 1000, 1000, &nd, out) == AI3_OK &&
                   out[2] == 1000,
               "%s", ai3_last_error());
    ai3_tensor big = shape_only(2, (int64_t[]){0, (int64_t)1 << 56});
    const ai3_tensor *three[] = {&big, &big, &big};
    AI3_EXPECT_STATUS(ai3_cat_output_shape(three, 3, 1, &nd, out), AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT(ai3_cat_output_shape(three, 3, 0, &nd, out) == AI3_OK && out[0] == 0,
               "%s", ai3_last_error());
}
