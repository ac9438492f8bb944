// noise.h: the initial noise of sampling. Two sources:
//   noise_normal: mavref's portable Gaussian generator, defined exactly (SPEC.md section 8.7) so
//                 that any IEEE-754 platform, and tools/noisegen.py, produce the same bits;
//   noise_read:   a tensor from a safetensors file (for instance jax.random.normal's noise,
//                 saved by a script, to replay an upstream run).
//
// Generator (all arithmetic IEEE binary64, one rounding per operation, then cast to real):
//   key  = splitmix64(seed ^ fnv1a64(stream))                  (as ref/procedural.h)
//   pair k = 0, 1, ...:  a = splitmix64(key + 2k),  b = splitmix64(key + 2k + 1)
//     u1 = ((a >> 11) + 1) * 2^-53   in (0, 1]
//     u2 = (b >> 11) * 2^-53         in [0, 1)
//     r  = sqrt(-2 ln u1),  z[2k] = r cos(2 pi u2),  z[2k+1] = r sin(2 pi u2)
// with ln, cos and sin evaluated by the fixed polynomial sequences of noise.c (not libm,
// whose last bits vary between platforms). Element i of a row-major tensor is z[i].
#ifndef MAVREF_NOISE_H
#define MAVREF_NOISE_H

#include "tensor.h"

// out[i] = z[i] for i in [0, n), in double (exact generator output).
void noise_normal_f64(double *out, size_t n, uint64_t seed, const char *stream);
// The same values cast to real.
int noise_normal(real *out, size_t n, uint64_t seed, const char *stream);

// The generator's pieces, exposed for tests: ln x for x in (0, 1], and cos/sin of 2 pi u
// for u in [0, 1).
double noise_log01(double x);
void noise_sincos_turn(double u, double *c, double *s);

// Read tensor `name` of a safetensors file into *out (allocated), requiring `ndim` axes of
// the given shape. Errors name the file and the tensor.
int noise_read(Tensor *out, const char *path, const char *name, int ndim, const size_t *shape);

#endif
