// linear.h: the dense (fully connected) layer, as flax.linen.Dense computes it.
#ifndef MAVREF_LINEAR_H
#define MAVREF_LINEAR_H

#include "mavref.h"

// out[n,o] = bias[o] + sum_i x[n,i] * kernel[i,o]      (Flax kernel layout: (in, out))
// Any leading axes are folded into N. out must not overlap x.
void linear_forward(real *out,           // (N,O)
                    const real *x,       // (N,I)
                    const real *kernel,  // (I,O)
                    const real *bias,    // (O) or NULL
                    size_t N, size_t I, size_t O);

#endif
