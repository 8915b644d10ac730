/* conv2d on channel-blocked activations (algorithms/conv2d_blocked_f32.c)
 * against the reference, at both block widths the CPU runs: listed shapes
 * (the edges of the tiles and of the padding, plain input, depthwise,
 * channels not a multiple of the block), random ones, the fused epilogue,
 * garbage in the input's pad channels, and the status of bad calls. */
#include "algorithms/blocked.h"
#include "algorithms/epilogue.h"
#include "harness.h"
#include "internal.h"
#include "ref/ref.h"
#include "tensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t n, c_in, c_out, h, w, kh, kw;
    int64_t sh, sw, pt, pb, pl, pr, dh, dw;
    bool depthwise, bias, plain_input;
    ai3_activation act;
    bool residual;
    int winograd; /* 2 or 4: by ai3_blocked_winograd with F(m×m, 3×3), not the tiles */
} blk_case;

/* A case with a square kernel k, stride s, padding pad on every side. */
static blk_case simple(int64_t n, int64_t c_in, int64_t c_out, int64_t h, int64_t w, int64_t k,
                       int64_t s, int64_t pad) {
    return (blk_case){.n = n, .c_in = c_in, .c_out = c_out, .h = h, .w = w, .kh = k, .kw = k,
                      .sh = s, .sw = s, .pt = pad, .pb = pad, .pl = pad, .pr = pad, .dh = 1,
                      .dw = 1, .bias = true};
}

static void describe(const blk_case *c, int cb, char *buf, size_t size) {
    snprintf(buf, size,
             "cb=%d N=%lld C_in=%lld C_out=%lld %lldx%lld k=%lldx%lld s=%lldx%lld "
             "pad=(t%lld b%lld l%lld r%lld) dil=%lldx%lld dw=%d bias=%d plain=%d act=%d res=%d "
             "winograd=%d",
             cb, (long long)c->n, (long long)c->c_in, (long long)c->c_out, (long long)c->h,
             (long long)c->w, (long long)c->kh, (long long)c->kw, (long long)c->sh,
             (long long)c->sw, (long long)c->pt, (long long)c->pb, (long long)c->pl,
             (long long)c->pr, (long long)c->dh, (long long)c->dw, c->depthwise, c->bias,
             c->plain_input, (int)c->act, c->residual, c->winograd);
}

static float *alloc_floats(int64_t n) {
    return aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
}

/* plain (n, c, hw) → blocked, the pad channels set to `pad`. */
static float *to_blocked(const float *x, int64_t n, int64_t c, int64_t hw, int cb, float pad) {
    const int64_t cp = ai3_blocked_channels(c, cb);
    float *y = alloc_floats(n * cp * hw);
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < cp; ch++)
            for (int64_t q = 0; q < hw; q++)
                y[((i * cp / cb + ch / cb) * hw + q) * cb + ch % cb] =
                    ch < c ? x[(i * c + ch) * hw + q] : pad;
    return y;
}

/* blocked → plain (n, c, hw); false if a pad channel is not finite. */
static bool from_blocked(const float *x, int64_t n, int64_t c, int64_t hw, int cb, float *y) {
    const int64_t cp = ai3_blocked_channels(c, cb);
    bool finite = true;
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < cp; ch++)
            for (int64_t q = 0; q < hw; q++) {
                const float v = x[((i * cp / cb + ch / cb) * hw + q) * cb + ch % cb];
                if (ch < c) y[(i * c + ch) * hw + q] = v;
                else finite = finite && isfinite(v);
            }
    return finite;
}

static double activate(ai3_activation act, double v) {
    switch (act) {
    case AI3_ACT_CLAMP: return fmin(fmax(v, 0.0), 6.0);
    case AI3_ACT_SIGMOID: return 1 / (1 + exp(-v));
    case AI3_ACT_SILU: return v / (1 + exp(-v));
    case AI3_ACT_HARDSIGMOID: return fmin(fmax(v + 3, 0.0), 6.0) / 6;
    case AI3_ACT_HARDSWISH: return v * fmin(fmax(v + 3, 0.0), 6.0) / 6;
    case AI3_ACT_GELU: return v / 2 * (1 + erf(v / sqrt(2.0)));
    default: return v;
    }
}

