// groupnorm.c: GroupNorm forward and backward.
//
// Flax computes mean = E[x] and var = max(E[x^2] - E[x]^2, 0) over the group (normalization.py
// _compute_stats, with use_fast_variance), then y = (x - mean) * rsqrt(var + eps) * scale + bias.
// We use the same formula; the sums are accumulated in double in both builds so that the
// statistics of large groups (64x64x24 frames x 10 channels = 983,040 values) stay exact to
// the last bit of `real`.
//
// The plain forward and backward come first; the fast path (the same sums on the thread pool)
// follows.
#include "groupnorm.h"

#include <math.h>
#include <stdlib.h>

#include "engine.h"
#include "threads.h"

// The readable path: one sample and group at a time, the statistics summed over s, then c.
void groupnorm_forward_ref(real *out, real *mean, real *rstd,
                       const real *x,
                       const real *scale, const real *bias,
                       size_t N, size_t S, size_t C, size_t G, double eps) {
    size_t cg = C / G; // channels per group
    size_t n, g, s, c;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * S * C;  // (S,C)
        real *on = out + n * S * C;      // (S,C)
        for (g = 0; g < G; g++) {
            double sum = 0.0, sumsq = 0.0, m, v, r;
            double count = (double)S * (double)cg;
            for (s = 0; s < S; s++) {
                const real *xs = xn + s * C + g * cg;
                for (c = 0; c < cg; c++) {
                    double xv = (double)xs[c];
                    sum += xv;
                    sumsq += xv * xv;
                }
            }
            m = sum / count;
            v = sumsq / count - m * m;
            if (v < 0.0) v = 0.0; // Flax clamps the fast variance at zero
            r = 1.0 / sqrt(v + eps);
            if (mean) mean[n * G + g] = (real)m;
            if (rstd) rstd[n * G + g] = (real)r;
            for (s = 0; s < S; s++) {
                const real *xs = xn + s * C + g * cg;
                real *os = on + s * C + g * cg;
                for (c = 0; c < cg; c++) {
                    size_t ch = g * cg + c;
                    os[c] = (real)(((double)xs[c] - m) * r * (double)scale[ch] + (double)bias[ch]);
                }
            }
        }
    }
}

