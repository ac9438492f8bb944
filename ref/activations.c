// activations.c: SiLU, GELU (tanh and erf), quick GELU, GEGLU, and the backward passes.
//
// The float64 build evaluates every activation in double, the same formula as JAX's under x64.
// The float32 build evaluates the forward activations in float (expf, erfcf): a few float32
// ulps from the exact value, as XLA's float32 kernels, and much faster than double calls. The
// derivatives (backward) are evaluated in double in both builds.
// The file opens with the math (scalar forms and their derivatives) and the plain GEGLU
// forward and backward; the fast path follows: element-wise work in parallel in fixed chunks
// (every element computed by one task), GEGLU as matrix products.
#include "activations.h"
#include "engine.h"
#include "gemm.h"
#include "threads.h"

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

// Derivatives, evaluated in double in both builds.
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

// The forms the element-wise loops use, in the build's precision.
#if MAVREF_PRECISION == 32
static real silu_real(real x) { return x / (1.0f + expf(-x)); }
static real quick_gelu_real(real x) { return x / (1.0f + expf(-1.702f * x)); }
static real gelu_real(real x, GeluKind kind) {
    if (kind == GELU_ERF) return 0.5f * x * erfcf(-x * 0.70710678f); // sqrt(1/2)
    // the tanh form with 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): the same function, and no
    // cancellation in float where tanh(u) is close to -1
    return x / (1.0f + expf(-1.5957691f * (x + 0.044715f * (x * x * x)))); // 2 sqrt(2/pi)
}
#else
static real silu_real(real x) { return silu_scalar(x); }
static real quick_gelu_real(real x) { return quick_gelu_scalar(x); }
static real gelu_real(real x, GeluKind kind) { return gelu_scalar(x, kind); }
#endif

// The readable path: one row at a time, the value half built in place in the output.
int geglu_forward_ref(real *out, const real *x, const real *kernel, const real *bias,
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
        for (h = 0; h < H; h++) a[h] = a[h] * gelu_real(g[h], kind);
    }
    free(g);
    return MV_OK;
}

