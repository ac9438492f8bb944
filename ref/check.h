// check.h: `mavref check`, the golden corpus as a conformance suite for another backend.
//
//   mavref check --backend 'CMD {case} {out}' [--vectors DIR] [--ops GLOB] [--cases TEXT]
//                [--level quick|full] [--precision 32|64] [--timeout S] [--workdir DIR]
//
// For every selected case of vectors/contract.json (tools/contract.py) it runs the backend's
// adapter with {case} replaced by the case file and {out} by a path for the adapter's
// outputs (safetensors, one tensor per output the contract lists, under the output's name),
// then compares each output with the expected tensor (ref/compare.c metrics; pass when
// max|got-exp| <= tol * max|exp|, tol from the manifest unless the case states one per
// output). One line per case, a table per op, exit 1 on any failure, 2 on bad usage.
//
// This file belongs to the command, not to the library: it starts processes through the
// shell (C99 system()) under coreutils `timeout`, and decodes the status with POSIX
// <sys/wait.h>. The Makefile links it into `mavref` only.
#ifndef MAVREF_CHECK_H
#define MAVREF_CHECK_H

// argv holds the options after `check`. Returns the process exit status.
int check_main(int argc, char **argv);

#endif
