/* The graph executor against the same operations composed by hand. */
#include "harness.h"

#include "ai3.h"
#include "algorithms/blocked.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static ai3_tensor make(int ndim, const int64_t *shape) {
    ai3_tensor t = {.dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.data = calloc((size_t)ai3_tensor_numel(&t) + 1, sizeof(float));
    return t;
}

static ai3_tensor random_tensor(int ndim, const int64_t *shape) {
    ai3_tensor t = make(ndim, shape);
    float *p = t.data;
    for (int64_t i = 0; i < ai3_tensor_numel(&t); i++) p[i] = (float)ai3_test_uniform();
    return t;
}

/* A tensor of the shape the op reports. */
static ai3_tensor like(int ndim, const int64_t *shape) { return make(ndim, shape); }

static double max_rel_diff(const ai3_tensor *a, const ai3_tensor *b) {
    if (a->ndim != b->ndim) return INFINITY;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return INFINITY;
    const float *x = a->data, *y = b->data;
    double worst = 0;
    for (int64_t i = 0; i < ai3_tensor_numel(a); i++) {
        double d = fabs((double)x[i] - y[i]) / (1.0 + fabs((double)y[i]));
        if (!(d <= worst)) worst = d; /* NaN counts as the worst */
    }
    return worst;
}

/* ai3_graph_op with one input and no weights. */
static ai3_status node1(ai3_graph *g, ai3_op op, const char *algorithm, int input,
                        const ai3_op_params *params, int *output) {
    return ai3_graph_op(g, op, algorithm, 1, &input, 0, NULL, params, NULL, output);
}

/* ai3_graph_op with several inputs and no weights or parameters. */
static ai3_status join(ai3_graph *g, ai3_op op, const char *algorithm, int n, const int *inputs,
                       const ai3_op_params *params, int *output) {
    return ai3_graph_op(g, op, algorithm, n, inputs, 0, NULL, params, NULL, output);
}

/* A conv2d node (bias may be NULL). */
static ai3_status conv(ai3_graph *g, const char *algorithm, int input, const ai3_tensor *weight,
                       const ai3_tensor *bias, const ai3_conv2d_params *p, int *output) {
    const ai3_tensor *w[2] = {weight, bias};
    ai3_op_params params = {.conv2d = *p};
    return ai3_graph_op(g, AI3_OP_CONV2D, algorithm, 1, &input, 2, w, &params, NULL, output);
}

/* A linear node. */
static ai3_status linear(ai3_graph *g, const char *algorithm, int input,
                         const ai3_tensor *weight, const ai3_tensor *bias, int *output) {
    const ai3_tensor *w[2] = {weight, bias};
    return ai3_graph_op(g, AI3_OP_LINEAR, algorithm, 1, &input, 2, w, NULL, NULL, output);
}

/* The test network: x → conv3x3 → relu ─┐
 *                   x → conv1x1 ────────add → c (output 1)
 *                   c → maxpool ┐
 *                   c → avgpool ┴ cat → flatten → linear → y (output 0) */
typedef struct net {
    ai3_tensor w1, b1, w2, wl, bl;
    ai3_conv2d_params p1, p2;
    ai3_pool2d_params pool;
} net;

static net make_net(int64_t h, int64_t w) {
    net n;
    n.w1 = random_tensor(4, (int64_t[]){4, 3, 3, 3});
    n.b1 = random_tensor(1, (int64_t[]){4});
    n.w2 = random_tensor(4, (int64_t[]){4, 3, 1, 1});
    n.wl = random_tensor(2, (int64_t[]){5, 8 * (h / 2) * (w / 2)});
    n.bl = random_tensor(1, (int64_t[]){5});
    n.p1 = ai3_conv2d_params_default();
    n.p1.pad_top = n.p1.pad_bottom = n.p1.pad_left = n.p1.pad_right = 1;
    n.p2 = ai3_conv2d_params_default();
    n.pool = ai3_pool2d_params_default(2, 2);
    return n;
}

static void free_net(net *n) {
    free(n->w1.data);
    free(n->b1.data);
    free(n->w2.data);
    free(n->wl.data);
    free(n->bl.data);
}

