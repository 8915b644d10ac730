/*
 * A libFuzzer fuzzer of the public C API (include/ai3.h).
 *
 * Each input is read as a little program: it builds operations from the
 * fuzzed bytes (shapes, parameters, algorithm names, dtypes and devices,
 * valid ones mostly and invalid ones often) and runs them through every way
 * ai3.h offers: the typed functions (ai3_conv2d, ...), the conv2d and linear
 * plans, the plans of every operation in the op table, and graphs (nodes of
 * any operation, reshape, chunk, transpose, constants, outputs), with
 * algorithms registered at run time and a caller's parallel executor too.
 *
 * The contract checked: every call returns a status (AI3_OK or one of the
 * documented errors, with a message; never AI3_ERROR_INTERNAL) or succeeds,
 * nothing crashes, hangs, leaks or touches memory it was not given (ASan,
 * UBSan), and inputs and weights are never written. Every buffer the fuzzer
 * hands over is allocated with exactly the size its shape says, so a read
 * past it is an ASan report.
 *
 * Tensors that are run have at most MAX_NUMEL elements, so an execution
 * takes milliseconds; larger (or invalid) shapes are still passed to the
 * shape functions and plan creation, which read no data.
 */
#include "ai3.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMEL 1024
#define MAX_INPUTS 5
#define MAX_WEIGHTS 4
#define MAX_VALUES 64

/* ------------------------------------------------------------------------ */
/* Reading the input                                                         */
/* ------------------------------------------------------------------------ */

typedef struct fuzz {
    const uint8_t *p;
    size_t n;
} fuzz;

/* The next byte; 0 once the input is used up (so short inputs take the
 * first choice everywhere). */
static unsigned byte(fuzz *f) {
    if (!f->n) return 0;
    f->n--;
    return *f->p++;
}

static unsigned u16(fuzz *f) { return byte(f) | byte(f) << 8; }

/* An integer in [lo, hi]. */
static int64_t pick(fuzz *f, int64_t lo, int64_t hi) {
    return lo + (int64_t)(u16(f) % (uint64_t)(hi - lo + 1));
}

static int chance(fuzz *f, unsigned in_256) { return byte(f) < in_256; }

/* Values that break arithmetic: negative, zero, huge, overflowing. */
static const int64_t extremes[] = {
    -1, -2, -7, 0, 1 << 20, (int64_t)1 << 31, (int64_t)1 << 32, 3037000500LL /* ~sqrt(2^63) */,
    (int64_t)1 << 40, (int64_t)1 << 62, INT64_MAX, INT64_MIN, INT64_MAX / 2, -((int64_t)1 << 40),
};
#define N_EXTREMES (sizeof extremes / sizeof extremes[0])

/* Mostly an integer in [lo, hi]; 1 in 32 an extreme value. */
static int64_t param(fuzz *f, int64_t lo, int64_t hi) {
    if (chance(f, 8)) return extremes[byte(f) % N_EXTREMES];
    return pick(f, lo, hi);
}

static double real_param(fuzz *f, double usual) {
    static const double odd[] = {0.0, -1.0, 1e-30, 1e30, -1e30, 6.0, -6.0, 0.5};
    unsigned b = byte(f);
    if (b < 200) return usual;
    if (b < 240) return odd[b % 8];
    return b < 248 ? NAN : (b & 1 ? INFINITY : -INFINITY);
}

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

/* A tensor's description; turned into an ai3_tensor by materialize. */
typedef struct desc {
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    int dtype;  /* ai3_dtype, or an invalid code */
    int device; /* ai3_device, or an invalid code */
    int device_index;
    int null_data;
} desc;

static int cuda_usable; /* the CUDA backend loads: never hand it host memory */

static desc make_desc(int ndim, const int64_t *shape) {
    desc d = {.ndim = ndim, .dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU};
    for (int i = 0; i < ndim && i < AI3_MAX_DIMS; i++) d.shape[i] = shape[i];
    return d;
}

/* The element count of a valid, small-enough description, else -1. */
static int64_t small_numel(const desc *d) {
    if (d->ndim < 0 || d->ndim > AI3_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int i = 0; i < d->ndim; i++)
        if (d->shape[i] < 0) return -1;
    for (int i = 0; i < d->ndim; i++)
        if (d->shape[i] == 0) return 0;
    for (int i = 0; i < d->ndim; i++) {
        if (d->shape[i] > MAX_NUMEL || n * d->shape[i] > MAX_NUMEL) return -1;
        n *= d->shape[i];
    }
    return n;
}

static size_t dtype_bytes(int dtype) {
    return dtype == AI3_FLOAT64 ? 8 : dtype == AI3_FLOAT32 ? 4 : 2;
}

/* A tensor that owns its buffer (free with release). */
typedef struct owned {
    ai3_tensor t;
    size_t bytes;
    int has_data; /* a buffer of exactly `bytes` (else data is a 0-byte block or NULL) */
} owned;

static double fill_value(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    unsigned r = (unsigned)(*state >> 33);
    if (r % 64 == 0) {
        static const double odd[] = {NAN, INFINITY, -INFINITY, 1e30, -1e30, 1e-40, 0.0, -0.0,
                                     100.0, -100.0, 1e300, -1e300};
        return odd[(r >> 8) % 12];
    }
    return ((double)(r % 20001) - 10000.0) / 2500.0; /* [-4, 4] */
}

static owned materialize(const desc *d, uint64_t seed) {
    owned o;
    memset(&o, 0, sizeof o);
    o.t.dtype = (ai3_dtype)d->dtype;
    o.t.device = (ai3_device)d->device;
    o.t.device_index = d->device_index;
    o.t.ndim = d->ndim;
    for (int i = 0; i < AI3_MAX_DIMS; i++) o.t.shape[i] = d->shape[i];
    int64_t n = small_numel(d);
    if (d->null_data) return o;
    if (n < 0) {
        /* too large or invalid: only shape functions may see it; any read of
         * this 0-byte block is a report */
        o.t.data = malloc(0);
        return o;
    }
    o.bytes = (size_t)n * dtype_bytes(d->dtype);
    o.t.data = malloc(o.bytes);
    o.has_data = 1;
    uint64_t state = seed;
    for (int64_t i = 0; i < n; i++) {
        double v = fill_value(&state);
        if (d->dtype == AI3_FLOAT64) ((double *)o.t.data)[i] = v;
        else if (d->dtype == AI3_FLOAT32) ((float *)o.t.data)[i] = (float)v;
        else ((uint16_t *)o.t.data)[i] = (uint16_t)(state >> 20);
    }
    return o;
}

static void release(owned *o) {
    free(o->t.data);
    o->t.data = NULL;
}

/* Whether the library may be handed this tensor to compute on: a CPU
 * buffer of its full size, or a description it must refuse without
 * reading the data (not one that is valid but too large to allocate). */
