/* conv2d "winograd": F(2×2,3×3) and F(4×4,3×3) (forced in turn through
 * AI3_WINOGRAD_TILE) against the reference on random 3×3, stride 1,
 * dilation 1 problems, and its clear refusal of everything else. */
#include "ref/ref.h"
#include "harness.h"
#include "tensors.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Allowed error relative to the largest magnitude of the reference output.
 * Looser than the other algorithms' (1e-4 / 1e-10, test_conv2d.c): the
 * transforms of F(4×4) multiply by up to 8 and 1/24, magnifying rounding. */
static double tolerance(ai3_dtype dtype, int tile) {
    if (dtype == AI3_FLOAT64) return tile == 4 ? 1e-9 : 1e-10;
    return tile == 4 ? 1e-3 : 1e-4;
}

static const int TILES[] = {2, 4};

/* Plans made after this use F(tile×tile); 0 restores the automatic choice. */
static void force_tile(int tile) {
    if (tile) setenv("AI3_WINOGRAD_TILE", tile == 2 ? "2" : "4", 1);
    else unsetenv("AI3_WINOGRAD_TILE");
}

typedef struct {
    int64_t n, c_in, h, w, c_out;
    ai3_conv2d_params p;
    int has_bias, unbatched;
} wino_case;

static const char *mode_name(ai3_padding_mode m) {
    static const char *const names[] = {"zeros", "reflect", "replicate", "circular"};
    return names[m];
}

/* Largest padding a mode allows on an axis of length `size`. */
static int64_t max_pad(ai3_padding_mode mode, int64_t size) {
    switch (mode) {
    case AI3_PADDING_REFLECT: return AI3_MIN(3, size - 1);
    case AI3_PADDING_CIRCULAR: return AI3_MIN(3, size);
    default: return 3;
    }
}

/* A random valid 3×3, stride 1, dilation 1 case: any padding (mode and
 * amount per side), groups (depthwise too), sizes that leave partial tiles. */
static wino_case random_case(void) {
    wino_case c = {0};
    c.p = ai3_conv2d_params_default();
    for (;;) {
        c.n = ai3_test_randint(1, 3);
        const int64_t kind = ai3_test_randint(0, 4);
        int64_t c_in_g = ai3_test_randint(1, 6), c_out_g = ai3_test_randint(1, 6);
        c.p.groups = kind == 0 ? ai3_test_randint(2, 3) : 1;
        if (kind == 1) { /* depthwise, with a channel multiplier */
            c.p.groups = ai3_test_randint(1, 8);
            c_in_g = 1;
            c_out_g = ai3_test_randint(1, 2);
        }
        if (kind == 2) { /* several register blocks of the GEMM */
            c_in_g = ai3_test_randint(8, 40);
            c_out_g = ai3_test_randint(15, 40);
        }
        c.c_in = c_in_g * c.p.groups;
        c.c_out = c_out_g * c.p.groups;
        c.h = ai3_test_randint(1, 19);
        c.w = ai3_test_randint(1, 19);
        c.p.padding_mode = (ai3_padding_mode)ai3_test_randint(0, 3);
        c.p.pad_top = ai3_test_randint(0, max_pad(c.p.padding_mode, c.h));
        c.p.pad_bottom = ai3_test_randint(0, max_pad(c.p.padding_mode, c.h));
        c.p.pad_left = ai3_test_randint(0, max_pad(c.p.padding_mode, c.w));
        c.p.pad_right = ai3_test_randint(0, max_pad(c.p.padding_mode, c.w));
        c.has_bias = ai3_test_randint(0, 3) != 0;
        c.unbatched = c.n == 1 && ai3_test_randint(0, 1);
        if (c.h + c.p.pad_top + c.p.pad_bottom >= 3 && c.w + c.p.pad_left + c.p.pad_right >= 3)
            return c;
    }
}

/* Runs winograd on one case through ai3_conv2d with F(tile×tile), or the
 * automatic choice (F(4×4)) for tile 0; 1 if it fails. */
