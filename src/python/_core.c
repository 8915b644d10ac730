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

/* The views of the input and output of a call (tensor_views for the two). */
static int input_output_views(const char *op, PyObject *input_obj, PyObject *output_obj,
                              ai3_tensor *input, ai3_tensor *output)
{
    PyObject *const objs[] = {input_obj, output_obj};
    const char *const names[] = {"input", "output"};
    ai3_tensor *views[] = {input, output};
    return tensor_views(op, 2, objs, names, views);
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
    if (input_output_views("maxpool2d", input_obj, output_obj, &input, &output) < 0)
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
    if (input_output_views("avgpool2d", input_obj, output_obj, &input, &output) < 0)
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
    if (input_output_views("adaptiveavgpool2d", input_obj, output_obj, &input, &output) < 0)
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
    if (input_output_views("relu", input_obj, output_obj, &input, &output) < 0)
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
    if (input_output_views("flatten", input_obj, output_obj, &input, &output) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_flatten(algorithm, &input, start_dim, end_dim, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

/* ------------------------------------------------------------------------ */
/* More operations, for whole networks                                       */
/* ------------------------------------------------------------------------ */

/* Parses a sequence of ints (dims, perm) into out[AI3_MAX_DIMS]; returns the
 * count, or -1 with an exception set. */
static int int_list(PyObject *seq, const char *op, const char *what, int out[AI3_MAX_DIMS])
{
    PyObject *items = PySequence_Fast(seq, "expected a sequence of ints");
    if (!items)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n > AI3_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "ai3 %s: %s has %zd entries; at most %d are supported", op,
                     what, n, AI3_MAX_DIMS);
        Py_DECREF(items);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(items, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(items);
            return -1;
        }
        if (v < INT_MIN || v > INT_MAX) {
            PyErr_Format(PyExc_ValueError, "ai3 %s: %s entry %ld is out of range", op, what, v);
            Py_DECREF(items);
            return -1;
        }
        out[i] = (int)v;
    }
    Py_DECREF(items);
    return (int)n;
}

PyDoc_STRVAR(batchnorm2d_doc,
             "batchnorm2d(algorithm, input, running_mean, running_var, weight, bias, eps, "
             "output)\n--\n\n"
             "Writes the inference-mode batch norm of input into output and returns output; "
             "weight and bias may be None.");

static PyObject *py_batchnorm2d(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *mean_obj, *var_obj, *weight_obj, *bias_obj, *output_obj;
    double eps;
    if (!PyArg_ParseTuple(args, "sOOOOOdO:batchnorm2d", &algorithm, &input_obj, &mean_obj,
                          &var_obj, &weight_obj, &bias_obj, &eps, &output_obj))
        return NULL;
    ai3_tensor input, mean, var, weight, bias, output;
    PyObject *const objs[] = {input_obj, mean_obj, var_obj,
                              weight_obj == Py_None ? NULL : weight_obj,
                              bias_obj == Py_None ? NULL : bias_obj, output_obj};
    const char *const names[] = {"input", "running_mean", "running_var", "weight", "bias",
                                 "output"};
    ai3_tensor *views[] = {&input, &mean, &var, &weight, &bias, &output};
    if (tensor_views("batchnorm2d", 6, objs, names, views) < 0)
        return NULL;
    const ai3_tensor *w = weight_obj == Py_None ? NULL : &weight;
    const ai3_tensor *b = bias_obj == Py_None ? NULL : &bias;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_batchnorm2d(algorithm, &input, &mean, &var, w, b, eps, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

/* add and mul: (algorithm, a, b, output). */
static PyObject *binary(PyObject *args, const char *format, const char *op,
                        ai3_status (*fn)(const char *, const ai3_tensor *, const ai3_tensor *,
                                         ai3_tensor *))
{
    const char *algorithm;
    PyObject *a_obj, *b_obj, *output_obj;
    if (!PyArg_ParseTuple(args, format, &algorithm, &a_obj, &b_obj, &output_obj))
        return NULL;
    ai3_tensor a, b, output;
    PyObject *const objs[] = {a_obj, b_obj, output_obj};
    const char *const names[] = {"a", "b", "output"};
    ai3_tensor *views[] = {&a, &b, &output};
    if (tensor_views(op, 3, objs, names, views) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = fn(algorithm, &a, &b, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(add_doc, "add(algorithm, a, b, output)\n--\n\n"
                      "Writes a + b (broadcast) into output and returns output.");

static PyObject *py_add(PyObject *self, PyObject *args)
{
    return binary(args, "sOOO:add", "add", ai3_add);
}

PyDoc_STRVAR(mul_doc, "mul(algorithm, a, b, output)\n--\n\n"
                      "Writes a * b (broadcast) into output and returns output.");

static PyObject *py_mul(PyObject *self, PyObject *args)
{
    return binary(args, "sOOO:mul", "mul", ai3_mul);
}

PyDoc_STRVAR(cat_doc, "cat(algorithm, inputs, dim, output)\n--\n\n"
                      "Writes the inputs (a sequence of tensors) joined along dim into output "
                      "and returns output.");

static PyObject *py_cat(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *inputs_obj, *output_obj;
    int dim;
    if (!PyArg_ParseTuple(args, "sOiO:cat", &algorithm, &inputs_obj, &dim, &output_obj))
        return NULL;
    PyObject *items = PySequence_Fast(inputs_obj, "ai3 cat: inputs must be a sequence of tensors");
    if (!items)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n > INT_MAX) {
        Py_DECREF(items);
        return PyErr_Format(PyExc_ValueError, "ai3 cat: too many inputs");
    }
    ai3_tensor *views = PyMem_Calloc((size_t)n + 1, sizeof(ai3_tensor));
    const ai3_tensor **ptrs = PyMem_Calloc((size_t)n + 1, sizeof(ai3_tensor *));
    PyObject *result = NULL;
    if (!views || !ptrs) {
        PyErr_NoMemory();
        goto done;
    }
    ai3_tensor output;
    if (tensor_view(output_obj, "cat", "output", &output) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "input %zd", i);
        if (tensor_view(PySequence_Fast_GET_ITEM(items, i), "cat", what, &views[i]) < 0)
            goto done;
        ptrs[i] = &views[i];
    }
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_cat(algorithm, ptrs, (int)n, dim, &output);
    Py_END_ALLOW_THREADS
    result = finish(status, output_obj);
done:
    PyMem_Free(views);
    PyMem_Free(ptrs);
    Py_DECREF(items);
    return result;
}

PyDoc_STRVAR(hardtanh_doc, "hardtanh(algorithm, input, output, min_val, max_val)\n--\n\n"
                           "Writes input clamped to [min_val, max_val] into output and returns "
                           "output.");

static PyObject *py_hardtanh(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    double min_val, max_val;
    if (!PyArg_ParseTuple(args, "sOOdd:hardtanh", &algorithm, &input_obj, &output_obj, &min_val,
                          &max_val))
        return NULL;
    ai3_tensor input, output;
    if (input_output_views("hardtanh", input_obj, output_obj, &input, &output) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_hardtanh(algorithm, &input, min_val, max_val, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

/* sigmoid, hardsigmoid, hardswish, silu: (algorithm, input, output). */
static PyObject *activation(PyObject *args, const char *format, const char *op,
                            ai3_status (*fn)(const char *, const ai3_tensor *, ai3_tensor *))
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    if (!PyArg_ParseTuple(args, format, &algorithm, &input_obj, &output_obj))
        return NULL;
    ai3_tensor input, output;
    if (input_output_views(op, input_obj, output_obj, &input, &output) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = fn(algorithm, &input, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(sigmoid_doc, "sigmoid(algorithm, input, output)\n--\n\n"
                          "Writes 1 / (1 + exp(-input)) into output and returns output.");

static PyObject *py_sigmoid(PyObject *self, PyObject *args)
{
    return activation(args, "sOO:sigmoid", "sigmoid", ai3_sigmoid);
}

PyDoc_STRVAR(hardsigmoid_doc, "hardsigmoid(algorithm, input, output)\n--\n\n"
                              "Writes min(max(input + 3, 0), 6) / 6 into output and returns "
                              "output.");

static PyObject *py_hardsigmoid(PyObject *self, PyObject *args)
{
    return activation(args, "sOO:hardsigmoid", "hardsigmoid", ai3_hardsigmoid);
}

PyDoc_STRVAR(hardswish_doc, "hardswish(algorithm, input, output)\n--\n\n"
                            "Writes input · hardsigmoid(input) into output and returns output.");

static PyObject *py_hardswish(PyObject *self, PyObject *args)
{
    return activation(args, "sOO:hardswish", "hardswish", ai3_hardswish);
}

PyDoc_STRVAR(silu_doc, "silu(algorithm, input, output)\n--\n\n"
                       "Writes input · sigmoid(input) into output and returns output.");

static PyObject *py_silu(PyObject *self, PyObject *args)
{
    return activation(args, "sOO:silu", "silu", ai3_silu);
}

PyDoc_STRVAR(gelu_doc, "gelu(algorithm, input, output, tanh_approximation)\n--\n\n"
                       "Writes gelu(input) (exact, or torch's approximate='tanh') into output "
                       "and returns output.");

static PyObject *py_gelu(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    int tanh_approximation;
    if (!PyArg_ParseTuple(args, "sOOp:gelu", &algorithm, &input_obj, &output_obj,
                          &tanh_approximation))
        return NULL;
    ai3_tensor input, output;
    if (input_output_views("gelu", input_obj, output_obj, &input, &output) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_gelu(algorithm, &input, tanh_approximation, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(mean_doc, "mean(algorithm, input, output, dims, keepdim)\n--\n\n"
                       "Writes the mean of input over dims (empty: all) into output and "
                       "returns output.");

static PyObject *py_mean(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj, *dims_obj;
    int keepdim;
    if (!PyArg_ParseTuple(args, "sOOOp:mean", &algorithm, &input_obj, &output_obj, &dims_obj,
                          &keepdim))
        return NULL;
    int dims[AI3_MAX_DIMS];
    int n_dims = int_list(dims_obj, "mean", "dims", dims);
    if (n_dims < 0)
        return NULL;
    ai3_tensor input, output;
    if (input_output_views("mean", input_obj, output_obj, &input, &output) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_mean(algorithm, &input, dims, n_dims, keepdim, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(permute_doc, "permute(algorithm, input, output, perm)\n--\n\n"
                          "Writes input with its dimensions reordered by perm into output and "
                          "returns output.");

static PyObject *py_permute(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj, *perm_obj;
    if (!PyArg_ParseTuple(args, "sOOO:permute", &algorithm, &input_obj, &output_obj, &perm_obj))
        return NULL;
    int perm[AI3_MAX_DIMS];
    int n = int_list(perm_obj, "permute", "perm", perm);
    if (n < 0)
        return NULL;
    ai3_tensor input, output;
    if (input_output_views("permute", input_obj, output_obj, &input, &output) < 0)
        return NULL;
    if (n != input.ndim)
        return PyErr_Format(PyExc_ValueError,
                            "ai3 permute: perm has %d entries but the input has %d dimensions", n,
                            input.ndim);
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_permute(algorithm, &input, perm, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(layernorm_doc,
             "layernorm(algorithm, input, normalized_ndim, weight, bias, eps, output)\n--\n\n"
             "Writes the layer norm of input over its last normalized_ndim dimensions into "
             "output and returns output; weight and bias may be None.");

static PyObject *py_layernorm(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *weight_obj, *bias_obj, *output_obj;
    int normalized_ndim;
    double eps;
    if (!PyArg_ParseTuple(args, "sOiOOdO:layernorm", &algorithm, &input_obj, &normalized_ndim,
                          &weight_obj, &bias_obj, &eps, &output_obj))
        return NULL;
    ai3_tensor input, weight, bias, output;
    PyObject *const objs[] = {input_obj, weight_obj == Py_None ? NULL : weight_obj,
                              bias_obj == Py_None ? NULL : bias_obj, output_obj};
    const char *const names[] = {"input", "weight", "bias", "output"};
    ai3_tensor *views[] = {&input, &weight, &bias, &output};
    if (tensor_views("layernorm", 4, objs, names, views) < 0)
        return NULL;
    const ai3_tensor *w = weight_obj == Py_None ? NULL : &weight;
    const ai3_tensor *b = bias_obj == Py_None ? NULL : &bias;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_layernorm(algorithm, &input, normalized_ndim, w, b, eps, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

PyDoc_STRVAR(softmax_doc, "softmax(algorithm, input, output, dim)\n--\n\n"
                          "Writes the softmax of input along dim into output and returns "
                          "output.");

static PyObject *py_softmax(PyObject *self, PyObject *args)
{
    const char *algorithm;
    PyObject *input_obj, *output_obj;
    int dim;
    if (!PyArg_ParseTuple(args, "sOOi:softmax", &algorithm, &input_obj, &output_obj, &dim))
        return NULL;
    ai3_tensor input, output;
    if (input_output_views("softmax", input_obj, output_obj, &input, &output) < 0)
        return NULL;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_softmax(algorithm, &input, dim, &output);
    Py_END_ALLOW_THREADS
    return finish(status, output_obj);
}

/* ------------------------------------------------------------------------ */
/* Graphs (ai3.Model): a capsule holding an ai3_graph                         */
/* ------------------------------------------------------------------------ */

#define GRAPH_CAPSULE "ai3.graph"

static PyObject *torch_empty;

static void graph_capsule_destroy(PyObject *capsule)
{
    ai3_graph_destroy(PyCapsule_GetPointer(capsule, GRAPH_CAPSULE));
}

static ai3_graph *graph_of(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, GRAPH_CAPSULE);
}

/* The graph's dtype, kept as the capsule's context. */
static ai3_dtype graph_dtype(PyObject *capsule)
{
    return (ai3_dtype)(intptr_t)PyCapsule_GetContext(capsule);
}

/* The new value id *value as a Python int, or the status as an exception.
 * (A pointer: the id is read after the call that writes it.) */
static PyObject *graph_value(ai3_status status, const int *value)
{
    if (status != AI3_OK)
        return raise_status(status);
    return PyLong_FromLong(*value);
}

/* Reads a sequence of at most `cap` ints into out[]; their count, or -1. */
static int int_sequence(PyObject *seq, const char *what, int *out, int cap)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > cap) {
        PyErr_Format(PyExc_ValueError, "ai3 graph: %s has %zd entries, at most %d allowed", what,
                     n, cap);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        out[i] = (int)v;
    }
    Py_DECREF(fast);
    return (int)n;
}

/* A tensor argument that may be None. */
static int optional_view(PyObject *obj, const char *op, const char *what, ai3_tensor *view,
                         const ai3_tensor **out)
{
    *out = NULL;
    if (obj == Py_None)
        return 0;
    if (tensor_view(obj, op, what, view) < 0)
        return -1;
    *out = view;
    return 0;
}

/* Shape-only views of the graph's inputs from a sequence of shapes. */
static int shape_views(PyObject *capsule, PyObject *shapes, ai3_tensor *views, int cap)
{
    PyObject *fast = PySequence_Fast(shapes, "input shapes must be a sequence");
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > cap) {
        PyErr_Format(PyExc_ValueError, "ai3 graph: at most %d inputs", cap);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int dims[AI3_MAX_DIMS];
        int nd = int_sequence(PySequence_Fast_GET_ITEM(fast, i), "an input shape", dims,
                              AI3_MAX_DIMS);
        if (nd < 0) {
            Py_DECREF(fast);
            return -1;
        }
        memset(&views[i], 0, sizeof views[i]);
        views[i].dtype = graph_dtype(capsule);
        views[i].ndim = nd;
        for (int d = 0; d < nd; d++)
            views[i].shape[d] = dims[d];
    }
    Py_DECREF(fast);
    return (int)n;
}

PyDoc_STRVAR(graph_create_doc, "graph_create(dtype_name)\n--\n\n"
                               "A new empty graph computing in 'float32' or 'float64'.");

static PyObject *py_graph_create(PyObject *self, PyObject *args)
{
    const char *dtype_name;
    if (!PyArg_ParseTuple(args, "s:graph_create", &dtype_name))
        return NULL;
    ai3_dtype dtype;
    if (strcmp(dtype_name, "float32") == 0) {
        dtype = AI3_FLOAT32;
    } else if (strcmp(dtype_name, "float64") == 0) {
        dtype = AI3_FLOAT64;
    } else {
        PyErr_Format(PyExc_ValueError, "ai3 graph: dtype must be 'float32' or 'float64', not '%s'",
                     dtype_name);
        return NULL;
    }
    ai3_graph *graph;
    ai3_status status = ai3_graph_create(dtype, &graph);
    if (status != AI3_OK)
        return raise_status(status);
    PyObject *capsule = PyCapsule_New(graph, GRAPH_CAPSULE, graph_capsule_destroy);
    if (!capsule) {
        ai3_graph_destroy(graph);
        return NULL;
    }
    if (PyCapsule_SetContext(capsule, (void *)(intptr_t)dtype) < 0) {
        Py_DECREF(capsule);
        return NULL;
    }
    return capsule;
}

PyDoc_STRVAR(graph_input_doc, "graph_input(graph)\n--\n\nAdds an input; returns its value id.");

static PyObject *py_graph_input(PyObject *self, PyObject *capsule)
{
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    return graph_value(ai3_graph_add_input(g, &value), &value);
}

PyDoc_STRVAR(graph_constant_doc, "graph_constant(graph, tensor)\n--\n\n"
                                 "Adds a constant (copied); returns its value id.");

static PyObject *py_graph_constant(PyObject *self, PyObject *args)
{
    PyObject *capsule, *obj;
    if (!PyArg_ParseTuple(args, "OO:graph_constant", &capsule, &obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor t;
    if (!g || tensor_view(obj, "graph", "constant", &t) < 0)
        return NULL;
    int value;
    return graph_value(ai3_graph_add_constant(g, &t, &value), &value);
}

PyDoc_STRVAR(graph_set_name_doc, "graph_set_name(graph, value, name)\n--\n\n"
                                 "Names a value's node in error messages.");

static PyObject *py_graph_set_name(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    int value;
    const char *name;
    if (!PyArg_ParseTuple(args, "Ois:graph_set_name", &capsule, &value, &name))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    ai3_status status = ai3_graph_set_name(g, value, name);
    if (status != AI3_OK)
        return raise_status(status);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(graph_set_outputs_doc, "graph_set_outputs(graph, values)\n--\n\n"
                                    "Sets the graph's outputs (a sequence of value ids).");

static PyObject *py_graph_set_outputs(PyObject *self, PyObject *args)
{
    PyObject *capsule, *values_obj;
    if (!PyArg_ParseTuple(args, "OO:graph_set_outputs", &capsule, &values_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int values[64];
    int n = int_sequence(values_obj, "the outputs", values, 64);
    if (n < 0)
        return NULL;
    ai3_status status = ai3_graph_set_outputs(g, n, values);
    if (status != AI3_OK)
        return raise_status(status);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(graph_conv2d_doc,
             "graph_conv2d(graph, algorithm, input, weight, bias, stride_h, stride_w, pad_top, "
             "pad_bottom, pad_left, pad_right, dilation_h, dilation_w, groups, padding_mode, "
             "input_shape)\n--\n\nAdds a conv2d node (weights copied, planned now); "
             "input_shape is None or the expected input shape.");

static PyObject *py_graph_conv2d(PyObject *self, PyObject *args)
{
    PyObject *capsule, *weight_obj, *bias_obj, *shape_obj;
    const char *algorithm, *mode_name;
    int input;
    long long sh, sw, pt, pb, pl, pr, dh, dw, groups;
    if (!PyArg_ParseTuple(args, "OsiOOLLLLLLLLLsO:graph_conv2d", &capsule, &algorithm, &input,
                          &weight_obj, &bias_obj, &sh, &sw, &pt, &pb, &pl, &pr, &dh, &dw,
                          &groups, &mode_name, &shape_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor weight, bias, shape_view;
    const ai3_tensor *bias_view, *shape = NULL;
    if (!g || tensor_view(weight_obj, "conv2d", "weight", &weight) < 0 ||
        optional_view(bias_obj, "conv2d", "bias", &bias, &bias_view) < 0)
        return NULL;
    if (shape_obj != Py_None) {
        PyObject *one = PyTuple_Pack(1, shape_obj);
        int n = one ? shape_views(capsule, one, &shape_view, 1) : -1;
        Py_XDECREF(one);
        if (n < 0)
            return NULL;
        shape = &shape_view;
    }
    ai3_conv2d_params params = {
        .stride_h = sh, .stride_w = sw, .pad_top = pt, .pad_bottom = pb, .pad_left = pl,
        .pad_right = pr, .dilation_h = dh, .dilation_w = dw, .groups = groups,
    };
    if (parse_padding_mode(mode_name, &params.padding_mode) < 0)
        return NULL;
    int value;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS /* plans may transform weights */
    status = ai3_graph_conv2d(g, algorithm, input, &weight, bias_view, &params, shape, &value);
    Py_END_ALLOW_THREADS
    return graph_value(status, &value);
}

PyDoc_STRVAR(graph_conv2d_algorithm_doc,
             "graph_conv2d_algorithm(graph, value)\n--\n\n"
             "The algorithm the conv2d node producing value runs ('default' and 'guess' "
             "resolved).");

static PyObject *py_graph_conv2d_algorithm(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    int value;
    if (!PyArg_ParseTuple(args, "Oi:graph_conv2d_algorithm", &capsule, &value))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    const char *name = ai3_graph_conv2d_algorithm(g, value);
    if (!name)
        Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

PyDoc_STRVAR(graph_linear_doc, "graph_linear(graph, algorithm, input, weight, bias)\n--\n\n"
                               "Adds a linear node (weights copied and planned).");

static PyObject *py_graph_linear(PyObject *self, PyObject *args)
{
    PyObject *capsule, *weight_obj, *bias_obj;
    const char *algorithm;
    int input;
    if (!PyArg_ParseTuple(args, "OsiOO:graph_linear", &capsule, &algorithm, &input, &weight_obj,
                          &bias_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor weight, bias;
    const ai3_tensor *bias_view;
    if (!g || tensor_view(weight_obj, "linear", "weight", &weight) < 0 ||
        optional_view(bias_obj, "linear", "bias", &bias, &bias_view) < 0)
        return NULL;
    int value;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_graph_linear(g, algorithm, input, &weight, bias_view, &value);
    Py_END_ALLOW_THREADS
    return graph_value(status, &value);
}

PyDoc_STRVAR(graph_pool_doc,
             "graph_pool(graph, op, algorithm, input, kernel_h, kernel_w, stride_h, stride_w, "
             "pad_h, pad_w, dilation_h, dilation_w, ceil_mode, count_include_pad, "
             "divisor_override)\n--\n\nAdds a 'maxpool2d' or 'avgpool2d' node.");

static PyObject *py_graph_pool(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *op, *algorithm;
    int input, ceil_mode, count_include_pad;
    long long kh, kw, sh, sw, ph, pw, dh, dw, divisor;
    if (!PyArg_ParseTuple(args, "OssiLLLLLLLLppL:graph_pool", &capsule, &op, &algorithm, &input,
                          &kh, &kw, &sh, &sw, &ph, &pw, &dh, &dw, &ceil_mode,
                          &count_include_pad, &divisor))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    ai3_pool2d_params p = ai3_pool2d_params_default(kh, kw);
    p.stride_h = sh;
    p.stride_w = sw;
    p.pad_h = ph;
    p.pad_w = pw;
    p.dilation_h = dh;
    p.dilation_w = dw;
    p.ceil_mode = ceil_mode;
    p.count_include_pad = count_include_pad;
    p.divisor_override = divisor;
    int value;
    if (strcmp(op, "maxpool2d") == 0)
        return graph_value(ai3_graph_maxpool2d(g, algorithm, input, &p, &value), &value);
    if (strcmp(op, "avgpool2d") == 0)
        return graph_value(ai3_graph_avgpool2d(g, algorithm, input, &p, &value), &value);
    PyErr_Format(PyExc_ValueError, "ai3 graph: unknown pooling '%s'", op);
    return NULL;
}

PyDoc_STRVAR(graph_adaptiveavgpool2d_doc,
             "graph_adaptiveavgpool2d(graph, algorithm, input, out_h, out_w)\n--\n\n"
             "Adds an adaptiveavgpool2d node (a size 0 keeps the input's).");

static PyObject *py_graph_adaptiveavgpool2d(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *algorithm;
    int input;
    long long h, w;
    if (!PyArg_ParseTuple(args, "OsiLL:graph_adaptiveavgpool2d", &capsule, &algorithm, &input,
                          &h, &w))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    return graph_value(ai3_graph_adaptiveavgpool2d(g, algorithm, input, h, w, &value), &value);
}

PyDoc_STRVAR(graph_unary_doc,
             "graph_unary(graph, op, algorithm, input)\n--\n\n"
             "Adds a 'relu', 'sigmoid', 'hardsigmoid', 'hardswish' or 'silu' node.");

static PyObject *py_graph_unary(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *op, *algorithm;
    int input;
    if (!PyArg_ParseTuple(args, "Ossi:graph_unary", &capsule, &op, &algorithm, &input))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    static const struct {
        const char *name;
        ai3_status (*add)(ai3_graph *, const char *, int, int *);
    } ops[] = {{"relu", ai3_graph_relu},           {"sigmoid", ai3_graph_sigmoid},
               {"hardsigmoid", ai3_graph_hardsigmoid}, {"hardswish", ai3_graph_hardswish},
               {"silu", ai3_graph_silu}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(op, ops[i].name) == 0) {
            int value;
            return graph_value(ops[i].add(g, algorithm, input, &value), &value);
        }
    }
    PyErr_Format(PyExc_ValueError, "ai3 graph: unknown elementwise operation '%s'", op);
    return NULL;
}

PyDoc_STRVAR(graph_hardtanh_doc, "graph_hardtanh(graph, algorithm, input, min_val, max_val)"
                                 "\n--\n\nAdds a hardtanh node (relu6: 0, 6).");

static PyObject *py_graph_hardtanh(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *algorithm;
    int input;
    double lo, hi;
    if (!PyArg_ParseTuple(args, "Osidd:graph_hardtanh", &capsule, &algorithm, &input, &lo, &hi))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    return graph_value(ai3_graph_hardtanh(g, algorithm, input, lo, hi, &value), &value);
}

PyDoc_STRVAR(graph_gelu_doc, "graph_gelu(graph, algorithm, input, tanh_approximation)\n--\n\n"
                             "Adds a gelu node.");

static PyObject *py_graph_gelu(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *algorithm;
    int input, tanh_approximation;
    if (!PyArg_ParseTuple(args, "Osip:graph_gelu", &capsule, &algorithm, &input,
                          &tanh_approximation))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    return graph_value(ai3_graph_gelu(g, algorithm, input, tanh_approximation, &value), &value);
}

PyDoc_STRVAR(graph_flatten_doc, "graph_flatten(graph, algorithm, input, start_dim, end_dim)"
                                "\n--\n\nAdds a flatten node ('default': a view).");

static PyObject *py_graph_flatten(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *algorithm;
    int input, start, end;
    if (!PyArg_ParseTuple(args, "Osiii:graph_flatten", &capsule, &algorithm, &input, &start,
                          &end))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    return graph_value(ai3_graph_flatten(g, algorithm, input, start, end, &value), &value);
}

PyDoc_STRVAR(graph_reshape_doc,
             "graph_reshape(graph, input, dims)\n--\n\n"
             "Adds a reshape (a view). Each of dims is an int (-1: inferred) or a pair "
             "(value, dim): the size of dimension dim of that value.");

static PyObject *py_graph_reshape(PyObject *self, PyObject *args)
{
    PyObject *capsule, *dims_obj;
    int input;
    if (!PyArg_ParseTuple(args, "OiO:graph_reshape", &capsule, &input, &dims_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    PyObject *fast = PySequence_Fast(dims_obj, "reshape dims must be a sequence");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    ai3_graph_dim dims[AI3_MAX_DIMS];
    if (n > AI3_MAX_DIMS) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "ai3 graph: reshape to %zd dimensions (at most %d)", n,
                     AI3_MAX_DIMS);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        dims[i] = (ai3_graph_dim){.value = -1};
        int ok = PyTuple_Check(item)
                     ? PyArg_ParseTuple(item, "ii", &dims[i].value, &dims[i].dim)
                     : ((dims[i].size = PyLong_AsLongLong(item)) != -1 || !PyErr_Occurred());
        if (!ok) {
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    int value;
    return graph_value(ai3_graph_reshape(g, input, (int)n, dims, &value), &value);
}

PyDoc_STRVAR(graph_chunk_doc, "graph_chunk(graph, input, chunks, dim)\n--\n\n"
                              "Adds a chunk node; returns the value ids of the pieces.");

static PyObject *py_graph_chunk(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    int input, chunks, dim;
    if (!PyArg_ParseTuple(args, "Oiii:graph_chunk", &capsule, &input, &chunks, &dim))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    if (chunks < 1 || chunks > 4096) {
        PyErr_Format(PyExc_ValueError, "ai3 graph: chunks must be 1 to 4096, got %d", chunks);
        return NULL;
    }
    int *values = PyMem_Malloc(sizeof *values * (size_t)chunks);
    if (!values)
        return PyErr_NoMemory();
    ai3_status status = ai3_graph_chunk(g, input, chunks, dim, values);
    PyObject *result = status == AI3_OK ? PyTuple_New(chunks) : raise_status(status);
    for (int i = 0; result && i < chunks; i++) {
        PyObject *v = PyLong_FromLong(values[i]);
        if (!v)
            Py_CLEAR(result);
        else
            PyTuple_SET_ITEM(result, i, v);
    }
    PyMem_Free(values);
    return result;
}

PyDoc_STRVAR(graph_batchnorm2d_doc,
             "graph_batchnorm2d(graph, algorithm, input, running_mean, running_var, weight, "
             "bias, eps)\n--\n\nAdds a batchnorm2d node (inference form; tensors copied).");

static PyObject *py_graph_batchnorm2d(PyObject *self, PyObject *args)
{
    PyObject *capsule, *mean_obj, *var_obj, *weight_obj, *bias_obj;
    const char *algorithm;
    int input;
    double eps;
    if (!PyArg_ParseTuple(args, "OsiOOOOd:graph_batchnorm2d", &capsule, &algorithm, &input,
                          &mean_obj, &var_obj, &weight_obj, &bias_obj, &eps))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor mean, var, weight, bias;
    const ai3_tensor *weight_view, *bias_view;
    if (!g || tensor_view(mean_obj, "batchnorm2d", "running_mean", &mean) < 0 ||
        tensor_view(var_obj, "batchnorm2d", "running_var", &var) < 0 ||
        optional_view(weight_obj, "batchnorm2d", "weight", &weight, &weight_view) < 0 ||
        optional_view(bias_obj, "batchnorm2d", "bias", &bias, &bias_view) < 0)
        return NULL;
    int value;
    return graph_value(ai3_graph_batchnorm2d(g, algorithm, input, &mean, &var, weight_view,
                                             bias_view, eps, &value),
                       &value);
}

PyDoc_STRVAR(graph_binary_doc, "graph_binary(graph, op, algorithm, a, b)\n--\n\n"
                               "Adds an 'add' or 'mul' node (broadcasting).");

static PyObject *py_graph_binary(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *op, *algorithm;
    int a, b;
    if (!PyArg_ParseTuple(args, "Ossii:graph_binary", &capsule, &op, &algorithm, &a, &b))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    if (strcmp(op, "add") == 0)
        return graph_value(ai3_graph_add(g, algorithm, a, b, &value), &value);
    if (strcmp(op, "mul") == 0)
        return graph_value(ai3_graph_mul(g, algorithm, a, b, &value), &value);
    PyErr_Format(PyExc_ValueError, "ai3 graph: unknown binary operation '%s'", op);
    return NULL;
}

PyDoc_STRVAR(graph_cat_doc, "graph_cat(graph, algorithm, inputs, dim)\n--\n\n"
                            "Adds a cat node joining the values `inputs` along dim.");

static PyObject *py_graph_cat(PyObject *self, PyObject *args)
{
    PyObject *capsule, *inputs_obj;
    const char *algorithm;
    int dim;
    if (!PyArg_ParseTuple(args, "OsOi:graph_cat", &capsule, &algorithm, &inputs_obj, &dim))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int inputs[1024];
    int n = int_sequence(inputs_obj, "the inputs of cat", inputs, 1024);
    if (n < 0)
        return NULL;
    int value;
    return graph_value(ai3_graph_cat(g, algorithm, n, inputs, dim, &value), &value);
}

PyDoc_STRVAR(graph_mean_doc, "graph_mean(graph, algorithm, input, dims, keepdim)\n--\n\n"
                             "Adds a mean node over dims (empty: all).");

static PyObject *py_graph_mean(PyObject *self, PyObject *args)
{
    PyObject *capsule, *dims_obj;
    const char *algorithm;
    int input, keepdim;
    if (!PyArg_ParseTuple(args, "OsiOp:graph_mean", &capsule, &algorithm, &input, &dims_obj,
                          &keepdim))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int dims[AI3_MAX_DIMS];
    int n = int_sequence(dims_obj, "the dims of mean", dims, AI3_MAX_DIMS);
    if (n < 0)
        return NULL;
    int value;
    return graph_value(ai3_graph_mean(g, algorithm, input, dims, n, keepdim, &value), &value);
}

PyDoc_STRVAR(graph_permute_doc, "graph_permute(graph, algorithm, input, perm)\n--\n\n"
                                "Adds a permute node.");

static PyObject *py_graph_permute(PyObject *self, PyObject *args)
{
    PyObject *capsule, *perm_obj;
    const char *algorithm;
    int input;
    if (!PyArg_ParseTuple(args, "OsiO:graph_permute", &capsule, &algorithm, &input, &perm_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int perm[AI3_MAX_DIMS];
    int n = int_sequence(perm_obj, "the order of permute", perm, AI3_MAX_DIMS);
    if (n < 0)
        return NULL;
    int value;
    return graph_value(ai3_graph_permute(g, algorithm, input, n, perm, &value), &value);
}

PyDoc_STRVAR(graph_transpose_doc, "graph_transpose(graph, algorithm, input, dim0, dim1)\n--\n\n"
                                  "Adds a transpose (a permute) node.");

static PyObject *py_graph_transpose(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *algorithm;
    int input, dim0, dim1;
    if (!PyArg_ParseTuple(args, "Osiii:graph_transpose", &capsule, &algorithm, &input, &dim0,
                          &dim1))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    return graph_value(ai3_graph_transpose(g, algorithm, input, dim0, dim1, &value), &value);
}

PyDoc_STRVAR(graph_layernorm_doc,
             "graph_layernorm(graph, algorithm, input, normalized_ndim, weight, bias, eps)"
             "\n--\n\nAdds a layernorm node (tensors copied).");

static PyObject *py_graph_layernorm(PyObject *self, PyObject *args)
{
    PyObject *capsule, *weight_obj, *bias_obj;
    const char *algorithm;
    int input, normalized_ndim;
    double eps;
    if (!PyArg_ParseTuple(args, "OsiiOOd:graph_layernorm", &capsule, &algorithm, &input,
                          &normalized_ndim, &weight_obj, &bias_obj, &eps))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor weight, bias;
    const ai3_tensor *weight_view, *bias_view;
    if (!g || optional_view(weight_obj, "layernorm", "weight", &weight, &weight_view) < 0 ||
        optional_view(bias_obj, "layernorm", "bias", &bias, &bias_view) < 0)
        return NULL;
    int value;
    return graph_value(ai3_graph_layernorm(g, algorithm, input, normalized_ndim, weight_view,
                                           bias_view, eps, &value),
                       &value);
}

PyDoc_STRVAR(graph_softmax_doc, "graph_softmax(graph, algorithm, input, dim)\n--\n\n"
                                "Adds a softmax node.");

static PyObject *py_graph_softmax(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    const char *algorithm;
    int input, dim;
    if (!PyArg_ParseTuple(args, "Osii:graph_softmax", &capsule, &algorithm, &input, &dim))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g)
        return NULL;
    int value;
    return graph_value(ai3_graph_softmax(g, algorithm, input, dim, &value), &value);
}

/* A tuple of output shapes (tuples of ints). */
static PyObject *shapes_tuple(int n, const int *ndims, int64_t (*shapes)[AI3_MAX_DIMS])
{
    PyObject *result = PyTuple_New(n);
    for (int k = 0; result && k < n; k++) {
        PyObject *shape = PyTuple_New(ndims[k]);
        for (int d = 0; shape && d < ndims[k]; d++) {
            PyObject *size = PyLong_FromLongLong(shapes[k][d]);
            if (!size)
                Py_CLEAR(shape);
            else
                PyTuple_SET_ITEM(shape, d, size);
        }
        if (!shape)
            Py_CLEAR(result);
        else
            PyTuple_SET_ITEM(result, k, shape);
    }
    return result;
}

#define GRAPH_MAX_IO 64

PyDoc_STRVAR(graph_output_shapes_doc,
             "graph_output_shapes(graph, input_shapes)\n--\n\n"
             "The shapes of the outputs for inputs of these shapes (planned, not run).");

static PyObject *py_graph_output_shapes(PyObject *self, PyObject *args)
{
    PyObject *capsule, *shapes_obj;
    if (!PyArg_ParseTuple(args, "OO:graph_output_shapes", &capsule, &shapes_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor inputs[GRAPH_MAX_IO];
    int n = g ? shape_views(capsule, shapes_obj, inputs, GRAPH_MAX_IO) : -1;
    if (n < 0)
        return NULL;
    int n_out = ai3_graph_num_outputs(g), ndims[GRAPH_MAX_IO];
    int64_t shapes[GRAPH_MAX_IO][AI3_MAX_DIMS];
    if (n_out > GRAPH_MAX_IO)
        n_out = GRAPH_MAX_IO + 1; /* reported by the call */
    ai3_status status = ai3_graph_output_shapes(g, n, inputs, n_out, ndims, shapes);
    if (status != AI3_OK)
        return raise_status(status);
    return shapes_tuple(n_out, ndims, shapes);
}

PyDoc_STRVAR(graph_peak_bytes_doc,
             "graph_peak_bytes(graph, input_shapes)\n--\n\n"
             "(peak, total, workspace): the bytes of the plan's arena of intermediate tensors, "
             "the sum of every intermediate tensor's bytes, and the operations' scratch.");

static PyObject *py_graph_peak_bytes(PyObject *self, PyObject *args)
{
    PyObject *capsule, *shapes_obj;
    if (!PyArg_ParseTuple(args, "OO:graph_peak_bytes", &capsule, &shapes_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor inputs[GRAPH_MAX_IO];
    int n = g ? shape_views(capsule, shapes_obj, inputs, GRAPH_MAX_IO) : -1;
    if (n < 0)
        return NULL;
    size_t peak, total, workspace;
    ai3_status status = ai3_graph_peak_bytes(g, n, inputs, &peak, &total, &workspace);
    if (status != AI3_OK)
        return raise_status(status);
    return Py_BuildValue("(nnn)", (Py_ssize_t)peak, (Py_ssize_t)total, (Py_ssize_t)workspace);
}

PyDoc_STRVAR(graph_run_doc,
             "graph_run(graph, inputs)\n--\n\n"
             "Runs the graph on a sequence of contiguous CPU tensors of its dtype; returns a "
             "tuple of new output tensors (allocated with torch.empty).");

static PyObject *py_graph_run(PyObject *self, PyObject *args)
{
    PyObject *capsule, *inputs_obj;
    if (!PyArg_ParseTuple(args, "OO:graph_run", &capsule, &inputs_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g || load_torch() < 0)
        return NULL;
    if (!torch_empty) {
        PyObject *torch = PyImport_ImportModule("torch");
        torch_empty = torch ? PyObject_GetAttrString(torch, "empty") : NULL;
        Py_XDECREF(torch);
        if (!torch_empty)
            return NULL;
    }
    PyObject *fast = PySequence_Fast(inputs_obj, "graph inputs must be a sequence");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    ai3_tensor inputs[GRAPH_MAX_IO];
    if (n > GRAPH_MAX_IO) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "ai3 graph: at most %d inputs", GRAPH_MAX_IO);
        return NULL;
    }
    ai3_dtype dtype = graph_dtype(capsule);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (tensor_view(PySequence_Fast_GET_ITEM(fast, i), "model", "input", &inputs[i]) < 0) {
            Py_DECREF(fast);
            return NULL;
        }
        if (inputs[i].dtype != dtype) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_TypeError, "ai3 model: input %zd has dtype %s but the model "
                         "computes in %s", i,
                         inputs[i].dtype == AI3_FLOAT64 ? "torch.float64" : "torch.float32",
                         dtype == AI3_FLOAT64 ? "torch.float64" : "torch.float32");
            return NULL;
        }
    }
    int n_out = ai3_graph_num_outputs(g), ndims[GRAPH_MAX_IO];
    int64_t shapes[GRAPH_MAX_IO][AI3_MAX_DIMS];
    if (n_out > GRAPH_MAX_IO)
        n_out = GRAPH_MAX_IO + 1; /* reported by the call */
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_graph_output_shapes(g, (int)n, inputs, n_out, ndims, shapes);
    Py_END_ALLOW_THREADS
    PyObject *shapes_obj = status == AI3_OK ? shapes_tuple(n_out, ndims, shapes) : NULL;
    PyObject *outputs = shapes_obj ? PyTuple_New(n_out) : NULL;
    PyObject *kwargs = outputs ? Py_BuildValue("{sO}", "dtype", dtype == AI3_FLOAT64
                                                                     ? torch_float64
                                                                     : torch_float32)
                               : NULL;
    ai3_tensor out_views[GRAPH_MAX_IO];
    for (int k = 0; kwargs && k < n_out; k++) {
        PyObject *size = PyTuple_Pack(1, PyTuple_GET_ITEM(shapes_obj, k));
        PyObject *t = size ? PyObject_Call(torch_empty, size, kwargs) : NULL;
        Py_XDECREF(size);
        if (!t || tensor_view(t, "model", "output", &out_views[k]) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(outputs);
            break;
        }
        PyTuple_SET_ITEM(outputs, k, t);
    }
    if (outputs) {
        Py_BEGIN_ALLOW_THREADS
        status = ai3_graph_run(g, (int)n, inputs, n_out, out_views);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(fast); /* the inputs stay alive until the run is done */
    Py_XDECREF(shapes_obj);
    Py_XDECREF(kwargs);
    if (status != AI3_OK) {
        Py_XDECREF(outputs);
        return raise_status(status);
    }
    return outputs;
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

PyDoc_STRVAR(conv2d_plan_workspace_size_doc,
             "conv2d_plan_workspace_size(plan, input)\n--\n\n"
             "The workspace bytes the plan needs for an input of this shape.");

static PyObject *py_conv2d_plan_workspace_size(PyObject *self, PyObject *args)
{
    PyObject *capsule, *input_obj;
    if (!PyArg_ParseTuple(args, "OO:conv2d_plan_workspace_size", &capsule, &input_obj))
        return NULL;
    ai3_conv2d_plan *plan = PyCapsule_GetPointer(capsule, CONV2D_PLAN);
    ai3_tensor input;
    if (!plan || tensor_view(input_obj, "conv2d", "input", &input) < 0)
        return NULL;
    size_t bytes = 0;
    ai3_status status = ai3_conv2d_plan_workspace_size(plan, &input, &bytes);
    if (status != AI3_OK)
        return raise_status(status);
    return PyLong_FromSize_t(bytes);
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
    if (input_output_views("conv2d", input_obj, output_obj, &input, &output) < 0)
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
    if (input_output_views("linear", input_obj, output_obj, &input, &output) < 0)
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
    {"conv2d_plan_workspace_size", py_conv2d_plan_workspace_size, METH_VARARGS,
     conv2d_plan_workspace_size_doc},
    {"linear_plan", py_linear_plan, METH_VARARGS, linear_plan_doc},
    {"linear_plan_run", py_linear_plan_run, METH_VARARGS, linear_plan_run_doc},
    {"maxpool2d", py_maxpool2d, METH_VARARGS, maxpool2d_doc},
    {"avgpool2d", py_avgpool2d, METH_VARARGS, avgpool2d_doc},
    {"adaptiveavgpool2d", py_adaptiveavgpool2d, METH_VARARGS, adaptiveavgpool2d_doc},
    {"relu", py_relu, METH_VARARGS, relu_doc},
    {"flatten", py_flatten, METH_VARARGS, flatten_doc},
    {"batchnorm2d", py_batchnorm2d, METH_VARARGS, batchnorm2d_doc},
    {"add", py_add, METH_VARARGS, add_doc},
    {"mul", py_mul, METH_VARARGS, mul_doc},
    {"cat", py_cat, METH_VARARGS, cat_doc},
    {"hardtanh", py_hardtanh, METH_VARARGS, hardtanh_doc},
    {"sigmoid", py_sigmoid, METH_VARARGS, sigmoid_doc},
    {"hardsigmoid", py_hardsigmoid, METH_VARARGS, hardsigmoid_doc},
    {"hardswish", py_hardswish, METH_VARARGS, hardswish_doc},
    {"silu", py_silu, METH_VARARGS, silu_doc},
    {"gelu", py_gelu, METH_VARARGS, gelu_doc},
    {"mean", py_mean, METH_VARARGS, mean_doc},
    {"permute", py_permute, METH_VARARGS, permute_doc},
    {"layernorm", py_layernorm, METH_VARARGS, layernorm_doc},
    {"softmax", py_softmax, METH_VARARGS, softmax_doc},
    {"graph_create", py_graph_create, METH_VARARGS, graph_create_doc},
    {"graph_input", py_graph_input, METH_O, graph_input_doc},
    {"graph_constant", py_graph_constant, METH_VARARGS, graph_constant_doc},
    {"graph_set_name", py_graph_set_name, METH_VARARGS, graph_set_name_doc},
    {"graph_set_outputs", py_graph_set_outputs, METH_VARARGS, graph_set_outputs_doc},
    {"graph_conv2d", py_graph_conv2d, METH_VARARGS, graph_conv2d_doc},
    {"graph_conv2d_algorithm", py_graph_conv2d_algorithm, METH_VARARGS, graph_conv2d_algorithm_doc},
    {"graph_linear", py_graph_linear, METH_VARARGS, graph_linear_doc},
    {"graph_pool", py_graph_pool, METH_VARARGS, graph_pool_doc},
    {"graph_adaptiveavgpool2d", py_graph_adaptiveavgpool2d, METH_VARARGS,
     graph_adaptiveavgpool2d_doc},
    {"graph_unary", py_graph_unary, METH_VARARGS, graph_unary_doc},
    {"graph_hardtanh", py_graph_hardtanh, METH_VARARGS, graph_hardtanh_doc},
    {"graph_gelu", py_graph_gelu, METH_VARARGS, graph_gelu_doc},
    {"graph_flatten", py_graph_flatten, METH_VARARGS, graph_flatten_doc},
    {"graph_reshape", py_graph_reshape, METH_VARARGS, graph_reshape_doc},
    {"graph_chunk", py_graph_chunk, METH_VARARGS, graph_chunk_doc},
    {"graph_batchnorm2d", py_graph_batchnorm2d, METH_VARARGS, graph_batchnorm2d_doc},
    {"graph_binary", py_graph_binary, METH_VARARGS, graph_binary_doc},
    {"graph_cat", py_graph_cat, METH_VARARGS, graph_cat_doc},
    {"graph_mean", py_graph_mean, METH_VARARGS, graph_mean_doc},
    {"graph_permute", py_graph_permute, METH_VARARGS, graph_permute_doc},
    {"graph_transpose", py_graph_transpose, METH_VARARGS, graph_transpose_doc},
    {"graph_layernorm", py_graph_layernorm, METH_VARARGS, graph_layernorm_doc},
    {"graph_softmax", py_graph_softmax, METH_VARARGS, graph_softmax_doc},
    {"graph_output_shapes", py_graph_output_shapes, METH_VARARGS, graph_output_shapes_doc},
    {"graph_peak_bytes", py_graph_peak_bytes, METH_VARARGS, graph_peak_bytes_doc},
    {"graph_run", py_graph_run, METH_VARARGS, graph_run_doc},
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
