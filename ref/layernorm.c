// layernorm.c: LayerNorm forward and backward. Same statistics as groupnorm.c (sums in double
// in both builds, Flax's E[x^2] - E[x]^2 variance clamped at zero), one group spanning the row.
// The plain forward and backward first; the fast path (rows on the thread pool) after.
#include "layernorm.h"

#include <math.h>

#include "engine.h"
#include "threads.h"

// The readable path: one row at a time.
void layernorm_forward_ref(real *out, real *mean, real *rstd,
                           const real *x, const real *scale, const real *bias,
                           size_t N, size_t C, double eps) {
    size_t n, c;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * C; // (C)
        real *on = out + n * C;     // (C)
        double sum = 0.0, sumsq = 0.0, m, v, r;
        for (c = 0; c < C; c++) {
            double xv = (double)xn[c];
            sum += xv;
            sumsq += xv * xv;
        }
        m = sum / (double)C;
        v = sumsq / (double)C - m * m;
        if (v < 0.0) v = 0.0;
        r = 1.0 / sqrt(v + eps);
        if (mean) mean[n] = (real)m;
        if (rstd) rstd[n] = (real)r;
        for (c = 0; c < C; c++)
            on[c] = (real)(((double)xn[c] - m) * (r * (double)scale[c]) + (double)bias[c]);
    }
}

// Backward: groupnorm_backward with one group spanning the row (see groupnorm.c):
//   dx = rstd * (dxhat - E[dxhat] - xhat * E[dxhat * xhat]),  dxhat = dout * scale
void layernorm_backward(real *dx, real *dscale, real *dbias,
                        const real *dout, const real *x, const real *scale,
                        const real *mean, const real *rstd, size_t N, size_t C) {
    size_t n, c;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * C;     // (C)
        const real *dyn = dout + n * C; // (C)
        double m = (double)mean[n], r = (double)rstd[n], sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
        for (c = 0; c < C; c++) {
            double dy = (double)dyn[c], xhat = ((double)xn[c] - m) * r;
            // forward was: out = xhat * scale + bias, so dscale += dout * xhat, dbias += dout
            if (dscale) dscale[c] += (real)(dy * xhat);
            if (dbias) dbias[c] += dyn[c];
            sum_dxhat += dy * (double)scale[c];
            sum_dxhat_xhat += dy * (double)scale[c] * xhat;
        }
        if (!dx) continue;
        // forward was: xhat = (x - mean) * rstd, mean and rstd functions of the whole row, so
        // dx = rstd * (dxhat - E[dxhat] - xhat * E[dxhat * xhat])
        for (c = 0; c < C; c++) {
            double xhat = ((double)xn[c] - m) * r, dxhat = (double)dyn[c] * (double)scale[c];
            dx[n * C + c] += (real)(r * (dxhat - sum_dxhat / (double)C - xhat * (sum_dxhat_xhat / (double)C)));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The fast path: rows are independent, so blocks of rows run as parallel tasks (each the
// plain loop on its rows).
typedef struct {
    real *out, *mean, *rstd;
    const real *x, *scale, *bias;
    size_t C;
    double eps;
} LnJob;

static void ln_rows(void *ctx, size_t begin, size_t end) {
    const LnJob *j = (const LnJob *)ctx;
    layernorm_forward_ref(j->out + begin * j->C, j->mean ? j->mean + begin : NULL, j->rstd ? j->rstd + begin : NULL,
                          j->x + begin * j->C, j->scale, j->bias, end - begin, j->C, j->eps);
}

void layernorm_forward(real *out, real *mean, real *rstd,
                       const real *x, const real *scale, const real *bias,
                       size_t N, size_t C, double eps) {
    LnJob j;
    if (engine_reference()) { layernorm_forward_ref(out, mean, rstd, x, scale, bias, N, C, eps); return; }
    j.out = out; j.mean = mean; j.rstd = rstd; j.x = x; j.scale = scale; j.bias = bias; j.C = C; j.eps = eps;
    parallel_range(N, 16384 / (C + 1) + 1, ln_rows, &j);
}
