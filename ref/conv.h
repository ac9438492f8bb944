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

#endif
