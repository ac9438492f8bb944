// gemm.c: matrix products. gemm_ref is the textbook loop; gemm adds the same products in
// cache-sized blocks with a register-tile kernel the compiler vectorizes (see SPEC.md section 11).
#include "gemm.h"
#include "threads.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// op(A)[i,k] and op(B)[k,j] for the storage orders the flags describe.
#define A_AT(A, lda, ta, i, k) ((ta) ? (A)[(size_t)(k) * (lda) + (i)] : (A)[(size_t)(i) * (lda) + (k)])
#define B_AT(B, ldb, tb, k, j) ((tb) ? (B)[(size_t)(j) * (ldb) + (k)] : (B)[(size_t)(k) * (ldb) + (j)])

// ---------------------------------------------------------------------------------------
// The reference: one dot product per element, products added one at a time in increasing k.

void gemm_ref(real *C, const real *A, const real *B,
              size_t M, size_t N, size_t K, size_t ldc, size_t lda, size_t ldb, int flags) {
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF // the oracle rounds every product (gcc -std=c99 does so anyway)
#endif
    int ta = (flags & GEMM_TA) != 0, tb = (flags & GEMM_TB) != 0;
    size_t i, j, k;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            real s = (flags & GEMM_ACC) ? C[i * ldc + j] : (real)0;
            for (k = 0; k < K; k++) s += A_AT(A, lda, ta, i, k) * B_AT(B, ldb, tb, k, j);
            C[i * ldc + j] = s;
        }
}

// ---------------------------------------------------------------------------------------
// The register tile: MR rows by NR columns of C stay in vector registers while the kernel
// runs over a block of k. NR is a few vector widths of the target, MR*NR/lanes accumulators
// plus the NR/lanes loaded B vectors and one broadcast must fit in the register file
// (32 vectors with AVX-512, 16 with AVX/SSE/most others).
// With AVX-512, 5 x 4 vectors (5 x 64 floats) ran 10% faster than 6 x 3 (6 x 48) and 6 x 4:
// the same kernel speed, and fewer padded columns at the model's widths (256, 320, 640).
// MR is 5 or 6 (the kernel writes its rows out); 6 for 16-byte vectors, where gcc made
// poor code of five rows (13 instead of 30 GFLOP/s with SSE2).
#if defined(__AVX512F__)
#define GEMM_VEC_BYTES 64
#define GEMM_NVEC 4 // 5 x 4 = 20 accumulators of 32 registers
#define MR 5
#elif defined(__AVX__)
#define GEMM_VEC_BYTES 32
#define GEMM_NVEC 2 // 5 x 2 = 10 of 16
#define MR 5
#else
#define GEMM_VEC_BYTES 16
#define GEMM_NVEC 2 // 6 x 2 = 12 of 16
#define MR 6
#endif
#define NR (GEMM_NVEC * GEMM_VEC_BYTES / (MAVREF_PRECISION / 8))

// Cache blocks (in elements): the packed KC x NC block of B (512 KiB in float32) and the
// packed MC x KC block of A (200 KiB) stay in L2 (1 MiB on the project's machine) while the
// kernel sweeps them; the sizes were chosen by measurement, within a few percent.
// KC decides how the K products are grouped, so it is a constant of the build (gemm.h),
// never a function of the thread count. MC and NC do not change any result.
#define KC GEMM_KC
#define MC (MR * 40)
#define NC (NR * 8)

// Row blocks per task at most when A is implicit (gemm_runs), see run_job.
#define RUNS_BLOCKS 5

// Below this many multiply-adds one thread does the whole product (waking threads costs more).
#define GEMM_MIN_PARALLEL ((size_t)1 << 20)

size_t gemm_tile_m(void) { return MR; }

static int g_no_memory = 0; // tests: act as if no packing buffer could be allocated
void gemm_simulate_no_memory(int on) { g_no_memory = on; }
size_t gemm_tile_n(void) { return NR; }

