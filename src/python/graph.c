/* Graphs from Python (ai3.Model): a capsule holding an ai3_graph, built node
 * by node and run with one call per forward pass. */
#include "core.h"

#include <string.h>

#define GRAPH_CAPSULE "ai3.graph"
#define MAX_IO 64

static void destroy_graph(PyObject *capsule) {
    ai3_graph_destroy(PyCapsule_GetPointer(capsule, GRAPH_CAPSULE));
}

static ai3_graph *graph_of(PyObject *capsule) {
    return PyCapsule_GetPointer(capsule, GRAPH_CAPSULE);
}

/* The graph's dtype, kept as the capsule's context. */
static ai3_dtype graph_dtype(PyObject *capsule) {
    return (ai3_dtype)(intptr_t)PyCapsule_GetContext(capsule);
}

/* The value id written by a call, or the status as an exception (call it
 * after the call, in its own statement: argument order is unspecified). */
static PyObject *value_or_error(ai3_status status, int value) {
    return status == AI3_OK ? PyLong_FromLong(value) : ai3_py_raise(status);
}

static const char *const dtype_names[] = {"float32", "float64", "float16", "bfloat16"};

/* graph_create(dtype, device_index=-1): a graph on the CPU, or (index >= 0)
 * on that CUDA device. */
static PyObject *py_graph_create(PyObject *self, PyObject *args) {
    const char *name;
    int device_index = -1;
    if (!PyArg_ParseTuple(args, "s|i:graph_create", &name, &device_index)) return NULL;
    int dtype = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, dtype_names[i]) == 0) dtype = i;
    if (dtype < 0)
        return PyErr_Format(PyExc_ValueError,
                            "ai3 graph: dtype must be 'float32', 'float64', 'float16' or "
                            "'bfloat16', not '%s'", name);
    ai3_graph *graph;
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_graph_create_on((ai3_dtype)dtype,
                                 device_index < 0 ? AI3_DEVICE_CPU : AI3_DEVICE_CUDA,
                                 device_index < 0 ? 0 : device_index, &graph);
    Py_END_ALLOW_THREADS
    if (status != AI3_OK) return ai3_py_raise(status);
    PyObject *capsule = PyCapsule_New(graph, GRAPH_CAPSULE, destroy_graph);
    if (!capsule) {
        ai3_graph_destroy(graph);
        return NULL;
    }
    if (PyCapsule_SetContext(capsule, (void *)(intptr_t)dtype) < 0) Py_CLEAR(capsule);
    return capsule;
}

/* graph_set_<switch>(graph, enabled), by `set` (format: PyArg's, with the name). */
static PyObject *set_switch(PyObject *args, const char *format,
                            ai3_status (*set)(ai3_graph *, int)) {
    PyObject *capsule;
    int enabled;
    if (!PyArg_ParseTuple(args, format, &capsule, &enabled)) return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g) return NULL;
    ai3_status status = set(g, enabled);
    if (status != AI3_OK) return ai3_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *py_graph_set_cuda_graphs(PyObject *self, PyObject *args) {
    return set_switch(args, "Op:graph_set_cuda_graphs", ai3_graph_set_cuda_graphs);
}

static PyObject *py_graph_set_blocked_layout(PyObject *self, PyObject *args) {
    return set_switch(args, "Op:graph_set_blocked_layout", ai3_graph_set_blocked_layout);
}

static PyObject *py_graph_set_batch_split(PyObject *self, PyObject *args) {
    return set_switch(args, "Op:graph_set_batch_split", ai3_graph_set_batch_split);
}

static PyObject *py_graph_input(PyObject *self, PyObject *capsule) {
    ai3_graph *g = graph_of(capsule);
    int value = -1;
    if (!g) return NULL;
    ai3_status status = ai3_graph_add_input(g, &value);
    return value_or_error(status, value);
}

static PyObject *py_graph_constant(PyObject *self, PyObject *args) {
    PyObject *capsule, *tensor;
    if (!PyArg_ParseTuple(args, "OO:graph_constant", &capsule, &tensor)) return NULL;
    ai3_graph *g = graph_of(capsule);
    ai3_tensor view;
    if (!g || ai3_py_view(tensor, "graph", "constant", &view) < 0) return NULL;
    int value = -1;
    ai3_status status = ai3_graph_add_constant(g, &view, &value);
    return value_or_error(status, value);
}