static ai3_graph *build(const net *n, int *ok) {
    ai3_graph *g = NULL;
    int x, c1, r, c2, c, mp, ap, cat, fl, y;
    ai3_op_params pool = {.maxpool2d = n->pool}; /* avgpool2d has the same struct */
    *ok = ai3_graph_create(AI3_FLOAT32, &g) == AI3_OK && ai3_graph_add_input(g, &x) == AI3_OK &&
          conv(g, "default", x, &n->w1, &n->b1, &n->p1, &c1) == AI3_OK &&
          node1(g, AI3_OP_RELU, "default", c1, NULL, &r) == AI3_OK &&
          conv(g, "direct", x, &n->w2, NULL, &n->p2, &c2) == AI3_OK &&
          join(g, AI3_OP_ADD, "default", 2, (int[]){r, c2}, NULL, &c) == AI3_OK &&
          node1(g, AI3_OP_MAXPOOL2D, "default", c, &pool, &mp) == AI3_OK &&
          node1(g, AI3_OP_AVGPOOL2D, "default", c, &pool, &ap) == AI3_OK &&
          join(g, AI3_OP_CAT, "default", 2, (int[]){mp, ap},
               &(ai3_op_params){.cat = {.dim = 1}}, &cat) == AI3_OK &&
          node1(g, AI3_OP_FLATTEN, "default", cat,
                &(ai3_op_params){.flatten = {.start_dim = 1, .end_dim = -1}}, &fl) == AI3_OK &&
          linear(g, "default", fl, &n->wl, &n->bl, &y) == AI3_OK &&
          ai3_graph_set_name(g, c1, "conv1") == AI3_OK &&
          ai3_graph_set_outputs(g, 2, (int[]){y, c}) == AI3_OK;
    return g;
}

/* The network computed with the operation functions, one by one. */
static void by_hand(const net *n, const ai3_tensor *x, ai3_tensor *y, ai3_tensor *c) {
    int nd;
    int64_t sh[AI3_MAX_DIMS];
    ai3_conv2d_output_shape(x, &n->w1, &n->p1, &nd, sh);
    ai3_tensor c1 = like(nd, sh), c2 = like(nd, sh);
    *c = like(nd, sh);
    ai3_conv2d("default", x, &n->w1, &n->b1, &n->p1, &c1);
    ai3_relu("default", &c1, &c1);
    ai3_conv2d("direct", x, &n->w2, NULL, &n->p2, &c2);
    ai3_add("default", &c1, &c2, c);
    ai3_maxpool2d_output_shape(c, &n->pool, &nd, sh);
    ai3_tensor mp = like(nd, sh), ap = like(nd, sh);
    ai3_maxpool2d("default", c, &n->pool, &mp);
    ai3_avgpool2d("default", c, &n->pool, &ap);
    const ai3_tensor *parts[2] = {&mp, &ap};
    ai3_cat_output_shape(parts, 2, 1, &nd, sh);
    ai3_tensor cat = like(nd, sh);
    ai3_cat("default", parts, 2, 1, &cat);
    ai3_tensor fl = cat;
    fl.ndim = 2;
    fl.shape[1] = ai3_tensor_numel(&cat) / cat.shape[0];
    ai3_linear_output_shape(&fl, &n->wl, &nd, sh);
    *y = like(nd, sh);
    ai3_linear("default", &fl, &n->wl, &n->bl, y);
    free(c1.data);
    free(c2.data);
    free(mp.data);
    free(ap.data);
    free(cat.data);
}

/* Runs the graph on x and compares both outputs with by_hand. */
static void check_run(ai3_graph *g, const net *n, const ai3_tensor *x) {
    int nd[2];
    int64_t sh[2][AI3_MAX_DIMS];
    ai3_status s = ai3_graph_output_shapes(g, 1, x, 2, nd, sh);
    AI3_EXPECT(s == AI3_OK, "output_shapes: %s", ai3_last_error());
    if (s != AI3_OK) return;
    ai3_tensor out[2] = {make(nd[0], sh[0]), make(nd[1], sh[1])};
    s = ai3_graph_run(g, 1, x, 2, out);
    AI3_EXPECT(s == AI3_OK, "run: %s", ai3_last_error());
    ai3_tensor y, c;
    by_hand(n, x, &y, &c);
    AI3_EXPECT(max_rel_diff(&out[0], &y) < 1e-5, "output 0 differs: %g", max_rel_diff(&out[0], &y));
    AI3_EXPECT(max_rel_diff(&out[1], &c) < 1e-5, "output 1 differs: %g", max_rel_diff(&out[1], &c));
    free(out[0].data);
    free(out[1].data);
    free(y.data);
    free(c.data);
}

