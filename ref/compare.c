// compare.c: error metrics (see compare.h for the definitions).
#include "compare.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int is_finite(double x) { return x == x && x - x == 0.0; }

void metrics_compute(Metrics *m, const double *got, const double *exp, size_t n) {
    double se = 0.0, sx = 0.0;
    size_t i;
    int have = 0;
    memset(m, 0, sizeof *m);
    m->n = n;
    for (i = 0; i < n; i++) {
        double g = got[i], e = exp[i], d;
        if (is_finite(g) != is_finite(e) || (!is_finite(e) && !(g == e))) {
            if (!m->nonfinite) { m->first_nonfinite = i; m->worst = i; m->worst_got = g; m->worst_exp = e; }
            m->nonfinite++;
            continue;
        }
        if (!is_finite(e)) continue; // equal infinities
        d = fabs(g - e);
        if (!have || d > m->max_abs) {
            have = 1;
            m->max_abs = d;
            if (!m->nonfinite) { m->worst = i; m->worst_got = g; m->worst_exp = e; }
        }
        if (e != 0.0 && d / fabs(e) > m->max_rel) m->max_rel = d / fabs(e);
        if (fabs(e) > m->max_exp) m->max_exp = fabs(e);
        se += d * d;
        sx += e * e;
    }
    m->nmse = sx > 0.0 ? se / sx : (se > 0.0 ? INFINITY : 0.0);
    m->rel = m->max_exp > 0.0 ? m->max_abs / m->max_exp : (m->max_abs > 0.0 ? INFINITY : 0.0);
}

void metrics_compute_real(Metrics *m, const real *got, const real *exp, size_t n) {
    // Convert in blocks to reuse metrics_compute without a full double copy.
    double g[256], e[256], se = 0.0, sx = 0.0;
    Metrics part, acc;
    size_t i = 0, j;
    memset(&acc, 0, sizeof acc);
    acc.n = n;
    while (i < n) {
        size_t k = n - i < 256 ? n - i : 256;
        for (j = 0; j < k; j++) { g[j] = (double)got[i + j]; e[j] = (double)exp[i + j]; }
        metrics_compute(&part, g, e, k);
        if (part.nonfinite && !acc.nonfinite) {
            acc.first_nonfinite = i + part.first_nonfinite;
            acc.worst = i + part.worst; acc.worst_got = part.worst_got; acc.worst_exp = part.worst_exp;
        }
        acc.nonfinite += part.nonfinite;
        if (!acc.nonfinite && (i == 0 || part.max_abs > acc.max_abs)) {
            acc.worst = i + part.worst; acc.worst_got = part.worst_got; acc.worst_exp = part.worst_exp;
        }
        if (part.max_abs > acc.max_abs) acc.max_abs = part.max_abs;
        if (part.max_rel > acc.max_rel) acc.max_rel = part.max_rel;
        if (part.max_exp > acc.max_exp) acc.max_exp = part.max_exp;
        for (j = 0; j < k; j++)
            if (is_finite(g[j]) && is_finite(e[j])) { se += (g[j] - e[j]) * (g[j] - e[j]); sx += e[j] * e[j]; }
        i += k;
    }
    acc.nmse = sx > 0.0 ? se / sx : (se > 0.0 ? INFINITY : 0.0);
    acc.rel = acc.max_exp > 0.0 ? acc.max_abs / acc.max_exp : (acc.max_abs > 0.0 ? INFINITY : 0.0);
    *m = acc;
}

int metrics_pass(const Metrics *m, double tol) { return m->nonfinite == 0 && m->rel <= tol; }

void metrics_format(char *buf, size_t cap, const Metrics *m, const char *idx_str) {
    if (m->nonfinite)
        snprintf(buf, cap, "NON-FINITE at %lu elements; first at %s: got %.17g expected %.17g",
                 (unsigned long)m->nonfinite, idx_str, m->worst_got, m->worst_exp);
    else
        snprintf(buf, cap, "rel=%.3e max_abs=%.3e max_rel=%.3e nmse=%.3e worst %s: got %.17g expected %.17g",
                 m->rel, m->max_abs, m->max_rel, m->nmse, idx_str, m->worst_got, m->worst_exp);
}

const char *index_str(char *buf, size_t cap, size_t flat, int ndim, const size_t *shape) {
    size_t idx[16], len = 0;
    int i;
    if (ndim <= 0 || ndim > 16) { snprintf(buf, cap, "[%lu]", (unsigned long)flat); return buf; }
    for (i = ndim - 1; i >= 0; i--) {
        size_t s = shape[i] ? shape[i] : 1;
        idx[i] = flat % s;
        flat /= s;
    }
    len += (size_t)snprintf(buf, cap, "(");
    for (i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %lu" : "%lu", (unsigned long)idx[i]);
    if (len < cap) snprintf(buf + len, cap - len, ")");
    return buf;
}
