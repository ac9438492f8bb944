// upsample.h: nearest-neighbour resizing, as jax.image.resize(..., method='nearest').
#ifndef MAVREF_UPSAMPLE_H
#define MAVREF_UPSAMPLE_H

#include "mavref.h"

// out[n,i,j,:] = in[n, src(i,H,Ho), src(j,W,Wo), :] with src(i, in, out) = floor((i + 0.5) * in / out),
// computed exactly in integers as ((2i + 1) * in) / (2 * out). For Ho = 2H this is i / 2.
// Any frame axis is folded into N (the UNet upsampler resizes every frame alike).
void resize_nearest_forward(real *out,       // (N,Ho,Wo,C)
                            const real *in,  // (N,H,W,C)
                            size_t N, size_t H, size_t W, size_t Ho, size_t Wo, size_t C);

// The UNet's 2x upsampler: resize_nearest_forward with Ho = 2H, Wo = 2W.
void upsample_nearest2x_forward(real *out,       // (N,2H,2W,C)
                                const real *in,  // (N,H,W,C)
                                size_t N, size_t H, size_t W, size_t C);

// Backward (SPEC.md section 4.10), ACCUMULATING (+=): every output pixel's gradient is added to the
// input pixel it was copied from, dinp[n,src(i),src(j),:] += dout[n,i,j,:] (for 2x: the sum of 4).
void resize_nearest_backward(real *dinp,        // (N,H,W,C)
                             const real *dout,  // (N,Ho,Wo,C)
                             size_t N, size_t H, size_t W, size_t Ho, size_t Wo, size_t C);
void upsample_nearest2x_backward(real *dinp,        // (N,H,W,C)
                                 const real *dout,  // (N,2H,2W,C)
                                 size_t N, size_t H, size_t W, size_t C);

#endif
