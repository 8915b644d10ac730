/*
 * conv2d "direct", depthwise layers: copying a plane in, the output tiles
 * and the loop over planes, written over GCC vectors of one ISA's width.
 * conv2d_direct.c includes this file once per ISA (a vector type wider than
 * the ISA's registers would live on the stack, so one body compiled for
 * every ISA, as AI3_MULTIVERSION does, cannot pick the width). Define
 * before including:
 *
 *   DW_ISA(name)      name with the ISA's suffix
 *   DW_TARGET         the function attributes of the ISA (may be empty)
 *   DW_LANES          elements of its vectors: 2, 4, 8 or 16
 *   DW_NARROW_LANES   elements of the vectors narrow rows take (<= DW_LANES)
 *
 * The file undefines them.
 */

typedef real DW_ISA(vec)
    __attribute__((vector_size(DW_LANES * sizeof(real)), aligned(sizeof(real)), may_alias));
typedef depthwise_lane DW_ISA(mask) __attribute__((vector_size(DW_LANES * sizeof(real))));
typedef real DW_ISA(narrow_vec) __attribute__((vector_size(DW_NARROW_LANES * sizeof(real)),
                                               aligned(sizeof(real)), may_alias));
typedef depthwise_lane DW_ISA(narrow_mask)
    __attribute__((vector_size(DW_NARROW_LANES * sizeof(real))));

#define DW_CAT(a, b) DW_CAT_(a, b)
#define DW_CAT_(a, b) a##b
#if defined(__clang__)
#define DW_SHUFFLE(MT, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define DW_SHUFFLE(MT, a, b, ...) __builtin_shuffle(a, b, (MT){__VA_ARGS__})
#endif

/* Copies input row xr into its phase rows (dst0: where column phase 0's
 * part starts, count0 elements; dst1: column phase 1's, count1) in n
 * vectors of type VT (MT: its lanes; LANES: how many), then stores a
 * vector of zeros after each part, over what the last vector wrote past
 * it. Stride 1 across: one part (dst1 unused). */
#define DW_COPY_ROW(VT, MT, LANES, sw, xr, n, dst0, count0, dst1, count1)                      \
    do {                                                                                        \
        for (int64_t k = 0; k < (n); k++) {                                                     \
            if ((sw) == 1) {                                                                    \
                *(VT *)((dst0) + k * (LANES)) = *(const VT *)((xr) + k * (LANES));              \
            } else {                                                                            \
                const VT a = *(const VT *)((xr) + 2 * k * (LANES));                             \
                const VT b = *(const VT *)((xr) + (2 * k + 1) * (LANES));                       \
                *(VT *)((dst0) + k * (LANES)) = DW_SHUFFLE(MT, a, b, DW_CAT(DW_EVEN_, LANES));  \
                *(VT *)((dst1) + k * (LANES)) = DW_SHUFFLE(MT, a, b, DW_CAT(DW_ODD_, LANES));   \
            }                                                                                   \
        }                                                                                       \
        *(VT *)((dst0) + (count0)) = (VT){0};                                                   \
        if ((sw) == 2) *(VT *)((dst1) + (count1)) = (VT){0};                                    \
    } while (0)

/* Copies the plane x (h × w) into the interior of the phases (whose
 * borders are zero). Strides 1 and 2 across go a row at a time in whole
 * vectors (DW_COPY_ROW; the row's phase rows are wide enough for the
 * vector of zeros), except rows whose vectors would read past the plane. */
