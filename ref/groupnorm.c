// groupnorm.c: GroupNorm forward.
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
