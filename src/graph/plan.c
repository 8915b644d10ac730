/* Graph plans (one per combination of input shapes: every value's shape and
 * where its data lives) and runs. */
#include "graph.h"
#include "ops/op.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_OFFSET ((size_t)-1)
#define FUSED_AWAY (-2)
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
    /* Per node: a host conv2d absorbing the relu/hardtanh that alone reads
     * its output (the index of that node), FUSED_AWAY for such a clamp
     * node (its value a view of the convolution's), else -1. */
    int *fused;
    int n_inputs;
    ai3_tensor *inputs; /* the input shapes it is for */
    ai3_tensor *values; /* every value's shape (data: ai3_shape_only) */
    int *root;          /* the value whose buffer each value lives in */
    int *bound;         /* per root: the graph output written in place, or -1 */
    size_t *offset;     /* per root in the arena: its offset, else NO_OFFSET */
    size_t arena_bytes; /* tensors, then the workspace */
    size_t tensor_bytes, total_bytes, workspace_bytes;
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

/* The clamp [lo, hi] a relu or hardtanh node applies, or false. */
static bool clamp_of(const graph_node *node, double clamp[2]) {
    if (node->kind == NODE_RELU) {
        clamp[0] = 0, clamp[1] = INFINITY;
        return true;
    }
    if (node->kind == NODE_HARDTANH) {
        const ai3_op_params *p = &node->u.op.plan->params;
        clamp[0] = p->hardtanh.min_val, clamp[1] = p->hardtanh.max_val;
        return true;
    }
    return false;
}

/* Fuses, on the CPU, each relu or hardtanh into the conv2d whose output it
 * alone reads (and that is no graph output): the convolution clamps its
 * output tiles as it writes them (ai3_conv2d_run_clamped), and the clamp's
 * value becomes a view of the convolution's. `readers` counts, per value,
 * the nodes reading it (graph outputs count). */
static void fuse_clamps(const ai3_graph *g, const int *readers, int *fused) {
    for (int i = 0; i < g->n_nodes; i++) fused[i] = -1;
    if (g->device != AI3_DEVICE_CPU) return;
    for (int j = 0; j < g->n_nodes; j++) {
        const graph_node *node = &g->nodes[j];
        double clamp[2];
        if (!clamp_of(node, clamp) || node->n_inputs != 1) continue;
        int v = node->inputs[0];
        const graph_value *gv = &g->values[v];
        if (gv->kind != VALUE_NODE || readers[v] != 1) continue;
        int i = gv->index;
        if (g->nodes[i].kind == NODE_CONV2D && !g->nodes[i].u.op.view && fused[i] < 0) {
            fused[i] = j;
            fused[j] = FUSED_AWAY;
        }
    }
}

