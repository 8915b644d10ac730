/* The operations whole networks need (batchnorm2d, add, mul, cat, the
 * activations, mean, permute, layernorm, softmax), through the public API,
 * against the slow references of src/ref/ on random inputs and randomly
 * drawn valid parameters (broadcast patterns, cat dimensions, permutations,
 * reduced dimensions), for each algorithm name and dtype, including large
 * tensors that the thread pool splits; then bad arguments, which must give
 * the right status and a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ai3.h"
#include "ref/ref.h"
#include "harness.h"
#include "tensors.h"
#include "internal.h"

/* ---- tensors ------------------------------------------------------------ */

/* Uniform in [-scale, scale). */
static ai3_tensor make_random(ai3_dtype dtype, int ndim, const int64_t *shape, double scale) {
    ai3_tensor t = test_tensor(dtype, ndim, shape);
    for (int64_t i = 0; i < ai3_tensor_numel(&t); i++) test_set(&t, i, scale * ai3_test_uniform());
    return t;
}

static ai3_tensor copy_of(const ai3_tensor *t) {
    ai3_tensor c = test_tensor(t->dtype, t->ndim, t->shape);
    memcpy(c.data, t->data, (size_t)ai3_tensor_numel(t) * ai3_dtype_size(t->dtype));
    return c;
}

/* The same memory with `ndim` dimensions, leading 1s added. */
static ai3_tensor padded(const ai3_tensor *t, int ndim) {
    ai3_tensor v = *t;
    int lead = ndim - t->ndim;
    v.ndim = ndim;
    for (int i = 0; i < ndim; i++) v.shape[i] = i < lead ? 1 : t->shape[i - lead];
    return v;
}

static void free_all(ai3_tensor *ts[], int n) {
    for (int i = 0; i < n; i++) free(ts[i]->data);
}

static const ai3_dtype dtypes[] = {AI3_FLOAT32, AI3_FLOAT64};
static const char *const algos[] = {"direct", "default"};

/* Tolerances for elementwise results computed in `real` against a double
 * reference: a few roundings. */
static double atol_of(ai3_dtype dt) { return dt == AI3_FLOAT64 ? 1e-14 : 1e-6; }
static double rtol_of(ai3_dtype dt) { return dt == AI3_FLOAT64 ? 1e-13 : 1e-5; }

/* A random shape of ndim sizes in [lo, hi]. (Each sweep also makes some
 * shapes large, so that the work is split over the pool.) */
static void random_shape(int ndim, int64_t lo, int64_t hi, int64_t *shape) {
    for (int i = 0; i < ndim; i++) shape[i] = ai3_test_randint(lo, hi);
}

/* ---- batchnorm2d -------------------------------------------------------- */

AI3_TEST(netops_batchnorm2d_matches_reference) {
    for (int t = 0; t < 200; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int ndim = ai3_test_randint(0, 3) == 0 ? 3 : 4;
        int64_t shape[4];
        int i = 0;
        if (ndim == 4) shape[i++] = ai3_test_randint(1, 3);
        int64_t c = ai3_test_randint(1, t % 25 == 0 ? 64 : 9);
        shape[i++] = c;
        shape[i++] = ai3_test_randint(1, t % 25 == 0 ? 40 : 9);
        shape[i++] = ai3_test_randint(1, t % 25 == 0 ? 40 : 9);
        int has_w = (int)ai3_test_randint(0, 3) != 0, has_b = (int)ai3_test_randint(0, 3) != 0;
        double eps = ai3_test_randint(0, 1) ? 1e-5 : 1e-3 * (1 + ai3_test_uniform());
        ai3_tensor x = make_random(dt, ndim, shape, 3.0);
        ai3_tensor mean = make_random(dt, 1, &c, 1.0), var = make_random(dt, 1, &c, 1.0);
        for (int64_t k = 0; k < c; k++) test_set(&var, k, test_get(&var, k) + 1.05); /* positive */
        ai3_tensor w = make_random(dt, 1, &c, 2.0), b = make_random(dt, 1, &c, 1.0);
        ai3_tensor y = test_output(dt, ndim, shape), ref = test_tensor(dt, ndim, shape);
        ai3_status s = ai3_batchnorm2d(algo, &x, &mean, &var, has_w ? &w : NULL,
                                       has_b ? &b : NULL, eps, &y);
        AI3_EXPECT(s == AI3_OK, "batchnorm2d %s: %s", algo, ai3_last_error());
        ai3_tensor x4 = ai3_batched_4d(&x), r4 = ai3_batched_4d(&ref);
        (dt == AI3_FLOAT64 ? ai3_ref_batchnorm2d_f64 : ai3_ref_batchnorm2d_f32)(
            &x4, &mean, &var, has_w ? &w : NULL, has_b ? &b : NULL, eps, &r4);
        char what[128];
        snprintf(what, sizeof what, "batchnorm2d %s %s ndim=%d c=%lld w=%d b=%d", algo,
                 test_dtype_name(dt), ndim, (long long)c, has_w, has_b);
        test_compare(&y, &ref, atol_of(dt) * 10, rtol_of(dt), what);
        /* In place: output aliasing input gives the same result. */
        ai3_tensor z = copy_of(&x);
        s = ai3_batchnorm2d(algo, &z, &mean, &var, has_w ? &w : NULL, has_b ? &b : NULL, eps, &z);
        AI3_EXPECT(s == AI3_OK, "batchnorm2d in place: %s", ai3_last_error());
        test_compare(&z, &ref, atol_of(dt) * 10, rtol_of(dt), "batchnorm2d in place");
        ai3_tensor *all[] = {&x, &mean, &var, &w, &b, &y, &ref, &z};
        free_all(all, 8);
    }
}

