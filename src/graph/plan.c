/* Graph plans (one per combination of input shapes: every value's shape and
 * where its data lives) and runs. */
#include "graph.h"
#include "algorithms/blocked.h"
#include "ops/op.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_OFFSET ((size_t)-1)
#define FUSED_AWAY (-2)
#define BIAS_DEFERRED (-3) /* a linear whose bias a later fused node adds */
#define NEVER INT_MAX /* the last use of a graph output */

struct graph_plan {
    int refs;           /* runs using it, plus one while cached */
    /* CUDA graphs: after an eager first run, the plan's run is captured with
     * buffers of its own (arena, inputs, outputs: `replay_memory`) and
     * replayed; `done` orders replays issued on different streams. */
    const ai3_cuda_backend *cuda;
    int device_index;
    int runs, capture_failed, replaying;
    void *replay_graph, *replay_memory, *done;
    size_t *slot;       /* per graph input, then per output: its offset in replay_memory */
    /* Per node: an operation absorbing the activation that alone reads its
     * output (the index of that node; `fusable` says which), FUSED_AWAY for
     * such an activation (its value a view of the operation's), BIAS_DEFERRED
     * for a linear run without its bias (fuse_permutes), else -1. */
    int *fused;
    /* Per node (CPU): for an operation absorbing an add of its output and
     * another value (fuse_residuals) and for that add, the other value (the
     * residual of the operation's epilogue), else -1. */
    int *residual;
    /* Per node (blocked CPU conv2d): for a 1×1 conv2d run inside the
     * depthwise conv2d that alone reads its output (fuse_expansions), that
     * node in `inside`; for that depthwise conv2d, the 1×1 in `expansion`;
     * else -1. The 1×1's output is never written and has no buffer. */
    int *inside, *expansion;
    /* The channel-blocked layout (CPU float32; algorithms/blocked.h): the
     * block width (0: every value plain), per node whether it computes on
     * blocked values, per value whether it is stored blocked (its shape
     * then has the padded channel count) and the slot holding its other
     * layout for the nodes that read that one, or -1. Slots n_values and up
     * are such copies (alt_of: whose), converted right after the value is
     * made. */
    int cb;
    bool *node_blocked, *blocked;
    int *alt, *alt_of;
    int n_slots;
    int n_inputs;
    ai3_tensor *inputs; /* the input shapes it is for */
    ai3_tensor *values; /* every value's shape (data: ai3_shape_only) */
    int *root;          /* the value whose buffer each value lives in */
    int *bound;         /* per root: the graph output written in place, or -1 */
    size_t *offset;     /* per root in the arena: its offset, else NO_OFFSET */
    size_t arena_bytes; /* tensors, then the workspace */
    size_t tensor_bytes, total_bytes, workspace_bytes;
    int64_t sub_batch;  /* run the batch in slices of this many (choose_sub_batch), or 0 */
};

static void free_plan(graph_plan *p) {
    if (!p) return;
    if (p->cuda) {
        p->cuda->graph_destroy(p->replay_graph);
        p->cuda->release(p->device_index, p->replay_memory);
        p->cuda->event_destroy(p->done);
    }
    free(p->slot);
    free(p->fused);
    free(p->residual);
    free(p->inside);
    free(p->expansion);
    free(p->node_blocked);
    free(p->blocked);
    free(p->alt);
    free(p->alt_of);
    free(p->inputs);
    free(p->values);
    free(p->root);
    free(p->bound);
    free(p->offset);
    free(p);
}

static void unref_plan(graph_plan *p) {
    if (p && --p->refs == 0) free_plan(p);
}

/* Memory for an arena: host memory, or the graph's CUDA device's. */
static void *alloc_arena(const ai3_graph *g, size_t bytes) {
    const ai3_cuda_backend *cuda = ai3_graph_cuda(g);
    if (!cuda) return ai3_alloc(bytes);
    void *p = NULL;
    return cuda->alloc(g->device_index, bytes ? bytes : 1, &p) == AI3_OK ? p : NULL;
}

static void free_arena(const ai3_graph *g, void *arena) {
    const ai3_cuda_backend *cuda = ai3_graph_cuda(g);
    if (cuda) cuda->release(g->device_index, arena);
    else ai3_free(arena);
}

void ai3_graph_release_plans(ai3_graph *g) {
    pthread_mutex_lock(&g->lock);
    for (int i = 0; i < 4; i++) {
        unref_plan(g->plans[i]);
        g->plans[i] = NULL;
    }
    if (!g->arena_busy) {
        free_arena(g, g->arena);
        g->arena = NULL;
        g->arena_bytes = 0;
    }
    pthread_mutex_unlock(&g->lock);
}

static size_t tensor_bytes(const ai3_tensor *t) {
    return (size_t)ai3_tensor_numel(t) * ai3_dtype_size(t->dtype);
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Rewrites the error message as coming from the node, by name or index. */
static ai3_status node_error(const ai3_graph *g, int index, ai3_status s) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", ai3_last_error());
    const graph_node *node = &g->nodes[index];
    const char *name = g->values[node->output].name;
    if (*name)
        return ai3_set_error(s, "graph node '%s' (%s): %s", name, ai3_graph_node_op(node), msg);
    return ai3_set_error(s, "graph node %d (%s): %s", index, ai3_graph_node_op(node), msg);
}

static ai3_status check_inputs(const ai3_graph *g, int n, const ai3_tensor *inputs,
                               int need_data) {
    if (g->n_outputs < 1)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "graph: no outputs set (ai3_graph_set_outputs)");
    if (n != g->n_inputs || (n > 0 && !inputs))
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: takes %d input%s, got %d",
                             g->n_inputs, g->n_inputs == 1 ? "" : "s", n);
    for (int i = 0; i < n; i++) {
        ai3_tensor t = inputs[i];
        if (!need_data) {
            t.data = ai3_shape_only;
            t.device = g->device;
            t.device_index = g->device_index;
        }
        ai3_status s = ai3_check_tensor(&t, "input", "graph");
        if (s != AI3_OK) return s;
        if (t.device != g->device ||
            (g->device == AI3_DEVICE_CUDA && t.device_index != g->device_index)) {
            char on[32], graph_on[32];
            ai3_device_label(t.device, t.device_index, on, sizeof on);
            ai3_device_label(g->device, g->device_index, graph_on, sizeof graph_on);
            return ai3_set_error(g->device == AI3_DEVICE_CPU ? AI3_ERROR_UNSUPPORTED
                                                             : AI3_ERROR_INVALID_ARGUMENT,
                                 "graph: input %d is on %s but the graph computes on %s", i,
                                 on, graph_on);
        }
        if (t.dtype != g->dtype)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "graph: input %d is %s but the graph computes in %s", i,
                                 ai3_dtype_name(t.dtype),
                                 ai3_dtype_name(g->dtype));
    }
    return AI3_OK;
}

/* Offsets for the arena buffers: larger buffers first, each at the lowest
 * offset free during its lifetime [first, last] (node indices). */
typedef struct buffer {
    int root;
    int first, last;
    size_t bytes;
} buffer;

static int by_size_desc(const void *a, const void *b) {
    const buffer *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->first - y->first;
}