AI3_TEST(graph_branch_and_join_match_the_operations) {
    net n = make_net(8, 8);
    int ok;
    ai3_graph *g = build(&n, &ok);
    AI3_EXPECT(ok, "building failed: %s", ai3_last_error());
    AI3_EXPECT(ai3_graph_num_inputs(g) == 1 && ai3_graph_num_outputs(g) == 2, "counts");
    ai3_tensor x = random_tensor(4, (int64_t[]){2, 3, 8, 8});
    check_run(g, &n, &x);
    check_run(g, &n, &x); /* the cached plan and arena */
    free(x.data);
    ai3_graph_destroy(g);
    free_net(&n);
}

AI3_TEST(graph_replans_for_new_input_shapes) {
    /* The linear layer fixes the feature count: 8 * 4 * 4 from 8x8 or 9x9,
     * and 8 * 2 * 8 from 4x16 (batch sizes vary freely). */
    net n = make_net(8, 8);
    int ok;
    ai3_graph *g = build(&n, &ok);
    AI3_EXPECT(ok, "building failed: %s", ai3_last_error());
    int64_t shapes[][4] = {{2, 3, 8, 8}, {1, 3, 9, 9}, {5, 3, 4, 16}, {3, 3, 8, 8}, {2, 3, 8, 8},
                           {1, 3, 9, 8}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        ai3_tensor x = random_tensor(4, shapes[i]);
        check_run(g, &n, &x);
        free(x.data);
    }
    ai3_graph_destroy(g);
    free_net(&n);
}

AI3_TEST(graph_reuses_buffers) {
    /* A chain of 3x3 convolutions with relus: with reuse, two buffers of
     * the largest size suffice however long the chain (in the plain layout:
     * blocked, 8 channels would be padded to a block). */
    ai3_graph *g;
    int v;
    ai3_graph_create(AI3_FLOAT32, &g);
    ai3_graph_set_blocked_layout(g, 0);
    ai3_graph_add_input(g, &v);
    ai3_tensor w = random_tensor(4, (int64_t[]){8, 8, 3, 3});
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    for (int i = 0; i < 6; i++) {
        AI3_EXPECT(conv(g, "default", v, &w, NULL, &p, &v) == AI3_OK, "conv");
        AI3_EXPECT(node1(g, AI3_OP_RELU, "default", v, NULL, &v) == AI3_OK, "relu");
    }
    ai3_graph_set_outputs(g, 1, &v);
    ai3_tensor x = {.dtype = AI3_FLOAT32, .ndim = 4, .shape = {2, 8, 16, 16}};
    size_t peak = 0, total = 0, ws = 0;
    ai3_status s = ai3_graph_peak_bytes(g, 1, &x, &peak, &total, &ws);
    AI3_EXPECT(s == AI3_OK, "peak_bytes: %s", ai3_last_error());
    size_t one = 2 * 8 * 16 * 16 * sizeof(float);
    AI3_EXPECT(total == 11 * one, "total %zu, expected %zu", total, 11 * one);
    AI3_EXPECT(peak == 2 * one, "peak %zu, expected %zu", peak, 2 * one);

    /* and the result is still that of the chain */
    x = random_tensor(4, (int64_t[]){2, 8, 16, 16});
    ai3_tensor out = make(4, x.shape), ref = random_tensor(4, x.shape), tmp = make(4, x.shape);
    memcpy(ref.data, x.data, one);
    for (int i = 0; i < 6; i++) {
        ai3_conv2d("default", &ref, &w, NULL, &p, &tmp);
        ai3_relu("default", &tmp, &ref);
    }
    s = ai3_graph_run(g, 1, &x, 1, &out);
    AI3_EXPECT(s == AI3_OK, "run: %s", ai3_last_error());
    AI3_EXPECT(max_rel_diff(&out, &ref) < 1e-5, "differs: %g", max_rel_diff(&out, &ref));
    free(x.data);
    free(out.data);
    free(ref.data);
    free(tmp.data);
    free(w.data);
    ai3_graph_destroy(g);
}

