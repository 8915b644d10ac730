/* mul, direct: a · b with broadcasting (see binary_broadcast.h). */
#define AI3_BINARY_OP(x, y) ((x) * (y))
#define AI3_BINARY_NAME(name) mul_##name
#include "binary_broadcast.h"

ai3_status AI3_TYPED(ai3_mul_direct)(const ai3_tensor *a, const ai3_tensor *b,
                                     ai3_tensor *output) {
    return mul_broadcast(a, b, output);
}
