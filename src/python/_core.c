/*
 * ai3._core — the CPython extension that hands torch tensors to libai3.
 *
 * Tensors cross as torch.Tensor objects: this module reads their data
 * pointer, shape, dtype and device, wraps them in ai3_tensor views (no
 * copies) and calls the C API with the GIL released. Outputs are allocated
 * by the caller (torch.empty) and written here in place; each compute
 * function returns its output tensor.
 *
 * Statuses become exceptions: invalid argument and unknown algorithm →
 * ValueError, unsupported → ai3.UnsupportedError (a ValueError), out of
 * memory → MemoryError, anything else → RuntimeError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ai3.h"

#include <limits.h>
#include <string.h>

#define AI3_STR_(x) #x
#define AI3_STR(x) AI3_STR_(x)
#define AI3_VERSION_STRING \
    AI3_STR(AI3_VERSION_MAJOR) "." AI3_STR(AI3_VERSION_MINOR) "." AI3_STR(AI3_VERSION_PATCH)

/* torch objects and interned attribute names, looked up once. torch is
 * imported on first use so that the registry functions work without it. */
static PyObject *torch_tensor_type;
static PyObject *torch_float32;
static PyObject *torch_float64;
static PyObject *str_dtype, *str_device, *str_type, *str_shape, *str_data_ptr,
    *str_is_contiguous;

/* ai3.UnsupportedError, defined in ai3/_errors.py. */
static PyObject *unsupported_error;

static int load_torch(void)
{
    if (torch_tensor_type)
        return 0;
    PyObject *torch = PyImport_ImportModule("torch");
    if (!torch)
        return -1;
    PyObject *tensor = PyObject_GetAttrString(torch, "Tensor");
    PyObject *f32 = PyObject_GetAttrString(torch, "float32");
    PyObject *f64 = PyObject_GetAttrString(torch, "float64");
    Py_DECREF(torch);
    if (!tensor || !f32 || !f64) {
        Py_XDECREF(tensor);
        Py_XDECREF(f32);
        Py_XDECREF(f64);
        return -1;
    }
    torch_tensor_type = tensor;
    torch_float32 = f32;
    torch_float64 = f64;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Operation names and errors                                                */
/* ------------------------------------------------------------------------ */

/* The ai3_op called `name`, or -1 with ValueError set. */
static int op_from_name(const char *name)
{
    for (int op = 0; op < AI3_OP_COUNT; op++)
        if (strcmp(ai3_op_name((ai3_op)op), name) == 0)
            return op;
    PyErr_Format(PyExc_ValueError, "ai3: unknown operation '%s'", name);
    return -1;
}

/* The names of the registered algorithms of `op`, as a tuple of str. */
static PyObject *algorithm_names(ai3_op op)
{
    const char *stack_names[64];
    const char **names = stack_names;
    int count = 0;
    if (ai3_list_algorithms(op, names, 64, &count) != AI3_OK) {
        PyErr_SetString(PyExc_RuntimeError, ai3_last_error());
        return NULL;
    }
    if (count > 64) {
        names = PyMem_Malloc(sizeof(*names) * (size_t)count);
        if (!names)
            return PyErr_NoMemory();
        int capacity = count;
        if (ai3_list_algorithms(op, names, capacity, &count) != AI3_OK) {
            PyMem_Free(names);
            PyErr_SetString(PyExc_RuntimeError, ai3_last_error());
            return NULL;
        }
        if (count > capacity)
            count = capacity; /* registered meanwhile by another thread */
    }
    PyObject *tuple = PyTuple_New(count);
    for (int i = 0; tuple && i < count; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s) {
            Py_CLEAR(tuple);
            break;
        }
        PyTuple_SET_ITEM(tuple, i, s);
    }
    if (names != stack_names)
        PyMem_Free(names);
    return tuple;
}

/* Sets the Python exception for a failed call and returns NULL. Must run on
 * the thread that made the call, since the message is thread-local. */