/* ---- add, mul ----------------------------------------------------------- */

static void binary_sweep(int is_mul) {
    const char *op = is_mul ? "mul" : "add";
    for (int t = 0; t < 400; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int big = t % 40 == 0;
        int nd = (int)ai3_test_randint(1, 5);
        int64_t oshape[AI3_MAX_DIMS], ashape[AI3_MAX_DIMS], bshape[AI3_MAX_DIMS];
        random_shape(nd, 1, 5, oshape);
        if (big) oshape[nd - 1] = 20000 + ai3_test_randint(0, 100);
        /* Each operand: trailing dimensions of the output, each the
         * output's size or 1 (and sometimes 0-d). */
        int na = (int)ai3_test_randint(0, nd), nb = (int)ai3_test_randint(0, nd);
        if (ai3_test_randint(0, 2) == 0) na = nd;
        for (int i = 0; i < na; i++)
            ashape[i] = ai3_test_randint(0, 2) ? oshape[nd - na + i] : 1;
        for (int i = 0; i < nb; i++)
            bshape[i] = ai3_test_randint(0, 2) ? oshape[nd - nb + i] : 1;
        ai3_tensor a = make_random(dt, na, ashape, 2.0), b = make_random(dt, nb, bshape, 2.0);
        if (ai3_test_randint(0, 1)) { ai3_tensor tmp = a; a = b; b = tmp; }
        int ndim;
        int64_t shape[AI3_MAX_DIMS];
        ai3_status s = ai3_broadcast_output_shape(&a, &b, &ndim, shape);
        AI3_EXPECT(s == AI3_OK, "broadcast shape: %s", ai3_last_error());
        ai3_tensor y = test_output(dt, ndim, shape), ref = test_tensor(dt, ndim, shape);
        s = is_mul ? ai3_mul(algo, &a, &b, &y) : ai3_add(algo, &a, &b, &y);
        AI3_EXPECT(s == AI3_OK, "%s %s: %s", op, algo, ai3_last_error());
        ai3_tensor pa = padded(&a, ndim), pb = padded(&b, ndim);
        if (is_mul)
            (dt == AI3_FLOAT64 ? ai3_ref_mul_f64 : ai3_ref_mul_f32)(&pa, &pb, &ref);
        else
            (dt == AI3_FLOAT64 ? ai3_ref_add_f64 : ai3_ref_add_f32)(&pa, &pb, &ref);
        char what[128];
        snprintf(what, sizeof what, "%s %s %s a=%d-d b=%d-d out=%d-d", op, algo, test_dtype_name(dt),
                 a.ndim, b.ndim, ndim);
        test_compare(&y, &ref, 0, 0, what); /* one rounding, as the reference's */
        /* In place on whichever operand has the output's shape. */
        ai3_tensor *full = a.ndim == ndim && ai3_tensor_numel(&a) == ai3_tensor_numel(&y) ? &a
                           : b.ndim == ndim && ai3_tensor_numel(&b) == ai3_tensor_numel(&y) ? &b
                                                                                             : NULL;
        if (full) {
            s = is_mul ? ai3_mul(algo, &a, &b, full) : ai3_add(algo, &a, &b, full);
            AI3_EXPECT(s == AI3_OK, "%s in place: %s", op, ai3_last_error());
            test_compare(full, &ref, 0, 0, "in place");
        }
        ai3_tensor *all[] = {&a, &b, &y, &ref};
        free_all(all, 4);
    }
}

AI3_TEST(netops_add_matches_reference) { binary_sweep(0); }
AI3_TEST(netops_mul_matches_reference) { binary_sweep(1); }

/* Squeeze-and-excitation: (N, C, H, W) · (N, C, 1, 1). */
AI3_TEST(netops_mul_squeeze_excitation) {
    for (int t = 0; t < 4; t++) {
        ai3_dtype dt = dtypes[t % 2];
        int64_t xs[4] = {2, 96, 28, 28}, ss[4] = {2, 96, 1, 1};
        ai3_tensor x = make_random(dt, 4, xs, 1.0), sc = make_random(dt, 4, ss, 1.0);
        ai3_tensor y = test_output(dt, 4, xs), ref = test_tensor(dt, 4, xs);
        ai3_status s = t < 2 ? ai3_mul("direct", &x, &sc, &y) : ai3_mul("direct", &sc, &x, &y);
        AI3_EXPECT(s == AI3_OK, "mul: %s", ai3_last_error());
        for (int64_t i = 0; i < ai3_tensor_numel(&x); i++)
            test_set(&ref, i, test_get(&x, i) * test_get(&sc, i / (28 * 28)));
        test_compare(&y, &ref, 0, 0, "squeeze-and-excitation mul");
        ai3_tensor *all[] = {&x, &sc, &y, &ref};
        free_all(all, 4);
    }
}

