/*
 * ai3._core — the CPython extension that hands torch tensors to libai3.
 *
 * Tensors cross as torch.Tensor objects: their data pointer, shape, dtype
 * and device become ai3_tensor views (no copies), and libai3 runs with the
 * GIL released. Outputs are allocated with torch (Tensor.new_empty) and
 * written by C. This file: the module, errors, tensor views, operation
 * names, threads and the algorithm registry.
 */
#include "core.h"

#include <limits.h>
#include <string.h>

#define AI3_STR_(x) #x
#define AI3_STR(x) AI3_STR_(x)
#define AI3_VERSION_STRING \
    AI3_STR(AI3_VERSION_MAJOR) "." AI3_STR(AI3_VERSION_MINOR) "." AI3_STR(AI3_VERSION_PATCH)

static PyObject *torch_tensor_type, *torch_float32, *torch_float64, *torch_float16,
    *torch_bfloat16, *torch_uint8;
static PyObject *str_dtype, *str_device, *str_type, *str_shape, *str_data_ptr,
    *str_is_contiguous, *str_contiguous, *str_is_cpu, *str_is_cuda, *str_new_empty,
    *str_get_device;
static PyObject *unsupported_error; /* ai3.UnsupportedError */

PyObject *ai3_py_raise(ai3_status status) {
    const char *msg = ai3_last_error();
    if (!msg || !*msg) msg = ai3_status_string(status);
    switch (status) {
    case AI3_ERROR_UNSUPPORTED: PyErr_SetString(unsupported_error, msg); break;
    case AI3_ERROR_INVALID_ARGUMENT:
    case AI3_ERROR_UNKNOWN_ALGORITHM: PyErr_SetString(PyExc_ValueError, msg); break;
    case AI3_ERROR_OUT_OF_MEMORY: PyErr_SetString(PyExc_MemoryError, msg); break;
    default: PyErr_Format(PyExc_RuntimeError, "ai3: %s: %s", ai3_status_string(status), msg);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* torch.Tensor → ai3_tensor                                                 */
/* ------------------------------------------------------------------------ */

/* The truth of the attribute `name` of obj: 1, 0, or -1 with an exception. */
static int flag(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (!value) return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* Reads obj.dtype and obj's device (and CUDA device index) into out; 0 or
 * -1. float16 is taken on CUDA devices only (bfloat16 on the CPU needs
 * AVX512_BF16, which the C library checks). */
static int dtype_device(PyObject *obj, const char *op, const char *what, ai3_tensor *out) {
    PyObject *dtype = PyObject_GetAttr(obj, str_dtype);
    if (!dtype) return -1;
    int half = dtype == torch_float16 || dtype == torch_bfloat16;
    int ok = dtype == torch_float32 || dtype == torch_float64 || half;
    out->dtype = dtype == torch_float64   ? AI3_FLOAT64
                 : dtype == torch_float16 ? AI3_FLOAT16
                 : dtype == torch_bfloat16 ? AI3_BFLOAT16
                                           : AI3_FLOAT32;
    out->device_index = 0;
    if (!ok)
        PyErr_Format(PyExc_TypeError,
                     "ai3 %s: %s has dtype %S; ai3 computes in torch.float32 and torch.float64 "
                     "(and torch.bfloat16, and torch.float16 on CUDA devices)", op, what, dtype);
    int cpu = ok ? flag(obj, str_is_cpu) : -1;
    int cpu_half = cpu == 1 && dtype == torch_float16;
    if (cpu_half)
        PyErr_Format(PyExc_TypeError,
                     "ai3 %s: %s has dtype %S; on the CPU ai3 computes in torch.float32, "
                     "torch.float64 and torch.bfloat16 (float16 runs on CUDA devices)", op, what,
                     dtype);
    Py_DECREF(dtype);
    if (!ok || cpu < 0 || cpu_half) return -1;
    if (cpu) {
        out->device = AI3_DEVICE_CPU;
        return 0;
    }
    int cuda = flag(obj, str_is_cuda);
    if (cuda < 0) return -1;
    if (cuda) {
        out->device = AI3_DEVICE_CUDA;
        PyObject *index = PyObject_CallMethodNoArgs(obj, str_get_device);
        if (!index) return -1;
        out->device_index = (int)PyLong_AsLong(index);
        Py_DECREF(index);
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *device = PyObject_GetAttr(obj, str_device);
    PyObject *type = device ? PyObject_GetAttr(device, str_type) : NULL;
    Py_XDECREF(device);
    if (type)
        PyErr_Format(unsupported_error,
                     "ai3 %s: %s is on device '%U'; ai3 computes on the CPU and CUDA devices",
                     op, what, type);
    Py_XDECREF(type);
    return -1;
}

static int is_contiguous(PyObject *obj) {
    PyObject *r = PyObject_CallMethodNoArgs(obj, str_is_contiguous);
    if (!r) return -1;
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

/* The data pointer of a tensor; 0 or -1. */
static int data_ptr(PyObject *obj, ai3_tensor *out) {
    PyObject *ptr = PyObject_CallMethodNoArgs(obj, str_data_ptr);
    if (!ptr) return -1;
    out->data = PyLong_AsVoidPtr(ptr);
    Py_DECREF(ptr);
    return out->data || !PyErr_Occurred() ? 0 : -1;
}

/* Shape and data pointer of a tensor already checked. */
static int shape_and_data(PyObject *obj, const char *op, const char *what, ai3_tensor *out) {
    PyObject *shape = PyObject_GetAttr(obj, str_shape);
    if (!shape) return -1;
    Py_ssize_t ndim = PyTuple_Check(shape) ? PyTuple_GET_SIZE(shape) : -1;
    if (ndim < 0 || ndim > AI3_MAX_DIMS) {
        if (ndim > AI3_MAX_DIMS)
            PyErr_Format(PyExc_ValueError, "ai3 %s: %s has %zd dimensions; at most %d are supported",
                         op, what, ndim, AI3_MAX_DIMS);
        else
            PyErr_SetString(PyExc_TypeError, "tensor.shape is not a tuple");
        Py_DECREF(shape);
        return -1;
    }
    out->ndim = (int)ndim;
    for (Py_ssize_t i = 0; i < ndim; i++) out->shape[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, i));
    Py_DECREF(shape);
    if (PyErr_Occurred()) return -1;
    return data_ptr(obj, out);
}

static int check_type(PyObject *obj, const char *op, const char *what) {
    if (PyObject_TypeCheck(obj, (PyTypeObject *)torch_tensor_type)) return 0;
    PyErr_Format(PyExc_TypeError, "ai3 %s: %s must be a torch.Tensor, not %s", op, what,
                 Py_TYPE(obj)->tp_name);
    return -1;
}

int ai3_py_view(PyObject *obj, const char *op, const char *what, ai3_tensor *out) {
    if (check_type(obj, op, what) < 0 || dtype_device(obj, op, what, out) < 0) return -1;
    int contiguous = is_contiguous(obj);
    if (contiguous == 0)
        PyErr_Format(PyExc_ValueError, "ai3 %s: %s is not contiguous; call .contiguous() first",
                     op, what);
    if (contiguous != 1) return -1;
    return shape_and_data(obj, op, what, out);
}

int ai3_py_input_view(PyObject *obj, const char *op, const char *what, ai3_tensor *out,
                      PyObject **keep) {
    *keep = NULL;
    if (check_type(obj, op, what) < 0 || dtype_device(obj, op, what, out) < 0) return -1;
    int contiguous = is_contiguous(obj);
    if (contiguous < 0) return -1;
    if (contiguous) Py_INCREF(obj);
    *keep = contiguous ? obj : PyObject_CallMethodNoArgs(obj, str_contiguous);
    if (!*keep) return -1;
    return shape_and_data(*keep, op, what, out);
}

PyObject *ai3_py_new_bytes(PyObject *like, size_t bytes, void **data) {
    PyObject *size = Py_BuildValue("(n)", (Py_ssize_t)bytes);
    PyObject *kwargs = size ? Py_BuildValue("{sO}", "dtype", torch_uint8) : NULL;
    PyObject *method = kwargs ? PyObject_GetAttr(like, str_new_empty) : NULL;
    PyObject *out = method ? PyObject_Call(method, size, kwargs) : NULL;
    Py_XDECREF(size);
    Py_XDECREF(kwargs);
    Py_XDECREF(method);
    ai3_tensor view;
    if (out && data_ptr(out, &view) < 0) Py_CLEAR(out);
    *data = out ? view.data : NULL;
    return out;
}

PyObject *ai3_py_new_output(PyObject *like, const ai3_tensor *like_view, int ndim,
                            const int64_t *shape, ai3_tensor *view) {
    PyObject *size = ai3_py_shape(ndim, shape);
    PyObject *out = size ? PyObject_CallMethodOneArg(like, str_new_empty, size) : NULL;
    Py_XDECREF(size);
    *view = *like_view;
    view->ndim = ndim;
    for (int d = 0; d < ndim; d++) view->shape[d] = shape[d];
    if (out && data_ptr(out, view) < 0) Py_CLEAR(out);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Operations, shapes                                                        */
/* ------------------------------------------------------------------------ */

int ai3_py_op(PyObject *name) {
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "ai3: an operation name is a str, not %s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    for (int op = 0; op < AI3_OP_COUNT; op++)
        if (PyUnicode_CompareWithASCIIString(name, ai3_op_name((ai3_op)op)) == 0) return op;
    PyErr_Format(PyExc_ValueError, "ai3: unknown operation '%U'", name);
    return -1;
}

int ai3_py_ints(PyObject *seq, const char *what, int *out, int cap) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > cap)
        PyErr_Format(PyExc_ValueError, "ai3: %s has %zd entries, at most %d allowed", what, n,
                     cap);
    for (Py_ssize_t i = 0; i < n && !PyErr_Occurred(); i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (!PyErr_Occurred() && (v < INT_MIN || v > INT_MAX))
            PyErr_Format(PyExc_OverflowError, "ai3: %s: %ld is out of range", what, v);
        out[i] = (int)v;
    }
    Py_DECREF(fast);
    return PyErr_Occurred() ? -1 : (int)n;
}

PyObject *ai3_py_shape(int ndim, const int64_t *shape) {
    PyObject *t = PyTuple_New(ndim);
    for (int d = 0; t && d < ndim; d++) {
        PyObject *size = PyLong_FromLongLong(shape[d]);
        if (!size) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, d, size);
    }
    return t;
}

int ai3_py_shape_view(PyObject *seq, ai3_dtype dtype, ai3_tensor *out) {
    int dims[AI3_MAX_DIMS];
    int nd = ai3_py_ints(seq, "a shape", dims, AI3_MAX_DIMS);
    if (nd < 0) return -1;
    memset(out, 0, sizeof *out);
    out->dtype = dtype;
    out->ndim = nd;
    for (int d = 0; d < nd; d++) out->shape[d] = dims[d];
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Threads and the algorithm registry                                        */
/* ------------------------------------------------------------------------ */

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > INT_MAX)
        return PyErr_Format(PyExc_ValueError,
                            "ai3: the number of threads must be at least 1, not %ld", n);
    ai3_status status = ai3_set_num_threads((int)n);
    if (status != AI3_OK) return ai3_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(ai3_get_num_threads());
}

static PyObject *py_list_algorithms(PyObject *self, PyObject *args) {
    PyObject *name;
    const char *device_name = "cpu";
    if (!PyArg_ParseTuple(args, "O|s:list_algorithms", &name, &device_name)) return NULL;
    int op = ai3_py_op(name);
    if (op < 0) return NULL;
    ai3_device device;
    if (strcmp(device_name, "cpu") == 0) device = AI3_DEVICE_CPU;
    else if (strcmp(device_name, "cuda") == 0) device = AI3_DEVICE_CUDA;
    else return PyErr_Format(PyExc_ValueError, "ai3: unknown device '%s'", device_name);
    const char *names[256];
    int count = 0;
    ai3_status status = ai3_list_algorithms((ai3_op)op, device, names, 256, &count);
    if (status != AI3_OK) return ai3_py_raise(status);
    if (count > 256) count = 256;
    PyObject *tuple = PyTuple_New(count);
    for (int i = 0; tuple && i < count; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s) Py_CLEAR(tuple);
        else PyTuple_SET_ITEM(tuple, i, s);
    }
    return tuple;
}