// Where FMA contraction is allowed: in the kernel only (SPEC.md section 11.3). gcc -std=c99 turns
// contraction off for the whole file, so the kernel asks for it by attribute, and for -O3
// (-O2 leaves the tile in memory: 90 instead of 210 GFLOP/s with AVX-512); on x86 it also
// asks for 512-bit vectors, which -march=native does not use by default. clang contracts
// within a statement by default (-ffp-contract=on); the pragma says so explicitly.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define GEMM_KERNEL_ATTR __attribute__((optimize("O3", "fp-contract=fast"), target("prefer-vector-width=512")))
#elif defined(__GNUC__) && !defined(__clang__)
#define GEMM_KERNEL_ATTR __attribute__((optimize("O3", "fp-contract=fast")))
#else
#define GEMM_KERNEL_ATTR
#endif

// c (MR,NR) at row stride ldc = (add_c ? c : 0) + s, where s = sum over kc of a[p] (x) b[p],
// a: packed (kc,MR), b: packed (kc,NR). Every element of s is one chain of multiply-adds in
// increasing p starting from 0, so its value does not depend on its place in the tile.
// The rows are written out so that j is the only loop to vectorize: written as
// s[MR][NR], gcc -O3 vectorized along i for AVX2/SSE (10x slower). Starting the chains from
// 0 and adding c afterwards, rather than loading c into them, lets clang keep the tile in
// registers (2.3x faster with clang 14).
GEMM_KERNEL_ATTR
static void kernel(real *restrict c, const real *restrict a, const real *restrict b,
                   size_t kc, size_t ldc, int add_c) {
#ifdef __clang__
#pragma STDC FP_CONTRACT ON
#endif
    real s0[NR], s1[NR], s2[NR], s3[NR], s4[NR];
#if MR == 6
    real s5[NR];
#endif
    size_t j, p;
    for (j = 0; j < NR; j++) {
        s0[j] = s1[j] = s2[j] = s3[j] = s4[j] = 0;
#if MR == 6
        s5[j] = 0;
#endif
    }
    for (p = 0; p < kc; p++) {
        const real *ap = a + p * MR, *bp = b + p * NR; // (MR), (NR)
        const real a0 = ap[0], a1 = ap[1], a2 = ap[2], a3 = ap[3], a4 = ap[4];
#if MR == 6
        const real a5 = ap[5];
#endif
        for (j = 0; j < NR; j++) {
            const real bj = bp[j];
            s0[j] += a0 * bj;
            s1[j] += a1 * bj;
            s2[j] += a2 * bj;
            s3[j] += a3 * bj;
            s4[j] += a4 * bj;
#if MR == 6
            s5[j] += a5 * bj;
#endif
        }
    }
    for (j = 0; j < NR; j++) {
        real *cj = c + j;
        if (add_c) {
            cj[0 * ldc] += s0[j];
            cj[1 * ldc] += s1[j];
            cj[2 * ldc] += s2[j];
            cj[3 * ldc] += s3[j];
            cj[4 * ldc] += s4[j];
#if MR == 6
            cj[5 * ldc] += s5[j];
#endif
        } else {
            cj[0 * ldc] = s0[j];
            cj[1 * ldc] = s1[j];
            cj[2 * ldc] = s2[j];
            cj[3 * ldc] = s3[j];
            cj[4 * ldc] = s4[j];
#if MR == 6
            cj[5 * ldc] = s5[j];
#endif
        }
    }
}

// ---------------------------------------------------------------------------------------
// Packing: copy a block of op(A) / op(B) into the order the kernel reads, zero-padded to
// whole tiles so that edge tiles run the same kernel.

// dst (kc,MR) = MR rows of kc side by side, the panel order of the kernel: one pass that
// writes dst in order (copying row by row instead writes it at a stride of MR, which made
// packing a tenth of the UNet's time).
static void interleave_rows(real *restrict dst, const real *const *rows, size_t kc) {
    const real *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3], *r4 = rows[4];
#if MR == 6
    const real *r5 = rows[5];
#endif
    size_t p;
    for (p = 0; p < kc; p++, dst += MR) {
        dst[0] = r0[p]; dst[1] = r1[p]; dst[2] = r2[p]; dst[3] = r3[p]; dst[4] = r4[p];
#if MR == 6
        dst[5] = r5[p];
#endif
    }
}

