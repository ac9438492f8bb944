// activations.h: element-wise activations and the GEGLU gate of the transformer feed-forward.
#ifndef MAVREF_ACTIVATIONS_H
#define MAVREF_ACTIVATIONS_H

#include "mavref.h"

// Which GELU: Flax's nn.gelu is jax.nn.gelu(approximate=True), the tanh form; the PyTorch
// port (and jax.nn.gelu(approximate=False)) uses the exact erf form.
typedef enum { GELU_TANH = 0, GELU_ERF = 1 } GeluKind;

// Scalar forms, evaluated in double (the element-wise functions below use them in the float64
// build; the float32 build evaluates the same functions in float, see activations.c):
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
// geglu_forward runs on blocks of rows as matrix products (ref/gemm.c); geglu_forward_ref is
// the plain loop (one row at a time with an H-element scratch row), the readable path that
// tests check the fast one against. MV_ERR only if the plain path's allocation fails.
int geglu_forward_ref(real *out, const real *x, const real *kernel, const real *bias,
                      size_t N, size_t C, size_t H, GeluKind kind); // as geglu_forward
int geglu_forward(real *out,                               // (N,H)
                  const real *x,                           // (N,C)
                  const real *kernel, const real *bias,    // (C,2H) (2H)
                  size_t N, size_t C, size_t H, GeluKind kind);

// ---------------------------------------------------------------------------------------
// Backward passes (SPEC.md section 4.8). They ACCUMULATE (+=) into the gradient buffers.

// Derivatives, evaluated in double:
//   silu'(x)      = s (1 + x (1 - s)),  s = sigmoid(x)
//   gelu_tanh'(x) = c + x (1 - t^2)/2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2),
//                   t = tanh(sqrt(2/pi) (x + 0.044715 x^3)), c = (1 + t)/2
//   gelu_erf'(x)  = Phi(x) + x phi(x)     (standard normal cdf and density)
double silu_grad_scalar(double x);
double gelu_grad_scalar(double x, GeluKind kind);

// dx[i] += dout[i] * f'(x[i]); x is the forward's input.
void silu_backward(real *dx, const real *dout, const real *x, size_t n);                 // (n) (n) (n)
void gelu_backward(real *dx, const real *dout, const real *x, size_t n, GeluKind kind);  // (n) (n) (n)

// GEGLU backward. No cache: the projection p = [a | g] is recomputed one row at a time.
//   dp[:, :H] = dout * gelu(g),  dp[:, H:] = dout * a * gelu'(g)
//   dbias += sum_n dp,  dkernel += x^T dp,  dx += dp kernel^T
// dx, dkernel, dbias may each be NULL. MV_ERR only if the plain path's 4H-element row scratch
// cannot be had (the fast path falls back to the plain one when its block scratch cannot).
int geglu_backward_ref(real *dx, real *dkernel, real *dbias, const real *dout, const real *x,
                       const real *kernel, const real *bias, size_t N, size_t C, size_t H,
                       GeluKind kind); // the plain loop, as geglu_backward
int geglu_backward(real *dx,                               // (N,C) or NULL
                   real *dkernel, real *dbias,             // (C,2H) (2H), or NULL
                   const real *dout,                       // (N,H)
                   const real *x,                          // (N,C)
                   const real *kernel, const real *bias,   // (C,2H) (2H)
                   size_t N, size_t C, size_t H, GeluKind kind);

#endif
