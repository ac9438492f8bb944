// bench_openblas.c: OpenBLAS sgemm at the sizes tools/bench.c measures, for comparison only.
// Built by `make bench` only when OpenBLAS (cblas.h, -lopenblas) is installed; mavref never
// depends on it. A separate process, so that OpenBLAS's spinning threads cannot disturb
// mavref's timings. Prints `openblas_gflops_{1t,nt}_N = X` lines; "nt" is MAVREF_THREADS
// threads if set, else one per online processor, as in mavref.
#define _POSIX_C_SOURCE 200809L // clock_gettime

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

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

static int g_threads = 1; // OpenBLAS's thread count for the next calls

// GFLOP/s of C (M,N) = op(A) op(B), row-major, packed leading dimensions (clocks as bench.c).
static double sgemm_gflops(int M, int N, int K, int ta, int tb, int quick) {
    float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float)),
          *C = malloc((size_t)M * N * sizeof(float));
    double best = 0, flops = 2.0 * M * N * (double)K, t_end;
    int lda = ta ? M : K, ldb = tb ? K : N, trial;
    size_t i;
    if (!A || !B || !C) { fprintf(stderr, "bench_openblas: out of memory\n"); exit(1); }
    for (i = 0; i < (size_t)M * K; i++) A[i] = (float)((double)(i % 97) / 97.0 - 0.5);
    for (i = 0; i < (size_t)K * N; i++) B[i] = (float)((double)(i % 89) / 89.0 - 0.5);
#define CALL cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, \
                         M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N)
    CALL;
    // As in bench.c: the best single call among those that fit in about a second.
    for (trial = 0, t_end = now() + (quick ? 0.2 : 1.0); trial < 3 || now() < t_end; trial++) {
        double (*clock)(void) = g_threads == 1 ? thread_cpu : now;
        double t0 = clock(), dt;
        CALL;
        dt = clock() - t0;
        if (flops / dt / 1e9 > best) best = flops / dt / 1e9;
    }
#undef CALL
    free(A); free(B); free(C);
    return best;
}

int main(int argc, char **argv) {
    static const int sizes[] = {256, 512, 1024, 2048};
    const char *e = getenv("MAVREF_THREADS");
    int nt = e ? atoi(e) : (int)sysconf(_SC_NPROCESSORS_ONLN), quick = argc > 1, s;
    (void)argv;
    if (nt < 1) nt = 1;
    // the model shapes of tools/bench.c, in its order
    static const int shapes[][5] = {{4096, 320, 2880, 0, 0}, {4096, 1280, 320, 0, 0}, {4096, 4096, 40, 0, 1},
                                    {4096, 40, 4096, 0, 0}, {320, 320, 4096, 1, 0}};
    for (s = 0; s < 4; s++) {
        openblas_set_num_threads(g_threads = 1);
        printf("openblas_gflops_1t_%d = %.4g\n", sizes[s], sgemm_gflops(sizes[s], sizes[s], sizes[s], 0, 0, quick));
        openblas_set_num_threads(g_threads = nt);
        printf("openblas_gflops_nt_%d = %.4g\n", sizes[s], sgemm_gflops(sizes[s], sizes[s], sizes[s], 0, 0, quick));
        fflush(stdout);
    }
    for (s = 0; s < 5; s++) {
        const int *h = shapes[s];
        openblas_set_num_threads(g_threads = 1);
        printf("openblas_shape_1t_%d = %.4g\n", s, sgemm_gflops(h[0], h[1], h[2], h[3], h[4], quick));
        openblas_set_num_threads(g_threads = nt);
        printf("openblas_shape_nt_%d = %.4g\n", s, sgemm_gflops(h[0], h[1], h[2], h[3], h[4], quick));
        fflush(stdout);
    }
    return 0;
}