/* Runs case c at width cb against the reference; the input's pad channels
 * hold `pad`. Returns the number of failures. */
static int check_case(const blk_case *c, int cb, float pad) {
    char what[320];
    describe(c, cb, what, sizeof what);
    const int64_t groups = c->depthwise ? c->c_in : 1;
    const int64_t in_shape[4] = {c->n, c->c_in, c->h, c->w};
    const int64_t w_shape[4] = {c->c_out, c->c_in / groups, c->kh, c->kw};
    const int64_t b_shape[1] = {c->c_out};
    ai3_tensor input = test_random(AI3_FLOAT32, 4, in_shape);
    ai3_tensor weight = test_random(AI3_FLOAT32, 4, w_shape);
    ai3_tensor bias = test_random(AI3_FLOAT32, 1, b_shape);
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.stride_h = c->sh;
    p.stride_w = c->sw;
    p.pad_top = c->pt;
    p.pad_bottom = c->pb;
    p.pad_left = c->pl;
    p.pad_right = c->pr;
    p.dilation_h = c->dh;
    p.dilation_w = c->dw;
    p.groups = groups;
    const int64_t oh = (c->h + c->pt + c->pb - c->dh * (c->kh - 1) - 1) / c->sh + 1;
    const int64_t ow = (c->w + c->pl + c->pr - c->dw * (c->kw - 1) - 1) / c->sw + 1;
    const int64_t out_shape[4] = {c->n, c->c_out, oh, ow};
    ai3_tensor expected = test_output(AI3_FLOAT32, 4, out_shape);
    ai3_tensor residual = test_random(AI3_FLOAT32, 4, out_shape);
    ai3_tensor actual = test_output(AI3_FLOAT32, 4, out_shape);
    int failures = 0;
    ai3_status st = ai3_ref_conv2d_f32(&input, &weight, c->bias ? &bias : NULL, &p, &expected);
    AI3_EXPECT(st == AI3_OK, "reference: %s (%s)", ai3_last_error(), what);
    const int64_t out_n = ai3_tensor_numel(&expected);
    float *ref = expected.data;
    for (int64_t i = 0; i < out_n; i++)
        ref[i] = (float)activate(c->act, ref[i] + (c->residual ? test_get(&residual, i) : 0));

    const int64_t hw = c->h * c->w, ohw = oh * ow, cp_out = ai3_blocked_channels(c->c_out, cb);
    float *x = c->plain_input ? NULL : to_blocked(input.data, c->n, c->c_in, hw, cb, pad);
    float *res = to_blocked(residual.data, c->n, c->c_out, ohw, cb, pad);
    float *y = alloc_floats(c->n * cp_out * ohw);
    for (int64_t i = 0; i < c->n * cp_out * ohw; i++) y[i] = NAN;
    const ai3_epilogue e = {.act = c->act, .lo = 0, .hi = 6, .residual = c->residual ? res : NULL};

    ai3_blocked_conv2d *conv = NULL;
    ai3_blocked_winograd *wg = NULL;
    const ai3_epilogue *ep = c->act != AI3_ACT_NONE || c->residual ? &e : NULL;
    if (c->winograd)
        st = ai3_blocked_winograd_create(&weight, c->bias ? &bias : NULL, c->winograd, cb, &wg);
    else
        st = ai3_blocked_conv2d_create(&weight, c->bias ? &bias : NULL, &p, cb, &conv);
    AI3_EXPECT(st == AI3_OK, "create: %s (%s)", ai3_last_error(), what);
    if (st == AI3_OK) {
        if (wg) {
            st = ai3_blocked_winograd_run(wg, &p, x, c->n, c->h, c->w, y, ep);
        } else {
            /* (one channel: groups = 1, an ordinary convolution) */
            AI3_EXPECT(ai3_blocked_conv2d_depthwise(conv) == (groups > 1), "depthwise (%s)",
                       what);
            st = ai3_blocked_conv2d_run(conv, c->plain_input ? input.data : x, !c->plain_input,
                                        c->n, c->h, c->w, y, ep);
        }
        AI3_EXPECT(st == AI3_OK, "run: %s (%s)", ai3_last_error(), what);
        const bool finite = from_blocked(y, c->n, c->c_out, ohw, cb, actual.data);
        AI3_EXPECT(finite, "output pad channels not finite (%s)", what);
        double scale = 1e-30, err = 0;
        int64_t worst = 0;
        for (int64_t i = 0; i < out_n; i++) scale = fmax(scale, fabs(test_get(&expected, i)));
        for (int64_t i = 0; i < out_n; i++) {
            const double d = fabs(test_get(&actual, i) - test_get(&expected, i));
            if (!(d <= err)) {
                err = isnan(d) ? INFINITY : d;
                worst = i;
            }
        }
        /* F(4×4)'s transforms magnify rounding (conv2d_winograd.c) */
        const double tol = c->winograd == 4 ? 1e-3 : 1e-4;
        AI3_EXPECT(err / scale <= tol, "relative error %g at %lld: %g vs %g (%s)", err / scale,
                   (long long)worst, test_get(&actual, worst), test_get(&expected, worst),
                   what);
        failures += !finite || err / scale > tol || st != AI3_OK;
        /* The same bits as the convolution, then the activation on its own.
         * Not under AI3_ISA=generic: the separate activation then runs its
         * build without FMA, and a converted model uses no blocked layout. */
        if (c->act != AI3_ACT_NONE && c->act != AI3_ACT_CLAMP && ai3_cpu_isa() >= AI3_ISA_AVX2) {
            const ai3_epilogue add = {.residual = e.residual};
            const int64_t y_n = c->n * cp_out * ohw;
            float *sep = alloc_floats(y_n);
            const ai3_epilogue *sep_ep = c->residual ? &add : NULL;
            st = wg ? ai3_blocked_winograd_run(wg, &p, x, c->n, c->h, c->w, sep, sep_ep)
                    : ai3_blocked_conv2d_run(conv, c->plain_input ? input.data : x,
                                             !c->plain_input, c->n, c->h, c->w, sep, sep_ep);
            const ai3_epilogue act = {.act = c->act, .lo = 0, .hi = 6};
            ai3_epilogue_apply_f32(sep, 0, NULL, 0, 1, y_n, &act);
            from_blocked(sep, c->n, c->c_out, ohw, cb, expected.data);
            const bool same = st == AI3_OK && !memcmp(expected.data, actual.data,
                                                      (size_t)out_n * sizeof(float));
            AI3_EXPECT(same, "fused activation not the bits of the separate one (%s)", what);
            failures += !same;
            free(sep);
        }
    } else {
        failures++;
    }
    ai3_blocked_conv2d_destroy(conv);
    ai3_blocked_winograd_destroy(wg);
    free(x);
    free(res);
    free(y);
    free(input.data);
    free(weight.data);
    free(bias.data);
    free(expected.data);
    free(residual.data);
    free(actual.data);
    return failures;
}