static inline __attribute__((always_inline)) DW_TARGET void
DW_ISA(depthwise_fill)(const depthwise_ctx *c, const real *x, real *phases) {
    const ai3_conv2d_params *p = c->p;
    const int64_t sh = p->stride_h, sw = p->stride_w, pad = p->pad_left;
    const int64_t h = c->d->h, w = c->d->w;
    /* stride 2: the even input columns (count0 of them) go to column phase
     * pad % 2 from column pad / 2 (part0), the odd ones (count1) to the other
     * phase from column (pad + 1) / 2 (part1); stride 1: the row to column
     * pad */
    const int64_t count0 = (w + 1) / 2, count1 = w / 2;
    const int64_t count = sw == 1 ? w : count0;
    real *const part0 = phases + (sw == 1 ? pad : pad % 2 * c->phase_elems + pad / 2);
    real *const part1 =
        sw == 1 ? part0 : phases + (1 + pad) % 2 * c->phase_elems + (1 + pad) / 2;
    const bool narrow = count <= DW_NARROW_LANES;
    const int64_t lanes = narrow ? DW_NARROW_LANES : DW_LANES;
    const int64_t n = (count + lanes - 1) / lanes;
    const int64_t reach = sw * n * lanes; /* input elements a row's vectors read */
    for (int64_t iy = 0; iy < h; iy++) {
        const int64_t py = iy + p->pad_top;
        const int64_t row = (py % sh) * sw * c->phase_elems + py / sh * c->wq;
        const real *xr = x + iy * w;
        if (sw > 2 || iy * w + reach > h * w)
            depthwise_fill_row(c, xr, phases + row);
        else if (narrow)
            DW_COPY_ROW(DW_ISA(narrow_vec), DW_ISA(narrow_mask), DW_NARROW_LANES, sw, xr, n,
                        part0 + row, count, part1 + row, count1);
        else
            DW_COPY_ROW(DW_ISA(vec), DW_ISA(mask), DW_LANES, sw, xr, n, part0 + row, count,
                        part1 + row, count1);
    }
}

/* A tile (NAME): for R rows r and NV vectors of type VT (MT: its comparison
 * lanes) making TW columns i,
 *   y[r·ow + i] = epilogue(bias + Σ_t wk[t] · src[off[t] + r·wq + i]),
 * row r stored only up to `avail - r·ow` elements (where stores stop). The
 * epilogue is applied here, where each output is final, and nowhere else on
 * this path: a clamp (NaN kept) in registers; another to the row's own
 * columns once stored (not to what runs on into the next row, which gets its
 * own). */
#define DW_TILE(NAME, VT, MT, NV, R)                                                            \
    static inline __attribute__((always_inline)) DW_TARGET void NAME(                           \
        const depthwise_ctx *c, const real *restrict src, const real *restrict wk, real bias,  \
        real *restrict y, int64_t avail) {                                                      \
        enum { L = sizeof(VT) / sizeof(real), TW = NV * L };                                    \
        const int64_t wq = c->wq, ow = c->d->ow;                                                \
        VT acc[R][NV];                                                                          \
        for (int r = 0; r < R; r++)                                                             \
            for (int j = 0; j < NV; j++) acc[r][j] = (VT){0} + bias;                            \
        for (int64_t t = 0; t < c->taps; t++) {                                                 \
            const real wv = wk[t];                                                              \
            const real *restrict s = src + c->off[t];                                           \
            for (int r = 0; r < R; r++)                                                         \
                for (int j = 0; j < NV; j++) acc[r][j] += wv * *(const VT *)(s + r * wq + j * L); \
        }                                                                                       \
        for (int r = 0; r < R; r++) {                                                           \
            VT out[NV];                                                                         \
            for (int j = 0; j < NV; j++) {                                                      \
                VT v = acc[r][j];                                                               \
                if (c->clamp) {                                                                 \
                    const VT lo = (VT){0} + c->lo, hi = (VT){0} + c->hi;                        \
                    const MT below = v < lo;                                                    \
                    v = (VT)(((MT)lo & below) | ((MT)v & ~below));                              \
                    const MT above = v > hi;                                                    \
                    v = (VT)(((MT)hi & above) | ((MT)v & ~above));                              \
                }                                                                               \
                out[j] = v;                                                                     \
            }                                                                                   \
            real *restrict yr = y + r * ow;                                                     \
            const int64_t n = avail - r * ow;                                                   \
            if (n >= TW)                                                                        \
                for (int j = 0; j < NV; j++) *(VT *)(yr + j * L) = out[j];                      \
            else                                                                                \
                memcpy(yr, out, (size_t)n * sizeof(real));                                      \
            if (c->epilogue)                                                                    \
                AI3_TYPED(ai3_epilogue_apply)(                                                  \
                    yr, 0, ai3_epilogue_residual(c->epilogue, yr - c->y), 0, 1,                 \
                    AI3_MIN(AI3_MIN(n, (int64_t)TW), ow), c->epilogue);                         \
        }                                                                                       \
    }

/* One output plane y from the phases with the tiles ROWS (DW_ROWS rows) and
 * ROW (one row), TW columns wide; stores stop `room` elements after y. */
