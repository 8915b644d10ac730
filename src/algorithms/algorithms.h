/*
 * The built-in algorithms, one source file each (algorithms/<op>_<name>.c),
 * and the slow reference implementations the tests compare them with
 * (ref/<op>.c). Each is compiled for float (_f32) and double (_f64).
 * conv2d algorithms are planned: their interface is algorithms/conv2d.h.
 * To add an algorithm: write its file and add one line to the table in
 * runtime/registry.c.
 */
#ifndef AI3_ALGORITHMS_H
#define AI3_ALGORITHMS_H

#include "ai3.h"

#define AI3_DECLARE_CONV2D(name)                                                         \
    ai3_status name##_f32(const ai3_tensor *, const ai3_tensor *, const ai3_tensor *,    \
                          const ai3_conv2d_params *, ai3_tensor *);                      \
    ai3_status name##_f64(const ai3_tensor *, const ai3_tensor *, const ai3_tensor *,    \
                          const ai3_conv2d_params *, ai3_tensor *);
#define AI3_DECLARE_LINEAR(name)                                                         \
    ai3_status name##_f32(const ai3_tensor *, const ai3_tensor *, const ai3_tensor *,    \
                          ai3_tensor *);                                                 \
    ai3_status name##_f64(const ai3_tensor *, const ai3_tensor *, const ai3_tensor *,    \
                          ai3_tensor *);
#define AI3_DECLARE_POOL2D(name)                                                         \
    ai3_status name##_f32(const ai3_tensor *, const ai3_pool2d_params *, ai3_tensor *);  \
    ai3_status name##_f64(const ai3_tensor *, const ai3_pool2d_params *, ai3_tensor *);
#define AI3_DECLARE_UNARY(name)                                                          \
    ai3_status name##_f32(const ai3_tensor *, ai3_tensor *);                             \
    ai3_status name##_f64(const ai3_tensor *, ai3_tensor *);

/* algorithms/ (conv2d's are in algorithms/conv2d.h) */
AI3_DECLARE_LINEAR(ai3_linear_gemm)
AI3_DECLARE_POOL2D(ai3_maxpool2d_direct)
AI3_DECLARE_POOL2D(ai3_avgpool2d_direct)
AI3_DECLARE_UNARY(ai3_adaptiveavgpool2d_direct)
AI3_DECLARE_UNARY(ai3_relu_direct)
AI3_DECLARE_UNARY(ai3_flatten_direct)

/* ref/ */
AI3_DECLARE_CONV2D(ai3_ref_conv2d)
AI3_DECLARE_LINEAR(ai3_ref_linear)
AI3_DECLARE_POOL2D(ai3_ref_maxpool2d)
AI3_DECLARE_POOL2D(ai3_ref_avgpool2d)
AI3_DECLARE_UNARY(ai3_ref_adaptiveavgpool2d)
AI3_DECLARE_UNARY(ai3_ref_relu)
AI3_DECLARE_UNARY(ai3_ref_flatten)

#endif
