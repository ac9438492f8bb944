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
// The *_ref functions are the plain loops (ref/conv.c), the readable path that tests check the
// fast one against; conv2d_forward and temporal_conv_forward run the same sums as matrix
// products (ref/conv_fast.c, ref/gemm.c), or the *_ref loops where engine_reference() (engine.h).
void conv2d_forward_ref(real *out, const real *in, const real *kernel, const real *bias,
                        size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g);
void temporal_conv_forward_ref(real *out, const real *in, const real *kernel, const real *bias,
                               size_t B, size_t F, size_t S, size_t Ci, size_t Co);
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

// ---------------------------------------------------------------------------------------
// Backward passes (SPEC.md sections 4.3-4.5). Each ACCUMULATES (+=) into its gradient buffers, which
// the caller zeroes once per step; every gradient pointer may be NULL (gradient not wanted,
// e.g. a frozen weight). dout is the gradient of the loss with respect to `out`.

// The *_ref functions are the plain loops (same arguments), the readable path;
// conv2d_backward and temporal_conv_backward run as matrix products (ref/conv_fast.c).
void conv2d_backward_ref(real *dinp, real *dkernel, real *dbias, const real *dout, const real *inp,
                         const real *kernel, size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g);
void temporal_conv_backward_ref(real *dinp, real *dkernel, real *dbias, const real *dout, const real *inp,
                                const real *kernel, size_t B, size_t F, size_t S, size_t Ci, size_t Co);

// Gradients of conv2d_forward:
//   dinp[n,i*s+kh-pt,j*s+kw-pl,c] += sum_o dout[n,i,j,o] * kernel[kh,kw,c,o]
//   dkernel[kh,kw,c,o] += sum_{n,i,j} in[n,i*s+kh-pt,j*s+kw-pl,c] * dout[n,i,j,o]
//   dbias[o] += sum_{n,i,j} dout[n,i,j,o]
void conv2d_backward(real *dinp,          // (N,H,W,Ci) or NULL
                     real *dkernel,       // (KH,KW,Ci,Co) or NULL
                     real *dbias,         // (Co) or NULL
                     const real *dout,    // (N,Ho,Wo,Co)
                     const real *inp,     // (N,H,W,Ci)
                     const real *kernel,  // (KH,KW,Ci,Co)
                     size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g);

// Gradients of temporal_conv_forward (zero frames outside 0..F-1 receive nothing).
void temporal_conv_backward(real *dinp,          // (B,F,S,Ci) or NULL
                            real *dkernel,       // (3,Ci,Co) or NULL
                            real *dbias,         // (Co) or NULL
                            const real *dout,    // (B,F,S,Co)
                            const real *inp,     // (B,F,S,Ci)
                            const real *kernel,  // (3,Ci,Co)
                            size_t B, size_t F, size_t S, size_t Ci, size_t Co);

// Gradients of conv_pseudo3d_forward. The cache is `work`, the spatial conv's output that
// conv_pseudo3d_forward leaves in its scratch buffer (keep it). dwork is scratch of the same
// size (overwritten: it is zeroed here). MV_ERR if the geometry does not fit.
int conv_pseudo3d_backward(real *dinp,                   // (B,F,H,W,Ci) or NULL
                           real *dspatial_kernel,        // (KH,KW,Ci,Co) or NULL
                           real *dspatial_bias,          // (Co) or NULL
                           real *dtemporal_kernel,       // (3,Co,Co) or NULL
                           real *dtemporal_bias,         // (Co) or NULL
                           real *dwork,                  // (B,F,Ho,Wo,Co) scratch
                           const real *dout,             // (B,F,Ho,Wo,Co)
                           const real *inp,              // (B,F,H,W,Ci)
                           const real *work,             // (B,F,Ho,Wo,Co) the forward's spatial output
                           const real *spatial_kernel,   // (KH,KW,Ci,Co)
                           const real *temporal_kernel,  // (3,Co,Co)
                           size_t B, size_t F, size_t H, size_t W, size_t Ci, size_t Co,
                           const Conv2dGeom *g);

#endif
