/*
 * conv2d on channel-blocked activations (blocked.h) by Winograd's minimal
 * filtering F(m×m, 3×3), m = 2 or 4 (winograd_1d.h): 3×3 kernels, stride 1,
 * dilation 1, over all channels. The blocked layout suits it: a transform
 * works on a pixel's cb channels as one vector, with no transposes, and the
 * α² products of the transform domain (α = m + 2) are 1×1 convolutions on
 * blocked values, run by the direct blocked tiles:
 *
 *     Y = Aᵀ [ U ⊙ (Bᵀ d B) ] A,   U = G g Gᵀ   (per point: C_out × C_in)
 *
 * The input is first copied with its padding, to th·m + 2 rows × tw·m + 2
 * columns (th × tw tiles of m×m outputs), so that every patch is whole. A
 * task then takes a group of tiles (consecutive in (image, tile row, tile
 * column) order) and a range of output channel pairs: it transforms the
 * group's patches into V (per point, a blocked plane of the group's tiles),
 * runs the α² 1×1 convolutions into M, and transforms M back into the
 * output, adding the bias, residual and activation while the output vectors are
 * in registers. V and M are the task's thread's own (L2-sized).
 *
 * With few tiles (a late layer at batch 1) each group would read all of U
 * for a handful of tiles. Then the tiles are transformed once, into a V that
 * the threads share, and the tasks split only the output pairs: U is read
 * once, at the cost of a second parallel loop.
 */
#include "blocked.h"
#include "epilogue.h"

#include <stdatomic.h>
#include <string.h>

#include "winograd_1d.h" /* (its kernel transform; the vector part per ISA below) */

struct ai3_blocked_winograd {
    int m, points, cb;
    int64_t c_in, c_out, in_blocks, out_blocks;
    /* point p's U as a blocked 1×1 convolution (C_out × C_in) */
    ai3_blocked_conv2d *point[AI3_WINOGRAD_MAX_ALPHA * AI3_WINOGRAD_MAX_ALPHA];
    float *bias; /* Cp_out, zero where there is none */
};

/* A run: the padded input, the tiling and the split into tasks. */
typedef struct {
    const ai3_blocked_winograd *wg;
    const float *padded;
    float *y;
    const ai3_epilogue *e;
    int64_t oh, ow, th, tw, hq, wq; /* output; tiles; the padded input's extent */
    int64_t tiles, group;           /* tiles of the batch; tiles per task */
    int64_t pairs, pchunks;         /* output pairs, split into pchunks ranges */
    float *v;                       /* shared V (all tiles), or NULL */
    int64_t tchunks;                /* shared V: its transform's ranges of tiles */
    atomic_int failed;
} wg_run;

#if AI3_MV_ENABLED
#include <immintrin.h>
#define BK_ISA(name) name##_avx512
#define BK_TARGET __attribute__((target("arch=x86-64-v4")))
#define BK_LANES 16
#define BK_SET1(x) _mm512_set1_ps(x)
#include "conv2d_blocked_winograd_kernels.h"
#define BK_ISA(name) name##_avx2
#define BK_TARGET __attribute__((target("arch=x86-64-v3")))
#define BK_LANES 8
#define BK_SET1(x) _mm256_set1_ps(x)
#include "conv2d_blocked_winograd_kernels.h"
#endif

/* Measured in ResNet-50 and VGG16 (AVX-512, 2 threads, batch 1 and 8): each
 * task streams its output pairs' share of U, so U must stay in the shared
 * cache (12 MiB) to beat plain Winograd, and a small output needs enough
 * tiles for the transforms to pay (F(2×2) on 14×14 at batch 1, against the
 * direct tiles). F(4×4) from 32 tiles: on 56×56 and 28×28 planes at batch 1
 * 0.5-0.65 of the direct tiles' time, and 0.7 of plain Winograd's. */
#define WINOGRAD_U_BYTES ((int64_t)12 << 20)