/* ---- cat ---------------------------------------------------------------- */

AI3_TEST(netops_cat_matches_reference) {
    for (int t = 0; t < 300; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int nd = (int)ai3_test_randint(1, 5);
        int dim = (int)ai3_test_randint(0, nd - 1);
        int n = (int)ai3_test_randint(1, 5);
        int64_t base[AI3_MAX_DIMS];
        random_shape(nd, 1, 4, base);
        if (t % 30 == 0) base[nd - 1] = 5000;
        ai3_tensor in[5];
        const ai3_tensor *ptrs[5];
        for (int k = 0; k < n; k++) {
            int64_t shape[AI3_MAX_DIMS];
            memcpy(shape, base, sizeof shape);
            shape[dim] = ai3_test_randint(k == 0 ? 1 : 0, 4);
            in[k] = make_random(dt, nd, shape, 1.0);
            ptrs[k] = &in[k];
        }
        int call_dim = ai3_test_randint(0, 1) ? dim : dim - nd; /* also negative */
        int ndim;
        int64_t shape[AI3_MAX_DIMS];
        ai3_status s = ai3_cat_output_shape(ptrs, n, call_dim, &ndim, shape);
        AI3_EXPECT(s == AI3_OK && ndim == nd, "cat shape: %s", ai3_last_error());
        ai3_tensor y = test_output(dt, ndim, shape), ref = test_tensor(dt, ndim, shape);
        s = ai3_cat(algo, ptrs, n, call_dim, &y);
        AI3_EXPECT(s == AI3_OK, "cat %s: %s", algo, ai3_last_error());
        (dt == AI3_FLOAT64 ? ai3_ref_cat_f64 : ai3_ref_cat_f32)(ptrs, n, dim, &ref);
        char what[96];
        snprintf(what, sizeof what, "cat %s %s nd=%d dim=%d n=%d", algo, test_dtype_name(dt), nd, dim,
                 n);
        test_compare(&y, &ref, 0, 0, what);
        for (int k = 0; k < n; k++) free(in[k].data);
        free(y.data), free(ref.data);
    }
}

/* ---- activations -------------------------------------------------------- */

enum { HARDTANH, SIGMOID, HARDSIGMOID, HARDSWISH, SILU, GELU, GELU_TANH, N_ACT };
static const char *const act_names[N_ACT] = {"hardtanh", "sigmoid", "hardsigmoid", "hardswish",
                                             "silu", "gelu", "gelu tanh"};

static ai3_status run_act(int act, const char *algo, const ai3_tensor *x, double lo, double hi,
                          ai3_tensor *y) {
    switch (act) {
    case HARDTANH: return ai3_hardtanh(algo, x, lo, hi, y);
    case SIGMOID: return ai3_sigmoid(algo, x, y);
    case HARDSIGMOID: return ai3_hardsigmoid(algo, x, y);
    case HARDSWISH: return ai3_hardswish(algo, x, y);
    case SILU: return ai3_silu(algo, x, y);
    default: return ai3_gelu(algo, x, act == GELU_TANH, y);
    }
}

static void ref_act(int act, const ai3_tensor *x, double lo, double hi, ai3_tensor *y) {
    int d = x->dtype == AI3_FLOAT64;
    switch (act) {
    case HARDTANH: (d ? ai3_ref_hardtanh_f64 : ai3_ref_hardtanh_f32)(x, lo, hi, y); break;
    case SIGMOID: (d ? ai3_ref_sigmoid_f64 : ai3_ref_sigmoid_f32)(x, y); break;
    case HARDSIGMOID: (d ? ai3_ref_hardsigmoid_f64 : ai3_ref_hardsigmoid_f32)(x, y); break;
    case HARDSWISH: (d ? ai3_ref_hardswish_f64 : ai3_ref_hardswish_f32)(x, y); break;
    case SILU: (d ? ai3_ref_silu_f64 : ai3_ref_silu_f32)(x, y); break;
    default: (d ? ai3_ref_gelu_f64 : ai3_ref_gelu_f32)(x, act == GELU_TANH, y); break;
    }
}

