/* The channel-blocked operations other than conv2d (algorithms/blocked.h):
 * the conversions, pooling against the plain references, the global
 * average pool and the channel scale, for both block widths, under every
 * ISA the CPU has; pad channels of inputs hold garbage that must not leak
 * into real channels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algorithms/blocked.h"
#include "harness.h"
#include "ref/ref.h"
#include "tensors.h"

static const int widths[] = {16, 8};

static float *alloc_floats(int64_t count) {
    return malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
}

static void fill_nan(float *p, int64_t count) {
    for (int64_t i = 0; i < count; i++) p[i] = NAN;
}

/* Elements of a blocked (n, c, hw) value. */
static int64_t blocked_size(int64_t n, int64_t c, int64_t hw, int cb) {
    return n * ai3_blocked_channels(c, cb) * hw;
}

/* Offset of element (img, ch, pixel) of a blocked (n, c, hw) value. */
static int64_t blocked_at(int64_t img, int64_t ch, int64_t pixel, int64_t c, int64_t hw, int cb) {
    return ((img * (ai3_blocked_channels(c, cb) / cb) + ch / cb) * hw + pixel) * cb + ch % cb;
}

/* Overwrites the pad channels of a blocked value with large finite values of
 * either sign (pool windows sum at most 25 of them: still finite). */
static void fill_pad_garbage(float *x, int64_t n, int64_t c, int64_t hw, int cb) {
    for (int64_t img = 0; img < n; img++)
        for (int64_t ch = c; ch < ai3_blocked_channels(c, cb); ch++)
            for (int64_t p = 0; p < hw; p++)
                x[blocked_at(img, ch, p, c, hw, cb)] = (p + ch) % 2 ? 1e30f : -1e30f;
}

/* Pad channels of a blocked value that are not zero (the operations' outputs
 * have zero ones). */
static int64_t nonzero_pads(const float *x, int64_t n, int64_t c, int64_t hw, int cb) {
    int64_t count = 0;
    for (int64_t img = 0; img < n; img++)
        for (int64_t ch = c; ch < ai3_blocked_channels(c, cb); ch++)
            for (int64_t p = 0; p < hw; p++) count += x[blocked_at(img, ch, p, c, hw, cb)] != 0;
    return count;
}

/* Runs test(isa name) under each ISA the CPU has (each a variant of the
 * kernels), then restores the active one. */
static void for_each_isa(void (*test)(const char *isa)) {
    ai3_isa active = ai3_cpu_isa();
    for (int isa = AI3_ISA_GENERIC; isa <= (int)ai3_cpu_best_isa(); isa++) {
        ai3_cpu_set_isa((ai3_isa)isa);
        test(ai3_isa_name((ai3_isa)isa));
    }
    ai3_cpu_set_isa(active);
}

/* ---- conversions -------------------------------------------------------- */

static void round_trip(const char *isa) {
    const int64_t channels[] = {1, 3, 8, 15, 16, 17, 24, 40, 64};
    const int64_t planes[] = {1, 5, 16, 49, 67, 1030, 2100};
    for (int wi = 0; wi < 2; wi++)
        for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++)
            for (size_t pi = 0; pi < sizeof planes / sizeof *planes; pi++) {
                int cb = widths[wi];
                int64_t c = channels[ci], hw = planes[pi], n = 1 + (int64_t)(ci + pi) % 2;
                ai3_tensor x = test_random(AI3_FLOAT32, 3, (int64_t[]){n, c, hw});
                const float *xp = x.data;
                int64_t size = blocked_size(n, c, hw, cb);
                float *b = alloc_floats(size), *back = alloc_floats(n * c * hw);
                fill_nan(b, size);
                fill_nan(back, n * c * hw);
                ai3_blocked_from_plain(xp, n, c, hw, cb, b);
                int64_t wrong = 0;
                for (int64_t img = 0; img < n; img++)
                    for (int64_t ch = 0; ch < ai3_blocked_channels(c, cb); ch++)
                        for (int64_t p = 0; p < hw; p++) {
                            float want = ch < c ? xp[(img * c + ch) * hw + p] : 0.0f;
                            wrong += b[blocked_at(img, ch, p, c, hw, cb)] != want;
                        }
                ai3_blocked_to_plain(b, n, c, hw, cb, back);
                wrong += memcmp(back, xp, sizeof(float) * (size_t)(n * c * hw)) != 0;
                AI3_EXPECT(!wrong, "%s cb=%d n=%lld c=%lld hw=%lld: %lld wrong",
                           isa, cb, (long long)n, (long long)c, (long long)hw,
                           (long long)wrong);
                free(x.data), free(b), free(back);
            }
}

