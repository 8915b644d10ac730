/*
 * Tests of ai3's CUDA kernels (src/cuda/kernels.h) against float64 host
 * references written here: conv2d (direct and smm) over strides,
 * dilations, groups, depthwise, asymmetric padding, kernel sizes and odd
 * spatial sizes; every activation; max, average and adaptive average
 * pooling; pad2d in each mode; bias; batchnorm; add and mul with
 * broadcasting; mean over any set of dimensions; permute; layernorm;
 * softmax over first, middle and last dimensions. float32 and float64,
 * and float16 / bfloat16 for a few cases. Prints one line per failure and
 * "N passed, N failed"; exits non-zero on a failure. Without a CUDA device
 * it prints a skip line and exits 0.
 *
 * `test_kernels bench` times conv2d smm and direct (float32, N = 10) on
 * three 3x3 layers instead.
 */
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static const char *dtype_names[] = {"f32", "f64", "f16", "bf16"};

/* --- host conversions ---------------------------------------------------- */

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff;
    if (e == 0xff) return (uint16_t)(sign | 0x7c00 | (m ? 0x200 : 0));
    int ee = (int)e - 127 + 15;
    if (ee >= 31) return (uint16_t)(sign | 0x7c00);
    if (ee <= 0) {
        if (ee < -10) return (uint16_t)sign;
        m |= 0x800000;
        int shift = 14 - ee;
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)ee << 10) | (m >> 13), rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float f;
    if (e == 0) {
        f = ldexpf((float)m, -24);
        return sign ? -f : f;
    }
    uint32_t x = e == 31 ? sign | 0x7f800000 | (m << 13) : sign | ((e - 15 + 127) << 23) | (m << 13);
    memcpy(&f, &x, 4);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static float bf16_to_f32(uint16_t b) {
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static size_t dsize(ai3_dtype t) { return t == AI3_FLOAT64 ? 8 : t == AI3_FLOAT32 ? 4 : 2; }

/* Rounds v[0..n) to dtype in place (so references see what the device
 * sees) and returns a device copy in that dtype. */
static void *upload(ai3_dtype t, double *v, int64_t n) {
    size_t es = dsize(t);
    unsigned char *h = malloc(es * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        if (t == AI3_FLOAT64) {
            memcpy(h + 8 * i, &v[i], 8);
        } else if (t == AI3_FLOAT32) {
            float f = (float)v[i];
            memcpy(h + 4 * i, &f, 4);
            v[i] = f;
        } else {
            uint16_t b = t == AI3_FLOAT16 ? f32_to_f16((float)v[i]) : f32_to_bf16((float)v[i]);
            memcpy(h + 2 * i, &b, 2);
            v[i] = t == AI3_FLOAT16 ? f16_to_f32(b) : bf16_to_f32(b);
        }
    }
    void *d = NULL;
    cudaMalloc(&d, es * (size_t)(n ? n : 1));
    cudaMemcpy(d, h, es * (size_t)n, cudaMemcpyHostToDevice);
    free(h);
    return d;
}

static double *download(ai3_dtype t, const void *d, int64_t n) {
    size_t es = dsize(t);
    unsigned char *h = malloc(es * (size_t)n);
    double *v = malloc(sizeof(double) * (size_t)n);
    cudaMemcpy(h, d, es * (size_t)n, cudaMemcpyDeviceToHost);
    for (int64_t i = 0; i < n; i++) {
        if (t == AI3_FLOAT64) {
            memcpy(&v[i], h + 8 * i, 8);
        } else if (t == AI3_FLOAT32) {
            float f;
            memcpy(&f, h + 4 * i, 4);
            v[i] = f;
        } else {
            uint16_t b;
            memcpy(&b, h + 2 * i, 2);
            v[i] = t == AI3_FLOAT16 ? f16_to_f32(b) : bf16_to_f32(b);
        }
    }
    free(h);
    return v;
}

static double *randoms(int64_t n, double lo, double hi) {
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * rand() / (double)RAND_MAX;
    return v;
}

static double tolerance(ai3_dtype t) {
    return t == AI3_FLOAT64 ? 1e-10 : t == AI3_FLOAT32 ? 1e-4 : t == AI3_FLOAT16 ? 1e-2 : 3e-2;
}

/* Runs the launcher's result check: err from the launch, then the output
 * (on device, n elements of dtype t) against ref. */
static void check(const char *name, ai3_dtype t, cudaError_t err, const void *out,
                  const double *ref, int64_t n) {
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    if (err != cudaSuccess) {
        printf("FAIL %s [%s]: %s\n", name, dtype_names[t], cudaGetErrorString(err));
        failed++;
        return;
    }
    double *got = download(t, out, n), tol = tolerance(t);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        if (isnan(ref[i]) ? !isnan(got[i]) : !(fabs(got[i] - ref[i]) <= tol * (1 + fabs(ref[i]))))
            bad = i;
    }
    if (bad >= 0) {
        printf("FAIL %s [%s]: element %lld is %.10g, expected %.10g\n", name, dtype_names[t],
               (long long)bad, got[bad], ref[bad]);
        failed++;
    } else {
        passed++;
    }
    free(got);
}

static double act_ref(ai3_op op, double x, const ai3_op_params *p) {
    double t;
    switch (op) {
    case AI3_OP_RELU: return isnan(x) ? x : x > 0 ? x : 0;
    case AI3_OP_HARDTANH:
        return isnan(x) ? x : x < p->hardtanh.min_val ? p->hardtanh.min_val
                          : x > p->hardtanh.max_val ? p->hardtanh.max_val : x;
    case AI3_OP_SIGMOID: return 1 / (1 + exp(-x));
    case AI3_OP_HARDSIGMOID: t = fmin(fmax(x + 3, 0), 6); return isnan(x) ? x : t / 6;
    case AI3_OP_HARDSWISH: t = fmin(fmax(x + 3, 0), 6); return isnan(x) ? x : x * t / 6;
    case AI3_OP_SILU: return x / (1 + exp(-x));
    default:
        if (p->gelu.tanh_approximation)
            return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        return 0.5 * x * (1 + erf(x / sqrt(2)));
    }
}

/* --- conv2d --------------------------------------------------------------- */

typedef struct {
    int64_t n, c_in, h, w, c_out, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, groups;
    int bias;
} conv_case;

