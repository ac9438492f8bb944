// linear.c: Dense forward as a plain i-k-j loop (contiguous inner loop over the outputs).
#include "linear.h"

#include <string.h>

void linear_forward(real *out, const real *x, const real *kernel, const real *bias,
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