/* Every width, with zeros and then garbage in the input's pad channels. */
static void check_all_widths(const blk_case *c) {
    int cbs[2];
    const int k = test_blocked_widths(cbs);
    for (int i = 0; i < k; i++) {
        if (check_case(c, cbs[i], 0.0f)) continue;
        check_case(c, cbs[i], 1e3f);
    }
}

AI3_TEST(conv2d_blocked_listed_shapes) {
    const blk_case cases[] = {
        simple(1, 16, 32, 5, 5, 1, 1, 0),     /* 1×1, flattened */
        simple(1, 64, 256, 7, 7, 1, 1, 0),    /* tiles across rows */
        simple(2, 40, 20, 9, 13, 1, 1, 0),    /* channels not a multiple of the block */
        simple(1, 48, 48, 14, 14, 1, 2, 0),   /* 1×1 stride 2 */
        simple(2, 20, 40, 9, 11, 1, 2, 1),    /* 1×1 stride 2, padded */
        simple(1, 24, 16, 6, 5, 1, 1, 2),     /* 1×1 stride 1, padded */
        simple(2, 24, 40, 15, 30, 3, 1, 1),   /* rows longer than a tile */
        simple(1, 32, 64, 8, 8, 3, 1, 1),
        simple(1, 20, 24, 11, 11, 3, 2, 1),   /* 3×3 stride 2 */
        simple(1, 3, 64, 32, 32, 7, 2, 3),    /* a stem, from plain input */
        simple(2, 3, 17, 9, 29, 7, 2, 3),
        simple(1, 3, 8, 5, 1, 3, 1, 1),       /* one column */
        simple(1, 8, 8, 1, 1, 3, 1, 1),       /* one pixel, all taps but the centre pad */
        simple(1, 5, 33, 6, 17, 5, 1, 2),     /* an odd last block */
        /* tiles of two whole rows (rows of up to half a tile), summing over
         * several passes of input blocks, an odd last row and block */
        simple(1, 40, 40, 7, 7, 3, 1, 1),
        simple(2, 24, 48, 13, 13, 3, 2, 1),   /* stride 2 down to 7×7 */
        simple(1, 32, 16, 5, 5, 3, 1, 1),
        simple(1, 20, 36, 4, 6, 3, 1, 1),
        /* rows of 7, 14 and 19 pixels in tiles across row ends (7 and 14 on
         * AVX2, 19 on both; padded first): strides 1 and 2, an odd last
         * block, several passes of input blocks, chunks of few rows */
        simple(1, 40, 256, 7, 7, 3, 1, 1),
        simple(1, 24, 136, 14, 14, 3, 2, 1),
        simple(1, 16, 96, 14, 14, 3, 1, 1),
        simple(1, 16, 80, 28, 28, 3, 2, 1),
        simple(2, 80, 48, 7, 7, 3, 1, 1),
        simple(1, 16, 48, 6, 19, 3, 1, 1),
        simple(1, 24, 24, 19, 38, 3, 2, 1),
        /* plain input in whole tiles (padded first): stride 2, stride 1 */
        simple(1, 3, 32, 9, 56, 7, 2, 3),
        simple(2, 4, 40, 5, 28, 3, 1, 1),
    };
    const size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        blk_case c = cases[i];
        c.plain_input = c.c_in <= 4;
        check_all_widths(&c);
        if (c.plain_input) { /* the same from blocked input */
            c.plain_input = false;
            check_all_widths(&c);
        }
    }
    /* asymmetric padding, dilation 2, no bias */
    blk_case c = simple(2, 12, 24, 10, 19, 3, 1, 0);
    c.pt = 2, c.pb = 0, c.pl = 1, c.pr = 3;
    c.dh = c.dw = 2;
    c.bias = false;
    check_all_widths(&c);
}