// Backward. With xhat = (x - mean) * rstd and dxhat = dout * scale, over the `count` = S*C/G
// values of a group (mean and var both depend on every x of the group):
//   dx = rstd * (dxhat - mean_group(dxhat) - xhat * mean_group(dxhat * xhat))
// The group sums are accumulated in double, like the forward statistics.
void groupnorm_backward(real *dx, real *dscale, real *dbias,
                        const real *dout, const real *x, const real *scale,
                        const real *mean, const real *rstd,
                        size_t N, size_t S, size_t C, size_t G) {
    size_t cg = C / G;
    size_t n, g, s, c;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * S * C;     // (S,C)
        const real *dyn = dout + n * S * C; // (S,C)
        for (g = 0; g < G; g++) {
            double m = (double)mean[n * G + g], r = (double)rstd[n * G + g];
            double count = (double)S * (double)cg, sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
            // forward was: out = xhat * scale + bias, so dscale += dout * xhat, dbias += dout
            // (per channel, summed over the S positions in double, then added once)
            for (c = 0; c < cg; c++) {
                size_t ch = g * cg + c;
                double ds = 0.0, db = 0.0;
                for (s = 0; s < S; s++) {
                    double dy = (double)dyn[s * C + ch], xhat = ((double)xn[s * C + ch] - m) * r;
                    ds += dy * xhat;
                    db += dy;
                    // and dxhat = dout * scale: collect its group sums for dx
                    sum_dxhat += dy * (double)scale[ch];
                    sum_dxhat_xhat += dy * (double)scale[ch] * xhat;
                }
                if (dscale) dscale[ch] += (real)ds;
                if (dbias) dbias[ch] += (real)db;
            }
            if (!dx) continue;
            // forward was: xhat = (x - mean) * rstd with mean = E[x], rstd = (E[x^2] - mean^2 + eps)^-1/2,
            // so dx = rstd * (dxhat - E[dxhat] - xhat * E[dxhat * xhat])
            for (s = 0; s < S; s++)
                for (c = 0; c < cg; c++) {
                    size_t at = n * S * C + s * C + g * cg + c;
                    double xhat = ((double)x[at] - m) * r, dxhat = (double)dout[at] * (double)scale[g * cg + c];
                    dx[at] += (real)(r * (dxhat - sum_dxhat / count - xhat * (sum_dxhat_xhat / count)));
                }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The fast path: the same sums in the same order as groupnorm_forward_ref, in two parallel
// passes. (1) Statistics: one task per sample and block of GN_BLOCK groups (their channels
// are contiguous in each row), each group summed over s, then c, as in the plain loop.
// (2) Normalization: one task per block of rows. Each task writes its own statistics or
// rows, so the result does not depend on the thread count; out may equal x (all
// statistics are taken before any row is written).
#define GN_BLOCK 8

typedef struct {
    real *out, *mean, *rstd;
    const real *x, *scale, *bias;
    size_t N, S, C, G, cg, gblocks;
    double eps;
    double *m, *r; // (N,G) mean and rstd in double, as the plain loop uses them
} GnJob;

static void gn_stats(void *ctx, size_t task, int worker) {
    const GnJob *j = (const GnJob *)ctx;
    size_t n = task / j->gblocks, g0 = task % j->gblocks * GN_BLOCK;
    size_t g1 = g0 + GN_BLOCK < j->G ? g0 + GN_BLOCK : j->G, g, s, c;
    const real *xn = j->x + n * j->S * j->C; // (S,C)
    double sum[GN_BLOCK] = {0}, sumsq[GN_BLOCK] = {0}, count = (double)j->S * (double)j->cg;
    (void)worker;
    for (s = 0; s < j->S; s++)
        for (g = g0; g < g1; g++) {
            const real *xs = xn + s * j->C + g * j->cg; // (cg)
            double a = sum[g - g0], b = sumsq[g - g0];
            for (c = 0; c < j->cg; c++) {
                double xv = (double)xs[c];
                a += xv;
                b += xv * xv;
            }
            sum[g - g0] = a;
            sumsq[g - g0] = b;
        }
    for (g = g0; g < g1; g++) {
        double m = sum[g - g0] / count, v = sumsq[g - g0] / count - m * m;
        if (v < 0.0) v = 0.0; // Flax clamps the fast variance at zero
        j->m[n * j->G + g] = m;
        j->r[n * j->G + g] = 1.0 / sqrt(v + j->eps);
        if (j->mean) j->mean[n * j->G + g] = (real)m;
        if (j->rstd) j->rstd[n * j->G + g] = (real)j->r[n * j->G + g];
    }
}

// Rows [begin, end) of the (N*S, C) view.
static void gn_rows(void *ctx, size_t begin, size_t end) {
    const GnJob *j = (const GnJob *)ctx;
    size_t q, ch;
    for (q = begin; q < end; q++) {
        const double *m = j->m + q / j->S * j->G, *r = j->r + q / j->S * j->G; // (G) of this row's sample
        const real *xs = j->x + q * j->C;                                       // (C)
        real *os = j->out + q * j->C;                                           // (C)
        for (ch = 0; ch < j->C; ch++) {
            size_t g = ch / j->cg;
            os[ch] = (real)(((double)xs[ch] - m[g]) * r[g] * (double)j->scale[ch] + (double)j->bias[ch]);
        }
    }
}

void groupnorm_forward(real *out, real *mean, real *rstd,
                       const real *x,
                       const real *scale, const real *bias,
                       size_t N, size_t S, size_t C, size_t G, double eps) {
    GnJob j;
    if (engine_reference()) { groupnorm_forward_ref(out, mean, rstd, x, scale, bias, N, S, C, G, eps); return; }
    if (N == 0 || G == 0) return;
    j.m = (double *)malloc(2 * N * G * sizeof(double));
    if (!j.m) { groupnorm_forward_ref(out, mean, rstd, x, scale, bias, N, S, C, G, eps); return; } // the plain loop needs none
    j.r = j.m + N * G;
    j.out = out; j.mean = mean; j.rstd = rstd; j.x = x; j.scale = scale; j.bias = bias;
    j.N = N; j.S = S; j.C = C; j.G = G; j.cg = C / G; j.eps = eps;
    j.gblocks = (G + GN_BLOCK - 1) / GN_BLOCK;
    parallel_for(N * j.gblocks, gn_stats, &j);
    parallel_range(N * S, 16384 / (C + 1) + 1, gn_rows, &j);
    free(j.m);
}
