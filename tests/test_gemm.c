// test_gemm.c: the fast gemm against gemm_ref, thread-count invariance, and parallel_for.
//
// Error measure (as the Netlib BLAS tests): for each element,
//   r = |gemm - gemm_ref| / (eps * (|C0| + sum_k |op(A)[i,k]| |op(B)[k,j]|))
// Both sides add the same K products in increasing k (gemm in groups of GEMM_KC), each
// element with at most K+1 roundings of relative size eps (fewer where gemm fuses a
// multiply-add), so r <= 2 (K + 1) to first order. An index or transpose mistake gives r
// of order 1/eps; the worst r seen is printed (about 2).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/gemm.h"
#include "../ref/threads.h"

#define GUARD ((real)-777.25) // written around every output; must survive

static uint64_t g_rng = 12345;
static real uniform(void) { // in [-1, 1), a fixed sequence (64-bit LCG, top 32 bits)
    g_rng = g_rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return (real)((double)(g_rng >> 32) / 2147483648.0 - 1.0);
}

static real *alloc_fill(size_t n) {
    real *p = malloc((n ? n : 1) * sizeof(real));
    size_t i;
    if (p)
        for (i = 0; i < n; i++) p[i] = uniform();
    return p;
}

static const char *flag_name(int flags) {
    static const char *names[] = {"NN", "TN", "NT", "TT", "NN+acc", "TN+acc", "NT+acc", "TT+acc"};
    return names[flags & 7];
}

// One product of shape (M,N,K) with padding `pad` on every leading dimension. Returns the
// number of failures; *worst collects the largest r.
static int check_one(size_t M, size_t N, size_t K, int flags, size_t pad, double *worst) {
    int ta = (flags & GEMM_TA) != 0, tb = (flags & GEMM_TB) != 0, fails = 0;
    size_t ar = ta ? K : M, ac = ta ? M : K; // stored shape of A
    size_t br = tb ? N : K, bc = tb ? K : N; // stored shape of B
    size_t lda = ac + pad, ldb = bc + pad, ldc = N + pad, i, j, k;
    size_t nc = M * ldc + 16; // 16 guard elements after the last row
    real *A = alloc_fill(ar * lda), *B = alloc_fill(br * ldb), *C = alloc_fill(nc), *R = malloc(nc * sizeof(real)),
         *C0 = malloc(nc * sizeof(real));
    if (!A || !B || !C || !R || !C0) {
        free(A); free(B); free(C); free(R); free(C0);
        harness_failf("gemm", "out of memory");
        return 1;
    }
    for (i = 0; i < M; i++)
        for (j = N; j < ldc; j++) C[i * ldc + j] = GUARD;
    for (i = M * ldc; i < nc; i++) C[i] = GUARD;
    memcpy(R, C, nc * sizeof(real));
    memcpy(C0, C, nc * sizeof(real));
    gemm_ref(R, A, B, M, N, K, ldc, lda, ldb, flags);
    if (gemm(C, A, B, M, N, K, ldc, lda, ldb, flags)) {
        harness_failf("gemm", "%s %lux%lux%lu: %s", flag_name(flags), (unsigned long)M, (unsigned long)N,
                      (unsigned long)K, mv_error());
        fails++;
    }
    for (i = 0; i < M && !fails; i++)
        for (j = 0; j < N && !fails; j++) {
            double mag = (flags & GEMM_ACC) ? fabs((double)C0[i * ldc + j]) : 0, r;
            double d = fabs((double)C[i * ldc + j] - (double)R[i * ldc + j]);
            for (k = 0; k < K; k++) {
                real a = ta ? A[k * lda + i] : A[i * lda + k], b = tb ? B[j * ldb + k] : B[k * ldb + j];
                mag += fabs((double)a * (double)b);
            }
            r = d == 0 ? 0 : d / (REAL_EPS * mag);
            if (r > *worst) *worst = r;
            if (!(r <= 2.0 * (double)(K + 1)) || C[i * ldc + j] != C[i * ldc + j]) {
                harness_failf("gemm", "%s %lux%lux%lu pad %lu: C[%lu,%lu] = %.9g, gemm_ref %.9g, error %.3g eps*sum|a||b|",
                              flag_name(flags), (unsigned long)M, (unsigned long)N, (unsigned long)K,
                              (unsigned long)pad, (unsigned long)i, (unsigned long)j,
                              (double)C[i * ldc + j], (double)R[i * ldc + j], r);
                fails++;
            }
        }
    for (i = 0; i < nc && !fails; i++) {
        int in_c = i < M * ldc && i % ldc < N;
        if (!in_c && C[i] != GUARD) {
            harness_failf("gemm", "%s %lux%lux%lu pad %lu: wrote outside C at offset %lu",
                          flag_name(flags), (unsigned long)M, (unsigned long)N, (unsigned long)K,
                          (unsigned long)pad, (unsigned long)i);
            fails++;
        }
    }
    free(A); free(B); free(C); free(R); free(C0);
    return fails;
}

