/*
 * Slow, obviously correct reference implementations, one per operation
 * (ref/<op>.c), compiled for float (_f32) and double (_f64) into the
 * test-only library ai3_ref. The tests compare every algorithm with them.
 */
#ifndef AI3_REF_H
#define AI3_REF_H

#include "algorithms/algorithms.h"

#define AI3_OP(ID, name, default_algorithm, params, kind, n_inputs, n_weights, module) \
    ai3_op_##ID##_sig ai3_ref_##name##_f32, ai3_ref_##name##_f64;
#include "ai3_ops.inc"
#undef AI3_OP

#endif