static PyObject *py_graph_set_name(PyObject *self, PyObject *args) {
    PyObject *capsule;
    int value;
    const char *name;
    if (!PyArg_ParseTuple(args, "Ois:graph_set_name", &capsule, &value, &name)) return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g) return NULL;
    ai3_status status = ai3_graph_set_name(g, value, name);
    if (status != AI3_OK) return ai3_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *py_graph_set_outputs(PyObject *self, PyObject *args) {
    PyObject *capsule, *values_obj;
    if (!PyArg_ParseTuple(args, "OO:graph_set_outputs", &capsule, &values_obj)) return NULL;
    ai3_graph *g = graph_of(capsule);
    int values[MAX_IO];
    int n = g ? ai3_py_ints(values_obj, "graph outputs", values, MAX_IO) : -1;
    if (n < 0) return NULL;
    ai3_status status = ai3_graph_set_outputs(g, n, values);
    if (status != AI3_OK) return ai3_py_raise(status);
    Py_RETURN_NONE;
}

/* graph_op(graph, op, algorithm, inputs, weights, params, hint_shape): adds
 * a node; weights and params as for plan(). */
static PyObject *py_graph_op(PyObject *self, PyObject *args) {
    PyObject *capsule, *op_name, *inputs_obj, *weights_obj, *params_obj, *hint_obj = Py_None;
    const char *algorithm;
    if (!PyArg_ParseTuple(args, "OOsOOO|O:graph_op", &capsule, &op_name, &algorithm, &inputs_obj,
                          &weights_obj, &params_obj, &hint_obj))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    int op = g ? ai3_py_op(op_name) : -1;
    ai3_op_params params;
    int inputs[MAX_IO];
    int n_inputs = op >= 0 ? ai3_py_ints(inputs_obj, "node inputs", inputs, MAX_IO) : -1;
    if (n_inputs < 0 || ai3_py_params((ai3_op)op, params_obj, &params) < 0) return NULL;
    ai3_tensor views[4], hint;
    const ai3_tensor *w[4];
    PyObject *weights;
    int n = ai3_py_weights(weights_obj, (ai3_op)op, views, w, &weights);
    if (n < 0) return NULL;
    if (!PyErr_Occurred() && hint_obj != Py_None)
        ai3_py_shape_view(hint_obj, graph_dtype(capsule), &hint);
    if (PyErr_Occurred()) {
        Py_DECREF(weights);
        return NULL;
    }
    int value = -1;
    ai3_status status = ai3_graph_op(g, (ai3_op)op, algorithm, n_inputs, inputs, n, w,
                                     &params, hint_obj != Py_None ? &hint : NULL, &value);
    Py_DECREF(weights);
    return value_or_error(status, value);
}

static PyObject *py_graph_algorithm(PyObject *self, PyObject *args) {
    PyObject *capsule;
    int value;
    if (!PyArg_ParseTuple(args, "Oi:graph_algorithm", &capsule, &value)) return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g) return NULL;
    const char *name = ai3_graph_algorithm(g, value);
    if (!name) Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

static PyObject *py_graph_transpose(PyObject *self, PyObject *args) {
    PyObject *capsule;
    const char *algorithm;
    int input, dim0, dim1, value = -1;
    if (!PyArg_ParseTuple(args, "Osiii:graph_transpose", &capsule, &algorithm, &input, &dim0,
                          &dim1))
        return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g) return NULL;
    ai3_status status = ai3_graph_transpose(g, algorithm, input, dim0, dim1, &value);
    return value_or_error(status, value);
}

/* graph_reshape(graph, input, dims): each dim an int (-1: inferred) or a
 * pair (value id, dim) for that value's size along dim. */