static PyObject *raise_status(ai3_status status)
{
    const char *msg = ai3_last_error();
    if (!msg || !*msg)
        msg = ai3_status_string(status);
    switch (status) {
    case AI3_ERROR_UNSUPPORTED:
        PyErr_SetString(unsupported_error, msg);
        break;
    case AI3_ERROR_INVALID_ARGUMENT:
    case AI3_ERROR_UNKNOWN_ALGORITHM: /* the library's message lists the known names */
        PyErr_SetString(PyExc_ValueError, msg);
        break;
    case AI3_ERROR_OUT_OF_MEMORY:
        PyErr_SetString(PyExc_MemoryError, msg);
        break;
    default:
        PyErr_Format(PyExc_RuntimeError, "ai3: %s: %s", ai3_status_string(status), msg);
        break;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* torch.Tensor → ai3_tensor                                                 */
/* ------------------------------------------------------------------------ */

/* Calls the no-argument method `name` of `obj`. */
static PyObject *call_method0(PyObject *obj, PyObject *name)
{
    return PyObject_CallMethodObjArgs(obj, name, NULL);
}

/* Fills `out` with a view of the torch.Tensor `obj`, which must be a
 * contiguous float32/float64 CPU tensor. `op` and `what` name the call and
 * the argument in messages. Returns 0, or -1 with an exception set. */
static int tensor_view(PyObject *obj, const char *op, const char *what, ai3_tensor *out)
{
    if (load_torch() < 0)
        return -1;
    int is_tensor = PyObject_IsInstance(obj, torch_tensor_type);
    if (is_tensor < 0)
        return -1;
    if (!is_tensor) {
        PyErr_Format(PyExc_TypeError, "ai3 %s: %s must be a torch.Tensor, not %s", op, what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }

    PyObject *dtype = PyObject_GetAttr(obj, str_dtype);
    if (!dtype)
        return -1;
    if (dtype == torch_float32) {
        out->dtype = AI3_FLOAT32;
    } else if (dtype == torch_float64) {
        out->dtype = AI3_FLOAT64;
    } else {
        PyErr_Format(PyExc_TypeError,
                     "ai3 %s: %s has dtype %S; ai3 computes in torch.float32 and "
                     "torch.float64 only",
                     op, what, dtype);
        Py_DECREF(dtype);
        return -1;
    }
    Py_DECREF(dtype);

    PyObject *device = PyObject_GetAttr(obj, str_device);
    PyObject *device_type = device ? PyObject_GetAttr(device, str_type) : NULL;
    Py_XDECREF(device);
    if (!device_type)
        return -1;
    if (PyUnicode_CompareWithASCIIString(device_type, "cpu") != 0) {
        if (PyUnicode_CompareWithASCIIString(device_type, "cuda") == 0)
            PyErr_Format(unsupported_error,
                         "ai3 %s: %s is a CUDA tensor, but CUDA tensors are not "
                         "supported by this build of ai3; move it to the CPU",
                         op, what);
        else
            PyErr_Format(unsupported_error,
                         "ai3 %s: %s is on device '%U'; ai3 computes on the CPU", op, what,
                         device_type);
        Py_DECREF(device_type);
        return -1;
    }
    Py_DECREF(device_type);
    out->device = AI3_DEVICE_CPU;

    PyObject *contiguous = call_method0(obj, str_is_contiguous);
    if (!contiguous)
        return -1;
    int is_contiguous = PyObject_IsTrue(contiguous);
    Py_DECREF(contiguous);
    if (is_contiguous < 0)
        return -1;
    if (!is_contiguous) {
        PyErr_Format(PyExc_ValueError,
                     "ai3 %s: %s is not contiguous; call .contiguous() first", op, what);
        return -1;
    }

    PyObject *shape = PyObject_GetAttr(obj, str_shape);
    if (!shape)
        return -1;
    PyObject *dims = PySequence_Fast(shape, "tensor.shape is not a sequence");
    Py_DECREF(shape);
    if (!dims)
        return -1;
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(dims);
    if (ndim > AI3_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "ai3 %s: %s has %zd dimensions; at most %d are supported",
                     op, what, ndim, AI3_MAX_DIMS);
        Py_DECREF(dims);
        return -1;
    }
    out->ndim = (int)ndim;
    for (Py_ssize_t i = 0; i < ndim; i++) {
        long long size = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(dims, i));
        if (size == -1 && PyErr_Occurred()) {
            Py_DECREF(dims);
            return -1;
        }
        out->shape[i] = size;
    }
    Py_DECREF(dims);

    PyObject *ptr = call_method0(obj, str_data_ptr);
    if (!ptr)
        return -1;
    out->data = PyLong_AsVoidPtr(ptr);
    Py_DECREF(ptr);
    if (!out->data && PyErr_Occurred())
        return -1;
    return 0;
}

/* Views `count` tensors of one call: objs[0] is the input whose dtype the
 * others must share; a NULL entry (an absent bias) is skipped and its view
 * left untouched. */
static int tensor_views(const char *op, int count, PyObject *const objs[],
                        const char *const names[], ai3_tensor *views[])
{
    for (int i = 0; i < count; i++) {
        if (!objs[i])
            continue;
        if (tensor_view(objs[i], op, names[i], views[i]) < 0)
            return -1;
        if (views[i]->dtype != views[0]->dtype) {
            PyErr_Format(PyExc_TypeError, "ai3 %s: %s has dtype %s but %s has dtype %s", op,
                         names[i], views[i]->dtype == AI3_FLOAT32 ? "torch.float32" : "torch.float64",
                         names[0], views[0]->dtype == AI3_FLOAT32 ? "torch.float32" : "torch.float64");
            return -1;
        }
    }
    return 0;
}

/* Returns a new reference to `output` after a successful call. */
static PyObject *finish(ai3_status status, PyObject *output)
{
    if (status != AI3_OK)
        return raise_status(status);
    Py_INCREF(output);
    return output;
}

/* ------------------------------------------------------------------------ */
/* Operations                                                                */
/* ------------------------------------------------------------------------ */

static int parse_padding_mode(const char *name, ai3_padding_mode *mode)
{
    static const char *const modes[] = {"zeros", "reflect", "replicate", "circular"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, modes[i]) == 0) {
            *mode = (ai3_padding_mode)i;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError,
                 "ai3 conv2d: padding_mode must be 'zeros', 'reflect', 'replicate' or "
                 "'circular', not '%s'",
                 name);
    return -1;
}

