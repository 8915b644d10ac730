/* The generic plans (ai3_plan_*) against the typed functions and the
 * references; their bad arguments; the registry's devices (CUDA tensors are
 * valid descriptors, but only algorithms of their device run on them); the
 * plugin handshake; and ai3_graph_algorithm.
 *
 * CUDA tensors here point at memory that cannot be read or written
 * (PROT_NONE), and the calls that take them run in a child process: an
 * operation that touched the data instead of failing first would crash the
 * child, which shows as a failure of the test, not of the whole run. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ai3.h"
#include "harness.h"
#include "ref/ref.h"
#include "tensors.h"

static const ai3_dtype dtypes[] = {AI3_FLOAT32, AI3_FLOAT64};

/* ---- helpers ------------------------------------------------------------ */

/* Memory that cannot be read or written (any access faults), a different
 * 4 KiB slot each call, so that two such tensors never overlap. */
#define UNTOUCHABLE_SLOTS 256
static void *untouchable(void) {
    static char *region;
    static int next;
    if (!region) {
        void *p = mmap(NULL, (size_t)UNTOUCHABLE_SLOTS << 12, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
        region = p;
    }
    return region + ((size_t)(next++ % UNTOUCHABLE_SLOTS) << 12);
}

/* A descriptor on `device` of untouchable memory (at most 4 KiB of it). */
static ai3_tensor device_tensor(ai3_device device, ai3_dtype dtype, int ndim,
                                const int64_t *shape) {
    ai3_tensor t = {.data = untouchable(), .dtype = dtype, .device = device, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

typedef ai3_status (*isolated_fn)(const void *ctx);

typedef struct {
    int finished;  /* the call returned (no crash, no hang) */
    int signal;    /* else the signal that ended it */
    ai3_status status;
    char message[512];
} isolated_result;

/* Runs fn(ctx) in a child process and reports its status and message. */
static isolated_result isolated(isolated_fn fn, const void *ctx) {
    isolated_result r = {0};
    int fds[2];
    if (pipe(fds) != 0) {
        r.status = fn(ctx); /* no isolation possible: run it here */
        r.finished = 1;
        snprintf(r.message, sizeof r.message, "%s", ai3_last_error());
        return r;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        alarm(20); /* an operation that computed instead would not return */
        isolated_result c = {.finished = 1};
        c.status = fn(ctx);
        snprintf(c.message, sizeof c.message, "%s", ai3_last_error());
        ssize_t w = write(fds[1], &c, sizeof c);
        _exit(w == (ssize_t)sizeof c ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = 0;
    if (pid > 0) {
        for (ssize_t n; got < (ssize_t)sizeof r; got += n)
            if ((n = read(fds[0], (char *)&r + got, sizeof r - (size_t)got)) <= 0) break;
        int wstatus = 0;
        waitpid(pid, &wstatus, 0);
        if (WIFSIGNALED(wstatus)) r.signal = WTERMSIG(wstatus);
    }
    close(fds[0]);
    if (got != (ssize_t)sizeof r) r.finished = 0;
    return r;
}

#define EXPECT_ISOLATED(fn, ctx, want, substring)                                          \
    do {                                                                                   \
        isolated_result r_ = isolated(fn, ctx);                                            \
        AI3_EXPECT(r_.finished, "%s did not return (signal %d): data touched?", #fn,       \
                   r_.signal);                                                             \
        if (r_.finished)                                                                   \
            AI3_EXPECT(r_.status == (want) && strstr(r_.message, substring),               \
                       "%s gave %s (\"%s\"), expected %s mentioning '%s'", #fn,            \
                       ai3_status_string(r_.status), r_.message, ai3_status_string(want),  \
                       substring);                                                         \
    } while (0)

/* An output of the shape the plan gives for these inputs. */
static ai3_tensor plan_output(const ai3_plan *plan, int n, const ai3_tensor *const *in) {
    int nd = 0;
    int64_t sh[AI3_MAX_DIMS] = {0};
    ai3_status s = ai3_plan_output_shape(plan, n, in, &nd, sh);
    AI3_EXPECT(s == AI3_OK, "%s output shape: %s", ai3_op_name(ai3_plan_op(plan)),
               ai3_last_error());
    return test_output(in[0]->dtype, nd, sh);
}

/* Runs the plan into a new output (the caller frees it); also with a
 * workspace of the caller's (ai3_plan_workspace_size bytes, 64-byte
 * aligned), which must give the same. */
static ai3_tensor run_plan(const ai3_plan *plan, int n, const ai3_tensor *const *in) {
    const char *name = ai3_op_name(ai3_plan_op(plan));
    ai3_tensor out = plan_output(plan, n, in);
    ai3_status s = ai3_plan_run(plan, n, in, &out, NULL, 0);
    AI3_EXPECT(s == AI3_OK, "%s run: %s", name, ai3_last_error());
    size_t bytes = 12345;
    s = ai3_plan_workspace_size(plan, n, in, &bytes);
    AI3_EXPECT(s == AI3_OK && bytes != 12345, "%s workspace size: %s", name, ai3_last_error());
    ai3_tensor again = test_output(out.dtype, out.ndim, out.shape);
    void *ws = bytes ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
    s = ai3_plan_run(plan, n, in, &again, ws, bytes);
    AI3_EXPECT(s == AI3_OK, "%s run with a workspace: %s", name, ai3_last_error());
    char what[96];
    snprintf(what, sizeof what, "%s with a caller's workspace", name);
    test_compare(&again, &out, 0, 0, what);
    free(ws);
    free(again.data);
    return out;
}

/* Makes a plan, checks its op, runs it and compares with `want` (exactly
 * when tol is 0). */
static void expect_plan_gives(ai3_op op, const char *algorithm, int n_weights,
                              const ai3_tensor *const *weights, const ai3_op_params *params,
                              const ai3_tensor *hint, int n, const ai3_tensor *const *in,
                              const ai3_tensor *want, double tol, const char *what) {
    ai3_plan *plan = NULL;
    ai3_status s = ai3_plan_create(op, algorithm, n_weights, weights, params, hint, &plan);
    AI3_EXPECT(s == AI3_OK && plan, "%s: plan_create: %s", what, ai3_last_error());
    if (!plan) return;
    AI3_EXPECT(ai3_plan_op(plan) == op, "%s: plan op %d", what, (int)ai3_plan_op(plan));
    ai3_tensor got = run_plan(plan, n, in);
    AI3_EXPECT(got.ndim == want->ndim, "%s: %d dimensions, expected %d", what, got.ndim,
               want->ndim);
    for (int i = 0; i < got.ndim && i < want->ndim; i++)
        AI3_EXPECT(got.shape[i] == want->shape[i], "%s: size %lld in dimension %d, expected %lld",
                   what, (long long)got.shape[i], i, (long long)want->shape[i]);
    test_compare(&got, want, tol, tol, what);
    free(got.data);
    ai3_plan_destroy(plan);
}

/* ---- plans give the typed functions' results ---------------------------- */

AI3_TEST(plans_match_typed_functions) {
    for (int d = 0; d < 2; d++) {
        ai3_dtype dt = dtypes[d];
        char what[96];

        /* relu, against the reference */
        ai3_tensor x = test_random(dt, 3, (int64_t[]){2, 5, 7});
        ai3_tensor want = test_tensor(dt, 3, x.shape);
        (dt == AI3_FLOAT64 ? ai3_ref_relu_f64 : ai3_ref_relu_f32)(&x, &want);
        const ai3_tensor *in1[1] = {&x};
        snprintf(what, sizeof what, "relu plan %s", test_dtype_name(dt));
        expect_plan_gives(AI3_OP_RELU, "default", 0, NULL, NULL, NULL, 1, in1, &want, 0, what);
        free(want.data);

        /* hardtanh and gelu (parameters), softmax, flatten */
        want = test_tensor(dt, 3, x.shape);
        ai3_hardtanh("direct", &x, -0.25, 0.5, &want);
        ai3_op_params p = {.hardtanh = {.min_val = -0.25, .max_val = 0.5}};
        expect_plan_gives(AI3_OP_HARDTANH, "direct", 0, NULL, &p, NULL, 1, in1, &want, 0,
                          "hardtanh plan");
        ai3_gelu("direct", &x, 1, &want);
        p = (ai3_op_params){.gelu = {.tanh_approximation = 1}};
        expect_plan_gives(AI3_OP_GELU, "direct", 0, NULL, &p, NULL, 1, in1, &want, 0,
                          "gelu plan");
        ai3_softmax("direct", &x, 1, &want);
        p = (ai3_op_params){.softmax = {.dim = -2}};
        expect_plan_gives(AI3_OP_SOFTMAX, "default", 0, NULL, &p, NULL, 1, in1, &want, 0,
                          "softmax plan");
        free(want.data);
        want = test_tensor(dt, 2, (int64_t[]){10, 7});
        ai3_flatten("direct", &x, 0, 1, &want);
        p = (ai3_op_params){.flatten = {.start_dim = 0, .end_dim = -2}};
        expect_plan_gives(AI3_OP_FLATTEN, "default", 0, NULL, &p, NULL, 1, in1, &want, 0,
                          "flatten plan");
        free(want.data);

        /* conv2d with weight and bias, for several algorithm names */
        ai3_tensor cx = test_random(dt, 4, (int64_t[]){2, 3, 9, 11});
        ai3_tensor w = test_random(dt, 4, (int64_t[]){4, 3, 3, 3});
        ai3_tensor b = test_random(dt, 1, (int64_t[]){4});
        ai3_conv2d_params cp = ai3_conv2d_params_default();
        cp.stride_h = 2;
        cp.pad_top = cp.pad_bottom = 1;
        cp.pad_left = 2;
        int nd;
        int64_t sh[AI3_MAX_DIMS];
        AI3_EXPECT(ai3_conv2d_output_shape(&cx, &w, &cp, &nd, sh) == AI3_OK, "conv2d shape");
        ai3_tensor cref = test_tensor(dt, nd, sh);
        (dt == AI3_FLOAT64 ? ai3_ref_conv2d_f64 : ai3_ref_conv2d_f32)(&cx, &w, &b, &cp, &cref);
        const ai3_tensor *cw[2] = {&w, &b}, *cin[1] = {&cx};
        p = (ai3_op_params){.conv2d = cp};
        const char *conv_algos[] = {"guess", "default", "direct", "gemm", "smm"};
        for (int a = 0; a < 5; a++) {
            snprintf(what, sizeof what, "conv2d plan '%s' %s", conv_algos[a], test_dtype_name(dt));
            expect_plan_gives(AI3_OP_CONV2D, conv_algos[a], 2, cw, &p, a < 2 ? &cx : NULL, 1, cin,
                              &cref, dt == AI3_FLOAT32 ? 1e-4 : 1e-10, what);
        }
        /* the plan keeps its own copy of the weights */
        ai3_plan *plan = NULL;
        AI3_EXPECT(ai3_plan_create(AI3_OP_CONV2D, "guess", 2, cw, &p, &cx, &plan) == AI3_OK,
                   "conv2d plan: %s", ai3_last_error());
        ai3_tensor typed = test_output(dt, nd, sh);
        AI3_EXPECT(ai3_conv2d(ai3_plan_algorithm(plan), &cx, &w, &b, &cp, &typed) == AI3_OK,
                   "typed conv2d: %s", ai3_last_error());
        ai3_tensor w_saved = test_tensor(dt, 4, w.shape);
        memcpy(w_saved.data, w.data, (size_t)ai3_tensor_numel(&w) * (dt == AI3_FLOAT64 ? 8 : 4));
        test_fill_nan(&w);
        test_fill_nan(&b);
        ai3_tensor got = run_plan(plan, 1, cin);
        test_compare(&got, &typed, 0, 0, "conv2d plan after the caller's weights changed");
        ai3_plan_destroy(plan);
        free(got.data), free(typed.data), free(cref.data), free(w_saved.data);
        free(cx.data), free(w.data), free(b.data);

        /* linear */
        ai3_tensor lx = test_random(dt, 3, (int64_t[]){2, 3, 6});
        ai3_tensor lw = test_random(dt, 2, (int64_t[]){5, 6});
        ai3_tensor lb = test_random(dt, 1, (int64_t[]){5});
        want = test_tensor(dt, 3, (int64_t[]){2, 3, 5});
        ai3_linear("default", &lx, &lw, &lb, &want);
        const ai3_tensor *lws[2] = {&lw, &lb}, *lin[1] = {&lx};
        expect_plan_gives(AI3_OP_LINEAR, "default", 2, lws, NULL, NULL, 1, lin, &want, 0,
                          "linear plan");
        ai3_linear("default", &lx, &lw, NULL, &want);
        expect_plan_gives(AI3_OP_LINEAR, "gemm", 1, lws, NULL, NULL, 1, lin, &want, 0,
                          "linear plan without bias");
        free(lx.data), free(lw.data), free(lb.data), free(want.data);

        /* add (broadcast), cat (three inputs, one empty, negative dim) */
        ai3_tensor a = test_random(dt, 4, (int64_t[]){2, 3, 4, 5});
        ai3_tensor bb = test_random(dt, 3, (int64_t[]){3, 1, 5});
        want = test_tensor(dt, 4, a.shape);
        ai3_add("direct", &a, &bb, &want);
        const ai3_tensor *ab[2] = {&a, &bb};
        expect_plan_gives(AI3_OP_ADD, "default", 0, NULL, NULL, NULL, 2, ab, &want, 0,
                          "add plan");
        ai3_mul("direct", &a, &bb, &want);
        expect_plan_gives(AI3_OP_MUL, "direct", 0, NULL, NULL, NULL, 2, ab, &want, 0,
                          "mul plan");
        free(want.data);
        ai3_tensor c1 = test_random(dt, 3, (int64_t[]){2, 1, 4});
        ai3_tensor c2 = test_random(dt, 3, (int64_t[]){2, 3, 4});
        ai3_tensor c3 = test_random(dt, 3, (int64_t[]){2, 0, 4});
        const ai3_tensor *cats[3] = {&c1, &c2, &c3};
        want = test_tensor(dt, 3, (int64_t[]){2, 4, 4});
        ai3_cat("direct", cats, 3, 1, &want);
        p = (ai3_op_params){.cat = {.dim = -2}};
        expect_plan_gives(AI3_OP_CAT, "default", 0, NULL, &p, NULL, 3, cats, &want, 0,
                          "cat plan");
        free(want.data), free(c1.data), free(c2.data), free(c3.data);

        /* batchnorm2d: all four weights, then only the running statistics */
        int64_t three = 3;
        ai3_tensor mean = test_random(dt, 1, &three), var = test_random(dt, 1, &three);
        for (int k = 0; k < 3; k++) test_set(&var, k, test_get(&var, k) + 1.5);
        ai3_tensor bw = test_random(dt, 1, &three), bbias = test_random(dt, 1, &three);
        want = test_tensor(dt, 4, a.shape);
        ai3_batchnorm2d("direct", &a, &mean, &var, &bw, &bbias, 1e-3, &want);
        const ai3_tensor *bn[4] = {&mean, &var, &bw, &bbias}, *ain[1] = {&a};
        p = (ai3_op_params){.batchnorm2d = {.eps = 1e-3}};
        expect_plan_gives(AI3_OP_BATCHNORM2D, "default", 4, bn, &p, NULL, 1, ain, &want, 0,
                          "batchnorm2d plan");
        ai3_batchnorm2d("direct", &a, &mean, &var, NULL, NULL, 1e-3, &want);
        expect_plan_gives(AI3_OP_BATCHNORM2D, "direct", 2, bn, &p, NULL, 1, ain, &want, 0,
                          "batchnorm2d plan without affine");
        const ai3_tensor *bn_no_w[4] = {&mean, &var, NULL, &bbias};
        ai3_batchnorm2d("direct", &a, &mean, &var, NULL, &bbias, 1e-3, &want);
        expect_plan_gives(AI3_OP_BATCHNORM2D, "direct", 4, bn_no_w, &p, NULL, 1, ain, &want, 0,
                          "batchnorm2d plan with a NULL weight");
        free(want.data), free(mean.data), free(var.data), free(bw.data), free(bbias.data);

        /* layernorm over the last two dimensions */
        ai3_tensor lnw = test_random(dt, 2, (int64_t[]){4, 5});
        ai3_tensor lnb = test_random(dt, 2, (int64_t[]){4, 5});
        want = test_tensor(dt, 4, a.shape);
        ai3_layernorm("direct", &a, 2, &lnw, &lnb, 1e-5, &want);
        const ai3_tensor *ln[2] = {&lnw, &lnb};
        p = (ai3_op_params){.layernorm = {.normalized_ndim = 2, .eps = 1e-5}};
        expect_plan_gives(AI3_OP_LAYERNORM, "default", 2, ln, &p, NULL, 1, ain, &want, 0,
                          "layernorm plan");
        free(want.data), free(lnw.data), free(lnb.data);

        /* mean over dims {1, -1}; over every dimension with keepdim */
        want = test_tensor(dt, 2, (int64_t[]){2, 4});
        ai3_mean("direct", &a, (const int[]){1, 3}, 2, 0, &want);
        p = (ai3_op_params){.mean = {.n_dims = 2, .dims = {1, -1}, .keepdim = 0}};
        expect_plan_gives(AI3_OP_MEAN, "default", 0, NULL, &p, NULL, 1, ain, &want, 0,
                          "mean plan");
        free(want.data);
        want = test_tensor(dt, 4, (int64_t[]){1, 1, 1, 1});
        ai3_mean("direct", &a, NULL, 0, 1, &want);
        p = (ai3_op_params){.mean = {.n_dims = 0, .keepdim = 1}};
        expect_plan_gives(AI3_OP_MEAN, "direct", 0, NULL, &p, NULL, 1, ain, &want, 0,
                          "mean plan over everything");
        free(want.data);

        /* permute */
        want = test_tensor(dt, 4, (int64_t[]){2, 4, 5, 3});
        ai3_permute("direct", &a, (const int[]){0, 2, 3, 1}, &want);
        p = (ai3_op_params){.permute = {.ndim = 4, .perm = {0, 2, 3, -3}}};
        expect_plan_gives(AI3_OP_PERMUTE, "default", 0, NULL, &p, NULL, 1, ain, &want, 0,
                          "permute plan");
        free(want.data);

        /* adaptiveavgpool2d: a size of 0 keeps the input's */
        ai3_tensor px = test_random(dt, 4, (int64_t[]){2, 3, 7, 9});
        const ai3_tensor *pin[1] = {&px};
        want = test_tensor(dt, 4, (int64_t[]){2, 3, 7, 4});
        ai3_adaptiveavgpool2d("direct", &px, 7, 4, &want);
        p = (ai3_op_params){.adaptiveavgpool2d = {.out_h = 0, .out_w = 4}};
        expect_plan_gives(AI3_OP_ADAPTIVEAVGPOOL2D, "default", 0, NULL, &p, NULL, 1, pin, &want,
                          0, "adaptiveavgpool2d plan (0, 4)");
        free(want.data);
        want = test_tensor(dt, 4, px.shape);
        (dt == AI3_FLOAT64 ? ai3_ref_adaptiveavgpool2d_f64 : ai3_ref_adaptiveavgpool2d_f32)(
            &px, &want);
        p = (ai3_op_params){.adaptiveavgpool2d = {.out_h = 0, .out_w = 0}};
        expect_plan_gives(AI3_OP_ADAPTIVEAVGPOOL2D, "direct", 0, NULL, &p, NULL, 1, pin, &want,
                          0, "adaptiveavgpool2d plan (0, 0)");
        test_compare(&want, &px, 0, 0, "adaptiveavgpool2d to the same size");
        free(want.data);
        ai3_tensor px3 = test_random(dt, 3, (int64_t[]){3, 7, 9});
        const ai3_tensor *pin3[1] = {&px3};
        want = test_tensor(dt, 3, (int64_t[]){3, 2, 9});
        ai3_adaptiveavgpool2d("direct", &px3, 2, 9, &want);
        p = (ai3_op_params){.adaptiveavgpool2d = {.out_h = 2, .out_w = 0}};
        expect_plan_gives(AI3_OP_ADAPTIVEAVGPOOL2D, "direct", 0, NULL, &p, NULL, 1, pin3, &want,
                          0, "adaptiveavgpool2d plan unbatched (2, 0)");
        free(want.data), free(px.data), free(px3.data);

        /* maxpool2d */
        want = test_tensor(dt, 4, (int64_t[]){2, 3, 2, 2});
        ai3_pool2d_params pp = ai3_pool2d_params_default(2, 2);
        ai3_maxpool2d("direct", &a, &pp, &want);
        p = (ai3_op_params){.maxpool2d = pp};
        expect_plan_gives(AI3_OP_MAXPOOL2D, "default", 0, NULL, &p, NULL, 1, ain, &want, 0,
                          "maxpool2d plan");
        free(want.data), free(a.data), free(bb.data), free(x.data);
    }
}

/* ---- plans: bad arguments ----------------------------------------------- */

AI3_TEST(plans_reject_bad_arguments) {
    const ai3_status BAD = AI3_ERROR_INVALID_ARGUMENT;
    ai3_tensor x = test_random(AI3_FLOAT32, 2, (int64_t[]){2, 3});
    ai3_tensor xd = test_random(AI3_FLOAT64, 2, (int64_t[]){2, 3});
    ai3_tensor out = test_output(AI3_FLOAT32, 2, (int64_t[]){2, 3});
    ai3_tensor wrong = test_output(AI3_FLOAT32, 2, (int64_t[]){3, 2});
    ai3_tensor outd = test_output(AI3_FLOAT64, 2, (int64_t[]){2, 3});
    const ai3_tensor *one[1] = {&x}, *two[2] = {&x, &x}, *mixed[2] = {&x, &xd};
    const ai3_tensor *null_in[1] = {NULL};
    int nd;
    int64_t sh[AI3_MAX_DIMS];
    size_t bytes;

    /* creating */
    ai3_plan *plan = (ai3_plan *)&x;
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_COUNT, "direct", 0, NULL, NULL, NULL, &plan), BAD);
    AI3_EXPECT(plan == NULL, "plan not cleared on failure");
    AI3_EXPECT_STATUS(ai3_plan_create((ai3_op)-1, "direct", 0, NULL, NULL, NULL, &plan), BAD);
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_RELU, "direct", 0, NULL, NULL, NULL, NULL), BAD);
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_RELU, NULL, 0, NULL, NULL, NULL, &plan), BAD);
    plan = (ai3_plan *)&x;
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_RELU, "fastest", 0, NULL, NULL, NULL, &plan),
                  AI3_ERROR_UNKNOWN_ALGORITHM);
    AI3_EXPECT(plan == NULL, "plan not cleared on an unknown algorithm");
    AI3_EXPECT(strstr(ai3_last_error(), "fastest"), "message '%s'", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_RELU, "direct", 1, one, NULL, NULL, &plan), BAD);
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_RELU, "direct", -1, NULL, NULL, NULL, &plan), BAD);
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_LAYERNORM, "direct", 1, NULL, NULL, NULL, &plan), BAD);
    ai3_tensor cw = test_random(AI3_FLOAT32, 4, (int64_t[]){4, 3, 3, 3});
    const ai3_tensor *cws[3] = {&cw, NULL, NULL};
    ai3_op_params cp = {.conv2d = ai3_conv2d_params_default()};
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_CONV2D, "direct", 0, NULL, &cp, NULL, &plan), BAD);
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_CONV2D, "direct", 1, null_in, &cp, NULL, &plan), BAD);
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_CONV2D, "direct", 3, cws, &cp, NULL, &plan), BAD);
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_CONV2D, "direct", 1, cws, NULL, NULL, &plan), BAD);
    ai3_tensor bad_hint = x;
    bad_hint.ndim = AI3_MAX_DIMS + 1;
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_RELU, "direct", 0, NULL, NULL, &bad_hint, &plan), BAD);
    ai3_tensor hint_2ch = test_random(AI3_FLOAT32, 4, (int64_t[]){1, 2, 8, 8});
    AI3_EXPECT_STATUS(ai3_plan_create(AI3_OP_CONV2D, "guess", 1, cws, &cp, &hint_2ch, &plan), BAD);
    /* the hint's data is not read */
    ai3_tensor hint_no_data = hint_2ch;
    hint_no_data.data = NULL;
    hint_no_data.shape[1] = 3;
    AI3_EXPECT(ai3_plan_create(AI3_OP_CONV2D, "guess", 1, cws, &cp, &hint_no_data, &plan) ==
                   AI3_OK, "hint without data: %s", ai3_last_error());
    ai3_plan_destroy(plan);

    /* NULL plans */
    AI3_EXPECT_STATUS(ai3_plan_run(NULL, 1, one, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_output_shape(NULL, 1, one, &nd, sh), BAD);
    AI3_EXPECT_STATUS(ai3_plan_workspace_size(NULL, 1, one, &bytes), BAD);
    AI3_EXPECT(ai3_plan_op(NULL) == AI3_OP_COUNT, "op of NULL");
    AI3_EXPECT(ai3_plan_algorithm(NULL) == NULL, "algorithm of NULL");
    ai3_plan_destroy(NULL);

    /* input counts, inputs and outputs */
    plan = NULL;
    AI3_EXPECT(ai3_plan_create(AI3_OP_RELU, "direct", 0, NULL, NULL, NULL, &plan) == AI3_OK,
               "relu plan: %s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 2, two, &out, NULL, 0), BAD);
    AI3_EXPECT(strstr(ai3_last_error(), "1 input"), "message '%s'", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 0, one, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, NULL, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, null_in, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, one, NULL, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, one, &wrong, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, one, &outd, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_output_shape(plan, 1, one, NULL, sh), BAD);
    AI3_EXPECT_STATUS(ai3_plan_workspace_size(plan, 1, one, NULL), BAD);
    AI3_EXPECT_STATUS(ai3_plan_workspace_size(plan, 3, (const ai3_tensor *[]){&x, &x, &x}, &bytes),
                  BAD);
    AI3_EXPECT(ai3_plan_run(plan, 1, one, &out, NULL, 0) == AI3_OK, "relu: %s", ai3_last_error());
    ai3_plan_destroy(plan);

    AI3_EXPECT(ai3_plan_create(AI3_OP_ADD, "direct", 0, NULL, NULL, NULL, &plan) == AI3_OK,
               "add plan: %s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, one, &out, NULL, 0), BAD);
    AI3_EXPECT(strstr(ai3_last_error(), "2 inputs"), "message '%s'", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 3, (const ai3_tensor *[]){&x, &x, &x}, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 2, mixed, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 2, two, &wrong, NULL, 0), BAD);
    AI3_EXPECT(ai3_plan_run(plan, 2, two, &out, NULL, 0) == AI3_OK, "add: %s", ai3_last_error());
    ai3_plan_destroy(plan);

    ai3_op_params catp = {.cat = {.dim = 0}};
    AI3_EXPECT(ai3_plan_create(AI3_OP_CAT, "direct", 0, NULL, &catp, NULL, &plan) == AI3_OK,
               "cat plan: %s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 0, two, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 2, mixed, &out, NULL, 0), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 2, two, &out, NULL, 0), BAD); /* (4, 3) expected */
    ai3_plan_destroy(plan);

    /* conv2d: wrong input, output and workspace */
    ai3_tensor cx = test_random(AI3_FLOAT32, 4, (int64_t[]){1, 3, 12, 12});
    ai3_tensor cout = test_output(AI3_FLOAT32, 4, (int64_t[]){1, 4, 10, 10});
    ai3_tensor cwrong = test_output(AI3_FLOAT32, 4, (int64_t[]){1, 4, 12, 12});
    const ai3_tensor *cin[1] = {&cx}, *xin2[1] = {&hint_2ch};
    const char *needs_ws[] = {"gemm", "winograd", "smm", "implicit precomp gemm"};
    for (int a = 0; a < 4; a++) {
        plan = NULL;
        AI3_EXPECT(ai3_plan_create(AI3_OP_CONV2D, needs_ws[a], 1, cws, &cp, &cx, &plan) ==
                       AI3_OK, "conv2d plan %s: %s", needs_ws[a], ai3_last_error());
        if (!plan) continue;
        AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, xin2, &cout, NULL, 0), BAD);
        AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, cin, &cwrong, NULL, 0), BAD);
        AI3_EXPECT_STATUS(ai3_plan_output_shape(plan, 1, xin2, &nd, sh), BAD);
        size_t need = 0;
        AI3_EXPECT(ai3_plan_workspace_size(plan, 1, cin, &need) == AI3_OK, "workspace: %s",
                   ai3_last_error());
        if (need >= 64) {
            void *ws = aligned_alloc(64, need / 64 * 64 + 64);
            AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, cin, &cout, ws, need - 1), BAD);
            AI3_EXPECT(ai3_plan_run(plan, 1, cin, &cout, ws, need) == AI3_OK, "%s: %s",
                       needs_ws[a], ai3_last_error());
            free(ws);
        }
        ai3_plan_destroy(plan);
    }

    /* adaptiveavgpool2d: the output must have the planned size */
    ai3_tensor px = test_random(AI3_FLOAT32, 4, (int64_t[]){2, 3, 6, 6});
    ai3_tensor p33 = test_output(AI3_FLOAT32, 4, (int64_t[]){2, 3, 3, 3});
    ai3_tensor p22 = test_output(AI3_FLOAT32, 4, (int64_t[]){2, 3, 2, 2});
    const ai3_tensor *pin[1] = {&px};
    ai3_op_params pp = {.adaptiveavgpool2d = {.out_h = 2, .out_w = 2}};
    AI3_EXPECT(ai3_plan_create(AI3_OP_ADAPTIVEAVGPOOL2D, "direct", 0, NULL, &pp, NULL, &plan) ==
                   AI3_OK, "adaptiveavgpool2d plan: %s", ai3_last_error());
    AI3_EXPECT(ai3_plan_run(plan, 1, pin, &p22, NULL, 0) == AI3_OK, "%s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, pin, &p33, NULL, 0), BAD);
    ai3_plan_destroy(plan);
    pp.adaptiveavgpool2d.out_h = pp.adaptiveavgpool2d.out_w = 0; /* keeps 6 x 6 */
    AI3_EXPECT(ai3_plan_create(AI3_OP_ADAPTIVEAVGPOOL2D, "direct", 0, NULL, &pp, NULL, &plan) ==
                   AI3_OK, "adaptiveavgpool2d plan: %s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, pin, &p33, NULL, 0), BAD);
    ai3_plan_destroy(plan);

    /* permute: the order must have the input's rank */
    ai3_op_params perm = {.permute = {.ndim = 3, .perm = {2, 1, 0}}};
    AI3_EXPECT(ai3_plan_create(AI3_OP_PERMUTE, "direct", 0, NULL, &perm, NULL, &plan) == AI3_OK,
               "permute plan: %s", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plan_output_shape(plan, 1, one, &nd, sh), BAD);
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, one, &wrong, NULL, 0), BAD);
    ai3_plan_destroy(plan);

    free(x.data), free(xd.data), free(out.data), free(wrong.data), free(outd.data);
    free(cw.data), free(hint_2ch.data), free(cx.data), free(cout.data), free(cwrong.data);
    free(px.data), free(p33.data), free(p22.data);
}

