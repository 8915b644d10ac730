/*
 * The built-in algorithms (listed in algorithms.inc, one source file each:
 * algorithms/<op>_<name>.c), each compiled for float (_f32) and double
 * (_f64). conv2d and linear algorithms are planned: their interfaces are
 * algorithms/conv2d.h and algorithms/linear.h.
 */
#ifndef AI3_ALGORITHMS_H
#define AI3_ALGORITHMS_H

#include "ai3.h"

/* ai3_op_<ID>_sig: the function type of the op's algorithms (its kind's). */
#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    typedef __typeof__(*(ai3_##kind##_fn)0) ai3_op_##ID##_sig;
#include "ai3_ops.inc"
#undef AI3_OP

#define AI3_ALGORITHM(OP, name, symbol, device) ai3_op_##OP##_sig symbol##_f32, symbol##_f64;
#define AI3_PLANNED(OP, name, symbol, device)
#define AI3_CHOOSER(OP, name, device)
#define AI3_BF16(OP, name, symbol, device)
#include "algorithms.inc"
#undef AI3_ALGORITHM
#undef AI3_PLANNED
#undef AI3_CHOOSER
#undef AI3_BF16

#endif
