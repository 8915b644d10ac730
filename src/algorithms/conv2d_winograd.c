/*
 * conv2d "winograd": Winograd's minimal filtering (Lavin & Gray, 2016) for
 * 3×3 kernels, stride 1, dilation 1, F(2×2,3×3) and F(4×4,3×3).
 *
 * The output is cut into m×m tiles (m = 2 or 4); each reads an α×α patch
 * (α = m + 2) of the padded input. In the transform domain a tile's
 * convolution is one elementwise product per point (α² points):
 *
 *     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
 *
 * and summing over input channels makes that, per point p, a matrix product
 * U[p] (C_out_g × C_in_g) · V[p] (C_in_g × tiles) = M[p] (C_out_g × tiles).
 *
 *   prepare  U = G g Gᵀ for every (oc, ic), once per plan, and each U[p] of
 *            each group packed as the GEMM engine's A operand;
 *   run      per chunk of tiles: the input transform V = Bᵀ d B, the patches
 *            read straight from the input through per-axis padding tables
 *            (every padding mode, no padded copy); the α²·groups GEMMs with
 *            the packed U, one per pool thread at a time; the output
 *            transform Y = Aᵀ M A plus the bias, clipped at the right and
 *            bottom edges. The transforms work on 64 bytes of tiles at once
 *            (16 in float32), one tile per vector lane.
 *
 * The tile size is fixed when the plan is made: F(4×4), which needs fewer
 * products per output, unless the plan's input hint has so few tiles that
 * reading the larger transformed weights dominates (then F(2×2)). The
 * environment variable AI3_WINOGRAD_TILE=2|4, read whenever a plan is made,
 * forces F(2×2) or F(4×4) (tests, benchmarks).
 *
 * F(4×4) uses the interpolation points 0, ±1, ±2 and ∞; its transforms
 * magnify rounding errors, so float32 results are off by about 1e-5 of the
 * output's largest magnitude (F(2×2) and the other algorithms: 1e-6).
 */
#include "algorithms/conv2d.h"
#include "epilogue.h"
#include "gemm.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define MAX_ALPHA AI3_WINOGRAD_MAX_ALPHA

/* --- the transforms --------------------------------------------------------
 * The input and output transforms work on VL tiles at once, one per lane
 * of a 64-byte vector (GCC's generic vectors, compiled per ISA by
 * AI3_MULTIVERSION). */
#define VL ((int)(64 / sizeof(real)))
typedef real vec __attribute__((vector_size(64)));
typedef real vec_u __attribute__((vector_size(64), aligned(sizeof(real))));

#define WT_VEC vec
#define WT_ELEM real
#define WT_NAME(f) f
#define WT_ATTR ALWAYS_INLINE
#include "winograd_1d.h"

/* --- the plan's state -------------------------------------------------------- */

typedef struct {
    int m, alpha, points;
    const ai3_gemm_config *cfg; /* the config the A operands are packed for */
    size_t packed;              /* elements of one packed U[p] of one group */
    real *u;                    /* [point][group] packed A operands */
} winograd_state;

static void release(void *vstate) {
    winograd_state *st = vstate;
    if (!st) return;
    ai3_free(st->u);
    ai3_free(st);
}

static ai3_status supports(const ai3_conv2d_problem *pb) {
    const ai3_conv2d_params *p = &pb->params;
    if (pb->weight.shape[2] != 3 || pb->weight.shape[3] != 3)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "conv2d 'winograd' supports 3x3 kernels only, got kernel size "
                             "%lldx%lld",
                             (long long)pb->weight.shape[2], (long long)pb->weight.shape[3]);
    if (p->stride_h != 1 || p->stride_w != 1)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "conv2d 'winograd' supports stride 1 only, got stride (%lld, %lld)",
                             (long long)p->stride_h, (long long)p->stride_w);
    if (p->dilation_h != 1 || p->dilation_w != 1)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "conv2d 'winograd' supports dilation 1 only, got dilation "
                             "(%lld, %lld)",
                             (long long)p->dilation_h, (long long)p->dilation_w);
    return AI3_OK;
}

typedef struct {
    const real *w;
    real *ut; /* [point][oc][ic] */
    const winograd_state *st;
    int64_t c_out, c_in_g;
} kernel_ctx;