// The readable path: recomputes each row's projection p = [a | g] (no cache), then
// back-propagates the row.
int geglu_backward_ref(real *dx, real *dkernel, real *dbias,
                       const real *dout, const real *x, const real *kernel, const real *bias,
                       size_t N, size_t C, size_t H, GeluKind kind) {
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

// ---------------------------------------------------------------------------------------
// The fast path.

// Element-wise jobs: task t computes elements [t*ACT_CHUNK, (t+1)*ACT_CHUNK) of the output.
#define ACT_CHUNK 8192
typedef enum { ACT_SILU, ACT_GELU, ACT_QUICK_GELU, ACT_GATE, ACT_SILU_BACK, ACT_GELU_BACK, ACT_GEGLU_BACK } ActOp;
typedef struct {
    ActOp op;
    GeluKind kind;
    real *out;          // (n)
    const real *a, *b;  // (n) inputs (see act_task)
    size_t n, H;        // elements; ACT_GEGLU_BACK: the GEGLU width
} ActJob;

static void act_task(void *ctx, size_t task, int worker) {
    const ActJob *j = (const ActJob *)ctx;
    size_t i = task * ACT_CHUNK, end = j->n - i < ACT_CHUNK ? j->n : i + ACT_CHUNK;
    real *out = j->out;
    const real *a = j->a, *b = j->b;
    (void)worker;
    switch (j->op) {
    case ACT_SILU: for (; i < end; i++) out[i] = silu_real(a[i]); break;
    case ACT_GELU: for (; i < end; i++) out[i] = gelu_real(a[i], j->kind); break;
    case ACT_QUICK_GELU: for (; i < end; i++) out[i] = quick_gelu_real(a[i]); break;
    case ACT_GATE: for (; i < end; i++) out[i] = out[i] * gelu_real(a[i], j->kind); break; // GEGLU: out = a * gelu(g)
    case ACT_SILU_BACK: // dx += dout * silu'(x)
        for (; i < end; i++) out[i] += (real)((double)a[i] * silu_grad_scalar((double)b[i]));
        break;
    case ACT_GELU_BACK: // dx += dout * gelu'(x)
        for (; i < end; i++) out[i] += (real)((double)a[i] * gelu_grad_scalar((double)b[i], j->kind));
        break;
    case ACT_GEGLU_BACK: // element (r,h) of dout a: rows (2H) of p b [a | g] and of dp out [da | dg]
        for (; i < end; i++) {
            size_t r = i / j->H, h = i % j->H, H = j->H;
            double g = (double)b[r * 2 * H + H + h];
            out[r * 2 * H + h] = (real)((double)a[i] * gelu_scalar(g, j->kind));
            out[r * 2 * H + H + h] = (real)((double)a[i] * (double)b[r * 2 * H + h] * gelu_grad_scalar(g, j->kind));
        }
        break;
    }
}

static void act_run(ActOp op, GeluKind kind, real *out, const real *a, const real *b, size_t n, size_t H) {
    ActJob j;
    j.op = op; j.kind = kind; j.out = out; j.a = a; j.b = b; j.n = n; j.H = H;
    parallel_for((n + ACT_CHUNK - 1) / ACT_CHUNK, act_task, &j);
}

void silu_forward(real *out, const real *x, size_t n) { act_run(ACT_SILU, GELU_TANH, out, x, NULL, n, 0); }

void gelu_forward(real *out, const real *x, size_t n, GeluKind kind) { act_run(ACT_GELU, kind, out, x, NULL, n, 0); }

void quick_gelu_forward(real *out, const real *x, size_t n) { act_run(ACT_QUICK_GELU, GELU_TANH, out, x, NULL, n, 0); }

// forward was: out = silu(x), so dx += dout * silu'(x)
void silu_backward(real *dx, const real *dout, const real *x, size_t n) {
    act_run(ACT_SILU_BACK, GELU_TANH, dx, dout, x, n, 0);
}

// forward was: out = gelu(x), so dx += dout * gelu'(x)
void gelu_backward(real *dx, const real *dout, const real *x, size_t n, GeluKind kind) {
    act_run(ACT_GELU_BACK, kind, dx, dout, x, n, 0);
}

// The fast path: for blocks of rows, the value half a = bias[:H] + x kernel[:, :H] straight into
// the output and the gate g = bias[H:] + x kernel[:, H:] into scratch, each as one matrix
// product (the kernel's halves are read with leading dimension 2H), then out = a * gelu(g).
#define GEGLU_ROWS 256
int geglu_forward(real *out, const real *x, const real *kernel, const real *bias,
                  size_t N, size_t C, size_t H, GeluKind kind) {
    real *g;
    size_t n0, nb, n;
    if (engine_reference()) return geglu_forward_ref(out, x, kernel, bias, N, C, H, kind);
    g = (real *)malloc(GEGLU_ROWS * H * sizeof(real)); // (rows,H)
    if (!g) return geglu_forward_ref(out, x, kernel, bias, N, C, H, kind);
    for (n0 = 0; n0 < N; n0 += nb) {
        real *a = out + n0 * H; // (nb,H)
        nb = N - n0 < GEGLU_ROWS ? N - n0 : GEGLU_ROWS;
        for (n = 0; n < nb; n++) {
            memcpy(a + n * H, bias, H * sizeof(real));
            memcpy(g + n * H, bias + H, H * sizeof(real));
        }
        gemm(a, x + n0 * C, kernel, nb, H, C, H, C, 2 * H, GEMM_ACC);
        gemm(g, x + n0 * C, kernel + H, nb, H, C, H, C, 2 * H, GEMM_ACC);
        act_run(ACT_GATE, kind, a, g, NULL, nb * H, H); // out = a * gelu(g)
    }
    free(g);
    return MV_OK;
}

// The fast path: for blocks of rows, p = bias + x kernel as one matrix product, dp element-wise,
// then dkernel += x^T dp and dx += dp kernel^T as one product each.
int geglu_backward(real *dx, real *dkernel, real *dbias,
                   const real *dout, const real *x, const real *kernel, const real *bias,
                   size_t N, size_t C, size_t H, GeluKind kind) {
    real *p, *dp;
    size_t n0, nb, n, h;
    if (engine_reference()) return geglu_backward_ref(dx, dkernel, dbias, dout, x, kernel, bias, N, C, H, kind);
    p = (real *)malloc(2 * GEGLU_ROWS * 2 * H * sizeof(real)); // (rows,2H) p, then (rows,2H) dp
    if (!p) return geglu_backward_ref(dx, dkernel, dbias, dout, x, kernel, bias, N, C, H, kind);
    dp = p + GEGLU_ROWS * 2 * H;
    for (n0 = 0; n0 < N; n0 += nb) {
        const real *xb = x + n0 * C; // (nb,C)
        nb = N - n0 < GEGLU_ROWS ? N - n0 : GEGLU_ROWS;
        // forward: p = bias + x @ kernel (a = p[:, :H], g = p[:, H:])
        for (n = 0; n < nb; n++) memcpy(p + n * 2 * H, bias, 2 * H * sizeof(real));
        gemm(p, xb, kernel, nb, 2 * H, C, 2 * H, C, 2 * H, GEMM_ACC);
        // forward was: out = a * gelu(g), so da = dout * gelu(g), dg = dout * a * gelu'(g)
        act_run(ACT_GEGLU_BACK, kind, dp, dout + n0 * H, p, nb * H, H);
        // forward was: p = bias + x @ kernel, so dbias += sum_n dp, dkernel += x^T dp, dx += dp kernel^T
        if (dbias)
            for (n = 0; n < nb; n++)
                for (h = 0; h < 2 * H; h++) dbias[h] += dp[n * 2 * H + h];
        if (dkernel) gemm(dkernel, xb, dp, C, 2 * H, nb, 2 * H, C, 2 * H, GEMM_TA | GEMM_ACC);
        if (dx) gemm(dx + n0 * C, dp, kernel, nb, C, 2 * H, C, 2 * H, 2 * H, GEMM_TB | GEMM_ACC);
    }
    free(p);
    return MV_OK;
}
