// activations.c: SiLU, GELU (tanh and erf), quick GELU, GEGLU, and the backward passes.
//
// Every activation is evaluated in double and rounded once to `real`: in the float32 build this
// is at least as accurate as XLA's float32 kernels (a few float32 ulps apart); in the float64
// build it is the same formula as JAX's under x64.
#include "activations.h"
#include "gemm.h"

#include <math.h>
#include <string.h>
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

// The readable path: one row at a time, the value half built in place in the output.
static int geglu_forward_ref(real *out, const real *x, const real *kernel, const real *bias,
                             size_t N, size_t C, size_t H, GeluKind kind) {
    real *g = (real *)mv_malloc(H * sizeof(real), "geglu gate row"); // (H)
    size_t n, c, h;
    if (!g) return MV_ERR;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * C; // (C)
        real *a = out + n * H;      // (H)
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

// The fast path: for blocks of rows, the value half a = bias[:H] + x kernel[:, :H] straight into
// the output and the gate g = bias[H:] + x kernel[:, H:] into scratch, each as one matrix
// product (the kernel's halves are read with leading dimension 2H), then out = a * gelu(g).
#define GEGLU_ROWS 256
int geglu_forward(real *out, const real *x, const real *kernel, const real *bias,
                  size_t N, size_t C, size_t H, GeluKind kind) {
    real *g;
    size_t n0, nb, n;
    if (mv_reference_path) return geglu_forward_ref(out, x, kernel, bias, N, C, H, kind);
    g = (real *)malloc(GEGLU_ROWS * H * sizeof(real)); // (rows,H)
    if (!g) return geglu_forward_ref(out, x, kernel, bias, N, C, H, kind);
    for (n0 = 0; n0 < N; n0 += nb) {
        real *a = out + n0 * H; // (nb,H)
        nb = N - n0 < GEGLU_ROWS ? N - n0 : GEGLU_ROWS;
        for (n = 0; n < nb; n++) {
            memcpy(a + n * H, bias, H * sizeof(real));
            memcpy(g + n * H, bias + H, H * sizeof(real));
        }
        if (gemm(a, x + n0 * C, kernel, nb, H, C, H, C, 2 * H, GEMM_ACC) ||
            gemm(g, x + n0 * C, kernel + H, nb, H, C, H, C, 2 * H, GEMM_ACC)) {
            free(g);
            return geglu_forward_ref(out, x, kernel, bias, N, C, H, kind);
        }
        for (n = 0; n < nb * H; n++) a[n] = (real)((double)a[n] * gelu_scalar((double)g[n], kind));
    }
    free(g);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// Backward passes: derivatives evaluated in double, ACCUMULATED (+=) into the gradients.

double silu_grad_scalar(double x) {
    // silu = x * s with s = sigmoid(x), s' = s (1 - s): silu' = s + x s (1 - s)
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}

double gelu_grad_scalar(double x, GeluKind kind) {
    if (kind == GELU_ERF) {
        // gelu = x * Phi(x), Phi(x) = erfc(-x/sqrt 2)/2, Phi' = phi = exp(-x^2/2)/sqrt(2 pi)
        double cdf = 0.5 * erfc(-x * 0.70710678118654752440);
        return cdf + x * 0.39894228040143267794 * exp(-0.5 * x * x); // 1/sqrt(2 pi)
    } else {
        // gelu = x * cdf, cdf = (1 + tanh(u))/2, u = k (x + 0.044715 x^3), k = sqrt(2/pi):
        // gelu' = cdf + x (1 - tanh(u)^2)/2 * k (1 + 3 * 0.044715 x^2)
        double k = 0.79788456080286535588;
        double t = tanh(k * (x + 0.044715 * (x * x * x)));
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
    }
}

void silu_backward(real *dx, const real *dout, const real *x, size_t n) {
    size_t i;
    // forward was: out = silu(x), so dx += dout * silu'(x)
    for (i = 0; i < n; i++) dx[i] += (real)((double)dout[i] * silu_grad_scalar((double)x[i]));
}

void gelu_backward(real *dx, const real *dout, const real *x, size_t n, GeluKind kind) {
    size_t i;
    // forward was: out = gelu(x), so dx += dout * gelu'(x)
    for (i = 0; i < n; i++) dx[i] += (real)((double)dout[i] * gelu_grad_scalar((double)x[i], kind));
}

int geglu_backward(real *dx, real *dkernel, real *dbias,
                   const real *dout, const real *x, const real *kernel, const real *bias,
                   size_t N, size_t C, size_t H, GeluKind kind) {
    // Recomputes each row's projection p = [a | g] (no cache), then back-propagates the row.
    real *p = (real *)mv_malloc(4 * H * sizeof(real), "geglu backward rows"); // (2H) p, then (2H) dp
    real *dp;
    size_t n, c, h;
    if (!p) return MV_ERR;
    dp = p + 2 * H;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * C;     // (C)
        const real *dy = dout + n * H;  // (H)
        // forward: p = bias + x @ kernel (as geglu_forward: a = p[:H], g = p[H:])
        for (h = 0; h < 2 * H; h++) p[h] = bias[h];
        for (c = 0; c < C; c++) {
            real xc = xn[c];
            const real *k = kernel + c * 2 * H; // (2H)
            for (h = 0; h < 2 * H; h++) p[h] += xc * k[h];
        }
        // forward was: out = a * gelu(g), so da = dout * gelu(g), dg = dout * a * gelu'(g)
        for (h = 0; h < H; h++) {
            double g = (double)p[H + h];
            dp[h] = (real)((double)dy[h] * gelu_scalar(g, kind));
            dp[H + h] = (real)((double)dy[h] * (double)p[h] * gelu_grad_scalar(g, kind));
        }
        // forward was: p = bias + x @ kernel, so dbias += dp, dkernel[c,:] += x[c] dp, dx[c] += dp . kernel[c,:]
        if (dbias)
            for (h = 0; h < 2 * H; h++) dbias[h] += dp[h];
        for (c = 0; c < C; c++) {
            const real *k = kernel + c * 2 * H; // (2H)
            if (dx) {
                real acc = 0;
                for (h = 0; h < 2 * H; h++) acc += dp[h] * k[h];
                dx[n * C + c] += acc;
            }
            if (dkernel) {
                real xc = xn[c];
                real *dk = dkernel + c * 2 * H; // (2H)
                for (h = 0; h < 2 * H; h++) dk[h] += xc * dp[h];
            }
        }
    }
    free(p);
    return MV_OK;
}