/* U = G g Gᵀ for output channels [begin, end), in double. */
static void transform_kernels(void *vctx, int64_t begin, int64_t end) {
    const kernel_ctx *c = vctx;
    const int points = c->st->points;
    for (int64_t oc = begin; oc < end; oc++) {
        for (int64_t ic = 0; ic < c->c_in_g; ic++) {
            const real *g = c->w + (oc * c->c_in_g + ic) * 9;
            double gd[9], u[AI3_WINOGRAD_MAX_ALPHA * AI3_WINOGRAD_MAX_ALPHA];
            for (int i = 0; i < 9; i++) gd[i] = g[i];
            ai3_winograd_kernel(c->st->m, gd, u);
            for (int p = 0; p < points; p++)
                c->ut[((int64_t)p * c->c_out + oc) * c->c_in_g + ic] = (real)u[p];
        }
    }
}

typedef struct {
    const real *ut;
    const winograd_state *st;
    int64_t c_out, c_out_g, c_in_g, groups;
} pack_ctx;

static void pack_kernels(void *vctx, int64_t begin, int64_t end) {
    const pack_ctx *c = vctx;
    for (int64_t task = begin; task < end; task++) {
        const int64_t p = task / c->groups, g = task % c->groups;
        const real *src = c->ut + (p * c->c_out + g * c->c_out_g) * c->c_in_g;
        AI3_TYPED(ai3_gemm_pack_a)(c->st->cfg, c->c_out_g, c->c_in_g, src, c->c_in_g, 1,
                                   c->st->u + (size_t)task * c->st->packed);
    }
}

static int tile_size(const ai3_conv2d_problem *pb) {
    const char *e = getenv("AI3_WINOGRAD_TILE");
    if (e && (strcmp(e, "2") == 0 || strcmp(e, "4") == 0)) return e[0] - '0';
    if (!pb->has_hint) return 4;
    /* Each transform point's GEMM reads its weights once for all tiles: with
     * few F(4×4) tiles (a small late map at a small batch) that read costs
     * more than the arithmetic saved, and the smaller F(2×2) weights win. */
    const ai3_conv2d_dims *d = &pb->hint;
    const int64_t tiles = d->n * ((d->oh + 3) / 4) * ((d->ow + 3) / 4);
    return tiles < 32 ? 2 : 4;
}

static ai3_status prepare(ai3_conv2d_problem *pb) {
    const ai3_tensor *w = &pb->weight;
    const int64_t c_out = w->shape[0], c_in_g = w->shape[1], groups = pb->params.groups;
    const int64_t c_out_g = c_out / groups;
    winograd_state *st = ai3_alloc(sizeof *st);
    if (!st) return AI3_ERROR_OUT_OF_MEMORY;
    st->m = tile_size(pb);
    st->alpha = st->m + 2;
    st->points = st->alpha * st->alpha;
    st->cfg = AI3_TYPED(ai3_gemm_get_config)();
    const size_t align = 64 / sizeof(real);
    st->packed = (AI3_TYPED(ai3_gemm_packed_a_size)(st->cfg, c_out_g, c_in_g) + align - 1) /
                 align * align;
    st->u = ai3_alloc((size_t)(st->points * groups) * st->packed * sizeof(real));
    real *ut = ai3_alloc((size_t)(st->points * c_out * c_in_g) * sizeof(real));
    if (!st->u || !ut) {
        ai3_free(ut);
        release(st);
        return AI3_ERROR_OUT_OF_MEMORY;
    }
    kernel_ctx kc = {w->data, ut, st, c_out, c_in_g};
    ai3_parallel_for(c_out, 1, transform_kernels, &kc);
    pack_ctx pc = {ut, st, c_out, c_out_g, c_in_g, groups};
    ai3_parallel_for(st->points * groups, 1, pack_kernels, &pc);
    ai3_free(ut);
    pb->state = st;
    return AI3_OK;
}

/* --- running ----------------------------------------------------------------- */

/* The tiles of a run: th × tw per image, numbered (n, ty, tx) row-major,
 * processed in chunks of `chunk` (the columns of the GEMMs). */
typedef struct {
    int64_t th, tw, tiles, chunk;
    int64_t hx, wx; /* the padded extent the tiles read: th·m + 2, tw·m + 2 */
} tiling;

/* Every chunk streams all of U through the GEMMs, so a chunk's V and M are
 * made about as large as U, within these bounds: at least MIN_CHUNK tiles
 * (thinner GEMMs waste their packing), at most MAX_CHUNK_BYTES. */
#define MIN_CHUNK 64
#define MAX_CHUNK_BYTES ((size_t)32 << 20)