// Edge sizes around the register tile, every transpose, overwrite and accumulate.
int test_gemm_edges(void) {
    static const size_t s[] = {0, 1, 2, 3, 5, 9, 17, 33};
    const size_t ns = sizeof s / sizeof s[0];
    size_t a, b, c;
    int flags, fails = 0;
    double worst = 0;
    for (flags = 0; flags < 8; flags++)
        for (a = 0; a < ns; a++)
            for (b = 0; b < ns; b++)
                for (c = 0; c < ns; c++) fails += check_one(s[a], s[b], s[c], flags, (a + b + c) % 3 ? 3 : 0, &worst);
    printf("  gemm edges: worst error %.3g eps*sum|a||b| (bound 2(K+1))\n", worst);
    return fails;
}

// Shapes larger than the cache blocks and not multiples of the tile; larger leading dims.
int test_gemm_blocks(void) {
    size_t mr = gemm_tile_m(), nr = gemm_tile_n();
    size_t shapes[][3] = {{mr * 25 + 1, nr * 9 - 1, 300}, {7, nr * 20 + 3, 513}, {401, 5, 257},
                          {mr * 24, nr * 8, 256}, {mr, nr, 1}, {150, 130, 1000}};
    size_t i;
    int flags, fails = 0;
    double worst = 0;
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (flags = 0; flags < 8; flags++)
            fails += check_one(shapes[i][0], shapes[i][1], shapes[i][2], flags, i % 2 ? 0 : 5, &worst);
    printf("  gemm blocks: worst error %.3g eps*sum|a||b| (bound 2(K+1))\n", worst);
    return fails;
}

// Bit-identical results for 1, 2, 3 and 4 threads.
int test_gemm_threads(void) {
    const size_t M = 333, N = 517, K = 300, pad = 2;
    size_t n = (M + pad) * (K + pad) > (K + pad) * (N + pad) ? (M + pad) * (K + pad) : (K + pad) * (N + pad);
    real *A = alloc_fill(n), *B = alloc_fill(n), *C0 = alloc_fill(M * (N + pad)), *C[4] = {0};
    int t, flags, fails = 0;
    for (t = 0; t < 4; t++) C[t] = malloc(M * (N + pad) * sizeof(real));
    if (!A || !B || !C0 || !C[0] || !C[1] || !C[2] || !C[3]) { harness_failf(__func__, "out of memory"); fails++; goto done; }
    for (flags = 0; flags < 8; flags++) {
        int ta = (flags & GEMM_TA) != 0, tb = (flags & GEMM_TB) != 0;
        for (t = 0; t < 4; t++) {
            memcpy(C[t], C0, M * (N + pad) * sizeof(real));
            threads_set(t + 1);
            if (gemm(C[t], A, B, M, N, K, N + pad, (ta ? M : K) + pad, (tb ? K : N) + pad, flags)) {
                harness_failf(__func__, "%s", mv_error());
                fails++;
            }
            if (t > 0 && memcmp(C[t], C[0], M * (N + pad) * sizeof(real)) != 0) {
                harness_failf(__func__, "%s: %d threads differ from 1 thread", flag_name(flags), t + 1);
                fails++;
            }
        }
    }
done:
    threads_set(0);
    free(A); free(B); free(C0);
    for (t = 0; t < 4; t++) free(C[t]);
    return fails;
}

