/* The graph executor's internal structures, shared by graph.c (building and
 * the nodes' shape and compute functions) and plan.c (plans, memory, runs). */
#ifndef AI3_GRAPH_H
#define AI3_GRAPH_H

#include "internal.h"

#include <pthread.h>

typedef enum node_kind {
    NODE_CONV2D,
    NODE_LINEAR,
    NODE_MAXPOOL2D,
    NODE_AVGPOOL2D,
    NODE_ADAPTIVEAVGPOOL2D,
    NODE_RELU,
    NODE_FLATTEN,
    NODE_RESHAPE,
    NODE_BATCHNORM2D,
    NODE_ADD,
    NODE_MUL,
    NODE_CAT,
    NODE_HARDTANH,
    NODE_SIGMOID,
    NODE_HARDSIGMOID,
    NODE_HARDSWISH,
    NODE_SILU,
    NODE_GELU,
    NODE_MEAN,
    NODE_PERMUTE,
    NODE_LAYERNORM,
    NODE_SOFTMAX,
    NODE_CHUNK
} node_kind;

/* How a node's result is stored. */
typedef enum node_storage {
    STORE_NEW,     /* a buffer of its own */
    STORE_VIEW,    /* a view of input 0's buffer (reshape, flatten) */
    STORE_INPLACE  /* may overwrite input 0 (or 1, for add/mul) if no later node reads it */
} node_storage;

typedef struct graph_node {
    node_kind kind;
    char algorithm[64];
    int n_inputs;
    int *inputs;     /* value ids */
    int n_outputs;   /* 1, or the chunk count */
    int output;      /* the first output's value id; outputs are consecutive */

    ai3_conv2d_params conv;
    ai3_conv2d_plan *conv_plan;
    ai3_tensor weight_shape;       /* the conv2d weight's shape (the plan holds the data) */
    ai3_linear_plan *linear_plan;
    int64_t linear_in, linear_out;  /* the linear weight's shape */
    ai3_pool2d_params pool;
    int64_t out_h, out_w;          /* adaptiveavgpool2d; 0 keeps the input's size */
    int dim, dim2;                 /* flatten start/end, cat/softmax/chunk dim, ... */
    int flag;                      /* mean keepdim, gelu tanh, flatten as a view,
                                      permute as a transpose of dims[0], dims[1] */
    int count;                     /* chunk count, layernorm normalized_ndim */
    int n_dims;
    int dims[AI3_MAX_DIMS];        /* mean dims, permute order */
    ai3_graph_dim shape[AI3_MAX_DIMS]; /* reshape target, n_dims entries */
    double lo, hi;                 /* hardtanh bounds; lo is eps for the norms */
    ai3_tensor tensors[4];         /* owned copies: batchnorm mean, var, weight, bias;
                                      layernorm weight, bias (data NULL if absent) */
} graph_node;

typedef enum value_kind { VALUE_INPUT, VALUE_CONSTANT, VALUE_NODE } value_kind;

typedef struct graph_value {
    value_kind kind;
    int index;       /* input number, constant's tensor slot, or producing node */
    char name[64];   /* "" if not named */
} graph_value;

typedef struct graph_plan graph_plan;

struct ai3_graph {
    ai3_dtype dtype;
    int n_values, cap_values;
    graph_value *values;
    int n_nodes, cap_nodes;
    graph_node *nodes;
    int n_constants;
    ai3_tensor *constants;
    int n_inputs;
    int n_outputs;
    int *outputs;

    pthread_mutex_t lock;       /* guards the plans and the arena */
    graph_plan *plans[4];       /* cached plans, most recently used first */
    void *arena;                /* the latest run's arena, reused by the next */
    size_t arena_bytes;
    int arena_busy;
};

/* A non-NULL data pointer for shape-only tensor views: the shape functions
 * check that data is present but never read it. */
extern char ai3_graph_shape_only[1];

/* The shape of node's output(s) from its inputs' shapes (views with
 * non-NULL data); out[] has n_outputs entries. Sets the error message. */
ai3_status ai3_graph_node_shapes(const ai3_graph *g, const graph_node *node,
                                 const ai3_tensor *const *in, ai3_tensor *out);
/* A reshape's target shape, whose sizes may come from any value's shape. */
ai3_status ai3_graph_reshape_shape(const graph_node *node, const ai3_tensor *const *in,
                                   const ai3_tensor *values, ai3_tensor *out);
/* Workspace bytes the node needs for inputs of these shapes. */
ai3_status ai3_graph_node_workspace(const graph_node *node, const ai3_tensor *const *in,
                                    size_t *bytes);
/* Computes the node. */
ai3_status ai3_graph_node_run(const graph_node *node, const ai3_tensor *const *in,
                              ai3_tensor *out, void *workspace, size_t workspace_bytes);
node_storage ai3_graph_node_storage(const graph_node *node);
/* "conv2d", "reshape", ... */
const char *ai3_graph_node_op(const graph_node *node);

/* Frees the cached plans and the arena (plan.c). */
void ai3_graph_release_plans(ai3_graph *g);

#endif