static tiling make_tiling(const winograd_state *st, const ai3_conv2d_dims *d) {
    tiling t;
    t.th = (d->oh + st->m - 1) / st->m;
    t.tw = (d->ow + st->m - 1) / st->m;
    t.tiles = d->n * t.th * t.tw;
    t.hx = t.th * st->m + 2;
    t.wx = t.tw * st->m + 2;
    const size_t per_tile = (size_t)(st->points * (d->c_in + d->c_out)) * sizeof(real);
    const size_t u_bytes = (size_t)(st->points * d->groups) * st->packed * sizeof(real);
    const int64_t chunk = (int64_t)(AI3_MIN(u_bytes, MAX_CHUNK_BYTES) / per_tile) / 32 * 32;
    t.chunk = AI3_MIN(t.tiles, AI3_MAX(chunk, MIN_CHUNK));
    return t;
}

/* Workspace: padding tables (source row / column of each padded coordinate,
 * -1 for zero; and per tile row / column the first source index when the
 * tile's α rows / columns are consecutive in the input, else -1), then V
 * [c_in][point][chunk] and M [c_out][point][chunk]: the α² values of one
 * channel's tiles lie together, so the transforms read and write a few
 * contiguous runs rather than α² streams across the whole buffer. */
typedef struct {
    int64_t *rows, *cols, *row_run, *col_run;
    real *v, *mm;
} parts;

static void carve(const winograd_state *st, const ai3_conv2d_dims *d, const tiling *t,
                  ai3_arena *a, parts *w) {
    w->rows = ai3_arena_take(a, (size_t)t->hx * sizeof(int64_t));
    w->cols = ai3_arena_take(a, (size_t)t->wx * sizeof(int64_t));
    w->row_run = ai3_arena_take(a, (size_t)t->th * sizeof(int64_t));
    w->col_run = ai3_arena_take(a, (size_t)t->tw * sizeof(int64_t));
    w->v = ai3_arena_take(a, (size_t)(st->points * d->c_in * t->chunk) * sizeof(real));
    w->mm = ai3_arena_take(a, (size_t)(st->points * d->c_out * t->chunk) * sizeof(real));
}

static size_t workspace_size(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d) {
    const tiling t = make_tiling(pb->state, d);
    ai3_arena a = {NULL, 0};
    parts w;
    carve(pb->state, d, &t, &a, &w);
    return a.used;
}

/* Fills table[0 .. extent) with the source index of each padded coordinate
 * and run[i] for the tiles (see parts). */
static void padding_table(int64_t extent, int64_t size, int64_t before, int64_t padded,
                          ai3_padding_mode mode, int m, int64_t tiles, int64_t *table,
                          int64_t *run) {
    for (int64_t i = 0; i < extent; i++)
        table[i] = i < padded ? ai3_pad_source_index(i, size, before, mode) : -1;
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t *s = table + t * m;
        run[t] = s[0];
        for (int i = 1; i < m + 2 && run[t] >= 0; i++)
            if (s[i] != s[0] + i) run[t] = -1;
    }
}

typedef struct {
    const winograd_state *st;
    const ai3_conv2d_dims *d;
    const tiling *t;
    const parts *w;
    const real *x, *bias;
    real *y;
    int64_t t0, nt;   /* the chunk: tiles [t0, t0 + nt) */
    int64_t sub, nsub; /* tasks: (channel, block of `sub` tiles of the chunk) */
    atomic_int failed;
} run_ctx;

/* Tile number `tile` as (image, tile row, tile column), and the next one. */
static inline void tile_position(const tiling *t, int64_t tile, int64_t *n, int64_t *ty,
                                 int64_t *tx) {
    *n = tile / (t->th * t->tw);
    *ty = tile / t->tw % t->th;
    *tx = tile % t->tw;
}

static inline void next_tile(const tiling *t, int64_t *n, int64_t *ty, int64_t *tx) {
    if (++*tx < t->tw) return;
    *tx = 0;
    if (++*ty < t->th) return;
    *ty = 0;
    ++*n;
}