AI3_TEST(netops_activations_match_reference) {
    for (int act = 0; act < N_ACT; act++) {
        for (int t = 0; t < 60; t++) {
            ai3_dtype dt = dtypes[t % 2];
            const char *algo = algos[(t / 2) % 2];
            int nd = (int)ai3_test_randint(0, 4);
            int64_t shape[AI3_MAX_DIMS];
            random_shape(nd, 1, 7, shape);
            if (t % 20 == 0 && nd > 0) shape[nd - 1] = 70000;
            /* Wide enough to reach every piece: clamps at ±3, ±6, exp's tails. */
            ai3_tensor x = make_random(dt, nd, shape, 9.0);
            if (ai3_tensor_numel(&x) > 1) test_set(&x, 0, NAN);
            double lo = act == HARDTANH && t % 3 ? -ai3_test_randint(0, 4) * 0.75 : 0;
            double hi = act == HARDTANH && t % 3 ? lo + ai3_test_randint(0, 6) * 0.8 : 6;
            ai3_tensor y = test_output(dt, nd, shape), ref = test_tensor(dt, nd, shape);
            ai3_status s = run_act(act, algo, &x, lo, hi, &y);
            AI3_EXPECT(s == AI3_OK, "%s %s: %s", act_names[act], algo, ai3_last_error());
            ref_act(act, &x, lo, hi, &ref);
            char what[96];
            snprintf(what, sizeof what, "%s %s %s nd=%d", act_names[act], algo, test_dtype_name(dt),
                     nd);
            test_compare(&y, &ref, atol_of(dt), rtol_of(dt), what);
            ai3_tensor z = copy_of(&x); /* in place */
            s = run_act(act, algo, &z, lo, hi, &z);
            AI3_EXPECT(s == AI3_OK, "%s in place: %s", act_names[act], ai3_last_error());
            test_compare(&z, &ref, atol_of(dt), rtol_of(dt), "in place");
            free(x.data), free(y.data), free(ref.data), free(z.data);
        }
    }
}

/* Spot values of torch's formulas (relu6 = hardtanh(0, 6)). */
AI3_TEST(netops_activation_values) {
    double xs[] = {-4, -3, -1.5, 0, 1.5, 3, 7};
    int64_t n = 7;
    ai3_tensor x = test_tensor(AI3_FLOAT64, 1, &n), y = test_tensor(AI3_FLOAT64, 1, &n);
    for (int i = 0; i < 7; i++) test_set(&x, i, xs[i]);
    const double relu6[] = {0, 0, 0, 0, 1.5, 3, 6};
    const double hsig[] = {0, 0, 0.25, 0.5, 0.75, 1, 1};
    ai3_hardtanh("direct", &x, 0, 6, &y);
    for (int i = 0; i < 7; i++)
        AI3_EXPECT(test_get(&y, i) == relu6[i], "relu6(%g) = %g", xs[i], test_get(&y, i));
    ai3_hardsigmoid("direct", &x, &y);
    for (int i = 0; i < 7; i++)
        AI3_EXPECT(test_get(&y, i) == hsig[i], "hardsigmoid(%g) = %g", xs[i], test_get(&y, i));
    ai3_hardswish("direct", &x, &y);
    for (int i = 0; i < 7; i++)
        AI3_EXPECT(test_get(&y, i) == xs[i] * hsig[i], "hardswish(%g) = %g", xs[i], test_get(&y, i));
    ai3_gelu("direct", &x, 0, &y);
    AI3_EXPECT(fabs(test_get(&y, 4) - 1.5 * 0.9331927987311419) < 1e-15, "gelu(1.5) = %.17g",
               test_get(&y, 4));
    free(x.data), free(y.data);
}

/* ---- mean --------------------------------------------------------------- */

AI3_TEST(netops_mean_matches_reference) {
    for (int t = 0; t < 400; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int nd = (int)ai3_test_randint(0, 5);
        int64_t shape[AI3_MAX_DIMS];
        random_shape(nd, 1, 6, shape);
        if (t % 40 == 0 && nd >= 2) shape[nd - 1] = shape[nd - 2] = 60; /* pool-sized */
        if (t % 40 == 20 && nd >= 1) shape[0] = 300;
        int dims[AI3_MAX_DIMS], n_dims = 0, chosen[AI3_MAX_DIMS] = {0};
        if (nd > 0 && ai3_test_randint(0, 5) != 0) {
            for (int d = 0; d < nd; d++)
                if (ai3_test_randint(0, 1)) chosen[d] = 1;
            /* listed in a random order, some counted from the end */
            for (int d = nd - 1; d >= 0; d--)
                if (chosen[d]) dims[n_dims++] = ai3_test_randint(0, 1) ? d : d - nd;
        }
        if (n_dims == 0)
            for (int d = 0; d < nd; d++) chosen[d] = 1; /* every dimension */
        int keepdim = (int)ai3_test_randint(0, 1);
        ai3_tensor x = make_random(dt, nd, shape, 1.0);
        int ndim;
        int64_t oshape[AI3_MAX_DIMS];
        ai3_status s = ai3_mean_output_shape(&x, dims, n_dims, keepdim, &ndim, oshape);
        AI3_EXPECT(s == AI3_OK, "mean shape: %s", ai3_last_error());
        ai3_tensor y = test_output(dt, ndim, oshape);
        s = ai3_mean(algo, &x, n_dims ? dims : NULL, n_dims, keepdim, &y);
        AI3_EXPECT(s == AI3_OK, "mean %s: %s", algo, ai3_last_error());
        /* The reference takes sorted dims and a keepdim-shaped output. */
        int64_t kshape[AI3_MAX_DIMS];
        int sorted[AI3_MAX_DIMS], ns = 0;
        for (int d = 0; d < nd; d++) {
            kshape[d] = chosen[d] ? 1 : shape[d];
            if (chosen[d]) sorted[ns++] = d;
        }
        ai3_tensor ref = test_tensor(dt, nd, kshape), xin = x;
        if (nd == 0) { /* a 0-d input is one element */
            xin.ndim = ref.ndim = 1;
            xin.shape[0] = ref.shape[0] = 1;
            sorted[ns++] = 0;
        }
        (dt == AI3_FLOAT64 ? ai3_ref_mean_f64 : ai3_ref_mean_f32)(&xin, sorted, ns, &ref);
        char what[96];
        snprintf(what, sizeof what, "mean %s %s nd=%d n_dims=%d keepdim=%d", algo,
                 test_dtype_name(dt), nd, n_dims, keepdim);
        test_compare(&y, &ref, atol_of(dt), rtol_of(dt), what);
        free(x.data), free(y.data), free(ref.data);
    }
}

