/*
 * The activations of ai3's CUDA kernels (relu, hardtanh, sigmoid,
 * hardsigmoid, hardswish, silu, gelu in erf or tanh form), PyTorch's
 * formulas in the compute type. NaN propagates: clamps are written so that
 * a NaN compares false and passes through.
 */
#ifndef AI3_CUDA_ACTIVATE_CUH
#define AI3_CUDA_ACTIVATE_CUH

#include "kernels.h"

#include <math.h>

struct act_args {
    int op; /* an ai3_op, or -1: none */
    double lo, hi;   /* hardtanh */
    int tanh_approx; /* gelu */
};

/* The arguments of activation op, or false for an op that is none of them. */
static inline bool act_args_of(ai3_op op, const ai3_op_params *params, act_args *a) {
    *a = act_args{(int)op, 0, 0, 0};
    switch (op) {
    case AI3_OP_HARDTANH:
        if (!params) return false;
        a->lo = params->hardtanh.min_val;
        a->hi = params->hardtanh.max_val;
        return true;
    case AI3_OP_GELU:
        a->tanh_approx = params ? params->gelu.tanh_approximation : 0;
        return true;
    case AI3_OP_RELU: case AI3_OP_SIGMOID: case AI3_OP_HARDSIGMOID: case AI3_OP_HARDSWISH:
    case AI3_OP_SILU:
        return true;
    default: return false;
    }
}

template <typename A> __device__ __forceinline__ A clamp_nan(A v, A lo, A hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

template <typename A> __device__ __forceinline__ A activate(A x, const act_args &a) {
    switch (a.op) {
    case -1: return x;
    case AI3_OP_RELU: return x <= (A)0 ? (A)0 : x;
    case AI3_OP_HARDTANH: return clamp_nan(x, (A)a.lo, (A)a.hi);
    case AI3_OP_SIGMOID: return (A)1 / ((A)1 + exp(-x));
    case AI3_OP_HARDSIGMOID: return clamp_nan(x + (A)3, (A)0, (A)6) / (A)6;
    case AI3_OP_HARDSWISH: return x * clamp_nan(x + (A)3, (A)0, (A)6) / (A)6;
    case AI3_OP_SILU: return x / ((A)1 + exp(-x));
    default: /* AI3_OP_GELU */
        if (a.tanh_approx) {
            const A k = (A)0.7978845608028654; /* sqrt(2 / pi) */
            return (A)0.5 * x * ((A)1 + tanh(k * (x + (A)0.044715 * x * x * x)));
        }
        return (A)0.5 * x * ((A)1 + erf(x * (A)0.7071067811865476));
    }
}

#endif
