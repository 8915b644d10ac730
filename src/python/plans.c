/*
 * Plans from Python (ai3_plan_*): what a swapped module keeps, and the one
 * call its forward makes, run(plan, *inputs) → a new output tensor.
 *
 * Parameters cross as one tuple per operation, in the order of its struct:
 *   conv2d             (stride_h, stride_w, pad_top, pad_bottom, pad_left,
 *                       pad_right, dilation_h, dilation_w, groups, padding_mode)
 *   maxpool2d, avgpool2d (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
 *                       dilation_h, dilation_w, ceil_mode, count_include_pad,
 *                       divisor_override)
 *   adaptiveavgpool2d  (out_h, out_w)          flatten   (start_dim, end_dim)
 *   batchnorm2d        (eps,)                  cat       (dim,)
 *   hardtanh           (min_val, max_val)      gelu      (tanh_approximation,)
 *   mean               (dims, keepdim)         permute   (perm,)
 *   layernorm          (normalized_ndim, eps)  softmax   (dim,)
 *   the others         ()
 */
#include "core.h"

#include <string.h>

#define PLAN_CAPSULE "ai3.plan"
#define MAX_INPUTS 64

static int padding_mode(const char *name, ai3_padding_mode *mode) {
    static const char *const modes[] = {"zeros", "reflect", "replicate", "circular"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, modes[i]) == 0) {
            *mode = (ai3_padding_mode)i;
            return 0;
        }
    PyErr_Format(PyExc_ValueError,
                 "ai3 conv2d: padding_mode must be 'zeros', 'reflect', 'replicate' or "
                 "'circular', not '%s'", name);
    return -1;
}

int ai3_py_params(ai3_op op, PyObject *t, ai3_op_params *p) {
    memset(p, 0, sizeof *p);
    if (!PyTuple_Check(t)) {
        PyErr_SetString(PyExc_TypeError, "ai3: parameters are a tuple");
        return -1;
    }
    const char *mode;
    PyObject *seq;
    int n;
    switch (op) {
    case AI3_OP_CONV2D: {
        ai3_conv2d_params *c = &p->conv2d;
        if (!PyArg_ParseTuple(t, "LLLLLLLLLs:conv2d", &c->stride_h, &c->stride_w, &c->pad_top,
                              &c->pad_bottom, &c->pad_left, &c->pad_right, &c->dilation_h,
                              &c->dilation_w, &c->groups, &mode))
            return -1;
        return padding_mode(mode, &c->padding_mode);
    }
    case AI3_OP_MAXPOOL2D:
    case AI3_OP_AVGPOOL2D: {
        ai3_pool2d_params *q = &p->maxpool2d;
        return PyArg_ParseTuple(t, "LLLLLLLLppL:pool2d", &q->kernel_h, &q->kernel_w,
                                &q->stride_h, &q->stride_w, &q->pad_h, &q->pad_w,
                                &q->dilation_h, &q->dilation_w, &q->ceil_mode,
                                &q->count_include_pad, &q->divisor_override) ? 0 : -1;
    }
    case AI3_OP_ADAPTIVEAVGPOOL2D:
        return PyArg_ParseTuple(t, "LL:adaptiveavgpool2d", &p->adaptiveavgpool2d.out_h,
                                &p->adaptiveavgpool2d.out_w) ? 0 : -1;
    case AI3_OP_FLATTEN:
        return PyArg_ParseTuple(t, "ii:flatten", &p->flatten.start_dim, &p->flatten.end_dim)
                   ? 0 : -1;
    case AI3_OP_BATCHNORM2D:
        return PyArg_ParseTuple(t, "d:batchnorm2d", &p->batchnorm2d.eps) ? 0 : -1;
    case AI3_OP_CAT: return PyArg_ParseTuple(t, "i:cat", &p->cat.dim) ? 0 : -1;
    case AI3_OP_HARDTANH:
        return PyArg_ParseTuple(t, "dd:hardtanh", &p->hardtanh.min_val, &p->hardtanh.max_val)
                   ? 0 : -1;
    case AI3_OP_GELU:
        return PyArg_ParseTuple(t, "p:gelu", &p->gelu.tanh_approximation) ? 0 : -1;
    case AI3_OP_MEAN:
        if (!PyArg_ParseTuple(t, "Op:mean", &seq, &p->mean.keepdim)) return -1;
        n = ai3_py_ints(seq, "mean dims", p->mean.dims, AI3_MAX_DIMS);
        p->mean.n_dims = n;
        return n < 0 ? -1 : 0;
    case AI3_OP_PERMUTE:
        if (!PyArg_ParseTuple(t, "O:permute", &seq)) return -1;
        n = ai3_py_ints(seq, "permute order", p->permute.perm, AI3_MAX_DIMS);
        p->permute.ndim = n;
        return n < 0 ? -1 : 0;
    case AI3_OP_LAYERNORM:
        return PyArg_ParseTuple(t, "id:layernorm", &p->layernorm.normalized_ndim,
                                &p->layernorm.eps) ? 0 : -1;
    case AI3_OP_SOFTMAX: return PyArg_ParseTuple(t, "i:softmax", &p->softmax.dim) ? 0 : -1;
    default:
        if (PyTuple_GET_SIZE(t) == 0) return 0;
        PyErr_Format(PyExc_TypeError, "ai3 %s: takes no parameters", ai3_op_name(op));
        return -1;
    }
}