static int runnable(const owned *o) {
    const ai3_tensor *t = &o->t;
    if (t->device == AI3_DEVICE_CUDA && cuda_usable) return 0; /* host memory */
    if (o->has_data || !t->data) return 1;
    if (t->ndim < 0 || t->ndim > AI3_MAX_DIMS || (unsigned)t->dtype > AI3_BFLOAT16 ||
        (t->device != AI3_DEVICE_CPU && t->device != AI3_DEVICE_CUDA))
        return 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

static void clear_error(void) { ai3_set_error(AI3_OK, "%s", ""); }

static void fail(const char *what, const char *why, ai3_status s) {
    fprintf(stderr, "ai3 fuzz: %s: %s (status %d, message \"%s\")\n", what, why, (int)s,
            ai3_last_error());
    abort();
}

static ai3_status check(ai3_status s, const char *what) {
    if ((unsigned)s > AI3_ERROR_INTERNAL) fail(what, "returned an undocumented status", s);
    if (s == AI3_ERROR_INTERNAL) fail(what, "returned an internal error", s);
    if (s != AI3_OK && ai3_last_error()[0] == '\0') fail(what, "failed without a message", s);
    if (strcmp(ai3_status_string(s), "unknown status") == 0) fail(what, "status has no name", s);
    return s;
}

/* Calls the API function, checking the status it returns. */
#define CALL(expr) (clear_error(), check((expr), #expr))

/* Copies of the inputs' bytes, to see that a run left them unchanged. */
typedef struct snapshot {
    int n;
    const owned *t[MAX_INPUTS + MAX_WEIGHTS];
    void *copy[MAX_INPUTS + MAX_WEIGHTS];
} snapshot;

static void snap(snapshot *s, const owned *o) {
    if (!o->has_data || s->n == MAX_INPUTS + MAX_WEIGHTS) return;
    s->t[s->n] = o;
    s->copy[s->n] = malloc(o->bytes ? o->bytes : 1);
    memcpy(s->copy[s->n], o->t.data, o->bytes);
    s->n++;
}

/* Checks and frees the copies; `except` (may be NULL) was the output. */
static void unchanged(snapshot *s, const void *except, const char *what) {
    for (int i = 0; i < s->n; i++) {
        if (s->t[i]->t.data != except && memcmp(s->copy[i], s->t[i]->t.data, s->t[i]->bytes))
            fail(what, "wrote into an input or weight", AI3_OK);
        free(s->copy[i]);
    }
    s->n = 0;
}

/* ------------------------------------------------------------------------ */
/* Algorithms registered at run time and a caller's executor                 */
/* ------------------------------------------------------------------------ */

/* Every registered algorithm writes zeros over the whole output, as the
 * contract of ai3_<kind>_fn says it receives one of the right size. */
static ai3_status zero_output(ai3_tensor *out) {
    int64_t n = ai3_tensor_numel(out);
    if (out->device != AI3_DEVICE_CPU)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED, "fuzz: registered for the CPU only");
    memset(out->data, 0, (size_t)n * dtype_bytes(out->dtype));
    return AI3_OK;
}