static void conv_ref(const conv_case *c, const ai3_cuda_conv2d_shape *s, const double *x,
                     const double *wt, const double *b, double *y) {
    int64_t cin_g = c->c_in / c->groups, cout_g = c->c_out / c->groups;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t co = 0; co < s->c_out; co++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    double sum = b ? b[co] : 0;
                    int64_t g = co / cout_g;
                    for (int64_t ci = 0; ci < cin_g; ci++)
                        for (int64_t ky = 0; ky < s->kh; ky++)
                            for (int64_t kx = 0; kx < s->kw; kx++) {
                                int64_t iy = oy * s->stride_h - s->pad_top + ky * s->dilation_h;
                                int64_t ix = ox * s->stride_w - s->pad_left + kx * s->dilation_w;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                sum += x[((n * s->c_in + g * cin_g + ci) * s->h + iy) * s->w + ix] *
                                       wt[((co * cin_g + ci) * s->kh + ky) * s->kw + kx];
                            }
                    y[((n * s->c_out + co) * s->oh + oy) * s->ow + ox] = sum;
                }
}

static ai3_cuda_conv2d_shape conv_shape(const conv_case *c) {
    ai3_cuda_conv2d_shape s = {c->n, c->c_in, c->h, c->w, c->c_out, c->kh, c->kw, 0, 0,
                               c->sh, c->sw, c->pt, c->pl, c->dh, c->dw, c->groups};
    s.oh = (c->h + c->pt + c->pb - c->dh * (c->kh - 1) - 1) / c->sh + 1;
    s.ow = (c->w + c->pl + c->pr - c->dw * (c->kw - 1) - 1) / c->sw + 1;
    return s;
}

static void test_conv(const char *label, conv_case c, ai3_dtype t) {
    ai3_cuda_conv2d_shape s = conv_shape(&c);
    int64_t nx = c.n * c.c_in * c.h * c.w, nw = c.c_out * (c.c_in / c.groups) * c.kh * c.kw;
    int64_t ny = s.n * s.c_out * s.oh * s.ow;
    double *x = randoms(nx, -1, 1), *w = randoms(nw, -1, 1), *b = randoms(c.c_out, -1, 1);
    double *ref = malloc(sizeof(double) * (size_t)ny);
    void *dx = upload(t, x, nx), *dw = upload(t, w, nw), *db = upload(t, b, c.c_out), *dy;
    cudaMalloc(&dy, dsize(t) * (size_t)ny);
    conv_ref(&c, &s, x, w, c.bias ? b : NULL, ref);
    char name[160];
    snprintf(name, sizeof name, "conv2d direct %s", label);
    check(name, t, ai3_cuda_conv2d_direct(t, dx, dw, c.bias ? db : NULL, dy, &s, NULL, 0), dy, ref, ny);
    cudaMemset(dy, 0, dsize(t) * (size_t)ny);
    snprintf(name, sizeof name, "conv2d smm %s", label);
    check(name, t, ai3_cuda_conv2d_smm(t, dx, dw, c.bias ? db : NULL, dy, &s, 0), dy, ref, ny);
    cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dy);
    free(x), free(w), free(b), free(ref);
}

/* "direct" with a fused activation: the general, depthwise-tiled and
 * simple depthwise paths, float32. */
static void test_conv_activations(void) {
    static const conv_case cases[] = {
        {2, 8, 11, 13, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {2, 12, 20, 17, 12, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 12, 1},
        {1, 6, 9, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6, 1},
    };
    ai3_op_params gelu = {0}, tanh_range = {0};
    tanh_range.hardtanh.min_val = -0.5, tanh_range.hardtanh.max_val = 0.25;
    const ai3_cuda_act acts[] = {{AI3_OP_GELU, &gelu}, {AI3_OP_HARDTANH, &tanh_range},
                                 {AI3_OP_SILU, NULL}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
            const conv_case *c = &cases[k];
            ai3_cuda_conv2d_shape s = conv_shape(c);
            int64_t nx = c->n * c->c_in * c->h * c->w, nw = c->c_out * (c->c_in / c->groups) * c->kh * c->kw;
            int64_t ny = s.n * s.c_out * s.oh * s.ow;
            double *x = randoms(nx, -1, 1), *w = randoms(nw, -1, 1), *b = randoms(c->c_out, -1, 1);
            double *ref = malloc(sizeof(double) * (size_t)ny);
            void *dx = upload(AI3_FLOAT32, x, nx), *dw = upload(AI3_FLOAT32, w, nw),
                 *db = upload(AI3_FLOAT32, b, c->c_out), *dy;
            cudaMalloc(&dy, 4 * (size_t)ny);
            conv_ref(c, &s, x, w, b, ref);
            for (int64_t i = 0; i < ny; i++) ref[i] = act_ref(acts[a].op, ref[i], acts[a].params);
            char name[96];
            snprintf(name, sizeof name, "conv2d direct + activation %d, case %zu", (int)acts[a].op, k);
            check(name, AI3_FLOAT32,
                  ai3_cuda_conv2d_direct(AI3_FLOAT32, dx, dw, db, dy, &s, &acts[a], 0), dy, ref, ny);
            cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dy);
            free(x), free(w), free(b), free(ref);
        }
}