/* ---- permute ------------------------------------------------------------ */

AI3_TEST(netops_permute_matches_reference) {
    for (int t = 0; t < 400; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int nd = (int)ai3_test_randint(1, 6);
        int64_t shape[AI3_MAX_DIMS];
        random_shape(nd, 1, 5, shape);
        if (t % 40 == 0) shape[nd - 1] = 3000;
        int perm[AI3_MAX_DIMS];
        for (int i = 0; i < nd; i++) perm[i] = i;
        for (int i = nd - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)ai3_test_randint(0, i), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        int call_perm[AI3_MAX_DIMS];
        for (int i = 0; i < nd; i++) call_perm[i] = ai3_test_randint(0, 1) ? perm[i] : perm[i] - nd;
        ai3_tensor x = make_random(dt, nd, shape, 1.0);
        int ndim;
        int64_t oshape[AI3_MAX_DIMS];
        ai3_status s = ai3_permute_output_shape(&x, call_perm, &ndim, oshape);
        AI3_EXPECT(s == AI3_OK && ndim == nd, "permute shape: %s", ai3_last_error());
        ai3_tensor y = test_output(dt, ndim, oshape), ref = test_tensor(dt, ndim, oshape);
        s = ai3_permute(algo, &x, call_perm, &y);
        AI3_EXPECT(s == AI3_OK, "permute %s: %s", algo, ai3_last_error());
        (dt == AI3_FLOAT64 ? ai3_ref_permute_f64 : ai3_ref_permute_f32)(&x, perm, &ref);
        char what[64];
        snprintf(what, sizeof what, "permute %s %s nd=%d", algo, test_dtype_name(dt), nd);
        test_compare(&y, &ref, 0, 0, what);
        free(x.data), free(y.data), free(ref.data);
    }
}

/* Channel shuffle as ShuffleNet does it: view (N, g, C/g, H, W), swap 1 and
 * 2: channel c' = i·g + j of the output is channel j·(C/g) + i of the input. */
AI3_TEST(netops_permute_channel_shuffle) {
    int64_t g = 2, cg = 58, h = 7, w = 7;
    int64_t shape[5] = {2, g, cg, h, w};
    ai3_tensor x = make_random(AI3_FLOAT32, 5, shape, 1.0);
    int64_t oshape[5] = {2, cg, g, h, w};
    ai3_tensor y = test_output(AI3_FLOAT32, 5, oshape);
    ai3_status s = ai3_permute("default", &x, (const int[]){0, 2, 1, 3, 4}, &y);
    AI3_EXPECT(s == AI3_OK, "channel shuffle: %s", ai3_last_error());
    int64_t bad = 0;
    for (int64_t n = 0; n < 2; n++)
        for (int64_t i = 0; i < cg; i++)
            for (int64_t j = 0; j < g; j++)
                for (int64_t p = 0; p < h * w; p++) {
                    double got = test_get(&y, ((n * cg + i) * g + j) * h * w + p);
                    double want = test_get(&x, ((n * g + j) * cg + i) * h * w + p);
                    bad += got != want;
                }
    AI3_EXPECT(bad == 0, "channel shuffle: %lld elements wrong", (long long)bad);
    free(x.data), free(y.data);
}

/* ---- layernorm ---------------------------------------------------------- */

AI3_TEST(netops_layernorm_matches_reference) {
    for (int t = 0; t < 300; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int nd = (int)ai3_test_randint(1, 4);
        int64_t shape[AI3_MAX_DIMS];
        random_shape(nd, 1, 9, shape);
        if (t % 30 == 0) shape[nd - 1] = 768;
        if (t % 30 == 15 && nd > 1) shape[0] = 4000;
        int nn = (int)ai3_test_randint(1, nd);
        int has_w = (int)ai3_test_randint(0, 3) != 0, has_b = (int)ai3_test_randint(0, 3) != 0;
        double eps = ai3_test_randint(0, 1) ? 1e-5 : 1e-6;
        ai3_tensor x = make_random(dt, nd, shape, 2.0);
        for (int64_t i = 0; i < ai3_tensor_numel(&x); i++) /* a mean far from 0 */
            test_set(&x, i, test_get(&x, i) + 3);
        ai3_tensor w = make_random(dt, nn, shape + nd - nn, 2.0);
        ai3_tensor b = make_random(dt, nn, shape + nd - nn, 1.0);
        ai3_tensor y = test_output(dt, nd, shape), ref = test_tensor(dt, nd, shape);
        ai3_status s = ai3_layernorm(algo, &x, nn, has_w ? &w : NULL, has_b ? &b : NULL, eps, &y);
        AI3_EXPECT(s == AI3_OK, "layernorm %s: %s", algo, ai3_last_error());
        (dt == AI3_FLOAT64 ? ai3_ref_layernorm_f64 : ai3_ref_layernorm_f32)(
            &x, nn, has_w ? &w : NULL, has_b ? &b : NULL, eps, &ref);
        char what[96];
        snprintf(what, sizeof what, "layernorm %s %s nd=%d normalized=%d w=%d b=%d", algo,
                 test_dtype_name(dt), nd, nn, has_w, has_b);
        /* Outputs are at most ~11 in size; the mean and variance of a row of
         * len elements are summed in double with error up to ~len/8 ulps,
         * which only shows in float64. */
        int64_t len = ai3_tensor_numel(&w);
        double atol = dt == AI3_FLOAT64 ? 0x1p-53 * (double)(len / 8 + 16) * 11 : 1e-5;
        test_compare(&y, &ref, atol, rtol_of(dt), what);
        ai3_tensor z = copy_of(&x); /* in place */
        s = ai3_layernorm(algo, &z, nn, has_w ? &w : NULL, has_b ? &b : NULL, eps, &z);
        AI3_EXPECT(s == AI3_OK, "layernorm in place: %s", ai3_last_error());
        test_compare(&z, &ref, atol, rtol_of(dt), "layernorm in place");
        ai3_tensor *all[] = {&x, &w, &b, &y, &ref, &z};
        free_all(all, 6);
    }
}