static int by_offset(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static ai3_status place_buffers(graph_plan *p, buffer *bufs, int n) {
    qsort(bufs, (size_t)n, sizeof *bufs, by_size_desc);
    size_t *busy = malloc(sizeof *busy * 2 * (size_t)(n + 1)); /* (offset, end) pairs */
    if (!busy) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    size_t top = 0;
    for (int i = 0; i < n; i++) {
        int m = 0;
        for (int j = 0; j < i; j++)
            if (bufs[j].first <= bufs[i].last && bufs[i].first <= bufs[j].last) {
                busy[2 * m] = p->offset[bufs[j].root];
                busy[2 * m + 1] = p->offset[bufs[j].root] + bufs[j].bytes;
                m++;
            }
        qsort(busy, (size_t)m, 2 * sizeof *busy, by_offset);
        size_t at = 0;
        for (int j = 0; j < m; j++) {
            if (busy[2 * j] >= at + bufs[i].bytes) break; /* fits in the gap before it */
            if (busy[2 * j + 1] > at) at = busy[2 * j + 1];
        }
        p->offset[bufs[i].root] = at;
        if (at + bufs[i].bytes > top) top = at + bufs[i].bytes;
    }
    free(busy);
    p->tensor_bytes = top;
    return AI3_OK;
}

/* Whether node is computed by ai3's own code on the CPU: no algorithm
 * registered at run time for it (which a fusion would bypass), no view. */
static bool own_cpu_op(const graph_node *node) {
    return !node->u.op.view &&
           !ai3_is_registered(node->u.op.plan->op, node->u.op.plan->algorithm, AI3_DEVICE_CPU);
}

/* Sets e's activation to the one node computes; false if it is none that a
 * CPU epilogue applies. */
static bool activation_of(const graph_node *node, ai3_epilogue *e) {
    const ai3_op_params *p = &node->u.op.plan->params;
    switch (node->kind) {
    case NODE_RELU: e->act = AI3_ACT_CLAMP, e->lo = 0, e->hi = INFINITY; return true;
    case NODE_HARDTANH:
        e->act = AI3_ACT_CLAMP, e->lo = p->hardtanh.min_val, e->hi = p->hardtanh.max_val;
        return true;
    case NODE_SIGMOID: e->act = AI3_ACT_SIGMOID; return true;
    case NODE_HARDSIGMOID: e->act = AI3_ACT_HARDSIGMOID; return true;
    case NODE_HARDSWISH: e->act = AI3_ACT_HARDSWISH; return true;
    case NODE_SILU: e->act = AI3_ACT_SILU; return true;
    case NODE_GELU:
        e->act = p->gelu.tanh_approximation ? AI3_ACT_GELU_TANH : AI3_ACT_GELU;
        return true;
    default: return false;
    }
}

/* Whether graphs on this device fuse activation node `act` into node `op`:
 * on the CPU into conv2d and linear, applied to each output tile as it is
 * written (ai3_conv2d_run_epilogue, ai3_linear_run_epilogue; in bfloat16
 * only relu and hardtanh into conv2d, which its GEMM clamps); on CUDA into
 * conv2d and linear too, applied with the bias in one pass
 * (ai3_plan_run_fused). */
static bool fusable(const ai3_graph *g, const graph_node *op, const graph_node *act) {
    if (op->u.op.view) return false;
    if (g->device == AI3_DEVICE_CPU) {
        ai3_epilogue e;
        if (g->dtype == AI3_BFLOAT16) /* its GEMM applies a clamp only */
            return op->kind == NODE_CONV2D && own_cpu_op(act) && activation_of(act, &e) &&
                   e.act == AI3_ACT_CLAMP;
        return (op->kind == NODE_CONV2D || op->kind == NODE_LINEAR) && own_cpu_op(act) &&
               activation_of(act, &e);
    }
    switch (act->kind) {
    case NODE_RELU: case NODE_HARDTANH: case NODE_SIGMOID: case NODE_HARDSIGMOID:
    case NODE_HARDSWISH: case NODE_SILU: case NODE_GELU:
        return op->kind == NODE_CONV2D || op->kind == NODE_LINEAR;
    default: return false;
    }
}

/* Fuses each activation into the operation whose output it alone reads
 * (and that is no graph output) where `fusable`: the activation's value
 * becomes a view of the operation's. `readers` counts, per value, the
 * nodes reading it (graph outputs count). */
static void fuse_activations(const ai3_graph *g, const int *readers, int *fused) {
    for (int i = 0; i < g->n_nodes; i++) fused[i] = -1;
    for (int j = 0; j < g->n_nodes; j++) {
        const graph_node *node = &g->nodes[j];
        if (node->n_inputs != 1 || node->kind >= NODE_RESHAPE || node->u.op.view) continue;
        int v = node->inputs[0];
        const graph_value *gv = &g->values[v];
        if (gv->kind != VALUE_NODE || readers[v] != 1) continue;
        int i = gv->index;
        if (g->nodes[i].kind < NODE_RESHAPE && fusable(g, &g->nodes[i], node) && fused[i] < 0) {
            fused[i] = j;
            fused[j] = FUSED_AWAY;
        }
    }
}

/* The input of node j, fused into another one, that the fusion reads on: an
 * add's that is not the residual, else the first input that is a node's
 * value (a mul's other input is its constant). */
static int chain_input(const ai3_graph *g, const graph_plan *p, int j) {
    const graph_node *node = &g->nodes[j];
    if (p->residual[j] >= 0) return node->inputs[0] == p->residual[j];
    for (int k = 0; k < node->n_inputs; k++)
        if (g->values[node->inputs[k]].kind == VALUE_NODE) return k;
    return 0;
}

/* The node that alone reads node i's output (no graph output), or -1. */
static int sole_reader(const ai3_graph *g, const int *readers, int i) {
    int v = g->nodes[i].output;
    if (readers[v] != 1) return -1;
    for (int j = i + 1; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
            if (g->nodes[j].inputs[k] == v) return j;
    return -1;
}

static bool same_shape(const ai3_tensor *a, const ai3_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* On the CPU, an add of a conv2d's (or linear's) output, which the add alone
 * reads, and another value of that shape becomes the operation's epilogue:
 * the other value its residual, added to each output tile as it is written,
 * and an activation alone reading the sum fused too (ResNet: conv, batch
 * norm folded into it, add of the shortcut, relu). The residual must be
 * computed before the operation runs: where both inputs are such outputs
 * (a Bottleneck's downsample conv runs after its last conv), the later
 * operation takes the earlier's output. It lives in a buffer of its own
 * until the add, so until the operation. In bfloat16 only into conv2d,
 * whose GEMM adds it (a bfloat16 linear fuses nothing). */
static void fuse_residuals(const ai3_graph *g, graph_plan *p, const int *readers) {
    for (int j = 0; j < g->n_nodes; j++) {
        const graph_node *add = &g->nodes[j];
        if (add->kind != NODE_ADD || !own_cpu_op(add) || p->fused[j] != -1 ||
            add->inputs[0] == add->inputs[1])
            continue;
        int into = -1, other = -1;
        for (int k = 0; k < 2; k++) {
            int v = add->inputs[k], r = add->inputs[1 - k];
            const graph_value *gv = &g->values[v], *rv = &g->values[r];
            if (gv->kind != VALUE_NODE || readers[v] != 1) continue;
            int i = gv->index;
            const graph_node *op = &g->nodes[i];
            if ((op->kind != NODE_CONV2D && op->kind != NODE_LINEAR) || op->u.op.view ||
                (g->dtype == AI3_BFLOAT16 && op->kind != NODE_CONV2D) ||
                p->fused[i] != -1 || p->residual[i] >= 0 || i < into ||
                (rv->kind == VALUE_NODE && rv->index >= i) ||
                !same_shape(&p->values[r], &p->values[v]) ||
                !same_shape(&p->values[add->output], &p->values[v]))
                continue;
            into = i;
            other = r;
        }
        if (into < 0) continue;
        p->residual[into] = p->residual[j] = other;
        p->fused[j] = FUSED_AWAY;
        int k = sole_reader(g, readers, j);
        if (k >= 0 && g->nodes[k].kind < NODE_RESHAPE && p->fused[k] == -1 &&
            fusable(g, &g->nodes[into], &g->nodes[k])) {
            p->fused[into] = k;
            p->fused[k] = FUSED_AWAY;
        }
    }
}

/* Whether node i is a permute by `order` of a 4-d value, computed by
 * ai3's own kernels (no algorithm registered for it). */
static bool permute_by(const ai3_graph *g, const graph_plan *p, int i, const int order[4]) {
    const graph_node *node = &g->nodes[i];
    if (node->kind != NODE_PERMUTE || node->u.op.view || p->fused[i] != -1 ||
        p->values[node->inputs[0]].ndim != 4)
        return false;
    const ai3_plan *plan = node->u.op.plan;
    if (plan->params.permute.ndim != 4 ||
        ai3_is_registered(plan->op, plan->algorithm, AI3_DEVICE_CUDA))
        return false;
    for (int d = 0; d < 4; d++)
        if (plan->params.permute.perm[d] != order[d]) return false;
    return true;
}

static bool own_op(const graph_node *node) {
    return !node->u.op.view &&
           !ai3_is_registered(node->u.op.plan->op, node->u.op.plan->algorithm, AI3_DEVICE_CUDA);
}

/* The linear whose output permute node i alone reads, if its bias can be
 * added later (it has one, and nothing is fused into it), else -1. */
static int linear_before(const ai3_graph *g, const graph_plan *p, const int *readers, int i) {
    const graph_value *gv = &g->values[g->nodes[i].inputs[0]];
    if (gv->kind != VALUE_NODE || readers[g->nodes[i].inputs[0]] != 1) return -1;
    const graph_node *lin = &g->nodes[gv->index];
    return lin->kind == NODE_LINEAR && own_op(lin) && p->fused[gv->index] == -1 &&
                   lin->u.op.plan->weights[1].data
               ? gv->index
               : -1;
}

/* On CUDA, the permutes around a channels-last section (ConvNeXt's blocks)
 * are fused into their neighbours (once shapes are known):
 *  - permute(0, 2, 3, 1) read only by a layernorm over the last dimension:
 *    the layernorm reads the channels-first input (fused[layernorm] = the
 *    permute, which is FUSED_AWAY);
 *  - permute(0, 3, 1, 2) read only by a mul by a constant of one value per
 *    channel, read only by an add of a tensor of the result's shape: one
 *    kernel at the add (fused[add] = the permute; permute and mul away),
 *    which also adds the bias of a linear the permute alone reads (that
 *    linear BIAS_DEFERRED). */
static void fuse_permutes(const ai3_graph *g, graph_plan *p, const int *readers) {
    static const int to_last[4] = {0, 2, 3, 1}, to_first[4] = {0, 3, 1, 2};
    for (int i = 0; i < g->n_nodes; i++) {
        if (permute_by(g, p, i, to_last)) {
            int j = sole_reader(g, readers, i);
            const graph_node *ln = j >= 0 ? &g->nodes[j] : NULL;
            if (ln && ln->kind == NODE_LAYERNORM && own_op(ln) && p->fused[j] == -1 &&
                ln->u.op.plan->params.layernorm.normalized_ndim == 1) {
                p->fused[i] = FUSED_AWAY;
                p->fused[j] = i;
            }
        } else if (permute_by(g, p, i, to_first)) {
            int j = sole_reader(g, readers, i);
            const graph_node *mul = j >= 0 ? &g->nodes[j] : NULL;
            if (!mul || mul->kind != NODE_MUL || !own_op(mul) || p->fused[j] != -1) continue;
            int scale = mul->inputs[0] == g->nodes[i].output ? mul->inputs[1] : mul->inputs[0];
            const ai3_tensor *st = &p->values[scale], *out = &p->values[mul->output];
            bool per_channel = g->values[scale].kind == VALUE_CONSTANT && st->ndim >= 3 &&
                               ai3_tensor_numel(st) == out->shape[1] &&
                               st->shape[st->ndim - 3] == out->shape[1];
            int k = per_channel ? sole_reader(g, readers, j) : -1;
            const graph_node *add = k >= 0 ? &g->nodes[k] : NULL;
            if (!add || add->kind != NODE_ADD || !own_op(add) || p->fused[k] != -1) continue;
            const ai3_tensor *res = &p->values[add->inputs[add->inputs[0] == mul->output]];
            const ai3_tensor *sum = &p->values[add->output];
            bool same = res->ndim == 4 && sum->ndim == 4 && add->inputs[0] != add->inputs[1];
            for (int d = 0; same && d < 4; d++)
                same = res->shape[d] == out->shape[d] && sum->shape[d] == out->shape[d];
            if (!same) continue;
            p->fused[i] = p->fused[j] = FUSED_AWAY;
            p->fused[k] = i;
            int lin = linear_before(g, p, readers, i);
            if (lin >= 0) p->fused[lin] = BIAS_DEFERRED;
        }
    }
}

/* Room for the inputs of any node: a node may read one value several times
 * (cat), so this is not bounded by the number of values. */
/* --- the channel-blocked layout ----------------------------------------------
 * On the CPU in float32 a plan keeps values blocked (NCHW16c/8c) between
 * the nodes that compute on that layout: conv2d nodes with blocked weights
 * (graph.c), then pooling, the element-wise operations and the channel
 * scale of squeeze-excitation on blocked inputs. Every other node, and
 * every graph output, sees plain NCHW: a value read in both layouts gets a
 * second slot, converted right after the value is made. */

/* For a mul of x (n, c, h, w) by s (n, c, 1, 1): sets *x, *s to the input
 * numbers; false for any other mul. */
static bool channel_scale(const ai3_graph *g, const graph_plan *p, const graph_node *mul,
                          int *x, int *s) {
    for (int k = 0; k < 2; k++) {
        const ai3_tensor *a = &p->values[mul->inputs[k]], *b = &p->values[mul->inputs[1 - k]];
        if (a->ndim == 4 && b->ndim == 4 && b->shape[0] == a->shape[0] &&
            b->shape[1] == a->shape[1] && b->shape[2] == 1 && b->shape[3] == 1 &&
            (a->shape[2] != 1 || a->shape[3] != 1)) {
            *x = k;
            *s = 1 - k;
            return true;
        }
    }
    return false;
}

/* Whether node i computes on blocked values, given its inputs' layouts.
 * `no_block`: nodes whose output is (a view of) a graph output. */
static bool runs_blocked(const ai3_graph *g, const graph_plan *p, int i, const bool *no_block) {
    const graph_node *node = &g->nodes[i];
    if (node->kind >= NODE_RESHAPE || node->u.op.view || no_block[i] || !own_cpu_op(node))
        return false;
    int v = node->inputs[0];
    /* empty tensors (a batch of none): nothing to gain, the plain ops take them */
    if (p->values[v].ndim != 4 || ai3_tensor_numel(&p->values[v]) == 0 ||
        ai3_tensor_numel(&p->values[node->output]) == 0)
        return false;
    for (int k = 0; k < node->n_inputs; k++)
        if (g->values[node->inputs[k]].kind == VALUE_CONSTANT) return false;
    const ai3_tensor *out = &p->values[node->output];
    switch (node->kind) {
    case NODE_CONV2D:
        return node->u.op.blocked && node->u.op.blocked_cb == p->cb &&
               ai3_blocked_conv2d_preferred(node->u.op.blocked, out->shape[0], out->shape[2],
                                            out->shape[3]);
    case NODE_MAXPOOL2D: case NODE_AVGPOOL2D: return p->blocked[v];
    case NODE_ADAPTIVEAVGPOOL2D: return p->blocked[v] && out->shape[2] == 1 && out->shape[3] == 1;
    case NODE_ADD: case NODE_MUL: {
        int a = node->inputs[0], b = node->inputs[1], x, sc;
        if (same_shape(&p->values[a], &p->values[b])) return p->blocked[a] || p->blocked[b];
        return node->kind == NODE_MUL && channel_scale(g, p, node, &x, &sc) &&
               p->blocked[node->inputs[x]];
    }
    default: { /* the activations: element-wise */
        ai3_epilogue e;
        return activation_of(node, &e) && p->blocked[v];
    }
    }
}

/* Whether node i reads its input k blocked. */
static bool reads_blocked(const ai3_graph *g, const graph_plan *p, int i, int k) {
    const graph_node *node = &g->nodes[i];
    if (!p->node_blocked[i]) return false;
    int v = node->inputs[k];
    /* a conv2d reads a plain input of a few channels (a network's first
     * layer) as it is, cheaper than padding each pixel to a block */
    if (node->kind == NODE_CONV2D && !ai3_blocked_conv2d_depthwise(node->u.op.blocked))
        return p->blocked[v] || p->values[v].shape[1] > 4;
    return true;
}

/* The slot node i reads input k from. */
static int input_slot(const ai3_graph *g, const graph_plan *p, int i, int k) {
    int v = g->nodes[i].inputs[k];
    if (!p->cb || p->fused[i] == FUSED_AWAY) return v; /* a view of what absorbs it */
    return reads_blocked(g, p, i, k) == p->blocked[v] ? v : p->alt[v];
}

/* The slot of node i's residual (p->residual[i] >= 0). */
static int residual_slot(const graph_plan *p, int i) {
    int r = p->residual[i];
    return !p->cb || p->node_blocked[i] == p->blocked[r] ? r : p->alt[r];
}

/* Where node i's (or a graph input's) value v is first written. */
static int made_at(const ai3_graph *g, int v) {
    return g->values[v].kind == VALUE_NODE ? g->values[v].index : 0;
}

/* Chooses each node's and value's layout and adds the slots of values read
 * in both, their last uses in last[]. */
static ai3_status choose_layouts(const ai3_graph *g, graph_plan *p, int *last) {
    int nv = g->n_values;
    p->n_slots = nv;
    p->cb = g->blocked_layout && g->device == AI3_DEVICE_CPU && g->dtype == AI3_FLOAT32
                ? ai3_blocked_width()
                : 0;
    if (!p->cb) return AI3_OK;
    bool *no_block = calloc((size_t)g->n_nodes + 1, sizeof *no_block);
    p->node_blocked = calloc((size_t)g->n_nodes + 1, sizeof *p->node_blocked);
    p->blocked = calloc((size_t)nv, sizeof *p->blocked);
    p->alt = malloc(sizeof *p->alt * (size_t)nv);
    p->alt_of = malloc(sizeof *p->alt_of * (size_t)nv);
    if (!no_block || !p->node_blocked || !p->blocked || !p->alt || !p->alt_of) {
        free(no_block);
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    }
    /* graph outputs stay plain: so does what they are views of */
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->outputs[k];
        while (g->values[v].kind == VALUE_NODE) {
            int i = g->values[v].index;
            no_block[i] = true;
            if (p->fused[i] != FUSED_AWAY) break;
            v = g->nodes[i].inputs[chain_input(g, p, i)];
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        if (p->fused[i] == FUSED_AWAY)
            p->blocked[node->output] = p->blocked[node->inputs[chain_input(g, p, i)]];
        else
            p->blocked[node->output] = p->node_blocked[i] = runs_blocked(g, p, i, no_block);
        /* what a blocked conv2d needs for this shape (Winograd weights) is
         * made now; where that fails (memory), it runs by its direct tiles */
        if (p->node_blocked[i] && node->kind == NODE_CONV2D) {
            const ai3_tensor *out = &p->values[node->output];
            (void)ai3_blocked_conv2d_prepare(node->u.op.blocked, out->shape[0], out->shape[2],
                                             out->shape[3]);
        }
    }
    free(no_block);

    /* the other layout's slots, where some node reads it */
    for (int v = 0; v < nv; v++) p->alt[v] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        if (p->fused[i] == FUSED_AWAY) continue;
        int n_reads = node->n_inputs + (p->residual[i] >= 0);
        for (int k = 0; k < n_reads; k++) {
            int v = k < node->n_inputs ? node->inputs[k] : p->residual[i];
            bool want = k < node->n_inputs ? reads_blocked(g, p, i, k) : p->node_blocked[i];
            if (want == p->blocked[v]) continue;
            if (p->alt[v] < 0) {
                int a = p->n_slots++;
                p->alt[v] = a;
                p->alt_of[a - nv] = v;
                p->values[a] = p->values[v];
                last[a] = i;
            }
            last[p->alt[v]] = i;
        }
    }
    /* blocked values and slots have the padded channel count */
    for (int v = 0; v < nv; v++) {
        int64_t c = p->values[v].shape[1];
        if (p->blocked[v]) p->values[v].shape[1] = ai3_blocked_channels(c, p->cb);
        else if (p->alt[v] >= 0) p->values[p->alt[v]].shape[1] = ai3_blocked_channels(c, p->cb);
    }
    return AI3_OK;
}

/* Whether slot r is a buffer of the plan's own (a node's value, or a
 * value's other layout), not a graph input or constant. */
static bool own_slot(const ai3_graph *g, int r) {
    return r >= g->n_values || g->values[r].kind == VALUE_NODE;
}

static int max_node_inputs(const ai3_graph *g) {
    int n = 1;
    for (int i = 0; i < g->n_nodes; i++) n = AI3_MAX(n, g->nodes[i].n_inputs);
    return n;
}

/* On blocked values, a 1×1 conv2d (with the activation fused into it)
 * whose output a depthwise conv2d alone reads runs inside that one's run
 * (ai3_blocked_conv2d_run_expand_dw), a band of rows at a time: the
 * expanded tensor of an inverted residual block (MobileNetV2,
 * EfficientNet), the largest, never goes to memory. The 1×1's input is
 * then read at the depthwise node: it lives until then (last[], and
 * root_last[] of the values, which the plan set from last[] already). */
static void fuse_expansions(const ai3_graph *g, graph_plan *p, const int *readers, int *last,
                            int *root_last) {
    for (int i = 0; i < g->n_nodes; i++) p->inside[i] = p->expansion[i] = -1;
    if (!p->cb) return;
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        if (node->kind != NODE_CONV2D || !p->node_blocked[i] || p->residual[i] >= 0 ||
            p->fused[i] == BIAS_DEFERRED || !reads_blocked(g, p, i, 0))
            continue;
        const int tail = p->fused[i] >= 0 ? p->fused[i] : i; /* whose value the reader reads */
        const int v = g->nodes[tail].output, j = sole_reader(g, readers, tail);
        if (j < 0 || p->alt[node->output] >= 0 || p->alt[v] >= 0 || !p->blocked[v]) continue;
        const graph_node *dw = &g->nodes[j];
        if (dw->kind != NODE_CONV2D || !p->node_blocked[j] || dw->inputs[0] != v ||
            p->expansion[j] >= 0 || !ai3_blocked_conv2d_depthwise(dw->u.op.blocked) ||
            !ai3_blocked_conv2d_expand_fusable(node->u.op.blocked, dw->u.op.blocked,
                                               p->values[v].shape[3]))
            continue;
        p->inside[i] = j;
        p->expansion[j] = i;
        const int u = input_slot(g, p, i, 0);
        if (last[u] < j) last[u] = j;
        if (u < g->n_values && root_last[u] < j) root_last[u] = j;
    }
}

/* Makes the plan for inputs of these shapes. */
/* Batches in slices. At a large batch the activations of the early layers
 * no longer fit in the cache the cores share, and each layer writes its
 * output to memory for the next to read back. Run in slices of a few
 * images, a layer's output is still in cache when the next layer reads it,
 * at the price of reading the weights once per slice. A CPU plan does that
 * when every operation computes each image (index along dimension 0) on its
 * own and the slices' traffic in weights is less than the activations'
 * traffic it saves. */

/* The bytes a slice's largest layer (its inputs and output) may take: half
 * of a 32 MiB L3. */
#define SLICE_BYTES ((size_t)16 << 20)

/* d, a dimension of a value of ndim dimensions, counted from 0. */
static int dim_from_start(int d, int ndim) { return d < 0 ? d + ndim : d; }

/* Whether node i, of its kind and parameters, computes each image on its
 * own (what the shapes cannot tell: shapes_by_batch checks the rest). */
static bool per_image(const ai3_graph *g, const graph_plan *p, int i) {
    const graph_node *node = &g->nodes[i];
    const int ndim = node->n_inputs ? p->values[node->inputs[0]].ndim : 0;
    const ai3_op_params *q = node->kind < NODE_RESHAPE ? &node->u.op.plan->params : NULL;
    switch (node->kind) {
    case NODE_SOFTMAX: return dim_from_start(q->softmax.dim, ndim) != 0;
    case NODE_PERMUTE: return q->permute.ndim > 0 && dim_from_start(q->permute.perm[0], ndim) == 0;
    case NODE_LAYERNORM: return q->layernorm.normalized_ndim < ndim;
    case NODE_CAT: return dim_from_start(q->cat.dim, ndim) != 0;
    case NODE_MEAN:
        for (int k = 0; k < q->mean.n_dims; k++)
            if (dim_from_start(q->mean.dims[k], ndim) == 0) return false;
        return q->mean.n_dims > 0;
    case NODE_CHUNK: return dim_from_start(node->u.chunk.dim, ndim) != 0;
    case NODE_TRANSPOSE:
        return dim_from_start(node->u.transpose.dim0, ndim) != 0 &&
               dim_from_start(node->u.transpose.dim1, ndim) != 0;
    default: return true;
    }
}

/* Value v's shape before any node runs: an input's (from inputs), a
 * constant's, else none yet. */
static void value_before_run(const ai3_graph *g, const ai3_tensor *inputs, int v,
                             ai3_tensor *t) {
    const graph_value *gv = &g->values[v];
    if (gv->kind == VALUE_INPUT) *t = inputs[gv->index];
    else if (gv->kind == VALUE_CONSTANT) *t = g->constants[gv->index];
    t->dtype = g->dtype;
    t->device = g->device;
    t->device_index = g->device_index;
    t->data = ai3_shape_only;
}

/* Every value's shape for the graph's inputs with dimension 0 set to
 * `batch`, into values (g->n_values); false where a node refuses them. */
static bool shapes_at(const ai3_graph *g, const graph_plan *p, int64_t batch,
                      ai3_tensor *values, const ai3_tensor **in) {
    for (int v = 0; v < g->n_values; v++) {
        value_before_run(g, p->inputs, v, &values[v]);
        if (g->values[v].kind == VALUE_INPUT) values[v].shape[0] = batch;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        for (int k = 0; k < node->n_inputs; k++) in[k] = &values[node->inputs[k]];
        if (ai3_graph_node_shapes(node, in, values, &values[node->output]) != AI3_OK)
            return false;
    }
    return true;
}

/* Whether, with `batch` images in place of the plan's n, every value made
 * from the inputs has the same shape with `batch` for n in dimension 0. */
static bool shapes_by_batch(const ai3_graph *g, const graph_plan *p, int64_t n, int64_t batch) {
    const size_t nv = (size_t)g->n_values;
    ai3_tensor *at_n = calloc(2 * nv, sizeof *at_n);
    const ai3_tensor **in = malloc(sizeof *in * (size_t)max_node_inputs(g));
    bool ok = at_n && in && shapes_at(g, p, n, at_n, in) && shapes_at(g, p, batch, at_n + nv, in);
    for (int v = 0; ok && v < g->n_values; v++) {
        if (g->values[v].kind == VALUE_CONSTANT) continue;
        const ai3_tensor *a = &at_n[v], *b = &at_n[nv + v];
        ok = a->ndim >= 1 && a->ndim == b->ndim && a->shape[0] == n && b->shape[0] == batch;
        for (int d = 1; ok && d < a->ndim; d++) ok = a->shape[d] == b->shape[d];
    }
    free(at_n);
    free(in);
    return ok;
}

/* The slice size for plan p (made for its inputs), or 0: the whole batch
 * at once. */
static int64_t choose_sub_batch(const ai3_graph *g, const graph_plan *p) {
    if (!g->batch_split || g->device != AI3_DEVICE_CPU || g->n_inputs < 1 ||
        p->inputs[0].ndim < 1)
        return 0;
    const int64_t n = p->inputs[0].shape[0];
    for (int k = 0; k < g->n_inputs; k++)
        if (p->inputs[k].ndim < 1 || p->inputs[k].shape[0] != n) return 0;
    if (n < 2) return 0;
    size_t largest = 0, weights = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        if (p->fused[i] == FUSED_AWAY) continue;
        size_t bytes = 0;
        for (int o = 0; o < node->n_outputs; o++)
            bytes += tensor_bytes(&p->values[node->output + o]);
        for (int k = 0; k < node->n_inputs; k++)
            if (g->values[node->inputs[k]].kind != VALUE_CONSTANT)
                bytes += tensor_bytes(&p->values[node->inputs[k]]);
        if (bytes > largest) largest = bytes;
    }
    if (largest <= SLICE_BYTES) return 0;
    const size_t image_bytes = largest / (size_t)n;
    const int64_t fit = AI3_MAX(1, (int64_t)(SLICE_BYTES / (image_bytes ? image_bytes : 1)));
    const int64_t slices = (n + fit - 1) / fit;
    if (slices < 2) return 0;
    for (int c = 0; c < g->n_constants; c++) weights += tensor_bytes(&g->constants[c]);
    for (int i = 0; i < g->n_nodes; i++) {
        const ai3_plan *op = g->nodes[i].kind < NODE_RESHAPE ? g->nodes[i].u.op.plan : NULL;
        if (op) weights += op->weight_bytes;
    }
    /* (the activations' trip: written to memory and read back) */
    if ((size_t)(slices - 1) * weights >= 2 * p->total_bytes) return 0;
    const int64_t sub = (n + slices - 1) / slices; /* slices as even as they can be */
    for (int i = 0; i < g->n_nodes; i++)
        if (!per_image(g, p, i)) return 0;
    if (!shapes_by_batch(g, p, n, sub) || (n % sub && !shapes_by_batch(g, p, n, n % sub)))
        return 0;
    return sub;
}

