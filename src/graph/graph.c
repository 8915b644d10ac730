/* Graphs: building them, and each node's shape and compute functions.
 * Planning and running are in plan.c. */
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const node_ops[] = {
    [NODE_CONV2D] = "conv2d",         [NODE_LINEAR] = "linear",
    [NODE_MAXPOOL2D] = "maxpool2d",   [NODE_AVGPOOL2D] = "avgpool2d",
    [NODE_ADAPTIVEAVGPOOL2D] = "adaptiveavgpool2d",
    [NODE_RELU] = "relu",             [NODE_FLATTEN] = "flatten",
    [NODE_RESHAPE] = "reshape",       [NODE_BATCHNORM2D] = "batchnorm2d",
    [NODE_ADD] = "add",               [NODE_MUL] = "mul",
    [NODE_CAT] = "cat",               [NODE_HARDTANH] = "hardtanh",
    [NODE_SIGMOID] = "sigmoid",       [NODE_HARDSIGMOID] = "hardsigmoid",
    [NODE_HARDSWISH] = "hardswish",   [NODE_SILU] = "silu",
    [NODE_GELU] = "gelu",             [NODE_MEAN] = "mean",
    [NODE_PERMUTE] = "permute",       [NODE_LAYERNORM] = "layernorm",
    [NODE_SOFTMAX] = "softmax",       [NODE_CHUNK] = "chunk",
};

/* The registry's operation for a node kind, -1 for those without one. */
static int registry_op(node_kind kind) {
    switch (kind) {
    case NODE_MAXPOOL2D: return AI3_OP_MAXPOOL2D;
    case NODE_AVGPOOL2D: return AI3_OP_AVGPOOL2D;
    case NODE_ADAPTIVEAVGPOOL2D: return AI3_OP_ADAPTIVEAVGPOOL2D;
    case NODE_RELU: return AI3_OP_RELU;
    case NODE_FLATTEN: return AI3_OP_FLATTEN;
    case NODE_BATCHNORM2D: return AI3_OP_BATCHNORM2D;
    case NODE_ADD: return AI3_OP_ADD;
    case NODE_MUL: return AI3_OP_MUL;
    case NODE_CAT: return AI3_OP_CAT;
    case NODE_HARDTANH: return AI3_OP_HARDTANH;
    case NODE_SIGMOID: return AI3_OP_SIGMOID;
    case NODE_HARDSIGMOID: return AI3_OP_HARDSIGMOID;
    case NODE_HARDSWISH: return AI3_OP_HARDSWISH;
    case NODE_SILU: return AI3_OP_SILU;
    case NODE_GELU: return AI3_OP_GELU;
    case NODE_MEAN: return AI3_OP_MEAN;
    case NODE_PERMUTE: return AI3_OP_PERMUTE;
    case NODE_LAYERNORM: return AI3_OP_LAYERNORM;
    case NODE_SOFTMAX: return AI3_OP_SOFTMAX;
    default: return -1;
    }
}

const char *ai3_graph_node_op(const graph_node *node) { return node_ops[node->kind]; }

node_storage ai3_graph_node_storage(const graph_node *node) {
    switch (node->kind) {
    case NODE_RESHAPE: return STORE_VIEW;
    case NODE_FLATTEN: return node->flag ? STORE_VIEW : STORE_NEW;
    case NODE_RELU: case NODE_BATCHNORM2D: case NODE_ADD: case NODE_MUL: case NODE_HARDTANH:
    case NODE_SIGMOID: case NODE_HARDSIGMOID: case NODE_HARDSWISH: case NODE_SILU:
    case NODE_GELU: case NODE_LAYERNORM: case NODE_SOFTMAX:
        return STORE_INPLACE;
    default: return STORE_NEW;
    }
}

/* ------------------------------------------------------------------------ */
/* Creating and destroying                                                   */
/* ------------------------------------------------------------------------ */

ai3_status ai3_graph_create(ai3_dtype dtype, ai3_graph **graph) {
    if (!graph) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph pointer is NULL");
    *graph = NULL;
    if (dtype != AI3_FLOAT32 && dtype != AI3_FLOAT64)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "graph: unknown dtype code %d (float32 or float64 expected)",
                             (int)dtype);
    ai3_graph *g = calloc(1, sizeof *g);
    if (!g) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    g->dtype = dtype;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g);
        return ai3_set_error(AI3_ERROR_INTERNAL, "graph: could not create a mutex");
    }
    *graph = g;
    return AI3_OK;
}

