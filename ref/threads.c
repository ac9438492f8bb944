// threads.c: the worker pool behind parallel_for (pthreads), or its serial stand-in.
//
// One job runs at a time. The caller publishes (fn, ctx, n_tasks), wakes the workers, and
// takes tasks itself; every thread takes the next unclaimed task index under the mutex
// until none is left. Tasks are coarse (a block of a GEMM output, a group of channels), so
// one lock per task costs nothing measurable.
#ifdef MAVREF_THREADS
#define _POSIX_C_SOURCE 200809L // pthreads, sysconf
#endif

#include "threads.h"

#include <stdlib.h>

#ifdef MAVREF_THREADS
#include <pthread.h>
#include <unistd.h>
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h> // GetSystemInfo: Windows has no sysconf
#endif
#endif

static int g_count = 0; // 0 = not decided yet (see threads_count)

#ifdef MAVREF_THREADS
static int processors_online(void) {
#if defined(_SC_NPROCESSORS_ONLN)
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > 0) return n > THREADS_MAX ? THREADS_MAX : (int)n;
#elif defined(_WIN32)
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    if (si.dwNumberOfProcessors > 0) return si.dwNumberOfProcessors > THREADS_MAX ? THREADS_MAX : (int)si.dwNumberOfProcessors;
#endif
    return 1;
}

static int default_count(void) {
    const char *e = getenv("MAVREF_THREADS");
    if (e && *e) {
        char *end;
        long n = strtol(e, &end, 10);
        if (*end == '\0' && n > 0) return n > THREADS_MAX ? THREADS_MAX : (int)n;
    }
    return processors_online();
}
#else
static int default_count(void) { return 1; }
#endif

int threads_count(void) {
    if (g_count == 0) g_count = default_count();
    return g_count;
}

void threads_set(int n) {
#ifdef MAVREF_THREADS
    g_count = n <= 0 ? default_count() : (n > THREADS_MAX ? THREADS_MAX : n);
#else
    (void)n;
    g_count = 1;
#endif
}

static void run_serial(size_t n_tasks, TaskFn fn, void *ctx) {
    size_t t;
    for (t = 0; t < n_tasks; t++) fn(ctx, t, 0);
}

#ifdef MAVREF_THREADS
// ---------------------------------------------------------------------------------------
// The pool. Worker i (1..n_started) waits for a new generation, joins the job if
// i < job_workers, and the last one to finish signals `done`.
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER, g_done = PTHREAD_COND_INITIALIZER;
static struct {
    pthread_t th[THREADS_MAX];
    unsigned long start_gen[THREADS_MAX]; // generation at the worker's creation
    int n_started;                        // workers running (the caller not counted)
    int busy, stop;
    unsigned long generation;             // bumped for every job
    TaskFn fn;                            // the current job ...
    void *ctx;
    size_t n_tasks, next;                 // ... its size and the next unclaimed task
    int job_workers;                      // threads taking part, the caller included
    int active;                           // workers (not the caller) still in the job
} P; // zero-initialized

// Take tasks until none is left. Called and returns with the mutex held.
static void take_tasks(int worker) {
    TaskFn fn = P.fn;
    void *ctx = P.ctx;
    while (P.next < P.n_tasks) {
        size_t t = P.next++;
        pthread_mutex_unlock(&g_mu);
        fn(ctx, t, worker);
        pthread_mutex_lock(&g_mu);
    }
}

static void *worker_main(void *arg) {
    int id = (int)(size_t)arg;
    unsigned long seen;
    pthread_mutex_lock(&g_mu);
    seen = P.start_gen[id - 1];
    for (;;) {
        while (!P.stop && P.generation == seen) pthread_cond_wait(&g_wake, &g_mu);
        if (P.stop) break;
        seen = P.generation;
        if (id >= P.job_workers) continue;
        take_tasks(id);
        if (--P.active == 0) pthread_cond_signal(&g_done);
    }
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

void parallel_for_max(size_t n_tasks, int max_workers, TaskFn fn, void *ctx) {
    int want = threads_count();
    if (max_workers < want) want = max_workers;
    if ((size_t)want > n_tasks) want = (int)n_tasks;
    if (want <= 1) { run_serial(n_tasks, fn, ctx); return; }
    pthread_mutex_lock(&g_mu);
    if (P.busy) { // nested call, or another thread's job: do it here
        pthread_mutex_unlock(&g_mu);
        run_serial(n_tasks, fn, ctx);
        return;
    }
    while (P.n_started < want - 1) {
        int id = P.n_started + 1;
        P.start_gen[id - 1] = P.generation;
        if (pthread_create(&P.th[id - 1], NULL, worker_main, (void *)(size_t)id) != 0) break;
        P.n_started++;
    }
    if (want > P.n_started + 1) want = P.n_started + 1; // could not start them all
    P.busy = 1;
    P.fn = fn;
    P.ctx = ctx;
    P.n_tasks = n_tasks;
    P.next = 0;
    P.job_workers = want;
    P.active = want - 1;
    P.generation++;
    pthread_cond_broadcast(&g_wake);
    take_tasks(0);
    while (P.active > 0) pthread_cond_wait(&g_done, &g_mu);
    P.busy = 0;
    pthread_mutex_unlock(&g_mu);
}

void threads_shutdown(void) {
    int i, n;
    pthread_mutex_lock(&g_mu);
    P.stop = 1;
    n = P.n_started;
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_mu);
    for (i = 0; i < n; i++) pthread_join(P.th[i], NULL);
    pthread_mutex_lock(&g_mu);
    P.stop = 0;
    P.n_started = 0;
    pthread_mutex_unlock(&g_mu);
}

#else
// ---------------------------------------------------------------------------------------
// Without threads: everything on the caller.
void parallel_for_max(size_t n_tasks, int max_workers, TaskFn fn, void *ctx) {
    (void)max_workers;
    run_serial(n_tasks, fn, ctx);
}

void threads_shutdown(void) {}
#endif

void parallel_for(size_t n_tasks, TaskFn fn, void *ctx) {
    parallel_for_max(n_tasks, threads_count(), fn, ctx);
}

typedef struct {
    RangeFn fn;
    void *ctx;
    size_t n, grain;
} RangeJob;

static void range_task(void *ctx, size_t task, int worker) {
    const RangeJob *r = (const RangeJob *)ctx;
    size_t begin = task * r->grain, end = r->n - begin < r->grain ? r->n : begin + r->grain;
    (void)worker;
    r->fn(r->ctx, begin, end);
}

void parallel_range(size_t n, size_t grain, RangeFn fn, void *ctx) {
    RangeJob r;
    if (n == 0) return;
    if (grain == 0) grain = 1;
    if (n <= grain) { fn(ctx, 0, n); return; }
    r.fn = fn; r.ctx = ctx; r.n = n; r.grain = grain;
    parallel_for((n - 1) / grain + 1, range_task, &r);
}