static ai3_status make_plan(const ai3_graph *g, const ai3_tensor *inputs, graph_plan **out) {
    int nv = g->n_values;
    graph_plan *p = calloc(1, sizeof *p);
    /* per value, then per slot of a value's other layout (at most one each) */
    int *last = malloc(sizeof *last * 2 * (size_t)nv);
    int *root_last = malloc(sizeof *root_last * 2 * (size_t)nv);
    buffer *bufs = malloc(sizeof *bufs * 2 * (size_t)nv);
    const ai3_tensor **in = malloc(sizeof *in * (size_t)max_node_inputs(g));
    int *readers = malloc(sizeof *readers * (size_t)nv);
    if (p) {
        p->refs = 1;
        p->cuda = ai3_graph_cuda(g);
        p->device_index = g->device_index;
        p->n_inputs = g->n_inputs;
        p->inputs = malloc(sizeof *p->inputs * (size_t)(g->n_inputs + 1));
        p->values = calloc(2 * (size_t)nv, sizeof *p->values);
        p->root = malloc(sizeof *p->root * 2 * (size_t)nv);
        p->bound = malloc(sizeof *p->bound * 2 * (size_t)nv);
        p->offset = malloc(sizeof *p->offset * 2 * (size_t)nv);
        p->fused = malloc(sizeof *p->fused * (size_t)(g->n_nodes + 1));
        p->residual = malloc(sizeof *p->residual * (size_t)(g->n_nodes + 1));
        p->inside = malloc(sizeof *p->inside * (size_t)(g->n_nodes + 1));
        p->expansion = malloc(sizeof *p->expansion * (size_t)(g->n_nodes + 1));
    }
    ai3_status s = AI3_OK;
    if (!p || !last || !root_last || !bufs || !in || !readers || !p->inputs || !p->values ||
        !p->root || !p->bound || !p->offset || !p->fused || !p->residual || !p->inside ||
        !p->expansion)
        s = ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");

    if (s == AI3_OK) {
        for (int i = 0; i < g->n_inputs; i++) {
            p->inputs[i] = inputs[i];
            p->inputs[i].data = NULL;
        }
        for (int v = 0; v < nv; v++) {
            value_before_run(g, inputs, v, &p->values[v]);
            p->root[v] = v;
            p->bound[v] = -1;
            p->offset[v] = NO_OFFSET;
            last[v] = -1;
        }
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; k < g->nodes[i].n_inputs; k++) last[g->nodes[i].inputs[k]] = i;
        for (int k = 0; k < g->n_outputs; k++) last[g->outputs[k]] = NEVER;
        for (int v = 0; v < nv; v++) readers[v] = 0;
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; k < g->nodes[i].n_inputs; k++) readers[g->nodes[i].inputs[k]]++;
        for (int k = 0; k < g->n_outputs; k++) readers[g->outputs[k]]++;
        fuse_activations(g, readers, p->fused);
        for (int i = 0; i < g->n_nodes; i++) p->residual[i] = -1;
        for (int v = 0; v < nv; v++) root_last[v] = last[v];
    }

    /* Shapes and workspace, node by node. */
    for (int i = 0; s == AI3_OK && i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        for (int k = 0; k < node->n_inputs; k++) in[k] = &p->values[node->inputs[k]];
        s = ai3_graph_node_shapes(node, in, p->values, &p->values[node->output]);
        size_t ws = 0;
        if (s == AI3_OK) s = ai3_graph_node_workspace(node, in, &ws);
        if (s != AI3_OK) {
            s = node_error(g, i, s);
            break;
        }
        if (ws > p->workspace_bytes) p->workspace_bytes = ws;
    }
    if (s == AI3_OK && p->cuda) fuse_permutes(g, p, readers);
    if (s == AI3_OK && g->device == AI3_DEVICE_CPU) fuse_residuals(g, p, readers);
    if (s == AI3_OK) s = choose_layouts(g, p, last);
    if (s == AI3_OK) fuse_expansions(g, p, readers, last, root_last);
    for (int a = nv; s == AI3_OK && a < p->n_slots; a++) {
        p->root[a] = a;
        p->bound[a] = -1;
        p->offset[a] = NO_OFFSET;
        root_last[a] = last[a];
    }

    /* Where each result lives. A node fused into a later one is a view of
     * the value it reads (so that value lives until the later node runs),
     * and the node that absorbs a permute writes a buffer of its own. */
    for (int i = 0; s == AI3_OK && i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        ai3_tensor *res = &p->values[node->output];
        node_storage storage = p->fused[i] == FUSED_AWAY ? STORE_VIEW
                               : p->fused[i] >= 0 && (node->kind == NODE_LAYERNORM ||
                                                      node->kind == NODE_ADD)
                                   ? STORE_NEW
                                   : ai3_graph_node_storage(node);
        int v = node->output;
        if (storage == STORE_VIEW) {
            int r = p->root[input_slot(g, p, i, chain_input(g, p, i))];
            p->root[v] = r;
            if (last[v] > root_last[r]) root_last[r] = last[v];
        } else if (storage == STORE_INPLACE) {
            for (int k = 0; k < (node->n_inputs < 2 ? node->n_inputs : 2); k++) {
                int u = input_slot(g, p, i, k), r = p->root[u];
                const ai3_tensor *t = &p->values[u];
                int same = t->ndim == res->ndim;
                for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == res->shape[d];
                if (own_slot(g, r) && root_last[r] <= i && same) {
                    p->root[v] = r;
                    if (last[v] > root_last[r]) root_last[r] = last[v];
                    break;
                }
            }
        }
    }

    if (s == AI3_OK) {
        /* A graph output is written in place where it is the first output
         * living in a buffer of the graph's own. */
        for (int k = 0; k < g->n_outputs; k++) {
            int r = p->root[g->outputs[k]];
            if (own_slot(g, r) && p->bound[r] < 0) p->bound[r] = k;
        }
        int n = 0;
        size_t elem = ai3_dtype_size(g->dtype);
        for (int v = 0; v < nv; v++) {
            if (g->values[v].kind != VALUE_NODE) continue;
            const graph_node *node = &g->nodes[g->values[v].index];
            if (ai3_graph_node_storage(node) != STORE_VIEW && last[v] != NEVER)
                p->total_bytes += (size_t)ai3_tensor_numel(&p->values[v]) * elem;
            /* (a 1×1 computed inside a depthwise conv2d writes no output) */
            if (p->root[v] != v || p->bound[v] >= 0 || p->inside[g->values[v].index] >= 0)
                continue;
            int first = g->values[v].index;
            bufs[n++] = (buffer){.root = v, .first = first,
                                 .last = root_last[v] < first ? first : root_last[v],
                                 .bytes = align64(tensor_bytes(&p->values[v]))};
        }
        for (int a = nv; a < p->n_slots; a++) {
            if (p->root[a] != a || p->bound[a] >= 0) continue;
            int first = made_at(g, p->alt_of[a - nv]);
            bufs[n++] = (buffer){.root = a, .first = first,
                                 .last = root_last[a] < first ? first : root_last[a],
                                 .bytes = align64(tensor_bytes(&p->values[a]))};
        }
        s = place_buffers(p, bufs, n);
        p->arena_bytes = align64(p->tensor_bytes) + p->workspace_bytes;
    }
    if (s == AI3_OK) p->sub_batch = choose_sub_batch(g, p);

    free(last);
    free(root_last);
    free(bufs);
    free(in);
    free(readers);
    if (s != AI3_OK) {
        free_plan(p);
        return s;
    }
    *out = p;
    return AI3_OK;
}

