/*
 * The element type of a kernel source file.
 *
 * Every file under algorithms/ and ref/ is compiled twice, once with
 * AI3_REAL_DOUBLE undefined (float, suffix _f32) and once with it defined
 * (double, suffix _f64). Write the kernel once with `real` and name exported
 * functions with AI3_TYPED(name), which appends the suffix.
 */
#ifndef AI3_REAL_H
#define AI3_REAL_H

#if defined(AI3_REAL_DOUBLE)
typedef double real;
#define AI3_REAL_DTYPE AI3_FLOAT64
#define AI3_TYPED(name) name##_f64
#else
typedef float real;
#define AI3_REAL_DTYPE AI3_FLOAT32
#define AI3_TYPED(name) name##_f32
#endif

#endif