static void free_node(graph_node *node) {
    free(node->inputs);
    ai3_conv2d_plan_destroy(node->conv_plan);
    ai3_linear_plan_destroy(node->linear_plan);
    for (int i = 0; i < 4; i++) ai3_free(node->tensors[i].data);
}

void ai3_graph_destroy(ai3_graph *g) {
    if (!g) return;
    ai3_graph_release_plans(g);
    for (int i = 0; i < g->n_nodes; i++) free_node(&g->nodes[i]);
    for (int i = 0; i < g->n_constants; i++) ai3_free(g->constants[i].data);
    free(g->nodes);
    free(g->values);
    free(g->constants);
    free(g->outputs);
    pthread_mutex_destroy(&g->lock);
    free(g);
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

/* A copy of `t` (checked: the graph's dtype) into *copy; a NULL `t` gives
 * an empty slot. */
static ai3_status copy_tensor(const ai3_graph *g, const ai3_tensor *t, const char *what,
                              const char *op, ai3_tensor *copy) {
    memset(copy, 0, sizeof *copy);
    if (!t) return AI3_OK;
    ai3_status s = ai3_check_tensor(t, what, op);
    if (s != AI3_OK) return s;
    if (t->dtype != g->dtype)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: %s is %s but the graph computes in %s", op, what,
                             t->dtype == AI3_FLOAT64 ? "float64" : "float32",
                             g->dtype == AI3_FLOAT64 ? "float64" : "float32");
    size_t bytes = (size_t)ai3_tensor_numel(t) * ai3_dtype_size(t->dtype);
    *copy = *t;
    copy->data = ai3_alloc(bytes);
    if (!copy->data) return AI3_ERROR_OUT_OF_MEMORY;
    if (bytes) memcpy(copy->data, t->data, bytes);
    return AI3_OK;
}