static int same_inputs(const graph_plan *p, const ai3_tensor *inputs) {
    for (int i = 0; i < p->n_inputs; i++) {
        if (p->inputs[i].ndim != inputs[i].ndim) return 0;
        for (int d = 0; d < inputs[i].ndim; d++)
            if (p->inputs[i].shape[d] != inputs[i].shape[d]) return 0;
    }
    return 1;
}

/* The plan for these inputs, from the cache or made and cached, with a
 * reference for the caller (given back with put_plan). Call with the lock held. */
static ai3_status get_plan_locked(ai3_graph *g, const ai3_tensor *inputs, graph_plan **out) {
    int found = -1;
    for (int i = 0; i < 4 && g->plans[i]; i++)
        if (same_inputs(g->plans[i], inputs)) found = i;
    graph_plan *p;
    if (found >= 0) {
        p = g->plans[found];
    } else {
        ai3_status s = make_plan(g, inputs, &p);
        if (s != AI3_OK) return s;
        found = 3;
        unref_plan(g->plans[3]); /* least recently used */
    }
    for (int i = found; i > 0; i--) g->plans[i] = g->plans[i - 1];
    g->plans[0] = p;
    p->refs++;
    *out = p;
    return AI3_OK;
}

/* get_plan_locked, taking the lock. */
static ai3_status get_plan(ai3_graph *g, const ai3_tensor *inputs, graph_plan **out) {
    pthread_mutex_lock(&g->lock);
    ai3_status s = get_plan_locked(g, inputs, out);
    pthread_mutex_unlock(&g->lock);
    return s;
}

