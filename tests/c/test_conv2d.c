/* conv2d: every built-in CPU algorithm against the reference on random
 * valid parameters, the padding modes against their definition, and the
 * status codes of bad calls. */
#include "ref/ref.h"
#include "harness.h"
#include "tensors.h"
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const ALGORITHMS[] = {"direct", "smm", "gemm", "implicit gemm",
                                          "implicit precomp gemm"};
#define N_ALGORITHMS (sizeof ALGORITHMS / sizeof ALGORITHMS[0])

/* Allowed error relative to the largest magnitude of the reference output. */
static double tolerance(ai3_dtype dtype) { return dtype == AI3_FLOAT32 ? 1e-4 : 1e-10; }

typedef struct {
    int64_t n, c_in, h, w, c_out, kh, kw;
    ai3_conv2d_params p;
    int has_bias;
} conv_case;

static const char *mode_name(ai3_padding_mode m) {
    static const char *const names[] = {"zeros", "reflect", "replicate", "circular"};
    return names[m];
}

static void describe(const conv_case *c, char *buf, size_t size) {
    snprintf(buf, size,
             "N=%lld C_in=%lld H=%lld W=%lld C_out=%lld k=%lldx%lld stride=%lldx%lld "
             "pad=(t%lld b%lld l%lld r%lld) dil=%lldx%lld groups=%lld %s bias=%d",
             (long long)c->n, (long long)c->c_in, (long long)c->h, (long long)c->w,
             (long long)c->c_out, (long long)c->kh, (long long)c->kw, (long long)c->p.stride_h,
             (long long)c->p.stride_w, (long long)c->p.pad_top, (long long)c->p.pad_bottom,
             (long long)c->p.pad_left, (long long)c->p.pad_right, (long long)c->p.dilation_h,
             (long long)c->p.dilation_w, (long long)c->p.groups, mode_name(c->p.padding_mode),
             c->has_bias);
}

/* Largest padding a mode allows on an axis of length `size`. */
static int64_t max_pad(ai3_padding_mode mode, int64_t size) {
    switch (mode) {
    case AI3_PADDING_REFLECT: return AI3_MIN(3, size - 1);
    case AI3_PADDING_CIRCULAR: return AI3_MIN(3, size);
    default: return 3;
    }
}

/* A random valid case. Some draws are wider (more channels, longer rows) so the
 * register blocks and tiles of the algorithms see their edges. */
static conv_case random_case(void) {
    conv_case c;
    for (;;) {
        c.n = ai3_test_randint(1, 2);
        const int64_t kind = ai3_test_randint(0, 5);
        int64_t c_in_g = ai3_test_randint(1, 4), c_out_g = ai3_test_randint(1, 5);
        c.p.groups = kind == 0 ? ai3_test_randint(2, 3) : 1;
        if (kind == 1) { /* depthwise, with a channel multiplier */
            c.p.groups = ai3_test_randint(1, 6);
            c_in_g = 1;
            c_out_g = ai3_test_randint(1, 2);
        }
        if (kind == 2) c_out_g = ai3_test_randint(6, 21); /* several blocks of outputs */
        c.c_in = c_in_g * c.p.groups;
        c.c_out = c_out_g * c.p.groups;
        c.h = ai3_test_randint(1, 12);
        c.w = kind == 3 ? ai3_test_randint(20, 45) : ai3_test_randint(1, 12);
        const int one_by_one = ai3_test_randint(0, 7) == 0;
        c.kh = one_by_one ? 1 : ai3_test_randint(1, 4);
        c.kw = one_by_one ? 1 : ai3_test_randint(1, 4);
        c.p.stride_h = ai3_test_randint(0, 2) ? 1 : ai3_test_randint(2, 3);
        c.p.stride_w = ai3_test_randint(0, 2) ? 1 : ai3_test_randint(2, 3);
        c.p.dilation_h = ai3_test_randint(0, 2) ? 1 : ai3_test_randint(2, 3);
        c.p.dilation_w = ai3_test_randint(0, 2) ? 1 : ai3_test_randint(2, 3);
        c.p.padding_mode = (ai3_padding_mode)ai3_test_randint(0, 3);
        c.p.pad_top = ai3_test_randint(0, max_pad(c.p.padding_mode, c.h));
        c.p.pad_bottom = ai3_test_randint(0, max_pad(c.p.padding_mode, c.h));
        c.p.pad_left = ai3_test_randint(0, max_pad(c.p.padding_mode, c.w));
        c.p.pad_right = ai3_test_randint(0, max_pad(c.p.padding_mode, c.w));
        c.has_bias = ai3_test_randint(0, 3) != 0;
        const int64_t hp = c.h + c.p.pad_top + c.p.pad_bottom;
        const int64_t wp = c.w + c.p.pad_left + c.p.pad_right;
        if (c.p.dilation_h * (c.kh - 1) + 1 <= hp && c.p.dilation_w * (c.kw - 1) + 1 <= wp)
            return c;
    }
}

/* Runs `algorithm` through ai3_conv2d and compares with the reference;
 * returns the number of failures (0 or 1). */