/* V[c][p][tile] for tasks (channel, block of tiles). */
ALWAYS_INLINE void input_tasks(const run_ctx *c, int64_t begin, int64_t end, const int m) {
    enum { A = MAX_ALPHA };
    const int alpha = m + 2;
    const ai3_conv2d_dims *d = c->d;
    const tiling *t = c->t;
    const parts *w = c->w;
    const int64_t chunk = t->chunk;
    for (int64_t task = begin; task < end; task++) {
        const int64_t ch = task / c->nsub, b = task % c->nsub;
        const int64_t l0 = b * c->sub, l1 = AI3_MIN(c->nt, l0 + c->sub);
        real *v = w->v + ch * alpha * alpha * chunk;
        int64_t n, ty, tx;
        tile_position(t, c->t0 + l0, &n, &ty, &tx);
        for (int64_t lb = l0; lb < l1; lb += VL) {
            const int lanes = (int)AI3_MIN(VL, l1 - lb);
            /* patch[i][j] holds element (i, j) of each lane's tile */
            vec patch[A][A], tmp[A][A], out[A][A];
            if (lanes < VL) memset(patch, 0, sizeof patch);
            for (int lane = 0; lane < lanes; lane++, next_tile(t, &n, &ty, &tx)) {
                const real *x = c->x + (n * d->c_in + ch) * d->h * d->w;
                const int64_t r0 = w->row_run[ty], c0 = w->col_run[tx];
                if (r0 >= 0 && c0 >= 0) {
                    const real *src = x + r0 * d->w + c0;
                    for (int i = 0; i < alpha; i++)
                        for (int j = 0; j < alpha; j++) patch[i][j][lane] = src[i * d->w + j];
                } else {
                    const int64_t *rows = w->rows + ty * m, *cols = w->cols + tx * m;
                    for (int i = 0; i < alpha; i++)
                        for (int j = 0; j < alpha; j++)
                            patch[i][j][lane] = rows[i] >= 0 && cols[j] >= 0
                                                    ? x[rows[i] * d->w + cols[j]]
                                                    : 0;
                }
            }
            for (int j = 0; j < alpha; j++) input_1d(m, &patch[0][j], A, &tmp[0][j], A);
            for (int i = 0; i < alpha; i++) input_1d(m, tmp[i], 1, out[i], 1);
            for (int i = 0; i < alpha; i++) {
                for (int j = 0; j < alpha; j++) {
                    real *dst = v + (i * alpha + j) * chunk + lb;
                    if (lanes == VL) *(vec_u *)dst = out[i][j];
                    else memcpy(dst, &out[i][j], (size_t)lanes * sizeof(real));
                }
            }
        }
    }
}

AI3_MULTIVERSION(input_tasks_2, void *, vctx, int64_t, begin, int64_t, end) {
    input_tasks(vctx, begin, end, 2);
}
AI3_MULTIVERSION(input_tasks_4, void *, vctx, int64_t, begin, int64_t, end) {
    input_tasks(vctx, begin, end, 4);
}

/* Output tiles from M for tasks (output channel, block of tiles). */
ALWAYS_INLINE void output_tasks(const run_ctx *c, int64_t begin, int64_t end, const int m) {
    enum { A = MAX_ALPHA };
    const int alpha = m + 2;
    const ai3_conv2d_dims *d = c->d;
    const tiling *t = c->t;
    const int64_t chunk = t->chunk;
    for (int64_t task = begin; task < end; task++) {
        const int64_t oc = task / c->nsub, b = task % c->nsub;
        const int64_t l0 = b * c->sub, l1 = AI3_MIN(c->nt, l0 + c->sub);
        const real *mm = c->w->mm + oc * alpha * alpha * chunk;
        const real bias = c->bias ? c->bias[oc] : 0;
        const ai3_epilogue *e = d->epilogue;
        int64_t n, ty, tx;
        tile_position(t, c->t0 + l0, &n, &ty, &tx);
        for (int64_t lb = l0; lb < l1; lb += VL) {
            const int lanes = (int)AI3_MIN(VL, l1 - lb);
            vec in[A][A], tmp[4][A], out[4][4];
            if (lanes < VL) memset(in, 0, sizeof in);
            for (int i = 0; i < alpha; i++) {
                for (int j = 0; j < alpha; j++) {
                    const real *src = mm + (i * alpha + j) * chunk + lb;
                    if (lanes == VL) in[i][j] = *(const vec_u *)src;
                    else memcpy(&in[i][j], src, (size_t)lanes * sizeof(real));
                }
            }
            for (int j = 0; j < alpha; j++) output_1d(m, &in[0][j], A, &tmp[0][j], A);
            for (int i = 0; i < m; i++) output_1d(m, tmp[i], 1, out[i], 1);
            if (e) { /* the bias and the run's epilogue, on the tiles still in registers */
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < m; j++) out[i][j] += bias;
                int64_t rn = n, rty = ty, rtx = tx; /* the residual, tile by tile */
                for (int lane = 0; e->residual && lane < lanes;
                     lane++, next_tile(t, &rn, &rty, &rtx)) {
                    const real *r = ai3_epilogue_residual(
                        e, ((rn * d->c_out + oc) * d->oh + rty * m) * d->ow + rtx * m);
                    const int rows = (int)AI3_MIN(m, d->oh - rty * m);
                    const int cols = (int)AI3_MIN(m, d->ow - rtx * m);
                    for (int i = 0; i < rows; i++)
                        for (int j = 0; j < cols; j++) out[i][j][lane] += r[i * d->ow + j];
                }
                AI3_TYPED(ai3_epilogue_apply)((real *)out, 4 * VL, NULL, 0, m, m * VL, e);
            }
            for (int lane = 0; lane < lanes; lane++, next_tile(t, &n, &ty, &tx)) {
                real *y = c->y + ((n * d->c_out + oc) * d->oh + ty * m) * d->ow + tx * m;
                const int rows = (int)AI3_MIN(m, d->oh - ty * m);
                const int cols = (int)AI3_MIN(m, d->ow - tx * m);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < m; j++) {
                        if (i >= rows || j >= cols) continue;
                        y[i * d->ow + j] = e ? out[i][j][lane] : out[i][j][lane] + bias;
                    }
            }
        }
    }
}

