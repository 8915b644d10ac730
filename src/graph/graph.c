/* Graphs: building them, and each node's shape and compute functions.
 * Planning and running are in plan.c. */
#include "graph.h"
#include "algorithms/blocked.h"
#include "bf16.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ai3_graph_node_op(const graph_node *node) {
    switch (node->kind) {
    case NODE_RESHAPE: return "reshape";
    case NODE_CHUNK: return "chunk";
    case NODE_TRANSPOSE: return "transpose";
    default: return ai3_op_name((ai3_op)node->kind);
    }
}

node_storage ai3_graph_node_storage(const graph_node *node) {
    if (node->kind == NODE_RESHAPE || (node->kind == NODE_FLATTEN && node->u.op.view))
        return STORE_VIEW;
    if ((int)node->kind < AI3_OP_COUNT && ai3_op_in_place((ai3_op)node->kind))
        return STORE_INPLACE;
    return STORE_NEW;
}

/* ------------------------------------------------------------------------ */
/* Creating and destroying                                                   */
/* ------------------------------------------------------------------------ */

ai3_status ai3_graph_create_on(ai3_dtype dtype, ai3_device device, int device_index,
                               ai3_graph **graph) {
    if (!graph) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph pointer is NULL");
    *graph = NULL;
    if (device != AI3_DEVICE_CPU && device != AI3_DEVICE_CUDA)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: unknown device code %d",
                             (int)device);
    if (device == AI3_DEVICE_CUDA && device_index < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: device index %d", device_index);
    int half = dtype == AI3_FLOAT16 || dtype == AI3_BFLOAT16;
    int cpu_bf16 = dtype == AI3_BFLOAT16 && device == AI3_DEVICE_CPU;
    if (dtype != AI3_FLOAT32 && dtype != AI3_FLOAT64 && !(half && device == AI3_DEVICE_CUDA) &&
        !cpu_bf16)
        return ai3_set_error(half ? AI3_ERROR_UNSUPPORTED : AI3_ERROR_INVALID_ARGUMENT,
                             "graph: dtype %s on %s (float32, float64 and bfloat16 anywhere, "
                             "float16 on CUDA devices)", ai3_dtype_name(dtype),
                             ai3_device_name(device));
    if (cpu_bf16) {
        ai3_status s = ai3_require_cpu_bf16("graph");
        if (s != AI3_OK) return s;
    }
    if (device == AI3_DEVICE_CUDA && !ai3_cuda_backend_get()) return AI3_ERROR_UNSUPPORTED;
    ai3_graph *g = calloc(1, sizeof *g);
    if (!g) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    g->dtype = dtype;
    g->device = device;
    g->device_index = device == AI3_DEVICE_CUDA ? device_index : 0;
    g->cuda_graphs = device == AI3_DEVICE_CUDA;
    const char *layout = getenv("AI3_LAYOUT");
    g->blocked_layout = device == AI3_DEVICE_CPU && dtype == AI3_FLOAT32 &&
                        !(layout && strcmp(layout, "plain") == 0);
    g->batch_split = device == AI3_DEVICE_CPU;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g);
        return ai3_set_error(AI3_ERROR_INTERNAL, "graph: could not create a mutex");
    }
    *graph = g;
    return AI3_OK;
}

ai3_status ai3_graph_create(ai3_dtype dtype, ai3_graph **graph) {
    return ai3_graph_create_on(dtype, AI3_DEVICE_CPU, 0, graph);
}

ai3_status ai3_graph_set_blocked_layout(ai3_graph *g, int enabled) {
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph is NULL");
    pthread_mutex_lock(&g->lock);
    g->blocked_layout = enabled && g->device == AI3_DEVICE_CPU && g->dtype == AI3_FLOAT32;
    pthread_mutex_unlock(&g->lock);
    ai3_graph_release_plans(g);
    return AI3_OK;
}

ai3_status ai3_graph_set_batch_split(ai3_graph *g, int enabled) {
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph is NULL");
    pthread_mutex_lock(&g->lock);
    g->batch_split = enabled && g->device == AI3_DEVICE_CPU;
    pthread_mutex_unlock(&g->lock);
    ai3_graph_release_plans(g);
    return AI3_OK;
}