static int check_case(const conv_case *c, const char *algorithm, ai3_dtype dtype, int batched) {
    const int64_t in_shape[4] = {c->n, c->c_in, c->h, c->w};
    const int64_t w_shape[4] = {c->c_out, c->c_in / c->p.groups, c->kh, c->kw};
    ai3_tensor input = test_tensor(dtype, 4, in_shape);
    ai3_tensor weight = test_tensor(dtype, 4, w_shape);
    ai3_tensor bias = test_tensor(dtype, 1, &c->c_out);
    test_fill_random(&input);
    test_fill_random(&weight);
    test_fill_random(&bias);

    int ndim;
    int64_t out_shape[AI3_MAX_DIMS];
    ai3_status st = ai3_conv2d_output_shape(&input, &weight, &c->p, &ndim, out_shape);
    char what[256];
    describe(c, what, sizeof what);
    int failed = 0;
    AI3_EXPECT(st == AI3_OK, "output shape: %s (%s)", ai3_last_error(), what);
    if (st != AI3_OK) return 1;
    const int64_t oh = (c->h + c->p.pad_top + c->p.pad_bottom - c->p.dilation_h * (c->kh - 1) - 1) /
                           c->p.stride_h + 1;
    const int64_t ow = (c->w + c->p.pad_left + c->p.pad_right - c->p.dilation_w * (c->kw - 1) - 1) /
                           c->p.stride_w + 1;
    AI3_EXPECT(ndim == 4 && out_shape[0] == c->n && out_shape[1] == c->c_out &&
                   out_shape[2] == oh && out_shape[3] == ow,
               "output shape wrong (%s)", what);

    ai3_tensor expected = test_tensor(dtype, 4, out_shape);
    ai3_tensor actual = test_tensor(dtype, 4, out_shape);
    test_fill_nan(&expected);
    test_fill_nan(&actual);
    const ai3_tensor *b = c->has_bias ? &bias : NULL;
    if (dtype == AI3_FLOAT32) ai3_ref_conv2d_f32(&input, &weight, b, &c->p, &expected);
    else ai3_ref_conv2d_f64(&input, &weight, b, &c->p, &expected);

    /* N = 1 cases also go through the unbatched (C, H, W) form now and then. */
    ai3_tensor in_call = input, out_call = actual;
    if (!batched && c->n == 1) {
        in_call.ndim = out_call.ndim = 3;
        memmove(in_call.shape, in_call.shape + 1, 3 * sizeof in_call.shape[0]);
        memmove(out_call.shape, out_call.shape + 1, 3 * sizeof out_call.shape[0]);
    }
    st = ai3_conv2d(algorithm, &in_call, &weight, b, &c->p, &out_call);
    AI3_EXPECT(st == AI3_OK, "%s failed: %s (%s)", algorithm, ai3_last_error(), what);
    if (st != AI3_OK) failed = 1;

    double scale = 0, err = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < ai3_tensor_numel(&expected); i++)
        scale = fmax(scale, fabs(test_get(&expected, i)));
    for (int64_t i = 0; i < ai3_tensor_numel(&expected) && !failed; i++) {
        const double e = fabs(test_get(&actual, i) - test_get(&expected, i));
        if (!(e <= err)) { /* also catches NaN */
            err = isnan(e) ? INFINITY : e;
            worst = i;
        }
    }
    if (!failed && !(err <= tolerance(dtype) * fmax(scale, 1e-30))) {
        AI3_EXPECT(0, "%s %s: max error %.3g (scale %.3g) at %lld: got %.9g want %.9g (%s)",
                   algorithm, dtype == AI3_FLOAT32 ? "f32" : "f64", err, scale,
                   (long long)worst, test_get(&actual, worst), test_get(&expected, worst), what);
        failed = 1;
    }
    free(input.data);
    free(weight.data);
    free(bias.data);
    free(expected.data);
    free(actual.data);
    return failed;
}

static void sweep(const char *algorithm, ai3_dtype dtype, int cases) {
    int failures = 0;
    for (int i = 0; i < cases && failures < 3; i++) {
        conv_case c = random_case();
        failures += check_case(&c, algorithm, dtype, i % 4 != 0);
    }
}

AI3_TEST(conv2d_direct_f32_matches_reference) { sweep("direct", AI3_FLOAT32, 300); }
AI3_TEST(conv2d_direct_f64_matches_reference) { sweep("direct", AI3_FLOAT64, 300); }
AI3_TEST(conv2d_smm_f32_matches_reference) { sweep("smm", AI3_FLOAT32, 300); }
AI3_TEST(conv2d_smm_f64_matches_reference) { sweep("smm", AI3_FLOAT64, 300); }
AI3_TEST(conv2d_gemm_f32_matches_reference) { sweep("gemm", AI3_FLOAT32, 300); }
AI3_TEST(conv2d_gemm_f64_matches_reference) { sweep("gemm", AI3_FLOAT64, 300); }
AI3_TEST(conv2d_implicit_gemm_f32_matches_reference) { sweep("implicit gemm", AI3_FLOAT32, 300); }
AI3_TEST(conv2d_implicit_gemm_f64_matches_reference) { sweep("implicit gemm", AI3_FLOAT64, 300); }
AI3_TEST(conv2d_implicit_precomp_gemm_f32_matches_reference) {
    sweep("implicit precomp gemm", AI3_FLOAT32, 300);
}
AI3_TEST(conv2d_implicit_precomp_gemm_f64_matches_reference) {
    sweep("implicit precomp gemm", AI3_FLOAT64, 300);
}

/* Larger channel counts and images, where the algorithms take their blocked
 * paths (several register blocks, GEMMs large enough to pack). */