// pa: mc rows of op(A) from row i0, k from p0, as ceil(mc/MR) panels of (kc,MR).
static void pack_a(real *restrict pa, const real *A, size_t lda, int ta,
                   size_t i0, size_t p0, size_t mc, size_t kc) {
    size_t ir, i, p;
    for (ir = 0; ir < mc; ir += MR) {
        size_t m = mc - ir < MR ? mc - ir : MR;
        real *dst = pa + ir * kc; // (kc,MR)
        if (!ta && m == MR) {
            const real *rows[MR];
            for (i = 0; i < MR; i++) rows[i] = A + (i0 + ir + i) * lda + p0; // (kc) contiguous each
            interleave_rows(dst, rows, kc);
        } else if (ta)
            for (p = 0; p < kc; p++) {
                const real *src = A + (p0 + p) * lda + i0 + ir; // (m) contiguous
                for (i = 0; i < m; i++) dst[p * MR + i] = src[i];
                for (; i < MR; i++) dst[p * MR + i] = 0;
            }
        else {
            for (i = 0; i < m; i++) {
                const real *src = A + (i0 + ir + i) * lda + p0; // (kc) contiguous
                for (p = 0; p < kc; p++) dst[p * MR + i] = src[p];
            }
            for (; i < MR; i++)
                for (p = 0; p < kc; p++) dst[p * MR + i] = 0;
        }
    }
}

// pa as pack_a, with op(A) given by its runs (gemm_runs): the MR rows of a panel are
// interleaved piece by piece, each piece as long as the shortest of the rows' current runs
// (padding reads from `zeros`; rows past M are zeros).
static const real zeros[KC];
static void pack_a_runs(real *restrict pa, GemmRunFn runs, void *ctx,
                        size_t i0, size_t p0, size_t mc, size_t kc) {
    size_t ir, i, p, run, n;
    const real *src[MR];
    for (ir = 0; ir < mc; ir += MR) {
        size_t m = mc - ir < MR ? mc - ir : MR;
        real *dst = pa + ir * kc; // (kc,MR)
        for (p = 0; p < kc; p += n) {
            n = kc - p;
            for (i = 0; i < MR; i++) {
                src[i] = zeros;
                if (i >= m) continue;
                src[i] = runs(ctx, i0 + ir + i, p0 + p, &run); // (run) contiguous, or zeros
                if (!src[i]) src[i] = zeros;
                if (run < n) n = run;
            }
            interleave_rows(dst + p * MR, src, n);
        }
    }
}