static int check_case(const wino_case *c, ai3_dtype dtype, int tile) {
    const int64_t in_shape[4] = {c->n, c->c_in, c->h, c->w};
    const int64_t w_shape[4] = {c->c_out, c->c_in / c->p.groups, 3, 3};
    ai3_tensor input = test_tensor(dtype, 4, in_shape);
    ai3_tensor weight = test_tensor(dtype, 4, w_shape);
    ai3_tensor bias = test_tensor(dtype, 1, &c->c_out);
    test_fill_random(&input);
    test_fill_random(&weight);
    test_fill_random(&bias);
    const int64_t out_shape[4] = {c->n, c->c_out, c->h + c->p.pad_top + c->p.pad_bottom - 2,
                                  c->w + c->p.pad_left + c->p.pad_right - 2};
    ai3_tensor want = test_tensor(dtype, 4, out_shape), got = test_tensor(dtype, 4, out_shape);
    test_fill_nan(&want);
    test_fill_nan(&got);
    const ai3_tensor *b = c->has_bias ? &bias : NULL;
    if (dtype == AI3_FLOAT32) ai3_ref_conv2d_f32(&input, &weight, b, &c->p, &want);
    else ai3_ref_conv2d_f64(&input, &weight, b, &c->p, &want);

    ai3_tensor in_call = input, out_call = got;
    if (c->unbatched) {
        in_call.ndim = out_call.ndim = 3;
        memmove(in_call.shape, in_call.shape + 1, 3 * sizeof in_call.shape[0]);
        memmove(out_call.shape, out_call.shape + 1, 3 * sizeof out_call.shape[0]);
    }
    force_tile(tile);
    const ai3_status st = ai3_conv2d("winograd", &in_call, &weight, b, &c->p, &out_call);
    force_tile(0);
    const double err = st == AI3_OK ? test_relative_error(&got, &want) : INFINITY;
    const int failed = !(err <= tolerance(dtype, tile ? tile : 4));
    AI3_EXPECT(!failed,
               "F(%dx%d) %s: status %d (%s), error %.3g: N=%lld%s C_in=%lld H=%lld W=%lld "
               "C_out=%lld pad=(t%lld b%lld l%lld r%lld) %s groups=%lld bias=%d",
               tile, tile, dtype == AI3_FLOAT32 ? "f32" : "f64", (int)st,
               st == AI3_OK ? "" : ai3_last_error(), err, (long long)c->n,
               c->unbatched ? " (unbatched)" : "", (long long)c->c_in, (long long)c->h,
               (long long)c->w, (long long)c->c_out, (long long)c->p.pad_top,
               (long long)c->p.pad_bottom, (long long)c->p.pad_left, (long long)c->p.pad_right,
               mode_name(c->p.padding_mode), (long long)c->p.groups, c->has_bias);
    free(input.data);
    free(weight.data);
    free(bias.data);
    free(want.data);
    free(got.data);
    return failed;
}

static void sweep(ai3_dtype dtype, int tile, int cases) {
    int failures = 0;
    for (int i = 0; i < cases && failures < 3; i++) {
        const wino_case c = random_case();
        failures += check_case(&c, dtype, tile);
    }
}

AI3_TEST(conv2d_winograd_f2_f32_matches_reference) { sweep(AI3_FLOAT32, 2, 200); }
AI3_TEST(conv2d_winograd_f2_f64_matches_reference) { sweep(AI3_FLOAT64, 2, 200); }
AI3_TEST(conv2d_winograd_f4_f32_matches_reference) { sweep(AI3_FLOAT32, 4, 200); }
AI3_TEST(conv2d_winograd_f4_f64_matches_reference) { sweep(AI3_FLOAT64, 4, 200); }

/* Wider layers (the GEMMs pack and block; tiles come in several chunks for
 * the largest), and the automatic tile choice. */
