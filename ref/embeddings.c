// embeddings.c: timestep sinusoid and timestep MLP (forward and backward).
#include "embeddings.h"

#include <math.h>
#include <stdlib.h>

#include "activations.h"
#include "linear.h"

void timestep_sinusoid_forward_f32(real *out, const real *t, size_t N, size_t dim, int flip_sin_to_cos,
                                   double freq_shift) {
    // float32, step by step as diffusers' FlaxTimesteps (the casts round to float32 even where
    // the compiler keeps wider intermediates, C99 6.3.1.8)
    size_t half = dim / 2, n, k;
    float neg_inc = (float)(-log(1.0e4) / ((double)half - freq_shift));
    for (n = 0; n < N; n++) {
        float tn = (float)t[n];
        real *o = out + n * dim;                         // (dim)
        real *first = o, *second = o + half;             // cos|sin (flipped) or sin|cos
        for (k = 0; k < half; k++) {
            float a = (float)((float)k * neg_inc);
            float inv = (float)exp((double)a);
            float e = (float)(tn * inv);
            float c = (float)cos((double)e), s = (float)sin((double)e);
            first[k] = (real)(flip_sin_to_cos ? c : s);
            second[k] = (real)(flip_sin_to_cos ? s : c);
        }
    }
}

void timestep_sinusoid_forward(real *out, const real *t, size_t N, size_t dim, int flip_sin_to_cos,
                               double freq_shift) {
#if MAVREF_PRECISION == 64
    size_t half = dim / 2, n, k;
    // The float64 build computes the sinusoid in double, as the exporter's float64 model does:
    // the float64 vectors prove the math, and float32 rounding here would cap their agreement
    // at ~1e-7 (SPEC.md section 4.11).
    double neg_inc = -(log(1.0e4) / ((double)half - freq_shift));
    for (n = 0; n < N; n++) {
        double tn = (double)t[n];
        real *first = out + n * dim, *second = first + half; // cos|sin (flipped) or sin|cos
        for (k = 0; k < half; k++) {
            double e = tn * exp((double)k * neg_inc);
            first[k] = flip_sin_to_cos ? cos(e) : sin(e);
            second[k] = flip_sin_to_cos ? sin(e) : cos(e);
        }
    }
#else
    timestep_sinusoid_forward_f32(out, t, N, dim, flip_sin_to_cos, freq_shift);
#endif
}

int timestep_embedding_forward(real *out, const real *s,
                               const real *w1, const real *b1, const real *w2, const real *b2,
                               size_t N, size_t Cs, size_t Ct) {
    size_t bytes;
    real *h; // (N,Ct)
    if (mv_mul_size(&bytes, N, Ct) || mv_mul_size(&bytes, bytes, sizeof(real))) return mv_fail_prefix("timestep embedding");
    if (!(h = (real *)mv_malloc(bytes, "timestep embedding hidden"))) return MV_ERR;
    linear_forward(h, s, w1, b1, N, Cs, Ct);
    silu_forward(h, h, N * Ct);
    linear_forward(out, h, w2, b2, N, Ct, Ct);
    free(h);
    return MV_OK;
}

int timestep_embedding_backward(real *ds, real *dw1, real *db1, real *dw2, real *db2,
                                const real *dout, const real *s,
                                const real *w1, const real *b1, const real *w2,
                                size_t N, size_t Cs, size_t Ct) {
    // No cache: the hidden layer is recomputed. Buffers: h (pre-activation), a = silu(h), da, dh.
    size_t n;
    real *h, *a, *da, *dh; // (N,Ct) each
    if (mv_mul_size(&n, N, Ct) || mv_mul_size(&n, n, 4)) return mv_fail_prefix("timestep embedding backward");
    if (!(h = (real *)mv_calloc(n, sizeof(real), "timestep embedding backward"))) return MV_ERR;
    n /= 4;
    a = h + n; da = a + n; dh = da + n; // calloc: da and dh start at zero
    linear_forward(h, s, w1, b1, N, Cs, Ct);
    silu_forward(a, h, n);
    // forward was: out = linear_2(a), so da = dout w2^T, dw2 += a^T dout, db2 += sum dout
    linear_backward(da, dw2, db2, dout, a, w2, N, Ct, Ct);
    // forward was: a = silu(h), so dh = da * silu'(h)
    silu_backward(dh, da, h, n);
    // forward was: h = linear_1(s), so ds += dh w1^T, dw1 += s^T dh, db1 += sum dh
    linear_backward(ds, dw1, db1, dh, s, w1, N, Cs, Ct);
    free(h);
    return MV_OK;
}