static void put_plan(ai3_graph *g, graph_plan *p) {
    pthread_mutex_lock(&g->lock);
    unref_plan(p);
    pthread_mutex_unlock(&g->lock);
}

ai3_status ai3_graph_output_shapes(ai3_graph *g, int n_inputs, const ai3_tensor *inputs,
                                   int n_outputs, int *out_ndims,
                                   int64_t (*out_shapes)[AI3_MAX_DIMS]) {
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph is NULL");
    ai3_status s = check_inputs(g, n_inputs, inputs, 0);
    if (s != AI3_OK) return s;
    if (n_outputs != g->n_outputs || !out_ndims || !out_shapes)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "graph: has %d outputs, asked for %d (or NULL arrays)",
                             g->n_outputs, n_outputs);
    graph_plan *p;
    if ((s = get_plan(g, inputs, &p)) != AI3_OK) return s;
    for (int k = 0; k < n_outputs; k++) {
        const ai3_tensor *t = &p->values[g->outputs[k]];
        out_ndims[k] = t->ndim;
        for (int d = 0; d < t->ndim; d++) out_shapes[k][d] = t->shape[d];
    }
    put_plan(g, p);
    return AI3_OK;
}

ai3_status ai3_graph_peak_bytes(ai3_graph *g, int n_inputs, const ai3_tensor *inputs,
                                size_t *peak_bytes, size_t *total_bytes,
                                size_t *workspace_bytes) {
    if (!g || !peak_bytes || !total_bytes)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph peak_bytes: NULL argument");
    ai3_status s = check_inputs(g, n_inputs, inputs, 0);
    if (s != AI3_OK) return s;
    graph_plan *p;
    if ((s = get_plan(g, inputs, &p)) != AI3_OK) return s;
    *peak_bytes = p->tensor_bytes;
    *total_bytes = p->total_bytes;
    if (workspace_bytes) *workspace_bytes = p->workspace_bytes;
    put_plan(g, p);
    return AI3_OK;
}

