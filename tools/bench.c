// bench.c: GEMM speed against the machine's measured FMA peak (and OpenBLAS, if measured).
//
//   make bench            builds this with NATIVE=1 (-O3 -march=native), runs it, and, when
//                         OpenBLAS is installed, runs tools/bench_openblas.c first and passes
//                         its result file here (OpenBLAS's figures print as -1 when absent).
//   bench [openblas.txt] [--quick]
//
// Prints a table, then `NAME = NUMBER` lines (NA where not measured). A GEMM figure is the
// best single call among those that fit in about one second, and so is the peak (a loop of
// independent FMAs, 2e8 flops per call and thread). Clocks: the calling thread's CPU time
// for one thread (on a shared machine that measures the code, not the wait for a core),
// wall-clock time for several threads (which therefore suffer from a busy machine).
#define _POSIX_C_SOURCE 200809L // clock_gettime

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../ref/gemm.h"
#include "../ref/threads.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// CPU time of the calling thread: one-thread figures use it, so that on a shared machine
// they measure the code, not the time spent waiting for a core.
static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int g_quick = 0;

// ---------------------------------------------------------------------------------------
// Peak: independent multiply-add chains, as many as the register file holds, with the same
// kernel attributes as gemm.c (512-bit vectors and contraction in gcc).
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define PEAK_ATTR __attribute__((noinline, optimize("fp-contract=fast"), target("prefer-vector-width=512")))
#elif defined(__GNUC__)
#define PEAK_ATTR __attribute__((noinline))
#else
#define PEAK_ATTR
#endif

#define PEAK_W 192 // 12 vectors of 16 floats
PEAK_ATTR static real fma_loop(long iters, real x) {
#ifdef __clang__
#pragma STDC FP_CONTRACT ON
#endif
    real acc[PEAK_W];
    real m = (real)0.999999, s = x;
    long it;
    int j;
    for (j = 0; j < PEAK_W; j++) acc[j] = (real)j * (real)1e-3 + x;
    for (it = 0; it < iters; it++)
        for (j = 0; j < PEAK_W; j++) acc[j] = acc[j] * m + (real)1e-6;
    for (j = 0; j < PEAK_W; j++) s += acc[j];
    return s;
}

typedef struct { long iters; real sink[THREADS_MAX]; } PeakJob;
static void peak_task(void *ctx, size_t task, int worker) {
    PeakJob *p = (PeakJob *)ctx;
    (void)worker;
    p->sink[task] = fma_loop(p->iters, (real)task);
}

static double peak_gflops(int threads) {
    PeakJob p;
    double best = 0, t_end;
    int trial;
    p.iters = 200000;
    threads_set(threads);
    for (trial = 0, t_end = now() + (g_quick ? 0.2 : 1.0); trial < 3 || now() < t_end; trial++) {
        double (*clock)(void) = threads == 1 ? thread_cpu : now;
        double t0 = clock(), dt;
        parallel_for((size_t)threads, peak_task, &p);
        dt = clock() - t0;
        if (2.0 * PEAK_W * (double)p.iters * threads / dt / 1e9 > best)
            best = 2.0 * PEAK_W * (double)p.iters * threads / dt / 1e9;
    }
    return best;
}

// ---------------------------------------------------------------------------------------
// GFLOP/s of C (M,N) = op(A) op(B) with K terms, packed leading dimensions.
static double gemm_gflops_mnk(size_t M, size_t N, size_t K, int threads, int flags) {
    size_t na = M * K, nb = K * N, lda = (flags & GEMM_TA) ? M : K, ldb = (flags & GEMM_TB) ? K : N;
    real *A = malloc(na * sizeof(real)), *B = malloc(nb * sizeof(real)), *C = malloc(M * N * sizeof(real));
    double best = 0, flops = 2.0 * (double)M * N * K, t_end;
    size_t i;
    int trial;
    if (!A || !B || !C) { fprintf(stderr, "bench: out of memory\n"); exit(1); }
    for (i = 0; i < na; i++) A[i] = (real)((double)(i % 97) / 97.0 - 0.5);
    for (i = 0; i < nb; i++) B[i] = (real)((double)(i % 89) / 89.0 - 0.5);
    threads_set(threads);
    if (gemm(C, A, B, M, N, K, N, lda, ldb, flags)) { fprintf(stderr, "bench: %s\n", mv_error()); exit(1); }
    // The best single call among those that fit in about a second (at least 3): on a shared
    // machine the best call is the one that ran undisturbed.
    for (trial = 0, t_end = now() + (g_quick ? 0.2 : 1.0); trial < 3 || now() < t_end; trial++) {
        double (*clock)(void) = threads == 1 ? thread_cpu : now;
        double t0 = clock(), dt;
        gemm(C, A, B, M, N, K, N, lda, ldb, flags);
        dt = clock() - t0;
        if (flops / dt / 1e9 > best) best = flops / dt / 1e9;
    }
    free(A); free(B); free(C);
    return best;
}

static double gemm_gflops(size_t n, int threads, int flags) { return gemm_gflops_mnk(n, n, n, threads, flags); }