/* ---- plans: the algorithm they run -------------------------------------- */

static int is_listed(ai3_op op, ai3_device device, const char *name) {
    const char *names[64];
    int count = 0;
    if (!name || ai3_list_algorithms(op, device, names, 64, &count) != AI3_OK) return 0;
    for (int i = 0; i < count && i < 64; i++)
        if (strcmp(names[i], name) == 0) return 1;
    return 0;
}

AI3_TEST(plans_report_the_resolved_algorithm) {
    struct {
        int64_t c_in, c_out, k, size;
    } convs[] = {{3, 8, 3, 32}, {64, 64, 3, 56}, {64, 128, 1, 28}, {16, 16, 5, 9}};
    const char *names[] = {"guess", "default"};
    for (int c = 0; c < 4; c++)
        for (int n = 0; n < 2; n++)
            for (int with_hint = 0; with_hint < 2; with_hint++) {
                ai3_tensor w = test_random(AI3_FLOAT32, 4,
                                           (int64_t[]){convs[c].c_out, convs[c].c_in, convs[c].k,
                                                       convs[c].k});
                ai3_tensor hint = {.dtype = AI3_FLOAT32, .ndim = 4,
                                   .shape = {1, convs[c].c_in, convs[c].size, convs[c].size}};
                const ai3_tensor *ws[1] = {&w};
                ai3_op_params p = {.conv2d = ai3_conv2d_params_default()};
                ai3_plan *plan = NULL;
                ai3_status s = ai3_plan_create(AI3_OP_CONV2D, names[n], 1, ws, &p,
                                               with_hint ? &hint : NULL, &plan);
                AI3_EXPECT(s == AI3_OK, "conv2d '%s' plan: %s", names[n], ai3_last_error());
                if (!with_hint) {
                    /* without an expected input, the choice waits for the first one */
                    AI3_EXPECT(strcmp(ai3_plan_algorithm(plan), "guess") == 0,
                               "conv2d '%s' plan without a hint chose '%s' early", names[n],
                               ai3_plan_algorithm(plan));
                    char unread;
                    ai3_tensor first = hint;
                    first.data = &unread; /* only its shape is read */
                    const ai3_tensor *in[1] = {&first};
                    size_t bytes;
                    AI3_EXPECT(ai3_plan_workspace_size(plan, 1, in, &bytes) == AI3_OK, "%s",
                               ai3_last_error());
                }
                const char *algo = ai3_plan_algorithm(plan);
                AI3_EXPECT(algo && strcmp(algo, "guess") != 0 && strcmp(algo, "default") != 0 &&
                               is_listed(AI3_OP_CONV2D, AI3_DEVICE_CPU, algo),
                           "conv2d '%s' plan runs '%s'", names[n], algo ? algo : "(null)");
                ai3_plan_destroy(plan);
                free(w.data);
            }

    /* a named algorithm is itself */
    ai3_tensor w = test_random(AI3_FLOAT32, 4, (int64_t[]){4, 3, 3, 3});
    const ai3_tensor *ws[1] = {&w};
    ai3_op_params p = {.conv2d = ai3_conv2d_params_default()};
    ai3_plan *plan = NULL;
    AI3_EXPECT(ai3_plan_create(AI3_OP_CONV2D, "smm", 1, ws, &p, NULL, &plan) == AI3_OK, "smm");
    AI3_EXPECT(plan && strcmp(ai3_plan_algorithm(plan), "smm") == 0, "smm plan runs '%s'",
               plan ? ai3_plan_algorithm(plan) : "");
    ai3_plan_destroy(plan);
    free(w.data);

    /* "default" is resolved for every operation, as the header promises */
    for (int op = 0; op < AI3_OP_COUNT; op++) {
        if (op == AI3_OP_CONV2D || op == AI3_OP_LINEAR) continue; /* need weights */
        plan = NULL;
        ai3_op_params none;
        memset(&none, 0, sizeof none);
        ai3_status s = ai3_plan_create((ai3_op)op, "default", 0, NULL, &none, NULL, &plan);
        AI3_EXPECT(s == AI3_OK, "%s 'default' plan: %s", ai3_op_name((ai3_op)op),
                   ai3_last_error());
        const char *algo = ai3_plan_algorithm(plan);
        AI3_EXPECT(algo && strcmp(algo, ai3_default_algorithm((ai3_op)op)) == 0,
                   "%s 'default' plan reports '%s', not '%s'", ai3_op_name((ai3_op)op),
                   algo ? algo : "(null)", ai3_default_algorithm((ai3_op)op));
        ai3_plan_destroy(plan);
    }
    ai3_tensor lw = test_random(AI3_FLOAT32, 2, (int64_t[]){3, 4});
    const ai3_tensor *lws[1] = {&lw};
    plan = NULL;
    AI3_EXPECT(ai3_plan_create(AI3_OP_LINEAR, "default", 1, lws, NULL, NULL, &plan) == AI3_OK,
               "linear plan: %s", ai3_last_error());
    const char *algo = ai3_plan_algorithm(plan);
    AI3_EXPECT(algo && strcmp(algo, "gemm") == 0, "linear 'default' plan reports '%s'",
               algo ? algo : "(null)");
    ai3_plan_destroy(plan);
    free(lw.data);
}