/* ||a - b|| / ||b|| */
static double rel_l2(const ai3_tensor *a, const ai3_tensor *b) {
    const float *x = a->data, *y = b->data;
    double d = 0, n = 0;
    for (int64_t i = 0; i < ai3_tensor_numel(a); i++) {
        d += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        n += (double)y[i] * y[i];
    }
    return sqrt(d / n);
}

AI3_TEST(graph_blocked_layout_gives_the_plain_results) {
    /* conv (3 input channels, read plain) → relu → depthwise conv → add of
     * the first conv's output → maxpool → conv with 20 output channels (a
     * padded block) → graph output; and a plain-only op (flatten) reading a
     * blocked value. */
    ai3_graph *g;
    int x, a, b, c, d, e, f;
    ai3_graph_create(AI3_FLOAT32, &g);
    ai3_graph_add_input(g, &x);
    ai3_tensor w1 = random_tensor(4, (int64_t[]){24, 3, 3, 3}),
               w2 = random_tensor(4, (int64_t[]){24, 1, 3, 3}),
               w3 = random_tensor(4, (int64_t[]){20, 24, 1, 1}),
               b1 = random_tensor(1, (int64_t[]){24});
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    ai3_conv2d_params dw = p;
    dw.groups = 24;
    ai3_pool2d_params pool = ai3_pool2d_params_default(3, 3);
    pool.stride_h = pool.stride_w = 2;
    pool.pad_h = pool.pad_w = 1;
    ai3_op_params pp = {.maxpool2d = pool};
    ai3_flatten_params fp = {.start_dim = 1, .end_dim = -1};
    ai3_op_params fpp = {.flatten = fp};
    AI3_EXPECT(conv(g, "default", x, &w1, &b1, &p, &a) == AI3_OK, "conv");
    AI3_EXPECT(node1(g, AI3_OP_RELU, "default", a, NULL, &a) == AI3_OK, "relu");
    AI3_EXPECT(conv(g, "guess", a, &w2, NULL, &dw, &b) == AI3_OK, "depthwise");
    AI3_EXPECT(join(g, AI3_OP_ADD, "default", 2, (int[]){b, a}, NULL, &c) == AI3_OK, "add");
    AI3_EXPECT(node1(g, AI3_OP_MAXPOOL2D, "default", c, &pp, &d) == AI3_OK, "pool");
    ai3_conv2d_params one = ai3_conv2d_params_default();
    AI3_EXPECT(conv(g, "default", d, &w3, NULL, &one, &e) == AI3_OK, "conv 1x1");
    AI3_EXPECT(node1(g, AI3_OP_FLATTEN, "direct", c, &fpp, &f) == AI3_OK, "flatten");
    ai3_graph_set_outputs(g, 2, (int[]){e, f});

    ai3_tensor in = random_tensor(4, (int64_t[]){2, 3, 11, 9});
    int blocked = -1, converted = -1, conversions = -1;
    AI3_EXPECT(ai3_graph_layout_counts(g, 1, &in, &blocked, &converted) == AI3_OK, "counts");
    ai3_tensor out[2][2];
    for (int layout = 0; layout < 2; layout++) {
        ai3_graph_set_blocked_layout(g, layout == 0);
        out[layout][0] = make(4, (int64_t[]){2, 20, 6, 5});
        out[layout][1] = make(2, (int64_t[]){2, 24 * 11 * 9});
        ai3_tensor outs[2] = {out[layout][0], out[layout][1]};
        AI3_EXPECT(ai3_graph_run(g, 1, &in, 2, outs) == AI3_OK, "run: %s", ai3_last_error());
    }
    int plain_blocked = -1;
    AI3_EXPECT(ai3_graph_layout_counts(g, 1, &in, &plain_blocked, &conversions) == AI3_OK &&
                   plain_blocked == 0 && conversions == 0,
               "plain layout: %d blocked nodes, %d conversions", plain_blocked, conversions);
    /* blocked: the first conv (relu fused), the depthwise conv (the add
     * fused), the pool; the last conv writes a graph output, so plain.
     * Converted: the add's value (flatten reads it plain), the pool's. */
    if (ai3_blocked_width() > 0)
        AI3_EXPECT(blocked == 3 && converted == 2, "%d nodes blocked, %d values converted",
                   blocked, converted);
    for (int k = 0; k < 2; k++)
        AI3_EXPECT(rel_l2(&out[0][k], &out[1][k]) < 1e-5, "output %d differs: %g", k,
                   rel_l2(&out[0][k], &out[1][k]));
    AI3_EXPECT_STATUS(ai3_graph_layout_counts(g, 1, &in, NULL, &conversions),
                      AI3_ERROR_INVALID_ARGUMENT);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 2; k++) free(out[l][k].data);
    free(in.data);
    free(w1.data);
    free(w2.data);
    free(w3.data);
    free(b1.data);
    ai3_graph_destroy(g);
}

