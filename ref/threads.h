// threads.h: a small fixed pool of worker threads and parallel_for.
//
// Built with pthreads when MAVREF_THREADS is defined (the default `make`); with `make THREADS=0`
// the same functions exist and every task runs on the calling thread.
//
// Determinism: parallel_for only decides WHICH thread runs a task, never what a task computes.
// Operators split their work into tasks that each write a disjoint part of the output and
// compute it in a fixed order, so results are bit-identical for any thread count.
#ifndef MAVREF_THREADS_H
#define MAVREF_THREADS_H

#include "mavref.h"

// A task: fn(ctx, task, worker) with 0 <= task < n_tasks. `worker` is the index of the
// thread running it (0 = the caller), 0 <= worker < the worker count of the call, so a task
// may use per-worker scratch memory. Tasks must not depend on which worker runs them.
typedef void (*TaskFn)(void *ctx, size_t task, int worker);

// The thread count used by parallel_for. Until threads_set() is called it is the value of
// the environment variable MAVREF_THREADS (a positive integer), or, if that is unset or
// malformed, the number of online processors (1 where that cannot be found portably).
// Always 1 in a build without MAVREF_THREADS.
int threads_count(void);

// Set the thread count; n <= 0 restores the default above. Counts above THREADS_MAX are cut
// to it. Not to be called while another thread is inside parallel_for.
void threads_set(int n);
#define THREADS_MAX 256

// Run fn for every task in 0..n_tasks-1 on up to threads_count() threads (the caller
// included) and return when all are done. Worker indices are < threads_count().
// A call made from inside a task, or while another parallel_for is running, runs all of
// its tasks on the calling thread (worker index 0).
void parallel_for(size_t n_tasks, TaskFn fn, void *ctx);

// The same with at most max_workers threads; worker indices are < max_workers (>= 1).
void parallel_for_max(size_t n_tasks, int max_workers, TaskFn fn, void *ctx);

// Split [0, n) into consecutive ranges of `grain` items (the last one shorter) and run
// fn(ctx, begin, end) for each range on the pool: for loops whose items are independent
// (elementwise work, rows of a norm), each range written by one task. The split depends on
// n and grain only, never on the thread count.
typedef void (*RangeFn)(void *ctx, size_t begin, size_t end);
void parallel_range(size_t n, size_t grain, RangeFn fn, void *ctx);

// Stop and join the worker threads (they are started again on the next parallel_for).
void threads_shutdown(void);

#endif
