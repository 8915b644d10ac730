/* add, direct: a + b with broadcasting (see binary_broadcast.h). */
#define AI3_BINARY_OP(x, y) ((x) + (y))
#define AI3_BINARY_NAME(name) add_##name
#include "binary_broadcast.h"

ai3_status AI3_TYPED(ai3_add_direct)(const ai3_tensor *a, const ai3_tensor *b,
                                     ai3_tensor *output) {
    return add_broadcast(a, b, output);
}