ai3_status ai3_graph_sub_batch(ai3_graph *g, int n_inputs, const ai3_tensor *inputs,
                               int64_t *sub_batch) {
    if (!g || !sub_batch)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph sub_batch: NULL argument");
    ai3_status s = check_inputs(g, n_inputs, inputs, 0);
    if (s != AI3_OK) return s;
    graph_plan *p;
    if ((s = get_plan(g, inputs, &p)) != AI3_OK) return s;
    *sub_batch = p->sub_batch ? p->sub_batch : inputs[0].ndim ? inputs[0].shape[0] : 1;
    put_plan(g, p);
    return AI3_OK;
}

const char *ai3_graph_node_blocked_algorithm(const ai3_graph *g, int i) {
    ai3_graph *mut = (ai3_graph *)g; /* the lock only */
    pthread_mutex_lock(&mut->lock);
    const graph_plan *p = g->plans[0];
    const char *name = NULL;
    if (p && p->cb && p->node_blocked[i] && g->nodes[i].kind == NODE_CONV2D) {
        const ai3_tensor *out = &p->values[g->nodes[i].output];
        name = ai3_blocked_conv2d_algorithm(g->nodes[i].u.op.blocked, out->shape[0],
                                            out->shape[2], out->shape[3]);
        if (p->inside[i] >= 0)
            name = p->cb == 16 ? "direct (NCHW16c), inside the depthwise conv2d after it"
                               : "direct (NCHW8c), inside the depthwise conv2d after it";
    }
    pthread_mutex_unlock(&mut->lock);
    return name;
}

ai3_status ai3_graph_layout_counts(ai3_graph *g, int n_inputs, const ai3_tensor *inputs,
                                   int *blocked_nodes, int *conversions) {
    if (!g || !blocked_nodes || !conversions)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph layout_counts: NULL argument");
    ai3_status s = check_inputs(g, n_inputs, inputs, 0);
    if (s != AI3_OK) return s;
    graph_plan *p;
    if ((s = get_plan(g, inputs, &p)) != AI3_OK) return s;
    *blocked_nodes = 0;
    for (int i = 0; p->cb && i < g->n_nodes; i++) *blocked_nodes += p->node_blocked[i];
    *conversions = p->n_slots - g->n_values;
    put_plan(g, p);
    return AI3_OK;
}

/* Every value's tensor for a run: the inputs' and outputs' memory as given,
 * intermediates at their offsets in `arena`. */
static void bind_values(const ai3_graph *g, const graph_plan *p, const ai3_tensor *inputs,
                        const ai3_tensor *outputs, void *arena, ai3_tensor *t) {
    for (int v = 0; v < p->n_slots; v++) {
        int r = p->root[v];
        const graph_value *gv = own_slot(g, r) ? NULL : &g->values[r];
        t[v] = p->values[v];
        if (gv && gv->kind == VALUE_INPUT) t[v].data = inputs[gv->index].data;
        else if (gv) t[v].data = g->constants[gv->index].data;
        else if (p->bound[r] >= 0) t[v].data = outputs[p->bound[r]].data;
        else if (p->offset[r] == NO_OFFSET) t[v].data = NULL; /* never written */
        else t[v].data = (char *)arena + p->offset[r];
    }
}

/* The add that absorbed a permute and the mul by a constant reading it. */
static ai3_status run_permute_scale_add(const ai3_graph *g, const graph_plan *p,
                                        const graph_node *permute, const graph_node *add,
                                        ai3_tensor *t, void *stream) {
    int k = 0;
    for (; k < 2; k++) { /* which input of the add is the mul's */
        const graph_value *gv = &g->values[add->inputs[k]];
        const graph_node *m = gv->kind == VALUE_NODE ? &g->nodes[gv->index] : NULL;
        if (m && m->kind == NODE_MUL &&
            (m->inputs[0] == permute->output || m->inputs[1] == permute->output))
            break;
    }
    const graph_node *mul = &g->nodes[g->values[add->inputs[k]].index];
    int scale = mul->inputs[0] == permute->output ? mul->inputs[1] : mul->inputs[0];
    const graph_value *y = &g->values[permute->inputs[0]];
    const ai3_tensor *bias = y->kind == VALUE_NODE && p->fused[y->index] == BIAS_DEFERRED
                                 ? &g->nodes[y->index].u.op.plan->weights[1]
                                 : NULL;
    return ai3_graph_cuda(g)->permute_scale_add(&t[permute->inputs[0]], bias, &t[scale],
                                                &t[add->inputs[1 - k]], &t[add->output], stream);
}

