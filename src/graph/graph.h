/* The graph executor's internal structures, shared by graph.c (building and
 * the nodes' shape and compute functions) and plan.c (plans, memory, runs). */
#ifndef AI3_GRAPH_H
#define AI3_GRAPH_H

#include "cuda_backend.h"
#include "internal.h"
#include "plan.h"

#include <pthread.h>

/* A node computes an operation (kinds numbered as ai3_op) or is one of the
 * graph's own kinds. */
typedef enum node_kind {
#define AI3_OP(ID, ...) NODE_##ID,
#include "ai3_ops.inc"
#undef AI3_OP
    NODE_RESHAPE,   /* a view, its shape made per run from any values' shapes */
    NODE_CHUNK,     /* torch.chunk: several outputs */
    NODE_TRANSPOSE  /* a permute whose order is made per run from the input's rank */
} node_kind;

/* How a node's result is stored. */
typedef enum node_storage {
    STORE_NEW,     /* a buffer of its own */
    STORE_VIEW,    /* a view of input 0's buffer (reshape, flatten) */
    STORE_INPLACE  /* may overwrite input 0 (or 1, for add/mul) if no later node reads it */
} node_storage;

/* The parameters of each kind of node. */
typedef struct op_node {
    ai3_plan *plan; /* the operation, its parameters and weights */
    int view;       /* flatten with "default": a view, nothing to compute */
    /* A float32 CPU conv2d left to "guess": its weights packed for the
     * channel-blocked layout of width blocked_cb (algorithms/blocked.h), or
     * NULL where that layout cannot compute it. */
    struct ai3_blocked_conv2d *blocked;
    int blocked_cb;
} op_node;

typedef struct reshape_node {
    int ndim;
    ai3_graph_dim dims[AI3_MAX_DIMS];
} reshape_node;

typedef struct chunk_node {
    int chunks, dim;
} chunk_node;

typedef struct transpose_node {
    char algorithm[64]; /* permute's */
    int dim0, dim1;
} transpose_node;

typedef struct graph_node {
    node_kind kind;
    int n_inputs;
    int *inputs;     /* value ids */
    int n_outputs;   /* 1, or the chunk count */
    int output;      /* the first output's value id; outputs are consecutive */
    union {          /* by kind: op for the operations */
        op_node op;
        reshape_node reshape;
        chunk_node chunk;
        transpose_node transpose;
    } u;
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
    ai3_device device;          /* where it computes; CUDA: the constants, weights and
                                 * arena are device memory (device_buffers, arena) */
    int device_index;
    int cuda_graphs;            /* CUDA: replay each input shape's run as a CUDA graph */
    int blocked_layout;         /* CPU float32: keep activations channel-blocked between
                                 * the operations that compute on them (plan.c) */
    int batch_split;            /* CPU: may run a large batch in slices (plan.c) */
    int n_device_buffers;
    void **device_buffers;      /* the weights' device copies, freed with the graph */
    void *arena_event;          /* CUDA: recorded after the last run that used the arena */
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

/* The shape of node's output(s) from its inputs' shapes (views with
 * non-NULL data); out[] has n_outputs entries. Sets the error message. */
ai3_status ai3_graph_node_shapes(const graph_node *node, const ai3_tensor *const *in,
                                 const ai3_tensor *values, ai3_tensor *out);
/* Workspace bytes the node needs for inputs of these shapes. */
ai3_status ai3_graph_node_workspace(const graph_node *node, const ai3_tensor *const *in,
                                    size_t *bytes);
/* Computes the node (on `stream` for CUDA tensors). */
ai3_status ai3_graph_node_run(const ai3_graph *g, const graph_node *node,
                              const ai3_tensor *const *in, ai3_tensor *out, void *workspace,
                              size_t workspace_bytes, void *stream);
node_storage ai3_graph_node_storage(const graph_node *node);
/* "conv2d", "reshape", ... */
const char *ai3_graph_node_op(const graph_node *node);

/* What the latest plan computes conv2d node i by on channel-blocked values
 * ("direct (NCHW16c)", ...), or NULL where it does not compute it so. */
const char *ai3_graph_node_blocked_algorithm(const ai3_graph *g, int i);

/* Frees the cached plans and the arena (plan.c). */
void ai3_graph_release_plans(ai3_graph *g);

/* The CUDA backend, for a graph on a CUDA device (loaded when it was made). */
const struct ai3_cuda_backend *ai3_graph_cuda(const ai3_graph *g);

#endif