/* ---- softmax ------------------------------------------------------------ */

AI3_TEST(netops_softmax_matches_reference) {
    for (int t = 0; t < 300; t++) {
        ai3_dtype dt = dtypes[t % 2];
        const char *algo = algos[(t / 2) % 2];
        int nd = (int)ai3_test_randint(0, 4);
        int64_t shape[AI3_MAX_DIMS];
        random_shape(nd, 1, 7, shape);
        if (t % 30 == 0 && nd > 0) shape[nd - 1] = 1000;
        if (t % 30 == 10 && nd > 1) shape[0] = 3000;
        int span = nd > 0 ? nd : 1;
        int dim = (int)ai3_test_randint(0, span - 1);
        int call_dim = ai3_test_randint(0, 1) ? dim : dim - span;
        /* Large values: without subtracting the maximum, exp overflows. */
        double scale = t % 3 == 0 ? 200.0 : 4.0;
        ai3_tensor x = make_random(dt, nd, shape, scale);
        ai3_tensor y = test_output(dt, nd, shape), ref = test_tensor(dt, nd, shape);
        ai3_status s = ai3_softmax(algo, &x, call_dim, &y);
        AI3_EXPECT(s == AI3_OK, "softmax %s: %s", algo, ai3_last_error());
        ai3_tensor xin = x, rin = ref;
        if (nd == 0) {
            xin.ndim = rin.ndim = 1;
            xin.shape[0] = rin.shape[0] = 1;
        }
        (dt == AI3_FLOAT64 ? ai3_ref_softmax_f64 : ai3_ref_softmax_f32)(&xin, dim, &rin);
        char what[96];
        snprintf(what, sizeof what, "softmax %s %s nd=%d dim=%d scale=%g", algo, test_dtype_name(dt),
                 nd, call_dim, scale);
        /* exp of x - max is off by |x - max|·eps relatively. */
        double rtol = (dt == AI3_FLOAT64 ? 1e-15 : 1e-7) * (4 * scale + 10);
        test_compare(&y, &ref, atol_of(dt), rtol, what);
        ai3_tensor z = copy_of(&x); /* in place */
        s = ai3_softmax(algo, &z, call_dim, &z);
        AI3_EXPECT(s == AI3_OK, "softmax in place: %s", ai3_last_error());
        test_compare(&z, &ref, atol_of(dt), rtol, "softmax in place");
        free(x.data), free(y.data), free(ref.data), free(z.data);
    }
}

/* ---- bad arguments ------------------------------------------------------ */