AI3_TEST(graph_channel_shuffle_and_chunk) {
    /* ShuffleNet's channel shuffle with sizes taken from the input, then
     * chunk, permute and a second input; the outputs include a graph input
     * and one value twice. */
    ai3_graph *g;
    int x, z, v, t, s2, pieces[2], pm, sum;
    ai3_graph_create(AI3_FLOAT32, &g);
    ai3_graph_add_input(g, &x);
    ai3_graph_add_input(g, &z);
    ai3_graph_dim split[5] = {{.value = x, .dim = 0}, {.value = -1, .size = 2},
                              {.value = -1, .size = -1}, {.value = x, .dim = 2},
                              {.value = x, .dim = -1}};
    AI3_EXPECT(ai3_graph_reshape(g, x, 5, split, &v) == AI3_OK, "%s", ai3_last_error());
    ai3_op_params perm = {.permute = {.ndim = 5, .perm = {0, 2, 1, 3, 4}}};
    AI3_EXPECT(node1(g, AI3_OP_PERMUTE, "default", v, &perm, &t) == AI3_OK, "%s",
               ai3_last_error());
    ai3_graph_dim merge[4] = {{.value = x, .dim = 0}, {.value = x, .dim = 1},
                              {.value = x, .dim = 2}, {.value = x, .dim = 3}};
    AI3_EXPECT(ai3_graph_reshape(g, t, 4, merge, &s2) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(ai3_graph_chunk(g, s2, 2, 1, pieces) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(pieces[1] == pieces[0] + 1, "chunk ids");
    AI3_EXPECT(join(g, AI3_OP_MUL, "default", 2, (int[]){pieces[1], z}, NULL, &pm) == AI3_OK,
               "%s", ai3_last_error());
    AI3_EXPECT(join(g, AI3_OP_ADD, "default", 2, (int[]){pieces[0], pm}, NULL, &sum) == AI3_OK,
               "%s", ai3_last_error());
    AI3_EXPECT(ai3_graph_set_outputs(g, 4, (int[]){sum, s2, x, sum}) == AI3_OK, "outputs");

    int64_t n = 2, c = 6, h = 3, w = 4;
    ai3_tensor in[2] = {random_tensor(4, (int64_t[]){n, c, h, w}),
                        random_tensor(4, (int64_t[]){1, c / 2, 1, 1})};
    int nd[4];
    int64_t sh[4][AI3_MAX_DIMS];
    ai3_status s = ai3_graph_output_shapes(g, 2, in, 4, nd, sh);
    AI3_EXPECT(s == AI3_OK, "%s", ai3_last_error());
    ai3_tensor out[4];
    for (int k = 0; k < 4; k++) out[k] = make(nd[k], sh[k]);
    s = ai3_graph_run(g, 2, in, 4, out);
    AI3_EXPECT(s == AI3_OK, "%s", ai3_last_error());

    const float *xd = in[0].data, *zd = in[1].data;
    const float *shuffled = out[1].data, *res = out[0].data, *res2 = out[3].data;
    int bad = 0;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t i = 0; i < h * w; i++) {
                /* output channel ch = j * 2 + g reads input channel g * (c / 2) + j */
                int64_t src = (ch % 2) * (c / 2) + ch / 2;
                float want = xd[(b * c + src) * h * w + i];
                bad += shuffled[(b * c + ch) * h * w + i] != want;
            }
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c / 2; ch++)
            for (int64_t i = 0; i < h * w; i++) {
                float lo = shuffled[(b * c + ch) * h * w + i];
                float hi = shuffled[(b * c + ch + c / 2) * h * w + i];
                float want = lo + hi * zd[ch], got = res[(b * c / 2 + ch) * h * w + i];
                bad += fabsf(got - want) > 1e-6f || res2[(b * c / 2 + ch) * h * w + i] != got;
            }
    bad += memcmp(out[2].data, in[0].data, sizeof(float) * (size_t)(n * c * h * w)) != 0;
    AI3_EXPECT(bad == 0, "%d elements differ", bad);

    /* an odd channel count cannot be split into 2 equal reshape groups */
    ai3_tensor odd = random_tensor(4, (int64_t[]){1, 5, 2, 2});
    ai3_tensor two[2] = {odd, in[1]};
    s = ai3_graph_output_shapes(g, 2, two, 4, nd, sh);
    AI3_EXPECT(s == AI3_ERROR_INVALID_ARGUMENT && strstr(ai3_last_error(), "reshape"),
               "odd channels: %d %s", (int)s, ai3_last_error());
    for (int k = 0; k < 4; k++) free(out[k].data);
    free(in[0].data);
    free(in[1].data);
    free(odd.data);
    ai3_graph_destroy(g);
}