int ai3_py_weights(PyObject *seq, ai3_op op, ai3_tensor views[4], const ai3_tensor *w[4],
                   PyObject **keep) {
    static const char *const names[] = {"weight", "bias"},
                             *const stats[] = {"running_mean", "running_var", "weight", "bias"};
    *keep = PySequence_Fast(seq, "ai3: weights must be a sequence");
    if (!*keep) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(*keep);
    if (n > 4) PyErr_SetString(PyExc_ValueError, "ai3: at most 4 weights");
    for (Py_ssize_t i = 0; i < 4; i++) w[i] = NULL;
    for (Py_ssize_t i = 0; i < n && !PyErr_Occurred(); i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(*keep, i);
        const char *what = op == AI3_OP_BATCHNORM2D ? stats[i] : names[i % 2];
        if (t != Py_None && ai3_py_view(t, ai3_op_name(op), what, &views[i]) == 0)
            w[i] = &views[i];
    }
    if (!PyErr_Occurred()) return (int)n;
    Py_CLEAR(*keep);
    return -1;
}

static void destroy_plan(PyObject *capsule) {
    ai3_plan_destroy(PyCapsule_GetPointer(capsule, PLAN_CAPSULE));
    Py_XDECREF((PyObject *)PyCapsule_GetContext(capsule)); /* a CUDA plan's weights */
}

static ai3_plan *plan_of(PyObject *capsule) {
    return PyCapsule_GetPointer(capsule, PLAN_CAPSULE);
}

static PyObject *py_plan(PyObject *self, PyObject *args) {
    PyObject *op_name, *weights_obj, *params_obj, *hint_obj = Py_None;
    const char *algorithm;
    ai3_plan_options options = {0};
    if (!PyArg_ParseTuple(args, "OsOO|Op:plan", &op_name, &algorithm, &weights_obj, &params_obj,
                          &hint_obj, &options.allow_tf32))
        return NULL;
    int op = ai3_py_op(op_name);
    ai3_op_params params;
    if (op < 0 || ai3_py_params((ai3_op)op, params_obj, &params) < 0) return NULL;
    ai3_tensor views[4];
    const ai3_tensor *w[4];
    PyObject *weights;
    int n = ai3_py_weights(weights_obj, (ai3_op)op, views, w, &weights);
    if (n < 0) return NULL;
    ai3_tensor hint;
    if (!PyErr_Occurred() && hint_obj != Py_None)
        ai3_py_shape_view(hint_obj, n && w[0] ? w[0]->dtype : AI3_FLOAT32, &hint);
    if (PyErr_Occurred()) {
        Py_DECREF(weights);
        return NULL;
    }
    ai3_plan *plan;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_plan_create_with((ai3_op)op, algorithm, n, w, &params,
                                  hint_obj != Py_None ? &hint : NULL, &options, &plan);
    Py_END_ALLOW_THREADS
    if (status != AI3_OK) {
        Py_DECREF(weights);
        return ai3_py_raise(status);
    }
    PyObject *capsule = PyCapsule_New(plan, PLAN_CAPSULE, destroy_plan);
    if (!capsule) {
        ai3_plan_destroy(plan);
        Py_DECREF(weights);
        return NULL;
    }
    /* A CUDA plan reads its weights in place: it keeps them alive. */
    int on_cuda = 0;
    for (int i = 0; i < n; i++) on_cuda |= w[i] && w[i]->device == AI3_DEVICE_CUDA;
    if (on_cuda && PyCapsule_SetContext(capsule, weights) == 0) return capsule;
    Py_DECREF(weights);
    return capsule;
}