ai3_status ai3_graph_add_constant(ai3_graph *g, const ai3_tensor *tensor, int *value) {
    ai3_status s = check_graph(g, value, "constant");
    if (s != AI3_OK) return s;
    if (!tensor)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph constant: tensor is NULL");
    ai3_tensor *c = realloc(g->constants, sizeof *c * (size_t)(g->n_constants + 1));
    if (!c) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    g->constants = c;
    if ((s = copy_tensor(g, tensor, "tensor", "graph constant", &c[g->n_constants])) != AI3_OK)
        return s;
    int id = new_value(g, VALUE_CONSTANT, g->n_constants);
    if (id < 0) {
        ai3_free(c[g->n_constants].data);
        return AI3_ERROR_OUT_OF_MEMORY;
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
static ai3_status start_node(const ai3_graph *g, node_kind kind, const char *algorithm,
                             int n_inputs, const int *inputs, const int *output,
                             graph_node *node) {
    const char *op = node_ops[kind];
    memset(node, 0, sizeof *node);
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
    if (!algorithm)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: algorithm name is NULL", op);
    if (strlen(algorithm) >= sizeof node->algorithm)
        return ai3_set_error(AI3_ERROR_UNKNOWN_ALGORITHM,
                             "graph %s: algorithm name '%.40s...' is too long", op, algorithm);
    int reg = registry_op(kind);
    if (reg >= 0) {
        ai3_algorithm_fn fn;
        ai3_status s = ai3_lookup_algorithm((ai3_op)reg, algorithm, g->dtype, &fn);
        if (s != AI3_OK) return s;
    }
    node->kind = kind;
    snprintf(node->algorithm, sizeof node->algorithm, "%s", algorithm);
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

ai3_status ai3_graph_conv2d(ai3_graph *g, const char *algorithm, int input,
                            const ai3_tensor *weight, const ai3_tensor *bias,
                            const ai3_conv2d_params *params, const ai3_tensor *input_shape,
                            int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_CONV2D, algorithm, 1, &input, output, &node);
    if (s == AI3_OK && !params)
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph conv2d: params is NULL");
    if (s == AI3_OK && weight && weight->dtype != g->dtype)
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph conv2d: weight is not of the graph's dtype");
    ai3_tensor expected; /* only its shape is read */
    if (input_shape) {
        expected = *input_shape;
        expected.data = ai3_graph_shape_only;
    }
    if (s == AI3_OK) {
        node.conv = *params;
        s = ai3_conv2d_plan_create(algorithm, weight, bias, params,
                                   input_shape ? &expected : NULL, &node.conv_plan);
    }
    if (s == AI3_OK) {
        node.weight_shape = *weight;
        node.weight_shape.data = ai3_graph_shape_only;
    }
    return finish_node(g, &node, s, output);
}

const char *ai3_graph_conv2d_algorithm(const ai3_graph *g, int value) {
    if (!g || value < 0 || value >= g->n_values || g->values[value].kind != VALUE_NODE)
        return NULL;
    const graph_node *node = &g->nodes[g->values[value].index];
    return node->kind == NODE_CONV2D ? ai3_conv2d_plan_algorithm(node->conv_plan) : NULL;
}

ai3_status ai3_graph_linear(ai3_graph *g, const char *algorithm, int input,
                            const ai3_tensor *weight, const ai3_tensor *bias, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_LINEAR, algorithm, 1, &input, output, &node);
    if (s == AI3_OK && weight && weight->dtype != g->dtype)
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph linear: weight is not of the graph's dtype");
    if (s == AI3_OK) s = ai3_linear_plan_create(algorithm, weight, bias, &node.linear_plan);
    if (s == AI3_OK) {
        node.linear_out = weight->shape[0];
        node.linear_in = weight->shape[1];
    }
    return finish_node(g, &node, s, output);
}

static ai3_status pool(ai3_graph *g, node_kind kind, const char *algorithm, int input,
                       const ai3_pool2d_params *params, int *output) {
    graph_node node;
    ai3_status s = start_node(g, kind, algorithm, 1, &input, output, &node);
    if (s == AI3_OK && !params)
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph %s: params is NULL", node_ops[kind]);
    if (s == AI3_OK) node.pool = *params;
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_maxpool2d(ai3_graph *g, const char *algorithm, int input,
                               const ai3_pool2d_params *params, int *output) {
    return pool(g, NODE_MAXPOOL2D, algorithm, input, params, output);
}

ai3_status ai3_graph_avgpool2d(ai3_graph *g, const char *algorithm, int input,
                               const ai3_pool2d_params *params, int *output) {
    return pool(g, NODE_AVGPOOL2D, algorithm, input, params, output);
}

ai3_status ai3_graph_adaptiveavgpool2d(ai3_graph *g, const char *algorithm, int input,
                                       int64_t out_h, int64_t out_w, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_ADAPTIVEAVGPOOL2D, algorithm, 1, &input, output, &node);
    if (s == AI3_OK && (out_h < 0 || out_w < 0))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph adaptiveavgpool2d: output size (%lld, %lld) is negative",
                          (long long)out_h, (long long)out_w);
    node.out_h = out_h;
    node.out_w = out_w;
    return finish_node(g, &node, s, output);
}

static ai3_status unary(ai3_graph *g, node_kind kind, const char *algorithm, int input,
                        int *output) {
    graph_node node;
    ai3_status s = start_node(g, kind, algorithm, 1, &input, output, &node);
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_relu(ai3_graph *g, const char *algorithm, int input, int *output) {
    return unary(g, NODE_RELU, algorithm, input, output);
}
ai3_status ai3_graph_sigmoid(ai3_graph *g, const char *algorithm, int input, int *output) {
    return unary(g, NODE_SIGMOID, algorithm, input, output);
}
ai3_status ai3_graph_hardsigmoid(ai3_graph *g, const char *algorithm, int input, int *output) {
    return unary(g, NODE_HARDSIGMOID, algorithm, input, output);
}
ai3_status ai3_graph_hardswish(ai3_graph *g, const char *algorithm, int input, int *output) {
    return unary(g, NODE_HARDSWISH, algorithm, input, output);
}
ai3_status ai3_graph_silu(ai3_graph *g, const char *algorithm, int input, int *output) {
    return unary(g, NODE_SILU, algorithm, input, output);
}

ai3_status ai3_graph_hardtanh(ai3_graph *g, const char *algorithm, int input, double min_val,
                              double max_val, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_HARDTANH, algorithm, 1, &input, output, &node);
    if (s == AI3_OK && !(min_val <= max_val))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph hardtanh: min_val %g is greater than max_val %g", min_val,
                          max_val);
    node.lo = min_val;
    node.hi = max_val;
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_gelu(ai3_graph *g, const char *algorithm, int input,
                          int tanh_approximation, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_GELU, algorithm, 1, &input, output, &node);
    node.flag = tanh_approximation != 0;
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_flatten(ai3_graph *g, const char *algorithm, int input, int start_dim,
                             int end_dim, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_FLATTEN, algorithm, 1, &input, output, &node);
    node.dim = start_dim;
    node.dim2 = end_dim;
    node.flag = algorithm && strcmp(algorithm, "default") == 0; /* a view */
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_reshape(ai3_graph *g, int input, int ndim, const ai3_graph_dim *dims,
                             int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_RESHAPE, "default", 1, &input, output, &node);
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
            node.shape[i] = dims[i];
    }
    node.n_dims = ndim;
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_chunk(ai3_graph *g, int input, int chunks, int dim, int *outputs) {
    graph_node node;
    ai3_status s = start_node(g, NODE_CHUNK, "default", 1, &input, outputs, &node);
    if (s == AI3_OK && chunks < 1)
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph chunk: chunks must be at least 1, got %d", chunks);
    node.count = node.n_outputs = chunks;
    node.dim = dim;
    if (s != AI3_OK) node.n_outputs = 1;
    return finish_node(g, &node, s, outputs);
}