ai3_status ai3_graph_set_cuda_graphs(ai3_graph *g, int enabled) {
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph is NULL");
    g->cuda_graphs = g->device == AI3_DEVICE_CUDA && enabled;
    ai3_graph_release_plans(g); /* captured graphs go with their plans */
    return AI3_OK;
}

const ai3_cuda_backend *ai3_graph_cuda(const ai3_graph *g) {
    return g->device == AI3_DEVICE_CUDA ? ai3_cuda_backend_get() : NULL;
}

static void free_node(graph_node *node) {
    free(node->inputs);
    if ((int)node->kind < AI3_OP_COUNT) {
        ai3_plan_destroy(node->u.op.plan);
        ai3_blocked_conv2d_destroy(node->u.op.blocked);
    }
}

void ai3_graph_destroy(ai3_graph *g) {
    if (!g) return;
    ai3_graph_release_plans(g);
    for (int i = 0; i < g->n_nodes; i++) free_node(&g->nodes[i]);
    const ai3_cuda_backend *cuda = ai3_graph_cuda(g);
    for (int i = 0; i < g->n_device_buffers; i++)
        cuda->release(g->device_index, g->device_buffers[i]);
    if (cuda) cuda->event_destroy(g->arena_event);
    if (!cuda)
        for (int i = 0; i < g->n_constants; i++) ai3_free(g->constants[i].data);
    free(g->device_buffers);
    free(g->nodes);
    free(g->values);
    free(g->constants);
    free(g->outputs);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* *dst: a copy of src that the graph owns, in its device's memory. src is on
 * the host, or (CUDA graphs) on the graph's device. */
static ai3_status own_copy(ai3_graph *g, const ai3_tensor *src, ai3_tensor *dst,
                           const char *what) {
    int here = src->device == g->device &&
               (src->device == AI3_DEVICE_CPU || src->device_index == g->device_index);
    if (src->device != AI3_DEVICE_CPU && !here) {
        char on[32], graph_on[32];
        ai3_device_label(src->device, src->device_index, on, sizeof on);
        ai3_device_label(g->device, g->device_index, graph_on, sizeof graph_on);
        return ai3_set_error(g->device == AI3_DEVICE_CPU ? AI3_ERROR_UNSUPPORTED
                                                         : AI3_ERROR_INVALID_ARGUMENT,
                             "graph %s: the tensor is on %s but the graph computes on %s%s",
                             what, on, graph_on,
                             g->device == AI3_DEVICE_CPU ? " (graphs run on the CPU unless "
                                                           "made with ai3_graph_create_on)"
                                                         : "");
    }
    const ai3_cuda_backend *cuda = ai3_graph_cuda(g);
    if (!cuda) return ai3_tensor_copy(src, dst);
    void **list = realloc(g->device_buffers, sizeof *list * (size_t)(g->n_device_buffers + 1));
    if (!list) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    g->device_buffers = list;
    size_t bytes = (size_t)ai3_tensor_numel(src) * ai3_dtype_size(src->dtype);
    *dst = *src;
    dst->device = AI3_DEVICE_CUDA;
    dst->device_index = g->device_index;
    ai3_status s = cuda->alloc(g->device_index, bytes ? bytes : 1, &dst->data);
    if (s == AI3_OK)
        s = cuda->copy(g->device_index, dst->data, src->data, bytes,
                       src->device == AI3_DEVICE_CPU ? AI3_COPY_TO_DEVICE : AI3_COPY_ON_DEVICE,
                       NULL);
    if (s != AI3_OK) {
        cuda->release(g->device_index, dst->data);
        return s;
    }
    g->device_buffers[g->n_device_buffers++] = dst->data;
    return AI3_OK;
}

int ai3_graph_num_inputs(const ai3_graph *g) { return g ? g->n_inputs : 0; }
int ai3_graph_num_outputs(const ai3_graph *g) { return g ? g->n_outputs : 0; }

/* ------------------------------------------------------------------------ */
/* Values                                                                    */
/* ------------------------------------------------------------------------ */

/* Appends a value; its id, or -1 with the error set. */
static int new_value(ai3_graph *g, value_kind kind, int index) {
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? 2 * g->cap_values : 64;
        graph_value *v = realloc(g->values, sizeof *v * (size_t)cap);
        if (!v) {
            ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
            return -1;
        }
        g->values = v;
        g->cap_values = cap;
    }
    graph_value *v = &g->values[g->n_values];
    v->kind = kind;
    v->index = index;
    v->name[0] = '\0';
    return g->n_values++;
}