AI3_MULTIVERSION(output_tasks_2, void *, vctx, int64_t, begin, int64_t, end) {
    output_tasks(vctx, begin, end, 2);
}
AI3_MULTIVERSION(output_tasks_4, void *, vctx, int64_t, begin, int64_t, end) {
    output_tasks(vctx, begin, end, 4);
}

/* M[p] (group g) = U[p] · V[p] for tasks (point, group). */
static void gemm_tasks(run_ctx *c, int64_t begin, int64_t end, unsigned flags) {
    const winograd_state *st = c->st;
    const ai3_conv2d_dims *d = c->d;
    const int64_t chunk = c->t->chunk, ld = st->points * chunk;
    for (int64_t task = begin; task < end; task++) {
        const int64_t p = task / d->groups, g = task % d->groups;
        const ai3_gemm_operand a = ai3_gemm_packed(st->u + (size_t)task * st->packed);
        const ai3_gemm_operand b =
            ai3_gemm_strided(c->w->v + g * d->c_in_g * ld + p * chunk, ld, 1);
        real *out = c->w->mm + g * d->c_out_g * ld + p * chunk;
        if (AI3_TYPED(ai3_gemm)(st->cfg, d->c_out_g, c->nt, d->c_in_g, &a, &b, out, ld, NULL,
                                NULL, flags) != AI3_OK)
            atomic_store(&c->failed, 1);
    }
}

static void gemm_tasks_single(void *vctx, int64_t begin, int64_t end) {
    gemm_tasks(vctx, begin, end, AI3_GEMM_SINGLE_THREAD);
}

static ai3_status run(const ai3_conv2d_problem *pb, const ai3_conv2d_dims *d,
                      const ai3_tensor *input, ai3_tensor *output, void *workspace) {
    const winograd_state *st = pb->state;
    const ai3_conv2d_params *p = &pb->params;
    const tiling t = make_tiling(st, d);
    ai3_arena a = {workspace, 0};
    parts w;
    carve(st, d, &t, &a, &w);
    padding_table(t.hx, d->h, p->pad_top, d->hp, p->padding_mode, st->m, t.th, w.rows,
                  w.row_run);
    padding_table(t.wx, d->w, p->pad_left, d->wp, p->padding_mode, st->m, t.tw, w.cols,
                  w.col_run);

    run_ctx c = {.st = st, .d = d, .t = &t, .w = &w, .x = input->data,
                 .bias = pb->bias ? pb->bias->data : NULL, .y = output->data};
    atomic_init(&c.failed, 0);
    const int64_t threads = ai3_get_num_threads();
    const int64_t gemms = st->points * d->groups;
    for (c.t0 = 0; c.t0 < t.tiles; c.t0 += t.chunk) {
        c.nt = AI3_MIN(t.chunk, t.tiles - c.t0);
        c.sub = AI3_MIN(c.nt, 64);
        c.nsub = (c.nt + c.sub - 1) / c.sub;
        ai3_parallel_for(d->c_in * c.nsub, 1, st->m == 2 ? input_tasks_2 : input_tasks_4, &c);
        /* Many GEMMs: each on one thread, all at once. Few: one after the
         * other, each spread over the pool by the engine. */
        if (gemms >= 4 * threads)
            ai3_parallel_for(gemms, 1, gemm_tasks_single, &c);
        else
            gemm_tasks(&c, 0, gemms, 0);
        if (atomic_load(&c.failed))
            return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY,
                                 "conv2d 'winograd': the GEMM could not allocate its buffers");
        ai3_parallel_for(d->c_out * c.nsub, 1, st->m == 2 ? output_tasks_2 : output_tasks_4, &c);
    }
    return AI3_OK;
}

const ai3_conv2d_algorithm AI3_TYPED(ai3_conv2d_winograd) = {
    .supports = supports,
    .prepare = prepare,
    .release = release,
    .workspace_size = workspace_size,
    .run = run,
    .fuses_epilogue = true, /* in the output transform */
};