int ai3_blocked_winograd_tile(int64_t c_in, int64_t c_out, int64_t n, int64_t oh, int64_t ow) {
    const int64_t u = c_in * c_out * (int64_t)sizeof(float); /* one point's U */
    if (n * ((oh + 3) / 4) * ((ow + 3) / 4) >= 32) return 36 * u <= WINOGRAD_U_BYTES ? 4 : 0;
    return n * ((oh + 1) / 2) * ((ow + 1) / 2) >= 49 && 16 * u <= WINOGRAD_U_BYTES ? 2 : 0;
}

void ai3_blocked_winograd_destroy(ai3_blocked_winograd *wg) {
    if (!wg) return;
    for (int p = 0; p < wg->points; p++) ai3_blocked_conv2d_destroy(wg->point[p]);
    ai3_free(wg->bias);
    ai3_free(wg);
}

typedef struct {
    const float *w;
    float *u; /* [point][oc][ic] */
    int m, points;
    int64_t c_out, c_in;
} kernel_ctx;

static void transform_kernels(void *vctx, int64_t begin, int64_t end) {
    const kernel_ctx *c = vctx;
    for (int64_t oc = begin; oc < end; oc++)
        for (int64_t ic = 0; ic < c->c_in; ic++) {
            double g[9], u[AI3_WINOGRAD_MAX_ALPHA * AI3_WINOGRAD_MAX_ALPHA];
            for (int i = 0; i < 9; i++) g[i] = c->w[(oc * c->c_in + ic) * 9 + i];
            ai3_winograd_kernel(c->m, g, u);
            for (int p = 0; p < c->points; p++)
                c->u[(p * c->c_out + oc) * c->c_in + ic] = (float)u[p];
        }
}

ai3_status ai3_blocked_winograd_create(const ai3_tensor *weight, const ai3_tensor *bias, int m,
                                       int cb, ai3_blocked_winograd **out) {
    *out = NULL;
    const int64_t c_out = weight->shape[0], c_in = weight->shape[1];
    ai3_blocked_winograd *wg = ai3_alloc(sizeof *wg);
    if (!wg) return AI3_ERROR_OUT_OF_MEMORY;
    *wg = (ai3_blocked_winograd){.m = m, .points = (m + 2) * (m + 2), .cb = cb, .c_in = c_in,
                                 .c_out = c_out,
                                 .in_blocks = ai3_blocked_channels(c_in, cb) / cb,
                                 .out_blocks = ai3_blocked_channels(c_out, cb) / cb};
    const size_t bias_bytes = (size_t)(wg->out_blocks * cb) * sizeof(float);
    const int64_t u_elems = ai3_size_mul(wg->points, ai3_size_mul(c_out, c_in));
    float *u = u_elems < 0 ? NULL : ai3_alloc((size_t)u_elems * sizeof(float));
    wg->bias = ai3_alloc(bias_bytes);
    ai3_status st = u && wg->bias ? AI3_OK : AI3_ERROR_OUT_OF_MEMORY;
    if (st == AI3_OK) {
        memset(wg->bias, 0, bias_bytes);
        if (bias) memcpy(wg->bias, bias->data, (size_t)c_out * sizeof(float));
        kernel_ctx kc = {weight->data, u, m, wg->points, c_out, c_in};
        ai3_parallel_for(c_out, 1, transform_kernels, &kc);
    }
    ai3_tensor up = {.dtype = AI3_FLOAT32, .device = AI3_DEVICE_CPU, .ndim = 4,
                     .shape = {c_out, c_in, 1, 1}};
    const ai3_conv2d_params one = ai3_conv2d_params_default();
    for (int p = 0; st == AI3_OK && p < wg->points; p++) {
        up.data = u + p * c_out * c_in;
        st = ai3_blocked_conv2d_create(&up, NULL, &one, cb, &wg->point[p]);
    }
    ai3_free(u);
    if (st != AI3_OK) {
        ai3_blocked_winograd_destroy(wg);
        return st;
    }
    *out = wg;
    return AI3_OK;
}

