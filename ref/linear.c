// linear.c: Dense forward and backward. The plain loops first (the *_ref functions, the
// readable path; contiguous inner loops over the outputs), then the fast path: the same sums as
// matrix products (ref/gemm.c).
#include "linear.h"
#include "engine.h"
#include "gemm.h"

#include <string.h>

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

void linear_backward_ref(real *dx, real *dkernel, real *dbias,
                         const real *dout, const real *x, const real *kernel,
                         size_t N, size_t I, size_t O) {
    size_t n, i, o;
    for (n = 0; n < N; n++) {
        const real *dy = dout + n * O; // (O)
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
            if (dkernel) { // (x is read only here: it may be NULL when dkernel is)
                real xi = x[n * I + i];
                real *dk = dkernel + i * O; // (O)
                for (o = 0; o < O; o++) dk[o] += xi * dy[o];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The fast path: out = bias, then out += x kernel as one matrix product.
void linear_forward(real *out, const real *x, const real *kernel, const real *bias,
                    size_t N, size_t I, size_t O) {
    size_t n;
    if (engine_reference()) { linear_forward_ref(out, x, kernel, bias, N, I, O); return; }
    for (n = 0; n < N; n++) {
        if (bias) memcpy(out + n * O, bias, O * sizeof(real));
        else memset(out + n * O, 0, O * sizeof(real));
    }
    gemm(out, x, kernel, N, O, I, O, I, O, GEMM_ACC);
}

// Two matrix products and a column sum:
//   dx (N,I) += dout (N,O) x kernel^T (O,I)      dkernel (I,O) += x^T (I,N) x dout (N,O)
void linear_backward(real *dx, real *dkernel, real *dbias,
                     const real *dout, const real *x, const real *kernel,
                     size_t N, size_t I, size_t O) {
    size_t n, o;
    if (engine_reference()) { linear_backward_ref(dx, dkernel, dbias, dout, x, kernel, N, I, O); return; }
    // forward was: y = bias + ..., so dbias += the column sums of dout (rows in order)
    if (dbias)
        for (n = 0; n < N; n++)
            for (o = 0; o < O; o++) dbias[o] += dout[n * O + o];
    if (dx) gemm(dx, dout, kernel, N, I, O, I, O, O, GEMM_TB | GEMM_ACC);
    if (dkernel) gemm(dkernel, x, dout, I, O, N, O, I, O, GEMM_TA | GEMM_ACC);
}