static PyObject *py_load_algorithms(PyObject *self, PyObject *args) {
    PyObject *path;
    if (!PyArg_ParseTuple(args, "O&:load_algorithms", PyUnicode_FSConverter, &path)) return NULL;
    ai3_status status = ai3_load_algorithms(PyBytes_AS_STRING(path));
    Py_DECREF(path);
    if (status != AI3_OK) return ai3_py_raise(status);
    Py_RETURN_NONE;
}

/* cuda_backend(): (True, description) when the CUDA backend loads, else
 * (False, why not). Loads it (and the CUDA libraries it uses) on first call. */
static PyObject *py_cuda_backend(PyObject *self, PyObject *unused) {
    ai3_status status;
    const char *text;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_cuda_available();
    text = status == AI3_OK ? ai3_cuda_describe() : ai3_last_error();
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(Os)", status == AI3_OK ? Py_True : Py_False, text);
}

/* The operation table as a tuple of (name, default algorithm, inputs
 * (-1: one or more), weights, torch.nn module name or ''). */
static PyObject *operations(void) {
    PyObject *ops = PyTuple_New(AI3_OP_COUNT);
    int i = 0;
#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module)         \
    if (ops) {                                                                                 \
        PyObject *row = Py_BuildValue("(ssiis)", #name, default_algorithm, n_inputs,           \
                                      n_weights, module);                                      \
        if (!row) Py_CLEAR(ops);                                                               \
        else PyTuple_SET_ITEM(ops, i++, row);                                                  \
    }
#include "ai3_ops.inc"
#undef AI3_OP
    return ops;
}