/* Tiles per task: a multiple of the products' widest tile, with V and M
 * within TASK_BYTES (in L2), and TASKS_PER_THREAD tasks per thread where
 * there are tiles enough (else the output pairs are split too). Larger
 * groups, which read U fewer times, were slower at batch 1 in ResNet-50. */
#define TASKS_PER_THREAD 4
#define TASK_BYTES (1 << 20)

ai3_status ai3_blocked_winograd_run(const ai3_blocked_winograd *wg, const ai3_conv2d_params *p,
                                    const float *x, int64_t n, int64_t h, int64_t w, float *y,
                                    const ai3_epilogue *e) {
    const int m = wg->m, cb = wg->cb;
    wg_run r = {.wg = wg, .y = y, .e = e};
    r.oh = h + p->pad_top + p->pad_bottom - 2;
    r.ow = w + p->pad_left + p->pad_right - 2;
    r.th = (r.oh + m - 1) / m;
    r.tw = (r.ow + m - 1) / m;
    r.hq = r.th * m + 2;
    r.wq = r.tw * m + 2;
    r.tiles = n * r.th * r.tw;
    const int64_t planes = n * wg->in_blocks;
    const int64_t elems = ai3_size_mul(ai3_size_mul(planes, r.hq), r.wq * cb);
    if (elems < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "blocked conv2d: input too large");

    const int64_t mr = ai3_blocked_conv2d_tile_pixels(wg->point[0]);
    const int64_t want = TASKS_PER_THREAD * ai3_get_num_threads();
    const int64_t tile_bytes =
        wg->points * (wg->in_blocks + wg->out_blocks) * cb * (int64_t)sizeof(float);
    const int64_t fit = AI3_MAX(mr, TASK_BYTES / tile_bytes / mr * mr);
    const int64_t spread = (r.tiles + want - 1) / want;
    r.group = AI3_MIN(fit, AI3_MAX(mr, (spread + mr - 1) / mr * mr));
    const int64_t groups = (r.tiles + r.group - 1) / r.group;
    r.pairs = (wg->out_blocks + 1) / 2;
    /* V shared when there are several groups and all the tiles' V fits in
     * L2 (in ResNet-50 at batch 1, 14×14 and 28×28 layers 7-9% faster). */
    const int64_t v_all = wg->points * wg->in_blocks * r.tiles * cb;
    const bool shared = groups > 1 && v_all * (int64_t)sizeof(float) <= TASK_BYTES;
    const int64_t v_at = (elems + 15) / 16 * 16; /* (64-byte aligned) */
    float *padded = ai3_thread_buffer(AI3_BUFFER_BLOCKED_CONV,
                                      (size_t)(shared ? v_at + v_all : elems) * sizeof(float));
    if (!padded) return AI3_ERROR_OUT_OF_MEMORY;
    ai3_blocked_pad(x, planes, h, w, cb, p->pad_top, p->pad_left, r.hq, r.wq, padded);
    r.padded = padded;
    atomic_init(&r.failed, 0);
#if AI3_MV_ENABLED
    if (shared) {
        r.v = padded + v_at;
        r.tchunks = AI3_MIN(r.tiles, AI3_MAX(1, want / wg->in_blocks));
        r.pchunks = AI3_MIN(r.pairs, want);
        ai3_parallel_for(wg->in_blocks * r.tchunks, 1,
                         cb == 16 ? shared_input_tasks_avx512 : shared_input_tasks_avx2, &r);
        ai3_parallel_for(r.pchunks, 1,
                         cb == 16 ? shared_product_tasks_avx512 : shared_product_tasks_avx2, &r);
    } else {
        r.pchunks = AI3_MIN(r.pairs, AI3_MAX(1, want / groups));
        ai3_parallel_for(groups * r.pchunks, 1, cb == 16 ? tasks_avx512 : tasks_avx2, &r);
    }
#endif
    if (atomic_load(&r.failed))
        return ai3_set_error(AI3_ERROR_OUT_OF_MEMORY, "blocked conv2d: no Winograd buffers");
    return AI3_OK;
}
