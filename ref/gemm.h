// gemm.h: matrix products C = op(A) * op(B) (or C += ...), row-major with leading dimensions.
//
//   C (M,N), row i at C + i*ldc, ldc >= N
//   op(A) (M,K):  A stored (M,K) with lda >= K,  or with GEMM_TA  A stored (K,M), lda >= M
//   op(B) (K,N):  B stored (K,N) with ldb >= N,  or with GEMM_TB  B stored (N,K), ldb >= K
//
//   C[i,j] = (GEMM_ACC ? C[i,j] : 0) + sum_k op(A)[i,k] * op(B)[k,j]
//
// gemm_ref adds the K products to the start value one at a time in increasing k. gemm()
// also goes in increasing k, but in blocks of GEMM_KC terms: each block's sum is a chain
// from 0, which is then added to C. gemm() may fuse each multiply-add of a chain into one
// FMA (one rounding instead of two) where the build has FMA instructions. The two differ
// only in rounding, by at most about 2(K+1) eps sum_k |a||b| per element. gemm() gives
// bit-identical results for any thread count (see SPEC.md section 11.6).
//
// C must not overlap A or B. With K == 0, C is zeroed (or left alone with GEMM_ACC).
// The element type is `real` (float or double, see mavref.h).
#ifndef MAVREF_GEMM_H
#define MAVREF_GEMM_H

#include "mavref.h"

#define GEMM_TA 1  // use A transposed: A is stored (K,M)
#define GEMM_TB 2  // use B transposed: B is stored (N,K)
#define GEMM_ACC 4 // add to C instead of overwriting it

#define GEMM_KC 256 // the block of k summed as one chain (fixed: it defines the rounding)

// The fast path: packed panels, cache blocking, a register-tile kernel, threads
// (threads.h). Where its packing buffers cannot be allocated it computes the plain product
// instead (gemm_ref's sums, one thread), so callers need no fallback of their own. Returns
// MV_OK, or MV_ERR (C unchanged) when a leading dimension is too small.
int gemm(real *C,       // (M,N), leading dimension ldc
         const real *A, // (M,K), or (K,M) with GEMM_TA; leading dimension lda
         const real *B, // (K,N), or (N,K) with GEMM_TB; leading dimension ldb
         size_t M, size_t N, size_t K, size_t ldc, size_t lda, size_t ldb, int flags);

// The readable triple loop, the oracle for gemm(). Same arguments; no checks, no threads.
void gemm_ref(real *C, const real *A, const real *B,
              size_t M, size_t N, size_t K, size_t ldc, size_t lda, size_t ldb, int flags);

// ---------------------------------------------------------------------------------------
// One B, many products; an implicit A. An operator that multiplies many A's by the same B
// (a temporal convolution's tap for every clip, a projection of many short sequences) packs
// op(B) once with gemm_pack_b and runs gemm_packed against it. An operator whose A is
// implicit (the patch matrix of a convolution, read from the image) gives gemm_runs a
// function that says where each row's elements are, and gemm packs them straight from
// there. All give exactly the bits gemm() gives for the same op(A), op(B) and flags (the
// same GEMM_KC chains, the same kernel), for any thread count.

// op(B) (K,N) in the kernel's panel order (see ref/gemm.c), made by gemm_pack_b.
typedef struct {
    real *panels;  // for each block of GEMM_KC k's, ceil(N/NR) panels of (kc, NR); NULL when
                   // their memory could not be had: then B is used where it is
    void *raw;     // the allocation behind panels
    const real *B; // the unpacked B (used only when panels is NULL)
    size_t K, N, ldb;
    int tb;        // B stored transposed
} GemmPackedB;

// Pack op(B): B (K,N) with ldb >= N, or with GEMM_TB (N,K) with ldb >= K (other flags are
// ignored). If the memory (K x N rounded up to whole panels) cannot be allocated, pb keeps
// B unpacked and gemm_packed runs gemm() on it: the same bits. MV_ERR only if ldb is too
// small. B must outlive pb. Free with gemm_packed_b_free (also safe on a zeroed struct).
int gemm_pack_b(GemmPackedB *pb, const real *B, size_t K, size_t N, size_t ldb, int flags);
void gemm_packed_b_free(GemmPackedB *pb);

// C (M,N) (+)= op(A) (M,K) x the packed op(B) (K,N); flags GEMM_TA, GEMM_ACC as for gemm().
int gemm_packed(real *C,                 // (M,N), leading dimension ldc
                const real *A,           // (M,K), or (K,M) with GEMM_TA; leading dimension lda
                const GemmPackedB *pb,   // op(B) (K,N)
                size_t M, size_t ldc, size_t lda, int flags);

// An implicit op(A): where row i's elements from column p on are. Returns a pointer to a run
// of *run >= 1 contiguous elements op(A)[i, p .. p+*run-1], or NULL for a run of *run zeros
// (padding). Called from several threads at once: it must only read ctx.
typedef const real *(*GemmRunFn)(void *ctx, size_t i, size_t p, size_t *run);

// C (M,N) (+)= op(A) (M,K) x op(B) (K,N), op(A) given by `runs`; flags GEMM_TB, GEMM_ACC.
int gemm_runs(real *C,                  // (M,N), leading dimension ldc
              GemmRunFn runs, void *ctx, // op(A) (M,K)
              const real *B,            // (K,N), or (N,K) with GEMM_TB; leading dimension ldb
              size_t M, size_t N, size_t K, size_t ldc, size_t ldb, int flags);

// The register tile of the build (for tests and the benchmark).
size_t gemm_tile_m(void);
size_t gemm_tile_n(void);

// For tests: on != 0 makes gemm, gemm_pack_b and the products act as if no packing buffer
// could be allocated, so that the plain fallbacks run. Not to be called while a product runs.
void gemm_simulate_no_memory(int on);

#endif
