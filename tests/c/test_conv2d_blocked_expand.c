/* A 1×1 convolution computed inside the depthwise one that reads it
 * (ai3_blocked_conv2d_run_expand_dw) against the two convolutions run one
 * after the other: the same sums in the same order, so equal up to a multiply
 * and add the compiler fuses in one and not the other (-ffp-contract=fast),
 * at both block widths, over strides, kernels, dilations, asymmetric padding, several input passes, odd channel
 * blocks and epilogues; and its refusal of pairs it cannot run. */
#include "algorithms/blocked.h"
#include "harness.h"
#include "internal.h"
#include "tensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t n, c_in, c_mid, h, w, k, s, pt, pb, pl, pr, dil;
    ai3_activation act1, act2;
    bool residual;
} expand_case;

static float *alloc_floats(int64_t n) {
    return aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
}

static void check_case(const expand_case *c, int cb) {
    char what[256];
    snprintf(what, sizeof what,
             "cb=%d N=%lld C_in=%lld C_mid=%lld %lldx%lld k=%lld s=%lld pad=(%lld %lld %lld %lld) "
             "dil=%lld acts=%d,%d res=%d",
             cb, (long long)c->n, (long long)c->c_in, (long long)c->c_mid, (long long)c->h,
             (long long)c->w, (long long)c->k, (long long)c->s, (long long)c->pt,
             (long long)c->pb, (long long)c->pl, (long long)c->pr, (long long)c->dil,
             (int)c->act1, (int)c->act2, c->residual);
    const int64_t w1_shape[4] = {c->c_mid, c->c_in, 1, 1}, b_shape[1] = {c->c_mid};
    const int64_t w2_shape[4] = {c->c_mid, 1, c->k, c->k};
    ai3_tensor w1 = test_random(AI3_FLOAT32, 4, w1_shape), b1 = test_random(AI3_FLOAT32, 1, b_shape);
    ai3_tensor w2 = test_random(AI3_FLOAT32, 4, w2_shape), b2 = test_random(AI3_FLOAT32, 1, b_shape);
    ai3_conv2d_params p1 = ai3_conv2d_params_default(), p2 = p1;
    p2.stride_h = p2.stride_w = c->s;
    p2.pad_top = c->pt, p2.pad_bottom = c->pb, p2.pad_left = c->pl, p2.pad_right = c->pr;
    p2.dilation_h = p2.dilation_w = c->dil;
    p2.groups = c->c_mid;
    ai3_blocked_conv2d *expand = NULL, *dw = NULL;
    AI3_EXPECT(ai3_blocked_conv2d_create(&w1, &b1, &p1, cb, &expand) == AI3_OK &&
                   ai3_blocked_conv2d_create(&w2, &b2, &p2, cb, &dw) == AI3_OK,
               "create: %s (%s)", ai3_last_error(), what);
    const int64_t oh = (c->h + c->pt + c->pb - c->dil * (c->k - 1) - 1) / c->s + 1;
    const int64_t ow = (c->w + c->pl + c->pr - c->dil * (c->k - 1) - 1) / c->s + 1;
    const int64_t cin_p = ai3_blocked_channels(c->c_in, cb), mid_p = ai3_blocked_channels(c->c_mid, cb);
    const int64_t x_n = c->n * cin_p * c->h * c->w, mid_n = c->n * mid_p * c->h * c->w;
    const int64_t y_n = c->n * mid_p * oh * ow;
    float *x = alloc_floats(x_n), *mid = alloc_floats(mid_n), *res = alloc_floats(y_n);
    float *want = alloc_floats(y_n), *got = alloc_floats(y_n);
    /* garbage in the input's pad channels: neither way may read them */
    for (int64_t i = 0; i < x_n; i++) {
        const int64_t channel = i / (cb * c->h * c->w) % (cin_p / cb) * cb + i % cb;
        x[i] = channel < c->c_in ? (float)(ai3_test_randint(-1000, 1000) / 500.0) : NAN;
    }
    for (int64_t i = 0; i < y_n; i++) res[i] = (float)(ai3_test_randint(-1000, 1000) / 500.0);
    for (int64_t i = 0; i < y_n; i++) want[i] = got[i] = NAN;
    const ai3_epilogue e1 = {.act = c->act1, .lo = 0, .hi = 6};
    const ai3_epilogue e2 = {.act = c->act2, .lo = 0, .hi = 6, .residual = c->residual ? res : NULL};
    if (expand && dw) {
        AI3_EXPECT(ai3_blocked_conv2d_expand_fusable(expand, dw, c->w), "not fusable (%s)", what);
        ai3_status st = ai3_blocked_conv2d_run(expand, x, true, c->n, c->h, c->w, mid, &e1);
        if (st == AI3_OK) st = ai3_blocked_conv2d_run(dw, mid, true, c->n, c->h, c->w, want, &e2);
        AI3_EXPECT(st == AI3_OK, "separate runs: %s (%s)", ai3_last_error(), what);
        st = ai3_blocked_conv2d_run_expand_dw(expand, &e1, dw, &e2, x, c->n, c->h, c->w, got);
        AI3_EXPECT(st == AI3_OK, "fused run: %s (%s)", ai3_last_error(), what);
        int64_t diff = -1;
        for (int64_t i = 0; i < y_n && diff < 0; i++)
            if (memcmp(&want[i], &got[i], sizeof(float)) &&
                !(fabsf(got[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i]))))
                diff = i;
        AI3_EXPECT(diff < 0, "element %lld: fused %g, separate %g (%s)", (long long)diff,
                   diff < 0 ? 0 : got[diff], diff < 0 ? 0 : want[diff], what);
    }
    ai3_blocked_conv2d_destroy(expand);
    ai3_blocked_conv2d_destroy(dw);
    free(x), free(mid), free(res), free(want), free(got);
    free(w1.data), free(b1.data), free(w2.data), free(b2.data);
}

