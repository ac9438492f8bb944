// conv.h: 2-D convolution (NHWC input, HWIO kernel) and the temporal 1-D convolution.
#ifndef MAVREF_CONV_H
#define MAVREF_CONV_H

#include "mavref.h"

// Padding and stride of a 2-D convolution. Output size: Ho = (H + top + bottom - KH)/stride + 1.
typedef struct {
    size_t KH, KW;
    size_t stride;
    size_t pad_top, pad_bottom, pad_left, pad_right;
} Conv2dGeom;

// Output height/width for the geometry; MV_ERR if the kernel does not fit the padded input.
int conv2d_out_size(size_t *Ho, size_t *Wo, size_t H, size_t W, const Conv2dGeom *g);

// Cross-correlation as flax.linen.Conv / lax.conv_general_dilated compute it:
//   out[n,i,j,o] = bias[o] + sum_{kh,kw,c} in[n, i*s+kh-pt, j*s+kw-pl, c] * kernel[kh,kw,c,o]
// with zeros outside the input.
void conv2d_forward(real *out,              // (N,Ho,Wo,Co)
                    const real *in,         // (N,H,W,Ci)
                    const real *kernel,     // (KH,KW,Ci,Co)
                    const real *bias,       // (Co) or NULL
                    size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g);

// Temporal convolution of ConvPseudo3D: a flax nn.Conv(kernel_size=(3,), padding='SAME') run on
// every pixel's frame sequence ((B,F,S,C) viewed as (B*S, F, C), S = H*W):
//   out[b,f,s,o] = bias[o] + sum_{k=0..2} sum_c in[b, f+k-1, s, c] * kernel[k,c,o]
// with zero frames outside 0..F-1 (so F = 1 keeps only the centre tap). out must not overlap in.
void temporal_conv_forward(real *out,            // (B,F,S,Co)
                           const real *in,       // (B,F,S,Ci)
                           const real *kernel,   // (3,Ci,Co)
                           const real *bias,     // (Co) or NULL
                           size_t B, size_t F, size_t S, size_t Ci, size_t Co);

// ConvPseudo3D (upstream flax_resnet_pseudo3d.py): spatial conv2d on every frame (the (B,F) axes
// folded into N = B*F), then the temporal conv (kernel 3, Co -> Co) across frames:
//   work = conv2d(in; spatial_kernel, spatial_bias, g)              (B,F,Ho,Wo,Co)
//   out  = temporal_conv(work; temporal_kernel, temporal_bias)     (B,F,Ho,Wo,Co)
// `work` is caller-provided scratch of the output's size. MV_ERR if the geometry does not fit.
int conv_pseudo3d_forward(real *out,                   // (B,F,Ho,Wo,Co)
                          real *work,                  // (B,F,Ho,Wo,Co) scratch
                          const real *in,              // (B,F,H,W,Ci)
                          const real *spatial_kernel,  // (KH,KW,Ci,Co)
                          const real *spatial_bias,    // (Co) or NULL
                          const real *temporal_kernel, // (3,Co,Co)
                          const real *temporal_bias,   // (Co) or NULL
                          size_t B, size_t F, size_t H, size_t W, size_t Ci, size_t Co,
                          const Conv2dGeom *g);

#endif
