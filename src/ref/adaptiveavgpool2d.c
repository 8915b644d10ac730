/* Reference adaptiveavgpool2d: bin i of n over a length-`size` axis is
 * [floor(i·size/n), ceil((i+1)·size/n)); sums in double. */
#include <math.h>

#include "ref/ref.h"
#include "internal.h"
#include "real.h"

ai3_status AI3_TYPED(ai3_ref_adaptiveavgpool2d)(const ai3_tensor *input, ai3_tensor *output) {
    const real *x = input->data;
    real *y = output->data;
    int64_t planes = input->shape[0] * input->shape[1];
    int64_t h = input->shape[2], w = input->shape[3];
    int64_t oh = output->shape[2], ow = output->shape[3];
    for (int64_t pl = 0; pl < planes; pl++) {
        for (int64_t i = 0; i < oh; i++) {
            int64_t r0 = (int64_t)floor((double)(i * h) / (double)oh);
            int64_t r1 = (int64_t)ceil((double)((i + 1) * h) / (double)oh);
            for (int64_t j = 0; j < ow; j++) {
                int64_t s0 = (int64_t)floor((double)(j * w) / (double)ow);
                int64_t s1 = (int64_t)ceil((double)((j + 1) * w) / (double)ow);
                double sum = 0;
                for (int64_t r = r0; r < r1; r++)
                    for (int64_t s = s0; s < s1; s++) sum += x[(pl * h + r) * w + s];
                y[(pl * oh + i) * ow + j] = (real)(sum / (double)((r1 - r0) * (s1 - s0)));
            }
        }
    }
    return AI3_OK;
}