static expand_case simple(int64_t n, int64_t c_in, int64_t c_mid, int64_t h, int64_t w,
                          int64_t k, int64_t s) {
    const int64_t pad = k / 2;
    return (expand_case){.n = n, .c_in = c_in, .c_mid = c_mid, .h = h, .w = w, .k = k, .s = s,
                         .pt = pad, .pb = pad, .pl = pad, .pr = pad, .dil = 1,
                         .act1 = AI3_ACT_CLAMP, .act2 = AI3_ACT_CLAMP};
}

AI3_TEST(conv2d_blocked_expand_dw_matches_separate_runs) {
    int cbs[2];
    const int nw = test_blocked_widths(cbs);
    expand_case cases[] = {
        simple(1, 16, 96, 30, 28, 3, 2),  /* MobileNetV2's first expansion, smaller */
        simple(2, 24, 144, 17, 19, 3, 1), /* odd sizes, a batch */
        simple(1, 40, 120, 9, 9, 5, 2),   /* EfficientNet's 5×5 */
        simple(1, 208, 40, 8, 8, 3, 1),   /* input in two passes; an odd last block */
        simple(3, 8, 24, 5, 6, 3, 2),
        simple(1, 96, 576, 7, 7, 3, 1),   /* many pairs, few rows */
        simple(1, 32, 64, 1, 1, 3, 1),
        simple(2, 24, 40, 7, 7, 3, 1),    /* tiles across row ends, gelu after their stores */
    };
    cases[1].act2 = AI3_ACT_SILU;
    cases[2].act1 = AI3_ACT_SILU, cases[2].act2 = AI3_ACT_NONE, cases[2].residual = true;
    cases[3].act1 = AI3_ACT_HARDSWISH, cases[3].act2 = AI3_ACT_GELU;
    cases[4].pt = 0, cases[4].pb = 2, cases[4].pl = 2, cases[4].pr = 0, cases[4].dil = 2;
    cases[7].act1 = AI3_ACT_GELU;
    for (int i = 0; i < nw; i++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) check_case(&cases[k], cbs[i]);
    for (int iter = 0; iter < 20; iter++) { /* random shapes */
        /* (at least two mid channels: one is no depthwise convolution) */
        expand_case c = simple(ai3_test_randint(1, 2), ai3_test_randint(1, 40),
                               ai3_test_randint(2, 70), ai3_test_randint(1, 20),
                               ai3_test_randint(1, 40), 3 + 2 * ai3_test_randint(0, 1),
                               ai3_test_randint(1, 2));
        c.act1 = (ai3_activation)ai3_test_randint(0, 3);
        c.act2 = (ai3_activation)ai3_test_randint(0, 3);
        c.pt = ai3_test_randint(0, 2), c.pl = ai3_test_randint(0, 2);
        if (c.h + c.pt + c.pb < c.k || c.w + c.pl + c.pr < c.k) continue;
        for (int i = 0; i < nw; i++) check_case(&c, cbs[i]);
    }
}