/* A BIAS_DEFERRED linear: its plan as it is but without the bias. */
static ai3_status run_without_bias(const graph_node *node, const ai3_tensor *const *in,
                                   ai3_tensor *out, void *workspace, size_t workspace_bytes,
                                   void *stream) {
    ai3_plan plan = *node->u.op.plan;
    plan.weights[1] = (ai3_tensor){0};
    return ai3_plan_run_stream(&plan, node->n_inputs, in, out, workspace, workspace_bytes,
                               stream);
}

/* Runs node i (a conv2d or linear on the CPU) with what is fused into it. */
static ai3_status run_epilogue(const ai3_graph *g, const graph_plan *p, int i,
                               const ai3_tensor *input, ai3_tensor *t, void *workspace) {
    const graph_node *node = &g->nodes[i];
    ai3_epilogue e = {.act = AI3_ACT_NONE};
    if (p->fused[i] >= 0) activation_of(&g->nodes[p->fused[i]], &e);
    if (p->residual[i] >= 0) e.residual = t[residual_slot(p, i)].data;
    if (node->kind == NODE_LINEAR)
        return ai3_linear_run_epilogue(node->u.op.plan, input, &t[node->output], &e);
    return ai3_conv2d_run_epilogue(node->u.op.plan, input, &t[node->output], workspace,
                                   p->workspace_bytes, &e);
}

/* Writes value v's other layout into its slot. */
static void convert_layout(const graph_plan *p, int v, ai3_tensor *t) {
    const ai3_tensor *from = &t[v], *to = &t[p->alt[v]];
    const ai3_tensor *plain = p->blocked[v] ? to : from;
    int64_t n = plain->shape[0], c = plain->shape[1], hw = plain->shape[2] * plain->shape[3];
    if (p->blocked[v]) ai3_blocked_to_plain(from->data, n, c, hw, p->cb, to->data);
    else ai3_blocked_from_plain(from->data, n, c, hw, p->cb, to->data);
}

/* Runs node i, which computes on blocked values, where it has a kernel of
 * that layout's own (else false: element-wise operations compute on the
 * blocked values as they are, and the channel count they see is padded). */
static bool run_blocked(const ai3_graph *g, const graph_plan *p, int i, ai3_tensor *t,
                        ai3_status *s) {
    const graph_node *node = &g->nodes[i];
    const ai3_tensor *x = &t[input_slot(g, p, i, 0)];
    float *y = t[node->output].data;
    int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], w = x->shape[3];
    int xi, si;
    switch (node->kind) {
    case NODE_CONV2D: {
        ai3_epilogue e = {.act = AI3_ACT_NONE};
        if (p->fused[i] >= 0) activation_of(&g->nodes[p->fused[i]], &e);
        if (p->residual[i] >= 0) e.residual = t[residual_slot(p, i)].data;
        const int k = p->expansion[i];
        if (k >= 0) { /* the 1×1 before it too (fuse_expansions) */
            ai3_epilogue e1 = {.act = AI3_ACT_NONE};
            if (p->fused[k] >= 0) activation_of(&g->nodes[p->fused[k]], &e1);
            x = &t[input_slot(g, p, k, 0)];
            *s = ai3_blocked_conv2d_run_expand_dw(g->nodes[k].u.op.blocked, &e1,
                                                  node->u.op.blocked, &e, x->data, n,
                                                  x->shape[2], x->shape[3], y);
            return true;
        }
        *s = ai3_blocked_conv2d_run(node->u.op.blocked, x->data, reads_blocked(g, p, i, 0), n, h,
                                    w, y, &e);
        return true;
    }
    case NODE_MAXPOOL2D:
    case NODE_AVGPOOL2D:
        *s = ai3_blocked_pool2d(node->kind == NODE_MAXPOOL2D,
                                node->kind == NODE_MAXPOOL2D
                                    ? &node->u.op.plan->params.maxpool2d
                                    : &node->u.op.plan->params.avgpool2d,
                                x->data, n, c, h, w, p->cb, y);
        return true;
    case NODE_ADAPTIVEAVGPOOL2D:
        ai3_blocked_global_avgpool(x->data, n, c, h * w, p->cb, y);
        return true;
    case NODE_MUL:
        if (!channel_scale(g, p, node, &xi, &si)) return false;
        x = &t[input_slot(g, p, i, xi)];
        ai3_blocked_scale_channels(x->data, t[input_slot(g, p, i, si)].data, x->shape[0],
                                   x->shape[1], x->shape[2] * x->shape[3], p->cb, y);
        return true;
    default: return false;
    }
}

/* Runs node i (not fused away) on inputs `in`, with what is fused into it. */
static ai3_status run_node(const ai3_graph *g, const graph_plan *p, int i,
                           const ai3_tensor **in, ai3_tensor *t, void *workspace, void *stream) {
    const graph_node *node = &g->nodes[i];
    ai3_status s = AI3_OK;
    if (p->cb && p->node_blocked[i] && run_blocked(g, p, i, t, &s))
        return s;
    if (!p->cuda && (p->fused[i] >= 0 || p->residual[i] >= 0))
        return run_epilogue(g, p, i, in[0], t, workspace);
    if (p->fused[i] >= 0 && node->kind == NODE_LAYERNORM)
        return p->cuda->layernorm_channels(node->u.op.plan, &t[g->nodes[p->fused[i]].inputs[0]],
                                           &t[node->output], stream);
    if (p->fused[i] >= 0 && node->kind == NODE_ADD)
        return run_permute_scale_add(g, p, &g->nodes[p->fused[i]], node, t, stream);
    if (p->fused[i] == BIAS_DEFERRED)
        return run_without_bias(node, in, &t[node->output], workspace, p->workspace_bytes,
                                stream);
    if (p->fused[i] >= 0)
        return ai3_plan_run_fused(node->u.op.plan, node->n_inputs, in, &t[node->output],
                                  workspace, p->workspace_bytes, stream,
                                  g->nodes[p->fused[i]].u.op.plan);
    return ai3_graph_node_run(g, node, in, &t[node->output], workspace, p->workspace_bytes,
                              stream);
}

/* Runs every node, then copies the outputs not written in place (graph
 * inputs, constants, values shared by several outputs). */
static ai3_status run_nodes(const ai3_graph *g, const graph_plan *p, ai3_tensor *t,
                            ai3_tensor *outputs, void *arena, void *stream) {
    const ai3_tensor **in = malloc(sizeof *in * (size_t)max_node_inputs(g));
    if (!in) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    void *workspace = (char *)arena + align64(p->tensor_bytes);
    ai3_status s = AI3_OK;
    for (int v = 0; p->cb && v < g->n_values; v++)
        if (g->values[v].kind == VALUE_INPUT && p->alt[v] >= 0) convert_layout(p, v, t);
    for (int i = 0; s == AI3_OK && i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        for (int k = 0; k < node->n_inputs; k++) in[k] = &t[input_slot(g, p, i, k)];
        /* (else done by the operation it reads, or inside the one reading it) */
        if (p->fused[i] != FUSED_AWAY && p->inside[i] < 0)
            s = run_node(g, p, i, in, t, workspace, stream);
        if (s != AI3_OK) s = node_error(g, i, s);
        for (int o = 0; s == AI3_OK && p->cb && o < node->n_outputs; o++)
            if (p->alt[node->output + o] >= 0) convert_layout(p, node->output + o, t);
    }
    free(in);
    for (int k = 0; s == AI3_OK && k < g->n_outputs; k++) {
        int v = g->outputs[k];
        size_t bytes = tensor_bytes(&t[v]);
        if (p->bound[p->root[v]] == k || !bytes) continue;
        if (p->cuda)
            s = p->cuda->copy(g->device_index, outputs[k].data, t[v].data, bytes,
                              AI3_COPY_ON_DEVICE, stream);
        else
            memmove(outputs[k].data, t[v].data, bytes);
    }
    return s;
}

/* One run through the shared arena (or one of its own while another run
 * holds it). On CUDA the work is only enqueued: an event recorded after it
 * orders the arena's next user, on whatever stream, behind it. */