/* Tiles across row ends over whole planes: on one thread, with 8 pairs or
 * more, each task takes a plane's rows (on the pool, small planes are split
 * in chunks of rows too short for them). Rows of 19 pixels: tiles of 13-14
 * on AVX-512, 5-6 on AVX2; rows of 7 on AVX2; strides 1 and 2, an odd last
 * block, a residual and a clamp. */
AI3_TEST(conv2d_blocked_tiles_across_row_ends) {
    const int threads = ai3_get_num_threads();
    ai3_set_num_threads(1);
    const blk_case cases[] = {simple(1, 16, 256, 7, 19, 3, 1, 1),
                              simple(1, 24, 264, 14, 38, 3, 2, 1),
                              simple(2, 40, 136, 7, 7, 3, 1, 1)};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blk_case c = cases[i];
        check_all_widths(&c);
        c.residual = true;
        c.act = AI3_ACT_CLAMP;
        check_all_widths(&c);
    }
    ai3_set_num_threads(threads);
}

/* Winograd F(2×2) and F(4×4, 3×3) on the blocked layout: partial tiles at
 * the bottom and right, one tile, channels not a multiple of the block, an
 * odd pair, padding 0 and asymmetric, tasks split by pixels and by output
 * pairs, small and large transformed weights, every epilogue. */
