// layernorm.h: layer normalization over the last axis, as flax.linen.LayerNorm computes it.
#ifndef MAVREF_LAYERNORM_H
#define MAVREF_LAYERNORM_H

#include "mavref.h"

// For each of the N rows of C values:
//   mean = E[x], var = max(E[x^2] - mean^2, 0)          (Flax's fast variance)
//   out  = (x - mean) * (rsqrt(var + eps) * scale) + bias
// eps is 1e-5 in the UNet transformer (and in CLIP). mean and rstd (N) are kept for a
// backward pass; either may be NULL. out may equal x.
void layernorm_forward(real *out, real *mean, real *rstd,    // (N,C) (N) (N)
                       const real *x,                        // (N,C)
                       const real *scale, const real *bias,  // (C) (C)
                       size_t N, size_t C, double eps);

// The readable path: the same loop on one thread (layernorm_forward runs blocks of rows as
// parallel tasks and gives exactly its bits).
void layernorm_forward_ref(real *out, real *mean, real *rstd, const real *x, const real *scale, const real *bias,
                           size_t N, size_t C, double eps); // as layernorm_forward

// Backward (SPEC.md section 4.6), ACCUMULATING (+=) into dx, dscale, dbias (each may be NULL),
// from the forward's mean and rstd: groupnorm_backward with one group per row.
void layernorm_backward(real *dx, real *dscale, real *dbias,   // (N,C) (C) (C)
                        const real *dout,                       // (N,C)
                        const real *x, const real *scale,       // (N,C) (C)
                        const real *mean, const real *rstd,     // (N) (N)
                        size_t N, size_t C);

#endif