static ai3_status check_graph(const ai3_graph *g, const void *out, const char *what) {
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: graph is NULL", what);
    if (!out)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: output pointer is NULL",
                             what);
    return AI3_OK;
}

ai3_status ai3_graph_add_input(ai3_graph *g, int *value) {
    ai3_status s = check_graph(g, value, "input");
    if (s != AI3_OK) return s;
    int id = new_value(g, VALUE_INPUT, g->n_inputs);
    if (id < 0) return AI3_ERROR_OUT_OF_MEMORY;
    g->n_inputs++;
    *value = id;
    return AI3_OK;
}

ai3_status ai3_graph_add_constant(ai3_graph *g, const ai3_tensor *tensor, int *value) {
    ai3_status s = check_graph(g, value, "constant");
    if (s != AI3_OK) return s;
    if (!tensor)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph constant: tensor is NULL");
    if ((s = ai3_check_tensor(tensor, "tensor", "graph constant")) != AI3_OK) return s;
    if (tensor->dtype != g->dtype)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "graph constant: the tensor is not of the graph's dtype");
    ai3_tensor *c = realloc(g->constants, sizeof *c * (size_t)(g->n_constants + 1));
    if (!c) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    g->constants = c;
    if ((s = own_copy(g, tensor, &c[g->n_constants], "constant")) != AI3_OK) return s;
    int id = new_value(g, VALUE_CONSTANT, g->n_constants);
    if (id < 0) {
        if (g->device == AI3_DEVICE_CPU) ai3_free(c[g->n_constants].data);
        return AI3_ERROR_OUT_OF_MEMORY; /* (a device copy is freed with the graph) */
    }
    g->n_constants++;
    *value = id;
    return AI3_OK;
}

ai3_status ai3_graph_set_name(ai3_graph *g, int value, const char *name) {
    if (!g || !name)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph set_name: graph or name is NULL");
    if (value < 0 || value >= g->n_values)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "graph set_name: %d is not a value of the graph (0 to %d)", value,
                             g->n_values - 1);
    snprintf(g->values[value].name, sizeof g->values[value].name, "%s", name);
    return AI3_OK;
}

ai3_status ai3_graph_set_outputs(ai3_graph *g, int n, const int *values) {
    if (!g || (n > 0 && !values))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph outputs: NULL argument");
    if (n < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "graph outputs: a graph needs at least one output, got %d", n);
    for (int i = 0; i < n; i++)
        if (values[i] < 0 || values[i] >= g->n_values)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "graph outputs: output %d is %d, not a value of the graph "
                                 "(0 to %d)", i, values[i], g->n_values - 1);
    int *copy = malloc(sizeof *copy * (size_t)n);
    if (!copy) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    memcpy(copy, values, sizeof *copy * (size_t)n);
    pthread_mutex_lock(&g->lock);
    free(g->outputs);
    g->outputs = copy;
    g->n_outputs = n;
    pthread_mutex_unlock(&g->lock);
    ai3_graph_release_plans(g); /* plans bind outputs */
    return AI3_OK;
}

/* ------------------------------------------------------------------------ */
/* Nodes                                                                     */
/* ------------------------------------------------------------------------ */

/* A zeroed node of `kind` reading `inputs` (checked), not yet appended. */
static ai3_status start_node(const ai3_graph *g, node_kind kind, const char *op, int n_inputs,
                             const int *inputs, const int *output, graph_node *node) {
    memset(node, 0, sizeof *node);
    /* the kind first: a node refused here is still freed as what it is
     * (its caller fills in its parameters, which share the op's plan) */
    node->kind = kind;
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: graph is NULL", op);
    if (!output)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: output pointer is NULL", op);
    if (n_inputs < 1 || !inputs)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: needs at least one input",
                             op);
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] < 0 || inputs[i] >= g->n_values)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "graph %s: input %d is %d, not a value of the graph "
                                 "(0 to %d)", op, i, inputs[i], g->n_values - 1);
    node->n_inputs = n_inputs;
    node->inputs = malloc(sizeof *node->inputs * (size_t)n_inputs);
    if (!node->inputs) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    memcpy(node->inputs, inputs, sizeof *node->inputs * (size_t)n_inputs);
    node->n_outputs = 1;
    return AI3_OK;
}