static ai3_status run_eager(ai3_graph *g, graph_plan *p, const ai3_tensor *inputs,
                            ai3_tensor *outputs, void *stream) {
    void *arena = NULL;
    int own_arena = 0;
    pthread_mutex_lock(&g->lock);
    if (!g->arena_busy) {
        if (g->arena_bytes < p->arena_bytes) {
            free_arena(g, g->arena);
            g->arena = alloc_arena(g, p->arena_bytes);
            g->arena_bytes = g->arena ? p->arena_bytes : 0;
        }
        arena = g->arena;
        g->arena_busy = arena != NULL;
    }
    pthread_mutex_unlock(&g->lock);
    if (!arena) {
        arena = alloc_arena(g, p->arena_bytes);
        own_arena = 1;
    }
    ai3_status s = AI3_OK;
    ai3_tensor *t = malloc(sizeof *t * (size_t)p->n_slots);
    if (!arena || !t) s = ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    if (s == AI3_OK && p->cuda && !own_arena)
        s = p->cuda->wait(g->device_index, g->arena_event, stream);
    if (s == AI3_OK) {
        bind_values(g, p, inputs, outputs, arena, t);
        s = run_nodes(g, p, t, outputs, arena, stream);
    }
    free(t);
    pthread_mutex_lock(&g->lock);
    if (p->cuda && !own_arena) {
        ai3_status r = p->cuda->record(g->device_index, &g->arena_event, stream);
        if (s == AI3_OK) s = r;
    }
    if (own_arena) free_arena(g, arena); /* (on CUDA, freeing waits for the device) */
    else g->arena_busy = 0;
    if (s == AI3_OK) p->runs++;
    pthread_mutex_unlock(&g->lock);
    return s;
}

/* The plan's own buffers for replays: arena, then each input and output. */
static ai3_status make_replay_memory(const ai3_graph *g, graph_plan *p) {
    int n = g->n_inputs + g->n_outputs;
    p->slot = malloc(sizeof *p->slot * (size_t)n);
    if (!p->slot) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    size_t at = align64(p->arena_bytes);
    for (int i = 0; i < n; i++) {
        const ai3_tensor *t = i < g->n_inputs ? &p->inputs[i]
                                              : &p->values[g->outputs[i - g->n_inputs]];
        ai3_tensor sized = *t;
        sized.dtype = g->dtype;
        p->slot[i] = at;
        at += align64(tensor_bytes(&sized)) + 256; /* 256: device alignment */
        at = (at + 255) & ~(size_t)255;
    }
    return p->cuda->alloc(g->device_index, at, &p->replay_memory);
}

/* Captures the plan's run into a CUDA graph (on a capture stream of its
 * own). Whatever fails here (an operation the CUDA runtime cannot capture,
 * say) leaves the plan to eager runs. */
static ai3_status capture(const ai3_graph *g, graph_plan *p) {
    void *stream = NULL;
    char *base = p->replay_memory;
    ai3_tensor *slots = malloc(sizeof *slots * (size_t)(g->n_inputs + g->n_outputs + 1));
    ai3_tensor *t = malloc(sizeof *t * (size_t)p->n_slots);
    ai3_status s = AI3_OK;
    if (!slots || !t) s = ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    ai3_tensor *outs = slots + g->n_inputs; /* the outputs: their shapes, in the slots */
    for (int i = 0; s == AI3_OK && i < g->n_inputs + g->n_outputs; i++) {
        if (i >= g->n_inputs) slots[i] = p->values[g->outputs[i - g->n_inputs]];
        slots[i].data = base + p->slot[i];
    }
    if (s == AI3_OK) {
        bind_values(g, p, slots, outs, base, t);
        s = p->cuda->capture_begin(g->device_index, &stream);
    }
    if (s == AI3_OK) {
        ai3_status run = run_nodes(g, p, t, outs, base, stream);
        s = p->cuda->capture_end(g->device_index, stream, &p->replay_graph);
        if (run != AI3_OK) s = run;
    }
    free(slots);
    free(t);
    return s;
}

/* A run replayed from the plan's CUDA graph: the inputs copied into the
 * buffers it was captured with, the graph launched, its outputs copied out.
 * Returns 0, leaving the run to run_eager, when the plan is not replayed
 * (before its first eager run, while another thread replays it, or when its
 * capture failed); else 1 with the run's status in *status. */
static int run_replay(ai3_graph *g, graph_plan *p, const ai3_tensor *inputs,
                      ai3_tensor *outputs, void *stream, ai3_status *status) {
    pthread_mutex_lock(&g->lock);
    int mine = !p->replaying && !p->capture_failed && p->runs > 0;
    if (mine) p->replaying = 1;
    pthread_mutex_unlock(&g->lock);
    if (!mine) return 0;
    const ai3_cuda_backend *cuda = p->cuda;
    int dev = g->device_index, replayed = 1;
    ai3_status s = AI3_OK;
    if (!p->replay_graph) {
        if (!p->replay_memory) s = make_replay_memory(g, p);
        if (s == AI3_OK && capture(g, p) != AI3_OK) {
            p->capture_failed = 1; /* eager from now on, this run included */
            replayed = 0;
        }
    }
    char *base = p->replay_memory;
    if (replayed && s == AI3_OK) s = cuda->wait(dev, p->done, stream);
    for (int i = 0; replayed && s == AI3_OK && i < g->n_inputs; i++)
        s = cuda->copy(dev, base + p->slot[i], inputs[i].data, tensor_bytes(&inputs[i]),
                       AI3_COPY_ON_DEVICE, stream);
    if (replayed && s == AI3_OK) s = cuda->replay(dev, p->replay_graph, stream);
    for (int k = 0; replayed && s == AI3_OK && k < g->n_outputs; k++)
        s = cuda->copy(dev, outputs[k].data, base + p->slot[g->n_inputs + k],
                       tensor_bytes(&outputs[k]), AI3_COPY_ON_DEVICE, stream);
    if (replayed && s == AI3_OK) s = cuda->record(dev, &p->done, stream);
    pthread_mutex_lock(&g->lock);
    p->replaying = 0;
    pthread_mutex_unlock(&g->lock);
    *status = s;
    return replayed || s != AI3_OK;
}

/* Plan p's run in slices of p->sub_batch images, each through the plan for
 * its batch (the inputs' and outputs' slices: their images are contiguous). */
static ai3_status run_slices(ai3_graph *g, const graph_plan *p, const ai3_tensor *inputs,
                             ai3_tensor *outputs) {
    const int n_in = g->n_inputs, n_out = g->n_outputs;
    ai3_tensor *t = malloc(sizeof *t * (size_t)(n_in + n_out));
    if (!t) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    const int64_t n = p->inputs[0].shape[0];
    ai3_status s = AI3_OK;
    for (int64_t b0 = 0; s == AI3_OK && b0 < n; b0 += p->sub_batch) {
        const int64_t b = n - b0 < p->sub_batch ? n - b0 : p->sub_batch;
        for (int k = 0; k < n_in + n_out; k++) {
            const ai3_tensor *whole = k < n_in ? &inputs[k] : &outputs[k - n_in];
            t[k] = *whole;
            t[k].shape[0] = b;
            t[k].data = (char *)whole->data + (size_t)b0 * (tensor_bytes(whole) / (size_t)n);
        }
        graph_plan *q;
        if ((s = get_plan(g, t, &q)) != AI3_OK) break;
        s = run_eager(g, q, t, t + n_in, NULL);
        put_plan(g, q);
    }
    free(t);
    return s;
}

ai3_status ai3_graph_run_stream(ai3_graph *g, int n_inputs, const ai3_tensor *inputs,
                                int n_outputs, ai3_tensor *outputs, void *stream) {
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph is NULL");
    ai3_status s = check_inputs(g, n_inputs, inputs, 1);
    if (s != AI3_OK) return s;
    if (n_outputs != g->n_outputs || !outputs)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: has %d outputs, got %d",
                             g->n_outputs, n_outputs);
    graph_plan *p;
    if ((s = get_plan(g, inputs, &p)) != AI3_OK) return s;
    for (int k = 0; s == AI3_OK && k < n_outputs; k++) {
        const ai3_tensor *want = &p->values[g->outputs[k]];
        s = ai3_check_output(&outputs[k], want, want->ndim, want->shape, "graph");
    }
    if (s == AI3_OK && p->sub_batch)
        s = run_slices(g, p, inputs, outputs);
    else if (s == AI3_OK && !(g->cuda_graphs && run_replay(g, p, inputs, outputs, stream, &s)))
        s = run_eager(g, p, inputs, outputs, stream);
    put_plan(g, p);
    return s;
}

ai3_status ai3_graph_run(ai3_graph *g, int n_inputs, const ai3_tensor *inputs, int n_outputs,
                         ai3_tensor *outputs) {
    return ai3_graph_run_stream(g, n_inputs, inputs, n_outputs, outputs, NULL);
}
