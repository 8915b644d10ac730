/*
 * Winograd's F(m×m, 3×3) transforms, m = 2 or 4, shared by the plain
 * (conv2d_winograd.c) and the channel-blocked (conv2d_blocked_winograd_f32.c)
 * implementations. G (α×3, α = m + 2) transforms a kernel, once, in double;
 * Bᵀ (inputs) and Aᵀ (outputs) are written out as sums, since most of their
 * entries are 0 or ±1. F(4×4) uses the interpolation points 0, ±1, ±2, ∞.
 *
 * A template: each includer defines
 *     WT_VEC      a GCC vector type (the transforms work lane by lane)
 *     WT_ELEM     its element type
 *     WT_NAME(f)  the names of its functions (input_1d, output_1d)
 *     WT_ATTR     their attributes (a target, inlining)
 * and includes this once per vector type.
 */
#ifndef AI3_WINOGRAD_G
#define AI3_WINOGRAD_G
#define AI3_WINOGRAD_MAX_ALPHA 6
static const double ai3_winograd_g2[4][3] = {
    {1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double ai3_winograd_g4[6][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};

/* U = G g Gᵀ (α×α, row-major into u, stride 1) of a 3×3 kernel g. */
static inline void ai3_winograd_kernel(int m, const double g[9], double *u) {
    const double(*G)[3] = m == 2 ? ai3_winograd_g2 : ai3_winograd_g4;
    const int alpha = m + 2;
    double gg[AI3_WINOGRAD_MAX_ALPHA][3]; /* G g */
    for (int i = 0; i < alpha; i++)
        for (int j = 0; j < 3; j++)
            gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
    for (int i = 0; i < alpha; i++)
        for (int j = 0; j < alpha; j++)
            u[i * alpha + j] = gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
}
#endif

#ifdef WT_VEC
/* w = Bᵀ d for α values d[0], d[s], ... (stride s), w likewise. */
WT_ATTR void WT_NAME(input_1d)(int m, const WT_VEC *d, int s, WT_VEC *w, int ws) {
    if (m == 2) {
        const WT_VEC d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s];
        w[0] = d0 - d2;
        w[ws] = d1 + d2;
        w[2 * ws] = d2 - d1;
        w[3 * ws] = d1 - d3;
    } else {
        const WT_VEC d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s],
                     d5 = d[5 * s];
        const WT_ELEM two = 2, four = 4, five = 5;
        w[0] = four * d0 - five * d2 + d4;
        w[ws] = (d3 + d4) - four * (d1 + d2);
        w[2 * ws] = (d4 - d3) + four * (d1 - d2);
        w[3 * ws] = (d4 - d2) + two * (d3 - d1);
        w[4 * ws] = (d4 - d2) - two * (d3 - d1);
        w[5 * ws] = four * d1 - five * d3 + d5;
    }
}

/* y = Aᵀ v for α values v (stride s) into m values y (stride ys). */
WT_ATTR void WT_NAME(output_1d)(int m, const WT_VEC *v, int s, WT_VEC *y, int ys) {
    if (m == 2) {
        const WT_VEC v0 = v[0], v1 = v[s], v2 = v[2 * s], v3 = v[3 * s];
        y[0] = v0 + v1 + v2;
        y[ys] = v1 - v2 - v3;
    } else {
        const WT_VEC v0 = v[0], v1 = v[s], v2 = v[2 * s], v3 = v[3 * s], v4 = v[4 * s],
                     v5 = v[5 * s];
        const WT_VEC a = v1 + v2, b = v1 - v2, c = v3 + v4, e = v3 - v4;
        const WT_ELEM two = 2, four = 4, eight = 8;
        y[0] = v0 + a + c;
        y[ys] = b + two * e;
        y[2 * ys] = a + four * c;
        y[3 * ys] = b + eight * e + v5;
    }
}

#endif

#undef WT_VEC
#undef WT_ELEM
#undef WT_NAME
#undef WT_ATTR