AI3_TEST(blocked_conversion_round_trip) { for_each_isa(round_trip); }

/* to_plain reads only the real channels: garbage in the pad ones. */
AI3_TEST(blocked_to_plain_ignores_pad_channels) {
    for (int wi = 0; wi < 2; wi++) {
        int cb = widths[wi];
        int64_t n = 2, c = 5, hw = 37;
        ai3_tensor x = test_random(AI3_FLOAT32, 3, (int64_t[]){n, c, hw});
        float *b = alloc_floats(blocked_size(n, c, hw, cb)), *back = alloc_floats(n * c * hw);
        ai3_blocked_from_plain(x.data, n, c, hw, cb, b);
        fill_pad_garbage(b, n, c, hw, cb);
        ai3_blocked_to_plain(b, n, c, hw, cb, back);
        AI3_EXPECT(!memcmp(back, x.data, sizeof(float) * (size_t)(n * c * hw)), "cb=%d", cb);
        free(x.data), free(b), free(back);
    }
}

/* ---- pooling ------------------------------------------------------------ */

/* Draws valid-looking pooling parameters (a few give an empty output and
 * are skipped) and an input size. */
static ai3_pool2d_params random_params(bool max, int64_t *h, int64_t *w) {
    static const int64_t kernels[] = {1, 2, 3, 5};
    ai3_pool2d_params p = ai3_pool2d_params_default(kernels[ai3_test_randint(0, 3)],
                                                    kernels[ai3_test_randint(0, 3)]);
    p.stride_h = ai3_test_randint(1, 3);
    p.stride_w = ai3_test_randint(1, 3);
    if (max && ai3_test_randint(0, 2) == 0) {
        p.dilation_h = ai3_test_randint(1, 2);
        p.dilation_w = ai3_test_randint(1, 2);
    }
    p.pad_h = ai3_test_randint(0, p.kernel_h / 2);
    p.pad_w = ai3_test_randint(0, p.kernel_w / 2);
    p.ceil_mode = (int)ai3_test_randint(0, 1);
    if (!max) {
        p.count_include_pad = (int)ai3_test_randint(0, 1);
        if (ai3_test_randint(0, 3) == 0) p.divisor_override = ai3_test_randint(1, 9);
    }
    *h = ai3_test_randint(1, 19);
    *w = ai3_test_randint(1, 19);
    return p;
}

/* Pools plain x (n, c, h, w) blocked, pad channels garbage, and compares
 * with the reference; returns false where the parameters give no output. */