static PyObject *py_graph_reshape(PyObject *self, PyObject *args) {
    PyObject *capsule, *dims_obj;
    int input;
    if (!PyArg_ParseTuple(args, "OiO:graph_reshape", &capsule, &input, &dims_obj)) return NULL;
    ai3_graph *g = graph_of(capsule);
    PyObject *fast = g ? PySequence_Fast(dims_obj, "reshape dims must be a sequence") : NULL;
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    ai3_graph_dim dims[AI3_MAX_DIMS];
    if (n > AI3_MAX_DIMS)
        PyErr_Format(PyExc_ValueError, "ai3 graph: reshape to %zd dimensions (at most %d)", n,
                     AI3_MAX_DIMS);
    for (Py_ssize_t i = 0; i < n && !PyErr_Occurred(); i++) {
        PyObject *d = PySequence_Fast_GET_ITEM(fast, i);
        dims[i] = (ai3_graph_dim){.value = -1};
        if (PyTuple_Check(d))
            PyArg_ParseTuple(d, "ii:reshape dim", &dims[i].value, &dims[i].dim);
        else
            dims[i].size = PyLong_AsLongLong(d);
    }
    Py_DECREF(fast);
    if (PyErr_Occurred()) return NULL;
    int value = -1;
    ai3_status status = ai3_graph_reshape(g, input, (int)n, dims, &value);
    return value_or_error(status, value);
}

static PyObject *py_graph_chunk(PyObject *self, PyObject *args) {
    PyObject *capsule;
    int input, chunks, dim;
    if (!PyArg_ParseTuple(args, "Oiii:graph_chunk", &capsule, &input, &chunks, &dim)) return NULL;
    ai3_graph *g = graph_of(capsule);
    if (!g) return NULL;
    if (chunks < 1 || chunks > 1024)
        return PyErr_Format(PyExc_ValueError, "ai3 graph: chunk count %d (1 to 1024)", chunks);
    int *values = PyMem_Malloc(sizeof *values * (size_t)chunks);
    if (!values) return PyErr_NoMemory();
    ai3_status status = ai3_graph_chunk(g, input, chunks, dim, values);
    PyObject *result = NULL;
    if (status != AI3_OK) {
        ai3_py_raise(status);
    } else if ((result = PyTuple_New(chunks))) {
        for (int i = 0; i < chunks; i++) PyTuple_SET_ITEM(result, i, PyLong_FromLong(values[i]));
    }
    PyMem_Free(values);
    return result;
}

/* Shape-only views of the graph's inputs from a sequence of shapes. */
static int shape_views(PyObject *capsule, PyObject *shapes, ai3_tensor *views) {
    PyObject *fast = PySequence_Fast(shapes, "input shapes must be a sequence");
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_IO) PyErr_Format(PyExc_ValueError, "ai3 graph: at most %d inputs", MAX_IO);
    for (Py_ssize_t i = 0; i < n && !PyErr_Occurred(); i++)
        ai3_py_shape_view(PySequence_Fast_GET_ITEM(fast, i), graph_dtype(capsule), &views[i]);
    Py_DECREF(fast);
    return PyErr_Occurred() ? -1 : (int)n;
}

/* The output shapes of the graph for these inputs, as a tuple of tuples. */
static PyObject *output_shapes(ai3_graph *g, int n, const ai3_tensor *inputs) {
    int n_out = ai3_graph_num_outputs(g), ndims[MAX_IO];
    int64_t shapes[MAX_IO][AI3_MAX_DIMS];
    if (n_out > MAX_IO) n_out = MAX_IO + 1; /* reported by the call */
    ai3_status status;
    Py_BEGIN_ALLOW_THREADS
    status = ai3_graph_output_shapes(g, n, inputs, n_out, ndims, shapes);
    Py_END_ALLOW_THREADS
    if (status != AI3_OK) return ai3_py_raise(status);
    PyObject *result = PyTuple_New(n_out);
    for (int k = 0; result && k < n_out; k++) {
        PyObject *shape = ai3_py_shape(ndims[k], shapes[k]);
        if (!shape) Py_CLEAR(result);
        else PyTuple_SET_ITEM(result, k, shape);
    }
    return result;
}

/* The (graph, input_shapes) arguments of the graph_* queries (format:
 * PyArg's, with the name): *g and the input count, or -1 with an exception. */
static int graph_and_shapes(PyObject *args, const char *format, ai3_graph **g,
                            ai3_tensor *inputs) {
    PyObject *capsule, *shapes_obj;
    if (!PyArg_ParseTuple(args, format, &capsule, &shapes_obj)) return -1;
    *g = graph_of(capsule);
    return *g ? shape_views(capsule, shapes_obj, inputs) : -1;
}