/* Appends `node` (taking ownership, freeing it on failure) and its output
 * values; the first output's id goes to *output. */
static ai3_status finish_node(ai3_graph *g, graph_node *node, ai3_status status, int *output) {
    if (status == AI3_OK && g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        graph_node *nodes = realloc(g->nodes, sizeof *nodes * (size_t)cap);
        if (nodes) {
            g->nodes = nodes;
            g->cap_nodes = cap;
        } else {
            status = ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
        }
    }
    int first = g ? g->n_values : 0;
    for (int i = 0; status == AI3_OK && i < node->n_outputs; i++)
        if (new_value(g, VALUE_NODE, g->n_nodes) < 0) status = AI3_ERROR_OUT_OF_MEMORY;
    if (status != AI3_OK) {
        if (g) g->n_values = first;
        free_node(node);
        return status;
    }
    node->output = first;
    g->nodes[g->n_nodes++] = *node;
    for (int i = 0; i < node->n_outputs; i++) output[i] = first + i;
    ai3_graph_release_plans(g); /* a new node changes every plan */
    return AI3_OK;
}

/* A float32 CPU conv2d whose algorithm is left to "guess" gets its weights
 * packed for the channel-blocked layout too, where that layout can compute
 * it (one group or depthwise, zero padding); plans then choose per input
 * shape whether it runs on blocked values. */
static void pack_blocked(const ai3_graph *g, ai3_op op, const char *algorithm, int n_weights,
                         const ai3_tensor *const *weights, const ai3_op_params *params,
                         op_node *node) {
    int cb = ai3_blocked_width();
    const char *name = algorithm && strcmp(algorithm, "default") != 0
                           ? algorithm
                           : ai3_default_algorithm(AI3_OP_CONV2D);
    if (op != AI3_OP_CONV2D || g->device != AI3_DEVICE_CPU || g->dtype != AI3_FLOAT32 || !cb ||
        strcmp(name, "guess") != 0 || n_weights < 1 || !weights[0] || !params ||
        weights[0]->ndim != 4)
        return;
    /* refused (groups, padding mode): plain layout only, not an error */
    if (ai3_blocked_conv2d_create(weights[0], n_weights > 1 ? weights[1] : NULL,
                                  &params->conv2d, cb, &node->blocked) == AI3_OK)
        node->blocked_cb = cb;
    else
        node->blocked = NULL;
}

ai3_status ai3_graph_op(ai3_graph *g, ai3_op op, const char *algorithm, int n_inputs,
                        const int *inputs, int n_weights, const ai3_tensor *const *weights,
                        const ai3_op_params *params, const ai3_tensor *hint, int *output) {
    const char *name = ai3_op_name(op);
    if (!name)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: unknown operation %d", (int)op);
    graph_node node;
    ai3_status s = start_node(g, (node_kind)op, name, n_inputs, inputs, output, &node);
    int want = ai3_op_num_inputs(op);
    if (s == AI3_OK && want >= 0 && n_inputs != want)
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: takes %d input%s, got %d", name,
                          want, want == 1 ? "" : "s", n_inputs);
    /* A CUDA graph's plans read device copies of the weights that it owns. */
    ai3_tensor copies[AI3_PLAN_MAX_WEIGHTS];
    const ai3_tensor *on_device[AI3_PLAN_MAX_WEIGHTS] = {NULL};
    if (s == AI3_OK &&
        (n_weights < 0 || n_weights > AI3_PLAN_MAX_WEIGHTS || (n_weights && !weights)))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: %d weights", name, n_weights);
    for (int i = 0; s == AI3_OK && i < n_weights; i++) {
        if (!weights[i]) continue;
        if ((s = ai3_check_tensor(weights[i], "weight", name)) != AI3_OK) break;
        if (weights[i]->dtype != g->dtype)
            s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                              "graph %s: weight %d is not of the graph's dtype", name, i);
        else if (g->device == AI3_DEVICE_CPU && weights[i]->device != AI3_DEVICE_CPU)
            s = ai3_set_error(AI3_ERROR_UNSUPPORTED,
                              "graph %s: weight %d is on %s; this graph runs on the CPU", name,
                              i, ai3_device_name(weights[i]->device));
        else if (g->device == AI3_DEVICE_CUDA &&
                 (s = own_copy(g, weights[i], &copies[i], name)) == AI3_OK)
            on_device[i] = &copies[i];
    }
    if (s == AI3_OK)
        s = ai3_plan_create(op, algorithm, n_weights,
                            g->device == AI3_DEVICE_CUDA ? on_device : weights, params, hint,
                            &node.u.op.plan);
    node.u.op.view = op == AI3_OP_FLATTEN && algorithm && strcmp(algorithm, "default") == 0;
    if (s == AI3_OK) pack_blocked(g, op, algorithm, n_weights, weights, params, &node.u.op);
    return finish_node(g, &node, s, output);
}