static PyObject *py_plan_algorithm(PyObject *self, PyObject *capsule) {
    ai3_plan *plan = plan_of(capsule);
    return plan ? PyUnicode_FromString(ai3_plan_algorithm(plan)) : NULL;
}

/* Views of args[first..n) (tensors, or one list of tensors for cat) into
 * views[], keeping contiguous copies alive in keep[]; their count or -1. */
static int input_views(const char *op, PyObject *const *args, Py_ssize_t n, ai3_tensor *views,
                       PyObject **keep) {
    PyObject *list = NULL;
    if (n == 1 && (PyList_Check(args[0]) || PyTuple_Check(args[0]))) { /* cat's tensors */
        list = args[0];
        args = PySequence_Fast_ITEMS(list);
        n = PySequence_Fast_GET_SIZE(list);
    }
    if (n > MAX_INPUTS) {
        PyErr_Format(PyExc_ValueError, "ai3 %s: at most %d inputs", op, MAX_INPUTS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, n == 1 ? "input" : "input %zd", i);
        if (ai3_py_input_view(args[i], op, what, &views[i], &keep[i]) < 0) {
            for (Py_ssize_t j = 0; j <= i; j++) Py_XDECREF(keep[j]);
            return -1;
        }
    }
    return (int)n;
}

int ai3_py_current_stream(int index, void **stream) {
    static PyObject *get_stream; /* torch._C._cuda_getCurrentRawStream */
    if (!get_stream) {
        PyObject *c = PyImport_ImportModule("torch._C");
        get_stream = c ? PyObject_GetAttrString(c, "_cuda_getCurrentRawStream") : NULL;
        Py_XDECREF(c);
        if (!get_stream) return -1;
    }
    PyObject *i = PyLong_FromLong(index);
    PyObject *r = i ? PyObject_CallOneArg(get_stream, i) : NULL;
    Py_XDECREF(i);
    if (!r) return -1;
    *stream = PyLong_AsVoidPtr(r);
    Py_DECREF(r);
    return PyErr_Occurred() ? -1 : 0;
}

/* Runs a plan on CUDA inputs: its workspace from torch's caching allocator,
 * on torch's current stream, returning once the work is enqueued. The
 * workspace tensor is released right after: the allocator reuses its
 * memory only for work later on the same stream. */
static ai3_status run_cuda(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                           PyObject *like, ai3_tensor *out) {
    size_t bytes = 0;
    ai3_status status = ai3_plan_workspace_size(plan, n, in, &bytes);
    if (status != AI3_OK) return status;
    void *workspace = NULL, *stream;
    PyObject *ws = bytes ? ai3_py_new_bytes(like, bytes, &workspace) : NULL;
    if ((bytes && !ws) || ai3_py_current_stream(in[0]->device_index, &stream) < 0) {
        Py_XDECREF(ws);
        return AI3_ERROR_INTERNAL; /* a Python exception is set */
    }
    Py_BEGIN_ALLOW_THREADS
    status = ai3_plan_run_stream(plan, n, in, out, workspace, bytes, stream);
    Py_END_ALLOW_THREADS
    Py_XDECREF(ws);
    return status;
}

/* run(plan, *inputs): a new output tensor (allocated with the first input's
 * new_empty: its dtype and device) holding the plan's result. */
static PyObject *py_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "run(plan, *inputs) needs a plan and inputs");
        return NULL;
    }
    ai3_plan *plan = plan_of(args[0]);
    if (!plan) return NULL;
    const char *op = ai3_op_name(ai3_plan_op(plan));
    ai3_tensor views[MAX_INPUTS], out_view;
    const ai3_tensor *in[MAX_INPUTS];
    PyObject *keep[MAX_INPUTS];
    int n = input_views(op, args + 1, nargs - 1, views, keep);
    if (n < 0) return NULL;
    for (int i = 0; i < n; i++) in[i] = &views[i];
    int ndim;
    int64_t shape[AI3_MAX_DIMS];
    PyObject *out = NULL;
    ai3_status status = ai3_plan_output_shape(plan, n, in, &ndim, shape);
    if (status != AI3_OK) {
        ai3_py_raise(status);
    } else {
        out = ai3_py_new_output(keep[0], &views[0], ndim, shape, &out_view);
    }
    if (out) {
        if (views[0].device == AI3_DEVICE_CUDA) {
            status = run_cuda(plan, n, in, keep[0], &out_view);
        } else {
            Py_BEGIN_ALLOW_THREADS
            status = ai3_plan_run(plan, n, in, &out_view, NULL, 0);
            Py_END_ALLOW_THREADS
        }
        if (status != AI3_OK) {
            Py_CLEAR(out);
            if (!PyErr_Occurred()) ai3_py_raise(status);
        }
    }
    for (int i = 0; i < n; i++) Py_DECREF(keep[i]);
    return out;
}

