// procedural.h: counter-based procedural tensors, identical in C and in the exporter
// (tools/procgen.py), so that real-size cases need not commit their weights.
//
//   fnv1a64(name)   64-bit FNV-1a of the name's bytes
//   splitmix64(z)   z += 0x9e3779b97f4a7c15; z = (z ^ z>>30) * 0xbf58476d1ce4e5b9;
//                   z = (z ^ z>>27) * 0x94d049bb133111eb; return z ^ z>>31
//   key  = splitmix64(seed ^ fnv1a64(name))
//   u_i  = (splitmix64(key + i) >> 11) * 2^-53              in [0, 1), exact in double
//   v_i  = offset + scale * (2 u_i - 1)                      computed in double, then cast
// All arithmetic is unsigned 64-bit (wrapping) or IEEE double, so every platform agrees.
#ifndef MAVREF_PROCEDURAL_H
#define MAVREF_PROCEDURAL_H

#include "mavref.h"

uint64_t proc_fnv1a64(const char *name);
uint64_t proc_splitmix64(uint64_t z);
// Fill out[0..n) with v_i for i = first..first+n-1.
void proc_fill(real *out, size_t n, uint64_t seed, const char *name, double scale, double offset);
// Parse a "SEED SCALE OFFSET D0xD1x..." description (the exporter's `gen.NAME` metadata).
int proc_parse(const char *desc, uint64_t *seed, double *scale, double *offset, int *ndim, size_t *shape);

#endif