/* ---- the registry's devices --------------------------------------------- */

static int cuda_calls, cpu_calls;

/* Stands for a CUDA kernel: counts, never touches the data. */
static ai3_status fake_cuda_relu(const ai3_tensor *input, ai3_tensor *output) {
    cuda_calls++;
    if (input->device != AI3_DEVICE_CUDA || output->device != AI3_DEVICE_CUDA)
        return ai3_set_error(AI3_ERROR_INTERNAL, "fake_cuda_relu: given a host tensor");
    return AI3_OK;
}

static ai3_status counting_cpu_relu(const ai3_tensor *input, ai3_tensor *output) {
    cpu_calls++;
    if (input->device != AI3_DEVICE_CPU || output->device != AI3_DEVICE_CPU)
        return ai3_set_error(AI3_ERROR_INTERNAL, "counting_cpu_relu: given a device tensor");
    return ai3_relu("direct", input, output);
}

typedef struct {
    const char *algorithm;
    const ai3_tensor *in, *out;
} unary_call;

static ai3_status call_relu(const void *ctx) {
    const unary_call *c = ctx;
    return ai3_relu(c->algorithm, c->in, (ai3_tensor *)c->out);
}

static ai3_status call_sigmoid(const void *ctx) {
    const unary_call *c = ctx;
    return ai3_sigmoid(c->algorithm, c->in, (ai3_tensor *)c->out);
}