AI3_TEST(graph_rejects_bad_inputs_clearly) {
    net n = make_net(8, 8);
    int ok;
    ai3_graph *g = build(&n, &ok);
    int nd[2];
    int64_t sh[2][AI3_MAX_DIMS];

    ai3_tensor x = random_tensor(4, (int64_t[]){2, 5, 8, 8}); /* 5 channels, not 3 */
    ai3_status s = ai3_graph_output_shapes(g, 1, &x, 2, nd, sh);
    AI3_EXPECT(s == AI3_ERROR_INVALID_ARGUMENT && strstr(ai3_last_error(), "'conv1'"),
               "wrong channels: %d %s", (int)s, ai3_last_error());
    ai3_tensor outs[2] = {make(2, (int64_t[]){2, 5}), make(4, (int64_t[]){2, 4, 8, 8})};
    s = ai3_graph_run(g, 1, &x, 2, outs);
    AI3_EXPECT(s == AI3_ERROR_INVALID_ARGUMENT, "run with wrong channels: %d", (int)s);
    free(x.data);

    x = random_tensor(4, (int64_t[]){2, 3, 8, 8});
    x.dtype = AI3_FLOAT64;
    s = ai3_graph_run(g, 1, &x, 2, outs);
    AI3_EXPECT(s == AI3_ERROR_INVALID_ARGUMENT && strstr(ai3_last_error(), "float64"),
               "wrong dtype: %d %s", (int)s, ai3_last_error());
    x.dtype = AI3_FLOAT32;
    s = ai3_graph_run(g, 2, &x, 2, outs);
    AI3_EXPECT(s == AI3_ERROR_INVALID_ARGUMENT && strstr(ai3_last_error(), "1 input"),
               "input count: %s", ai3_last_error());
    ai3_tensor bad_out = make(2, (int64_t[]){2, 6});
    ai3_tensor two[2] = {bad_out, outs[1]};
    s = ai3_graph_run(g, 1, &x, 2, two);
    AI3_EXPECT(s == AI3_ERROR_INVALID_ARGUMENT && strstr(ai3_last_error(), "output"),
               "output shape: %s", ai3_last_error());
    ai3_tensor small = random_tensor(4, (int64_t[]){2, 3, 1, 1}); /* too small to pool */
    s = ai3_graph_output_shapes(g, 1, &small, 2, nd, sh);
    AI3_EXPECT(s == AI3_ERROR_INVALID_ARGUMENT, "too small: %d", (int)s);

    /* building */
    int v;
    AI3_EXPECT(node1(g, AI3_OP_RELU, "default", 99, NULL, &v) == AI3_ERROR_INVALID_ARGUMENT,
               "bad id");
    AI3_EXPECT(node1(g, AI3_OP_RELU, "no such", 0, NULL, &v) == AI3_ERROR_UNKNOWN_ALGORITHM,
               "bad name");
    ai3_tensor w64 = n.w1;
    w64.dtype = AI3_FLOAT64;
    AI3_EXPECT(conv(g, "default", 0, &w64, NULL, &n.p1, &v) == AI3_ERROR_INVALID_ARGUMENT,
               "weight dtype");
    AI3_EXPECT(ai3_graph_set_outputs(g, 0, NULL) == AI3_ERROR_INVALID_ARGUMENT, "no outputs");
    ai3_graph *none = g;
    AI3_EXPECT(ai3_graph_create((ai3_dtype)7, &none) == AI3_ERROR_INVALID_ARGUMENT && !none,
               "bad dtype");
    free(x.data);
    free(small.data);
    free(bad_out.data);
    free(outs[0].data);
    free(outs[1].data);
    ai3_graph_destroy(g);
    ai3_graph_destroy(NULL);
    free_net(&n);
}