AI3_TEST(conv2d_blocked_expand_dw_refuses_other_pairs) {
    int cbs[2];
    if (!test_blocked_widths(cbs)) return;
    const int cb = cbs[0];
    const int64_t w1_shape[4] = {32, 16, 1, 1}, w3_shape[4] = {32, 16, 3, 3};
    const int64_t dw_shape[4] = {32, 1, 3, 3}, dw48_shape[4] = {48, 1, 3, 3};
    const int64_t dw1_shape[4] = {32, 1, 1, 1};
    ai3_tensor w1 = test_random(AI3_FLOAT32, 4, w1_shape), w3 = test_random(AI3_FLOAT32, 4, w3_shape);
    ai3_tensor wd = test_random(AI3_FLOAT32, 4, dw_shape), wd48 = test_random(AI3_FLOAT32, 4, dw48_shape);
    ai3_tensor wd1 = test_random(AI3_FLOAT32, 4, dw1_shape);
    ai3_conv2d_params one = ai3_conv2d_params_default(), dwp = one, dwp48 = one;
    dwp.groups = 32, dwp48.groups = 48;
    dwp.pad_top = dwp.pad_bottom = dwp.pad_left = dwp.pad_right = 1;
    ai3_blocked_conv2d *e = NULL, *e3 = NULL, *d = NULL, *d48 = NULL, *d1 = NULL;
    AI3_EXPECT(ai3_blocked_conv2d_create(&w1, NULL, &one, cb, &e) == AI3_OK &&
                   ai3_blocked_conv2d_create(&w3, NULL, &one, cb, &e3) == AI3_OK &&
                   ai3_blocked_conv2d_create(&wd, NULL, &dwp, cb, &d) == AI3_OK &&
                   ai3_blocked_conv2d_create(&wd48, NULL, &dwp48, cb, &d48) == AI3_OK &&
                   ai3_blocked_conv2d_create(&wd1, NULL, &dwp, cb, &d1) == AI3_OK,
               "create: %s", ai3_last_error());
    if (e && e3 && d && d48 && d1) {
        AI3_EXPECT(ai3_blocked_conv2d_expand_fusable(e, d, 56), "1x1 then depthwise: fusable");
        AI3_EXPECT(!ai3_blocked_conv2d_expand_fusable(e3, d, 56), "a 3x3 first: not fusable");
        AI3_EXPECT(!ai3_blocked_conv2d_expand_fusable(d, e, 56), "in the other order: not fusable");
        AI3_EXPECT(!ai3_blocked_conv2d_expand_fusable(e, d48, 56), "channels differ: not fusable");
        AI3_EXPECT(!ai3_blocked_conv2d_expand_fusable(e, d, 100000), "rows too wide: not fusable");
        AI3_EXPECT(!ai3_blocked_conv2d_expand_fusable(e, d1, 56), "a 1x1 depthwise: not fusable");
        float x[16 * 4 * 4] = {0}, y[32 * 4 * 4];
        AI3_EXPECT_STATUS(ai3_blocked_conv2d_run_expand_dw(e3, NULL, d, NULL, x, 1, 4, 4, y),
                          AI3_ERROR_INVALID_ARGUMENT);
        const ai3_epilogue with_res = {.residual = y};
        AI3_EXPECT_STATUS(ai3_blocked_conv2d_run_expand_dw(e, &with_res, d, NULL, x, 1, 4, 4, y),
                          AI3_ERROR_INVALID_ARGUMENT);
        AI3_EXPECT_STATUS(ai3_blocked_conv2d_run_expand_dw(e, NULL, d, NULL, NULL, 1, 4, 4, y),
                          AI3_ERROR_INVALID_ARGUMENT);
    }
    ai3_blocked_conv2d_destroy(e), ai3_blocked_conv2d_destroy(e3);
    ai3_blocked_conv2d_destroy(d), ai3_blocked_conv2d_destroy(d48), ai3_blocked_conv2d_destroy(d1);
    free(w1.data), free(w3.data), free(wd.data), free(wd48.data), free(wd1.data);
}
