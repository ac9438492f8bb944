// mavref.h: the element type, error reporting and small helpers shared by every file in ref/.
//
// mavref is built for one element type, chosen at compile time:
//   make                -> float  (MAVREF_PRECISION=32, the default)
//   make PRECISION=64   -> double (MAVREF_PRECISION=64)
// Every tensor, weight and activation uses `real`. Accumulators that must not lose accuracy
// (norm statistics, checks) use `double` explicitly and say so.
#ifndef MAVREF_H
#define MAVREF_H

#include <stddef.h>
#include <stdint.h>

#ifndef MAVREF_PRECISION
#define MAVREF_PRECISION 32
#endif

#if MAVREF_PRECISION == 64
typedef double real;
#define REAL_NAME "float64"
#define REAL_EPS 2.220446049250313e-16
#elif MAVREF_PRECISION == 32
typedef float real;
#define REAL_NAME "float32"
#define REAL_EPS 1.1920928955078125e-07
#else
#error "MAVREF_PRECISION must be 32 or 64"
#endif

// ---------------------------------------------------------------------------------------
// Errors. Library code never exits or aborts: a failing function records one message with
// mv_fail() and returns MV_ERR (or NULL). The caller adds context with mv_fail_prefix() or
// passes the error up; the command line prints mv_error() and exits non-zero.
#define MV_OK 0
#define MV_ERR (-1)

#if defined(__GNUC__)
#define MV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MV_PRINTF(a, b)
#endif

int mv_fail(const char *fmt, ...) MV_PRINTF(1, 2);        // set the message, return MV_ERR
int mv_fail_prefix(const char *fmt, ...) MV_PRINTF(1, 2); // prepend "<context>: ", return MV_ERR
const char *mv_error(void);                                // the last message ("" if none)
void mv_clear_error(void);
// A failed allocation sets its message with mv_fail_oom (mv_malloc and mv_calloc do): the
// command line then knows the machine, not the input, is at fault (exit status 1, not 2).
// mv_fail clears the mark; mv_fail_prefix keeps it.
int mv_fail_oom(const char *fmt, ...) MV_PRINTF(1, 2);
int mv_error_is_oom(void);

// Overflow-checked size arithmetic: return 0 and set *out, or MV_ERR with a message.
int mv_mul_size(size_t *out, size_t a, size_t b);
int mv_add_size(size_t *out, size_t a, size_t b);

// Parse "a,b,c" (1..max positive integers up to 100000, e.g. block_out_channels) into out.
// Returns the count, or -1 for anything else (empty, too many, not a number, trailing text).
int mv_parse_int_list(const char *s, int *out, int max);

// malloc/calloc that record a message naming `what` on failure (and refuse n == 0 quietly
// by allocating one byte, so a NULL always means failure).
void *mv_malloc(size_t bytes, const char *what);
void *mv_calloc(size_t count, size_t size, const char *what);

#endif