static ai3_status call_softmax(const void *ctx) {
    const unary_call *c = ctx;
    return ai3_softmax(c->algorithm, c->in, 1, (ai3_tensor *)c->out);
}

static ai3_status call_flatten(const void *ctx) {
    const unary_call *c = ctx;
    return ai3_flatten(c->algorithm, c->in, 0, -1, (ai3_tensor *)c->out);
}

static ai3_status call_permute(const void *ctx) {
    const unary_call *c = ctx;
    return ai3_permute(c->algorithm, c->in, (const int[]){1, 0}, (ai3_tensor *)c->out);
}

static ai3_status call_mean(const void *ctx) {
    const unary_call *c = ctx;
    return ai3_mean(c->algorithm, c->in, (const int[]){1}, 1, 1, (ai3_tensor *)c->out);
}

static ai3_status call_add(const void *ctx) {
    const unary_call *c = ctx;
    return ai3_add(c->algorithm, c->in, c->in, (ai3_tensor *)c->out);
}

static ai3_status call_cat(const void *ctx) {
    const unary_call *c = ctx;
    const ai3_tensor *parts[2] = {c->in, c->in};
    return ai3_cat(c->algorithm, parts, 1, 0, (ai3_tensor *)c->out);
}

static ai3_status call_relu_plan(const void *ctx) {
    const unary_call *c = ctx;
    ai3_plan *plan = NULL;
    ai3_status s = ai3_plan_create(AI3_OP_RELU, c->algorithm, 0, NULL, NULL, c->in, &plan);
    if (s != AI3_OK) return s;
    const ai3_tensor *in[1] = {c->in};
    s = ai3_plan_run(plan, 1, in, (ai3_tensor *)c->out, NULL, 0);
    ai3_plan_destroy(plan);
    return s;
}