AI3_TEST(conv2d_algorithms_match_reference_on_larger_shapes) {
    static const struct {
        int64_t c_in, hw, c_out, k, stride, pad, groups;
    } shapes[] = {
        {16, 20, 40, 3, 1, 1, 1}, {32, 9, 70, 3, 2, 1, 1}, {24, 17, 24, 5, 1, 2, 1},
        {48, 12, 48, 3, 1, 1, 48}, {40, 15, 60, 1, 1, 0, 2}, {9, 31, 35, 7, 2, 3, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        conv_case c = {.n = 2, .c_in = shapes[s].c_in, .h = shapes[s].hw, .w = shapes[s].hw + 3,
                       .c_out = shapes[s].c_out, .kh = shapes[s].k, .kw = shapes[s].k,
                       .has_bias = 1};
        c.p = ai3_conv2d_params_default();
        c.p.stride_h = c.p.stride_w = shapes[s].stride;
        c.p.pad_top = c.p.pad_bottom = c.p.pad_left = c.p.pad_right = shapes[s].pad;
        c.p.groups = shapes[s].groups;
        for (size_t a = 0; a < N_ALGORITHMS; a++) {
            check_case(&c, ALGORITHMS[a], AI3_FLOAT32, 1);
            check_case(&c, ALGORITHMS[a], AI3_FLOAT64, 1);
        }
    }
}

/* The same answers on one thread as on the pool. */
AI3_TEST(conv2d_algorithms_match_reference_on_one_thread) {
    const int threads = ai3_get_num_threads();
    ai3_set_num_threads(1);
    for (size_t a = 0; a < N_ALGORITHMS; a++) sweep(ALGORITHMS[a], AI3_FLOAT32, 40);
    ai3_set_num_threads(threads);
}

/* Element i of an axis of length `size` padded by `before`, as
 * torch.nn.functional.pad defines each mode (-1: zero). Written apart from
 * the library's ai3_pad_source_index on purpose. */
static int64_t torch_pad_source(int64_t i, int64_t size, int64_t before, ai3_padding_mode mode) {
    const int64_t j = i - before;
    switch (mode) {
    case AI3_PADDING_ZEROS: return j >= 0 && j < size ? j : -1;
    case AI3_PADDING_REFLECT: /* mirror about the edge elements: ... 2 1 [0 1 2 ...] */
        return j < 0 ? -j : j >= size ? 2 * size - 2 - j : j;
    case AI3_PADDING_REPLICATE: return j < 0 ? 0 : j >= size ? size - 1 : j;
    case AI3_PADDING_CIRCULAR: return ((j % size) + size) % size;
    }
    return -1;
}

/* A 1×1 convolution with weight 1 returns the padded input itself, so each
 * padding mode can be checked element by element against its definition. */
AI3_TEST(conv2d_padding_modes_follow_torch) {
    const int64_t h = 4, w = 5;
    const int64_t in_shape[4] = {1, 1, h, w}, w_shape[4] = {1, 1, 1, 1};
    for (int mode = 0; mode <= AI3_PADDING_CIRCULAR; mode++) {
        ai3_conv2d_params p = ai3_conv2d_params_default();
        p.padding_mode = (ai3_padding_mode)mode;
        p.pad_top = 3;
        p.pad_bottom = 1;
        p.pad_left = 2;
        p.pad_right = 4;
        if (mode == AI3_PADDING_REFLECT) p.pad_right = 3; /* must stay below w */
        const int64_t hp = h + p.pad_top + p.pad_bottom, wp = w + p.pad_left + p.pad_right;
        const int64_t out_shape[4] = {1, 1, hp, wp};
        for (int dt = 0; dt < 2; dt++) {
            const ai3_dtype dtype = dt ? AI3_FLOAT64 : AI3_FLOAT32;
            ai3_tensor input = test_tensor(dtype, 4, in_shape);
            ai3_tensor weight = test_tensor(dtype, 4, w_shape);
            ai3_tensor out = test_tensor(dtype, 4, out_shape);
            test_fill_random(&input);
            test_set(&weight, 0, 1.0);
            for (int a = -1; a < (int)N_ALGORITHMS; a++) {
                test_fill_nan(&out);
                const char *name = a < 0 ? "reference" : ALGORITHMS[a];
                ai3_status st = a >= 0 ? ai3_conv2d(name, &input, &weight, NULL, &p, &out)
                                : dtype == AI3_FLOAT32
                                    ? ai3_ref_conv2d_f32(&input, &weight, NULL, &p, &out)
                                    : ai3_ref_conv2d_f64(&input, &weight, NULL, &p, &out);
                AI3_EXPECT(st == AI3_OK, "%s: %s", name, ai3_last_error());
                int wrong = 0;
                for (int64_t i = 0; i < hp; i++) {
                    for (int64_t j = 0; j < wp; j++) {
                        const int64_t si = torch_pad_source(i, h, p.pad_top, p.padding_mode);
                        const int64_t sj = torch_pad_source(j, w, p.pad_left, p.padding_mode);
                        const double want = si < 0 || sj < 0 ? 0.0 : test_get(&input, si * w + sj);
                        if (test_get(&out, i * wp + j) != want) wrong++;
                    }
                }
                AI3_EXPECT(!wrong, "%s, %s padding, %s: %d elements differ", name,
                           mode_name(p.padding_mode), dt ? "f64" : "f32", wrong);
            }
            free(input.data);
            free(weight.data);
            free(out.data);
        }
    }
}

/* Bad calls return the right status and leave a message. */
AI3_TEST(conv2d_rejects_bad_arguments) {
    const int64_t in_shape[4] = {1, 4, 6, 6}, w_shape[4] = {3, 4, 3, 3};
    const int64_t out_shape[4] = {1, 3, 4, 4};
    ai3_tensor input = test_tensor(AI3_FLOAT32, 4, in_shape);
    ai3_tensor weight = test_tensor(AI3_FLOAT32, 4, w_shape);
    ai3_tensor out = test_tensor(AI3_FLOAT32, 4, out_shape);
    test_fill_random(&input);
    test_fill_random(&weight);
    const ai3_conv2d_params p = ai3_conv2d_params_default();

#define EXPECT_STATUS(call, want)                                                        \
    do {                                                                                 \
        ai3_set_error(AI3_OK, "%s", "");                                                 \
        ai3_status st_ = (call);                                                         \
        AI3_EXPECT(st_ == (want), "%s: got status %d (%s), want %d", #call, (int)st_,    \
                   ai3_last_error(), (int)(want));                                       \
        AI3_EXPECT(ai3_last_error()[0] != '\0', "%s: no error message", #call);          \
    } while (0)

    AI3_EXPECT(ai3_conv2d("direct", &input, &weight, NULL, &p, &out) == AI3_OK, "valid call: %s",
               ai3_last_error());

    /* wrong number of input channels */
    ai3_tensor w5 = weight;
    w5.shape[1] = 5;
    EXPECT_STATUS(ai3_conv2d("direct", &input, &w5, NULL, &p, &out), AI3_ERROR_INVALID_ARGUMENT);
    /* kernel larger than the (padded) input */
    ai3_tensor w7 = weight;
    w7.shape[2] = w7.shape[3] = 7;
    EXPECT_STATUS(ai3_conv2d("smm", &input, &w7, NULL, &p, &out), AI3_ERROR_INVALID_ARGUMENT);
    ai3_conv2d_params dilated = p;
    dilated.dilation_h = 3;
    EXPECT_STATUS(ai3_conv2d("direct", &input, &weight, NULL, &dilated, &out),
                  AI3_ERROR_INVALID_ARGUMENT);
    /* unknown algorithm */
    EXPECT_STATUS(ai3_conv2d("no such algorithm", &input, &weight, NULL, &p, &out),
                  AI3_ERROR_UNKNOWN_ALGORITHM);
    /* dtype mismatch */
    ai3_tensor w64 = weight;
    w64.dtype = AI3_FLOAT64;
    EXPECT_STATUS(ai3_conv2d("direct", &input, &w64, NULL, &p, &out), AI3_ERROR_INVALID_ARGUMENT);
    ai3_tensor out64 = out;
    out64.dtype = AI3_FLOAT64;
    EXPECT_STATUS(ai3_conv2d("smm", &input, &weight, NULL, &p, &out64), AI3_ERROR_INVALID_ARGUMENT);
    /* NULL pointers */
    EXPECT_STATUS(ai3_conv2d("direct", NULL, &weight, NULL, &p, &out), AI3_ERROR_INVALID_ARGUMENT);
    EXPECT_STATUS(ai3_conv2d("direct", &input, NULL, NULL, &p, &out), AI3_ERROR_INVALID_ARGUMENT);
    EXPECT_STATUS(ai3_conv2d("direct", &input, &weight, NULL, NULL, &out),
                  AI3_ERROR_INVALID_ARGUMENT);
    EXPECT_STATUS(ai3_conv2d("direct", &input, &weight, NULL, &p, NULL),
                  AI3_ERROR_INVALID_ARGUMENT);
    ai3_tensor no_data = input;
    no_data.data = NULL;
    EXPECT_STATUS(ai3_conv2d("direct", &no_data, &weight, NULL, &p, &out),
                  AI3_ERROR_INVALID_ARGUMENT);
    /* output of the wrong shape */
    ai3_tensor out_small = out;
    out_small.shape[3] = 3;
    EXPECT_STATUS(ai3_conv2d("smm", &input, &weight, NULL, &p, &out_small),
                  AI3_ERROR_INVALID_ARGUMENT);
    /* bias of the wrong length */
    const int64_t four = 4;
    ai3_tensor bias4 = test_tensor(AI3_FLOAT32, 1, &four);
    EXPECT_STATUS(ai3_conv2d("direct", &input, &weight, &bias4, &p, &out),
                  AI3_ERROR_INVALID_ARGUMENT);
    /* groups that do not divide the channels, stride 0, reflect padding as
     * large as the input */
    ai3_conv2d_params bad = p;
    bad.groups = 3;
    EXPECT_STATUS(ai3_conv2d("direct", &input, &weight, NULL, &bad, &out),
                  AI3_ERROR_INVALID_ARGUMENT);
    bad = p;
    bad.stride_w = 0;
    EXPECT_STATUS(ai3_conv2d("direct", &input, &weight, NULL, &bad, &out),
                  AI3_ERROR_INVALID_ARGUMENT);
    bad = p;
    bad.padding_mode = AI3_PADDING_REFLECT;
    bad.pad_left = bad.pad_right = 6;
    EXPECT_STATUS(ai3_conv2d("smm", &input, &weight, NULL, &bad, &out),
                  AI3_ERROR_INVALID_ARGUMENT);
#undef EXPECT_STATUS

    free(input.data);
    free(weight.data);
    free(out.data);
    free(bias4.data);
}

/* --- plans ----------------------------------------------------------------- */

/* One plan runs inputs of several batch and spatial sizes, with its own
 * workspace or the caller's, unaffected by later changes to the weights. */
AI3_TEST(conv2d_plan_runs_many_shapes_with_its_own_weights) {
    const char *const names[] = {"direct", "smm", "guess", "default"};
    for (int dt = 0; dt < 2; dt++) {
        const ai3_dtype dtype = dt ? AI3_FLOAT64 : AI3_FLOAT32;
        for (size_t a = 0; a < sizeof names / sizeof names[0]; a++) {
            ai3_conv2d_params p = ai3_conv2d_params_default();
            p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
            p.stride_h = 1 + (int64_t)a % 2;
            const int64_t w_shape[4] = {6, 4, 3, 3}, c_out = 6;
            ai3_tensor weight = test_tensor(dtype, 4, w_shape), bias = test_tensor(dtype, 1, &c_out);
            test_fill_random(&weight);
            test_fill_random(&bias);
            ai3_conv2d_plan *plan = NULL;
            ai3_status st = ai3_conv2d_plan_create(names[a], &weight, &bias, &p, NULL, &plan);
            AI3_EXPECT(st == AI3_OK, "%s: %s", names[a], ai3_last_error());
            if (st != AI3_OK) continue;
            /* made without an expected input, "guess" chooses at the first one */
            const char *resolved = names[a];
            /* the plan keeps its own copy: this must not matter */
            ai3_tensor original = test_tensor(dtype, 4, w_shape);
            memcpy(original.data, weight.data, (size_t)ai3_tensor_numel(&weight) * ai3_dtype_size(dtype));
            test_fill_random(&weight);

            const int64_t sizes[3][4] = {{1, 4, 9, 7}, {3, 4, 5, 12}, {2, 4, 16, 16}};
            for (int k = 0; k < 3; k++) {
                ai3_tensor input = test_tensor(dtype, 4, sizes[k]);
                test_fill_random(&input);
                int nd;
                int64_t out_shape[AI3_MAX_DIMS];
                ai3_conv2d_output_shape(&input, &original, &p, &nd, out_shape);
                ai3_tensor want = test_tensor(dtype, 4, out_shape), got = test_tensor(dtype, 4, out_shape);
                if (dtype == AI3_FLOAT32) ai3_ref_conv2d_f32(&input, &original, &bias, &p, &want);
                else ai3_ref_conv2d_f64(&input, &original, &bias, &p, &want);

                size_t bytes = 0;
                AI3_EXPECT(ai3_conv2d_plan_workspace_size(plan, &input, &bytes) == AI3_OK, "size");
                void *ws = bytes ? ai3_alloc(bytes) : NULL;
                test_fill_nan(&got);
                st = ai3_conv2d_plan_run(plan, &input, &got, ws, bytes);
                AI3_EXPECT(st == AI3_OK && test_relative_error(&got, &want) < tolerance(dtype),
                           "%s (%s) shape %d with workspace: %s", names[a], resolved, k,
                           ai3_last_error());
                test_fill_nan(&got);
                st = ai3_conv2d_plan_run(plan, &input, &got, NULL, 0);
                AI3_EXPECT(st == AI3_OK && test_relative_error(&got, &want) < tolerance(dtype),
                           "%s (%s) shape %d: %s", names[a], resolved, k, ai3_last_error());
                if (bytes > 64) {
                    AI3_EXPECT(ai3_conv2d_plan_run(plan, &input, &got, ws, bytes - 64) ==
                                   AI3_ERROR_INVALID_ARGUMENT, "short workspace accepted");
                }
                ai3_free(ws);
                free(input.data);
                free(want.data);
                free(got.data);
                resolved = ai3_conv2d_plan_algorithm(plan);
                AI3_EXPECT(strcmp(resolved, "guess") && strcmp(resolved, "default"),
                           "%s resolved to '%s'", names[a], resolved);
            }
            ai3_conv2d_plan_destroy(plan);
            free(weight.data);
            free(original.data);
            free(bias.data);
        }
    }
}

/* A 1-wide depthwise kernel's dilation moves no tap: its workspace must not
 * grow with it (it reserved kw · dilation floats, 24 GB here). */
AI3_TEST(conv2d_direct_workspace_ignores_a_1_wide_kernels_dilation) {
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_left = p.pad_right = 2;
    p.dilation_h = 2;
    p.dilation_w = 3037000500;
    const int64_t w_shape[4] = {1, 1, 1, 1}, in_shape[4] = {1, 1, 3, 5};
    ai3_tensor weight = test_random(AI3_FLOAT32, 4, w_shape);
    ai3_tensor input = test_random(AI3_FLOAT32, 4, in_shape);
    ai3_conv2d_plan *plan = NULL;
    AI3_EXPECT(ai3_conv2d_plan_create("direct", &weight, NULL, &p, NULL, &plan) == AI3_OK,
               "create: %s", ai3_last_error());
    size_t bytes = 0;
    if (plan) {
        AI3_EXPECT(ai3_conv2d_plan_workspace_size(plan, &input, &bytes) == AI3_OK, "size");
        AI3_EXPECT(bytes < ((size_t)1 << 24), "workspace %zu bytes", bytes);
    }
    ai3_conv2d_plan_destroy(plan);
    free(weight.data), free(input.data);
}

AI3_TEST(conv2d_plan_rejects_bad_arguments) {
    ai3_conv2d_params p = ai3_conv2d_params_default();
    const int64_t w_shape[4] = {2, 3, 3, 3}, in_shape[4] = {1, 5, 8, 8};
    ai3_tensor weight = test_tensor(AI3_FLOAT32, 4, w_shape);
    ai3_tensor input = test_tensor(AI3_FLOAT32, 4, in_shape);
    test_fill_random(&weight);
    test_fill_random(&input);
    ai3_conv2d_plan *plan = (ai3_conv2d_plan *)&p; /* must be reset to NULL on failure */
    AI3_EXPECT(ai3_conv2d_plan_create("nope", &weight, NULL, &p, NULL, &plan) ==
                   AI3_ERROR_UNKNOWN_ALGORITHM && plan == NULL, "unknown name");
    AI3_EXPECT(strstr(ai3_last_error(), "nope") != NULL, "message '%s'", ai3_last_error());
    AI3_EXPECT(ai3_conv2d_plan_create("smm", &weight, NULL, &p, &input, &plan) ==
                   AI3_ERROR_INVALID_ARGUMENT, "channel mismatch with the input shape");
    AI3_EXPECT(ai3_conv2d_plan_create(NULL, &weight, NULL, &p, NULL, &plan) ==
                   AI3_ERROR_INVALID_ARGUMENT, "NULL name");
    AI3_EXPECT(ai3_conv2d_plan_create("smm", &weight, NULL, &p, NULL, NULL) ==
                   AI3_ERROR_INVALID_ARGUMENT, "NULL plan pointer");
    AI3_EXPECT(ai3_conv2d_plan_create("smm", &weight, NULL, &p, NULL, &plan) == AI3_OK, "create");
    int64_t out_shape[4] = {1, 2, 6, 6};
    ai3_tensor out = test_tensor(AI3_FLOAT32, 4, out_shape);
    AI3_EXPECT(ai3_conv2d_plan_run(plan, &input, &out, NULL, 0) == AI3_ERROR_INVALID_ARGUMENT,
               "input with 5 channels ran on a 3-channel plan");
    AI3_EXPECT(ai3_conv2d_plan_run(NULL, &input, &out, NULL, 0) == AI3_ERROR_INVALID_ARGUMENT,
               "NULL plan");
    ai3_conv2d_plan_destroy(plan);
    ai3_conv2d_plan_destroy(NULL);
    free(weight.data);
    free(input.data);
    free(out.data);
}

/* --- the GEMM-based algorithms ------------------------------------------ */

static const char *const GEMM_ALGORITHMS[] = {"gemm", "implicit gemm", "implicit precomp gemm",
                                              "smm"};
#define N_GEMM_ALGORITHMS (sizeof GEMM_ALGORITHMS / sizeof GEMM_ALGORITHMS[0])

/* The same answers with each ISA's GEMM kernels (their tiles differ). */
AI3_TEST(conv2d_gemm_algorithms_match_reference_on_each_isa) {
    const ai3_isa active = ai3_cpu_isa();
    for (int isa = AI3_ISA_GENERIC; isa <= (int)ai3_cpu_best_isa(); isa++) {
        ai3_cpu_set_isa((ai3_isa)isa);
        for (size_t a = 0; a < N_GEMM_ALGORITHMS; a++) {
            sweep(GEMM_ALGORITHMS[a], AI3_FLOAT32, 25);
            sweep(GEMM_ALGORITHMS[a], AI3_FLOAT64, 25);
        }
    }
    ai3_cpu_set_isa(active);
}

/* Shapes whose GEMMs have K and N beyond the engine's cache blocks (KC,
 * NC), so that B is gathered in several K slices and column blocks, on
 * each ISA; and, for the column kernel of gemm and implicit gemm, several
 * panels of output channels (the last partial), several chunks of panels
 * (K past COLS_CHUNK_BYTES), output rows (implicit gemm) or positions (gemm)
 * that end in a partial tile, and a 1×1 layer read in place; for gemm, the
 * banded unrolling (the zero-padded shapes), with strides, dilation,
 * groups, a partial last band, (260 input channels) several chunks of
 * panels per band and (300 input channels, 130 output: weights past half
 * an L2 of up to 2 MiB) K unrolled and summed in blocks. */
AI3_TEST(conv2d_gemm_algorithms_match_reference_across_cache_blocks) {
    static const struct {
        int64_t n, c_in, h, w, c_out, k, stride, pad, dilation, groups;
        ai3_padding_mode mode;
    } shapes[] = {
        {1, 48, 62, 66, 20, 3, 1, 1, 1, 1, AI3_PADDING_ZEROS},
        {2, 64, 61, 75, 36, 3, 2, 2, 2, 2, AI3_PADDING_ZEROS},
        {2, 96, 40, 37, 18, 3, 2, 2, 2, 2, AI3_PADDING_REFLECT},
        {1, 40, 70, 50, 9, 5, 1, 2, 1, 1, AI3_PADDING_CIRCULAR},
        {1, 260, 9, 17, 40, 3, 1, 1, 1, 1, AI3_PADDING_ZEROS},
        {2, 24, 13, 31, 70, 3, 2, 1, 1, 1, AI3_PADDING_REPLICATE},
        {1, 32, 10, 29, 66, 1, 1, 0, 1, 2, AI3_PADDING_ZEROS},
        {1, 300, 6, 20, 130, 3, 1, 1, 1, 1, AI3_PADDING_ZEROS},
    };
    const ai3_isa active = ai3_cpu_isa();
    for (int isa = AI3_ISA_GENERIC; isa <= (int)ai3_cpu_best_isa(); isa++) {
        ai3_cpu_set_isa((ai3_isa)isa);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            conv_case c = {.n = shapes[s].n, .c_in = shapes[s].c_in, .h = shapes[s].h,
                           .w = shapes[s].w, .c_out = shapes[s].c_out, .kh = shapes[s].k,
                           .kw = shapes[s].k, .has_bias = (int)s % 2};
            c.p = ai3_conv2d_params_default();
            c.p.stride_h = c.p.stride_w = shapes[s].stride;
            c.p.pad_top = c.p.pad_bottom = c.p.pad_left = c.p.pad_right = shapes[s].pad;
            c.p.dilation_h = c.p.dilation_w = shapes[s].dilation;
            c.p.groups = shapes[s].groups;
            c.p.padding_mode = shapes[s].mode;
            for (size_t a = 0; a < N_GEMM_ALGORITHMS; a++) {
                check_case(&c, GEMM_ALGORITHMS[a], AI3_FLOAT32, 1);
                check_case(&c, GEMM_ALGORITHMS[a], AI3_FLOAT64, 1);
            }
        }
    }
    ai3_cpu_set_isa(active);
}

/* gemm's banded unrolling where a tile's positions span several output
 * rows (OW = 5, below the 6 or 14 positions of a tile), with strides and
 * zero padding that differ by axis and side (1.4 MB unrolled: banded with
 * any L2 up to 2 MiB), on each ISA. */
AI3_TEST(conv2d_gemm_bands_of_rows_narrower_than_a_tile) {
    conv_case c = {.n = 2, .c_in = 600, .h = 24, .w = 5, .c_out = 20, .kh = 3, .kw = 3,
                   .has_bias = 1};
    c.p = ai3_conv2d_params_default();
    c.p.stride_h = 2;
    c.p.pad_top = 1;
    c.p.pad_bottom = 2;
    c.p.pad_left = 2;
    const ai3_isa active = ai3_cpu_isa();
    for (int isa = AI3_ISA_GENERIC; isa <= (int)ai3_cpu_best_isa(); isa++) {
        ai3_cpu_set_isa((ai3_isa)isa);
        check_case(&c, "gemm", AI3_FLOAT32, 1);
        check_case(&c, "gemm", AI3_FLOAT64, 1);
    }
    ai3_cpu_set_isa(active);
}

/* A plan keeps the GEMM config its weights were packed for: it still runs
 * right after the active ISA changes. */
AI3_TEST(conv2d_gemm_plans_survive_an_isa_change) {
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    const int64_t w_shape[4] = {30, 16, 3, 3}, in_shape[4] = {2, 16, 21, 19};
    const int64_t c_out = 30;
    const ai3_isa active = ai3_cpu_isa();
    for (size_t a = 0; a < N_GEMM_ALGORITHMS; a++) {
        ai3_tensor weight = test_tensor(AI3_FLOAT32, 4, w_shape);
        ai3_tensor bias = test_tensor(AI3_FLOAT32, 1, &c_out);
        ai3_tensor input = test_tensor(AI3_FLOAT32, 4, in_shape);
        test_fill_random(&weight);
        test_fill_random(&bias);
        test_fill_random(&input);
        int nd;
        int64_t out_shape[AI3_MAX_DIMS];
        ai3_conv2d_output_shape(&input, &weight, &p, &nd, out_shape);
        ai3_tensor want = test_tensor(AI3_FLOAT32, 4, out_shape);
        ai3_tensor got = test_tensor(AI3_FLOAT32, 4, out_shape);
        ai3_ref_conv2d_f32(&input, &weight, &bias, &p, &want);
        ai3_conv2d_plan *plan = NULL;
        ai3_cpu_set_isa(ai3_cpu_best_isa());
        ai3_status st =
            ai3_conv2d_plan_create(GEMM_ALGORITHMS[a], &weight, &bias, &p, NULL, &plan);
        AI3_EXPECT(st == AI3_OK, "%s: %s", GEMM_ALGORITHMS[a], ai3_last_error());
        ai3_cpu_set_isa(AI3_ISA_GENERIC);
        if (st == AI3_OK) {
            test_fill_nan(&got);
            st = ai3_conv2d_plan_run(plan, &input, &got, NULL, 0);
            AI3_EXPECT(st == AI3_OK && test_relative_error(&got, &want) < tolerance(AI3_FLOAT32),
                       "%s after the ISA changed: %s", GEMM_ALGORITHMS[a], ai3_last_error());
        }
        ai3_cpu_set_isa(active);
        ai3_conv2d_plan_destroy(plan);
        free(weight.data);
        free(bias.data);
        free(input.data);
        free(want.data);
        free(got.data);
    }
}

/* smm and the implicit algorithms unroll nothing: their workspace is a
 * small part of an im2col matrix's size, which gemm needs, except on AVX2
 * and AVX-512, where its column kernel unrolls this layer band by band into
 * per-task buffers. */
AI3_TEST(conv2d_implicit_algorithms_need_no_im2col_workspace) {
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    const int64_t w_shape[4] = {64, 64, 3, 3}, in_shape[4] = {2, 64, 56, 56};
    ai3_tensor weight = test_tensor(AI3_FLOAT32, 4, w_shape);
    ai3_tensor input = test_tensor(AI3_FLOAT32, 4, in_shape);
    test_fill_random(&weight);
    const size_t im2col = (size_t)(64 * 9) * 56 * 56 * sizeof(float);
    for (size_t a = 0; a < N_GEMM_ALGORITHMS; a++) {
        ai3_conv2d_plan *plan = NULL;
        size_t bytes = 0;
        ai3_status st =
            ai3_conv2d_plan_create(GEMM_ALGORITHMS[a], &weight, NULL, &p, NULL, &plan);
        if (st == AI3_OK) st = ai3_conv2d_plan_workspace_size(plan, &input, &bytes);
        AI3_EXPECT(st == AI3_OK, "%s: %s", GEMM_ALGORITHMS[a], ai3_last_error());
        if (strcmp(GEMM_ALGORITHMS[a], "gemm") == 0 && ai3_cpu_isa() < AI3_ISA_AVX2)
            AI3_EXPECT(bytes >= im2col, "gemm: %zu bytes, less than its im2col matrix", bytes);
        else
            AI3_EXPECT(bytes <= im2col / 2, "%s: %zu bytes for an im2col of %zu",
                       GEMM_ALGORITHMS[a], bytes, im2col);
        ai3_conv2d_plan_destroy(plan);
    }
    free(weight.data);
    free(input.data);
}

/* Depthwise layers (one input channel per group, any channel multiplier)
 * with zero padding take their own path in direct (padded planes copied in
 * whole vectors, tiles up to two vectors wide): every shape of it, rows
 * narrower and wider than the tiles, against the reference. */
AI3_TEST(conv2d_direct_depthwise_matches_reference) {
    for (int i = 0; i < 200; i++) {
        conv_case c = {.n = ai3_test_randint(1, 3), .c_in = ai3_test_randint(1, 9),
                       .h = ai3_test_randint(1, 19), .w = ai3_test_randint(1, i % 4 ? 40 : 90),
                       .kh = ai3_test_randint(1, 5), .kw = ai3_test_randint(1, 5),
                       .p = ai3_conv2d_params_default(), .has_bias = (int)ai3_test_randint(0, 1)};
        c.c_out = c.c_in * (i % 3 ? 1 : ai3_test_randint(2, 3));
        c.p.groups = c.c_in;
        c.p.stride_h = ai3_test_randint(1, 3);
        c.p.stride_w = ai3_test_randint(1, 3);
        c.p.dilation_h = ai3_test_randint(1, 2);
        c.p.dilation_w = ai3_test_randint(1, 2);
        c.p.pad_top = ai3_test_randint(0, 3);
        c.p.pad_bottom = ai3_test_randint(0, 3);
        c.p.pad_left = ai3_test_randint(0, 3);
        c.p.pad_right = ai3_test_randint(0, 3);
        if (c.h + c.p.pad_top + c.p.pad_bottom < c.p.dilation_h * (c.kh - 1) + 1 ||
            c.w + c.p.pad_left + c.p.pad_right < c.p.dilation_w * (c.kw - 1) + 1)
            continue;
        check_case(&c, "direct", i % 2 ? AI3_FLOAT64 : AI3_FLOAT32, i % 5 != 0);
    }
}

/* A "guess" plan made without an expected input chooses at its first input;
 * several threads giving it its first inputs at once agree, and compute. */
typedef struct {
    const ai3_conv2d_plan *plan;
    const ai3_tensor *input;
    ai3_tensor output;
    ai3_status status;
} first_run;

static void *run_first(void *arg) {
    first_run *r = arg;
    r->status = ai3_conv2d_plan_run(r->plan, r->input, &r->output, NULL, 0);
    return NULL;
}

AI3_TEST(conv2d_guess_plan_chooses_once_at_its_first_input) {
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    const int64_t w_shape[4] = {32, 32, 3, 3}, in_shape[4] = {1, 32, 20, 20};
    ai3_tensor weight = test_random(AI3_FLOAT32, 4, w_shape);
    ai3_tensor input = test_random(AI3_FLOAT32, 4, in_shape);
    ai3_conv2d_plan *plan = NULL;
    AI3_EXPECT(ai3_conv2d_plan_create("guess", &weight, NULL, &p, NULL, &plan) == AI3_OK, "%s",
               ai3_last_error());
    if (!plan) return;
    AI3_EXPECT(strcmp(ai3_conv2d_plan_algorithm(plan), "guess") == 0, "chose before an input");
    int nd;
    int64_t out_shape[AI3_MAX_DIMS];
    ai3_conv2d_output_shape(&input, &weight, &p, &nd, out_shape);
    ai3_tensor want = test_tensor(AI3_FLOAT32, nd, out_shape);
    ai3_ref_conv2d_f32(&input, &weight, NULL, &p, &want);
    enum { THREADS = 4 };
    first_run runs[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        runs[i] = (first_run){plan, &input, test_tensor(AI3_FLOAT32, nd, out_shape), AI3_OK};
        pthread_create(&threads[i], NULL, run_first, &runs[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        AI3_EXPECT(runs[i].status == AI3_OK && test_relative_error(&runs[i].output, &want) < 1e-4,
                   "thread %d: %s", i, ai3_last_error());
        free(runs[i].output.data);
    }
    const char *chosen = ai3_conv2d_plan_algorithm(plan);
    AI3_EXPECT(strcmp(chosen, "guess") != 0, "still 'guess' after its first input");
    ai3_conv2d_plan_destroy(plan);
    free(weight.data);
    free(input.data);
    free(want.data);
}