AI3_TEST(netops_bad_arguments) {
    const ai3_status BAD = AI3_ERROR_INVALID_ARGUMENT;
    ai3_tensor x4 = make_random(AI3_FLOAT32, 4, (int64_t[]){2, 3, 4, 5}, 1.0);
    ai3_tensor y4 = test_tensor(AI3_FLOAT32, 4, (int64_t[]){2, 3, 4, 5});
    ai3_tensor y4d = test_tensor(AI3_FLOAT64, 4, (int64_t[]){2, 3, 4, 5});
    ai3_tensor c3 = make_random(AI3_FLOAT32, 1, (int64_t[]){3}, 1.0);
    ai3_tensor c4 = make_random(AI3_FLOAT32, 1, (int64_t[]){4}, 1.0);
    ai3_tensor c3d = make_random(AI3_FLOAT64, 1, (int64_t[]){3}, 1.0);
    ai3_tensor v2 = make_random(AI3_FLOAT32, 2, (int64_t[]){4, 6}, 1.0);
    ai3_tensor v2o = test_tensor(AI3_FLOAT32, 2, (int64_t[]){4, 6});

    /* batchnorm2d */
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", NULL, &c3, &c3, NULL, NULL, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &v2, &c3, &c3, NULL, NULL, 1e-5, &v2o), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &x4, &c4, &c3, NULL, NULL, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &x4, &c3, NULL, NULL, NULL, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &x4, &c3, &c3, &c3d, NULL, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &x4, &c3, &c3, NULL, &c4, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &x4, &c3, &c3, NULL, NULL, 0.0, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &x4, &c3, &c3, NULL, NULL, NAN, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("direct", &x4, &c3, &c3, NULL, NULL, 1e-5, &y4d), BAD);
    AI3_EXPECT_STATUS(ai3_batchnorm2d("nope", &x4, &c3, &c3, NULL, NULL, 1e-5, &y4),
                  AI3_ERROR_UNKNOWN_ALGORITHM);
    AI3_EXPECT_STATUS(ai3_batchnorm2d(NULL, &x4, &c3, &c3, NULL, NULL, 1e-5, &y4), BAD);

    /* add, mul */
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    AI3_EXPECT_STATUS(ai3_broadcast_output_shape(&x4, &v2, &nd, shape), BAD); /* 5 vs 6 */
    AI3_EXPECT_STATUS(ai3_broadcast_output_shape(&x4, &c3, NULL, shape), BAD);
    AI3_EXPECT_STATUS(ai3_add("direct", &x4, &v2, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_add("direct", &x4, NULL, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_add("direct", &c3, &c3d, &c3), BAD); /* mixed dtypes */
    AI3_EXPECT_STATUS(ai3_mul("direct", &x4, &x4, &v2o), BAD);  /* wrong output shape */
    AI3_EXPECT_STATUS(ai3_mul("fast", &x4, &x4, &y4), AI3_ERROR_UNKNOWN_ALGORITHM);
    {   /* output aliasing a broadcast operand */
        ai3_tensor row = make_random(AI3_FLOAT32, 1, (int64_t[]){6}, 1.0);
        ai3_tensor alias = v2o;
        alias.data = row.data;
        AI3_EXPECT_STATUS(ai3_add("direct", &v2, &row, &alias), BAD);
        free(row.data);
    }

    /* cat */
    const ai3_tensor *two[] = {&x4, &x4}, *mixed[] = {&x4, &v2}, *dts[] = {&c3, &c3d};
    ai3_tensor cat_out = test_tensor(AI3_FLOAT32, 4, (int64_t[]){4, 3, 4, 5});
    AI3_EXPECT_STATUS(ai3_cat("direct", two, 0, 0, &cat_out), BAD);
    AI3_EXPECT_STATUS(ai3_cat("direct", NULL, 2, 0, &cat_out), BAD);
    AI3_EXPECT_STATUS(ai3_cat("direct", two, 2, 4, &cat_out), BAD);
    AI3_EXPECT_STATUS(ai3_cat("direct", two, 2, -5, &cat_out), BAD);
    AI3_EXPECT_STATUS(ai3_cat("direct", two, 2, 1, &cat_out), BAD); /* output shape */
    AI3_EXPECT_STATUS(ai3_cat("direct", mixed, 2, 0, &cat_out), BAD);
    AI3_EXPECT_STATUS(ai3_cat("direct", dts, 2, 0, &cat_out), BAD);
    const ai3_tensor *self_cat[] = {&cat_out};
    AI3_EXPECT_STATUS(ai3_cat("direct", self_cat, 1, 0, &cat_out), BAD); /* aliasing */
    AI3_EXPECT_STATUS(ai3_cat("bogus", two, 2, 0, &cat_out), AI3_ERROR_UNKNOWN_ALGORITHM);
    ai3_tensor scalar = test_tensor(AI3_FLOAT32, 0, NULL);
    const ai3_tensor *scalars[] = {&scalar};
    AI3_EXPECT_STATUS(ai3_cat_output_shape(scalars, 1, 0, &nd, shape), BAD);

    /* activations */
    AI3_EXPECT_STATUS(ai3_hardtanh("direct", &x4, 1.0, -1.0, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_hardtanh("direct", &x4, NAN, 1.0, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_sigmoid("direct", &x4, &y4d), BAD);
    AI3_EXPECT_STATUS(ai3_hardsigmoid("direct", NULL, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_hardswish("direct", &x4, NULL), BAD);
    AI3_EXPECT_STATUS(ai3_silu("direct", &x4, &v2o), BAD);
    AI3_EXPECT_STATUS(ai3_gelu("erf", &x4, 0, &y4), AI3_ERROR_UNKNOWN_ALGORITHM);
    {
        ai3_tensor cuda = x4, cuda_out = y4;
        cuda.device = cuda_out.device = AI3_DEVICE_CUDA;
        AI3_EXPECT_STATUS(ai3_silu("direct", &cuda, &cuda_out), AI3_ERROR_UNSUPPORTED);
        AI3_EXPECT_STATUS(ai3_silu("direct", &cuda, &y4), BAD); /* mixed devices */
        ai3_tensor odd = x4;
        odd.dtype = (ai3_dtype)7;
        AI3_EXPECT_STATUS(ai3_sigmoid("direct", &odd, &y4), BAD);
    }

    /* mean */
    ai3_tensor m_out = test_tensor(AI3_FLOAT32, 2, (int64_t[]){2, 3});
    AI3_EXPECT_STATUS(ai3_mean("direct", &x4, (const int[]){2, 4}, 2, 0, &m_out), BAD);
    AI3_EXPECT_STATUS(ai3_mean("direct", &x4, (const int[]){2, -2}, 2, 0, &m_out), BAD); /* twice */
    AI3_EXPECT_STATUS(ai3_mean("direct", &x4, NULL, 2, 0, &m_out), BAD);
    AI3_EXPECT_STATUS(ai3_mean("direct", &x4, (const int[]){2, 3}, -1, 0, &m_out), BAD);
    AI3_EXPECT_STATUS(ai3_mean("direct", &x4, (const int[]){2, 3}, 2, 1, &m_out), BAD); /* keepdim */
    AI3_EXPECT_STATUS(ai3_mean("direct", &x4, (const int[]){2, 3}, 2, 0, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_mean_output_shape(&x4, (const int[]){9}, 1, 0, &nd, shape), BAD);
    AI3_EXPECT_STATUS(ai3_mean("avg", &x4, (const int[]){2, 3}, 2, 0, &m_out),
                  AI3_ERROR_UNKNOWN_ALGORITHM);

    /* permute */
    ai3_tensor p_out = test_tensor(AI3_FLOAT32, 4, (int64_t[]){2, 4, 5, 3});
    AI3_EXPECT_STATUS(ai3_permute("direct", &x4, (const int[]){0, 2, 3, 3}, &p_out), BAD);
    AI3_EXPECT_STATUS(ai3_permute("direct", &x4, (const int[]){0, 2, 3, 4}, &p_out), BAD);
    AI3_EXPECT_STATUS(ai3_permute("direct", &x4, (const int[]){0, 2, 3, -5}, &p_out), BAD);
    AI3_EXPECT_STATUS(ai3_permute("direct", &x4, NULL, &p_out), BAD);
    AI3_EXPECT_STATUS(ai3_permute("direct", &x4, (const int[]){0, 3, 2, 1}, &p_out), BAD); /* shape */
    AI3_EXPECT_STATUS(ai3_permute("direct", &x4, (const int[]){0, 1, 2, 3}, &x4), BAD); /* alias */
    AI3_EXPECT_STATUS(ai3_permute("copy", &x4, (const int[]){0, 2, 3, 1}, &p_out),
                  AI3_ERROR_UNKNOWN_ALGORITHM);

    /* layernorm */
    ai3_tensor w45 = make_random(AI3_FLOAT32, 2, (int64_t[]){4, 5}, 1.0);
    ai3_tensor w54 = make_random(AI3_FLOAT32, 2, (int64_t[]){5, 4}, 1.0);
    AI3_EXPECT_STATUS(ai3_layernorm("direct", &x4, 0, NULL, NULL, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_layernorm("direct", &x4, 5, NULL, NULL, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_layernorm("direct", &x4, 2, &w54, NULL, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_layernorm("direct", &x4, 2, &w45, &c3, 1e-5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_layernorm("direct", &x4, 2, &w45, &w45, -1.0, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_layernorm("direct", &x4, 2, &w45, &w45, 1e-5, &y4d), BAD);
    AI3_EXPECT_STATUS(ai3_layernorm("welford", &x4, 2, &w45, &w45, 1e-5, &y4),
                  AI3_ERROR_UNKNOWN_ALGORITHM);

    /* softmax */
    AI3_EXPECT_STATUS(ai3_softmax("direct", &x4, 4, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_softmax("direct", &x4, -5, &y4), BAD);
    AI3_EXPECT_STATUS(ai3_softmax("direct", &x4, 1, &v2o), BAD);
    AI3_EXPECT_STATUS(ai3_softmax("direct", &x4, 1, NULL), BAD);
    AI3_EXPECT_STATUS(ai3_softmax("log", &x4, 1, &y4), AI3_ERROR_UNKNOWN_ALGORITHM);

    ai3_tensor *all[] = {&x4, &y4, &y4d, &c3, &c4, &c3d, &v2, &v2o, &cat_out, &scalar,
                         &m_out, &p_out, &w45, &w54};
    free_all(all, 14);
}

/* The registry knows every new operation by name, with "direct" built in
 * and the default. */
AI3_TEST(netops_registry_names) {
    const char *names[] = {"batchnorm2d", "add", "mul", "cat", "hardtanh", "sigmoid",
                           "hardsigmoid", "hardswish", "silu", "gelu", "mean", "permute",
                           "layernorm", "softmax"};
    for (int i = 0; i < 14; i++) {
        ai3_op op = (ai3_op)(AI3_OP_BATCHNORM2D + i);
        AI3_EXPECT(ai3_op_name(op) && strcmp(ai3_op_name(op), names[i]) == 0,
                   "op %d is named %s, expected %s", (int)op, ai3_op_name(op), names[i]);
        AI3_EXPECT(strcmp(ai3_default_algorithm(op), "direct") == 0, "%s default", names[i]);
        const char *algs[8];
        int count = 0;
        ai3_list_algorithms(op, AI3_DEVICE_CPU, algs, 8, &count);
        AI3_EXPECT(count >= 1 && strcmp(algs[0], "direct") == 0, "%s algorithms", names[i]);
    }
}
