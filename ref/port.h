// port.h: the few things C99 leaves to the platform, done the same way everywhere.
//
// Linux hides them; Windows (LLP64, msvcrt), WebAssembly and old C libraries do not:
//   - fseek takes a `long`, 32 bits on Windows and on every 32-bit system, but model files
//     are larger than 4 GiB;
//   - rename() onto an existing file fails on Windows, but every output is written to
//     NAME.tmp and then renamed over NAME;
//   - libm's fma is not correctly rounded everywhere (mingw-w64 10 computes fmaf with
//     float products and fma in pieces), but the scheduler's results depend on it bit for bit.
#ifndef MAVREF_PORT_H
#define MAVREF_PORT_H

#include <stdint.h>
#include <stdio.h>

// Move to byte `off` from the start of a binary stream; 0, or MV_ERR (errno as set by the C
// library). Positions past 4 GiB work on every platform mavref is tested on.
int mv_seek(FILE *fp, uint64_t off);

// Rename `from` to `to`, replacing `to` if it exists; 0, or MV_ERR with errno set.
// POSIX rename() replaces atomically. On Windows this is MoveFileEx with
// MOVEFILE_REPLACE_EXISTING: one call, never a moment without a file named `to`.
int mv_replace_file(const char *from, const char *to);

// Fused multiply-add x*y + z with one rounding (to nearest, ties to even), computed with
// integer arithmetic so that it does not depend on the C library's fma/fmaf.
double mv_fma(double x, double y, double z);
float mv_fmaf(float x, float y, float z);

#endif