ai3_status ai3_graph_batchnorm2d(ai3_graph *g, const char *algorithm, int input,
                                 const ai3_tensor *running_mean, const ai3_tensor *running_var,
                                 const ai3_tensor *weight, const ai3_tensor *bias, double eps,
                                 int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_BATCHNORM2D, algorithm, 1, &input, output, &node);
    if (s == AI3_OK && (!running_mean || !running_var))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph batchnorm2d: running_mean and running_var are required");
    if (s == AI3_OK && !(eps > 0))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph batchnorm2d: eps must be > 0");
    const ai3_tensor *given[4] = {running_mean, running_var, weight, bias};
    const char *what[4] = {"running_mean", "running_var", "weight", "bias"};
    for (int i = 0; s == AI3_OK && i < 4; i++) {
        s = copy_tensor(g, given[i], what[i], "graph batchnorm2d", &node.tensors[i]);
        if (s == AI3_OK && given[i] && (given[i]->ndim != 1 ||
                                        given[i]->shape[0] != running_mean->shape[0]))
            s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                              "graph batchnorm2d: %s must be 1-d with as many entries as "
                              "running_mean", what[i]);
    }
    node.lo = eps;
    return finish_node(g, &node, s, output);
}

static ai3_status binary(ai3_graph *g, node_kind kind, const char *algorithm, int a, int b,
                         int *output) {
    graph_node node;
    int inputs[2] = {a, b};
    ai3_status s = start_node(g, kind, algorithm, 2, inputs, output, &node);
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_add(ai3_graph *g, const char *algorithm, int a, int b, int *output) {
    return binary(g, NODE_ADD, algorithm, a, b, output);
}
ai3_status ai3_graph_mul(ai3_graph *g, const char *algorithm, int a, int b, int *output) {
    return binary(g, NODE_MUL, algorithm, a, b, output);
}

ai3_status ai3_graph_cat(ai3_graph *g, const char *algorithm, int n_inputs, const int *inputs,
                         int dim, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_CAT, algorithm, n_inputs, inputs, output, &node);
    node.dim = dim;
    return finish_node(g, &node, s, output);
}

/* Copies n_dims ints (at most AI3_MAX_DIMS) into the node. */
static ai3_status set_dims(graph_node *node, const int *dims, int n_dims) {
    if (n_dims < 0 || n_dims > AI3_MAX_DIMS || (n_dims > 0 && !dims))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "graph %s: %d dimensions given (0 to %d, not NULL)",
                             node_ops[node->kind], n_dims, AI3_MAX_DIMS);
    node->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) node->dims[i] = dims[i];
    return AI3_OK;
}

ai3_status ai3_graph_mean(ai3_graph *g, const char *algorithm, int input, const int *dims,
                          int n_dims, int keepdim, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_MEAN, algorithm, 1, &input, output, &node);
    if (s == AI3_OK) s = set_dims(&node, dims, n_dims);
    node.flag = keepdim != 0;
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_permute(ai3_graph *g, const char *algorithm, int input, int ndim,
                             const int *perm, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_PERMUTE, algorithm, 1, &input, output, &node);
    if (s == AI3_OK) s = set_dims(&node, perm, ndim);
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_transpose(ai3_graph *g, const char *algorithm, int input, int dim0,
                               int dim1, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_PERMUTE, algorithm, 1, &input, output, &node);
    node.flag = 1; /* the order is made per run from the input's rank */
    node.dims[0] = dim0;
    node.dims[1] = dim1;
    return finish_node(g, &node, s, output);
}

