// activations.c: SiLU, GELU (tanh and erf), quick GELU, GEGLU.
//
// Every activation is evaluated in double and rounded once to `real`: in the float32 build this
// is at least as accurate as XLA's float32 kernels (a few float32 ulps apart); in the float64
// build it is the same formula as JAX's under x64.
#include "activations.h"

#include <math.h>
#include <stdlib.h>


double silu_scalar(double x) { return x / (1.0 + exp(-x)); }

double gelu_scalar(double x, GeluKind kind) {
    if (kind == GELU_ERF) return 0.5 * x * erfc(-x * 0.70710678118654752440); // sqrt(1/2)
    // the tanh approximation, written as jax.nn.gelu(approximate=True) writes it
    return x * (0.5 * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * (x * x * x))))); // sqrt(2/pi)
}

double quick_gelu_scalar(double x) { return x / (1.0 + exp(-1.702 * x)); }

void silu_forward(real *out, const real *x, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = (real)silu_scalar((double)x[i]);
}

void gelu_forward(real *out, const real *x, size_t n, GeluKind kind) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = (real)gelu_scalar((double)x[i], kind);
}

void quick_gelu_forward(real *out, const real *x, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = (real)quick_gelu_scalar((double)x[i]);
}

int geglu_forward(real *out, const real *x, const real *kernel, const real *bias,
                  size_t N, size_t C, size_t H, GeluKind kind) {
    real *g = (real *)mv_malloc(H * sizeof(real), "geglu gate row"); // (H)
    size_t n, c, h;
    if (!g) return MV_ERR;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * C; // (C)
        real *a = out + n * H;      // (H): the value half is built in place in the output
        for (h = 0; h < H; h++) { a[h] = bias[h]; g[h] = bias[H + h]; }
        for (c = 0; c < C; c++) {
            real xc = xn[c];
            const real *k = kernel + c * 2 * H; // (2H): [value | gate]
            for (h = 0; h < H; h++) a[h] += xc * k[h];
            for (h = 0; h < H; h++) g[h] += xc * k[H + h];
        }
        for (h = 0; h < H; h++) a[h] = (real)((double)a[h] * gelu_scalar((double)g[h], kind));
    }
    free(g);
    return MV_OK;
}
