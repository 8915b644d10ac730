/* Graph plans (one per combination of input shapes: every value's shape and
 * where its data lives) and runs. */
#include "graph.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_OFFSET ((size_t)-1)
#define NEVER INT_MAX /* the last use of a graph output */

struct graph_plan {
    int refs;           /* runs using it, plus one while cached */
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

void ai3_graph_release_plans(ai3_graph *g) {
    pthread_mutex_lock(&g->lock);
    for (int i = 0; i < 4; i++) {
        unref_plan(g->plans[i]);
        g->plans[i] = NULL;
    }
    if (!g->arena_busy) {
        ai3_free(g->arena);
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
        if (!need_data) t.data = ai3_shape_only;
        ai3_status s = ai3_check_tensor(&t, "input", "graph");
        if (s != AI3_OK) return s;
        if (t.device != AI3_DEVICE_CPU)
            return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                                 "graph: input %d is on %s; graphs run on the CPU", i,
                                 ai3_device_name(t.device));
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
        p->n_inputs = g->n_inputs;
        p->inputs = malloc(sizeof *p->inputs * (size_t)(g->n_inputs + 1));
        p->values = calloc((size_t)nv, sizeof *p->values);
        p->root = malloc(sizeof *p->root * (size_t)nv);
        p->bound = malloc(sizeof *p->bound * (size_t)nv);
        p->offset = malloc(sizeof *p->offset * (size_t)nv);
    }
    ai3_status s = AI3_OK;
    if (!p || !last || !root_last || !bufs || !in || !p->inputs || !p->values || !p->root ||
        !p->bound || !p->offset)
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
            t->device = AI3_DEVICE_CPU;
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

        node_storage storage = ai3_graph_node_storage(node);
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
 * reference for the caller. Call with the lock held. */
static ai3_status get_plan(ai3_graph *g, const ai3_tensor *inputs, graph_plan **out) {
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
    pthread_mutex_lock(&g->lock);
    s = get_plan(g, inputs, &p);
    pthread_mutex_unlock(&g->lock);
    if (s != AI3_OK) return s;
    for (int k = 0; k < n_outputs; k++) {
        const ai3_tensor *t = &p->values[g->outputs[k]];
        out_ndims[k] = t->ndim;
        for (int d = 0; d < t->ndim; d++) out_shapes[k][d] = t->shape[d];
    }
    pthread_mutex_lock(&g->lock);
    unref_plan(p);
    pthread_mutex_unlock(&g->lock);
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
    pthread_mutex_lock(&g->lock);
    s = get_plan(g, inputs, &p);
    if (s == AI3_OK) {
        *peak_bytes = p->tensor_bytes;
        *total_bytes = p->total_bytes;
        if (workspace_bytes) *workspace_bytes = p->workspace_bytes;
        unref_plan(p);
    }
    pthread_mutex_unlock(&g->lock);
    return s;
}

ai3_status ai3_graph_run(ai3_graph *g, int n_inputs, const ai3_tensor *inputs, int n_outputs,
                         ai3_tensor *outputs) {
    if (!g) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: graph is NULL");
    ai3_status s = check_inputs(g, n_inputs, inputs, 1);
    if (s != AI3_OK) return s;
    if (n_outputs != g->n_outputs || !outputs)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "graph: has %d outputs, got %d",
                             g->n_outputs, n_outputs);

    graph_plan *p;
    void *arena = NULL;
    int own_arena = 0;
    pthread_mutex_lock(&g->lock);
    s = get_plan(g, inputs, &p);
    if (s == AI3_OK && !g->arena_busy) {
        if (g->arena_bytes < p->arena_bytes) {
            ai3_free(g->arena);
            g->arena = ai3_alloc(p->arena_bytes);
            g->arena_bytes = g->arena ? p->arena_bytes : 0;
        }
        arena = g->arena;
        g->arena_busy = arena != NULL;
    }
    pthread_mutex_unlock(&g->lock);
    if (s != AI3_OK) return s;
    if (!arena) {
        arena = ai3_alloc(p->arena_bytes);
        own_arena = 1;
    }

    ai3_tensor *t = malloc(sizeof *t * (size_t)g->n_values);
    const ai3_tensor **in = malloc(sizeof *in * (size_t)(g->n_values + 1));
    if (!arena || !t || !in) s = ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "graph: out of memory");
    for (int k = 0; s == AI3_OK && k < n_outputs; k++) {
        const ai3_tensor *want = &p->values[g->outputs[k]];
        s = ai3_check_output(&outputs[k], want, want->ndim, want->shape, "graph");
    }
    for (int v = 0; s == AI3_OK && v < g->n_values; v++) {
        int r = p->root[v];
        const graph_value *gv = &g->values[r];
        t[v] = p->values[v];
        if (gv->kind == VALUE_INPUT) t[v].data = inputs[gv->index].data;
        else if (gv->kind == VALUE_CONSTANT) t[v].data = g->constants[gv->index].data;
        else if (p->bound[r] >= 0) t[v].data = outputs[p->bound[r]].data;
        else t[v].data = (char *)arena + p->offset[r];
    }
    void *workspace = (char *)arena + align64(p->tensor_bytes);
    for (int i = 0; s == AI3_OK && i < g->n_nodes; i++) {
        const graph_node *node = &g->nodes[i];
        for (int k = 0; k < node->n_inputs; k++) in[k] = &t[node->inputs[k]];
        s = ai3_graph_node_run(node, in, &t[node->output], workspace, p->workspace_bytes);
        if (s != AI3_OK) s = node_error(g, i, s);
    }
    /* Outputs not written in place: graph inputs, constants, values shared. */
    for (int k = 0; s == AI3_OK && k < n_outputs; k++) {
        int v = g->outputs[k];
        if (p->bound[p->root[v]] != k && tensor_bytes(&t[v]))
            memmove(outputs[k].data, t[v].data, tensor_bytes(&t[v]));
    }
    free(t);
    free(in);

    pthread_mutex_lock(&g->lock);
    if (own_arena) ai3_free(arena);
    else g->arena_busy = 0;
    unref_plan(p);
    pthread_mutex_unlock(&g->lock);
    return s;
}