/* The permute order of a node for an input of rank ndim (a transpose's
 * made from its two dims). */
static ai3_status permute_order(const graph_node *node, int ndim, int *perm) {
    if (!node->flag) {
        if (node->n_dims != ndim)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "permute: %d dimensions in the order for an input of %d",
                                 node->n_dims, ndim);
        for (int i = 0; i < ndim; i++) perm[i] = node->dims[i];
        return AI3_OK;
    }
    int a = node->dims[0] < 0 ? node->dims[0] + ndim : node->dims[0];
    int b = node->dims[1] < 0 ? node->dims[1] + ndim : node->dims[1];
    if (a < 0 || a >= ndim || b < 0 || b >= ndim)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "transpose: dims (%d, %d) are out of range for %d dimensions",
                             node->dims[0], node->dims[1], ndim);
    for (int i = 0; i < ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return AI3_OK;
}

ai3_status ai3_graph_layernorm(ai3_graph *g, const char *algorithm, int input,
                               int normalized_ndim, const ai3_tensor *weight,
                               const ai3_tensor *bias, double eps, int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_LAYERNORM, algorithm, 1, &input, output, &node);
    if (s == AI3_OK && (normalized_ndim < 1 || normalized_ndim > AI3_MAX_DIMS))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                          "graph layernorm: normalized_ndim must be 1 to %d, got %d",
                          AI3_MAX_DIMS, normalized_ndim);
    if (s == AI3_OK && !(eps > 0))
        s = ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph layernorm: eps must be > 0");
    if (s == AI3_OK) s = copy_tensor(g, weight, "weight", "graph layernorm", &node.tensors[0]);
    if (s == AI3_OK) s = copy_tensor(g, bias, "bias", "graph layernorm", &node.tensors[1]);
    node.count = normalized_ndim;
    node.lo = eps;
    return finish_node(g, &node, s, output);
}

ai3_status ai3_graph_softmax(ai3_graph *g, const char *algorithm, int input, int dim,
                             int *output) {
    graph_node node;
    ai3_status s = start_node(g, NODE_SOFTMAX, algorithm, 1, &input, output, &node);
    node.dim = dim;
    return finish_node(g, &node, s, output);
}

/* ------------------------------------------------------------------------ */
/* Shapes, workspaces and computing, per node                                */
/* ------------------------------------------------------------------------ */

static const ai3_tensor *opt(const ai3_tensor *t) { return t->data ? t : NULL; }

static void same_shape(const ai3_tensor *in, ai3_tensor *out) {
    out->ndim = in->ndim;
    for (int i = 0; i < in->ndim; i++) out->shape[i] = in->shape[i];
}

ai3_status ai3_graph_reshape_shape(const graph_node *node, const ai3_tensor *const *in,
                                   const ai3_tensor *values, ai3_tensor *out) {
    int64_t known = 1, numel = ai3_tensor_numel(in[0]);
    int inferred = -1;
    for (int i = 0; i < node->n_dims; i++) {
        const ai3_graph_dim *d = &node->shape[i];
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
        if (size == -1) inferred = i;
        else known *= size;
        out->shape[i] = size;
    }
    out->ndim = node->n_dims;
    if (inferred >= 0 && known > 0 && numel % known == 0) out->shape[inferred] = numel / known;
    if ((inferred >= 0 && (known == 0 || numel % known != 0)) ||
        (inferred < 0 && known != numel))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "reshape: an input of %lld elements cannot be viewed in that "
                             "shape", (long long)numel);
    return AI3_OK;
}

static ai3_status chunk_shapes(const graph_node *node, const ai3_tensor *in, ai3_tensor *out) {
    int dim = node->dim < 0 ? node->dim + in->ndim : node->dim;
    if (dim < 0 || dim >= in->ndim)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "chunk: dim %d is out of range for %d dimensions", node->dim,
                             in->ndim);
    int64_t size = in->shape[dim], piece = (size + node->count - 1) / node->count;
    int64_t pieces = piece ? (size + piece - 1) / piece : 0;
    if (pieces != node->count)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "chunk: a size of %lld along dim %d makes %lld chunks, not %d",
                             (long long)size, node->dim, (long long)pieces, node->count);
    for (int j = 0; j < node->count; j++) {
        same_shape(in, &out[j]);
        out[j].shape[dim] = AI3_MIN(piece, size - j * piece);
    }
    return AI3_OK;
}