static PyObject *py_graph_output_shapes(PyObject *self, PyObject *args) {
    ai3_graph *g;
    ai3_tensor inputs[MAX_IO];
    int n = graph_and_shapes(args, "OO:graph_output_shapes", &g, inputs);
    return n < 0 ? NULL : output_shapes(g, n, inputs);
}

static PyObject *py_graph_peak_bytes(PyObject *self, PyObject *args) {
    ai3_graph *g;
    ai3_tensor inputs[MAX_IO];
    int n = graph_and_shapes(args, "OO:graph_peak_bytes", &g, inputs);
    if (n < 0) return NULL;
    size_t peak, total, workspace;
    ai3_status status = ai3_graph_peak_bytes(g, n, inputs, &peak, &total, &workspace);
    if (status != AI3_OK) return ai3_py_raise(status);
    return Py_BuildValue("(nnn)", (Py_ssize_t)peak, (Py_ssize_t)total, (Py_ssize_t)workspace);
}

static PyObject *py_graph_layout_counts(PyObject *self, PyObject *args) {
    ai3_graph *g;
    ai3_tensor inputs[MAX_IO];
    int n = graph_and_shapes(args, "OO:graph_layout_counts", &g, inputs);
    if (n < 0) return NULL;
    int blocked, conversions;
    ai3_status status = ai3_graph_layout_counts(g, n, inputs, &blocked, &conversions);
    if (status != AI3_OK) return ai3_py_raise(status);
    return Py_BuildValue("(ii)", blocked, conversions);
}

static PyObject *py_graph_sub_batch(PyObject *self, PyObject *args) {
    ai3_graph *g;
    ai3_tensor inputs[MAX_IO];
    int n = graph_and_shapes(args, "OO:graph_sub_batch", &g, inputs);
    if (n < 0) return NULL;
    int64_t sub_batch;
    ai3_status status = ai3_graph_sub_batch(g, n, inputs, &sub_batch);
    if (status != AI3_OK) return ai3_py_raise(status);
    return PyLong_FromLongLong((long long)sub_batch);
}

/* graph_run(graph, inputs): a tuple of new output tensors (new_empty of the
 * first input). */