static PyMethodDef core_methods[] = {
    {"set_num_threads", py_set_num_threads, METH_O,
     "set_num_threads(n)\n--\n\nSets the number of threads (n >= 1) every operation uses."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS,
     "get_num_threads()\n--\n\nThe number of threads every operation uses."},
    {"list_algorithms", py_list_algorithms, METH_VARARGS,
     "list_algorithms(op, device='cpu')\n--\n\nThe algorithms of an operation on a device "
     "('cpu' or 'cuda'), built-in first, then those registered at run time ('default' not "
     "listed)."},
    {"cuda_backend", py_cuda_backend, METH_NOARGS,
     "cuda_backend()\n--\n\n(True, what it computes with) when the CUDA backend loads, else "
     "(False, why not)."},
    {"load_algorithms", py_load_algorithms, METH_VARARGS,
     "load_algorithms(path)\n--\n\nLoads a shared library of algorithms and calls its "
     "ai3_init_algorithms, which registers them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ai3._core",
    .m_doc = "The C core of ai3: torch tensors in, libai3 calls, torch tensors out.",
    .m_size = -1,
    .m_methods = core_methods,
};

static int init_globals(void) {
    static const struct {
        PyObject **slot;
        const char *text;
    } interned[] = {
        {&str_dtype, "dtype"},       {&str_device, "device"},
        {&str_type, "type"},         {&str_shape, "shape"},
        {&str_data_ptr, "data_ptr"}, {&str_is_contiguous, "is_contiguous"},
        {&str_contiguous, "contiguous"}, {&str_is_cpu, "is_cpu"},
        {&str_is_cuda, "is_cuda"},       {&str_new_empty, "new_empty"},
        {&str_get_device, "get_device"},
    };
    for (size_t i = 0; i < sizeof interned / sizeof interned[0]; i++)
        if (!*interned[i].slot && !(*interned[i].slot = PyUnicode_InternFromString(interned[i].text)))
            return -1;
    PyObject *errors = PyImport_ImportModule("ai3._errors");
    unsupported_error = errors ? PyObject_GetAttrString(errors, "UnsupportedError") : NULL;
    Py_XDECREF(errors);
    PyObject *torch = unsupported_error ? PyImport_ImportModule("torch") : NULL;
    if (!torch) return -1;
    torch_tensor_type = PyObject_GetAttrString(torch, "Tensor");
    if (torch_tensor_type && !PyType_Check(torch_tensor_type))
        Py_CLEAR(torch_tensor_type);
    torch_float32 = PyObject_GetAttrString(torch, "float32");
    torch_float64 = PyObject_GetAttrString(torch, "float64");
    torch_float16 = PyObject_GetAttrString(torch, "float16");
    torch_bfloat16 = PyObject_GetAttrString(torch, "bfloat16");
    torch_uint8 = PyObject_GetAttrString(torch, "uint8");
    Py_DECREF(torch);
    return torch_tensor_type && torch_float32 && torch_float64 && torch_float16 &&
                   torch_bfloat16 && torch_uint8 ? 0 : -1;
}

PyMODINIT_FUNC PyInit__core(void) {
    if (init_globals() < 0) return NULL;
    /* torch is imported: its OpenMP runtime, if any, is loaded now. */
    ai3_py_install_torch_executor();
    PyObject *module = PyModule_Create(&core_module);
    if (!module) return NULL;
    if (PyModule_AddStringConstant(module, "__version__", AI3_VERSION_STRING) < 0 ||
        PyModule_AddIntConstant(module, "ABI_VERSION", ai3_abi_version()) < 0 ||
        PyModule_AddObject(module, "OPERATIONS", operations()) < 0 ||
        PyModule_AddFunctions(module, ai3_py_plan_methods) < 0 ||
        PyModule_AddFunctions(module, ai3_py_graph_methods) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