/* Makes the plan for inputs of these shapes. */
static ai3_status make_plan(const ai3_graph *g, const ai3_tensor *inputs, graph_plan **out) {
    int nv = g->n_values;
    graph_plan *p = calloc(1, sizeof *p);
    int *last = malloc(sizeof *last * (size_t)nv);
    int *root_last = malloc(sizeof *root_last * (size_t)nv);
    buffer *bufs = malloc(sizeof *bufs * (size_t)nv);
    const ai3_tensor **in = malloc(sizeof *in * (size_t)(nv + 1));
    if (p) {
        p->refs = 1;
        p->cuda = ai3_graph_cuda(g);
        p->device_index = g->device_index;
        p->n_inputs = g->n_inputs;
        p->inputs = malloc(sizeof *p->inputs * (size_t)(g->n_inputs + 1));
        p->values = calloc((size_t)nv, sizeof *p->values);
        p->root = malloc(sizeof *p->root * (size_t)nv);
        p->bound = malloc(sizeof *p->bound * (size_t)nv);
        p->offset = malloc(sizeof *p->offset * (size_t)nv);
        p->fused = malloc(sizeof *p->fused * (size_t)(g->n_nodes + 1));
    }
    ai3_status s = AI3_OK;
    if (!p || !last || !root_last || !bufs || !in || !p->inputs || !p->values || !p->root ||
        !p->bound || !p->offset || !p->fused)
        s = ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");

    if (s == AI3_OK) {
        for (int i = 0; i < g->n_inputs; i++) {
            p->inputs[i] = inputs[i];
            p->inputs[i].data = NULL;
        }
        for (int v = 0; v < nv; v++) {
            const graph_value *gv = &g->values[v];
            ai3_tensor *t = &p->values[v];
            if (gv->kind == VALUE_INPUT) *t = inputs[gv->index];
            else if (gv->kind == VALUE_CONSTANT) *t = g->constants[gv->index];
            t->dtype = g->dtype;
            t->device = g->device;
            t->device_index = g->device_index;
            t->data = ai3_shape_only;
            p->root[v] = v;
            p->bound[v] = -1;
            p->offset[v] = NO_OFFSET;
            last[v] = -1;
        }
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; k < g->nodes[i].n_inputs; k++) last[g->nodes[i].inputs[k]] = i;
        for (int k = 0; k < g->n_outputs; k++) last[g->outputs[k]] = NEVER;
        for (int v = 0; v < nv; v++) root_last[v] = last[v];
        int *readers = root_last; /* (borrowed: filled again just below) */
        for (int v = 0; v < nv; v++) readers[v] = 0;
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; k < g->nodes[i].n_inputs; k++) readers[g->nodes[i].inputs[k]]++;
        for (int k = 0; k < g->n_outputs; k++) readers[g->outputs[k]]++;
        fuse_clamps(g, readers, p->fused);
        for (int v = 0; v < nv; v++) root_last[v] = last[v];
    }

    /* Shapes, workspace and where each result lives, node by node. */
    for (int i = 0; s == AI3_OK && i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        ai3_tensor *res = &p->values[node->output];
        for (int k = 0; k < node->n_inputs; k++) in[k] = &p->values[node->inputs[k]];
        s = ai3_graph_node_shapes(node, in, p->values, res);
        size_t ws = 0;
        if (s == AI3_OK) s = ai3_graph_node_workspace(node, in, &ws);
        if (s != AI3_OK) {
            s = node_error(g, i, s);
            break;
        }
        if (ws > p->workspace_bytes) p->workspace_bytes = ws;

        node_storage storage =
            p->fused[i] == FUSED_AWAY ? STORE_VIEW : ai3_graph_node_storage(node);
        int v = node->output;
        if (storage == STORE_VIEW) {
            int r = p->root[node->inputs[0]];
            p->root[v] = r;
            if (last[v] > root_last[r]) root_last[r] = last[v];
        } else if (storage == STORE_INPLACE) {
            for (int k = 0; k < (node->n_inputs < 2 ? node->n_inputs : 2); k++) {
                int u = node->inputs[k], r = p->root[u];
                const ai3_tensor *t = &p->values[u];
                int same = t->ndim == res->ndim;
                for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == res->shape[d];
                if (g->values[r].kind == VALUE_NODE && root_last[r] <= i && same) {
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
            if (g->values[r].kind == VALUE_NODE && p->bound[r] < 0) p->bound[r] = k;
        }
        int n = 0;
        size_t elem = ai3_dtype_size(g->dtype);
        for (int v = 0; v < nv; v++) {
            if (g->values[v].kind != VALUE_NODE) continue;
            const graph_node *node = &g->nodes[g->values[v].index];
            if (ai3_graph_node_storage(node) != STORE_VIEW && last[v] != NEVER)
                p->total_bytes += (size_t)ai3_tensor_numel(&p->values[v]) * elem;
            if (p->root[v] != v || p->bound[v] >= 0) continue;
            int first = g->values[v].index;
            bufs[n++] = (buffer){.root = v, .first = first,
                                 .last = root_last[v] < first ? first : root_last[v],
                                 .bytes = align64(tensor_bytes(&p->values[v]))};
        }
        s = place_buffers(p, bufs, n);
        p->arena_bytes = align64(p->tensor_bytes) + p->workspace_bytes;
    }

    free(last);
    free(root_last);
    free(bufs);
    free(in);
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

/* Every value's tensor for a run: the inputs' and outputs' memory as given,
 * intermediates at their offsets in `arena`. */
static void bind_values(const ai3_graph *g, const graph_plan *p, const ai3_tensor *inputs,
                        const ai3_tensor *outputs, void *arena, ai3_tensor *t) {
    for (int v = 0; v < g->n_values; v++) {
        int r = p->root[v];
        const graph_value *gv = &g->values[r];
        t[v] = p->values[v];
        if (gv->kind == VALUE_INPUT) t[v].data = inputs[gv->index].data;
        else if (gv->kind == VALUE_CONSTANT) t[v].data = g->constants[gv->index].data;
        else if (p->bound[r] >= 0) t[v].data = outputs[p->bound[r]].data;
        else t[v].data = (char *)arena + p->offset[r];
    }
}

/* Runs every node, then copies the outputs not written in place (graph
 * inputs, constants, values shared by several outputs). */
static ai3_status run_nodes(const ai3_graph *g, const graph_plan *p, ai3_tensor *t,
                            ai3_tensor *outputs, void *arena, void *stream) {
    const ai3_tensor **in = malloc(sizeof *in * (size_t)(g->n_values + 1));
    if (!in) return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    void *workspace = (char *)arena + align64(p->tensor_bytes);
    ai3_status s = AI3_OK;
    for (int i = 0; s == AI3_OK && i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        double clamp[2];
        if (p->fused[i] == FUSED_AWAY) continue; /* done by its convolution */
        for (int k = 0; k < node->n_inputs; k++) in[k] = &t[node->inputs[k]];
        if (p->fused[i] >= 0 && clamp_of(&g->nodes[p->fused[i]], clamp))
            s = ai3_conv2d_run_clamped(node->u.op.plan, in[0], &t[node->output], workspace,
                                       p->workspace_bytes, clamp);
        else
            s = ai3_graph_node_run(g, node, in, &t[node->output], workspace,
                                   p->workspace_bytes, stream);
        if (s != AI3_OK) s = node_error(g, i, s);
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
    ai3_tensor *t = malloc(sizeof *t * (size_t)g->n_values);
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
    ai3_tensor *t = malloc(sizeof *t * (size_t)g->n_values);
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
    if (s == AI3_OK && !(g->cuda_graphs && run_replay(g, p, inputs, outputs, stream, &s)))
        s = run_eager(g, p, inputs, outputs, stream);
    put_plan(g, p);
    return s;
}

ai3_status ai3_graph_run(ai3_graph *g, int n_inputs, const ai3_tensor *inputs, int n_outputs,
                         ai3_tensor *outputs) {
    return ai3_graph_run_stream(g, n_inputs, inputs, n_outputs, outputs, NULL);
}
