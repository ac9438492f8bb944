// groupnorm.h: group normalization, as flax.linen.GroupNorm computes it.
#ifndef MAVREF_GROUPNORM_H
#define MAVREF_GROUPNORM_H

#include "mavref.h"

// x is viewed as (N, S, C): N independent samples, S positions, C channels split into G
// groups of C/G. Statistics of each (n, g) run over all S positions and the C/G channels.
//   resnet / conv_norm_out (B,F,H,W,C): N = B,   S = F*H*W  (statistics over all frames)
//   transformer            (B,F,H,W,C): N = B*F, S = H*W    (statistics per frame)
// mean and rstd (N, G) are kept for the backward pass; either may be NULL.
void groupnorm_forward(real *out, real *mean, real *rstd,          // (N,S,C) (N,G) (N,G)
                       const real *x,                              // (N,S,C)
                       const real *scale, const real *bias,        // (C) (C)
                       size_t N, size_t S, size_t C, size_t G, double eps);

// The readable path: the same sums in the same order, one group after another, one thread.
// groupnorm_forward gives exactly its bits (it only spreads the groups and rows over threads).
void groupnorm_forward_ref(real *out, real *mean, real *rstd, const real *x, const real *scale, const real *bias,
                           size_t N, size_t S, size_t C, size_t G, double eps); // as groupnorm_forward

// Backward (SPEC.md section 4.2), ACCUMULATING (+=) into dx, dscale, dbias (each may be NULL),
// from the forward's mean and rstd (pass the buffers groupnorm_forward filled):
//   xhat = (x - mean) * rstd,  dxhat = dout * scale
//   dx += rstd * (dxhat - E_g[dxhat] - xhat * E_g[dxhat * xhat])   (E_g: mean over the group)
//   dscale[c] += sum_{n,s} dout * xhat,  dbias[c] += sum_{n,s} dout
void groupnorm_backward(real *dx, real *dscale, real *dbias,      // (N,S,C) (C) (C)
                        const real *dout,                          // (N,S,C)
                        const real *x, const real *scale,          // (N,S,C) (C)
                        const real *mean, const real *rstd,        // (N,G) (N,G)
                        size_t N, size_t S, size_t C, size_t G);

#endif
