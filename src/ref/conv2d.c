/*
 * Reference conv2d: the definition as a plain loop nest, accumulating in
 * double. Padding is resolved per element with ai3_pad_source_index (not the
 * padded copy the fast algorithms build), so the tests check that path too.
 */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_conv2d)(const ai3_tensor *input, const ai3_tensor *weight,
                                     const ai3_tensor *bias, const ai3_conv2d_params *p,
                                     ai3_tensor *output) {
    ai3_conv2d_dims d;
    ai3_conv2d_get_dims(input, weight, p, &d);
    const real *x = input->data;
    const real *w = weight->data;
    const real *b = bias ? bias->data : NULL;
    real *y = output->data;

    for (int64_t n = 0; n < d.n; n++) {
        for (int64_t oc = 0; oc < d.c_out; oc++) {
            const int64_t g = oc / d.c_out_g;
            for (int64_t oy = 0; oy < d.oh; oy++) {
                for (int64_t ox = 0; ox < d.ow; ox++) {
                    double acc = b ? (double)b[oc] : 0.0;
                    for (int64_t icg = 0; icg < d.c_in_g; icg++) {
                        const int64_t ic = g * d.c_in_g + icg;
                        for (int64_t ky = 0; ky < d.kh; ky++) {
                            const int64_t sy = ai3_pad_source_index(
                                oy * p->stride_h + ky * p->dilation_h, d.h, p->pad_top,
                                p->padding_mode);
                            if (sy < 0) continue;
                            for (int64_t kx = 0; kx < d.kw; kx++) {
                                const int64_t sx = ai3_pad_source_index(
                                    ox * p->stride_w + kx * p->dilation_w, d.w, p->pad_left,
                                    p->padding_mode);
                                if (sx < 0) continue;
                                acc += (double)x[((n * d.c_in + ic) * d.h + sy) * d.w + sx] *
                                       (double)w[((oc * d.c_in_g + icg) * d.kh + ky) * d.kw + kx];
                            }
                        }
                    }
                    y[((n * d.c_out + oc) * d.oh + oy) * d.ow + ox] = (real)acc;
                }
            }
        }
    }
    return AI3_OK;
}
