/*
 * Shared by the files of the extension ai3._core: errors, torch tensor
 * views, operation names and parameters. _core.c holds the module, plans.c
 * the plans (swapped modules), graph.c the graphs (ai3.Model).
 */
#ifndef AI3_PY_CORE_H
#define AI3_PY_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ai3.h"

/* Sets the Python exception for a failed call and returns NULL: invalid
 * argument and unknown algorithm → ValueError, unsupported →
 * ai3.UnsupportedError (a ValueError), out of memory → MemoryError, others →
 * RuntimeError. Must run on the thread that made the call. */
PyObject *ai3_py_raise(ai3_status status);

/* Fills `out` with a view of the torch.Tensor `obj`: a contiguous float32 or
 * float64 tensor on the CPU, or a float32, float64, float16 or bfloat16 one
 * on a CUDA device. `op` and `what` name the call
 * and the argument in messages. 0, or -1 with an exception set. */
int ai3_py_view(PyObject *obj, const char *op, const char *what, ai3_tensor *out);

/* As ai3_py_view, but a tensor that is not contiguous is first made so; the
 * contiguous tensor (a new reference, or obj itself) goes to *keep, which
 * the caller releases after the computation. */
int ai3_py_input_view(PyObject *obj, const char *op, const char *what, ai3_tensor *out,
                      PyObject **keep);

/* A new contiguous tensor of `shape`, with like's dtype and device
 * (like.new_empty), and its view in *view (like_view is like's view). */
PyObject *ai3_py_new_output(PyObject *like, const ai3_tensor *like_view, int ndim,
                            const int64_t *shape, ai3_tensor *view);

/* A new uint8 tensor of `bytes` on like's device (like.new_empty: torch's
 * caching allocator on CUDA) and its data pointer in *data; NULL with an
 * exception on failure. */
PyObject *ai3_py_new_bytes(PyObject *like, size_t bytes, void **data);

/* torch's current stream on CUDA device `index` (a cudaStream_t) into
 * *stream; 0, or -1 with an exception. */
int ai3_py_current_stream(int index, void **stream);

/* The operation named by a str ('conv2d'); -1 with ValueError if none. */
int ai3_py_op(PyObject *name);

/* Fills `params` for `op` from a tuple (the order is in plans.c). */
int ai3_py_params(ai3_op op, PyObject *tuple, ai3_op_params *params);

/* Views of a sequence of at most 4 weights of `op` (tensors or None: w[i]
 * NULL) into views[] and w[]; their count, or -1. *keep holds the sequence
 * (released by the caller after the call that reads them). */
int ai3_py_weights(PyObject *seq, ai3_op op, ai3_tensor views[4], const ai3_tensor *w[4],
                   PyObject **keep);

/* Reads a sequence of at most `cap` ints; their count, or -1. */
int ai3_py_ints(PyObject *seq, const char *what, int *out, int cap);

/* A tuple of ints from a shape. */
PyObject *ai3_py_shape(int ndim, const int64_t *shape);

/* A shape-only tensor from a sequence of ints (data NULL, only its shape
 * is read), of dtype `dtype`; 0 or -1. */
int ai3_py_shape_view(PyObject *seq, ai3_dtype dtype, ai3_tensor *out);

extern PyMethodDef ai3_py_plan_methods[];
extern PyMethodDef ai3_py_graph_methods[];

/* Installs torch's OpenMP threads as ai3's parallel executor
 * (torch_threads.c); 1 if installed. */
int ai3_py_install_torch_executor(void);

#endif