AI3_TEST(conv2d_blocked_winograd) {
    const blk_case shapes[] = {
        simple(1, 16, 32, 8, 8, 3, 1, 1),   simple(2, 20, 36, 9, 13, 3, 1, 1),
        simple(1, 64, 64, 56, 56, 3, 1, 1), simple(1, 40, 80, 14, 14, 3, 1, 1),
        simple(3, 8, 8, 3, 3, 3, 1, 1),     simple(1, 24, 48, 1, 1, 3, 1, 1),
        simple(1, 17, 5, 6, 30, 3, 1, 0),   simple(1, 32, 200, 5, 5, 3, 1, 1),
        simple(2, 232, 224, 9, 9, 3, 1, 1), /* U past 3 MiB: groups as large as fit */
    };
    const ai3_activation acts[4] = {AI3_ACT_NONE, AI3_ACT_CLAMP, AI3_ACT_SIGMOID, AI3_ACT_SILU};
    for (int m = 2; m <= 4; m += 2)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            blk_case c = shapes[i];
            c.winograd = m;
            c.act = acts[i % 4];
            c.residual = i / 4 % 2;
            c.bias = i != 3;
            check_all_widths(&c);
        }
    blk_case c = simple(2, 16, 16, 10, 7, 3, 1, 0);
    c.pt = 2, c.pb = 0, c.pl = 1, c.pr = 2;
    c.winograd = 4;
    check_all_widths(&c);
}

/* The rule that picks it, and the path through a prepared convolution. */
AI3_TEST(conv2d_blocked_winograd_rule_and_prepared_run) {
    AI3_EXPECT(ai3_blocked_winograd_tile(64, 64, 1, 56, 56) == 4, "56x56x64: F(4x4)");
    AI3_EXPECT(ai3_blocked_winograd_tile(256, 256, 1, 14, 14) == 2, "14x14x256 N=1: F(2x2)");
    AI3_EXPECT(ai3_blocked_winograd_tile(256, 256, 8, 14, 14) == 4, "14x14x256 N=8: F(4x4)");
    AI3_EXPECT(ai3_blocked_winograd_tile(512, 512, 1, 7, 7) == 0, "7x7 N=1: direct");
    AI3_EXPECT(ai3_blocked_winograd_tile(512, 512, 8, 7, 7) == 0, "7x7x512 N=8: U too large");
    int cbs[2];
    const int k = test_blocked_widths(cbs);
    for (int i = 0; i < k; i++) {
        const int64_t w_shape[4] = {48, 32, 3, 3}, x_shape[4] = {1, 32, 28, 28};
        ai3_tensor weight = test_random(AI3_FLOAT32, 4, w_shape);
        ai3_tensor input = test_random(AI3_FLOAT32, 4, x_shape);
        ai3_tensor expected = test_output(AI3_FLOAT32, 4, (int64_t[4]){1, 48, 28, 28});
        ai3_conv2d_params p = ai3_conv2d_params_default();
        p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
        AI3_EXPECT(ai3_ref_conv2d_f32(&input, &weight, NULL, &p, &expected) == AI3_OK, "ref");
        ai3_blocked_conv2d *conv = NULL;
        AI3_EXPECT(ai3_blocked_conv2d_create(&weight, NULL, &p, cbs[i], &conv) == AI3_OK,
                   "create");
        AI3_EXPECT(ai3_blocked_conv2d_preferred(conv, 1, 28, 28), "blocked preferred");
        AI3_EXPECT(ai3_blocked_conv2d_prepare(conv, 1, 28, 28) == AI3_OK, "prepare: %s",
                   ai3_last_error());
        AI3_EXPECT(ai3_blocked_conv2d_prepare(conv, 1, 28, 28) == AI3_OK, "prepare again");
        float *x = to_blocked(input.data, 1, 32, 28 * 28, cbs[i], 0.0f);
        float *y = alloc_floats(ai3_blocked_channels(48, cbs[i]) * 28 * 28);
        float *out = alloc_floats(48 * 28 * 28);
        AI3_EXPECT(ai3_blocked_conv2d_run(conv, x, true, 1, 28, 28, y, NULL) == AI3_OK, "run");
        from_blocked(y, 1, 48, 28 * 28, cbs[i], out);
        double err = 0, scale = 1e-30;
        for (int64_t j = 0; j < 48 * 28 * 28; j++) {
            err = fmax(err, fabs(out[j] - test_get(&expected, j)));
            scale = fmax(scale, fabs(test_get(&expected, j)));
        }
        AI3_EXPECT(err / scale <= 1e-4, "cb=%d prepared run: relative error %g", cbs[i],
                   err / scale);
        ai3_blocked_conv2d_destroy(conv);
        free(x);
        free(y);
        free(out);
        free(weight.data);
        free(input.data);
        free(expected.data);
    }
}