AI3_TEST(registry_cuda_tensors_need_cuda_algorithms) {
    AI3_EXPECT(untouchable(), "no PROT_NONE page");
    int64_t shape[2] = {4, 6};
    ai3_tensor gin = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 2, shape);
    ai3_tensor gout = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 2, shape);
    ai3_tensor cin = test_random(AI3_FLOAT32, 2, shape);
    ai3_tensor cout = test_output(AI3_FLOAT32, 2, shape);

    /* a built-in CPU algorithm, CUDA tensors: unsupported, naming the devices */
    unary_call c = {"direct", &gin, &gout};
    EXPECT_ISOLATED(call_relu, &c, AI3_ERROR_UNSUPPORTED, "cpu");
    EXPECT_ISOLATED(call_relu, &c, AI3_ERROR_UNSUPPORTED, "cuda");
    isolated_result r = isolated(call_relu, &c);
    /* (where the CUDA backend loads, a hint to use plans follows) */
    static const char expected[] = "relu: algorithm 'direct' runs on cpu only, but the tensors "
                                   "are on cuda";
    AI3_EXPECT(r.finished && strncmp(r.message, expected, sizeof expected - 1) == 0,
               "message '%s'", r.message);
    c.algorithm = "default";
    EXPECT_ISOLATED(call_relu, &c, AI3_ERROR_UNSUPPORTED, "cpu");
    EXPECT_ISOLATED(call_sigmoid, &c, AI3_ERROR_UNSUPPORTED, "cpu");
    EXPECT_ISOLATED(call_softmax, &c, AI3_ERROR_UNSUPPORTED, "cpu");
    ai3_tensor gmean = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 2, (int64_t[]){4, 1});
    unary_call mean_call = {"default", &gin, &gmean};
    EXPECT_ISOLATED(call_mean, &mean_call, AI3_ERROR_UNSUPPORTED, "cpu");
    EXPECT_ISOLATED(call_add, &c, AI3_ERROR_UNSUPPORTED, "cpu");
    /* a plan on CUDA tensors goes to the CUDA backend (none loads here) */
    if (ai3_cuda_available() != AI3_OK)
        EXPECT_ISOLATED(call_relu_plan, &c, AI3_ERROR_UNSUPPORTED, "CUDA backend");
    ai3_tensor gflat = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 1, (int64_t[]){24});
    unary_call flatten_call = {"default", &gin, &gflat};
    EXPECT_ISOLATED(call_flatten, &flatten_call, AI3_ERROR_UNSUPPORTED, "cpu");
    ai3_tensor gt = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 2, (int64_t[]){6, 4});
    unary_call permute_call = {"direct", &gin, &gt};
    EXPECT_ISOLATED(call_permute, &permute_call, AI3_ERROR_UNSUPPORTED, "cpu");
    unary_call cat_call = {"direct", &gin, &gout};
    EXPECT_ISOLATED(call_cat, &cat_call, AI3_ERROR_UNSUPPORTED, "cpu");
    /* an unknown name: on a device without algorithms unsupported; where
     * the CUDA backend loads (and lists its own), unknown */
    int backend = ai3_cuda_available() == AI3_OK;
    c.algorithm = "nothing";
    EXPECT_ISOLATED(call_relu, &c, backend ? AI3_ERROR_UNKNOWN_ALGORITHM : AI3_ERROR_UNSUPPORTED,
                    "cuda");

    /* mixed devices are invalid, whichever side is on CUDA */
    unary_call to_cuda = {"direct", &cin, &gout}, from_cuda = {"direct", &gin, &cout};
    EXPECT_ISOLATED(call_relu, &to_cuda, AI3_ERROR_INVALID_ARGUMENT, "cuda");
    EXPECT_ISOLATED(call_relu, &from_cuda, AI3_ERROR_INVALID_ARGUMENT, "cuda");
    EXPECT_ISOLATED(call_relu_plan, &to_cuda, AI3_ERROR_INVALID_ARGUMENT, "cuda");
    unary_call add_mixed = {"direct", &cin, &gout};
    EXPECT_ISOLATED(call_add, &add_mixed, AI3_ERROR_INVALID_ARGUMENT, "cuda");
    ai3_tensor bad_device = cin;
    bad_device.device = (ai3_device)7;
    AI3_EXPECT_STATUS(ai3_relu("direct", &bad_device, &cout), AI3_ERROR_INVALID_ARGUMENT);

    /* an algorithm registered for CUDA only */
    int cpu_before = 0, cuda_before = 0, n;
    ai3_list_algorithms(AI3_OP_RELU, AI3_DEVICE_CPU, NULL, 0, &cpu_before);
    ai3_list_algorithms(AI3_OP_RELU, AI3_DEVICE_CUDA, NULL, 0, &cuda_before);
    AI3_EXPECT(cpu_before >= 1 && is_listed(AI3_OP_RELU, AI3_DEVICE_CPU, "direct"),
               "cpu relu algorithms: %d", cpu_before);
    AI3_EXPECT(is_listed(AI3_OP_RELU, AI3_DEVICE_CUDA, "direct") == backend,
               "direct listed for cuda: %d, backend %d", !backend, backend);
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "gpu", AI3_DEVICE_CUDA,
                                      (ai3_algorithm_fn)fake_cuda_relu) == AI3_OK,
               "register: %s", ai3_last_error());
    AI3_EXPECT(ai3_list_algorithms(AI3_OP_RELU, AI3_DEVICE_CUDA, NULL, 0, &n) == AI3_OK &&
                   n == cuda_before + 1, "cuda count %d, was %d", n, cuda_before);
    AI3_EXPECT(ai3_list_algorithms(AI3_OP_RELU, AI3_DEVICE_CPU, NULL, 0, &n) == AI3_OK &&
                   n == cpu_before, "cpu count %d, was %d", n, cpu_before);
    AI3_EXPECT(is_listed(AI3_OP_RELU, AI3_DEVICE_CUDA, "gpu"), "gpu not listed for cuda");
    AI3_EXPECT(!is_listed(AI3_OP_RELU, AI3_DEVICE_CPU, "gpu"), "gpu listed for cpu");
    AI3_EXPECT_STATUS(ai3_list_algorithms(AI3_OP_RELU, (ai3_device)7, NULL, 0, &n),
                  AI3_ERROR_INVALID_ARGUMENT);

    AI3_EXPECT_STATUS(ai3_relu("gpu", &cin, &cout), AI3_ERROR_UNSUPPORTED);
    AI3_EXPECT(strstr(ai3_last_error(), "cuda") && strstr(ai3_last_error(), "gpu"),
               "message '%s'", ai3_last_error());
    cuda_calls = 0;
    AI3_EXPECT(ai3_relu("gpu", &gin, &gout) == AI3_OK && cuda_calls == 1,
               "cuda algorithm: %d calls, %s", cuda_calls, ai3_last_error());
    /* through a plan, whose creation accepts a name of any device */
    ai3_plan *plan = NULL;
    AI3_EXPECT(ai3_plan_create(AI3_OP_RELU, "gpu", 0, NULL, NULL, NULL, &plan) == AI3_OK,
               "gpu plan: %s", ai3_last_error());
    const ai3_tensor *hin[1] = {&cin}, *din[1] = {&gin};
    AI3_EXPECT_STATUS(ai3_plan_run(plan, 1, hin, &cout, NULL, 0), AI3_ERROR_UNSUPPORTED);
    AI3_EXPECT(strstr(ai3_last_error(), "cuda"), "message '%s'", ai3_last_error());
    AI3_EXPECT(ai3_plan_run(plan, 1, din, &gout, NULL, 0) == AI3_OK && cuda_calls == 2,
               "cuda plan: %d calls, %s", cuda_calls, ai3_last_error());
    ai3_plan_destroy(plan);

    /* one name on both devices: each device's tensors go to its function */
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "both", AI3_DEVICE_CUDA,
                                      (ai3_algorithm_fn)fake_cuda_relu) == AI3_OK &&
                   ai3_register_algorithm(AI3_OP_RELU, "both", AI3_DEVICE_CPU,
                                          (ai3_algorithm_fn)counting_cpu_relu) == AI3_OK,
               "register both: %s", ai3_last_error());
    cuda_calls = cpu_calls = 0;
    AI3_EXPECT(ai3_relu("both", &cin, &cout) == AI3_OK && cpu_calls == 1 && cuda_calls == 0,
               "both on cpu: %d %d %s", cpu_calls, cuda_calls, ai3_last_error());
    AI3_EXPECT(ai3_relu("both", &gin, &gout) == AI3_OK && cpu_calls == 1 && cuda_calls == 1,
               "both on cuda: %d %d %s", cpu_calls, cuda_calls, ai3_last_error());
    for (int64_t i = 0; i < 24; i++)
        AI3_EXPECT(test_get(&cout, i) == fmax(test_get(&cin, i), 0), "both: element %lld",
                   (long long)i);
    /* a built-in name may be registered for another device */
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_RELU, "direct", AI3_DEVICE_CUDA,
                                      (ai3_algorithm_fn)fake_cuda_relu) == AI3_OK,
               "direct for cuda: %s", ai3_last_error());
    cuda_calls = 0;
    AI3_EXPECT(ai3_relu("direct", &gin, &gout) == AI3_OK && cuda_calls == 1,
               "direct on cuda: %s", ai3_last_error());
    AI3_EXPECT(ai3_relu("direct", &cin, &cout) == AI3_OK && cuda_calls == 1,
               "direct on cpu: %s", ai3_last_error());

    /* unregistering removes every device's registration */
    AI3_EXPECT(ai3_unregister_algorithm(AI3_OP_RELU, "both") == AI3_OK, "unregister both");
    AI3_EXPECT(!is_listed(AI3_OP_RELU, AI3_DEVICE_CPU, "both") &&
                   !is_listed(AI3_OP_RELU, AI3_DEVICE_CUDA, "both"), "both still listed");
    AI3_EXPECT_STATUS(ai3_relu("both", &cin, &cout), AI3_ERROR_UNKNOWN_ALGORITHM);
    AI3_EXPECT(ai3_unregister_algorithm(AI3_OP_RELU, "gpu") == AI3_OK, "unregister gpu");
    AI3_EXPECT(ai3_unregister_algorithm(AI3_OP_RELU, "direct") == AI3_OK, "unregister direct");
    AI3_EXPECT(is_listed(AI3_OP_RELU, AI3_DEVICE_CPU, "direct"), "built-in direct removed");
    AI3_EXPECT(ai3_list_algorithms(AI3_OP_RELU, AI3_DEVICE_CUDA, NULL, 0, &n) == AI3_OK &&
                   n == cuda_before, "cuda count %d after unregistering", n);
    AI3_EXPECT_STATUS(ai3_relu("gpu", &cin, &cout), AI3_ERROR_UNKNOWN_ALGORITHM);
    free(cin.data), free(cout.data);
}