ai3_status ai3_graph_node_shapes(const ai3_graph *g, const graph_node *node,
                                 const ai3_tensor *const *in, ai3_tensor *out) {
    int *nd = &out->ndim;
    int64_t *sh = out->shape;
    switch (node->kind) {
    case NODE_CONV2D:
        return ai3_conv2d_output_shape(in[0], &node->weight_shape, &node->conv, nd, sh);
    case NODE_LINEAR: {
        const ai3_tensor *x = in[0];
        if (x->ndim < 1 || x->shape[x->ndim - 1] != node->linear_in)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "linear: the input's last dimension must be %lld (in_features), "
                                 "got %s%lld", (long long)node->linear_in,
                                 x->ndim < 1 ? "a 0-d input " : "",
                                 x->ndim < 1 ? 0LL : (long long)x->shape[x->ndim - 1]);
        same_shape(x, out);
        sh[x->ndim - 1] = node->linear_out;
        return AI3_OK;
    }
    case NODE_MAXPOOL2D: return ai3_maxpool2d_output_shape(in[0], &node->pool, nd, sh);
    case NODE_AVGPOOL2D: return ai3_avgpool2d_output_shape(in[0], &node->pool, nd, sh);
    case NODE_ADAPTIVEAVGPOOL2D: {
        const ai3_tensor *x = in[0];
        int64_t h = node->out_h, w = node->out_w;
        if (x->ndim >= 2) {
            if (!h) h = x->shape[x->ndim - 2];
            if (!w) w = x->shape[x->ndim - 1];
        }
        return ai3_adaptiveavgpool2d_output_shape(x, h, w, nd, sh);
    }
    case NODE_FLATTEN: return ai3_flatten_output_shape(in[0], node->dim, node->dim2, nd, sh);
    case NODE_RESHAPE: return AI3_ERROR_INTERNAL; /* needs every value: plan.c */
    case NODE_ADD:
    case NODE_MUL: return ai3_broadcast_output_shape(in[0], in[1], nd, sh);
    case NODE_CAT: return ai3_cat_output_shape(in, node->n_inputs, node->dim, nd, sh);
    case NODE_MEAN:
        return ai3_mean_output_shape(in[0], node->dims, node->n_dims, node->flag, nd, sh);
    case NODE_PERMUTE: {
        int perm[AI3_MAX_DIMS];
        ai3_status s = permute_order(node, in[0]->ndim, perm);
        return s != AI3_OK ? s : ai3_permute_output_shape(in[0], perm, nd, sh);
    }
    case NODE_CHUNK: return chunk_shapes(node, in[0], out);
    case NODE_BATCHNORM2D:
        if (in[0]->ndim != 3 && in[0]->ndim != 4)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "batchnorm2d: input must be (N, C, H, W) or (C, H, W), got %d "
                                 "dimensions", in[0]->ndim);
        if (in[0]->shape[in[0]->ndim - 3] != node->tensors[0].shape[0])
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "batchnorm2d: input has %lld channels, the statistics %lld",
                                 (long long)in[0]->shape[in[0]->ndim - 3],
                                 (long long)node->tensors[0].shape[0]);
        same_shape(in[0], out);
        return AI3_OK;
    case NODE_LAYERNORM: {
        const ai3_tensor *x = in[0], *w = opt(&node->tensors[0]);
        if (node->count > x->ndim)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "layernorm: normalizes the last %d dimensions of an input "
                                 "with %d", node->count, x->ndim);
        for (int i = 0; w && i < w->ndim && w->ndim == node->count; i++)
            if (w->shape[i] != x->shape[x->ndim - node->count + i])
                return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                     "layernorm: the input's last dimensions do not match the "
                                     "normalized shape of the weight");
        same_shape(x, out);
        return AI3_OK;
    }
    case NODE_SOFTMAX: {
        int dim = node->dim < 0 ? node->dim + in[0]->ndim : node->dim;
        if (in[0]->ndim > 0 && (dim < 0 || dim >= in[0]->ndim))
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "softmax: dim %d is out of range for %d dimensions",
                                 node->dim, in[0]->ndim);
        same_shape(in[0], out);
        return AI3_OK;
    }
    default: /* elementwise activations */
        same_shape(in[0], out);
        return AI3_OK;
    }
}