static bool pool_case(bool max, const ai3_pool2d_params *p, int64_t n, int64_t c, int64_t h,
                      int64_t w, int cb, const char *isa) {
    ai3_tensor x = test_random(AI3_FLOAT32, 4, (int64_t[]){n, c, h, w});
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    ai3_status s = max ? ai3_maxpool2d_output_shape(&x, p, &ndim, shape)
                       : ai3_avgpool2d_output_shape(&x, p, &ndim, shape);
    if (s != AI3_OK) {
        free(x.data);
        return false;
    }
    int64_t oh = shape[2], ow = shape[3];
    float *xb = alloc_floats(blocked_size(n, c, h * w, cb));
    int64_t ysize = blocked_size(n, c, oh * ow, cb);
    float *yb = alloc_floats(ysize);
    ai3_tensor y = test_output(AI3_FLOAT32, 4, shape), ref = test_tensor(AI3_FLOAT32, 4, shape);
    ai3_blocked_from_plain(x.data, n, c, h * w, cb, xb);
    fill_pad_garbage(xb, n, c, h * w, cb);
    fill_nan(yb, ysize);
    s = ai3_blocked_pool2d(max, p, xb, n, c, h, w, cb, yb);
    char what[256];
    snprintf(what, sizeof what,
             "%s %s cb=%d n=%lld c=%lld in=%lldx%lld k=%lldx%lld s=%lldx%lld p=%lldx%lld "
             "d=%lldx%lld ceil=%d incl=%d div=%lld",
             max ? "maxpool2d" : "avgpool2d", isa, cb, (long long)n, (long long)c, (long long)h,
             (long long)w, (long long)p->kernel_h, (long long)p->kernel_w,
             (long long)p->stride_h, (long long)p->stride_w, (long long)p->pad_h,
             (long long)p->pad_w, (long long)p->dilation_h, (long long)p->dilation_w,
             p->ceil_mode, p->count_include_pad, (long long)p->divisor_override);
    AI3_EXPECT(s == AI3_OK, "%s: %s", what, ai3_last_error());
    AI3_EXPECT(!nonzero_pads(yb, n, c, oh * ow, cb), "%s: pad channels not zero", what);
    ai3_blocked_to_plain(yb, n, c, oh * ow, cb, y.data);
    (max ? ai3_ref_maxpool2d_f32 : ai3_ref_avgpool2d_f32)(&x, p, &ref);
    test_compare(&y, &ref, max ? 0 : 1e-6, max ? 0 : 1e-5, what);
    free(x.data), free(xb), free(yb), free(y.data), free(ref.data);
    return true;
}

static void pool_sweep(bool max, const char *isa) {
    int ran = 0;
    for (int t = 0; t < 300; t++) {
        int64_t h, w;
        ai3_pool2d_params p = random_params(max, &h, &w);
        int64_t c = ai3_test_randint(1, 40), n = ai3_test_randint(1, 2);
        ran += pool_case(max, &p, n, c, h, w, widths[t % 2], isa);
    }
    AI3_EXPECT(ran > 200, "only %d of 300 parameter draws ran", ran);
}

static void max_sweep(const char *isa) { pool_sweep(true, isa); }
static void avg_sweep(const char *isa) { pool_sweep(false, isa); }
AI3_TEST(blocked_maxpool2d_matches_reference) { for_each_isa(max_sweep); }
AI3_TEST(blocked_avgpool2d_matches_reference) { for_each_isa(avg_sweep); }

/* The networks' cases: ResNet's stem maxpool, a 2×2 average pool. */
AI3_TEST(blocked_pool2d_network_shapes) {
    ai3_pool2d_params stem = ai3_pool2d_params_default(3, 3);
    stem.stride_h = stem.stride_w = 2;
    stem.pad_h = stem.pad_w = 1;
    ai3_pool2d_params halve = ai3_pool2d_params_default(2, 2);
    for (int wi = 0; wi < 2; wi++) {
        const char *isa = ai3_isa_name(ai3_cpu_isa());
        AI3_EXPECT(pool_case(true, &stem, 1, 64, 112, 112, widths[wi], isa), "stem");
        AI3_EXPECT(pool_case(true, &stem, 2, 20, 33, 31, widths[wi], isa), "stem, odd");
        AI3_EXPECT(pool_case(false, &halve, 2, 24, 56, 56, widths[wi], isa), "halve");
    }
}

/* A NaN in a window gives NaN, as torch (and the reference). */
static void maxpool_nan(const char *isa) {
    ai3_pool2d_params p = ai3_pool2d_params_default(3, 3);
    p.stride_h = p.stride_w = 2;
    p.pad_h = p.pad_w = 1;
    const int64_t n = 1, c = 19, h = 9, w = 9, oh = 5, ow = 5;
    for (int wi = 0; wi < 2; wi++) {
        int cb = widths[wi];
        ai3_tensor x = test_random(AI3_FLOAT32, 4, (int64_t[]){n, c, h, w});
        float *xp = x.data;
        xp[4 * h * w + 3 * w + 5] = NAN;
        xp[17 * h * w + 8 * w + 0] = NAN;
        ai3_tensor y = test_output(AI3_FLOAT32, 4, (int64_t[]){n, c, oh, ow});
        ai3_tensor ref = test_tensor(AI3_FLOAT32, 4, (int64_t[]){n, c, oh, ow});
        float *xb = alloc_floats(blocked_size(n, c, h * w, cb));
        float *yb = alloc_floats(blocked_size(n, c, oh * ow, cb));
        ai3_blocked_from_plain(xp, n, c, h * w, cb, xb);
        AI3_EXPECT(ai3_blocked_pool2d(true, &p, xb, n, c, h, w, cb, yb) == AI3_OK, "%s",
                   ai3_last_error());
        ai3_blocked_to_plain(yb, n, c, oh * ow, cb, y.data);
        ai3_ref_maxpool2d_f32(&x, &p, &ref);
        char what[64];
        snprintf(what, sizeof what, "maxpool2d NaN %s cb=%d", isa, cb);
        test_compare(&y, &ref, 0, 0, what);
        AI3_EXPECT(isnan(((float *)y.data)[4 * oh * ow + 1 * ow + 2]), "%s: NaN lost", what);
        free(x.data), free(y.data), free(ref.data), free(xb), free(yb);
    }
}