/* ---- plans and graphs with weights on CUDA ------------------------------- */

typedef struct {
    ai3_op op;
    const char *algorithm;
    int n_weights;
    const ai3_tensor *const *weights;
    const ai3_op_params *params;
} plan_call;

static ai3_status call_plan_create(const void *ctx) {
    const plan_call *c = ctx;
    ai3_plan *plan = (ai3_plan *)&plan; /* must be cleared */
    ai3_status s = ai3_plan_create(c->op, c->algorithm, c->n_weights, c->weights, c->params,
                                   NULL, &plan);
    if (s == AI3_OK) ai3_plan_destroy(plan);
    else if (plan) return ai3_set_error(AI3_ERROR_INTERNAL, "plan not cleared on failure");
    return s;
}

static ai3_status call_conv2d_plan_create(const void *ctx) {
    const plan_call *c = ctx;
    ai3_conv2d_plan *plan = NULL;
    ai3_status s = ai3_conv2d_plan_create(c->algorithm, c->weights[0], c->weights[1],
                                          &c->params->conv2d, NULL, &plan);
    if (s == AI3_OK) ai3_conv2d_plan_destroy(plan);
    return s;
}

static ai3_status call_graph_op(const void *ctx) {
    const plan_call *c = ctx;
    ai3_graph *g = NULL;
    int x, y;
    ai3_status s = ai3_graph_create(AI3_FLOAT32, &g);
    if (s == AI3_OK) s = ai3_graph_add_input(g, &x);
    if (s == AI3_OK)
        s = ai3_graph_op(g, c->op, c->algorithm, 1, &x, c->n_weights, c->weights, c->params,
                         NULL, &y);
    ai3_graph_destroy(g);
    return s;
}

