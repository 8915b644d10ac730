/* Reference avgpool2d, following torch's definition literally: the window is
 * first clipped to the padded input (its size is the divisor with
 * count_include_pad), then to the input (the elements summed, and the
 * divisor without count_include_pad); divisor_override replaces both. */
#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_avgpool2d)(const ai3_tensor *input, const ai3_pool2d_params *p,
                                        ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    int64_t planes = input->shape[0] * input->shape[1];
    int64_t h = input->shape[2], w = input->shape[3];
    int64_t oh = output->shape[2], ow = output->shape[3];
    for (int64_t pl = 0; pl < planes; pl++) {
        for (int64_t i = 0; i < oh; i++) {
            for (int64_t j = 0; j < ow; j++) {
                int64_t r0 = i * p->stride_h - p->pad_h, s0 = j * p->stride_w - p->pad_w;
                int64_t r1 = AI3_MIN(r0 + p->kernel_h, h + p->pad_h);
                int64_t s1 = AI3_MIN(s0 + p->kernel_w, w + p->pad_w);
                int64_t padded_size = (r1 - r0) * (s1 - s0);
                r0 = AI3_MAX(r0, 0);
                s0 = AI3_MAX(s0, 0);
                r1 = AI3_MIN(r1, h);
                s1 = AI3_MIN(s1, w);
                double sum = 0;
                for (int64_t r = r0; r < r1; r++)
                    for (int64_t s = s0; s < s1; s++) sum += x[(pl * h + r) * w + s];
                int64_t divisor = p->divisor_override  ? p->divisor_override
                                  : p->count_include_pad ? padded_size
                                                         : (r1 - r0) * (s1 - s0);
                y[(pl * oh + i) * ow + j] = (real)(sum / (double)divisor);
            }
        }
    }
    return AI3_OK;
}
