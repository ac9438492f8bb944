// linear.h: the dense (fully connected) layer, as flax.linen.Dense computes it.
#ifndef MAVREF_LINEAR_H
#define MAVREF_LINEAR_H

#include "mavref.h"

// out[n,o] = bias[o] + sum_i x[n,i] * kernel[i,o]      (Flax kernel layout: (in, out))
// Any leading axes are folded into N. out must not overlap x.
// linear_forward runs as a matrix product (ref/gemm.c); linear_forward_ref is the plain loop,
// the readable path that tests check the fast one against. The two differ only in rounding.
void linear_forward_ref(real *out, const real *x, const real *kernel, const real *bias, // (N,O) (N,I) (I,O) (O)
                        size_t N, size_t I, size_t O);
void linear_forward(real *out,           // (N,O)
                    const real *x,       // (N,I)
                    const real *kernel,  // (I,O)
                    const real *bias,    // (O) or NULL
                    size_t N, size_t I, size_t O);

// Backward (SPEC.md section 4.7), ACCUMULATING (+=); dx, dkernel, dbias may each be NULL (x is
// read only for dkernel, so it may be NULL when dkernel is):
//   dx[n,i] += sum_o dout[n,o] * kernel[i,o]
//   dkernel[i,o] += sum_n x[n,i] * dout[n,o]
//   dbias[o] += sum_n dout[n,o]
// linear_backward runs as matrix products; linear_backward_ref is the plain loop.
void linear_backward_ref(real *dx, real *dkernel, real *dbias, const real *dout, const real *x, const real *kernel,
                         size_t N, size_t I, size_t O); // (N,I) (I,O) (O) (N,O) (N,I) (I,O)
void linear_backward(real *dx,            // (N,I) or NULL
                     real *dkernel,       // (I,O) or NULL
                     real *dbias,         // (O) or NULL
                     const real *dout,    // (N,O)
                     const real *x,       // (N,I)
                     const real *kernel,  // (I,O)
                     size_t N, size_t I, size_t O);

#endif