const char *ai3_graph_algorithm(const ai3_graph *g, int value) {
    if (!g || value < 0 || value >= g->n_values || g->values[value].kind != VALUE_NODE)
        return NULL;
    const graph_node *node = &g->nodes[g->values[value].index];
    if (node->kind == NODE_TRANSPOSE)
        return strcmp(node->u.transpose.algorithm, "default") == 0
                   ? ai3_default_algorithm(AI3_OP_PERMUTE)
                   : node->u.transpose.algorithm;
    const char *blocked = node->kind == NODE_CONV2D && node->u.op.blocked
                              ? ai3_graph_node_blocked_algorithm(g, g->values[value].index)
                              : NULL;
    if (blocked) return blocked;
    return (int)node->kind < AI3_OP_COUNT ? ai3_plan_algorithm(node->u.op.plan) : NULL;
}

ai3_status ai3_graph_reshape(ai3_graph *g, int input, int ndim, const ai3_graph_dim *dims,
                             int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_RESHAPE, "reshape", 1, &input, output, &node);
    if (s == AI3_OK && (ndim < 0 || ndim > AI3_MAX_DIMS || (ndim > 0 && !dims)))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph reshape: %d dimensions (0 to %d, with dims) expected", ndim,
                          AI3_MAX_DIMS);
    int inferred = 0;
    for (int i = 0; s == AI3_OK && i < ndim; i++) {
        if (dims[i].value >= g->n_values)
            s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                              "graph reshape: dimension %d refers to value %d, not a value of "
                              "the graph (0 to %d)", i, dims[i].value, g->n_values - 1);
        else if (dims[i].value < 0 && dims[i].size < -1)
            s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                              "graph reshape: dimension %d has size %lld", i,
                              (long long)dims[i].size);
        else if (dims[i].value < 0 && dims[i].size == -1 && inferred++)
            s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                              "graph reshape: only one dimension can be -1");
        else
            node.u.reshape.dims[i] = dims[i];
    }
    node.u.reshape.ndim = ndim;
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_chunk(ai3_graph *g, int input, int chunks, int dim, int *outputs) {
    graph_node node;
    ai3_status s = start_node(g, NODE_CHUNK, "chunk", 1, &input, outputs, &node);
    if (s == AI3_OK && chunks < 1)
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph chunk: chunks must be at least 1, got %d", chunks);
    node.u.chunk.chunks = chunks;
    node.u.chunk.dim = dim;
    node.n_outputs = s == AI3_OK ? chunks : 1;
    return finish_node(g, &node, s, outputs);
}

ai3_status ai3_graph_transpose(ai3_graph *g, const char *algorithm, int input, int dim0,
                               int dim1, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_TRANSPOSE, "transpose", 1, &input, output, &node);
    if (s == AI3_OK) s = ai3_check_algorithm_name(AI3_OP_PERMUTE, algorithm);
    if (s == AI3_OK)
        snprintf(node.u.transpose.algorithm, sizeof node.u.transpose.algorithm, "%s", algorithm);
    node.u.transpose.dim0 = dim0;
    node.u.transpose.dim1 = dim1;
    return finish_node(g, &node, s, output);
}

