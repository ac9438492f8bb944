// linear.c: Dense forward and backward: matrix products (ref/gemm.c), and the plain loops
// (contiguous inner loops over the outputs) as the readable *_ref path.
#include "linear.h"
#include "gemm.h"

#include <string.h>

// The fast path: out = bias, then out += x kernel as one matrix product (ref/gemm.c). If the
// product cannot get its packing buffers, the plain loop computes the same thing.
void linear_forward(real *out, const real *x, const real *kernel, const real *bias,
                    size_t N, size_t I, size_t O) {
    size_t n;
    if (mv_reference_path) { linear_forward_ref(out, x, kernel, bias, N, I, O); return; }
    for (n = 0; n < N; n++) {
        if (bias) memcpy(out + n * O, bias, O * sizeof(real));
        else memset(out + n * O, 0, O * sizeof(real));
    }
    if (gemm(out, x, kernel, N, O, I, O, I, O, GEMM_ACC) != MV_OK) linear_forward_ref(out, x, kernel, bias, N, I, O);
}

// The readable path: one output row at a time, contiguous over the outputs.
void linear_forward_ref(real *out, const real *x, const real *kernel, const real *bias,
                        size_t N, size_t I, size_t O) {
    size_t n, i, o;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * I; // (I)
        real *y = out + n * O;      // (O)
        if (bias) memcpy(y, bias, O * sizeof(real));
        else memset(y, 0, O * sizeof(real));
        for (i = 0; i < I; i++) {
            real xi = xn[i];
            const real *k = kernel + i * O; // (O)
            for (o = 0; o < O; o++) y[o] += xi * k[o];
        }
    }
}

// The fast path: two matrix products and a column sum,
//   dx (N,I) += dout (N,O) x kernel^T (O,I)      dkernel (I,O) += x^T (I,N) x dout (N,O)
// (gemm() with GEMM_TB / GEMM_TA, accumulating). Should a product not get its packing
// buffers, gemm_ref computes it instead (gemm leaves C untouched when it fails).
void linear_backward(real *dx, real *dkernel, real *dbias,
                     const real *dout, const real *x, const real *kernel,
                     size_t N, size_t I, size_t O) {
    size_t n, o;
    if (mv_reference_path) { linear_backward_ref(dx, dkernel, dbias, dout, x, kernel, N, I, O); return; }
    // forward was: y = bias + ..., so dbias += the column sums of dout (rows in order)
    if (dbias)
        for (n = 0; n < N; n++)
            for (o = 0; o < O; o++) dbias[o] += dout[n * O + o];
    if (dx && gemm(dx, dout, kernel, N, I, O, I, O, O, GEMM_TB | GEMM_ACC) != MV_OK)
        gemm_ref(dx, dout, kernel, N, I, O, I, O, O, GEMM_TB | GEMM_ACC);
    if (dkernel && gemm(dkernel, x, dout, I, O, N, O, I, O, GEMM_TA | GEMM_ACC) != MV_OK)
        gemm_ref(dkernel, x, dout, I, O, N, O, I, O, GEMM_TA | GEMM_ACC);
}

// The readable path: one row at a time.
void linear_backward_ref(real *dx, real *dkernel, real *dbias,
                         const real *dout, const real *x, const real *kernel,
                         size_t N, size_t I, size_t O) {
    size_t n, i, o;
    for (n = 0; n < N; n++) {
        const real *dy = dout + n * O; // (O)
        const real *xn = x + n * I;    // (I)
        // forward was: y = bias + ..., so dbias += dy
        if (dbias)
            for (o = 0; o < O; o++) dbias[o] += dy[o];
        for (i = 0; i < I; i++) {
            // forward was: y[o] += x[i] * k[i,o], so dx[i] += sum_o dy[o] * k[i,o], dk[i,o] += x[i] * dy[o]
            const real *k = kernel + i * O; // (O)
            if (dx) {
                real acc = 0;
                for (o = 0; o < O; o++) acc += dy[o] * k[o];
                dx[n * I + i] += acc;
            }
            if (dkernel) {
                real xi = xn[i];
                real *dk = dkernel + i * O; // (O)
                for (o = 0; o < O; o++) dk[o] += xi * dy[o];
            }
        }
    }
}