#define DW_PLANE(NAME, ROWS, ROW, TW)                                                           \
    static inline __attribute__((always_inline)) DW_TARGET void NAME(                           \
        const depthwise_ctx *c, const real *phases, const real *wk, real bias, real *y,         \
        int64_t room) {                                                                         \
        const int64_t oh = c->d->oh, ow = c->d->ow, wq = c->wq;                                 \
        const int64_t rows = oh >= DW_ROWS ? DW_ROWS : 1;                                       \
        for (int64_t oy0 = 0; oy0 < oh; oy0 += rows) {                                          \
            const int64_t oy = AI3_MIN(oy0, oh - rows);                                         \
            for (int64_t x0 = 0;; x0 += (TW)) {                                                 \
                const int64_t ox = ow >= (TW) ? AI3_MIN(x0, ow - (TW)) : 0;                     \
                const real *src = phases + oy * wq + ox;                                        \
                const int64_t at = oy * ow + ox;                                                \
                if (rows == DW_ROWS) ROWS(c, src, wk, bias, y + at, room - at);                 \
                else ROW(c, src, wk, bias, y + at, room - at);                                  \
                if (x0 + (TW) >= ow) break;                                                     \
            }                                                                                   \
        }                                                                                       \
    }

#define DW_NARROW_W ((int64_t)DW_NARROW_LANES)
#define DW_W ((int64_t)DW_LANES)

DW_TILE(DW_ISA(tile_narrow_rows), DW_ISA(narrow_vec), DW_ISA(narrow_mask), 1, DW_ROWS)
DW_TILE(DW_ISA(tile_narrow_row), DW_ISA(narrow_vec), DW_ISA(narrow_mask), 1, 1)
DW_TILE(DW_ISA(tile_one_rows), DW_ISA(vec), DW_ISA(mask), 1, DW_ROWS)
DW_TILE(DW_ISA(tile_one_row), DW_ISA(vec), DW_ISA(mask), 1, 1)
DW_TILE(DW_ISA(tile_two_rows), DW_ISA(vec), DW_ISA(mask), 2, DW_ROWS)
DW_TILE(DW_ISA(tile_two_row), DW_ISA(vec), DW_ISA(mask), 2, 1)
DW_PLANE(DW_ISA(plane_narrow), DW_ISA(tile_narrow_rows), DW_ISA(tile_narrow_row), DW_NARROW_W)
DW_PLANE(DW_ISA(plane_one), DW_ISA(tile_one_rows), DW_ISA(tile_one_row), DW_W)
DW_PLANE(DW_ISA(plane_two), DW_ISA(tile_two_rows), DW_ISA(tile_two_row), 2 * DW_W)

/* Output planes [begin, end) (plane = image · c_out + channel), with buf as
 * the phases (borders zeroed). The channels of one input plane are
 * neighbours: it is copied once for them. Rows take the narrowest tile at
 * least as wide, or the widest. A narrow row's tile may run on into the
 * next plane, which is computed later: only the last plane stops at its
 * end. */
static __attribute__((noinline)) DW_TARGET void
DW_ISA(depthwise_planes)(const depthwise_ctx *c, int64_t begin, int64_t end, real *buf) {
    const ai3_conv2d_dims *d = c->d;
    int64_t filled = -1;
    for (int64_t plane = begin; plane < end; plane++) {
        const int64_t oc = plane % d->c_out;
        const int64_t in_plane = plane / d->c_out * d->c_in + oc / d->c_out_g;
        if (in_plane != filled) {
            DW_ISA(depthwise_fill)(c, c->x + in_plane * d->h * d->w, buf);
            filled = in_plane;
        }
        const real *wk = c->w + oc * c->taps;
        const real bias = c->b ? c->b[oc] : 0;
        real *y = c->y + plane * d->oh * d->ow;
        const int64_t room = (end - plane) * d->oh * d->ow;
        if (d->ow <= DW_NARROW_W) DW_ISA(plane_narrow)(c, buf, wk, bias, y, room);
        else if (d->ow <= DW_W) DW_ISA(plane_one)(c, buf, wk, bias, y, room);
        else DW_ISA(plane_two)(c, buf, wk, bias, y, room);
    }
}

#undef DW_CAT
#undef DW_CAT_
#undef DW_SHUFFLE
#undef DW_COPY_ROW
#undef DW_TILE
#undef DW_PLANE
#undef DW_NARROW_W
#undef DW_W
#undef DW_ISA
#undef DW_TARGET
#undef DW_LANES
#undef DW_NARROW_LANES
