// layernorm.c: LayerNorm forward. Same statistics as groupnorm.c (sums in double in both
// builds, Flax's E[x^2] - E[x]^2 variance clamped at zero), one group spanning the row.
#include "layernorm.h"

#include <math.h>

void layernorm_forward(real *out, real *mean, real *rstd,
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