AI3_TEST(conv2d_winograd_matches_reference_on_larger_shapes) {
    static const struct {
        int64_t n, c_in, h, w, c_out, pad, groups;
    } shapes[] = {
        {2, 64, 13, 18, 70, 1, 1}, {1, 130, 9, 9, 33, 1, 1},  {3, 48, 20, 11, 48, 1, 48},
        {2, 40, 10, 10, 60, 0, 2}, {1, 17, 64, 64, 19, 1, 1}, {4, 80, 30, 30, 40, 1, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        wino_case c = {.n = shapes[s].n, .c_in = shapes[s].c_in, .h = shapes[s].h,
                       .w = shapes[s].w, .c_out = shapes[s].c_out, .has_bias = 1};
        c.p = ai3_conv2d_params_default();
        c.p.pad_top = c.p.pad_bottom = c.p.pad_left = c.p.pad_right = shapes[s].pad;
        c.p.groups = shapes[s].groups;
        for (int t = -1; t < 2; t++) {
            check_case(&c, AI3_FLOAT32, t < 0 ? 0 : TILES[t]);
            check_case(&c, AI3_FLOAT64, t < 0 ? 0 : TILES[t]);
        }
    }
}

/* The same answers on one thread, and with each ISA's GEMM kernels. */
AI3_TEST(conv2d_winograd_matches_reference_on_one_thread_and_each_isa) {
    const int threads = ai3_get_num_threads();
    ai3_set_num_threads(1);
    for (size_t t = 0; t < 2; t++) sweep(AI3_FLOAT32, TILES[t], 30);
    ai3_set_num_threads(threads);
    const ai3_isa best = ai3_cpu_isa();
    for (int isa = AI3_ISA_GENERIC; isa <= (int)ai3_cpu_best_isa(); isa++) {
        ai3_cpu_set_isa((ai3_isa)isa);
        for (size_t t = 0; t < 2; t++) {
            sweep(AI3_FLOAT32, TILES[t], 15);
            sweep(AI3_FLOAT64, TILES[t], 15);
        }
    }
    ai3_cpu_set_isa(best);
}

/* A plan runs inputs of several batch and spatial sizes, with its own
 * workspace or the caller's; its packed weights stay usable after the
 * active ISA changes. */
AI3_TEST(conv2d_winograd_plan_runs_many_shapes) {
    for (int dt = 0; dt < 2; dt++) {
        const ai3_dtype dtype = dt ? AI3_FLOAT64 : AI3_FLOAT32;
        for (size_t t = 0; t < 2; t++) {
            ai3_conv2d_params p = ai3_conv2d_params_default();
            p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
            const int64_t w_shape[4] = {20, 12, 3, 3}, c_out = 20;
            ai3_tensor weight = test_tensor(dtype, 4, w_shape);
            ai3_tensor bias = test_tensor(dtype, 1, &c_out);
            test_fill_random(&weight);
            test_fill_random(&bias);
            ai3_conv2d_plan *plan = NULL;
            force_tile(TILES[t]);
            ai3_status st = ai3_conv2d_plan_create("winograd", &weight, &bias, &p, NULL, &plan);
            force_tile(0);
            AI3_EXPECT(st == AI3_OK, "create: %s", ai3_last_error());
            if (st != AI3_OK) continue;
            const ai3_isa isa = ai3_cpu_isa();
            const int64_t sizes[4][4] = {{1, 12, 1, 1}, {3, 12, 5, 12}, {2, 12, 16, 16},
                                         {1, 12, 31, 7}};
            for (int k = 0; k < 4; k++) {
                ai3_cpu_set_isa(k % 2 ? AI3_ISA_GENERIC : isa);
                ai3_tensor input = test_tensor(dtype, 4, sizes[k]);
                test_fill_random(&input);
                int nd;
                int64_t out_shape[AI3_MAX_DIMS];
                ai3_conv2d_output_shape(&input, &weight, &p, &nd, out_shape);
                ai3_tensor want = test_tensor(dtype, 4, out_shape);
                ai3_tensor got = test_tensor(dtype, 4, out_shape);
                if (dtype == AI3_FLOAT32) ai3_ref_conv2d_f32(&input, &weight, &bias, &p, &want);
                else ai3_ref_conv2d_f64(&input, &weight, &bias, &p, &want);
                size_t bytes = 0;
                AI3_EXPECT(ai3_conv2d_plan_workspace_size(plan, &input, &bytes) == AI3_OK && bytes,
                           "workspace size: %s", ai3_last_error());
                void *ws = ai3_alloc(bytes);
                test_fill_nan(&got);
                st = ai3_conv2d_plan_run(plan, &input, &got, ws, bytes);
                AI3_EXPECT(st == AI3_OK && test_relative_error(&got, &want) < tolerance(dtype, TILES[t]),
                           "F(%d) shape %d with workspace: %s", TILES[t], k, ai3_last_error());
                test_fill_nan(&got);
                st = ai3_conv2d_plan_run(plan, &input, &got, NULL, 0);
                AI3_EXPECT(st == AI3_OK && test_relative_error(&got, &want) < tolerance(dtype, TILES[t]),
                           "F(%d) shape %d: %s", TILES[t], k, ai3_last_error());
                ai3_free(ws);
                free(input.data);
                free(want.data);
                free(got.data);
            }
            ai3_cpu_set_isa(isa);
            ai3_conv2d_plan_destroy(plan);
            free(weight.data);
            free(bias.data);
        }
    }
}

/* Kernel sizes other than 3×3, strides and dilations other than 1 are
 * refused with AI3_ERROR_UNSUPPORTED and a message naming the algorithm and
 * the parameter; the other algorithms still run them. */
AI3_TEST(conv2d_winograd_refuses_what_it_cannot_do) {
    const int64_t in_shape[4] = {1, 4, 12, 12};
    ai3_tensor input = test_tensor(AI3_FLOAT32, 4, in_shape);
    test_fill_random(&input);
    static const struct {
        int64_t k, stride, dilation;
        const char *word;
    } cases[] = {
        {5, 1, 1, "kernel size"}, {1, 1, 1, "kernel size"}, {3, 2, 1, "stride"},
        {3, 1, 2, "dilation"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t w_shape[4] = {3, 4, cases[i].k, cases[i].k};
        ai3_tensor weight = test_tensor(AI3_FLOAT32, 4, w_shape);
        test_fill_random(&weight);
        ai3_conv2d_params p = ai3_conv2d_params_default();
        p.stride_h = cases[i].stride;
        p.dilation_w = cases[i].dilation;
        int nd;
        int64_t out_shape[AI3_MAX_DIMS];
        AI3_EXPECT(ai3_conv2d_output_shape(&input, &weight, &p, &nd, out_shape) == AI3_OK,
                   "shape: %s", ai3_last_error());
        ai3_tensor out = test_tensor(AI3_FLOAT32, 4, out_shape);
        const ai3_status st = ai3_conv2d("winograd", &input, &weight, NULL, &p, &out);
        AI3_EXPECT(st == AI3_ERROR_UNSUPPORTED, "%s: status %d", cases[i].word, (int)st);
        AI3_EXPECT(strstr(ai3_last_error(), "winograd") && strstr(ai3_last_error(), cases[i].word),
                   "%s: message '%s'", cases[i].word, ai3_last_error());
        ai3_conv2d_plan *plan = (ai3_conv2d_plan *)&p;
        AI3_EXPECT(ai3_conv2d_plan_create("winograd", &weight, NULL, &p, NULL, &plan) ==
                           AI3_ERROR_UNSUPPORTED && plan == NULL,
                   "%s: plan created", cases[i].word);
        AI3_EXPECT(ai3_conv2d("smm", &input, &weight, NULL, &p, &out) == AI3_OK, "smm: %s",
                   ai3_last_error());
        free(weight.data);
        free(out.data);
    }
    free(input.data);
}