// gemm_packed (op(B) packed once) and gemm_runs (op(A) given by runs) give exactly gemm()'s
// bits, for every flag they take, shapes around the tile and the k block, and 1..4 threads.
typedef struct { const real *A; size_t lda, K, cut; } RunsCtx;

// Row i of the (M,K) matrix at A in runs that end at column `cut` and at multiples of 7,
// and zeros where A holds exactly 0 (padding): runs of every length, split anywhere.
static const real *runs_of(void *ctx, size_t i, size_t p, size_t *run) {
    const RunsCtx *r = (const RunsCtx *)ctx;
    const real *row = r->A + i * r->lda;
    size_t end = p < r->cut ? r->cut : (p / 7 + 1) * 7;
    if (end > r->K) end = r->K;
    if (row[p] == 0) {
        *run = 1;
        return NULL;
    }
    *run = end - p;
    return row + p;
}

// Without packing buffers (gemm_simulate_no_memory) gemm, gemm_pack_b + gemm_packed and
// gemm_runs all compute the plain product: exactly gemm_ref's bits (runs: padding adds nothing,
// which on these finite values is the bits of adding its zeros).
static int no_memory_case(const real *A, const real *B, const real *C0, real *want, real *got, size_t M, size_t N, size_t K,
                          size_t ldc, size_t lda, size_t ldb, int flags) {
    GemmPackedB pb;
    RunsCtx rc;
    int fails = 0, rc_pack;
    memcpy(want, C0, M * ldc * sizeof(real));
    gemm_ref(want, A, B, M, N, K, ldc, lda, ldb, flags);
    gemm_simulate_no_memory(1);
    memcpy(got, C0, M * ldc * sizeof(real));
    fails += gemm(got, A, B, M, N, K, ldc, lda, ldb, flags) != MV_OK;
    fails += EXPECT(memcmp(got, want, M * ldc * sizeof(real)) == 0, "gemm without memory %s %lux%lux%lu: not gemm_ref's bits",
                    flag_name(flags), (unsigned long)M, (unsigned long)N, (unsigned long)K);
    memcpy(got, C0, M * ldc * sizeof(real));
    rc_pack = gemm_pack_b(&pb, B, K, N, ldb, flags);
    fails += rc_pack != MV_OK || pb.panels != NULL || gemm_packed(got, A, &pb, M, ldc, lda, flags) != MV_OK;
    gemm_packed_b_free(&pb);
    fails += EXPECT(memcmp(got, want, M * ldc * sizeof(real)) == 0, "gemm_packed without memory %s %lux%lux%lu: not gemm_ref's bits",
                    flag_name(flags), (unsigned long)M, (unsigned long)N, (unsigned long)K);
    gemm_simulate_no_memory(0); // packed with memory, then multiplied without: from the panels
    rc_pack = gemm_pack_b(&pb, B, K, N, ldb, flags);
    gemm_simulate_no_memory(1);
    memcpy(got, C0, M * ldc * sizeof(real));
    fails += rc_pack != MV_OK || gemm_packed(got, A, &pb, M, ldc, lda, flags) != MV_OK;
    gemm_packed_b_free(&pb);
    fails += EXPECT(memcmp(got, want, M * ldc * sizeof(real)) == 0, "gemm_packed (packed) without memory %s %lux%lux%lu: not gemm_ref's bits",
                    flag_name(flags), (unsigned long)M, (unsigned long)N, (unsigned long)K);
    if (!(flags & GEMM_TA)) {
        memcpy(got, C0, M * ldc * sizeof(real));
        rc.A = A; rc.lda = lda; rc.K = K; rc.cut = K / 3;
        fails += gemm_runs(got, runs_of, &rc, B, M, N, K, ldc, ldb, flags) != MV_OK;
        fails += EXPECT(memcmp(got, want, M * ldc * sizeof(real)) == 0, "gemm_runs without memory %s %lux%lux%lu: not gemm_ref's bits",
                        flag_name(flags), (unsigned long)M, (unsigned long)N, (unsigned long)K);
    }
    gemm_simulate_no_memory(0);
    return fails;
}