/* ------------------------------------------------------------------------ */
/* Shapes, workspaces and computing, per node                                */
/* ------------------------------------------------------------------------ */

static void same_shape(const ai3_tensor *in, ai3_tensor *out) {
    out->ndim = in->ndim;
    for (int i = 0; i < in->ndim; i++) out->shape[i] = in->shape[i];
}

/* A reshape's target shape, whose sizes may come from any value's shape. */
static ai3_status reshape_shape(const reshape_node *r, const ai3_tensor *in,
                                const ai3_tensor *values, ai3_tensor *out) {
    int64_t known = 1, numel = ai3_tensor_numel(in);
    int inferred = -1;
    for (int i = 0; i < r->ndim; i++) {
        const ai3_graph_dim *d = &r->dims[i];
        int64_t size = d->size;
        if (d->value >= 0) {
            const ai3_tensor *v = &values[d->value];
            int k = d->dim < 0 ? d->dim + v->ndim : d->dim;
            if (k < 0 || k >= v->ndim)
                return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                     "reshape: dimension %d is the size of dimension %d of a "
                                     "value with %d dimensions", i, d->dim, v->ndim);
            size = v->shape[k];
        }
        if (size == -1) {
            inferred = i;
        } else if (size > AI3_MAX_ELEMENTS || (known = ai3_size_mul(known, size)) < 0) {
            /* no tensor has such sizes (and their product would overflow) */
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "reshape: sizes too large (%lld in dimension %d)",
                                 (long long)size, i);
        }
        out->shape[i] = size;
    }
    out->ndim = r->ndim;
    if (inferred >= 0 && known > 0 && numel % known == 0) out->shape[inferred] = numel / known;
    if ((inferred >= 0 && (known == 0 || numel % known != 0)) ||
        (inferred < 0 && known != numel))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "reshape: an input of %lld elements cannot be viewed in that "
                             "shape", (long long)numel);
    return AI3_OK;
}

static ai3_status chunk_shapes(const chunk_node *c, const ai3_tensor *in, ai3_tensor *out) {
    int dim = c->dim < 0 ? c->dim + in->ndim : c->dim;
    if (dim < 0 || dim >= in->ndim)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "chunk: dim %d is out of range for %d dimensions", c->dim, in->ndim);
    int64_t size = in->shape[dim], piece = (size + c->chunks - 1) / c->chunks;
    int64_t pieces = piece ? (size + piece - 1) / piece : 0;
    if (pieces != c->chunks)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "chunk: a size of %lld along dim %d makes %lld chunks, not %d",
                             (long long)size, c->dim, (long long)pieces, c->chunks);
    for (int j = 0; j < c->chunks; j++) {
        same_shape(in, &out[j]);
        out[j].shape[dim] = AI3_MIN(piece, size - j * piece);
    }
    return AI3_OK;
}

/* The permute order of a transpose for an input of rank ndim. */
static ai3_status transpose_order(const transpose_node *t, int ndim, int *perm) {
    int a = t->dim0 < 0 ? t->dim0 + ndim : t->dim0;
    int b = t->dim1 < 0 ? t->dim1 + ndim : t->dim1;
    if (a < 0 || a >= ndim || b < 0 || b >= ndim)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "transpose: dims (%d, %d) are out of range for %d dimensions",
                             t->dim0, t->dim1, ndim);
    for (int i = 0; i < ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return AI3_OK;
}

ai3_status ai3_graph_node_shapes(const graph_node *node, const ai3_tensor *const *in,
                                 const ai3_tensor *values, ai3_tensor *out) {
    switch (node->kind) {
    case NODE_RESHAPE: return reshape_shape(&node->u.reshape, in[0], values, out);
    case NODE_CHUNK: return chunk_shapes(&node->u.chunk, in[0], out);
    case NODE_TRANSPOSE: {
        int perm[AI3_MAX_DIMS];
        ai3_status s = transpose_order(&node->u.transpose, in[0]->ndim, perm);
        return s != AI3_OK ? s : ai3_permute_output_shape(in[0], perm, &out->ndim, out->shape);
    }
    default:
        return ai3_plan_output_shape(node->u.op.plan, node->n_inputs, in, &out->ndim,
                                     out->shape);
    }
}

