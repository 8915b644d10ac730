/*
 * The column kernel's entry point, shared by gemm_cols_avx2.h and
 * gemm_cols_avx512.h: included after their tile(), with NR (6 or 14) and
 * COLS_KERNEL (the function's name) defined. It calls tile() with the
 * column count and the vectors of rows as constants, so that each tile
 * width compiles to code of its own and a column costs its own FMAs only.
 */
#if NR != 6 && NR != 14
#error "cols_entry.h: NR must be 6 or 14"
#endif

#define COLS_CASE(n)                                                                      \
    case n:                                                                               \
        if (mr > LANES)                                                                   \
            tile(kc, a, b, off, c, ldc, mr, 2, n, bias_r, accumulate);                    \
        else                                                                              \
            tile(kc, a, b, off, c, ldc, mr, 1, n, bias_r, accumulate);                    \
        return;

AI3_GEMM_COLS_UKERNEL(COLS_KERNEL, real) {
    switch (nr) {
        COLS_CASE(1) COLS_CASE(2) COLS_CASE(3) COLS_CASE(4) COLS_CASE(5)
#if NR == 14
        COLS_CASE(6) COLS_CASE(7) COLS_CASE(8) COLS_CASE(9) COLS_CASE(10) COLS_CASE(11)
        COLS_CASE(12) COLS_CASE(13)
#endif
    default:
        break;
    }
    if (mr > LANES)
        tile(kc, a, b, off, c, ldc, mr, 2, NR, bias_r, accumulate);
    else
        tile(kc, a, b, off, c, ldc, mr, 1, NR, bias_r, accumulate);
}

#undef COLS_CASE
#undef COLS_KERNEL