static void test_convs(void) {
    /* n c_in h w c_out kh kw sh sw pt pb pl pr dh dw groups bias */
    static const struct { const char *label; conv_case c; int half; } cases[] = {
        {"3x3 13x17", {2, 3, 13, 17, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 1},
        {"3x3 stride 2", {2, 16, 15, 15, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0}, 0},
        {"3x3 dilation 2", {1, 8, 13, 17, 16, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1}, 0},
        {"3x3 groups 2", {2, 8, 11, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1}, 0},
        {"3x3 depthwise", {2, 16, 13, 17, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16, 1}, 1},
        {"5x5 depthwise x2 stride 2", {1, 8, 14, 14, 16, 5, 5, 2, 2, 2, 2, 2, 2, 1, 1, 8, 0}, 0},
        {"3x3 asymmetric padding", {1, 4, 10, 10, 8, 3, 3, 1, 1, 2, 1, 0, 3, 1, 1, 1, 1}, 0},
        {"1x1 130 out", {2, 64, 7, 9, 130, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0}, 0},
        {"5x5", {1, 6, 13, 17, 20, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1}, 0},
        {"7x7 stride 2", {2, 3, 33, 35, 64, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1}, 0},
        {"3x3 70->96", {2, 70, 20, 19, 96, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 1},
        {"3x3 groups 4", {1, 32, 9, 9, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 0}, 0},
        {"3x3 256->256 14x14", {1, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 0},
        {"1x1 stride 2", {3, 20, 9, 9, 40, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1}, 0},
        {"3x3 dilation 60", {1, 2, 130, 130, 4, 3, 3, 1, 1, 0, 0, 0, 0, 60, 60, 1, 1}, 0},
        {"3x2 stride 3x1 dilation 1x2", {2, 5, 16, 11, 7, 3, 2, 3, 1, 0, 2, 1, 0, 1, 2, 1, 1}, 0},
        /* the tiled depthwise path: plane sizes from one tile for many
         * planes (7x7, 3x5) to several tiles per plane (70x45) */
        {"dw 3x3 70x45", {2, 5, 70, 45, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5, 1}, 1},
        {"dw 3x3 stride 2 57x33", {1, 6, 57, 33, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 6, 1}, 0},
        {"dw 5x5 stride 2 28x28", {2, 7, 28, 28, 7, 5, 5, 2, 2, 2, 2, 2, 2, 1, 1, 7, 0}, 1},
        {"dw 5x5 14x14", {3, 9, 14, 14, 9, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 9, 1}, 0},
        {"dw 7x7 56x56", {1, 3, 56, 56, 3, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 3, 1}, 1},
        {"dw 7x7 7x7 many planes", {3, 37, 7, 7, 37, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 37, 1}, 1},
        {"dw 7x7 stride 2 no padding 30x19", {2, 4, 30, 19, 4, 7, 7, 2, 2, 0, 0, 0, 0, 1, 1, 4, 1}, 0},
        {"dw 3x3 3x5 asymmetric padding", {2, 11, 3, 5, 11, 3, 3, 1, 1, 0, 2, 2, 1, 1, 1, 11, 1}, 0},
        {"dw 3x3 1x1", {2, 3, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, 0}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        test_conv(cases[i].label, cases[i].c, AI3_FLOAT32);
        test_conv(cases[i].label, cases[i].c, AI3_FLOAT64);
        if (cases[i].half) {
            test_conv(cases[i].label, cases[i].c, AI3_FLOAT16);
            test_conv(cases[i].label, cases[i].c, AI3_BFLOAT16);
        }
    }
}


static void test_activations(void) {
    static const struct { ai3_op op; const char *name; int variant; } ops[] = {
        {AI3_OP_RELU, "relu", 0},         {AI3_OP_HARDTANH, "hardtanh", 0},
        {AI3_OP_SIGMOID, "sigmoid", 0},   {AI3_OP_HARDSIGMOID, "hardsigmoid", 0},
        {AI3_OP_HARDSWISH, "hardswish", 0}, {AI3_OP_SILU, "silu", 0},
        {AI3_OP_GELU, "gelu erf", 0},     {AI3_OP_GELU, "gelu tanh", 1},
    };
    const int64_t n = 1031;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        for (int t = 0; t < 3; t++)
            for (int offset = 0; offset < 2; offset++) { /* 1: misaligned, scalar path */
                ai3_op_params p;
                memset(&p, 0, sizeof p);
                if (ops[k].op == AI3_OP_HARDTANH) p.hardtanh.min_val = -1.5, p.hardtanh.max_val = 2;
                if (ops[k].op == AI3_OP_GELU) p.gelu.tanh_approximation = ops[k].variant;
                double *x = randoms(n, -6, 6), *ref = malloc(sizeof(double) * n);
                x[5] = NAN;
                char *dx = upload((ai3_dtype)t, x, n), *dy;
                cudaMalloc((void **)&dy, dsize((ai3_dtype)t) * n);
                int64_t m = n - offset;
                for (int64_t i = 0; i < m; i++) ref[i] = act_ref(ops[k].op, x[i + offset], &p);
                char name[64];
                snprintf(name, sizeof name, "%s%s", ops[k].name, offset ? " misaligned" : "");
                cudaError_t e = ai3_cuda_activation(ops[k].op, &p, (ai3_dtype)t,
                                                    dx + offset * dsize((ai3_dtype)t), dy, m, 0);
                check(name, (ai3_dtype)t, e, dy, ref, m);
                /* in place */
                e = ai3_cuda_activation(ops[k].op, &p, (ai3_dtype)t, dx, dx, n, 0);
                for (int64_t i = 0; i < n; i++) ref[i] = act_ref(ops[k].op, x[i], &p);
                snprintf(name, sizeof name, "%s in place", ops[k].name);
                check(name, (ai3_dtype)t, e, dx, ref, n);
                cudaFree(dx), cudaFree(dy), free(x), free(ref);
            }
    if (ai3_cuda_activation(AI3_OP_ADD, NULL, AI3_FLOAT32, NULL, NULL, 4, 0) == cudaErrorInvalidValue)
        passed++;
    else
        printf("FAIL activation of AI3_OP_ADD not rejected\n"), failed++;
}

/* --- pooling -------------------------------------------------------------- */

static int64_t pool_out(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, int ceil_mode) {
    int64_t span = size + 2 * p - d * (k - 1) - 1;
    int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (o - 1) * s >= size + p) o--;
    return o;
}

static void test_pools(void) {
    static const struct { int64_t k, s, p, d; int ceil, incl, div; } cases[] = {
        {3, 2, 1, 1, 0, 1, 0}, {3, 2, 1, 1, 1, 1, 0}, {3, 2, 1, 1, 1, 0, 0}, {2, 2, 0, 1, 1, 1, 0},
        {3, 3, 1, 2, 1, 1, 5}, {2, 1, 0, 1, 0, 0, 0}, {3, 2, 0, 1, 1, 1, 0}, {4, 3, 2, 1, 1, 0, 3},
    };
    const int64_t n = 2, c = 3, h = 13, w = 17;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int t = 0; t < 3; t++) {
            ai3_pool2d_params p = {cases[k].k, cases[k].k, cases[k].s, cases[k].s, cases[k].p,
                                   cases[k].p, cases[k].d, cases[k].d, cases[k].ceil,
                                   cases[k].incl, cases[k].div};
            int64_t oh = pool_out(h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
            int64_t ow = pool_out(w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
            int64_t nx = n * c * h * w, ny = n * c * oh * ow;
            double *x = randoms(nx, -3, 3), *ref = malloc(sizeof(double) * ny);
            x[7] = NAN;
            void *dx = upload((ai3_dtype)t, x, nx), *dy;
            cudaMalloc(&dy, dsize((ai3_dtype)t) * ny);
            char name[96];
            for (int64_t pl = 0; pl < n * c; pl++)
                for (int64_t i = 0; i < oh; i++)
                    for (int64_t j = 0; j < ow; j++) {
                        double m = -INFINITY;
                        for (int64_t a = 0; a < p.kernel_h; a++)
                            for (int64_t b = 0; b < p.kernel_w; b++) {
                                int64_t r = i * p.stride_h - p.pad_h + a * p.dilation_h;
                                int64_t s = j * p.stride_w - p.pad_w + b * p.dilation_w;
                                if (r < 0 || r >= h || s < 0 || s >= w) continue;
                                double v = x[(pl * h + r) * w + s];
                                if (isnan(v) || v > m) m = v;
                                if (isnan(v)) goto done;
                            }
                    done:
                        ref[(pl * oh + i) * ow + j] = m;
                    }
            snprintf(name, sizeof name, "maxpool2d case %zu", k);
            check(name, (ai3_dtype)t, ai3_cuda_maxpool2d((ai3_dtype)t, dx, dy, n, c, h, w, oh, ow, &p, 0),
                  dy, ref, ny);
            if (p.dilation_h == 1) {
                x[7] = 0.5;
                cudaFree(dx);
                dx = upload((ai3_dtype)t, x, nx);
                for (int64_t pl = 0; pl < n * c; pl++)
                    for (int64_t i = 0; i < oh; i++)
                        for (int64_t j = 0; j < ow; j++) {
                            int64_t r0 = i * p.stride_h - p.pad_h, s0 = j * p.stride_w - p.pad_w;
                            int64_t r1 = r0 + p.kernel_h < h + p.pad_h ? r0 + p.kernel_h : h + p.pad_h;
                            int64_t s1 = s0 + p.kernel_w < w + p.pad_w ? s0 + p.kernel_w : w + p.pad_w;
                            int64_t padded = (r1 - r0) * (s1 - s0);
                            r0 = r0 < 0 ? 0 : r0, s0 = s0 < 0 ? 0 : s0;
                            r1 = r1 > h ? h : r1, s1 = s1 > w ? w : s1;
                            double sum = 0;
                            for (int64_t r = r0; r < r1; r++)
                                for (int64_t s = s0; s < s1; s++) sum += x[(pl * h + r) * w + s];
                            int64_t div = p.divisor_override ? p.divisor_override
                                          : p.count_include_pad ? padded : (r1 - r0) * (s1 - s0);
                            ref[(pl * oh + i) * ow + j] = sum / div;
                        }
                snprintf(name, sizeof name, "avgpool2d case %zu", k);
                check(name, (ai3_dtype)t,
                      ai3_cuda_avgpool2d((ai3_dtype)t, dx, dy, n, c, h, w, oh, ow, &p, 0), dy, ref, ny);
            }
            cudaFree(dx), cudaFree(dy), free(x), free(ref);
        }
    /* small bins (a thread per output), then a warp or a block per output,
     * over whole rows and over parts of rows */
    static const int64_t ad[][4] = {{13, 17, 5, 7}, {4, 4, 3, 3}, {3, 3, 5, 5}, {9, 9, 1, 1},
                                    {50, 40, 3, 2}, {56, 56, 1, 1}, {112, 112, 2, 3}};
    for (size_t k = 0; k < sizeof ad / sizeof ad[0]; k++)
        for (int t = 0; t < 2; t++) {
            int64_t ih = ad[k][0], iw = ad[k][1], oh = ad[k][2], ow = ad[k][3];
            int64_t nx = n * c * ih * iw, ny = n * c * oh * ow;
            double *x = randoms(nx, -3, 3), *ref = malloc(sizeof(double) * ny);
            void *dx = upload((ai3_dtype)t, x, nx), *dy;
            cudaMalloc(&dy, dsize((ai3_dtype)t) * ny);
            for (int64_t pl = 0; pl < n * c; pl++)
                for (int64_t i = 0; i < oh; i++)
                    for (int64_t j = 0; j < ow; j++) {
                        int64_t r0 = i * ih / oh, r1 = ((i + 1) * ih + oh - 1) / oh;
                        int64_t s0 = j * iw / ow, s1 = ((j + 1) * iw + ow - 1) / ow;
                        double sum = 0;
                        for (int64_t r = r0; r < r1; r++)
                            for (int64_t s = s0; s < s1; s++) sum += x[(pl * ih + r) * iw + s];
                        ref[(pl * oh + i) * ow + j] = sum / ((r1 - r0) * (s1 - s0));
                    }
            char name[64];
            snprintf(name, sizeof name, "adaptiveavgpool2d case %zu", k);
            check(name, (ai3_dtype)t,
                  ai3_cuda_adaptiveavgpool2d((ai3_dtype)t, dx, dy, n, c, ih, iw, oh, ow, 0), dy, ref, ny);
            cudaFree(dx), cudaFree(dy), free(x), free(ref);
        }
}

/* --- pad2d, bias, batchnorm ---------------------------------------------- */

static int64_t pad_src(int64_t i, int64_t n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == AI3_PADDING_REFLECT) return i < 0 ? -i : 2 * (n - 1) - i;
    if (mode == AI3_PADDING_REPLICATE) return i < 0 ? 0 : n - 1;
    if (mode == AI3_PADDING_CIRCULAR) return i < 0 ? i + n : i - n;
    return -1;
}

static void test_pad2d(void) {
    static const int64_t pads[][4] = {{2, 1, 3, 0}, {0, 4, 1, 6}, {1, 1, 1, 1}};
    const int64_t n = 2, c = 3, h = 5, w = 7;
    for (int mode = 0; mode < 4; mode++)
        for (size_t k = 0; k < sizeof pads / sizeof pads[0]; k++)
            for (int t = 0; t < 3; t++) {
                int64_t top = pads[k][0], bottom = pads[k][1], left = pads[k][2], right = pads[k][3];
                if (mode == AI3_PADDING_REFLECT && (bottom >= h || right >= w)) continue;
                int64_t oh = h + top + bottom, ow = w + left + right;
                double *x = randoms(n * c * h * w, -1, 1), *ref = malloc(sizeof(double) * n * c * oh * ow);
                void *dx = upload((ai3_dtype)t, x, n * c * h * w), *dy;
                cudaMalloc(&dy, dsize((ai3_dtype)t) * n * c * oh * ow);
                for (int64_t pl = 0; pl < n * c; pl++)
                    for (int64_t i = 0; i < oh; i++)
                        for (int64_t j = 0; j < ow; j++) {
                            int64_t r = pad_src(i - top, h, mode), s = pad_src(j - left, w, mode);
                            ref[(pl * oh + i) * ow + j] = r < 0 || s < 0 ? 0 : x[(pl * h + r) * w + s];
                        }
                char name[64];
                snprintf(name, sizeof name, "pad2d mode %d pads %zu", mode, k);
                check(name, (ai3_dtype)t,
                      ai3_cuda_pad2d((ai3_dtype)t, dx, dy, n, c, h, w, top, bottom, left, right,
                                     (ai3_padding_mode)mode, 0),
                      dy, ref, n * c * oh * ow);
                cudaFree(dx), cudaFree(dy), free(x), free(ref);
            }
}

/* (outer, c, inner) shapes: per-channel runs (inner > 1) and per-column
 * bias (inner = 1), with and without whole 16-byte packs; each with no
 * activation, silu and hardtanh, and an activation without bias. */
static void test_bias_activation(void) {
    static const int64_t shapes[][3] = {{3, 5, 7}, {10, 6, 1}, {1, 1, 1}, {2, 3, 16}, {7, 24, 1}};
    ai3_op_params clip;
    memset(&clip, 0, sizeof clip);
    clip.hardtanh.min_val = -0.5, clip.hardtanh.max_val = 0.25;
    const ai3_cuda_act acts[] = {{AI3_OP_SILU, NULL}, {AI3_OP_HARDTANH, &clip}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int t = 0; t < 3; t++)
            for (int a = -1; a < 3; a++) { /* -1: bias only; 2: silu without bias */
                int64_t o = shapes[k][0], c = shapes[k][1], in = shapes[k][2], n = o * c * in;
                const ai3_cuda_act *act = a < 0 ? NULL : &acts[a % 2];
                double *x = randoms(n, -1, 1), *b = randoms(c, -1, 1);
                void *dx = upload((ai3_dtype)t, x, n), *db = upload((ai3_dtype)t, b, c);
                for (int64_t i = 0; i < n; i++) {
                    double v = x[i] + (a < 2 ? b[(i / in) % c] : 0);
                    x[i] = act ? act_ref(act->op, v, act->params) : v;
                }
                char name[64];
                snprintf(name, sizeof name, "bias_activation case %zu/%d", k, a);
                check(name, (ai3_dtype)t,
                      ai3_cuda_bias_activation((ai3_dtype)t, dx, a < 2 ? db : NULL, o, c, in, act, 0),
                      dx, x, n);
                cudaFree(dx), cudaFree(db), free(x), free(b);
            }
}

static void test_batchnorm(void) {
    static const int types[][2] = {{AI3_FLOAT32, AI3_FLOAT32}, {AI3_FLOAT64, AI3_FLOAT64},
                                   {AI3_FLOAT16, AI3_FLOAT32}, {AI3_BFLOAT16, AI3_FLOAT32}};
    const int64_t n = 3, c = 5, hw = 37;
    for (size_t k = 0; k < 4; k++)
        for (int affine = 0; affine < 2; affine++) {
            ai3_dtype t = (ai3_dtype)types[k][0], pt = (ai3_dtype)types[k][1];
            double *x = randoms(n * c * hw, -2, 2), *mean = randoms(c, -1, 1), *var = randoms(c, 0.1, 2);
            double *w = randoms(c, -2, 2), *b = randoms(c, -1, 1), *ref = malloc(sizeof(double) * n * c * hw);
            void *dx = upload(t, x, n * c * hw), *dm = upload(pt, mean, c), *dv = upload(pt, var, c);
            void *dw = upload(pt, w, c), *db = upload(pt, b, c), *dy;
            cudaMalloc(&dy, dsize(t) * n * c * hw);
            for (int64_t i = 0; i < n * c * hw; i++) {
                int64_t ch = (i / hw) % c;
                ref[i] = (x[i] - mean[ch]) / sqrt(var[ch] + 1e-5) * (affine ? w[ch] : 1) +
                         (affine ? b[ch] : 0);
            }
            check(affine ? "batchnorm2d" : "batchnorm2d no affine", t,
                  ai3_cuda_batchnorm2d(t, pt, dx, dm, dv, affine ? dw : NULL, affine ? db : NULL,
                                       1e-5, dy, n, c, hw, 0),
                  dy, ref, n * c * hw);
            check("batchnorm2d in place", t,
                  ai3_cuda_batchnorm2d(t, pt, dx, dm, dv, affine ? dw : NULL, affine ? db : NULL,
                                       1e-5, dx, n, c, hw, 0),
                  dx, ref, n * c * hw);
            cudaFree(dx), cudaFree(dm), cudaFree(dv), cudaFree(dw), cudaFree(db), cudaFree(dy);
            free(x), free(mean), free(var), free(w), free(b), free(ref);
        }
}

/* --- binary, mean, permute, layernorm, softmax ---------------------------- */

static int64_t numel(int nd, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= shape[d];
    return n;
}

/* Offset of flat index i of `shape` (last fastest) with element strides st. */
static int64_t strided_offset(int64_t i, int nd, const int64_t *shape, const int64_t *st) {
    int64_t off = 0;
    for (int d = nd - 1; d >= 0; d--) off += i % shape[d] * st[d], i /= shape[d];
    return off;
}

/* Contiguous strides of shape s, 0 where s[d] == 1 (broadcast). */
static void bcast_strides(int nd, const int64_t *s, int64_t *st) {
    int64_t step = 1;
    for (int d = nd - 1; d >= 0; d--) st[d] = s[d] == 1 ? 0 : step, step *= s[d];
}

static void test_binary(void) {
    static const struct { const char *label; int nd; int64_t out[4], a[4], b[4]; } cases[] = {
        {"same shape", 4, {2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}},
        {"per channel", 4, {2, 3, 4, 5}, {2, 3, 4, 5}, {1, 3, 1, 1}},
        {"per channel first", 4, {2, 3, 4, 5}, {1, 3, 1, 1}, {2, 3, 4, 5}},
        {"last dim (5,)", 4, {2, 3, 4, 5}, {2, 3, 4, 5}, {1, 1, 1, 5}},
        {"scalar-like", 4, {2, 3, 4, 5}, {2, 3, 4, 5}, {1, 1, 1, 1}},
        {"both broadcast", 4, {2, 3, 4, 5}, {2, 1, 4, 1}, {1, 3, 1, 5}},
        {"trailing block", 3, {3, 4, 5}, {3, 4, 5}, {1, 4, 5}},
        {"one element", 4, {1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 1, 1}},
        {"1031", 1, {1031}, {1031}, {1031}},
        {"37x29 scalar", 2, {37, 29}, {37, 29}, {1, 1}},
        {"transposed a", 2, {4, 5}, {4, 5}, {1, 5}}, /* a read through strides (1, 4) */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int mul = 0; mul < 2; mul++)
            for (int t = 0; t < 4; t++) {
                int nd = cases[k].nd;
                const int64_t *shape = cases[k].out;
                int64_t n = numel(nd, shape), na = numel(nd, cases[k].a), nb = numel(nd, cases[k].b);
                int64_t sa[4], sb[4];
                bcast_strides(nd, cases[k].a, sa), bcast_strides(nd, cases[k].b, sb);
                if (k == sizeof cases / sizeof cases[0] - 1) sa[0] = 1, sa[1] = 4;
                double *x = randoms(na, -2, 2), *y = randoms(nb, -2, 2), *ref = malloc(sizeof(double) * n);
                void *dx = upload((ai3_dtype)t, x, na), *dy = upload((ai3_dtype)t, y, nb), *dz;
                cudaMalloc(&dz, dsize((ai3_dtype)t) * n);
                for (int64_t i = 0; i < n; i++) {
                    double u = x[strided_offset(i, nd, shape, sa)], v = y[strided_offset(i, nd, shape, sb)];
                    ref[i] = mul ? u * v : u + v;
                }
                ai3_op op = mul ? AI3_OP_MUL : AI3_OP_ADD;
                char name[96];
                snprintf(name, sizeof name, "%s %s", mul ? "mul" : "add", cases[k].label);
                check(name, (ai3_dtype)t, ai3_cuda_binary(op, (ai3_dtype)t, dx, sa, dy, sb, dz, nd, shape, 0),
                      dz, ref, n);
                if (na == n && k != sizeof cases / sizeof cases[0] - 1) {
                    snprintf(name, sizeof name, "%s %s in place", mul ? "mul" : "add", cases[k].label);
                    check(name, (ai3_dtype)t,
                          ai3_cuda_binary(op, (ai3_dtype)t, dx, sa, dy, sb, dx, nd, shape, 0), dx, ref, n);
                }
                cudaFree(dx), cudaFree(dy), cudaFree(dz), free(x), free(y), free(ref);
            }
    int64_t one = 1;
    if (ai3_cuda_binary(AI3_OP_RELU, AI3_FLOAT32, NULL, &one, NULL, &one, NULL, 1, &one, 0) ==
        cudaErrorInvalidValue)
        passed++;
    else
        printf("FAIL binary of AI3_OP_RELU not rejected\n"), failed++;
}

static void test_mean(void) {
    static const struct { int nd; int64_t shape[4]; int reduce[4]; } cases[] = {
        {4, {2, 3, 4, 5}, {0, 0, 1, 1}}, {4, {2, 3, 4, 5}, {1, 0, 1, 0}},
        {4, {2, 3, 4, 5}, {0, 1, 0, 0}}, {4, {2, 3, 4, 5}, {1, 0, 0, 0}},
        {4, {2, 3, 4, 5}, {0, 0, 0, 1}}, {4, {2, 3, 4, 5}, {1, 1, 1, 1}},
        {4, {2, 3, 4, 5}, {0, 1, 0, 1}}, {4, {2, 1, 4, 5}, {0, 1, 1, 0}},
        {4, {2, 3, 4, 5}, {0, 0, 0, 0}}, {2, {7, 1}, {0, 1}},
        {2, {3, 5000}, {0, 1}},          {4, {4, 30, 2, 100}, {0, 1, 0, 1}},
        {3, {6, 50, 40}, {0, 1, 1}},     {2, {3000, 4}, {1, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int t = 0; t < 3; t++) {
            int nd = cases[k].nd;
            const int64_t *shape = cases[k].shape;
            int64_t nx = numel(nd, shape), ny = 1;
            for (int d = 0; d < nd; d++) ny *= cases[k].reduce[d] ? 1 : shape[d];
            double *x = randoms(nx, -1, 1), *ref = calloc((size_t)ny, sizeof(double));
            void *dx = upload((ai3_dtype)t, x, nx), *dy;
            cudaMalloc(&dy, dsize((ai3_dtype)t) * ny);
            for (int64_t i = 0; i < nx; i++) {
                int64_t r = i, o = 0, step = 1;
                for (int d = nd - 1; d >= 0; r /= shape[d], d--)
                    if (!cases[k].reduce[d]) o += r % shape[d] * step, step *= shape[d];
                ref[o] += x[i];
            }
            for (int64_t o = 0; o < ny; o++) ref[o] /= (double)(nx / ny);
            char name[64];
            int len = snprintf(name, sizeof name, "mean (");
            for (int d = 0; d < nd; d++)
                len += snprintf(name + len, sizeof name - len, "%s%lld%s", d ? "," : "",
                                (long long)shape[d], cases[k].reduce[d] ? "*" : "");
            snprintf(name + len, sizeof name - len, ")");
            check(name, (ai3_dtype)t,
                  ai3_cuda_mean((ai3_dtype)t, dx, dy, nd, shape, cases[k].reduce, 0), dy, ref, ny);
            cudaFree(dx), cudaFree(dy), free(x), free(ref);
        }
}

static void test_permute(void) {
    static const struct { int nd; int64_t shape[4]; int perm[4]; } cases[] = {
        {3, {2, 3, 4}, {2, 0, 1}},           {3, {2, 3, 4}, {1, 0, 2}},
        {3, {2, 3, 4}, {0, 2, 1}},           {3, {2, 3, 4}, {0, 1, 2}},
        {4, {2, 3, 4, 5}, {0, 2, 3, 1}},     {4, {2, 3, 4, 5}, {0, 3, 1, 2}},
        {4, {2, 3, 4, 5}, {3, 2, 1, 0}},     {4, {2, 3, 4, 5}, {1, 0, 2, 3}},
        {4, {2, 40, 50, 33}, {0, 2, 3, 1}},  {3, {3, 37, 70}, {0, 2, 1}},
        {4, {1, 17, 1, 40}, {3, 1, 0, 2}},   {4, {3, 20, 5, 24}, {2, 3, 0, 1}},
        {4, {2, 20, 3, 18}, {3, 1, 0, 2}},   {2, {1, 1}, {1, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int t = 0; t < 3; t++) {
            int nd = cases[k].nd;
            const int64_t *shape = cases[k].shape;
            int64_t n = numel(nd, shape), in_stride[4], out_shape[4], st[4], step = 1;
            for (int d = nd - 1; d >= 0; d--) in_stride[d] = step, step *= shape[d];
            for (int d = 0; d < nd; d++)
                out_shape[d] = shape[cases[k].perm[d]], st[d] = in_stride[cases[k].perm[d]];
            double *x = randoms(n, -1, 1), *ref = malloc(sizeof(double) * n);
            void *dx = upload((ai3_dtype)t, x, n), *dy;
            cudaMalloc(&dy, dsize((ai3_dtype)t) * n);
            for (int64_t i = 0; i < n; i++) ref[i] = x[strided_offset(i, nd, out_shape, st)];
            char name[64];
            int len = snprintf(name, sizeof name, "permute case %zu (", k);
            for (int d = 0; d < nd; d++)
                len += snprintf(name + len, sizeof name - len, "%s%d", d ? "," : "", cases[k].perm[d]);
            snprintf(name + len, sizeof name - len, ")");
            check(name, (ai3_dtype)t,
                  ai3_cuda_permute((ai3_dtype)t, dx, dy, nd, shape, cases[k].perm, 0), dy, ref, n);
            cudaFree(dx), cudaFree(dy), free(x), free(ref);
        }
}

static void test_layernorm(void) {
    static const int64_t shapes[][2] = {{6, 10}, {5, 768}, {3, 3000}, {4, 1}, {1000, 33}};
    static const char *affine_names[] = {"", " weight+bias", " weight", " bias"};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int affine = 0; affine < 4; affine++)
            for (int t = 0; t < 3; t++) {
                int64_t rows = shapes[k][0], cols = shapes[k][1], n = rows * cols;
                double *x = randoms(n, -2, 3), *w = randoms(cols, -2, 2), *b = randoms(cols, -1, 1);
                double *ref = malloc(sizeof(double) * n);
                void *dx = upload((ai3_dtype)t, x, n), *dw = upload((ai3_dtype)t, w, cols);
                void *db = upload((ai3_dtype)t, b, cols), *dy;
                cudaMalloc(&dy, dsize((ai3_dtype)t) * n);
                int use_w = affine == 1 || affine == 2, use_b = affine == 1 || affine == 3;
                for (int64_t r = 0; r < rows; r++) {
                    const double *xr = x + r * cols;
                    double mean = 0, var = 0;
                    for (int64_t c = 0; c < cols; c++) mean += xr[c];
                    mean /= cols;
                    for (int64_t c = 0; c < cols; c++) var += (xr[c] - mean) * (xr[c] - mean);
                    double rstd = 1 / sqrt(var / cols + 1e-5);
                    for (int64_t c = 0; c < cols; c++)
                        ref[r * cols + c] = (xr[c] - mean) * rstd * (use_w ? w[c] : 1) + (use_b ? b[c] : 0);
                }
                char name[64];
                snprintf(name, sizeof name, "layernorm %lldx%lld%s", (long long)rows, (long long)cols,
                         affine_names[affine]);
                check(name, (ai3_dtype)t,
                      ai3_cuda_layernorm((ai3_dtype)t, dx, use_w ? dw : NULL, use_b ? db : NULL, 1e-5,
                                         dy, rows, cols, 0),
                      dy, ref, n);
                snprintf(name, sizeof name, "layernorm %lldx%lld%s in place", (long long)rows,
                         (long long)cols, affine_names[affine]);
                check(name, (ai3_dtype)t,
                      ai3_cuda_layernorm((ai3_dtype)t, dx, use_w ? dw : NULL, use_b ? db : NULL, 1e-5,
                                         dx, rows, cols, 0),
                      dx, ref, n);
                cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dy);
                free(x), free(w), free(b), free(ref);
            }
}

/* The graph fusions of permutes: layernorm over the channels of (n, c, hw)
 * written (n, hw, c), and (n, hw, c) permuted back, scaled and added. */
static void test_permute_fusions(void) {
    /* (layernorm: 256 tiles of 32 positions or more are staged through
     * shared memory, fewer written directly) */
    static const int64_t shapes[][3] = {{1, 96, 3136}, {2, 5, 7},     {3, 40, 33},
                                        {1, 768, 49},  {2, 24, 8200}, {9, 33, 1000}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int t = 0; t < 3; t++) {
            int64_t n = shapes[k][0], c = shapes[k][1], hw = shapes[k][2], m = n * c * hw;
            double *x = randoms(m, -2, 3), *w = randoms(c, -2, 2), *b = randoms(c, -1, 1);
            double *r = randoms(m, -1, 1), *ref = malloc(sizeof(double) * m);
            void *dx = upload((ai3_dtype)t, x, m), *dw = upload((ai3_dtype)t, w, c);
            void *db = upload((ai3_dtype)t, b, c), *dr = upload((ai3_dtype)t, r, m), *dy;
            cudaMalloc(&dy, dsize((ai3_dtype)t) * m);
            for (int64_t i = 0; i < n; i++)
                for (int64_t p = 0; p < hw; p++) {
                    const double *xp = x + i * c * hw + p;
                    double mean = 0, var = 0;
                    for (int64_t q = 0; q < c; q++) mean += xp[q * hw];
                    mean /= c;
                    for (int64_t q = 0; q < c; q++) var += (xp[q * hw] - mean) * (xp[q * hw] - mean);
                    double rstd = 1 / sqrt(var / c + 1e-6);
                    for (int64_t q = 0; q < c; q++)
                        ref[(i * hw + p) * c + q] = (xp[q * hw] - mean) * rstd * w[q] + b[q];
                }
            char name[64];
            snprintf(name, sizeof name, "layernorm_channels case %zu", k);
            check(name, (ai3_dtype)t,
                  ai3_cuda_layernorm_channels((ai3_dtype)t, dx, dw, db, 1e-6, dy, n, c, hw, 0), dy,
                  ref, m);
            /* x read as (n, hw, c) */
            for (int64_t i = 0; i < n; i++)
                for (int64_t q = 0; q < c; q++)
                    for (int64_t p = 0; p < hw; p++)
                        ref[(i * c + q) * hw + p] =
                            x[(i * hw + p) * c + q] * w[q] + r[(i * c + q) * hw + p];
            snprintf(name, sizeof name, "permute_scale_add case %zu", k);
            check(name, (ai3_dtype)t,
                  ai3_cuda_permute_scale_add((ai3_dtype)t, dx, NULL, dw, dr, dy, n, c, hw, 0), dy,
                  ref, m);
            for (int64_t i = 0; i < n; i++) /* with a bias (b) before the scale */
                for (int64_t q = 0; q < c; q++)
                    for (int64_t p = 0; p < hw; p++)
                        ref[(i * c + q) * hw + p] =
                            (x[(i * hw + p) * c + q] + b[q]) * w[q] + r[(i * c + q) * hw + p];
            snprintf(name, sizeof name, "permute_scale_add with bias case %zu", k);
            check(name, (ai3_dtype)t,
                  ai3_cuda_permute_scale_add((ai3_dtype)t, dx, db, dw, dr, dy, n, c, hw, 0), dy,
                  ref, m);
            cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dr), cudaFree(dy);
            free(x), free(w), free(b), free(r), free(ref);
        }
}

static void test_softmax(void) {
    /* outer, n, inner, range of the values */
    static const struct { int64_t outer, n, inner; double range; } cases[] = {
        {8, 10, 1, 5},  {3, 3000, 1, 5}, {300, 33, 1, 5}, {2, 50, 1, 100}, {4, 5, 6, 5},
        {1, 7, 30, 5},  {3, 40, 2, 100}, {5, 1, 1, 5},    {1, 9, 1, 5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int t = 0; t < 3; t++) {
            int64_t outer = cases[k].outer, len = cases[k].n, inner = cases[k].inner;
            int64_t n = outer * len * inner;
            double *x = randoms(n, -cases[k].range, cases[k].range), *ref = malloc(sizeof(double) * n);
            void *dx = upload((ai3_dtype)t, x, n), *dy;
            cudaMalloc(&dy, dsize((ai3_dtype)t) * n);
            for (int64_t o = 0; o < outer; o++)
                for (int64_t j = 0; j < inner; j++) {
                    const double *xc = x + o * len * inner + j;
                    double m = -INFINITY, sum = 0;
                    for (int64_t i = 0; i < len; i++) m = fmax(m, xc[i * inner]);
                    for (int64_t i = 0; i < len; i++) sum += exp(xc[i * inner] - m);
                    for (int64_t i = 0; i < len; i++)
                        ref[o * len * inner + j + i * inner] = exp(xc[i * inner] - m) / sum;
                }
            char name[64];
            snprintf(name, sizeof name, "softmax (%lld,%lld*,%lld)", (long long)outer, (long long)len,
                     (long long)inner);
            check(name, (ai3_dtype)t, ai3_cuda_softmax((ai3_dtype)t, dx, dy, outer, len, inner, 0), dy,
                  ref, n);
            snprintf(name, sizeof name, "softmax (%lld,%lld*,%lld) in place", (long long)outer,
                     (long long)len, (long long)inner);
            check(name, (ai3_dtype)t, ai3_cuda_softmax((ai3_dtype)t, dx, dx, outer, len, inner, 0), dx,
                  ref, n);
            cudaFree(dx), cudaFree(dy), free(x), free(ref);
        }
}

/* --- bench ---------------------------------------------------------------- */

static void bench(void) {
    static const conv_case cases[] = {
        {10, 64, 112, 112, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {10, 256, 28, 28, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {10, 512, 14, 14, 512, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    };
    for (size_t k = 0; k < 3; k++) {
        ai3_cuda_conv2d_shape s = conv_shape(&cases[k]);
        int64_t nx = s.n * s.c_in * s.h * s.w, nw = s.c_out * s.c_in * 9, ny = s.n * s.c_out * s.oh * s.ow;
        void *dx, *dw, *db, *dy;
        cudaMalloc(&dx, 4 * nx), cudaMalloc(&dw, 4 * nw), cudaMalloc(&db, 4 * s.c_out), cudaMalloc(&dy, 4 * ny);
        cudaMemset(dx, 0, 4 * nx), cudaMemset(dw, 0, 4 * nw), cudaMemset(db, 0, 4 * s.c_out);
        for (int alg = 0; alg < 2; alg++) {
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0), cudaEventCreate(&e1);
            for (int i = 0; i < 3; i++)
                if (alg) ai3_cuda_conv2d_direct(AI3_FLOAT32, dx, dw, db, dy, &s, NULL, 0);
                else ai3_cuda_conv2d_smm(AI3_FLOAT32, dx, dw, db, dy, &s, 0);
            const int reps = 20;
            cudaEventRecord(e0, 0);
            for (int i = 0; i < reps; i++)
                if (alg) ai3_cuda_conv2d_direct(AI3_FLOAT32, dx, dw, db, dy, &s, NULL, 0);
                else ai3_cuda_conv2d_smm(AI3_FLOAT32, dx, dw, db, dy, &s, 0);
            cudaEventRecord(e1, 0);
            cudaEventSynchronize(e1);
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            double us = 1000.0 * ms / reps, flop = 2.0 * ny * s.c_in * 9;
            printf("%-6s N=%lld %lld->%lld %lldx%lld: %8.1f us  %5.1f TFLOP/s\n", alg ? "direct" : "smm",
                   (long long)s.n, (long long)s.c_in, (long long)s.c_out, (long long)s.h,
                   (long long)s.w, us, flop / us * 1e-6);
            cudaEventDestroy(e0), cudaEventDestroy(e1);
        }
        cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dy);
    }
    printf("last error: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
}

int main(int argc, char **argv) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("no CUDA device: 0 passed, 0 failed (skipped)\n");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        bench();
        return 0;
    }
    srand(1);
    test_convs();
    test_activations();
    test_pools();
    test_pad2d();
    test_bias_activation();
    test_conv_activations();
    test_batchnorm();
    test_binary();
    test_mean();
    test_permute();
    test_layernorm();
    test_permute_fusions();
    test_softmax();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