AI3_TEST(conv2d_blocked_widths_1_to_30) {
    for (int64_t w = 1; w <= 30; w++) {
        blk_case c = simple(1, 16, 32, 3, w, 3, 1, 1);
        check_all_widths(&c);
        c = simple(1, 16, 16, 2, w, 3, 1, 1);
        c.depthwise = true;
        check_all_widths(&c);
    }
}

AI3_TEST(conv2d_blocked_depthwise) {
    const int64_t ks[2] = {3, 5}, channels[3] = {16, 24, 40};
    for (int ki = 0; ki < 2; ki++)
        for (int64_t s = 1; s <= 2; s++)
            for (int ci = 0; ci < 3; ci++) {
                blk_case c = simple(ci == 1 ? 2 : 1, channels[ci], channels[ci], 13, 17 + s * 5,
                                    ks[ki], s, ks[ki] / 2);
                c.depthwise = true;
                c.bias = ci != 2;
                check_all_widths(&c);
            }
    blk_case c = simple(1, 32, 32, 9, 11, 3, 1, 0);
    c.depthwise = true;
    c.pt = 1, c.pb = 2, c.pl = 0, c.pr = 1, c.dh = 2;
    check_all_widths(&c);
}

AI3_TEST(conv2d_blocked_epilogues) {
    const ai3_activation acts[] = {AI3_ACT_NONE,        AI3_ACT_CLAMP,     AI3_ACT_SIGMOID,
                                   AI3_ACT_SILU,        AI3_ACT_HARDSWISH, AI3_ACT_HARDSIGMOID,
                                   AI3_ACT_GELU};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++)
        for (int r = 0; r < 2; r++)
            for (int dw = 0; dw < 2; dw++) {
                if (acts[a] == AI3_ACT_NONE && !r) continue;
                blk_case c = simple(2, 24, 24, 6, 19, 3, 1, 1);
                c.depthwise = dw;
                c.act = acts[a];
                c.residual = r;
                check_all_widths(&c);
                c = simple(2, 40, 24, 7, 7, 3, 1, 1); /* tiles of two rows */
                c.act = acts[a];
                c.residual = r;
                check_all_widths(&c);
                c = simple(1, 24, 256, 7, 7, 3, 1, 1); /* tiles across row ends */
                c.act = acts[a];
                c.residual = r;
                check_all_widths(&c);
                c = simple(1, 3, 40, 10, 10, 3, 2, 1);
                c.plain_input = true;
                c.act = acts[a];
                c.residual = r;
                check_all_widths(&c);
            }
}

