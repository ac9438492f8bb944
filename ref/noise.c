// noise.c: the portable Gaussian generator and noise files (noise.h, SPEC.md section 8.7).
//
// Bit-for-bit reproducibility needs IEEE-754 binary64 arithmetic rounded to nearest,
// evaluated at its own precision (FLT_EVAL_METHOD 0, as on every SSE2/NEON target), and no
// contraction of a*b+c into a fused multiply-add: every multiply and add below is its own
// statement, because C99 allows contraction only inside one expression.
#include "noise.h"
#include "procedural.h"
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// C99 lets a compiler fuse a*b+c within one expression (clang does by default where the target
// has FMA; GCC in ISO mode never does and rejects the pragma): results must not depend on it.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define LOG_TERMS 12  // atanh series: c_j = 1/(2j+1), j < 12
#define TRIG_TERMS 11 // Taylor series of sin and cos up to a^21 and a^20

static const double LN2 = 0x1.62e42fefa39efp-1;
static const double SQRT_HALF = 0x1.6a09e667f3bcdp-1;
static const double HALF_PI = 0x1.921fb54442d18p+0;

double noise_log01(double x) {
    double m, e, f, d, s, z, p, t, lnm, el;
    int ei, j;
    m = frexp(x, &ei); // x = m 2^ei, m in [0.5, 1)
    e = (double)ei;
    if (m < SQRT_HALF) { m = m * 2.0; e = e - 1.0; } // m in [sqrt(1/2), sqrt(2))
    f = m - 1.0;
    d = m + 1.0;
    s = f / d;
    z = s * s;
    // ln m = 2 atanh(s) = 2 s (1 + z/3 + z^2/5 + ...), Horner from the highest term
    p = 1.0 / (double)(2 * (LOG_TERMS - 1) + 1);
    for (j = LOG_TERMS - 2; j >= 0; j--) {
        double c = 1.0 / (double)(2 * j + 1);
        p = p * z;
        p = p + c;
    }
    t = s * p;
    lnm = t + t;
    el = e * LN2;
    return el + lnm;
}

void noise_sincos_turn(double u, double *c, double *s) {
    double fact[2 * TRIG_TERMS + 1], sin_c[TRIG_TERMS], cos_c[TRIG_TERMS];
    double v, k, w, a, a2, ps, pc, sa, ca;
    int j, q;
    fact[0] = 1.0;
    for (j = 1; j <= 2 * TRIG_TERMS; j++) fact[j] = fact[j - 1] * (double)j; // exact up to 22!
    for (j = 0; j < TRIG_TERMS; j++) {
        double sign = (j % 2) ? -1.0 : 1.0;
        sin_c[j] = sign / fact[2 * j + 1];
        cos_c[j] = sign / fact[2 * j];
    }
    v = u * 4.0;          // quarter turns (exact)
    k = floor(v + 0.5);   // nearest quarter
    w = v - k;            // in [-1/2, 1/2], exact
    a = w * HALF_PI;      // |a| <= pi/4
    a2 = a * a;
    ps = sin_c[TRIG_TERMS - 1];
    pc = cos_c[TRIG_TERMS - 1];
    for (j = TRIG_TERMS - 2; j >= 0; j--) {
        ps = ps * a2;
        ps = ps + sin_c[j];
        pc = pc * a2;
        pc = pc + cos_c[j];
    }
    sa = a * ps;
    ca = pc;
    q = (int)k % 4; // k in 0..4
    switch (q) {
    case 0: *c = ca; *s = sa; break;
    case 1: *c = -sa; *s = ca; break;
    case 2: *c = -ca; *s = -sa; break;
    default: *c = sa; *s = -ca; break;
    }
}

// Pair k of the stream: z[2k] and z[2k+1].
static void normal_pair(uint64_t key, uint64_t k, double *z0, double *z1) {
    uint64_t a = proc_splitmix64(key + 2 * k), b = proc_splitmix64(key + 2 * k + 1);
    double u1 = (double)((a >> 11) + 1) * (1.0 / 9007199254740992.0); // (0, 1]
    double u2 = (double)(b >> 11) * (1.0 / 9007199254740992.0);       // [0, 1)
    double L = noise_log01(u1);
    double r = sqrt(-2.0 * L);
    double c, s;
    noise_sincos_turn(u2, &c, &s);
    *z0 = r * c;
    *z1 = r * s;
}

void noise_normal_f64(double *out, size_t n, uint64_t seed, const char *stream) {
    uint64_t key = proc_splitmix64(seed ^ proc_fnv1a64(stream));
    size_t i;
    for (i = 0; i < n; i += 2) {
        double z0, z1;
        normal_pair(key, (uint64_t)(i / 2), &z0, &z1);
        out[i] = z0;
        if (i + 1 < n) out[i + 1] = z1; // an odd n drops the last sine
    }
}

int noise_normal(real *out, size_t n, uint64_t seed, const char *stream) {
    uint64_t key = proc_splitmix64(seed ^ proc_fnv1a64(stream));
    size_t i;
    for (i = 0; i < n; i += 2) {
        double z0, z1;
        normal_pair(key, (uint64_t)(i / 2), &z0, &z1);
        out[i] = (real)z0;
        if (i + 1 < n) out[i + 1] = (real)z1;
    }
    return MV_OK;
}

int noise_read(Tensor *out, const char *path, const char *name, int ndim, const size_t *shape) {
    StFile f;
    const StEntry *e;
    int d, ok;
    char a[128], b[128];
    memset(out, 0, sizeof *out);
    if (st_open(&f, path)) return MV_ERR;
    e = st_find(&f, name);
    if (!e) {
        st_close(&f);
        return mv_fail("%s: noise tensor '%s' is missing", path, name);
    }
    ok = e->ndim == ndim;
    for (d = 0; ok && d < ndim; d++) ok = e->shape[d] == shape[d];
    if (!ok) {
        mv_fail("%s: noise tensor '%s' has shape %s, expected %s", path, name,
                shape_str(a, sizeof a, e->ndim, e->shape), shape_str(b, sizeof b, ndim, shape));
        st_close(&f);
        return MV_ERR;
    }
    d = st_read(&f, name, out);
    st_close(&f);
    return d;
}
