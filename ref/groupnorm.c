// groupnorm.c: GroupNorm forward and backward.
//
// Flax computes mean = E[x] and var = max(E[x^2] - E[x]^2, 0) over the group (normalization.py
// _compute_stats, with use_fast_variance), then y = (x - mean) * rsqrt(var + eps) * scale + bias.
// We use the same formula; the sums are accumulated in double in both builds so that the
// statistics of large groups (64x64x24 frames x 10 channels = 983,040 values) stay exact to
// the last bit of `real`.
#include "groupnorm.h"

#include <math.h>

void groupnorm_forward(real *out, real *mean, real *rstd,
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