static ai3_status call_graph_constant(const void *ctx) {
    const plan_call *c = ctx;
    ai3_graph *g = NULL;
    int v;
    ai3_status s = ai3_graph_create(AI3_FLOAT32, &g);
    if (s == AI3_OK) s = ai3_graph_add_constant(g, c->weights[0], &v);
    ai3_graph_destroy(g);
    return s;
}

static ai3_status call_graph_run(const void *ctx) {
    const plan_call *c = ctx;
    ai3_graph *g = NULL;
    int x, y;
    ai3_status s = ai3_graph_create(AI3_FLOAT32, &g);
    if (s == AI3_OK) s = ai3_graph_add_input(g, &x);
    if (s == AI3_OK) s = ai3_graph_op(g, AI3_OP_RELU, "direct", 1, &x, 0, NULL, NULL, NULL, &y);
    if (s == AI3_OK) s = ai3_graph_set_outputs(g, 1, &y);
    ai3_tensor out = *c->weights[0];
    out.device = AI3_DEVICE_CPU;
    out.data = calloc((size_t)ai3_tensor_numel(&out) + 1, sizeof(float));
    if (s == AI3_OK) s = ai3_graph_run(g, 1, c->weights[0], 1, &out);
    free(out.data);
    ai3_graph_destroy(g);
    return s;
}

static ai3_status gpu_conv2d(const ai3_tensor *input, const ai3_tensor *weight,
                             const ai3_tensor *bias, const ai3_conv2d_params *params,
                             ai3_tensor *output) {
    return AI3_OK;
}

AI3_TEST(plans_with_cuda_weights_fail_cleanly) {
    ai3_tensor gw = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 4, (int64_t[]){4, 3, 3, 3});
    ai3_tensor gb = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 1, (int64_t[]){4});
    ai3_tensor cw = test_random(AI3_FLOAT32, 4, gw.shape);
    ai3_tensor cb = test_random(AI3_FLOAT32, 1, gb.shape);
    ai3_op_params p = {.conv2d = ai3_conv2d_params_default()};
    const ai3_tensor *gpu[2] = {&gw, &gb}, *gpu_w_cpu_b[2] = {&gw, &cb}, *cpu_w_gpu_b[2] = {&cw, &gb};

    /* conv2d plans (host copies) refuse device weights; generic plans hand
     * them to the CUDA backend, which cannot load here */
    const char *algos[] = {"default", "guess", "direct", "gemm", "winograd"};
    for (int a = 0; a < 5; a++) {
        plan_call c = {AI3_OP_CONV2D, algos[a], 2, gpu, &p};
        EXPECT_ISOLATED(call_conv2d_plan_create, &c, AI3_ERROR_UNSUPPORTED, "cpu");
        if (ai3_cuda_available() != AI3_OK) {
            EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_UNSUPPORTED, "CUDA backend");
            c.n_weights = 1;
            EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_UNSUPPORTED, "CUDA backend");
        }
    }
    plan_call c = {AI3_OP_CONV2D, "direct", 2, gpu_w_cpu_b, &p};
    EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_INVALID_ARGUMENT, "device");
    c.weights = cpu_w_gpu_b;
    EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_INVALID_ARGUMENT, "device");
    c.weights = gpu;
    EXPECT_ISOLATED(call_graph_op, &c, AI3_ERROR_UNSUPPORTED, "CPU");

    /* a conv2d algorithm of CUDA: plans keep weights in host memory */
    AI3_EXPECT(ai3_register_algorithm(AI3_OP_CONV2D, "gpu conv", AI3_DEVICE_CUDA,
                                      (ai3_algorithm_fn)gpu_conv2d) == AI3_OK,
               "register: %s", ai3_last_error());
    c.algorithm = "gpu conv";
    int no_backend = ai3_cuda_available() != AI3_OK;
    if (no_backend) EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_UNSUPPORTED, "CUDA backend");
    c.weights = (const ai3_tensor *[]){&cw, &cb};
    EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_UNSUPPORTED, "cuda");
    AI3_EXPECT(ai3_unregister_algorithm(AI3_OP_CONV2D, "gpu conv") == AI3_OK, "unregister");

    /* the weights of other operations */
    ai3_tensor gl = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 2, (int64_t[]){5, 6});
    c = (plan_call){AI3_OP_LINEAR, "default", 1, (const ai3_tensor *[]){&gl}, NULL};
    if (no_backend) EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_UNSUPPORTED, "CUDA backend");
    int64_t three = 3;
    ai3_tensor gs = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 1, &three);
    ai3_tensor cs = test_random(AI3_FLOAT32, 1, &three);
    ai3_op_params bp = {.batchnorm2d = {.eps = 1e-5}};
    c = (plan_call){AI3_OP_BATCHNORM2D, "direct", 2, (const ai3_tensor *[]){&cs, &gs}, &bp};
    EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_INVALID_ARGUMENT, "one device");
    ai3_op_params lp = {.layernorm = {.normalized_ndim = 1, .eps = 1e-5}};
    c = (plan_call){AI3_OP_LAYERNORM, "default", 1, (const ai3_tensor *[]){&gs}, &lp};
    if (no_backend) EXPECT_ISOLATED(call_plan_create, &c, AI3_ERROR_UNSUPPORTED, "CUDA backend");

    /* graphs: CUDA inputs and constants are refused, not read */
    ai3_tensor gx = device_tensor(AI3_DEVICE_CUDA, AI3_FLOAT32, 2, (int64_t[]){2, 3});
    c = (plan_call){AI3_OP_RELU, "direct", 1, (const ai3_tensor *[]){&gx}, NULL};
    EXPECT_ISOLATED(call_graph_run, &c, AI3_ERROR_UNSUPPORTED, "cuda");
    isolated_result r = isolated(call_graph_constant, &c);
    AI3_EXPECT(r.finished && r.status != AI3_OK,
               "ai3_graph_add_constant with a CUDA tensor: %s (signal %d, status %s '%s')",
               r.finished ? "accepted" : "crashed", r.signal, ai3_status_string(r.status),
               r.message);
    free(cw.data), free(cb.data), free(cs.data);
}

/* ---- plugins and versions ------------------------------------------------ */