ai3_status ai3_graph_node_workspace(const graph_node *node, const ai3_tensor *const *in,
                                    size_t *bytes) {
    *bytes = 0;
    if ((int)node->kind >= AI3_OP_COUNT) return AI3_OK;
    return ai3_plan_workspace_size(node->u.op.plan, node->n_inputs, in, bytes);
}

/* Copies the pieces of in along the chunk's dim into out[0..chunks). */
static void chunk_run(const chunk_node *c, const ai3_tensor *in, ai3_tensor *out) {
    int dim = c->dim < 0 ? c->dim + in->ndim : c->dim;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= in->shape[i];
    for (int i = dim + 1; i < in->ndim; i++) inner *= in->shape[i];
    size_t elem = ai3_dtype_size(in->dtype);
    int64_t size = in->shape[dim], start = 0;
    for (int j = 0; j < c->chunks; j++) {
        int64_t len = out[j].shape[dim];
        size_t block = (size_t)(len * inner) * elem;
        /* (an empty input may have no data: not even an offset from it) */
        for (int64_t o = 0; block && o < outer; o++)
            memcpy((char *)out[j].data + (size_t)o * block,
                   (const char *)in->data + (size_t)((o * size + start) * inner) * elem, block);
        start += len;
    }
}

/* chunk on CUDA: one 2-d copy per piece (outer rows of len · inner). */
static ai3_status chunk_run_cuda(const ai3_graph *g, const chunk_node *c, const ai3_tensor *in,
                                 ai3_tensor *out, void *stream) {
    int dim = c->dim < 0 ? c->dim + in->ndim : c->dim;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= in->shape[i];
    for (int i = dim + 1; i < in->ndim; i++) inner *= in->shape[i];
    size_t elem = ai3_dtype_size(in->dtype), row = (size_t)(in->shape[dim] * inner) * elem;
    size_t start = 0;
    ai3_status s = AI3_OK;
    for (int j = 0; s == AI3_OK && j < c->chunks; j++) {
        size_t block = (size_t)(out[j].shape[dim] * inner) * elem;
        s = ai3_graph_cuda(g)->copy_rows(g->device_index, out[j].data, block,
                                         (const char *)in->data + start, row, block,
                                         (size_t)outer, stream);
        start += block;
    }
    return s;
}

ai3_status ai3_graph_node_run(const ai3_graph *g, const graph_node *node,
                              const ai3_tensor *const *in, ai3_tensor *out, void *workspace,
                              size_t workspace_bytes, void *stream) {
    int cuda = g->device == AI3_DEVICE_CUDA;
    switch (node->kind) {
    case NODE_RESHAPE: return AI3_OK; /* a view */
    case NODE_CHUNK:
        if (cuda) return chunk_run_cuda(g, &node->u.chunk, in[0], out, stream);
        chunk_run(&node->u.chunk, in[0], out);
        return AI3_OK;
    case NODE_TRANSPOSE: {
        ai3_op_params p = {.permute = {.ndim = in[0]->ndim}};
        ai3_status s = transpose_order(&node->u.transpose, in[0]->ndim, p.permute.perm);
        if (s != AI3_OK || !cuda)
            return s != AI3_OK ? s
                               : ai3_permute(node->u.transpose.algorithm, in[0],
                                             p.permute.perm, out);
        ai3_plan *plan; /* its order depends on the input's rank: a plan per run */
        if ((s = ai3_plan_create(AI3_OP_PERMUTE, node->u.transpose.algorithm, 0, NULL, &p, NULL,
                                 &plan)) != AI3_OK)
            return s;
        s = ai3_plan_run_stream(plan, 1, in, out, NULL, 0, stream);
        ai3_plan_destroy(plan);
        return s;
    }
    default:
        if (node->u.op.view) return AI3_OK;
        return ai3_plan_run_stream(node->u.op.plan, node->n_inputs, in, out, workspace,
                                   workspace_bytes, stream);
    }
}