// pb: nc columns of op(B) from column j0, k from p0, as ceil(nc/NR) panels of (kc,NR).
static void pack_b(real *restrict pb, const real *B, size_t ldb, int tb,
                   size_t p0, size_t j0, size_t kc, size_t nc) {
    size_t jr, j, p;
    for (jr = 0; jr < nc; jr += NR) {
        size_t n = nc - jr < NR ? nc - jr : NR;
        real *dst = pb + jr * kc; // (kc,NR)
        if (!tb && n == NR) // a copy of constant size, which compilers inline (not a call per row)
            for (p = 0; p < kc; p++) memcpy(dst + p * NR, B + (p0 + p) * ldb + j0 + jr, NR * sizeof(real));
        else if (!tb)
            for (p = 0; p < kc; p++) {
                const real *src = B + (p0 + p) * ldb + j0 + jr; // (n) contiguous
                for (j = 0; j < n; j++) dst[p * NR + j] = src[j];
                for (; j < NR; j++) dst[p * NR + j] = 0;
            }
        else {
            for (j = 0; j < n; j++) {
                const real *src = B + (j0 + jr + j) * ldb + p0; // (kc) contiguous
                for (p = 0; p < kc; p++) dst[p * NR + j] = src[p];
            }
            for (; j < NR; j++)
                for (p = 0; p < kc; p++) dst[p * NR + j] = 0;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The blocked product. C is cut into mt x nt blocks of at most MC x NC. One task = one
// column of blocks, or a group of consecutive blocks in it, computed completely (all of K)
// by the thread that takes it, with that thread's packing buffers: for each k block it
// packs its KC x NC block of B once, then each MC x KC block of A in turn.

typedef struct {
    real *C;
    const real *A, *B;
    GemmRunFn runs;     // op(A) given by runs (A unused), or NULL
    void *runs_ctx;
    const real *packed; // op(B) packed whole (gemm_pack_b; B unused), or NULL: packed per task
    size_t M, N, K, ldc, lda, ldb;
    int ta, tb, acc;
    size_t mb, nb;      // block size (mb <= MC, a multiple of MR unless it is M; same for nb)
    size_t mt, nt;      // blocks along M and N
    size_t mg;          // groups of row blocks: task = group * nt + column block
    real *work;         // per-worker scratch, `per_worker` reals each
    size_t per_worker;
} GemmJob;

#define WORK_A ((size_t)MC * KC)
#define WORK_B ((size_t)KC * NC)
#define WORK_T ((size_t)MR * NR)
#define ALIGN_REALS (64 / sizeof(real)) // scratch pieces start on 64-byte boundaries

// C block (mc,nc) at row stride ldc (+)= packed A (mc,kc) times packed B (kc,nc), tile by tile.
static void macro_kernel(real *C, size_t ldc, const real *pa, const real *pb, real *tmp,
                         size_t mc, size_t nc, size_t kc, int add_c) {
    size_t ir, jr, i, j;
    for (jr = 0; jr < nc; jr += NR) {
        size_t n = nc - jr < NR ? nc - jr : NR;
        for (ir = 0; ir < mc; ir += MR) {
            size_t m = mc - ir < MR ? mc - ir : MR;
            real *c = C + ir * ldc + jr; // (m,n) at stride ldc
            if (m == MR && n == NR) {
                kernel(c, pa + ir * kc, pb + jr * kc, kc, ldc, add_c);
                continue;
            }
            // Edge tile: the same kernel on a full-size copy, then the valid part back.
            if (add_c)
                for (i = 0; i < m; i++)
                    for (j = 0; j < n; j++) tmp[i * NR + j] = c[i * ldc + j];
            kernel(tmp, pa + ir * kc, pb + jr * kc, kc, NR, add_c);
            for (i = 0; i < m; i++)
                for (j = 0; j < n; j++) c[i * ldc + j] = tmp[i * NR + j];
        }
    }
}

// Columns of a packed op(B), rounded up to whole panels: k block pc of gemm_pack_b's layout
// starts at pc * packed_width(N), and its panel of columns jr.. at + jr * kc.
static size_t packed_width(size_t N) { return (N + NR - 1) / NR * NR; }

static void gemm_task(void *ctx, size_t task, int worker) {
    const GemmJob *g = (const GemmJob *)ctx;
    size_t grp = task / g->nt, jc = (task % g->nt) * g->nb;
    size_t b0 = grp * g->mt / g->mg, b1 = (grp + 1) * g->mt / g->mg; // row blocks [b0, b1)
    size_t nc = g->N - jc < g->nb ? g->N - jc : g->nb, pc, bi;
    real *pa = g->work + (size_t)worker * g->per_worker; // (MC,KC) packed
    real *pb = pa + WORK_A;                              // (KC,NC) packed (none with g->packed)
    real *tmp = pb + (g->packed ? 0 : WORK_B);           // (MR,NR) an edge tile
    for (pc = 0; pc < g->K; pc += KC) {
        size_t kc = g->K - pc < KC ? g->K - pc : KC;
        int add_c = pc > 0 || g->acc; // the first k block overwrites C unless accumulating
        const real *bk = pb;          // this k block's columns jc.. of op(B), packed (kc,nc)
        if (g->packed) bk = g->packed + pc * packed_width(g->N) + jc * kc; // see gemm_pack_b
        else pack_b(pb, g->B, g->ldb, g->tb, pc, jc, kc, nc);
        for (bi = b0; bi < b1; bi++) {
            size_t ic = bi * g->mb, mc = g->M - ic < g->mb ? g->M - ic : g->mb;
            if (g->runs) pack_a_runs(pa, g->runs, g->runs_ctx, ic, pc, mc, kc);
            else pack_a(pa, g->A, g->lda, g->ta, ic, pc, mc, kc);
            macro_kernel(g->C + ic * g->ldc + jc, g->ldc, pa, bk, tmp, mc, nc, kc, add_c);
        }
    }
}

static int run_job(GemmJob *gp);

// The packed op(B)[k,j] (gemm_pack_b's layout, see below): k block pc = k - k % KC of kc rows
// at pc * packed_width(N), in it the panel of columns from j - j % NR at + (j - j % NR) * kc,
// in that row k - pc at * NR.
static real packed_at(const real *panels, size_t K, size_t N, size_t k, size_t j) {
    size_t pc = k / KC * KC, kc = K - pc < KC ? K - pc : KC;
    return panels[pc * packed_width(N) + j / NR * NR * kc + (k - pc) * NR + j % NR];
}

// The plain product of a job, for when its packing buffers cannot be had: gemm_ref's loop
// (the K products added to the start value one at a time in increasing k), with op(A) read
// through the runs and op(B) from the panels where the job has them; padding adds nothing.
static void job_ref(const GemmJob *g) {
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
    size_t i, j, p, run;
    for (i = 0; i < g->M; i++)
        for (j = 0; j < g->N; j++) {
            real s = g->acc ? g->C[i * g->ldc + j] : (real)0, a, b;
            for (p = 0; p < g->K; p++) {
                if (g->runs) {
                    const real *ap = g->runs(g->runs_ctx, i, p, &run);
                    if (!ap) continue; // padding
                    a = *ap;
                } else
                    a = A_AT(g->A, g->lda, g->ta, i, p);
                b = g->packed ? packed_at(g->packed, g->K, g->N, p, j) : B_AT(g->B, g->ldb, g->tb, p, j);
                s += a * b;
            }
            g->C[i * g->ldc + j] = s;
        }
}

int gemm(real *C, const real *A, const real *B,
         size_t M, size_t N, size_t K, size_t ldc, size_t lda, size_t ldb, int flags) {
    GemmJob g;
    size_t i;
    if (M == 0 || N == 0) return MV_OK;
    if (ldc < N) return mv_fail("gemm: ldc %lu < N %lu", (unsigned long)ldc, (unsigned long)N);
    if (K == 0) {
        if (!(flags & GEMM_ACC))
            for (i = 0; i < M; i++) memset(C + i * ldc, 0, N * sizeof(real));
        return MV_OK;
    }
    if (lda < ((flags & GEMM_TA) ? M : K))
        return mv_fail("gemm: lda %lu too small for op(A) (%lu,%lu)%s", (unsigned long)lda,
                       (unsigned long)M, (unsigned long)K, (flags & GEMM_TA) ? " stored transposed" : "");
    if (ldb < ((flags & GEMM_TB) ? K : N))
        return mv_fail("gemm: ldb %lu too small for op(B) (%lu,%lu)%s", (unsigned long)ldb,
                       (unsigned long)K, (unsigned long)N, (flags & GEMM_TB) ? " stored transposed" : "");

    memset(&g, 0, sizeof g);
    g.C = C; g.A = A; g.B = B;
    g.M = M; g.N = N; g.K = K; g.ldc = ldc; g.lda = lda; g.ldb = ldb;
    g.ta = (flags & GEMM_TA) != 0;
    g.tb = (flags & GEMM_TB) != 0;
    g.acc = (flags & GEMM_ACC) != 0;
    return run_job(&g);
}

// Choose the grid of g (C, A or runs, B or packed, sizes and flags set), allocate the
// per-worker scratch and run the tasks.
static int run_job(GemmJob *gp) {
    GemmJob g = *gp;
    size_t M = g.M, N = g.N, K = g.K, mt, n_tasks, bytes;
    int workers;
    void *raw;
    workers = threads_count();
    if (M * N < GEMM_MIN_PARALLEL / K + 1) workers = 1; // M*N*K small (no overflow)

    // The grid: mt x nt blocks of equal size in whole tiles, at most MC x NC; with several
    // threads at least 3 blocks per thread where the tiles allow it (splitting the dimension
    // whose blocks are longer), and as few tasks as give each thread 3, so that B is packed
    // as few times as possible. (No result depends on this grid.)
    mt = (M + MC - 1) / MC;
    g.nt = (N + NC - 1) / NC;
    while (workers > 1 && mt * g.nt < 3 * (size_t)workers) {
        size_t mtiles = (M + MR - 1) / MR, ntiles = (N + NR - 1) / NR;
        if (mt < mtiles && (M / mt >= N / g.nt || g.nt >= ntiles)) mt++;
        else if (g.nt < ntiles) g.nt++;
        else break;
    }
    g.mb = ((M + mt - 1) / mt + MR - 1) / MR * MR;
    g.nb = ((N + g.nt - 1) / g.nt + NR - 1) / NR * NR;
    g.mt = (M + g.mb - 1) / g.mb;
    g.nt = (N + g.nb - 1) / g.nb;
    g.mg = workers == 1 ? 1 : (3 * (size_t)workers + g.nt - 1) / g.nt;
    // An implicit A (gemm_runs) reads its rows from a source smaller than A (a convolution
    // reads each input pixel for KH*KW patch rows): at most RUNS_BLOCKS row blocks per task,
    // so that the rows' source stays in cache over all the k blocks. (B is packed once per
    // task, a small cost beside RUNS_BLOCKS * MC rows of products; 1.15x faster at the
    // UNet's 3x3 convolutions, 32x32 latents, 320 channels.) The groups are a multiple of
    // the workers, so that no thread is left with one group more than the others.
    if (g.runs) {
        size_t need = (g.mt + RUNS_BLOCKS - 1) / RUNS_BLOCKS;
        need = (need + (size_t)workers - 1) / (size_t)workers * (size_t)workers;
        if (g.mg < need) g.mg = need;
    }
    if (g.mg > g.mt) g.mg = g.mt;
    n_tasks = g.mg * g.nt;
    if ((size_t)workers > n_tasks) workers = (int)n_tasks;
    g.per_worker = (WORK_A + (g.packed ? 0 : WORK_B) + WORK_T + ALIGN_REALS - 1) / ALIGN_REALS * ALIGN_REALS;
    bytes = ((size_t)workers * g.per_worker + ALIGN_REALS) * sizeof(real);
    raw = g_no_memory ? NULL : malloc(bytes);
    if (!raw) { // no packing buffers: the plain product, which needs none
        job_ref(&g);
        return MV_OK;
    }
    g.work = (real *)raw + (ALIGN_REALS - ((uintptr_t)raw / sizeof(real)) % ALIGN_REALS) % ALIGN_REALS;
    parallel_for_max(n_tasks, workers, gemm_task, &g);
    free(raw);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// One B, many products: op(B) packed once, in the layout gemm_task packs per block, laid
// end to end: k block pc (kc = min(KC, K - pc) rows) at pc * packed_width(N), as panels of
// (kc, NR) for columns 0, NR, 2 NR, ... Tasks = (k block, NC columns), a copy each.

typedef struct {
    real *dst;
    const real *B;
    size_t K, N, ldb, ncol; // ncol: column chunks of NC per k block
    int tb;
} PackJob;

static void pack_task(void *ctx, size_t task, int worker) {
    const PackJob *j = (const PackJob *)ctx;
    size_t pc = task / j->ncol * KC, j0 = task % j->ncol * NC;
    size_t kc = j->K - pc < KC ? j->K - pc : KC, nc = j->N - j0 < NC ? j->N - j0 : NC;
    (void)worker;
    pack_b(j->dst + pc * packed_width(j->N) + j0 * kc, j->B, j->ldb, j->tb, pc, j0, kc, nc);
}

int gemm_pack_b(GemmPackedB *pb, const real *B, size_t K, size_t N, size_t ldb, int flags) {
    PackJob j;
    size_t n;
    memset(pb, 0, sizeof *pb);
    if (ldb < ((flags & GEMM_TB) ? K : N))
        return mv_fail("gemm_pack_b: ldb %lu too small for op(B) (%lu,%lu)%s", (unsigned long)ldb,
                       (unsigned long)K, (unsigned long)N, (flags & GEMM_TB) ? " stored transposed" : "");
    pb->B = B; pb->K = K; pb->N = N; pb->ldb = ldb; pb->tb = (flags & GEMM_TB) != 0;
    if (mv_mul_size(&n, K, packed_width(N)) || mv_add_size(&n, n, ALIGN_REALS) || mv_mul_size(&n, n, sizeof(real)) ||
        g_no_memory || !(pb->raw = malloc(n)))
        return MV_OK; // too large to pack: gemm_packed uses B where it is
    pb->panels = (real *)pb->raw + (ALIGN_REALS - ((uintptr_t)pb->raw / sizeof(real)) % ALIGN_REALS) % ALIGN_REALS;
    if (K == 0 || N == 0) return MV_OK;
    j.dst = pb->panels; j.B = B; j.K = K; j.N = N; j.ldb = ldb; j.tb = (flags & GEMM_TB) != 0;
    j.ncol = (N + NC - 1) / NC;
    // a copy: worth the threads only when large (a memory stream per thread)
    parallel_for_max((K + KC - 1) / KC * j.ncol, K * N < GEMM_MIN_PARALLEL / 8 ? 1 : threads_count(), pack_task, &j);
    return MV_OK;
}

void gemm_packed_b_free(GemmPackedB *pb) {
    free(pb->raw);
    memset(pb, 0, sizeof *pb);
}

// The common part of the products with a packed B: g has C, A and the flags.
static int run_packed(GemmJob *g, const GemmPackedB *pb, size_t M, size_t ldc) {
    size_t i;
    g->M = M; g->N = pb->N; g->K = pb->K; g->ldc = ldc;
    g->packed = pb->panels;
    if (M == 0 || g->N == 0) return MV_OK;
    if (ldc < g->N) return mv_fail("gemm: ldc %lu < N %lu", (unsigned long)ldc, (unsigned long)g->N);
    if (g->K == 0) {
        if (!g->acc)
            for (i = 0; i < M; i++) memset(g->C + i * ldc, 0, g->N * sizeof(real));
        return MV_OK;
    }
    return run_job(g);
}

int gemm_packed(real *C, const real *A, const GemmPackedB *pb, size_t M, size_t ldc, size_t lda, int flags) {
    GemmJob g;
    memset(&g, 0, sizeof g);
    g.C = C; g.A = A; g.lda = lda;
    g.ta = (flags & GEMM_TA) != 0;
    g.acc = (flags & GEMM_ACC) != 0;
    if (M && pb->N && pb->K && lda < (g.ta ? M : pb->K))
        return mv_fail("gemm: lda %lu too small for op(A) (%lu,%lu)%s", (unsigned long)lda,
                       (unsigned long)M, (unsigned long)pb->K, g.ta ? " stored transposed" : "");
    if (!pb->panels) // B could not be packed: the same product from B itself
        return gemm(C, A, pb->B, M, pb->N, pb->K, ldc, lda, pb->ldb, (flags & ~GEMM_TB) | (pb->tb ? GEMM_TB : 0));
    return run_packed(&g, pb, M, ldc);
}

// ---------------------------------------------------------------------------------------
// An implicit A: gemm() with pack_a_runs in place of pack_a (and fewer row blocks per task,
// see run_job).
int gemm_runs(real *C, GemmRunFn runs, void *ctx, const real *B,
              size_t M, size_t N, size_t K, size_t ldc, size_t ldb, int flags) {
    GemmJob g;
    size_t i;
    if (M == 0 || N == 0) return MV_OK;
    if (ldc < N) return mv_fail("gemm: ldc %lu < N %lu", (unsigned long)ldc, (unsigned long)N);
    if (ldb < ((flags & GEMM_TB) ? K : N))
        return mv_fail("gemm: ldb %lu too small for op(B) (%lu,%lu)%s", (unsigned long)ldb,
                       (unsigned long)K, (unsigned long)N, (flags & GEMM_TB) ? " stored transposed" : "");
    if (K == 0) {
        if (!(flags & GEMM_ACC))
            for (i = 0; i < M; i++) memset(C + i * ldc, 0, N * sizeof(real));
        return MV_OK;
    }
    memset(&g, 0, sizeof g);
    g.C = C; g.runs = runs; g.runs_ctx = ctx; g.B = B;
    g.M = M; g.N = N; g.K = K; g.ldc = ldc; g.ldb = ldb;
    g.tb = (flags & GEMM_TB) != 0;
    g.acc = (flags & GEMM_ACC) != 0;
    return run_job(&g);
}