ai3_status ai3_graph_node_workspace(const graph_node *node, const ai3_tensor *const *in,
                                    size_t *bytes) {
    *bytes = 0;
    if (node->kind == NODE_CONV2D)
        return ai3_conv2d_plan_workspace_size(node->conv_plan, in[0], bytes);
    return AI3_OK;
}

/* Copies the pieces of in along node->dim into out[0..count). */
static void chunk_run(const graph_node *node, const ai3_tensor *in, ai3_tensor *out) {
    int dim = node->dim < 0 ? node->dim + in->ndim : node->dim;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= in->shape[i];
    for (int i = dim + 1; i < in->ndim; i++) inner *= in->shape[i];
    size_t elem = ai3_dtype_size(in->dtype);
    int64_t size = in->shape[dim], start = 0;
    for (int j = 0; j < node->count; j++) {
        int64_t len = out[j].shape[dim];
        size_t block = (size_t)(len * inner) * elem;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out[j].data + (size_t)o * block,
                   (const char *)in->data + (size_t)((o * size + start) * inner) * elem, block);
        start += len;
    }
}

ai3_status ai3_graph_node_run(const graph_node *node, const ai3_tensor *const *in,
                              ai3_tensor *out, void *workspace, size_t workspace_bytes) {
    const char *a = node->algorithm;
    const ai3_tensor *t = node->tensors;
    switch (node->kind) {
    case NODE_CONV2D:
        return ai3_conv2d_plan_run(node->conv_plan, in[0], out, workspace, workspace_bytes);
    case NODE_LINEAR: return ai3_linear_plan_run(node->linear_plan, in[0], out);
    case NODE_MAXPOOL2D: return ai3_maxpool2d(a, in[0], &node->pool, out);
    case NODE_AVGPOOL2D: return ai3_avgpool2d(a, in[0], &node->pool, out);
    case NODE_ADAPTIVEAVGPOOL2D:
        return ai3_adaptiveavgpool2d(a, in[0], out->shape[out->ndim - 2],
                                     out->shape[out->ndim - 1], out);
    case NODE_RELU: return ai3_relu(a, in[0], out);
    case NODE_FLATTEN: return ai3_flatten(a, in[0], node->dim, node->dim2, out);
    case NODE_RESHAPE: return AI3_OK; /* a view */
    case NODE_BATCHNORM2D:
        return ai3_batchnorm2d(a, in[0], &t[0], &t[1], opt(&t[2]), opt(&t[3]), node->lo, out);
    case NODE_ADD: return ai3_add(a, in[0], in[1], out);
    case NODE_MUL: return ai3_mul(a, in[0], in[1], out);
    case NODE_CAT: return ai3_cat(a, in, node->n_inputs, node->dim, out);
    case NODE_HARDTANH: return ai3_hardtanh(a, in[0], node->lo, node->hi, out);
    case NODE_SIGMOID: return ai3_sigmoid(a, in[0], out);
    case NODE_HARDSIGMOID: return ai3_hardsigmoid(a, in[0], out);
    case NODE_HARDSWISH: return ai3_hardswish(a, in[0], out);
    case NODE_SILU: return ai3_silu(a, in[0], out);
    case NODE_GELU: return ai3_gelu(a, in[0], node->flag, out);
    case NODE_MEAN: return ai3_mean(a, in[0], node->dims, node->n_dims, node->flag, out);
    case NODE_PERMUTE: {
        int perm[AI3_MAX_DIMS];
        ai3_status s = permute_order(node, in[0]->ndim, perm);
        return s != AI3_OK ? s : ai3_permute(a, in[0], perm, out);
    }
    case NODE_LAYERNORM:
        return ai3_layernorm(a, in[0], node->count, opt(&t[0]), opt(&t[1]), node->lo, out);
    case NODE_SOFTMAX: return ai3_softmax(a, in[0], node->dim, out);
    case NODE_CHUNK: chunk_run(node, in[0], out); return AI3_OK;
    }
    return ai3_set_error(AI3_ERROR_INTERNAL, "graph: unknown node kind %d", (int)node->kind);
}
