// harness.h: mavref's bundled test harness.
//
// Two kinds of test, both listed in one place (tests/registry.c):
//  - unit tests: a function returning 0 on success; each failure prints a FAIL line;
//  - corpus cases: one line of vectors/manifest.txt each, run by the runner registered for
//    the line's operator. A runner reads inputs from the case's safetensors file, computes
//    with ref/, and checks every output with case_check(), which prints the metrics.
// The run ends with "N passed, N failed" and exits non-zero on any failure.
#ifndef MAVREF_HARNESS_H
#define MAVREF_HARNESS_H

#include "../ref/compare.h"
#include "../ref/safetensors.h"
#include "../ref/tensor.h"

typedef struct {
    const char *name;  // manifest case name
    const char *op;    // operator or part
    const char *path;  // vector file
    double tol;        // relative tolerance from the manifest
    StFile vec;        // the opened vector file
    int checks;        // case_check calls made
    int failed;        // failing checks and errors
} Case;

typedef int (*UnitFn)(void);
typedef int (*CaseFn)(Case *c);

typedef struct { const char *name; UnitFn fn; } UnitTest;
// min_cases: the corpus must hold at least this many cases of the op per precision,
// so that a shrunken manifest fails the run.
typedef struct { const char *op; CaseFn fn; int min_cases; } CaseRunner;

extern const UnitTest unit_tests[];
extern const size_t n_unit_tests;
// Unit tests too slow for the quick level: run by `make test` (level full), not by the emulated
// cross tests (level quick).
extern const char *const full_level_tests[];
extern const size_t n_full_level_tests;
extern const CaseRunner case_runners[];
extern const size_t n_case_runners;

// Print a failure line "FAIL <where>: <message>".
void harness_failf(const char *where, const char *fmt, ...) MV_PRINTF(2, 3);
// Unit-test assertion helper: prints and returns 1 if !cond.
#define EXPECT(cond, ...) ((cond) ? 0 : (harness_failf(__func__, __VA_ARGS__), 1))

// Read a tensor of the case's file; on error print a FAIL line, count it, return MV_ERR.
int case_read(Case *c, const char *tensor, Tensor *t);
// Read an input: from the file, or regenerated from its `gen.NAME` metadata when the
// exporter made it procedurally (ref/procedural.h). Errors are reported like case_read.
int case_input(Case *c, const char *tensor, Tensor *t);
// Read metadata; on a missing or malformed key print a FAIL line, return MV_ERR.
int case_meta_long(Case *c, const char *key, long *out);
int case_meta_double(Case *c, const char *key, double *out);
const char *case_meta_str(Case *c, const char *key); // NULL and a FAIL line if absent
const char *case_meta_opt(Case *c, const char *key); // NULL if absent, silently
// A network parameter (not read through case_input) under MAVREF_PERTURB's neg / transpose.
void case_perturb_param(Case *c, const char *name, Tensor *t);
// Compare `got` with the case's tensor `expected_name`: prints "ok"/"FAIL" with metrics.
// Returns 0 on pass, 1 on failure.
int case_check(Case *c, const char *expected_name, const Tensor *got);
// Report an ref/ error (mv_error()) as a failure of this case.
int case_error(Case *c, const char *what);

// 1 while `run_tests --run-case` captures outputs instead of comparing them (tests/main.c).
int harness_capturing(void);
// argv[0] of run_tests, to find the binaries next to it (tests/test_check.c).
extern const char *harness_argv0;

// The tensors a runner reads or allocates, freed together. The runners' one cleanup idiom:
// everything a runner owns starts empty (`Bag b = {0};`, zeroed structs), every exit after
// the first allocation goes through one label `out:`, which frees it all (bag_free(&b)).
#define BAG_MAX 24
typedef struct {
    Tensor t[BAG_MAX];
    int n;
} Bag;
// Input `name` (stored or procedural, as case_input) in the bag; NULL and a FAIL line on error.
Tensor *bag_input(Case *c, Bag *b, const char *name);
// A zero-filled tensor in the bag (an output, or a gradient buffer as a backward expects it).
Tensor *bag_alloc(Case *c, Bag *b, int ndim, const size_t *shape);
Tensor *bag_alloc_like(Case *c, Bag *b, const Tensor *like);
void bag_free(Bag *b);

// 0 if tensor `what` has rank ndim, else a FAIL line and 1.
int case_expect_rank(Case *c, const Tensor *t, const char *what, int ndim);
// In a runner whose case is `c`: 0 if `call` (tensor_expect_shape or any ref/ call) returned
// MV_OK, else its error as the case's failure and 1.
#define SHAPE(call) ((call) == MV_OK ? 0 : (case_error(c, "shape"), 1))

// 1 if `name` is an element of the comma-separated `list` (meta `zero_grads`, `full`).
int in_list(const char *list, const char *name);

// SHA-256 of a file as 64 lowercase hex chars; MV_ERR if unreadable.
int sha256_file(const char *path, char hex[65]);

#endif