/* Sigmoid and silu fused into the tiles at the infinities, NaN and the
 * ends of the exponential's range: torch's values (silu(-inf) is NaN,
 * silu(-1e4) is -0), and the bits of the separate activation. A 1×1 of one
 * input channel and unit weights passes each pixel's value on exactly (but
 * -0, which the sum makes +0). */
AI3_TEST(conv2d_blocked_sigmoid_silu_special_values) {
    const float xs[] = {NAN, -INFINITY, INFINITY, -1e4f, 1e4f, -100, 100, -88.5f, 88.5f, -86.5f,
                        86.5f, -3, 3, 0, 1e-3f};
    enum { P = sizeof xs / sizeof xs[0] };
    const ai3_activation acts[2] = {AI3_ACT_SIGMOID, AI3_ACT_SILU};
    int cbs[2];
    const int k = test_blocked_widths(cbs);
    for (int i = 0; i < k; i++) {
        const int cb = cbs[i];
        const int64_t w_shape[4] = {cb, 1, 1, 1};
        ai3_tensor weight = test_tensor(AI3_FLOAT32, 4, w_shape);
        for (int o = 0; o < cb; o++) test_set(&weight, o, 1.0);
        const ai3_conv2d_params p = ai3_conv2d_params_default();
        ai3_blocked_conv2d *conv = NULL;
        AI3_EXPECT(ai3_blocked_conv2d_create(&weight, NULL, &p, cb, &conv) == AI3_OK,
                   "create: %s", ai3_last_error());
        float *y = alloc_floats(cb * P);
        for (int a = 0; a < 2 && conv; a++) {
            const ai3_epilogue e = {.act = acts[a]};
            AI3_EXPECT(ai3_blocked_conv2d_run(conv, xs, false, 1, 1, P, y, &e) == AI3_OK,
                       "run: %s", ai3_last_error());
            float sep[P];
            memcpy(sep, xs, sizeof sep);
            ai3_epilogue_apply_f32(sep, 0, NULL, 0, 1, P, &e);
            for (int j = 0; j < P; j++) {
                const double x = xs[j], ex = exp(-x);
                const double want = a ? x / (1 + ex) : 1 / (1 + ex);
                const float got = y[j * cb + cb - 1];
                const bool ok = isnan(want) ? isnan(got) && isnan(sep[j])
                                            : (got == want || fabs(got - want) <= 1e-6 * fabs(want) + 1e-30) &&
                                                  !memcmp(&got, &sep[j], sizeof got);
                AI3_EXPECT(ok, "cb=%d %s(%g) = %g (separate %g), torch %g", cb,
                           a ? "silu" : "sigmoid", x, got, sep[j], want);
            }
        }
        ai3_blocked_conv2d_destroy(conv);
        free(y);
        free(weight.data);
    }
}

AI3_TEST(conv2d_blocked_random_shapes) {
    for (int iter = 0; iter < 60; iter++) {
        blk_case c = {.n = ai3_test_randint(1, 2), .h = ai3_test_randint(1, 12),
                      .w = ai3_test_randint(1, 33), .kh = ai3_test_randint(1, 4),
                      .kw = ai3_test_randint(1, 4), .sh = ai3_test_randint(1, 3),
                      .sw = ai3_test_randint(1, 3), .pt = ai3_test_randint(0, 3),
                      .pb = ai3_test_randint(0, 3), .pl = ai3_test_randint(0, 3),
                      .pr = ai3_test_randint(0, 3), .dh = ai3_test_randint(1, 2),
                      .dw = ai3_test_randint(1, 2), .bias = ai3_test_randint(0, 1),
                      .depthwise = ai3_test_randint(0, 3) == 0,
                      .act = (ai3_activation)ai3_test_randint(0, 2),
                      .residual = ai3_test_randint(0, 1)};
        c.c_in = ai3_test_randint(1, 50);
        c.c_out = c.depthwise ? c.c_in : ai3_test_randint(1, 50);
        c.plain_input = !c.depthwise && ai3_test_randint(0, 3) == 0;
        if (c.h + c.pt + c.pb < c.dh * (c.kh - 1) + 1 || c.w + c.pl + c.pr < c.dw * (c.kw - 1) + 1)
            continue;
        check_all_widths(&c);
    }
}

