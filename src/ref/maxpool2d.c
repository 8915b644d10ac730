/* Reference maxpool2d: every output scans its (dilated) window; taps in the
 * padding are skipped (they count as -inf) and a NaN wins, as in torch. */
#include <math.h>

#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_maxpool2d)(const ai3_tensor *input, const ai3_pool2d_params *p,
                                        ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    int64_t planes = input->shape[0] * input->shape[1];
    int64_t h = input->shape[2], w = input->shape[3];
    int64_t oh = output->shape[2], ow = output->shape[3];
    for (int64_t pl = 0; pl < planes; pl++) {
        for (int64_t i = 0; i < oh; i++) {
            for (int64_t j = 0; j < ow; j++) {
                double m = -INFINITY;
                for (int64_t ki = 0; ki < p->kernel_h; ki++) {
                    for (int64_t kj = 0; kj < p->kernel_w; kj++) {
                        int64_t r = i * p->stride_h - p->pad_h + ki * p->dilation_h;
                        int64_t s = j * p->stride_w - p->pad_w + kj * p->dilation_w;
                        if (r < 0 || r >= h || s < 0 || s >= w) continue;
                        double v = x[(pl * h + r) * w + s];
                        if (v > m || isnan(v)) m = v;
                    }
                }
                y[(pl * oh + i) * ow + j] = (real)m;
            }
        }
    }
    return AI3_OK;
}
