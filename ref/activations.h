// activations.h: element-wise activations and the GEGLU gate of the transformer feed-forward.
#ifndef MAVREF_ACTIVATIONS_H
#define MAVREF_ACTIVATIONS_H

#include "mavref.h"

// Which GELU: Flax's nn.gelu is jax.nn.gelu(approximate=True), the tanh form; the PyTorch
// port (and jax.nn.gelu(approximate=False)) uses the exact erf form.
typedef enum { GELU_TANH = 0, GELU_ERF = 1 } GeluKind;

// Scalar forms, evaluated in double:
//   silu(x)       = x * sigmoid(x)
//   gelu_tanh(x)  = x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//   gelu_erf(x)   = 0.5 * x * erfc(-x / sqrt(2))
//   quick_gelu(x) = x * sigmoid(1.702 x)                 (CLIP)
double silu_scalar(double x);
double gelu_scalar(double x, GeluKind kind);
double quick_gelu_scalar(double x);

// out[i] = f(x[i]); out may equal x.
void silu_forward(real *out, const real *x, size_t n);                 // (n) (n)
void gelu_forward(real *out, const real *x, size_t n, GeluKind kind);  // (n) (n)
void quick_gelu_forward(real *out, const real *x, size_t n);           // (n) (n)

// GEGLU (the first half of the transformer feed-forward, ff/net_0):
//   p = x @ kernel + bias        (N, 2H)   kernel (C, 2H): Dense C -> 2H (2H = 8C in the UNet)
//   a = p[:, :H], g = p[:, H:]   the first half is the value, the second the gate
//   out = a * gelu(g)            (N, H)
// Works one row at a time with an H-element scratch row; MV_ERR only if that allocation fails.
int geglu_forward(real *out,                               // (N,H)
                  const real *x,                           // (N,C)
                  const real *kernel, const real *bias,    // (C,2H) (2H)
                  size_t N, size_t C, size_t H, GeluKind kind);

#endif
