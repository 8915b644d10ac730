/*
 * The built-in algorithms, one source file each (algorithms/<op>_<name>.c),
 * and the slow reference implementations the tests compare them with
 * (ref/<op>.c). Each is compiled for float (_f32) and double (_f64).
 * conv2d and linear algorithms are planned: their interfaces are
 * algorithms/conv2d.h and algorithms/linear.h.
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
#define AI3_DECLARE_BATCHNORM2D(name)                                                    \
    ai3_status name##_f32(const ai3_tensor *, const ai3_tensor *, const ai3_tensor *,    \
                          const ai3_tensor *, const ai3_tensor *, double, ai3_tensor *); \
    ai3_status name##_f64(const ai3_tensor *, const ai3_tensor *, const ai3_tensor *,    \
                          const ai3_tensor *, const ai3_tensor *, double, ai3_tensor *);
#define AI3_DECLARE_BINARY(name)                                                         \
    ai3_status name##_f32(const ai3_tensor *, const ai3_tensor *, ai3_tensor *);         \
    ai3_status name##_f64(const ai3_tensor *, const ai3_tensor *, ai3_tensor *);
#define AI3_DECLARE_CAT(name)                                                            \
    ai3_status name##_f32(const ai3_tensor *const *, int, int, ai3_tensor *);            \
    ai3_status name##_f64(const ai3_tensor *const *, int, int, ai3_tensor *);
#define AI3_DECLARE_HARDTANH(name)                                                       \
    ai3_status name##_f32(const ai3_tensor *, double, double, ai3_tensor *);             \
    ai3_status name##_f64(const ai3_tensor *, double, double, ai3_tensor *);
#define AI3_DECLARE_GELU(name)                                                           \
    ai3_status name##_f32(const ai3_tensor *, int, ai3_tensor *);                        \
    ai3_status name##_f64(const ai3_tensor *, int, ai3_tensor *);
#define AI3_DECLARE_MEAN(name)                                                           \
    ai3_status name##_f32(const ai3_tensor *, const int *, int, ai3_tensor *);           \
    ai3_status name##_f64(const ai3_tensor *, const int *, int, ai3_tensor *);
#define AI3_DECLARE_PERMUTE(name)                                                        \
    ai3_status name##_f32(const ai3_tensor *, const int *, ai3_tensor *);                \
    ai3_status name##_f64(const ai3_tensor *, const int *, ai3_tensor *);
#define AI3_DECLARE_LAYERNORM(name)                                                      \
    ai3_status name##_f32(const ai3_tensor *, int, const ai3_tensor *, const ai3_tensor *, \
                          double, ai3_tensor *);                                         \
    ai3_status name##_f64(const ai3_tensor *, int, const ai3_tensor *, const ai3_tensor *, \
                          double, ai3_tensor *);
#define AI3_DECLARE_SOFTMAX(name)                                                        \
    ai3_status name##_f32(const ai3_tensor *, int, ai3_tensor *);                        \
    ai3_status name##_f64(const ai3_tensor *, int, ai3_tensor *);

/* algorithms/ (conv2d's are in algorithms/conv2d.h) */
AI3_DECLARE_POOL2D(ai3_maxpool2d_direct)
AI3_DECLARE_POOL2D(ai3_avgpool2d_direct)
AI3_DECLARE_UNARY(ai3_adaptiveavgpool2d_direct)
AI3_DECLARE_UNARY(ai3_relu_direct)
AI3_DECLARE_UNARY(ai3_flatten_direct)
AI3_DECLARE_BATCHNORM2D(ai3_batchnorm2d_direct)
AI3_DECLARE_BINARY(ai3_add_direct)
AI3_DECLARE_BINARY(ai3_mul_direct)
AI3_DECLARE_CAT(ai3_cat_direct)
AI3_DECLARE_HARDTANH(ai3_hardtanh_direct)
AI3_DECLARE_UNARY(ai3_sigmoid_direct)
AI3_DECLARE_UNARY(ai3_hardsigmoid_direct)
AI3_DECLARE_UNARY(ai3_hardswish_direct)
AI3_DECLARE_UNARY(ai3_silu_direct)
AI3_DECLARE_GELU(ai3_gelu_direct)
AI3_DECLARE_MEAN(ai3_mean_direct)
AI3_DECLARE_PERMUTE(ai3_permute_direct)
AI3_DECLARE_LAYERNORM(ai3_layernorm_direct)
AI3_DECLARE_SOFTMAX(ai3_softmax_direct)

/* ref/ */
AI3_DECLARE_CONV2D(ai3_ref_conv2d)
AI3_DECLARE_LINEAR(ai3_ref_linear)
AI3_DECLARE_POOL2D(ai3_ref_maxpool2d)
AI3_DECLARE_POOL2D(ai3_ref_avgpool2d)
AI3_DECLARE_UNARY(ai3_ref_adaptiveavgpool2d)
AI3_DECLARE_UNARY(ai3_ref_relu)
AI3_DECLARE_UNARY(ai3_ref_flatten)
AI3_DECLARE_BATCHNORM2D(ai3_ref_batchnorm2d)
AI3_DECLARE_BINARY(ai3_ref_add)
AI3_DECLARE_BINARY(ai3_ref_mul)
AI3_DECLARE_CAT(ai3_ref_cat)
AI3_DECLARE_HARDTANH(ai3_ref_hardtanh)
AI3_DECLARE_UNARY(ai3_ref_sigmoid)
AI3_DECLARE_UNARY(ai3_ref_hardsigmoid)
AI3_DECLARE_UNARY(ai3_ref_hardswish)
AI3_DECLARE_UNARY(ai3_ref_silu)
AI3_DECLARE_GELU(ai3_ref_gelu)
AI3_DECLARE_MEAN(ai3_ref_mean)
AI3_DECLARE_PERMUTE(ai3_ref_permute)
AI3_DECLARE_LAYERNORM(ai3_ref_layernorm)
AI3_DECLARE_SOFTMAX(ai3_ref_softmax)

#endif