/* The plan and shape-only inputs of output_shape and workspace_size
 * (plan, *shapes); the input count, or -1. */
static int plan_and_shapes(PyObject *const *args, Py_ssize_t nargs, ai3_plan **plan,
                           ai3_tensor *views, const ai3_tensor **in) {
    if (nargs < 2 || nargs - 1 > MAX_INPUTS) {
        PyErr_SetString(PyExc_TypeError, "takes a plan and the inputs' shapes");
        return -1;
    }
    if (!(*plan = plan_of(args[0]))) return -1;
    for (Py_ssize_t i = 1; i < nargs; i++) {
        if (ai3_py_shape_view(args[i], AI3_FLOAT32, &views[i - 1]) < 0) return -1;
        views[i - 1].data = &views[i - 1]; /* never read */
        in[i - 1] = &views[i - 1];
    }
    return (int)nargs - 1;
}

/* output_shape(plan, *shapes): the output's shape for inputs of these
 * shapes (nothing is computed). */
static PyObject *py_output_shape(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    ai3_plan *plan;
    ai3_tensor views[MAX_INPUTS];
    const ai3_tensor *in[MAX_INPUTS];
    int n = plan_and_shapes(args, nargs, &plan, views, in), ndim;
    int64_t shape[AI3_MAX_DIMS];
    if (n < 0) return NULL;
    ai3_status status = ai3_plan_output_shape(plan, n, in, &ndim, shape);
    return status == AI3_OK ? ai3_py_shape(ndim, shape) : ai3_py_raise(status);
}

/* workspace_size(plan, *shapes): the scratch bytes a run on inputs of these
 * shapes needs (a 'guess' plan made without a hint chooses here). */
static PyObject *py_workspace_size(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    ai3_plan *plan;
    ai3_tensor views[MAX_INPUTS];
    const ai3_tensor *in[MAX_INPUTS];
    int n = plan_and_shapes(args, nargs, &plan, views, in);
    size_t bytes;
    if (n < 0) return NULL;
    ai3_status status = ai3_plan_workspace_size(plan, n, in, &bytes);
    return status == AI3_OK ? PyLong_FromSize_t(bytes) : ai3_py_raise(status);
}

PyMethodDef ai3_py_plan_methods[] = {
    {"plan", py_plan, METH_VARARGS,
     "plan(op, algorithm, weights, params, hint_shape=None, allow_tf32=False)\n--\n\n"
     "A plan computing `op` with `algorithm`: weights (tensors or None) are copied (CUDA "
     "weights are read in place and kept alive), params is the operation's tuple (see "
     "plans.c), hint_shape the expected input's shape, allow_tf32 whether float32 conv2d "
     "and linear on CUDA may use TF32."},
    {"plan_algorithm", py_plan_algorithm, METH_O,
     "plan_algorithm(plan)\n--\n\nThe algorithm the plan runs ('default'/'guess' resolved)."},
    {"run", (PyCFunction)(void (*)(void))py_run, METH_FASTCALL,
     "run(plan, *inputs)\n--\n\nRuns the plan; returns a new output tensor."},
    {"output_shape", (PyCFunction)(void (*)(void))py_output_shape, METH_FASTCALL,
     "output_shape(plan, *shapes)\n--\n\nThe output's shape for inputs of these shapes."},
    {"workspace_size", (PyCFunction)(void (*)(void))py_workspace_size, METH_FASTCALL,
     "workspace_size(plan, *shapes)\n--\n\nThe scratch bytes a run on inputs of these "
     "shapes needs."},
    {NULL, NULL, 0, NULL},
};