AI3_TEST(plugins_check_the_abi_version) {
    AI3_EXPECT(ai3_version() == AI3_VERSION, "library version %d, header %d", ai3_version(),
               AI3_VERSION);
    AI3_EXPECT(ai3_abi_version() == AI3_ABI_VERSION, "library ABI %d, header %d",
               ai3_abi_version(), AI3_ABI_VERSION);
    AI3_EXPECT(AI3_VERSION == AI3_VERSION_MAJOR * 10000 + AI3_VERSION_MINOR * 100 +
                                  AI3_VERSION_PATCH, "AI3_VERSION");
    ai3_set_error(AI3_OK, "%s", "");
    AI3_EXPECT(ai3_plugin_check_abi(AI3_ABI_VERSION) == AI3_OK, "own ABI refused");
    AI3_EXPECT_STATUS(ai3_plugin_check_abi(AI3_ABI_VERSION + 1), AI3_ERROR_UNSUPPORTED);
    char want[64];
    snprintf(want, sizeof want, "ABI %d", AI3_ABI_VERSION + 1);
    AI3_EXPECT(strstr(ai3_last_error(), want), "message '%s'", ai3_last_error());
    AI3_EXPECT_STATUS(ai3_plugin_check_abi(AI3_ABI_VERSION - 1), AI3_ERROR_UNSUPPORTED);
    AI3_EXPECT_STATUS(ai3_plugin_check_abi(0), AI3_ERROR_UNSUPPORTED);
#if defined(__linux__) && defined(__GLIBC__)
    /* a shared library that is no plugin */
    AI3_EXPECT_STATUS(ai3_load_algorithms("libm.so.6"), AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT(strstr(ai3_last_error(), AI3_INIT_SYMBOL), "message '%s'", ai3_last_error());
#endif
}

/* ---- graphs: the algorithm of a node ------------------------------------ */

AI3_TEST(graph_algorithm_reports_resolved_names) {
    ai3_graph *g = NULL;
    int x, k, y, r, t, pooled, pieces[2];
    AI3_EXPECT(ai3_graph_create(AI3_FLOAT32, &g) == AI3_OK, "create");
    ai3_graph_add_input(g, &x);
    ai3_tensor w = test_random(AI3_FLOAT32, 4, (int64_t[]){8, 3, 3, 3});
    ai3_tensor b = test_random(AI3_FLOAT32, 1, (int64_t[]){8});
    ai3_tensor konst = test_random(AI3_FLOAT32, 1, (int64_t[]){1});
    AI3_EXPECT(ai3_graph_add_constant(g, &konst, &k) == AI3_OK, "constant");
    ai3_conv2d_params cp = ai3_conv2d_params_default();
    cp.pad_top = cp.pad_bottom = cp.pad_left = cp.pad_right = 1;
    ai3_op_params p = {.conv2d = cp};
    const ai3_tensor *ws[2] = {&w, &b};
    ai3_tensor hint = {.dtype = AI3_FLOAT32, .ndim = 4, .shape = {2, 3, 12, 12}};
    AI3_EXPECT(ai3_graph_op(g, AI3_OP_CONV2D, "guess", 1, &x, 2, ws, &p, &hint, &y) == AI3_OK,
               "conv2d: %s", ai3_last_error());
    AI3_EXPECT(ai3_graph_op(g, AI3_OP_RELU, "direct", 1, &y, 0, NULL, NULL, NULL, &r) == AI3_OK,
               "relu: %s", ai3_last_error());
    ai3_op_params ap = {.adaptiveavgpool2d = {.out_h = 0, .out_w = 3}};
    AI3_EXPECT(ai3_graph_op(g, AI3_OP_ADAPTIVEAVGPOOL2D, "default", 1, &r, 0, NULL, &ap, NULL,
                            &pooled) == AI3_OK, "adaptiveavgpool2d: %s", ai3_last_error());
    AI3_EXPECT(ai3_graph_transpose(g, "direct", pooled, -1, -2, &t) == AI3_OK, "transpose");
    AI3_EXPECT(ai3_graph_chunk(g, t, 2, 0, pieces) == AI3_OK, "chunk");
    /* wrong input counts fail when the node is added */
    int v;
    AI3_EXPECT_STATUS(ai3_graph_op(g, AI3_OP_ADD, "direct", 1, &x, 0, NULL, NULL, NULL, &v),
                  AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_graph_op(g, AI3_OP_RELU, "direct", 2, (int[]){x, y}, 0, NULL, NULL, NULL,
                               &v), AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_graph_op(g, AI3_OP_COUNT, "direct", 1, &x, 0, NULL, NULL, NULL, &v),
                  AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_graph_op(NULL, AI3_OP_RELU, "direct", 1, &x, 0, NULL, NULL, NULL, &v),
                  AI3_ERROR_INVALID_ARGUMENT);
    AI3_EXPECT_STATUS(ai3_graph_op(g, AI3_OP_RELU, "direct", 1, &x, 0, NULL, NULL, NULL, NULL),
                  AI3_ERROR_INVALID_ARGUMENT);

    const char *conv = ai3_graph_algorithm(g, y);
    AI3_EXPECT(conv && strcmp(conv, "guess") != 0 && is_listed(AI3_OP_CONV2D, AI3_DEVICE_CPU, conv),
               "conv2d node runs '%s'", conv ? conv : "(null)");
    const char *relu = ai3_graph_algorithm(g, r);
    AI3_EXPECT(relu && strcmp(relu, "direct") == 0, "relu node runs '%s'", relu ? relu : "(null)");
    int t2;
    AI3_EXPECT(ai3_graph_transpose(g, "default", r, 0, 1, &t2) == AI3_OK, "transpose");
    const char *tr = ai3_graph_algorithm(g, t2);
    AI3_EXPECT(tr && strcmp(tr, ai3_default_algorithm(AI3_OP_PERMUTE)) == 0,
               "transpose 'default' node reports '%s'", tr ? tr : "(null)");
    AI3_EXPECT(ai3_graph_algorithm(g, pieces[0]) == NULL, "chunk has an algorithm");
    AI3_EXPECT(ai3_graph_algorithm(g, x) == NULL, "input has an algorithm");
    AI3_EXPECT(ai3_graph_algorithm(g, k) == NULL, "constant has an algorithm");
    AI3_EXPECT(ai3_graph_algorithm(g, -1) == NULL, "value -1");
    AI3_EXPECT(ai3_graph_algorithm(g, 1000) == NULL, "value 1000");
    AI3_EXPECT(ai3_graph_algorithm(NULL, y) == NULL, "NULL graph");
    /* the graph's conv2d is the plan's: the same name for the same hint */
    ai3_plan *plan = NULL;
    ai3_plan_create(AI3_OP_CONV2D, "guess", 2, ws, &p, &hint, &plan);
    AI3_EXPECT(plan && conv && strcmp(ai3_plan_algorithm(plan), conv) == 0,
               "graph runs '%s', plan '%s'", conv ? conv : "", plan ? ai3_plan_algorithm(plan) : "");
    ai3_plan_destroy(plan);

    /* and the graph computes what the operations do */
    AI3_EXPECT(ai3_graph_set_outputs(g, 3, (int[]){pooled, pieces[1], r}) == AI3_OK, "outputs");
    ai3_tensor in = test_random(AI3_FLOAT32, 4, hint.shape);
    int nd[3];
    int64_t sh[3][AI3_MAX_DIMS];
    ai3_status s = ai3_graph_output_shapes(g, 1, &in, 3, nd, sh);
    AI3_EXPECT(s == AI3_OK, "output shapes: %s", ai3_last_error());
    if (s == AI3_OK) {
        AI3_EXPECT(nd[0] == 4 && sh[0][0] == 2 && sh[0][1] == 8 && sh[0][2] == 12 && sh[0][3] == 3,
                   "pooled shape");
        ai3_tensor outs[3] = {test_output(AI3_FLOAT32, nd[0], sh[0]),
                              test_output(AI3_FLOAT32, nd[1], sh[1]),
                              test_output(AI3_FLOAT32, nd[2], sh[2])};
        s = ai3_graph_run(g, 1, &in, 3, outs);
        AI3_EXPECT(s == AI3_OK, "run: %s", ai3_last_error());
        ai3_tensor c = test_tensor(AI3_FLOAT32, 4, (int64_t[]){2, 8, 12, 12});
        ai3_tensor want = test_tensor(AI3_FLOAT32, 4, sh[0]);
        ai3_ref_conv2d_f32(&in, &w, &b, &cp, &c);
        ai3_ref_relu_f32(&c, &c);
        ai3_ref_adaptiveavgpool2d_f32(&c, &want);
        test_compare(&outs[0], &want, 1e-5, 1e-4, "graph conv2d-relu-pool");
        ai3_tensor rc = test_tensor(AI3_FLOAT32, 4, (int64_t[]){2, 8, 12, 12});
        ai3_ref_relu_f32(&c, &rc);
        test_compare(&outs[2], &rc, 1e-5, 1e-4, "graph relu");
        for (int i = 0; i < 3; i++) free(outs[i].data);
        free(c.data), free(want.data), free(rc.data);
    }
    free(in.data), free(w.data), free(b.data), free(konst.data);
    ai3_graph_destroy(g);
}