AI3_TEST(blocked_maxpool2d_propagates_nan) { for_each_isa(maxpool_nan); }

AI3_TEST(blocked_pool2d_rejects_bad_arguments) {
    const ai3_status INVALID = AI3_ERROR_INVALID_ARGUMENT;
    float x[16 * 4 * 4] = {0}, y[16 * 4 * 4];
    ai3_pool2d_params good = ai3_pool2d_params_default(2, 2);
    AI3_EXPECT(ai3_blocked_pool2d(true, &good, x, 1, 16, 4, 4, 16, y) == AI3_OK, "%s",
               ai3_last_error());
    for (int max = 0; max < 2; max++) {
        ai3_pool2d_params p = good;
        AI3_EXPECT_STATUS(ai3_blocked_pool2d(max, NULL, x, 1, 16, 4, 4, 16, y), INVALID);
        AI3_EXPECT_STATUS(ai3_blocked_pool2d(max, &p, x, 1, 16, 4, 4, 4, y), INVALID);
        AI3_EXPECT_STATUS(ai3_blocked_pool2d(max, &p, x, 1, 0, 4, 4, 16, y), INVALID);
        p.kernel_h = 0;
        AI3_EXPECT_STATUS(ai3_blocked_pool2d(max, &p, x, 1, 16, 4, 4, 16, y), INVALID);
        p = good;
        p.stride_w = 0;
        AI3_EXPECT_STATUS(ai3_blocked_pool2d(max, &p, x, 1, 16, 4, 4, 16, y), INVALID);
        p = good;
        p.pad_h = 2; /* more than half of the kernel */
        AI3_EXPECT_STATUS(ai3_blocked_pool2d(max, &p, x, 1, 16, 4, 4, 16, y), INVALID);
        p = ai3_pool2d_params_default(5, 5); /* larger than the 4 × 4 input */
        AI3_EXPECT_STATUS(ai3_blocked_pool2d(max, &p, x, 1, 16, 4, 4, 16, y), INVALID);
    }
    ai3_pool2d_params p = good;
    p.dilation_h = 2; /* avgpool2d has no dilation */
    AI3_EXPECT_STATUS(ai3_blocked_pool2d(false, &p, x, 1, 16, 4, 4, 16, y), INVALID);
    p = good;
    p.divisor_override = -1;
    AI3_EXPECT_STATUS(ai3_blocked_pool2d(false, &p, x, 1, 16, 4, 4, 16, y), INVALID);
}

/* ---- global average pool, channel scale --------------------------------- */