int test_gemm_packed(void) {
    size_t mr = gemm_tile_m(), nr = gemm_tile_n();
    static const size_t base[][3] = {{1, 1, 1}, {3, 5, 2}, {40, 30, 700}, {257, 3, 513}};
    size_t shapes[6][3], s, i;
    int fails = 0, t, flags;
    memcpy(shapes, base, sizeof base);
    shapes[4][0] = mr * 41 + 2; shapes[4][1] = nr * 9 + 1; shapes[4][2] = 300; // several blocks
    shapes[5][0] = 1100; shapes[5][1] = nr + 3; shapes[5][2] = 2 * GEMM_KC + 1; // > RUNS_BLOCKS row blocks
    for (s = 0; s < 6; s++) {
        size_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], pad = s % 2 ? 3 : 0, ldc = N + pad;
        real *A = alloc_fill((M + K) * (M + K + pad)), *B = alloc_fill((K + N) * (K + N + pad)), *C0 = alloc_fill(M * ldc);
        real *want = malloc(M * ldc * sizeof(real)), *got = malloc(M * ldc * sizeof(real));
        if (!A || !B || !C0 || !want || !got) { harness_failf(__func__, "out of memory"); return fails + 1; }
        for (i = 0; i < M * K; i += 11) A[i] = 0; // padding for the runs
        for (flags = 0; flags < 8; flags++) {
            int ta = (flags & GEMM_TA) != 0, tb = (flags & GEMM_TB) != 0;
            size_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad;
            GemmPackedB pb;
            RunsCtx rc;
            memcpy(want, C0, M * ldc * sizeof(real));
            threads_set(1);
            if (gemm(want, A, B, M, N, K, ldc, lda, ldb, flags)) { harness_failf(__func__, "%s", mv_error()); fails++; continue; }
            for (t = 1; t <= 4; t++) {
                threads_set(t);
                memcpy(got, C0, M * ldc * sizeof(real));
                if (gemm_pack_b(&pb, B, K, N, ldb, flags) || gemm_packed(got, A, &pb, M, ldc, lda, flags)) {
                    harness_failf(__func__, "%s", mv_error());
                    fails++;
                }
                gemm_packed_b_free(&pb);
                if (memcmp(got, want, M * ldc * sizeof(real)) != 0) {
                    harness_failf(__func__, "gemm_packed %s %lux%lux%lu, %d threads: not gemm()'s bits", flag_name(flags),
                                  (unsigned long)M, (unsigned long)N, (unsigned long)K, t);
                    fails++;
                }
                if (ta) continue; // gemm_runs: op(A) is given by rows
                memcpy(got, C0, M * ldc * sizeof(real));
                rc.A = A; rc.lda = lda; rc.K = K; rc.cut = K / 3;
                if (gemm_runs(got, runs_of, &rc, B, M, N, K, ldc, ldb, flags)) {
                    harness_failf(__func__, "%s", mv_error());
                    fails++;
                }
                if (memcmp(got, want, M * ldc * sizeof(real)) != 0) {
                    harness_failf(__func__, "gemm_runs %s %lux%lux%lu, %d threads: not gemm()'s bits", flag_name(flags),
                                  (unsigned long)M, (unsigned long)N, (unsigned long)K, t);
                    fails++;
                }
            }
            fails += no_memory_case(A, B, C0, want, got, M, N, K, ldc, lda, ldb, flags);
        }
        free(A); free(B); free(C0); free(want); free(got);
    }
    threads_set(0);
    {   // bad arguments: refused with a message, nothing allocated
        GemmPackedB pb;
        real b[6] = {0}, c[4] = {0};
        fails += EXPECT(gemm_pack_b(&pb, b, 3, 2, 1, 0) == MV_ERR && strstr(mv_error(), "ldb") && !pb.raw, "ldb < N accepted");
        gemm_packed_b_free(&pb);
        fails += EXPECT(gemm_pack_b(&pb, b, 3, 2, 3, GEMM_TB) == MV_OK, "valid pack refused: %s", mv_error());
        fails += EXPECT(gemm_packed(c, b, &pb, 2, 1, 3, 0) == MV_ERR && strstr(mv_error(), "ldc"), "ldc < N accepted");
        fails += EXPECT(gemm_packed(c, b, &pb, 2, 2, 2, 0) == MV_ERR && strstr(mv_error(), "lda"), "lda < K accepted");
        gemm_packed_b_free(&pb);
        gemm_packed_b_free(&pb); // twice is harmless
    }
    return fails;
}

