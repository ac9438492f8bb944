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
// Part of the command layer (ref/cli.c calls it), not of the operators: it starts processes
// through the shell (C99 system()) under coreutils `timeout` and decodes their status with
// POSIX <sys/wait.h>, behind an #if; without POSIX it reports that it cannot run.
#ifndef MAVREF_CHECK_H
#define MAVREF_CHECK_H

#include <stdio.h>

typedef struct {
    const char *backend;   // "CMD {case} {out}"
    const char *vectors;   // the corpus directory (NULL: "vectors")
    const char *ops;       // comma-separated globs of ops (NULL: "*")
    const char *cases;     // only cases whose name contains this (NULL: all)
    const char *level;     // "quick" or "full" (NULL: "full")
    const char *workdir;   // where outputs and logs go (NULL: a new $TMPDIR/mavref-check-XXXXXX)
    int precision;         // 32 or 64 (0: the build's)
    double timeout;        // seconds per case (0: 600)
} CheckOpts;

// Run the check; lines go to `out`, usage errors to `err`. Returns the exit status:
// 0 every selected case passed, 1 a failure, 2 bad options, unreadable contract, no case.
int check_run(const CheckOpts *o, FILE *out, FILE *err);

#endif