static void global_avgpool(const char *isa) {
    const int64_t channels[] = {3, 17, 64, 96, 1280};
    const int64_t planes[] = {1, 3, 49, 196, 3136};
    for (int wi = 0; wi < 2; wi++)
        for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++)
            for (size_t pi = 0; pi < sizeof planes / sizeof *planes; pi++) {
                int cb = widths[wi];
                int64_t c = channels[ci], hw = planes[pi], n = 1 + (int64_t)(ci + pi) % 2;
                if (c * hw > 300000) continue;
                ai3_tensor x = test_random(AI3_FLOAT32, 3, (int64_t[]){n, c, hw});
                ai3_tensor y = test_tensor(AI3_FLOAT32, 2, (int64_t[]){n, c});
                ai3_tensor ref = test_tensor(AI3_FLOAT32, 2, (int64_t[]){n, c});
                const float *xp = x.data;
                for (int64_t i = 0; i < n * c; i++) {
                    double sum = 0;
                    for (int64_t p = 0; p < hw; p++) sum += xp[i * hw + p];
                    ((float *)ref.data)[i] = (float)(sum / (double)hw);
                }
                int64_t ysize = blocked_size(n, c, 1, cb);
                float *xb = alloc_floats(blocked_size(n, c, hw, cb));
                float *yb = alloc_floats(ysize);
                ai3_blocked_from_plain(xp, n, c, hw, cb, xb);
                fill_pad_garbage(xb, n, c, hw, cb);
                ai3_blocked_global_avgpool(xb, n, c, hw, cb, yb);
                char what[128];
                snprintf(what, sizeof what, "global avgpool %s cb=%d n=%lld c=%lld hw=%lld",
                         isa, cb, (long long)n, (long long)c, (long long)hw);
                AI3_EXPECT(!nonzero_pads(yb, n, c, 1, cb), "%s: pad channels not zero", what);
                ai3_blocked_to_plain(yb, n, c, 1, cb, y.data);
                test_compare(&y, &ref, 1e-6, 1e-5, what);
                free(x.data), free(y.data), free(ref.data), free(xb), free(yb);
            }
}

AI3_TEST(blocked_global_avgpool_matches_mean) { for_each_isa(global_avgpool); }

static void scale_channels(const char *isa) {
    const int64_t channels[] = {5, 16, 96, 240, 1152};
    const int64_t planes[] = {1, 49, 196, 1030, 12544};
    for (int wi = 0; wi < 2; wi++)
        for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++)
            for (size_t pi = 0; pi < sizeof planes / sizeof *planes; pi++) {
                int cb = widths[wi];
                int64_t c = channels[ci], hw = planes[pi], n = 1 + (int64_t)(ci + pi) % 2;
                if (c * hw > 500000) continue;
                ai3_tensor x = test_random(AI3_FLOAT32, 3, (int64_t[]){n, c, hw});
                ai3_tensor s = test_random(AI3_FLOAT32, 2, (int64_t[]){n, c});
                ai3_tensor y = test_tensor(AI3_FLOAT32, 3, (int64_t[]){n, c, hw});
                ai3_tensor ref = test_tensor(AI3_FLOAT32, 3, (int64_t[]){n, c, hw});
                const float *xp = x.data, *sp = s.data;
                for (int64_t i = 0; i < n * c; i++)
                    for (int64_t p = 0; p < hw; p++)
                        ((float *)ref.data)[i * hw + p] = xp[i * hw + p] * sp[i];
                int64_t size = blocked_size(n, c, hw, cb);
                float *xb = alloc_floats(size), *yb = alloc_floats(size);
                float *sb = alloc_floats(blocked_size(n, c, 1, cb));
                ai3_blocked_from_plain(xp, n, c, hw, cb, xb);
                ai3_blocked_from_plain(sp, n, c, 1, cb, sb);
                fill_pad_garbage(xb, n, c, hw, cb);
                fill_pad_garbage(sb, n, c, 1, cb);
                fill_nan(yb, size);
                char what[128];
                for (int in_place = 0; in_place < 2; in_place++) {
                    float *out = in_place ? xb : yb;
                    ai3_blocked_scale_channels(xb, sb, n, c, hw, cb, out);
                    snprintf(what, sizeof what,
                             "scale_channels %s cb=%d n=%lld c=%lld hw=%lld in_place=%d",
                             isa, cb, (long long)n, (long long)c, (long long)hw, in_place);
                    AI3_EXPECT(!nonzero_pads(out, n, c, hw, cb), "%s: pad channels not zero",
                               what);
                    ai3_blocked_to_plain(out, n, c, hw, cb, y.data);
                    test_compare(&y, &ref, 0, 0, what);
                }
                free(x.data), free(s.data), free(y.data), free(ref.data);
                free(xb), free(yb), free(sb);
            }
}

AI3_TEST(blocked_scale_channels_matches_product) { for_each_isa(scale_channels); }