// Look up `key = value` in the OpenBLAS result file; NA (negative) if absent.
static double lookup(const char *path, const char *key) {
    char line[256], k[128];
    double v, found = -1;
    FILE *fp;
    if (!path || !(fp = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "%127s = %lf", k, &v) == 2 && strcmp(k, key) == 0) found = v;
    fclose(fp);
    return found;
}

// "%.1f" of v, or "NA" where not measured (v < 0); one of two static buffers.
static const char *num(double v) {
    static char buf[2][32];
    static int k;
    k ^= 1;
    if (v < 0) return "NA";
    sprintf(buf[k], "%.1f", v);
    return buf[k];
}

static void print_kv(const char *name, double v) {
    if (v < 0) printf("%s = NA\n", name);
    else printf("%s = %.4g\n", name, v);
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {256, 512, 1024, 2048};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    static const struct { const char *what; size_t M, N, K; int flags; } shapes[] = {
        {"conv3x3 320->320 64x64 (4096,320,2880)", 4096, 320, 2880, 0},
        {"linear 320->1280 (4096,1280,320)", 4096, 1280, 320, 0},
        {"attention Q K^T d=40 (4096,4096,40)", 4096, 4096, 40, GEMM_TB},
        {"attention P V d=40 (4096,40,4096)", 4096, 40, 4096, 0},
        {"weight grad X^T dY (320,320,4096)", 320, 320, 4096, GEMM_TA},
    };
    double g1[4], gn[4], o1[4], on[4], peak1, peakn, o1s;
    const char *oblas = NULL;
    char key[64];
    int nt, a;
    size_t s;
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--quick") == 0) g_quick = 1;
        else oblas = argv[a];
    }
    threads_set(0);
    nt = threads_count();
    printf("mavref gemm benchmark: %s, register tile %lux%lu, %d threads (MAVREF_THREADS or cores)\n",
           REAL_NAME, (unsigned long)gemm_tile_m(), (unsigned long)gemm_tile_n(), nt);
    peak1 = peak_gflops(1);
    peakn = peak_gflops(nt);
    printf("FMA loop peak: %.1f GFLOP/s on 1 thread, %.1f on %d\n", peak1, peakn, nt);
    printf("(1 thread: thread CPU time; %d threads: wall-clock time)\n", nt);
    printf("%6s %12s %12s %12s %12s   (GFLOP/s, square C = A*B)\n", "n", "mavref 1t", "mavref nt", "openblas 1t", "openblas nt");
    for (s = 0; s < nsizes; s++) {
        g1[s] = gemm_gflops(sizes[s], 1, 0);
        gn[s] = gemm_gflops(sizes[s], nt, 0);
        sprintf(key, "openblas_gflops_1t_%lu", (unsigned long)sizes[s]);
        o1[s] = lookup(oblas, key);
        sprintf(key, "openblas_gflops_nt_%lu", (unsigned long)sizes[s]);
        on[s] = lookup(oblas, key);
        printf("%6lu %12.1f %12.1f %12s %12s\n", (unsigned long)sizes[s], g1[s], gn[s], num(o1[s]), num(on[s]));
    }
    printf("transposed variants at 1024, 1 thread: A*B^T %.1f, A^T*B %.1f GFLOP/s\n",
           gemm_gflops(1024, 1, GEMM_TB), gemm_gflops(1024, 1, GEMM_TA));
    printf("model shapes (M,N,K), GFLOP/s:       mavref 1t  mavref nt  openblas 1t  openblas nt\n");
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        double m1 = gemm_gflops_mnk(shapes[s].M, shapes[s].N, shapes[s].K, 1, shapes[s].flags);
        double mn = gemm_gflops_mnk(shapes[s].M, shapes[s].N, shapes[s].K, nt, shapes[s].flags);
        sprintf(key, "openblas_shape_1t_%lu", (unsigned long)s);
        o1s = lookup(oblas, key);
        sprintf(key, "openblas_shape_nt_%lu", (unsigned long)s);
        printf("  %-38s %8.1f %10.1f %12s %12s\n", shapes[s].what, m1, mn, num(o1s), num(lookup(oblas, key)));
    }
    threads_shutdown();

    print_kv("threads", nt);
    print_kv("peak_gflops_1t", peak1);
    print_kv("peak_gflops_nt", peakn);
    for (s = 0; s < nsizes; s++) {
        sprintf(key, "gemm_gflops_1t_%lu", (unsigned long)sizes[s]);
        print_kv(key, g1[s]);
        sprintf(key, "gemm_gflops_nt_%lu", (unsigned long)sizes[s]);
        print_kv(key, gn[s]);
    }
    print_kv("openblas_gflops_1t_1024", o1[2]);
    print_kv("openblas_gflops_nt_1024", on[2]);
    print_kv("gemm_vs_openblas_1t", o1[2] > 0 ? g1[2] / o1[2] : -1);
    print_kv("gemm_vs_openblas_nt", on[2] > 0 ? gn[2] / on[2] : -1);
    return 0;
}