PyDoc_STRVAR(conv2d_doc,
             "conv2d(algorithm, input, weight, bias, output, stride_h, stride_w, pad_top, "
             "pad_bottom, pad_left, pad_right, dilation_h, dilation_w, groups, padding_mode)"
             "\n--\n\nWrites the 2-d convolution of input into output and returns output.");

static PyObject *py_conv2d(PyObject *self, PyObject *args)
{
    const char *algorithm, *mode_name;
    PyObject *input_obj, *weight_obj, *bias_obj, *output_obj;
    long long stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, dilation_h,
        dilation_w, groups;
    if (!PyArg_ParseTuple(args, "sOOOOLLLLLLLLLs:conv2d", &algorithm, &input_obj, &weight_obj,
                          &bias_obj, &output_obj, &stride_h, &stride_w, &pad_top, &pad_bottom,
                          &pad_left, &pad_right, &dilation_h, &dilation_w, &groups, &mode_name))
        return NULL;
    ai3_tensor input, weight, bias, output;
    PyObject *const objs[] = {input_obj, weight_obj, bias_obj == Py_None ? NULL : bias_obj,
                              output_obj};
    const char *const names[] = {"input", "weight", "bias", "output"};
    ai3_tensor *views[] = {&input, &weight, &bias, &output};
    if (tensor_views("conv2d", 4, objs, names, views) < 0)
        return NULL;
    ai3_conv2d_params params = {
        .stride_h = stride_h, .stride_w = stride_w,
        .pad_top = pad_top, .pad_bottom = pad_bottom,
        .pad_left = pad_left, .pad_right = pad_right,
        .dilation_h = dilation_h, .dilation_w = dilation_w,
        .groups = groups,
    };
    if (parse_padding_mode(mode_name, &params.padding_mode) < 0)
        return NULL;
    const ai3_tensor *bias_view = bias_obj == Py_None ? NULL : &bias;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_conv2d(algorithm, &input, &weight, bias_view, &params, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(linear_doc, "linear(algorithm, input, weight, bias, output)\n--\n\n"
                         "Writes input · weightᵀ + bias into output and returns output.");

static PyObject *py_linear(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *weight_obj, *bias_obj, *output_obj;
    if (!PyArg_ParseTuple(args, "sOOOO:linear", &algorithm, &input_obj, &weight_obj, &bias_obj,
                          &output_obj))
        return NULL;
    ai3_tensor input, weight, bias, output;
    PyObject *const objs[] = {input_obj, weight_obj, bias_obj == Py_None ? NULL : bias_obj,
                              output_obj};
    const char *const names[] = {"input", "weight", "bias", "output"};
    ai3_tensor *views[] = {&input, &weight, &bias, &output};
    if (tensor_views("linear", 4, objs, names, views) < 0)
        return NULL;
    const ai3_tensor *bias_view = bias_obj == Py_None ? NULL : &bias;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_linear(algorithm, &input, &weight, bias_view, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(maxpool2d_doc,
             "maxpool2d(algorithm, input, output, kernel_h, kernel_w, stride_h, stride_w, "
             "pad_h, pad_w, dilation_h, dilation_w, ceil_mode)\n--\n\n"
             "Writes the 2-d max pooling of input into output and returns output.");

static PyObject *py_maxpool2d(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    long long kh, kw, sh, sw, ph, pw, dh, dw;
    int ceil_mode;
    if (!PyArg_ParseTuple(args, "sOOLLLLLLLLp:maxpool2d", &algorithm, &input_obj, &output_obj,
                          &kh, &kw, &sh, &sw, &ph, &pw, &dh, &dw, &ceil_mode))
        return NULL;
    ai3_tensor input, output;
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {&input, &output};
    if (tensor_views("maxpool2d", 2, objs, names, views) < 0)
        return NULL;
    ai3_pool2d_params params = ai3_pool2d_params_default(kh, kw);
    params.stride_h = sh;
    params.stride_w = sw;
    params.pad_h = ph;
    params.pad_w = pw;
    params.dilation_h = dh;
    params.dilation_w = dw;
    params.ceil_mode = ceil_mode;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_maxpool2d(algorithm, &input, &params, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(avgpool2d_doc,
             "avgpool2d(algorithm, input, output, kernel_h, kernel_w, stride_h, stride_w, "
             "pad_h, pad_w, ceil_mode, count_include_pad, divisor_override)\n--\n\n"
             "Writes the 2-d average pooling of input into output and returns output. "
             "divisor_override 0 means none.");

static PyObject *py_avgpool2d(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    long long kh, kw, sh, sw, ph, pw, divisor_override;
    int ceil_mode, count_include_pad;
    if (!PyArg_ParseTuple(args, "sOOLLLLLLppL:avgpool2d", &algorithm, &input_obj, &output_obj,
                          &kh, &kw, &sh, &sw, &ph, &pw, &ceil_mode, &count_include_pad,
                          &divisor_override))
        return NULL;
    ai3_tensor input, output;
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {&input, &output};
    if (tensor_views("avgpool2d", 2, objs, names, views) < 0)
        return NULL;
    ai3_pool2d_params params = ai3_pool2d_params_default(kh, kw);
    params.stride_h = sh;
    params.stride_w = sw;
    params.pad_h = ph;
    params.pad_w = pw;
    params.ceil_mode = ceil_mode;
    params.count_include_pad = count_include_pad;
    params.divisor_override = divisor_override;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_avgpool2d(algorithm, &input, &params, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(adaptiveavgpool2d_doc,
             "adaptiveavgpool2d(algorithm, input, output)\n--\n\n"
             "Writes the adaptive average pooling of input into output (whose last two "
             "sizes are the output size) and returns output.");

static PyObject *py_adaptiveavgpool2d(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    if (!PyArg_ParseTuple(args, "sOO:adaptiveavgpool2d", &algorithm, &input_obj, &output_obj))
        return NULL;
    ai3_tensor input, output;
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {&input, &output};
    if (tensor_views("adaptiveavgpool2d", 2, objs, names, views) < 0)
        return NULL;
    if (output.ndim < 2) {
        PyErr_SetString(PyExc_ValueError,
                        "ai3 adaptiveavgpool2d: output must have at least 2 dimensions");
        return NULL;
    }
    int64_t out_h = output.shape[output.ndim - 2], out_w = output.shape[output.ndim - 1];
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_adaptiveavgpool2d(algorithm, &input, out_h, out_w, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(relu_doc, "relu(algorithm, input, output)\n--\n\n"
                       "Writes max(input, 0) into output and returns output.");

static PyObject *py_relu(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    if (!PyArg_ParseTuple(args, "sOO:relu", &algorithm, &input_obj, &output_obj))
        return NULL;
    ai3_tensor input, output;
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {&input, &output};
    if (tensor_views("relu", 2, objs, names, views) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_relu(algorithm, &input, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(flatten_doc, "flatten(algorithm, input, output, start_dim, end_dim)\n--\n\n"
                          "Writes input with dimensions start_dim..end_dim merged into "
                          "output and returns output.");

static PyObject *py_flatten(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    int start_dim, end_dim;
    if (!PyArg_ParseTuple(args, "sOOii:flatten", &algorithm, &input_obj, &output_obj,
                          &start_dim, &end_dim))
        return NULL;
    ai3_tensor input, output;
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {&input, &output};
    if (tensor_views("flatten", 2, objs, names, views) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_flatten(algorithm, &input, start_dim, end_dim, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

/* ------------------------------------------------------------------------ */
/* Threads and the algorithm registry                                        */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(set_num_threads_doc, "set_num_threads(n)\n--\n\n"
                                  "Sets the number of threads (n >= 1) every operation uses.");

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "ai3: the number of threads must be at least 1, not %ld",
                     n);
        return NULL;
    }
    ai3_status status = ai3_set_num_threads((int)n);
    if (status != AI3_OK)
        return raise_status(status);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc, "get_num_threads()\n--\n\n"
                                  "The number of threads every operation uses.");

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(ai3_get_num_threads());
}

PyDoc_STRVAR(list_algorithms_doc,
             "list_algorithms(op_name)\n--\n\n"
             "The names of the algorithms of an operation ('conv2d', 'linear', ...), "
             "built-in first, then those registered at run time; 'default' is not listed.");

static PyObject *py_list_algorithms(PyObject *self, PyObject *args)
{
    const char *op_name;
    if (!PyArg_ParseTuple(args, "s:list_algorithms", &op_name))
        return NULL;
    int op = op_from_name(op_name);
    if (op < 0)
        return NULL;
    return algorithm_names((ai3_op)op);
}

PyDoc_STRVAR(default_algorithm_doc, "default_algorithm(op_name)\n--\n\n"
                                    "The algorithm that 'default' stands for.");

static PyObject *py_default_algorithm(PyObject *self, PyObject *args)
{
    const char *op_name;
    if (!PyArg_ParseTuple(args, "s:default_algorithm", &op_name))
        return NULL;
    int op = op_from_name(op_name);
    if (op < 0)
        return NULL;
    const char *name = ai3_default_algorithm((ai3_op)op);
    if (!name) {
        PyErr_Format(PyExc_RuntimeError, "ai3: no default algorithm for %s", op_name);
        return NULL;
    }
    return PyUnicode_FromString(name);
}

PyDoc_STRVAR(load_algorithms_doc,
             "load_algorithms(path)\n--\n\n"
             "Loads a shared library of custom algorithms and calls its "
             "ai3_init_algorithms, which registers them.");

static PyObject *py_load_algorithms(PyObject *self, PyObject *args)
{
    PyObject *path_bytes;
    if (!PyArg_ParseTuple(args, "O&:load_algorithms", PyUnicode_FSConverter, &path_bytes))
        return NULL;
    ai3_status status = ai3_load_algorithms(PyBytes_AS_STRING(path_bytes));
    Py_DECREF(path_bytes);
    if (status != AI3_OK)
        return raise_status(status);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ */
/* Plans: conv2d and linear weights prepared once, as PyCapsules             */
/* ------------------------------------------------------------------------ */

static const char *const CONV2D_PLAN = "ai3.conv2d_plan";
static const char *const LINEAR_PLAN = "ai3.linear_plan";

static void destroy_conv2d_plan(PyObject *capsule)
{
    ai3_conv2d_plan_destroy(PyCapsule_GetPointer(capsule, CONV2D_PLAN));
}

static void destroy_linear_plan(PyObject *capsule)
{
    ai3_linear_plan_destroy(PyCapsule_GetPointer(capsule, LINEAR_PLAN));
}

PyDoc_STRVAR(conv2d_plan_doc,
             "conv2d_plan(algorithm, weight, bias, stride_h, stride_w, pad_top, pad_bottom, "
             "pad_left, pad_right, dilation_h, dilation_w, groups, padding_mode, input)\n--\n\n"
             "A conv2d plan: the weights prepared once for the algorithm (a copy is kept). "
             "input (or None) is a sample input whose shape 'guess' chooses for.");

static PyObject *py_conv2d_plan(PyObject *self, PyObject *args)
{
    const char *algorithm, *mode_name;
    PyObject *weight_obj, *bias_obj, *input_obj;
    long long stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, dilation_h,
        dilation_w, groups;
    if (!PyArg_ParseTuple(args, "sOOLLLLLLLLLsO:conv2d_plan", &algorithm, &weight_obj, &bias_obj,
                          &stride_h, &stride_w, &pad_top, &pad_bottom, &pad_left, &pad_right,
                          &dilation_h, &dilation_w, &groups, &mode_name, &input_obj))
        return NULL;
    ai3_tensor weight, bias, input;
    PyObject *const objs[] = {weight_obj, bias_obj == Py_None ? NULL : bias_obj,
                              input_obj == Py_None ? NULL : input_obj};
    const char *const names[] = {"weight", "bias", "input"};
    ai3_tensor *views[] = {&weight, &bias, &input};
    if (tensor_views("conv2d", 3, objs, names, views) < 0)
        return NULL;
    ai3_conv2d_params params = {
        .stride_h = stride_h, .stride_w = stride_w,
        .pad_top = pad_top, .pad_bottom = pad_bottom,
        .pad_left = pad_left, .pad_right = pad_right,
        .dilation_h = dilation_h, .dilation_w = dilation_w,
        .groups = groups,
    };
    if (parse_padding_mode(mode_name, &params.padding_mode) < 0)
        return NULL;
    ai3_conv2d_plan *plan = NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_conv2d_plan_create(algorithm, &weight, bias_obj == Py_None ? NULL : &bias,
                                    &params, input_obj == Py_None ? NULL : &input, &plan);
    Py_END_ALLOW_THREADS
    if (status != AI3_OK)
        return raise_status(status);
    PyObject *capsule = PyCapsule_New(plan, CONV2D_PLAN, destroy_conv2d_plan);
    if (!capsule)
        ai3_conv2d_plan_destroy(plan);
    return capsule;
}

PyDoc_STRVAR(conv2d_plan_algorithm_doc,
             "conv2d_plan_algorithm(plan)\n--\n\nThe algorithm the plan runs.");

static PyObject *py_conv2d_plan_algorithm(PyObject *self, PyObject *capsule)
{
    ai3_conv2d_plan *plan = PyCapsule_GetPointer(capsule, CONV2D_PLAN);
    return plan ? PyUnicode_FromString(ai3_conv2d_plan_algorithm(plan)) : NULL;
}

PyDoc_STRVAR(conv2d_plan_run_doc, "conv2d_plan_run(plan, input, output)\n--\n\n"
                                  "Runs the plan on input into output and returns output.");

static PyObject *py_conv2d_plan_run(PyObject *self, PyObject *args)
{
    PyObject *capsule, *input_obj, *output_obj;
    if (!PyArg_ParseTuple(args, "OOO:conv2d_plan_run", &capsule, &input_obj, &output_obj))
        return NULL;
    ai3_conv2d_plan *plan = PyCapsule_GetPointer(capsule, CONV2D_PLAN);
    if (!plan)
        return NULL;
    ai3_tensor input, output;
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {&input, &output};
    if (tensor_views("conv2d", 2, objs, names, views) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_conv2d_plan_run(plan, &input, &output, NULL, 0);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(linear_plan_doc, "linear_plan(algorithm, weight, bias)\n--\n\n"
                              "A linear plan: the weights prepared once (a copy is kept).");

static PyObject *py_linear_plan(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *weight_obj, *bias_obj;
    if (!PyArg_ParseTuple(args, "sOO:linear_plan", &algorithm, &weight_obj, &bias_obj))
        return NULL;
    ai3_tensor weight, bias;
    PyObject *const objs[] = {weight_obj, bias_obj == Py_None ? NULL : bias_obj};
    const char *const names[] = {"weight", "bias"};
    ai3_tensor *views[] = {&weight, &bias};
    if (tensor_views("linear", 2, objs, names, views) < 0)
        return NULL;
    ai3_linear_plan *plan = NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_linear_plan_create(algorithm, &weight, bias_obj == Py_None ? NULL : &bias, &plan);
    Py_END_ALLOW_THREADS
    if (status != AI3_OK)
        return raise_status(status);
    PyObject *capsule = PyCapsule_New(plan, LINEAR_PLAN, destroy_linear_plan);
    if (!capsule)
        ai3_linear_plan_destroy(plan);
    return capsule;
}

PyDoc_STRVAR(linear_plan_run_doc, "linear_plan_run(plan, input, output)\n--\n\n"
                                  "Runs the plan on input into output and returns output.");

static PyObject *py_linear_plan_run(PyObject *self, PyObject *args)
{
    PyObject *capsule, *input_obj, *output_obj;
    if (!PyArg_ParseTuple(args, "OOO:linear_plan_run", &capsule, &input_obj, &output_obj))
        return NULL;
    ai3_linear_plan *plan = PyCapsule_GetPointer(capsule, LINEAR_PLAN);
    if (!plan)
        return NULL;
    ai3_tensor input, output;
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {&input, &output};
    if (tensor_views("linear", 2, objs, names, views) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_linear_plan_run(plan, &input, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

static PyMethodDef core_methods[] = {
    {"conv2d", py_conv2d, METH_VARARGS, conv2d_doc},
    {"linear", py_linear, METH_VARARGS, linear_doc},
    {"conv2d_plan", py_conv2d_plan, METH_VARARGS, conv2d_plan_doc},
    {"conv2d_plan_algorithm", py_conv2d_plan_algorithm, METH_O, conv2d_plan_algorithm_doc},
    {"conv2d_plan_run", py_conv2d_plan_run, METH_VARARGS, conv2d_plan_run_doc},
    {"linear_plan", py_linear_plan, METH_VARARGS, linear_plan_doc},
    {"linear_plan_run", py_linear_plan_run, METH_VARARGS, linear_plan_run_doc},
    {"maxpool2d", py_maxpool2d, METH_VARARGS, maxpool2d_doc},
    {"avgpool2d", py_avgpool2d, METH_VARARGS, avgpool2d_doc},
    {"adaptiveavgpool2d", py_adaptiveavgpool2d, METH_VARARGS, adaptiveavgpool2d_doc},
    {"relu", py_relu, METH_VARARGS, relu_doc},
    {"flatten", py_flatten, METH_VARARGS, flatten_doc},
    {"set_num_threads", py_set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, get_num_threads_doc},
    {"list_algorithms", py_list_algorithms, METH_VARARGS, list_algorithms_doc},
    {"default_algorithm", py_default_algorithm, METH_VARARGS, default_algorithm_doc},
    {"load_algorithms", py_load_algorithms, METH_VARARGS, load_algorithms_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ai3._core",
    .m_doc = "The C core of ai3: torch tensors in, libai3 calls, torch tensors out.",
    .m_size = -1,
    .m_methods = core_methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    static const struct {
        PyObject **slot;
        const char *text;
    } interned[] = {
        {&str_dtype, "dtype"},       {&str_device, "device"},
        {&str_type, "type"},         {&str_shape, "shape"},
        {&str_data_ptr, "data_ptr"}, {&str_is_contiguous, "is_contiguous"},
    };
    for (size_t i = 0; i < sizeof(interned) / sizeof(interned[0]); i++) {
        if (!*interned[i].slot)
            *interned[i].slot = PyUnicode_InternFromString(interned[i].text);
        if (!*interned[i].slot)
            return NULL;
    }
    if (!unsupported_error) {
        PyObject *errors = PyImport_ImportModule("ai3._errors");
        if (!errors)
            return NULL;
        unsupported_error = PyObject_GetAttrString(errors, "UnsupportedError");
        Py_DECREF(errors);
        if (!unsupported_error)
            return NULL;
    }

    PyObject *module = PyModule_Create(&core_module);
    if (!module)
        return NULL;
    if (PyModule_AddStringConstant(module, "__version__", AI3_VERSION_STRING) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
