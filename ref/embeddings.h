// embeddings.h: the UNet's timestep embedding (diffusers FlaxTimesteps + FlaxTimestepEmbedding).
#ifndef MAVREF_EMBEDDINGS_H
#define MAVREF_EMBEDDINGS_H

#include "mavref.h"

// Sinusoidal timestep features. Upstream computes them in float32 (the model casts the
// timesteps to float32 and diffusers builds the frequencies in float32); the float32 build
// follows it step by step:
//   half = dim/2, inc = ln(1e4) / (half - freq_shift)                            (double)
//   a[k] = fl32(k * fl32(-inc)),  inv[k] = fl32(exp(a[k])),  e = fl32(fl32(t) * inv[k])
//   flip_sin_to_cos: out[n] = [cos(e_0..e_{half-1}) | sin(...)], else [sin | cos]
// (cos/sin evaluated in double and rounded to float32): good to float32 precision of the
// argument, about 1e-4 absolute at t = 999, since XLA's float32 exp is not correctly rounded.
// The float64 build evaluates the same formula in double (inv[k] = exp(-k inc), e = t inv[k]),
// as the exporter's float64 model does, so float64 comparisons stay exact (SPEC.md section 4.11).
void timestep_sinusoid_forward(real *out,     // (N,dim)
                               const real *t, // (N)
                               size_t N, size_t dim, int flip_sin_to_cos, double freq_shift);
// The float32 steps above in either build (the float32 build's timestep_sinusoid_forward): the
// float64 build uses it for the corpus' float32-sinusoid cases (SPEC.md section 13.4).
void timestep_sinusoid_forward_f32(real *out, const real *t, size_t N, size_t dim, int flip_sin_to_cos,
                                   double freq_shift);

// The timestep MLP: out = linear_2(silu(linear_1(s))), linear_1: Cs -> Ct, linear_2: Ct -> Ct.
// (UNet: Cs = 320, Ct = 1280.) Allocates an (N,Ct) hidden buffer; MV_ERR if that fails.
int timestep_embedding_forward(real *out,                       // (N,Ct)
                               const real *s,                   // (N,Cs)
                               const real *w1, const real *b1,  // (Cs,Ct) (Ct)
                               const real *w2, const real *b2,  // (Ct,Ct) (Ct)
                               size_t N, size_t Cs, size_t Ct);

// Backward of timestep_embedding_forward (SPEC.md section 4.11), ACCUMULATING (+=) into the
// gradients (each may be NULL). The sinusoid has no parameters and the timestep is an integer
// input, so the chain stops at s: ds (the sinusoid's gradient) is only for tests and is
// normally NULL. No cache: the hidden layer is recomputed (4 (N,Ct) buffers are allocated).
//   h = s w1 + b1, a = silu(h), out = a w2 + b2
//   da = dout w2^T, dw2 += a^T dout, db2 += sum_n dout
//   dh = da * silu'(h), dw1 += s^T dh, db1 += sum_n dh, ds += dh w1^T
int timestep_embedding_backward(real *ds,                        // (N,Cs) or NULL
                                real *dw1, real *db1,            // (Cs,Ct) (Ct)
                                real *dw2, real *db2,            // (Ct,Ct) (Ct)
                                const real *dout,                // (N,Ct)
                                const real *s,                   // (N,Cs)
                                const real *w1, const real *b1,  // (Cs,Ct) (Ct)
                                const real *w2,                  // (Ct,Ct)
                                size_t N, size_t Cs, size_t Ct);

#endif