static PyObject *py_graph_run(PyObject *self, PyObject *args) {
    PyObject *capsule, *inputs_obj;
    if (!PyArg_ParseTuple(args, "OO:graph_run", &capsule, &inputs_obj)) return NULL;
    ai3_graph *g = graph_of(capsule);
    PyObject *fast = g ? PySequence_Fast(inputs_obj, "graph inputs must be a sequence") : NULL;
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    ai3_tensor inputs[MAX_IO], out_views[MAX_IO];
    if (n < 1 || n > MAX_IO)
        PyErr_Format(PyExc_ValueError, "ai3 model: takes 1 to %d inputs, got %zd", MAX_IO, n);
    for (Py_ssize_t i = 0; i < n && !PyErr_Occurred(); i++)
        if (ai3_py_view(PySequence_Fast_GET_ITEM(fast, i), "model", "input", &inputs[i]) == 0 &&
            inputs[i].dtype != graph_dtype(capsule))
            PyErr_Format(PyExc_TypeError, "ai3 model: input %zd has dtype torch.%s but the "
                         "model computes in torch.%s", i, dtype_names[inputs[i].dtype],
                         dtype_names[graph_dtype(capsule)]);
    PyObject *shapes = PyErr_Occurred() ? NULL : output_shapes(g, (int)n, inputs);
    Py_ssize_t n_out = shapes ? PyTuple_GET_SIZE(shapes) : 0;
    PyObject *outputs = shapes ? PyTuple_New(n_out) : NULL;
    for (Py_ssize_t k = 0; outputs && k < n_out; k++) {
        ai3_tensor want;
        ai3_py_shape_view(PyTuple_GET_ITEM(shapes, k), inputs[0].dtype, &want);
        PyObject *t = ai3_py_new_output(PySequence_Fast_GET_ITEM(fast, 0), &inputs[0], want.ndim,
                                        want.shape, &out_views[k]);
        if (!t) {
            Py_CLEAR(outputs);
            break;
        }
        PyTuple_SET_ITEM(outputs, k, t);
    }
    ai3_status status = AI3_OK;
    void *stream = NULL; /* torch's current stream for CUDA inputs */
    if (outputs && inputs[0].device == AI3_DEVICE_CUDA &&
        ai3_py_current_stream(inputs[0].device_index, &stream) < 0)
        Py_CLEAR(outputs);
    if (outputs) {
        Py_BEGIN_ALLOW_THREADS
        status = ai3_graph_run_stream(g, (int)n, inputs, (int)n_out, out_views, stream);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(fast); /* the inputs stay alive until the run is done */
    Py_XDECREF(shapes);
    if (status != AI3_OK) {
        Py_XDECREF(outputs);
        return ai3_py_raise(status);
    }
    return outputs;
}

PyMethodDef ai3_py_graph_methods[] = {
    {"graph_create", py_graph_create, METH_VARARGS,
     "graph_create(dtype_name, device_index=-1)\n--\n\nA new graph computing in 'float32', "
     "'float64' (or on a CUDA device, device_index >= 0, also 'float16', 'bfloat16')."},
    {"graph_set_cuda_graphs", py_graph_set_cuda_graphs, METH_VARARGS,
     "graph_set_cuda_graphs(graph, enabled)\n--\n\nWhether a CUDA graph's runs are "
     "captured and replayed as CUDA graphs (the default)."},
    {"graph_set_blocked_layout", py_graph_set_blocked_layout, METH_VARARGS,
     "graph_set_blocked_layout(graph, enabled)\n--\n\nWhether a float32 CPU graph keeps "
     "activations channel-blocked between the operations that compute on that layout (the "
     "default)."},
    {"graph_set_batch_split", py_graph_set_batch_split, METH_VARARGS,
     "graph_set_batch_split(graph, enabled)\n--\n\nWhether a CPU graph may run a large batch "
     "in slices of a few images (the default)."},
    {"graph_input", py_graph_input, METH_O, "graph_input(graph)\n--\n\nAdds an input."},
    {"graph_constant", py_graph_constant, METH_VARARGS,
     "graph_constant(graph, tensor)\n--\n\nAdds a constant (copied)."},
    {"graph_set_name", py_graph_set_name, METH_VARARGS,
     "graph_set_name(graph, value, name)\n--\n\nNames a value's node in messages."},
    {"graph_set_outputs", py_graph_set_outputs, METH_VARARGS,
     "graph_set_outputs(graph, values)\n--\n\nSets the graph's outputs."},
    {"graph_op", py_graph_op, METH_VARARGS,
     "graph_op(graph, op, algorithm, inputs, weights, params, hint_shape=None)\n--\n\n"
     "Adds an operation node (weights and params as for plan()); returns its value id."},
    {"graph_algorithm", py_graph_algorithm, METH_VARARGS,
     "graph_algorithm(graph, value)\n--\n\nThe algorithm the node producing value runs."},
    {"graph_transpose", py_graph_transpose, METH_VARARGS,
     "graph_transpose(graph, algorithm, input, dim0, dim1)\n--\n\nAdds a transpose."},
    {"graph_reshape", py_graph_reshape, METH_VARARGS,
     "graph_reshape(graph, input, dims)\n--\n\nAdds a view of input in another shape."},
    {"graph_chunk", py_graph_chunk, METH_VARARGS,
     "graph_chunk(graph, input, chunks, dim)\n--\n\nAdds torch.chunk; returns the ids."},
    {"graph_output_shapes", py_graph_output_shapes, METH_VARARGS,
     "graph_output_shapes(graph, input_shapes)\n--\n\nThe output shapes (nothing is run)."},
    {"graph_peak_bytes", py_graph_peak_bytes, METH_VARARGS,
     "graph_peak_bytes(graph, input_shapes)\n--\n\n(peak, total, workspace) bytes of the "
     "plan for inputs of these shapes."},
    {"graph_layout_counts", py_graph_layout_counts, METH_VARARGS,
     "graph_layout_counts(graph, input_shapes)\n--\n\n(nodes computing on channel-blocked "
     "values, values converted between layouts) in the plan for inputs of these shapes."},
    {"graph_sub_batch", py_graph_sub_batch, METH_VARARGS,
     "graph_sub_batch(graph, input_shapes)\n--\n\nThe images per slice a run on inputs of "
     "these shapes takes (the batch where it does not split)."},
    {"graph_run", py_graph_run, METH_VARARGS,
     "graph_run(graph, inputs)\n--\n\nRuns the graph; returns a tuple of new tensors."},
    {NULL, NULL, 0, NULL},
};