static ai3_status fz_conv2d(const ai3_tensor *i, const ai3_tensor *w, const ai3_tensor *b,
                            const ai3_conv2d_params *p, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_linear(const ai3_tensor *i, const ai3_tensor *w, const ai3_tensor *b,
                            ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_pool2d(const ai3_tensor *i, const ai3_pool2d_params *p, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_unary(const ai3_tensor *i, ai3_tensor *o) { return zero_output(o); }
static ai3_status fz_batchnorm2d(const ai3_tensor *i, const ai3_tensor *m, const ai3_tensor *v,
                                 const ai3_tensor *w, const ai3_tensor *b, double eps,
                                 ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_binary(const ai3_tensor *a, const ai3_tensor *b, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_cat(const ai3_tensor *const *in, int n, int dim, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_hardtanh(const ai3_tensor *i, double lo, double hi, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_gelu(const ai3_tensor *i, int t, ai3_tensor *o) { return zero_output(o); }
static ai3_status fz_mean(const ai3_tensor *i, const int *dims, int n, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_permute(const ai3_tensor *i, const int *perm, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_layernorm(const ai3_tensor *i, int nd, const ai3_tensor *w,
                               const ai3_tensor *b, double eps, ai3_tensor *o) {
    return zero_output(o);
}
static ai3_status fz_softmax(const ai3_tensor *i, int dim, ai3_tensor *o) {
    return zero_output(o);
}

static const struct {
    int n_inputs, n_weights;
    ai3_algorithm_fn registered;
} op_table[AI3_OP_COUNT] = {
#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    {n_inputs, n_weights, (ai3_algorithm_fn)fz_##kind},
#include "ai3_ops.inc"
#undef AI3_OP
};

#define REGISTERED_NAME "fuzz registered"

/* Runs every task on the calling thread, in reverse order (any order is
 * allowed). */
static void serial_for(void *ctx, int64_t n, ai3_parallel_task_fn task, void *task_ctx) {
    (*(int64_t *)ctx)++;
    for (int64_t i = n - 1; i >= 0; i--) task(task_ctx, i);
}
static int64_t executor_calls;

/* ------------------------------------------------------------------------ */
/* Operations from bytes                                                     */
/* ------------------------------------------------------------------------ */

typedef struct op_case {
    ai3_op op;
    int n_inputs;
    desc in[MAX_INPUTS];
    int n_weights;        /* passed */
    int has_w[MAX_WEIGHTS];
    desc w[MAX_WEIGHTS];
    ai3_op_params params;
    int null_params;
    char algorithm[96];
    int null_algorithm;
} op_case;

static desc random_desc(fuzz *f, int min_ndim, int max_ndim, int64_t max_dim) {
    int64_t shape[AI3_MAX_DIMS];
    int ndim = (int)pick(f, min_ndim, max_ndim);
    for (int i = 0; i < ndim; i++) shape[i] = pick(f, 0, max_dim);
    return make_desc(ndim, shape);
}

/* An (N, C, H, W) or (C, H, W) input with C channels, or `given`. */
static desc image(fuzz *f, const desc *given, int64_t c) {
    if (given) return *given;
    if (chance(f, 40)) return make_desc(3, (int64_t[]){c, pick(f, 0, 9), pick(f, 0, 9)});
    return make_desc(4, (int64_t[]){pick(f, 0, 2), c, pick(f, 0, 9), pick(f, 0, 9)});
}

/* The channel count of a 3-d or 4-d input (1 when it has none). */
static int64_t channels(const desc *d) {
    int64_t c = d->ndim == 4 ? d->shape[1] : d->ndim == 3 ? d->shape[0] : 1;
    return c > 0 && c <= 64 ? c : 1;
}

static void gen_conv2d(fuzz *f, op_case *c, const desc *given) {
    int64_t groups = pick(f, 1, 3), cig = pick(f, 1, 3), cog = pick(f, 1, 3);
    if (given) {
        int64_t ch = channels(given);
        groups = chance(f, 64) ? ch : pick(f, 1, 3); /* depthwise often */
        if (ch % groups) groups = 1;
        cig = ch / groups;
    } else if (chance(f, 64)) {
        cig = 1; /* depthwise */
    }
    static const int64_t kernels[] = {1, 2, 3, 3, 3, 4, 5, 1};
    int64_t kh = kernels[byte(f) % 8], kw = chance(f, 200) ? kh : kernels[byte(f) % 8];
    ai3_conv2d_params *p = &c->params.conv2d;
    *p = ai3_conv2d_params_default();
    if (chance(f, 128)) {
        p->stride_h = param(f, 1, 3);
        p->stride_w = chance(f, 200) ? p->stride_h : param(f, 1, 3);
        p->dilation_h = param(f, 1, 2);
        p->dilation_w = chance(f, 200) ? p->dilation_h : param(f, 1, 2);
        p->pad_top = param(f, 0, 3);
        p->pad_bottom = chance(f, 200) ? p->pad_top : param(f, 0, 3);
        p->pad_left = param(f, 0, 3);
        p->pad_right = chance(f, 200) ? p->pad_left : param(f, 0, 3);
        p->padding_mode = (ai3_padding_mode)(chance(f, 8) ? param(f, -1, 9) : pick(f, 0, 3));
    }
    p->groups = chance(f, 8) ? param(f, -1, 4) : groups;
    c->n_inputs = 1;
    c->in[0] = image(f, given, groups * cig);
    c->n_weights = 2;
    c->has_w[0] = 1;
    c->w[0] = make_desc(4, (int64_t[]){groups * cog, cig, kh, kw});
    c->has_w[1] = chance(f, 128);
    c->w[1] = make_desc(1, (int64_t[]){groups * cog});
}

static void gen_linear(fuzz *f, op_case *c, const desc *given) {
    c->n_inputs = 1;
    c->in[0] = given ? *given : random_desc(f, 1, 4, 4);
    if (!given && c->in[0].ndim > 0) c->in[0].shape[c->in[0].ndim - 1] = pick(f, 0, 16);
    int64_t in_f = c->in[0].ndim > 0 ? c->in[0].shape[c->in[0].ndim - 1] : 1;
    int64_t out_f = pick(f, 0, 16);
    c->n_weights = 2;
    c->has_w[0] = 1;
    c->w[0] = make_desc(2, (int64_t[]){out_f, in_f});
    c->has_w[1] = chance(f, 128);
    c->w[1] = make_desc(1, (int64_t[]){out_f});
}

static void gen_pool2d(fuzz *f, op_case *c, const desc *given, int max) {
    int64_t k = pick(f, 1, 4);
    ai3_pool2d_params *p = max ? &c->params.maxpool2d : &c->params.avgpool2d;
    *p = ai3_pool2d_params_default(k, chance(f, 200) ? k : pick(f, 1, 4));
    if (chance(f, 128)) {
        p->stride_h = param(f, 1, 4);
        p->stride_w = param(f, 1, 4);
        p->pad_h = param(f, 0, p->kernel_h / 2);
        p->pad_w = param(f, 0, p->kernel_w / 2);
        if (max || chance(f, 16)) {
            p->dilation_h = param(f, 1, 2);
            p->dilation_w = param(f, 1, 2);
        }
        p->ceil_mode = (int)pick(f, 0, 1);
        p->count_include_pad = (int)pick(f, 0, 1);
        p->divisor_override = chance(f, 64) ? param(f, 0, 5) : 0;
    }
    c->n_inputs = 1;
    c->in[0] = image(f, given, pick(f, 1, 4));
}

/* A shape and one that broadcasts against it. */
static void gen_binary(fuzz *f, op_case *c, const desc *given) {
    c->n_inputs = 2;
    c->in[0] = given ? *given : random_desc(f, 0, 4, 5);
    desc b = c->in[0];
    if (chance(f, 128)) {
        int drop = (int)pick(f, 0, b.ndim);
        b.ndim -= drop;
        for (int i = 0; i < b.ndim && i + drop < AI3_MAX_DIMS; i++) b.shape[i] = b.shape[i + drop];
        for (int i = 0; i < b.ndim; i++)
            if (chance(f, 100)) b.shape[i] = 1;
    }
    if (chance(f, 128)) { /* either side may be the one broadcast */
        c->in[1] = c->in[0];
        c->in[0] = b;
    } else {
        c->in[1] = b;
    }
}

static void gen_cat(fuzz *f, op_case *c, const desc *given) {
    desc base = given ? *given : random_desc(f, 1, 4, 4);
    int nd = base.ndim > 0 ? base.ndim : 1;
    int dim = (int)pick(f, -nd, nd - 1);
    c->params.cat.dim = chance(f, 16) ? (int)param(f, -9, 9) : dim;
    c->n_inputs = (int)pick(f, 1, MAX_INPUTS);
    for (int i = 0; i < c->n_inputs; i++) {
        c->in[i] = base;
        int d = dim < 0 ? dim + nd : dim;
        if (i > 0 && d < base.ndim) c->in[i].shape[d] = pick(f, 0, 4);
    }
}

static void gen_mean(fuzz *f, op_case *c, const desc *given) {
    c->n_inputs = 1;
    c->in[0] = given ? *given : random_desc(f, 0, 4, 5);
    int nd = c->in[0].ndim;
    ai3_mean_params *p = &c->params.mean;
    p->n_dims = (int)(chance(f, 16) ? param(f, -1, 9) : pick(f, 0, nd));
    for (int i = 0; i < AI3_MAX_DIMS; i++)
        p->dims[i] = chance(f, 16) ? (int)param(f, -9, 9) : (int)pick(f, -nd, nd > 0 ? nd - 1 : 0);
    p->keepdim = (int)pick(f, 0, 1);
}

static void gen_permute(fuzz *f, op_case *c, const desc *given) {
    c->n_inputs = 1;
    c->in[0] = given ? *given : random_desc(f, 0, 5, 4);
    int nd = c->in[0].ndim;
    ai3_permute_params *p = &c->params.permute;
    p->ndim = chance(f, 16) ? (int)param(f, -1, 9) : nd;
    for (int i = 0; i < AI3_MAX_DIMS; i++) p->perm[i] = i;
    for (int i = nd - 1; i > 0 && i < AI3_MAX_DIMS; i--) { /* a shuffle */
        int j = (int)pick(f, 0, i), t = p->perm[i];
        p->perm[i] = p->perm[j];
        p->perm[j] = t;
    }
    for (int i = 0; i < nd && i < AI3_MAX_DIMS; i++)
        if (chance(f, 40)) p->perm[i] -= nd; /* negative form */
    if (chance(f, 16)) p->perm[byte(f) % AI3_MAX_DIMS] = (int)param(f, -9, 9);
}

static void gen_layernorm(fuzz *f, op_case *c, const desc *given) {
    c->n_inputs = 1;
    c->in[0] = given ? *given : random_desc(f, 1, 4, 5);
    int nd = c->in[0].ndim;
    int k = (int)(chance(f, 16) ? param(f, -1, 9) : pick(f, 1, nd > 0 ? nd : 1));
    c->params.layernorm.normalized_ndim = k;
    c->params.layernorm.eps = real_param(f, 1e-5);
    c->n_weights = 2;
    for (int i = 0; i < 2; i++) {
        c->has_w[i] = chance(f, 160);
        int wn = k >= 1 && k <= nd ? k : 1;
        c->w[i] = make_desc(wn, c->in[0].shape + (nd - wn >= 0 ? nd - wn : 0));
    }
}

/* A valid-looking case of `op` (its first input `given` when not NULL). */
static void gen_case(fuzz *f, op_case *c, ai3_op op, const desc *given) {
    memset(c, 0, sizeof *c);
    c->op = op;
    c->n_inputs = 1;
    switch (op) {
    case AI3_OP_CONV2D: gen_conv2d(f, c, given); break;
    case AI3_OP_LINEAR: gen_linear(f, c, given); break;
    case AI3_OP_MAXPOOL2D: gen_pool2d(f, c, given, 1); break;
    case AI3_OP_AVGPOOL2D: gen_pool2d(f, c, given, 0); break;
    case AI3_OP_ADAPTIVEAVGPOOL2D:
        c->in[0] = image(f, given, pick(f, 1, 4));
        c->params.adaptiveavgpool2d.out_h = param(f, 0, 5);
        c->params.adaptiveavgpool2d.out_w = param(f, 0, 5);
        break;
    case AI3_OP_FLATTEN:
        c->in[0] = given ? *given : random_desc(f, 0, 5, 4);
        c->params.flatten.start_dim = (int)param(f, -5, 5);
        c->params.flatten.end_dim = (int)param(f, -5, 5);
        break;
    case AI3_OP_BATCHNORM2D: {
        c->in[0] = image(f, given, pick(f, 1, 6));
        int64_t ch = c->in[0].ndim == 4 ? c->in[0].shape[1] : c->in[0].shape[0];
        c->params.batchnorm2d.eps = real_param(f, 1e-5);
        c->n_weights = 4;
        for (int i = 0; i < 4; i++) {
            c->has_w[i] = i < 2 || chance(f, 160);
            c->w[i] = make_desc(1, &ch);
        }
        break;
    }
    case AI3_OP_ADD:
    case AI3_OP_MUL: gen_binary(f, c, given); break;
    case AI3_OP_CAT: gen_cat(f, c, given); break;
    case AI3_OP_HARDTANH:
        c->in[0] = given ? *given : random_desc(f, 0, 4, 5);
        c->params.hardtanh.min_val = real_param(f, -1.0);
        c->params.hardtanh.max_val = real_param(f, 1.0);
        break;
    case AI3_OP_GELU:
        c->in[0] = given ? *given : random_desc(f, 0, 4, 5);
        c->params.gelu.tanh_approximation = (int)param(f, 0, 1);
        break;
    case AI3_OP_MEAN: gen_mean(f, c, given); break;
    case AI3_OP_PERMUTE: gen_permute(f, c, given); break;
    case AI3_OP_LAYERNORM: gen_layernorm(f, c, given); break;
    case AI3_OP_SOFTMAX: {
        c->in[0] = given ? *given : random_desc(f, 0, 4, 5);
        int nd = c->in[0].ndim > 0 ? c->in[0].ndim : 1;
        c->params.softmax.dim = chance(f, 16) ? (int)param(f, -9, 9) : (int)pick(f, -nd, nd - 1);
        break;
    }
    default: /* relu, sigmoid, hardsigmoid, hardswish, silu, and an unknown op */
        c->in[0] = given ? *given : random_desc(f, 0, 4, 6);
        break;
    }
}

/* Breaks a description: a size, the rank, the dtype, the device or the
 * data pointer. */
static void perturb_desc(fuzz *f, desc *d) {
    switch (byte(f) % 6) {
    case 0:
    case 1: d->shape[byte(f) % AI3_MAX_DIMS] = chance(f, 128) ? pick(f, 0, 8) : param(f, -1, 1);
        break;
    case 2: d->ndim = (int)pick(f, -1, AI3_MAX_DIMS + 1); break;
    case 3: d->dtype = (int)pick(f, 0, 5) == 5 ? 77 : (int)pick(f, 0, 3); break;
    case 4:
        d->device = (int)pick(f, 0, 2);
        d->device_index = (int)pick(f, -1, 1);
        break;
    case 5: d->null_data = 1; break;
    }
}

/* An algorithm name: the op's own, another op's, "default", a
 * registered one, or bytes. */
static void pick_algorithm(fuzz *f, op_case *c) {
    unsigned b = byte(f);
    const char *names[64];
    int count = 0;
    c->null_algorithm = 0;
    if (b < 150) {
        ai3_op from = b < 130 || (unsigned)c->op >= AI3_OP_COUNT
                          ? c->op : (ai3_op)(byte(f) % AI3_OP_COUNT);
        if ((unsigned)from < AI3_OP_COUNT &&
            CALL(ai3_list_algorithms(from, AI3_DEVICE_CPU, names, 64, &count)) == AI3_OK &&
            count > 0) {
            unsigned listed = (unsigned)(count < 64 ? count : 64);
            snprintf(c->algorithm, sizeof c->algorithm, "%s", names[byte(f) % listed]);
            return;
        }
        snprintf(c->algorithm, sizeof c->algorithm, "default");
    } else if (b < 190) {
        snprintf(c->algorithm, sizeof c->algorithm, "%s", b & 1 ? "default" : "guess");
    } else if (b < 210) {
        snprintf(c->algorithm, sizeof c->algorithm, REGISTERED_NAME);
    } else if (b < 215) {
        c->null_algorithm = 1;
    } else {
        size_t len = byte(f) % (sizeof c->algorithm);
        for (size_t i = 0; i < len; i++) c->algorithm[i] = (char)(byte(f) | 1);
        c->algorithm[len] = '\0';
    }
}

/* AI3_FUZZ_VERBOSE=1 prints each case (to reproduce a finding in C). */
static int verbose;

static void print_desc(const char *what, const desc *d) {
    fprintf(stderr, "  %s: dtype %d device %d:%d ndim %d%s (", what, d->dtype, d->device,
            d->device_index, d->ndim, d->null_data ? " NULL data" : "");
    for (int i = 0; i < d->ndim && i < AI3_MAX_DIMS; i++)
        fprintf(stderr, i ? ", %lld" : "%lld", (long long)d->shape[i]);
    fprintf(stderr, ")\n");
}

static void print_case(const char *how, const op_case *c) {
    if (!verbose) return;
    fprintf(stderr, "%s: op %d (%s), algorithm %s%s%s\n", how, (int)c->op,
            ai3_op_name(c->op) ? ai3_op_name(c->op) : "?", c->null_algorithm ? "NULL" : "'",
            c->null_algorithm ? "" : c->algorithm, c->null_algorithm ? "" : "'");
    for (int i = 0; i < c->n_inputs && i < MAX_INPUTS; i++) print_desc("input", &c->in[i]);
    for (int i = 0; i < MAX_WEIGHTS; i++)
        if (c->has_w[i]) print_desc("weight", &c->w[i]);
    fprintf(stderr, "  params%s:", c->null_params ? " (NULL)" : "");
    const int64_t *words = (const int64_t *)&c->params;
    for (size_t i = 0; i < sizeof c->params / sizeof *words; i++)
        fprintf(stderr, " %lld", (long long)words[i]);
    fprintf(stderr, "\n");
}

/* ------------------------------------------------------------------------ */
/* Running a case                                                            */
/* ------------------------------------------------------------------------ */

typedef struct tensors {
    int n_inputs;
    owned in[MAX_INPUTS];
    const ai3_tensor *in_ptr[MAX_INPUTS];
    owned w[MAX_WEIGHTS];
    const ai3_tensor *w_ptr[MAX_WEIGHTS];
} tensors;

static void make_tensors(const op_case *c, tensors *t, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->n_inputs = c->n_inputs;
    for (int i = 0; i < c->n_inputs; i++) {
        t->in[i] = materialize(&c->in[i], seed + (uint64_t)i);
        t->in_ptr[i] = &t->in[i].t;
    }
    for (int i = 0; i < MAX_WEIGHTS; i++) {
        if (!c->has_w[i]) continue;
        t->w[i] = materialize(&c->w[i], seed + 100 + (uint64_t)i);
        t->w_ptr[i] = &t->w[i].t;
    }
}

static void free_tensors(tensors *t) {
    for (int i = 0; i < t->n_inputs; i++) release(&t->in[i]);
    for (int i = 0; i < MAX_WEIGHTS; i++) release(&t->w[i]);
}

/* Whether the weights may be copied into a plan (which reads them). */
static int weights_runnable(const tensors *t) {
    for (int i = 0; i < MAX_WEIGHTS; i++)
        if (t->w_ptr[i] && !runnable(&t->w[i])) return 0;
    return 1;
}

static int all_runnable(const tensors *t) {
    for (int i = 0; i < t->n_inputs; i++)
        if (!runnable(&t->in[i])) return 0;
    return weights_runnable(t);
}

/* An output for a computed shape: that shape (possibly broken by the
 * fuzzer), the input's dtype, or `alias` (an input to write over) when
 * set. Returns 0 when it is too large to allocate. */
static int make_output(fuzz *f, const ai3_tensor *like, int ndim, const int64_t *shape,
                       owned *out) {
    desc d = make_desc(ndim, shape);
    d.dtype = like->dtype;
    d.device = like->device;
    d.device_index = like->device_index;
    if (chance(f, 16)) perturb_desc(f, &d);
    if (small_numel(&d) < 0) return 0;
    *out = materialize(&d, 7);
    return 1;
}

static const char *alg(const op_case *c) { return c->null_algorithm ? NULL : c->algorithm; }

/* The typed function of the case's op, into `out`. */
static ai3_status typed_run(const op_case *c, tensors *t, ai3_tensor *out) {
    const ai3_tensor *x = t->in_ptr[0], *const *w = t->w_ptr;
    const ai3_op_params *p = &c->params;
    switch (c->op) {
    case AI3_OP_CONV2D:
        return CALL(ai3_conv2d(alg(c), x, w[0], w[1], c->null_params ? NULL : &p->conv2d, out));
    case AI3_OP_LINEAR: return CALL(ai3_linear(alg(c), x, w[0], w[1], out));
    case AI3_OP_MAXPOOL2D:
        return CALL(ai3_maxpool2d(alg(c), x, c->null_params ? NULL : &p->maxpool2d, out));
    case AI3_OP_AVGPOOL2D:
        return CALL(ai3_avgpool2d(alg(c), x, c->null_params ? NULL : &p->avgpool2d, out));
    case AI3_OP_ADAPTIVEAVGPOOL2D:
        return CALL(ai3_adaptiveavgpool2d(alg(c), x, p->adaptiveavgpool2d.out_h,
                                          p->adaptiveavgpool2d.out_w, out));
    case AI3_OP_RELU: return CALL(ai3_relu(alg(c), x, out));
    case AI3_OP_FLATTEN:
        return CALL(ai3_flatten(alg(c), x, p->flatten.start_dim, p->flatten.end_dim, out));
    case AI3_OP_BATCHNORM2D:
        return CALL(ai3_batchnorm2d(alg(c), x, w[0], w[1], w[2], w[3], p->batchnorm2d.eps, out));
    case AI3_OP_ADD: return CALL(ai3_add(alg(c), x, t->in_ptr[1], out));
    case AI3_OP_MUL: return CALL(ai3_mul(alg(c), x, t->in_ptr[1], out));
    case AI3_OP_CAT: return CALL(ai3_cat(alg(c), t->in_ptr, c->n_inputs, p->cat.dim, out));
    case AI3_OP_HARDTANH:
        return CALL(ai3_hardtanh(alg(c), x, p->hardtanh.min_val, p->hardtanh.max_val, out));
    case AI3_OP_SIGMOID: return CALL(ai3_sigmoid(alg(c), x, out));
    case AI3_OP_HARDSIGMOID: return CALL(ai3_hardsigmoid(alg(c), x, out));
    case AI3_OP_HARDSWISH: return CALL(ai3_hardswish(alg(c), x, out));
    case AI3_OP_SILU: return CALL(ai3_silu(alg(c), x, out));
    case AI3_OP_GELU: return CALL(ai3_gelu(alg(c), x, p->gelu.tanh_approximation, out));
    case AI3_OP_MEAN: {
        int n = p->mean.n_dims;
        return CALL(ai3_mean(alg(c), x, n > 0 && n <= AI3_MAX_DIMS ? p->mean.dims : NULL,
                             n > AI3_MAX_DIMS ? AI3_MAX_DIMS : n, p->mean.keepdim, out));
    }
    case AI3_OP_PERMUTE: return CALL(ai3_permute(alg(c), x, p->permute.perm, out));
    case AI3_OP_LAYERNORM:
        return CALL(ai3_layernorm(alg(c), x, p->layernorm.normalized_ndim, w[0], w[1],
                                  p->layernorm.eps, out));
    case AI3_OP_SOFTMAX: return CALL(ai3_softmax(alg(c), x, p->softmax.dim, out));
    default: return AI3_OK;
    }
}

/* The typed output-shape function of the case's op (same shape as the
 * input for the elementwise ones). */
static ai3_status typed_shape(const op_case *c, tensors *t, int *nd, int64_t *shape) {
    const ai3_tensor *x = t->in_ptr[0], *const *w = t->w_ptr;
    const ai3_op_params *p = &c->params;
    switch (c->op) {
    case AI3_OP_CONV2D:
        return CALL(ai3_conv2d_output_shape(x, w[0], c->null_params ? NULL : &p->conv2d, nd,
                                            shape));
    case AI3_OP_LINEAR: return CALL(ai3_linear_output_shape(x, w[0], nd, shape));
    case AI3_OP_MAXPOOL2D:
        return CALL(ai3_maxpool2d_output_shape(x, c->null_params ? NULL : &p->maxpool2d, nd,
                                               shape));
    case AI3_OP_AVGPOOL2D:
        return CALL(ai3_avgpool2d_output_shape(x, c->null_params ? NULL : &p->avgpool2d, nd,
                                               shape));
    case AI3_OP_ADAPTIVEAVGPOOL2D:
        return CALL(ai3_adaptiveavgpool2d_output_shape(x, p->adaptiveavgpool2d.out_h,
                                                       p->adaptiveavgpool2d.out_w, nd, shape));
    case AI3_OP_FLATTEN:
        return CALL(ai3_flatten_output_shape(x, p->flatten.start_dim, p->flatten.end_dim, nd,
                                             shape));
    case AI3_OP_ADD:
    case AI3_OP_MUL: return CALL(ai3_broadcast_output_shape(x, t->in_ptr[1], nd, shape));
    case AI3_OP_CAT:
        return CALL(ai3_cat_output_shape(t->in_ptr, c->n_inputs, p->cat.dim, nd, shape));
    case AI3_OP_MEAN: {
        int n = p->mean.n_dims;
        return CALL(ai3_mean_output_shape(x, n > 0 && n <= AI3_MAX_DIMS ? p->mean.dims : NULL,
                                          n > AI3_MAX_DIMS ? AI3_MAX_DIMS : n, p->mean.keepdim,
                                          nd, shape));
    }
    case AI3_OP_PERMUTE: return CALL(ai3_permute_output_shape(x, p->permute.perm, nd, shape));
    default:
        if (!x || x->ndim < 0 || x->ndim > AI3_MAX_DIMS) return AI3_ERROR_INVALID_ARGUMENT;
        *nd = x->ndim;
        memcpy(shape, x->shape, sizeof x->shape);
        return AI3_OK;
    }
}

/* Whether the op documents that its output may be its (first) input. */
static int may_alias(ai3_op op) {
    switch (op) {
    case AI3_OP_RELU: case AI3_OP_BATCHNORM2D: case AI3_OP_ADD: case AI3_OP_MUL:
    case AI3_OP_HARDTANH: case AI3_OP_SIGMOID: case AI3_OP_HARDSIGMOID: case AI3_OP_HARDSWISH:
    case AI3_OP_SILU: case AI3_OP_GELU: case AI3_OP_LAYERNORM: case AI3_OP_SOFTMAX: return 1;
    default: return 0;
    }
}

/* The input the output may alias: one with the output's shape and dtype. */
static owned *alias_candidate(tensors *t, ai3_op op, int nd, const int64_t *shape) {
    if (!may_alias(op)) return NULL;
    for (int i = 0; i < (op == AI3_OP_ADD || op == AI3_OP_MUL ? 2 : 1); i++) {
        owned *o = &t->in[i];
        if (!o->has_data || o->t.ndim != nd || o->t.device != AI3_DEVICE_CPU) continue;
        if (memcmp(o->t.shape, shape, sizeof(int64_t) * (size_t)nd) == 0) return o;
    }
    return NULL;
}

/* Whether computing the case stays fast: the output is small (checked
 * where it is made), and so is a conv2d's padded input (a padding of 2^20
 * rows is valid, and padded in full, as torch does). */
static int cheap(const op_case *c, const desc *in0) {
    if (c->op != AI3_OP_CONV2D || (in0->ndim != 3 && in0->ndim != 4)) return 1;
    const ai3_conv2d_params *p = &c->params.conv2d;
    const int64_t limit = 1 << 16;
    if (p->pad_top > limit || p->pad_bottom > limit || p->pad_left > limit || p->pad_right > limit)
        return 0;
    for (int i = 0; i < in0->ndim; i++)
        if (in0->shape[i] < 0 || in0->shape[i] > limit) return 0; /* (refused anyway) */
    int64_t hp = in0->shape[in0->ndim - 2] + p->pad_top + p->pad_bottom;
    int64_t wp = in0->shape[in0->ndim - 1] + p->pad_left + p->pad_right;
    int64_t planes = in0->shape[in0->ndim - 3] * (in0->ndim == 4 ? in0->shape[0] : 1);
    return hp <= limit && wp <= limit && hp * wp <= limit && planes * hp * wp <= limit;
}

/* Runs `run` (0: the typed function, 1: the plan) into an output of the
 * computed shape, checking that inputs and weights stay unchanged. */
static void run_into(fuzz *f, const op_case *c, tensors *t, const ai3_plan *plan, int nd,
                     const int64_t *shape) {
    if (!t->in_ptr[0] || !all_runnable(t) || !cheap(c, &c->in[0])) return;
    owned out, *alias = chance(f, 64) ? alias_candidate(t, c->op, nd, shape) : NULL;
    if (!alias && !make_output(f, t->in_ptr[0], nd, shape, &out)) return;
    ai3_tensor *o = alias ? &alias->t : &out.t;
    snapshot s = {0};
    for (int i = 0; i < t->n_inputs; i++) snap(&s, &t->in[i]);
    for (int i = 0; i < MAX_WEIGHTS; i++)
        if (t->w_ptr[i]) snap(&s, &t->w[i]);
    if (!plan) {
        typed_run(c, t, o);
    } else {
        size_t ws = 0;
        void *workspace = NULL;
        if (chance(f, 64) &&
            CALL(ai3_plan_workspace_size(plan, t->n_inputs, t->in_ptr, &ws)) == AI3_OK &&
            ws <= ((size_t)64 << 20)) {
            if (ws && chance(f, 64)) ws /= 2; /* too small: refused, never overrun */
            workspace = aligned_alloc(64, (ws + 63) / 64 * 64);
        }
        if (chance(f, 128))
            CALL(ai3_plan_run(plan, t->n_inputs, t->in_ptr, o, workspace, ws));
        else /* (host plans ignore the stream) */
            CALL(ai3_plan_run_stream(plan, t->n_inputs, t->in_ptr, o, workspace, ws, NULL));
        free(workspace);
    }
    unchanged(&s, alias ? alias->t.data : NULL, "run");
    if (!alias) release(&out);
}

static void run_conv2d_linear_plans(fuzz *f, const op_case *c, tensors *t) {
    const ai3_tensor *const *w = t->w_ptr;
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    if (!weights_runnable(t)) return;
    if (c->op == AI3_OP_CONV2D) {
        ai3_conv2d_plan *plan = NULL;
        const ai3_tensor *hint = chance(f, 128) ? t->in_ptr[0] : NULL;
        if (CALL(ai3_conv2d_plan_create(alg(c), w[0], w[1],
                                        c->null_params ? NULL : &c->params.conv2d, hint,
                                        &plan)) != AI3_OK)
            return;
        if (!ai3_conv2d_plan_algorithm(plan)) fail("conv2d plan", "no algorithm", AI3_OK);
        size_t ws = 0;
        CALL(ai3_conv2d_plan_workspace_size(plan, t->in_ptr[0], &ws));
        if (CALL(ai3_conv2d_output_shape(t->in_ptr[0], w[0], &c->params.conv2d, &nd, shape)) ==
                AI3_OK && all_runnable(t) && cheap(c, &c->in[0])) {
            owned out;
            if (make_output(f, t->in_ptr[0], nd, shape, &out)) {
                snapshot s = {0};
                snap(&s, &t->in[0]);
                CALL(ai3_conv2d_plan_run(plan, t->in_ptr[0], &out.t, NULL, 0));
                unchanged(&s, NULL, "conv2d plan run");
                release(&out);
            }
        }
        ai3_conv2d_plan_destroy(plan);
    } else if (c->op == AI3_OP_LINEAR) {
        ai3_linear_plan *plan = NULL;
        if (CALL(ai3_linear_plan_create(alg(c), w[0], w[1], &plan)) != AI3_OK) return;
        if (CALL(ai3_linear_output_shape(t->in_ptr[0], w[0], &nd, shape)) == AI3_OK &&
            all_runnable(t)) {
            owned out;
            if (make_output(f, t->in_ptr[0], nd, shape, &out)) {
                snapshot s = {0};
                snap(&s, &t->in[0]);
                CALL(ai3_linear_plan_run(plan, t->in_ptr[0], &out.t));
                unchanged(&s, NULL, "linear plan run");
                release(&out);
            }
        }
        ai3_linear_plan_destroy(plan);
    }
}

/* One operation through the typed functions and the plans. */
static void fuzz_op(fuzz *f) {
    unsigned b = byte(f);
    ai3_op op = b < 250 ? (ai3_op)(b % AI3_OP_COUNT) : (ai3_op)(b == 250 ? -1 : AI3_OP_COUNT + b);
    op_case c;
    gen_case(f, &c, op, NULL);
    if (chance(f, 100)) { /* float64 throughout */
        for (int i = 0; i < MAX_INPUTS; i++) c.in[i].dtype = AI3_FLOAT64;
        for (int i = 0; i < MAX_WEIGHTS; i++) c.w[i].dtype = AI3_FLOAT64;
    }
    pick_algorithm(f, &c);
    for (int k = (int)pick(f, 0, 3) - 1; k > 0; k--) { /* mostly valid, often not */
        unsigned what = byte(f) % 4;
        if (what == 0) perturb_desc(f, &c.in[byte(f) % MAX_INPUTS]);
        else if (what == 1) perturb_desc(f, &c.w[byte(f) % MAX_WEIGHTS]);
        else if (what == 2) c.has_w[byte(f) % MAX_WEIGHTS] ^= 1;
        else c.null_params = 1;
    }
    if (chance(f, 24)) { /* raw bytes over the parameters */
        size_t at = byte(f) % sizeof c.params, len = byte(f) % 16;
        for (size_t i = 0; i < len && at + i < sizeof c.params; i++)
            ((uint8_t *)&c.params)[at + i] = (uint8_t)byte(f);
    }
    if (chance(f, 16)) c.n_inputs = (int)pick(f, 0, MAX_INPUTS);
    int n_weights = (unsigned)op < AI3_OP_COUNT ? op_table[op].n_weights : 0;
    c.n_weights = chance(f, 16) ? (int)pick(f, -1, MAX_WEIGHTS) : n_weights;
    if (c.n_weights > MAX_WEIGHTS) c.n_weights = MAX_WEIGHTS;

    tensors t;
    make_tensors(&c, &t, u16(f));
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    unsigned how = byte(f) % 3;
    print_case(how == 0 ? "typed" : "plan", &c);

    /* typed functions */
    if (how == 0 && (unsigned)op < AI3_OP_COUNT) {
        if (typed_shape(&c, &t, &nd, shape) == AI3_OK) run_into(f, &c, &t, NULL, nd, shape);
        else if (chance(f, 32) && all_runnable(&t)) /* a run the shapes refuse */
            typed_run(&c, &t, t.in_ptr[0] ? &t.in[0].t : NULL);
        run_conv2d_linear_plans(f, &c, &t);
    }

    /* plans of any op */
    if (how != 0 && weights_runnable(&t)) {
        ai3_plan *plan = NULL;
        const ai3_tensor *hint = chance(f, 128) ? t.in_ptr[0] : NULL;
        ai3_plan_options options = {.allow_tf32 = (int)pick(f, 0, 1)};
        ai3_status s = how == 1
            ? CALL(ai3_plan_create(op, alg(&c), c.n_weights, c.n_weights > 0 ? t.w_ptr : NULL,
                                   c.null_params ? NULL : &c.params, hint, &plan))
            : CALL(ai3_plan_create_with(op, alg(&c), c.n_weights, t.w_ptr,
                                        c.null_params ? NULL : &c.params, hint,
                                        chance(f, 128) ? &options : NULL, &plan));
        if (s == AI3_OK) {
            if (!plan || ai3_plan_op(plan) != op || !ai3_plan_algorithm(plan))
                fail("plan", "made a plan without its op or algorithm", s);
            for (int r = 0; r < 2; r++) {
                size_t ws;
                CALL(ai3_plan_workspace_size(plan, c.n_inputs, t.in_ptr, &ws));
                if (CALL(ai3_plan_output_shape(plan, c.n_inputs, t.in_ptr, &nd, shape)) == AI3_OK)
                    run_into(f, &c, &t, plan, nd, shape);
                else if (chance(f, 64) && all_runnable(&t))
                    CALL(ai3_plan_run(plan, c.n_inputs, t.in_ptr, &t.in[0].t, NULL, 0));
                if (!chance(f, 100)) break;
            }
        } else if (plan) {
            fail("plan", "failed but gave a plan", s);
        }
        ai3_plan_destroy(plan);
    }
    free_tensors(&t);
}

/* ------------------------------------------------------------------------ */
/* Graphs                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct value_info {
    int known; /* shape known for the run inputs */
    desc d;
} value_info;

typedef struct graph_state {
    ai3_graph *g;
    int dtype;
    int n_values;
    value_info v[MAX_VALUES];
    int n_inputs;
    owned inputs[4];
    ai3_tensor input_t[4];
    int slow; /* a node too slow to run (see cheap) */
} graph_state;

/* Records the shape of `value` for the run inputs (by making it the
 * graph's output for a moment). */
static void learn_shape(graph_state *gs, int value) {
    if (value < 0 || value >= MAX_VALUES) return;
    if (value >= gs->n_values) gs->n_values = value + 1;
    gs->v[value].known = 0;
    int nd;
    int64_t shape[AI3_MAX_DIMS];
    if (CALL(ai3_graph_set_outputs(gs->g, 1, &value)) != AI3_OK) return;
    if (CALL(ai3_graph_output_shapes(gs->g, gs->n_inputs, gs->input_t, 1, &nd, &shape)) !=
        AI3_OK)
        return;
    gs->v[value].known = 1;
    gs->v[value].d = make_desc(nd, shape);
    gs->v[value].d.dtype = gs->dtype;
}

/* A value id: usually an existing one, sometimes not. */
static int pick_value(fuzz *f, const graph_state *gs) {
    if (chance(f, 6)) return (int)param(f, -1, MAX_VALUES);
    return gs->n_values ? (int)(byte(f) % (unsigned)gs->n_values) : 0;
}

static void graph_node_op(fuzz *f, graph_state *gs) {
    unsigned b = byte(f);
    ai3_op op = b < 252 ? (ai3_op)(b % AI3_OP_COUNT) : (ai3_op)(AI3_OP_COUNT + b);
    int in = pick_value(f, gs);
    const desc *given = in >= 0 && in < gs->n_values && gs->v[in].known ? &gs->v[in].d : NULL;
    op_case c;
    gen_case(f, &c, op, given);
    pick_algorithm(f, &c);
    if (chance(f, 20)) perturb_desc(f, &c.w[byte(f) % MAX_WEIGHTS]);
    int inputs[MAX_INPUTS];
    inputs[0] = in;
    for (int i = 1; i < MAX_INPUTS; i++) inputs[i] = pick_value(f, gs);
    int n_inputs = (unsigned)op < AI3_OP_COUNT && op_table[op].n_inputs > 0
                       ? op_table[op].n_inputs
                       : (int)pick(f, 1, MAX_INPUTS);
    if (chance(f, 8)) n_inputs = (int)pick(f, 0, MAX_INPUTS);
    int n_weights = (unsigned)op < AI3_OP_COUNT ? op_table[op].n_weights : 0;
    if (chance(f, 8)) n_weights = (int)pick(f, -1, MAX_WEIGHTS);
    for (int i = 0; i < MAX_WEIGHTS; i++) c.w[i].dtype = chance(f, 250) ? gs->dtype : AI3_FLOAT64;
    tensors t;
    make_tensors(&c, &t, u16(f));
    print_case("graph node", &c);
    int out = -1;
    desc hint_d = given ? *given : c.in[0];
    owned hint = {0};
    const ai3_tensor *hint_p = NULL;
    if (chance(f, 64)) {
        hint = materialize(&hint_d, 1);
        hint_p = &hint.t;
    }
    if (weights_runnable(&t) &&
        CALL(ai3_graph_op(gs->g, op, alg(&c), n_inputs, inputs, n_weights, t.w_ptr,
                          c.null_params ? NULL : &c.params, hint_p, &out)) == AI3_OK) {
        if (!ai3_graph_algorithm(gs->g, out))
            fail("graph op", "node has no algorithm", AI3_OK);
        if (!cheap(&c, given ? given : &hint_d)) gs->slow = 1;
        learn_shape(gs, out);
    }
    release(&hint);
    free_tensors(&t);
}

static void graph_node_other(fuzz *f, graph_state *gs) {
    int in = pick_value(f, gs), out = -1;
    const desc *d = in >= 0 && in < gs->n_values && gs->v[in].known ? &gs->v[in].d : NULL;
    int nd = d ? d->ndim : 4;
    switch (byte(f) % 5) {
    case 0: { /* reshape: sizes, -1, or other values' sizes */
        ai3_graph_dim dims[AI3_MAX_DIMS + 1];
        int n = (int)pick(f, 0, AI3_MAX_DIMS);
        if (chance(f, 8)) n = (int)pick(f, -1, AI3_MAX_DIMS + 1);
        for (int i = 0; i < AI3_MAX_DIMS + 1; i++) {
            dims[i].value = chance(f, 60) ? pick_value(f, gs) : -1;
            dims[i].dim = (int)pick(f, -nd - 1, nd);
            dims[i].size = chance(f, 40) ? -1 : param(f, 0, 6);
        }
        if (d && chance(f, 128)) { /* flatten-like: batch kept, the rest inferred */
            n = 2;
            dims[0] = (ai3_graph_dim){.value = in, .dim = 0, .size = 0};
            dims[1] = (ai3_graph_dim){.value = -1, .dim = 0, .size = -1};
        }
        if (CALL(ai3_graph_reshape(gs->g, in, n, chance(f, 4) ? NULL : dims, &out)) == AI3_OK)
            learn_shape(gs, out);
        break;
    }
    case 1: { /* chunk */
        int chunks = (int)pick(f, -1, 6), outs[8];
        int dim = (int)pick(f, -nd - 1, nd);
        if (CALL(ai3_graph_chunk(gs->g, in, chunks, dim, outs)) == AI3_OK)
            for (int i = 0; i < chunks; i++) learn_shape(gs, outs[i]);
        break;
    }
    case 2: { /* transpose */
        op_case c = {.op = AI3_OP_PERMUTE};
        pick_algorithm(f, &c);
        if (CALL(ai3_graph_transpose(gs->g, alg(&c), in, (int)pick(f, -nd - 1, nd),
                                     (int)pick(f, -nd - 1, nd), &out)) == AI3_OK)
            learn_shape(gs, out);
        break;
    }
    case 3: { /* a constant */
        desc cd = d && chance(f, 128) ? *d : random_desc(f, 0, 4, 4);
        cd.dtype = gs->dtype;
        if (chance(f, 16)) perturb_desc(f, &cd);
        owned o = materialize(&cd, 3);
        if (runnable(&o)) { /* (copied: read) */
            if (CALL(ai3_graph_add_constant(gs->g, &o.t, &out)) == AI3_OK) learn_shape(gs, out);
        }
        release(&o);
        break;
    }
    case 4: { /* a name (up to 80 bytes; 63 are kept) */
        char name[81];
        size_t len = byte(f) % sizeof name;
        for (size_t i = 0; i < len; i++) name[i] = (char)(byte(f) | 1);
        name[len] = '\0';
        CALL(ai3_graph_set_name(gs->g, pick_value(f, gs), chance(f, 4) ? NULL : name));
        break;
    }
    }
}

/* Outputs for the graph's output shapes, run (twice: the second from the
 * cached plan), with inputs unchanged. */
static void graph_run(fuzz *f, graph_state *gs, int n_outputs) {
    int nds[8];
    int64_t shapes[8][AI3_MAX_DIMS];
    size_t peak, total, ws;
    CALL(ai3_graph_peak_bytes(gs->g, gs->n_inputs, gs->input_t, &peak, &total,
                              chance(f, 128) ? &ws : NULL));
    if (CALL(ai3_graph_output_shapes(gs->g, gs->n_inputs, gs->input_t, n_outputs, nds, shapes)) !=
        AI3_OK)
        return;
    /* every intermediate value small (runs stay fast) */
    if (gs->slow) return;
    for (int i = 0; i < gs->n_values; i++)
        if (gs->v[i].known && small_numel(&gs->v[i].d) < 0) return;
    for (int i = 0; i < gs->n_inputs; i++)
        if (!runnable(&gs->inputs[i])) return;
    owned outs[8];
    ai3_tensor out_t[8];
    int made = 0;
    const ai3_tensor like = {.dtype = (ai3_dtype)gs->dtype, .device = AI3_DEVICE_CPU};
    for (; made < n_outputs; made++) {
        if (!make_output(f, &like, nds[made], shapes[made], &outs[made])) break;
        out_t[made] = outs[made].t;
    }
    if (made == n_outputs) {
        for (int r = 0; r < 2; r++) {
            snapshot s = {0};
            for (int i = 0; i < gs->n_inputs; i++) snap(&s, &gs->inputs[i]);
            if (chance(f, 128))
                CALL(ai3_graph_run(gs->g, gs->n_inputs, gs->input_t, n_outputs, out_t));
            else
                CALL(ai3_graph_run_stream(gs->g, gs->n_inputs, gs->input_t, n_outputs, out_t,
                                          NULL));
            unchanged(&s, NULL, "graph run");
            if (!chance(f, 128)) break;
        }
    }
    for (int i = 0; i < made; i++) release(&outs[i]);
}

static void fuzz_graph(fuzz *f) {
    graph_state gs;
    memset(&gs, 0, sizeof gs);
    unsigned b = byte(f);
    gs.dtype = b < 120 ? AI3_FLOAT32 : b < 240 ? AI3_FLOAT64 : (int)(b % 6);
    ai3_status s = chance(f, 16)
        ? CALL(ai3_graph_create_on((ai3_dtype)gs.dtype, (ai3_device)pick(f, 0, 2),
                                   (int)pick(f, -1, 1), &gs.g))
        : CALL(ai3_graph_create((ai3_dtype)gs.dtype, &gs.g));
    if (s != AI3_OK) {
        if (gs.g) fail("graph create", "failed but gave a graph", s);
        return;
    }
    if (chance(f, 16)) CALL(ai3_graph_set_cuda_graphs(gs.g, (int)pick(f, 0, 1)));
    /* inputs, and the tensors they are run with */
    gs.n_inputs = (int)pick(f, 1, 3);
    for (int i = 0; i < gs.n_inputs; i++) {
        int id;
        if (CALL(ai3_graph_add_input(gs.g, &id)) != AI3_OK) fail("graph", "no input", s);
        desc d = chance(f, 160) ? make_desc(4, (int64_t[]){pick(f, 1, 2), pick(f, 1, 4),
                                                            pick(f, 1, 8), pick(f, 1, 8)})
                                : random_desc(f, 0, 4, 5);
        d.dtype = gs.dtype;
        if (chance(f, 8)) perturb_desc(f, &d);
        gs.inputs[i] = materialize(&d, 11 + (uint64_t)i);
        gs.input_t[i] = gs.inputs[i].t;
        gs.n_values = id + 1;
        gs.v[id].known = small_numel(&d) >= 0;
        gs.v[id].d = d;
    }
    /* nodes */
    int n_nodes = (int)pick(f, 1, 8);
    for (int i = 0; i < n_nodes && gs.n_values < MAX_VALUES - 8; i++) {
        if (chance(f, 190)) graph_node_op(f, &gs);
        else graph_node_other(f, &gs);
    }
    /* outputs, then shapes, memory and runs */
    int n_outputs = (int)pick(f, 1, 3), outs[8];
    for (int i = 0; i < n_outputs; i++) { /* mostly the last value or another one */
        if (!chance(f, 200) || !gs.n_values) outs[i] = pick_value(f, &gs);
        else if (byte(f) % 2) outs[i] = gs.n_values - 1;
        else outs[i] = (int)(byte(f) % (unsigned)gs.n_values);
    }
    if (chance(f, 8)) n_outputs = (int)pick(f, -1, 2);
    if (CALL(ai3_graph_set_outputs(gs.g, n_outputs, chance(f, 4) ? NULL : outs)) == AI3_OK) {
        if (ai3_graph_num_outputs(gs.g) != n_outputs || ai3_graph_num_inputs(gs.g) != gs.n_inputs)
            fail("graph", "counts differ from what was built", AI3_OK);
        int n = n_outputs;
        if (chance(f, 8)) n = (int)pick(f, -1, 4); /* a wrong output count */
        if (n >= 0) graph_run(f, &gs, n);
    }
    ai3_graph_algorithm(gs.g, pick_value(f, &gs));
    ai3_graph_destroy(gs.g);
    for (int i = 0; i < gs.n_inputs; i++) release(&gs.inputs[i]);
}

/* ------------------------------------------------------------------------ */
/* The entry point                                                           */
/* ------------------------------------------------------------------------ */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    cuda_usable = ai3_cuda_available() == AI3_OK;
    verbose = getenv("AI3_FUZZ_VERBOSE") != NULL;
    ai3_set_num_threads(2);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz f = {data, size};
    unsigned setup = byte(&f);

    /* threads, a caller's executor, and algorithms registered now */
    if (setup & 1) CALL(ai3_set_num_threads((int)param(&f, 1, 3)));
    int executor = (setup & 6) == 6;
    if (executor)
        CALL(ai3_set_parallel_executor(serial_for, &executor_calls, (int)param(&f, 1, 4)));
    int registered = (setup & 24) == 24;
    if (registered)
        for (int op = 0; op < AI3_OP_COUNT; op++)
            CALL(ai3_register_algorithm((ai3_op)op, REGISTERED_NAME, AI3_DEVICE_CPU,
                                        op_table[op].registered));
    if ((setup & 224) == 224) { /* the small functions, with any argument */
        int v = (int)param(&f, -3, AI3_OP_COUNT + 3);
        ai3_status_string((ai3_status)v);
        ai3_op_name((ai3_op)v);
        ai3_default_algorithm((ai3_op)v);
        ai3_get_num_threads();
        CALL(ai3_list_algorithms((ai3_op)v, (ai3_device)pick(&f, 0, 2), NULL, (int)pick(&f, -1, 1),
                                 chance(&f, 128) ? &(int){0} : NULL));
        CALL(ai3_unregister_algorithm((ai3_op)v, chance(&f, 128) ? "no such name" : NULL));
        CALL(ai3_register_algorithm((ai3_op)v, chance(&f, 128) ? "default" : "", AI3_DEVICE_CPU,
                                    op_table[0].registered));
        CALL(ai3_load_algorithms(chance(&f, 128) ? NULL : "/nonexistent/ai3-plugin.so"));
        ai3_tensor_numel(NULL);
        if (ai3_version() != AI3_VERSION || ai3_abi_version() != AI3_ABI_VERSION)
            fail("version", "the library is not the one this fuzzer was built with", AI3_OK);
        if (!ai3_cuda_describe()) fail("ai3_cuda_describe", "returned NULL", AI3_OK);
    }

    unsigned n_ops = byte(&f) % 3 + 1;
    for (unsigned i = 0; i < n_ops && f.n > 0; i++) {
        if (byte(&f) < 100) fuzz_graph(&f);
        else fuzz_op(&f);
    }

    if (registered)
        for (int op = 0; op < AI3_OP_COUNT; op++)
            CALL(ai3_unregister_algorithm((ai3_op)op, REGISTERED_NAME));
    if (executor) CALL(ai3_set_parallel_executor(NULL, NULL, 0));
    return 0;
}