int test_gemm_bad_args(void) {
    real a[6] = {0}, b[6] = {0}, c[4] = {0};
    int fails = 0;
    fails += EXPECT(gemm(c, a, b, 2, 2, 3, 2, 2, 2, 0) == MV_ERR && strstr(mv_error(), "lda"), "lda < K accepted");
    fails += EXPECT(gemm(c, a, b, 2, 2, 3, 2, 3, 2, GEMM_TB) == MV_ERR && strstr(mv_error(), "ldb"), "ldb < K accepted (B^T)");
    fails += EXPECT(gemm(c, a, b, 2, 2, 3, 1, 3, 2, 0) == MV_ERR && strstr(mv_error(), "ldc"), "ldc < N accepted");
    fails += EXPECT(gemm(c, a, b, 2, 2, 3, 2, 3, 2, 0) == MV_OK, "valid call refused: %s", mv_error());
    return fails;
}

// parallel_for: every task runs exactly once, worker indices stay in range, nesting works.
typedef struct { int *hits; int max_workers; int bad_worker; int nested; } PfCtx;

static void pf_inner(void *ctx, size_t task, int worker) {
    int *sum = (int *)ctx;
    (void)worker;
    sum[task] += 1;
}

static void pf_task(void *ctx, size_t task, int worker) {
    PfCtx *p = (PfCtx *)ctx;
    p->hits[task]++;
    if (worker < 0 || worker >= p->max_workers) p->bad_worker = 1;
    if (p->nested && task == 0) { // a call from inside a task runs on this thread
        int inner[5] = {0}, i;
        parallel_for(5, pf_inner, inner);
        for (i = 0; i < 5; i++)
            if (inner[i] != 1) p->bad_worker = 1;
    }
}

int test_parallel_for(void) {
    static const size_t counts[] = {0, 1, 7, 100};
    int hits[100], t, fails = 0;
    size_t c, i;
    for (t = 1; t <= 4; t++) {
        threads_set(t);
        fails += EXPECT(threads_count() == t || threads_count() == 1, "threads_set(%d) gave %d", t, threads_count());
        for (c = 0; c < 4; c++) {
            PfCtx p;
            memset(hits, 0, sizeof hits);
            p.hits = hits;
            p.max_workers = t < 3 ? t : 2;
            p.bad_worker = 0;
            p.nested = 1;
            parallel_for_max(counts[c], p.max_workers, pf_task, &p);
            for (i = 0; i < counts[c]; i++) fails += EXPECT(hits[i] == 1, "%d threads, %lu tasks: task %lu ran %d times",
                                                                t, (unsigned long)counts[c], (unsigned long)i, hits[i]);
            fails += EXPECT(!p.bad_worker, "%d threads: worker index out of range or nested call failed", t);
        }
    }
    threads_shutdown(); // and start again
    threads_set(2);
    memset(hits, 0, sizeof hits);
    {
        PfCtx p = {0, 2, 0, 0};
        p.hits = hits;
        parallel_for(100, pf_task, &p);
        for (i = 0; i < 100; i++) fails += EXPECT(hits[i] == 1, "after shutdown: task %lu ran %d times", (unsigned long)i, hits[i]);
    }
    threads_set(0);
    return fails;
}