/* A reshape, chunk or transpose node refused for its input id is freed as
 * what it is: its parameters (which share storage with an operation node's
 * plan) are never taken for a plan (found by the fuzzer). */
AI3_TEST(graph_refused_view_nodes_free_cleanly) {
    ai3_graph *g = NULL;
    int x, v, pieces[4];
    AI3_EXPECT(ai3_graph_create(AI3_FLOAT32, &g) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(ai3_graph_add_input(g, &x) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_graph_reshape(g, 99, -1, NULL, &v), AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_graph_chunk(g, -5, -1, -1, pieces), AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_graph_transpose(g, "default", 99, -1, -1, &v),
                      AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_graph_reshape(NULL, x, -1, NULL, &v), AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT(ai3_graph_reshape(g, x, 1, (ai3_graph_dim[]){{.value = -1, .size = -1}}, &v) ==
                   AI3_OK, "the graph still builds: %s", ai3_last_error());
    ai3_graph_destroy(g);
}

/* A node may read one value more often than the graph has values (found by
 * the fuzzer: the planner's table of a node's inputs was sized by values). */
AI3_TEST(graph_cat_reads_one_value_many_times) {
    ai3_graph *g = NULL;
    int x, y;
    AI3_EXPECT(ai3_graph_create(AI3_FLOAT32, &g) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(ai3_graph_add_input(g, &x) == AI3_OK, "%s", ai3_last_error());
    const int five[5] = {x, x, x, x, x};
    ai3_op_params p = {.cat = {.dim = 0}};
    AI3_EXPECT(join(g, AI3_OP_CAT, "default", 5, five, &p, &y) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT(ai3_graph_set_outputs(g, 1, &y) == AI3_OK, "%s", ai3_last_error());
    ai3_tensor in = random_tensor(2, (int64_t[]){1, 3}), out = make(2, (int64_t[]){5, 3});
    int nd;
    int64_t shape[1][AI3_MAX_DIMS];
    AI3_EXPECT(ai3_graph_output_shapes(g, 1, &in, 1, &nd, shape) == AI3_OK && nd == 2 &&
                   shape[0][0] == 5 && shape[0][1] == 3,
               "shape: %s", ai3_last_error());
    AI3_EXPECT(ai3_graph_run(g, 1, &in, 1, &out) == AI3_OK, "run: %s", ai3_last_error());
    const float *a = in.data, *b = out.data;
    for (int i = 0; i < 15; i++) AI3_EXPECT(b[i] == a[i % 3], "out[%d] = %g", i, b[i]);
    free(in.data);
    free(out.data);
    ai3_graph_destroy(g);
}

/* Reshape sizes whose product would overflow, or that no tensor has (with a
 * zero beside them), are refused; a chunk after them never sees them (found
 * by the fuzzer). */
AI3_TEST(graph_reshape_refuses_sizes_that_overflow) {
    const int64_t huge[][3] = {{(int64_t)1 << 40, (int64_t)1 << 40, -1},
                               {(int64_t)1 << 62, 0, 1},
                               {0, INT64_MAX, 1}};
    for (int t = 0; t < 3; t++) {
        ai3_graph *g = NULL;
        int x, r, pieces[2];
        AI3_EXPECT(ai3_graph_create(AI3_FLOAT32, &g) == AI3_OK, "%s", ai3_last_error());
        AI3_EXPECT(ai3_graph_add_input(g, &x) == AI3_OK, "%s", ai3_last_error());
        ai3_graph_dim dims[3];
        for (int i = 0; i < 3; i++) dims[i] = (ai3_graph_dim){.value = -1, .size = huge[t][i]};
        AI3_EXPECT(ai3_graph_reshape(g, x, 3, dims, &r) == AI3_OK, "%s", ai3_last_error());
        AI3_EXPECT(ai3_graph_chunk(g, r, 2, 0, pieces) == AI3_OK, "%s", ai3_last_error());
        AI3_EXPECT(ai3_graph_set_outputs(g, 1, pieces) == AI3_OK, "%s", ai3_last_error());
        ai3_tensor in = make(1, (int64_t[]){t == 0 ? 6 : 0});
        int nd;
        int64_t shape[1][AI3_MAX_DIMS];
        AI3_EXPECT_STATUS(ai3_graph_output_shapes(g, 1, &in, 1, &nd, shape),
                          AI3_ERROR_INVALID_ARGUMENT);
        free(in.data);
        ai3_graph_destroy(g);
    }
}

/* A batch whose layers' activations outgrow the shared cache runs in slices
 * (an uneven last one here) with the results of one run; an operation that
 * mixes the images (softmax over dimension 0) keeps the batch whole, as
 * does turning the split off. */
AI3_TEST(graph_runs_large_batches_in_slices) {
    ai3_tensor w1 = random_tensor(4, (int64_t[]){16, 3, 3, 3}),
               w2 = random_tensor(4, (int64_t[]){8, 16, 1, 1}),
               b1 = random_tensor(1, (int64_t[]){16});
    ai3_conv2d_params p = ai3_conv2d_params_default();
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    const ai3_conv2d_params one = ai3_conv2d_params_default();
    ai3_op_params softmax = {.softmax = {.dim = -4}};
    const int64_t n = 67, shape[4] = {n, 3, 64, 64}, out_shape[4] = {n, 8, 64, 64};
    ai3_tensor in = random_tensor(4, shape);
    for (int mixes = 0; mixes < 2; mixes++) {
        ai3_graph *g;
        int x, a, b, c;
        ai3_graph_create(AI3_FLOAT32, &g);
        ai3_graph_add_input(g, &x);
        AI3_EXPECT(conv(g, "guess", x, &w1, &b1, &p, &a) == AI3_OK, "conv");
        AI3_EXPECT(node1(g, AI3_OP_RELU, "default", a, NULL, &a) == AI3_OK, "relu");
        AI3_EXPECT(conv(g, "guess", a, &w2, NULL, &one, &b) == AI3_OK, "conv 1x1");
        c = b;
        if (mixes)
            AI3_EXPECT(node1(g, AI3_OP_SOFTMAX, "default", b, &softmax, &c) == AI3_OK, "softmax");
        ai3_graph_set_outputs(g, 1, &c);
        ai3_tensor out[2] = {make(4, out_shape), make(4, out_shape)};
        int64_t sub[2] = {0, 0};
        for (int split = 1; split >= 0; split--) {
            ai3_graph_set_batch_split(g, split);
            AI3_EXPECT(ai3_graph_sub_batch(g, 1, &in, &sub[split]) == AI3_OK, "%s",
                       ai3_last_error());
            AI3_EXPECT(ai3_graph_run(g, 1, &in, 1, &out[split]) == AI3_OK, "run: %s",
                       ai3_last_error());
        }
        /* 67 images, the 1×1 conv's input and output 384 KiB per image:
         * 25 MiB, two slices under SLICE_BYTES (16 MiB) */
        const int64_t want = mixes ? n : 34;
        AI3_EXPECT(sub[1] == want && sub[0] == n, "mixes %d: slices of %lld (split), %lld", mixes,
                   (long long)sub[1], (long long)sub[0]);
        AI3_EXPECT(max_rel_diff(&out[1], &out[0]) < 1e-6, "mixes %d: split differs by %g", mixes,
                   max_rel_diff(&out[1], &out[0]));
        AI3_EXPECT_STATUS(ai3_graph_sub_batch(g, 1, &in, NULL), AI3_ERROR_INVALID_ARGUMENT);
        free(out[0].data);
        free(out[1].data);
        ai3_graph_destroy(g);
    }
    free(in.data);
    free(w1.data);
    free(w2.data);
    free(b1.data);
}