AI3_TEST(conv2d_blocked_rejects_bad_calls) {
    int cbs[2];
    if (!test_blocked_widths(cbs)) {
        const int64_t w_shape[4] = {4, 4, 1, 1};
        ai3_tensor weight = test_random(AI3_FLOAT32, 4, w_shape);
        ai3_conv2d_params p = ai3_conv2d_params_default();
        ai3_blocked_conv2d *conv;
        AI3_EXPECT_STATUS(ai3_blocked_conv2d_create(&weight, NULL, &p, 8, &conv),
                          AI3_ERROR_UNSUPPORTED);
        free(weight.data);
        return;
    }
    const int cb = cbs[0];
    AI3_EXPECT(ai3_blocked_width() == 0 || ai3_blocked_width() == 8 || ai3_blocked_width() == 16,
               "width %d", ai3_blocked_width());
    const int64_t w_shape[4] = {4, 2, 3, 3}, dw_shape[4] = {4, 1, 3, 3};
    ai3_tensor weight = test_random(AI3_FLOAT32, 4, w_shape);
    ai3_tensor dw_weight = test_random(AI3_FLOAT32, 4, dw_shape);
    ai3_blocked_conv2d *conv = NULL;
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.groups = 2; /* grouped, not depthwise */
    AI3_EXPECT_STATUS(ai3_blocked_conv2d_create(&weight, NULL, &p, cb, &conv),
                      AI3_ERROR_UNSUPPORTED);
    AI3_EXPECT(strstr(ai3_last_error(), "groups") != NULL, "message: %s", ai3_last_error());
    p.groups = 1;
    p.padding_mode = AI3_PADDING_REFLECT;
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    AI3_EXPECT_STATUS(ai3_blocked_conv2d_create(&weight, NULL, &p, cb, &conv),
                      AI3_ERROR_UNSUPPORTED);
    AI3_EXPECT(strstr(ai3_last_error(), "padding_mode") != NULL, "message: %s",
               ai3_last_error());
    p = ai3_conv2d_params_default();
    AI3_EXPECT_STATUS(ai3_blocked_conv2d_create(&weight, NULL, &p, 4, &conv),
                      AI3_ERROR_UNSUPPORTED);
    ai3_tensor as_double = weight;
    as_double.dtype = AI3_FLOAT64;
    AI3_EXPECT_STATUS(ai3_blocked_conv2d_create(&as_double, NULL, &p, cb, &conv),
                      AI3_ERROR_UNSUPPORTED);

    /* output size below 1: a 3×3 kernel on 2×2 without padding */
    float *x = alloc_floats(cb * 4);
    float *y = alloc_floats(cb * 64);
    for (int i = 0; i < cb * 4; i++) x[i] = 1;
    AI3_EXPECT(ai3_blocked_conv2d_create(&weight, NULL, &p, cb, &conv) == AI3_OK, "create: %s",
               ai3_last_error());
    AI3_EXPECT_STATUS(ai3_blocked_conv2d_run(conv, x, true, 1, 2, 2, y, NULL),
                      AI3_ERROR_INVALID_ARGUMENT);
    ai3_blocked_conv2d_destroy(conv);

    /* depthwise from plain input */
    p.groups = 4;
    AI3_EXPECT(ai3_blocked_conv2d_create(&dw_weight, NULL, &p, cb, &conv) == AI3_OK,
               "create depthwise: %s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_blocked_conv2d_run(conv, x, false, 1, 4, 4, y, NULL),
                      AI3_ERROR_INVALID_ARGUMENT);
    ai3_blocked_conv2d_destroy(conv);
    free(x);
    free(y);
    free(weight.data);
    free(dw_weight.data);
}
