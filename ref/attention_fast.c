// attention_fast.c: the fast path of multi-head attention (attention.h): the math of the plain
// path in attention.c, with query-block tiling, matrix products and the thread pool.
//
// Every call walks over chunks of sequences; a sequence is a set of token rows at a fixed
// stride (contiguous for spatial and cross attention, H*W*C apart for temporal attention,
// whose rows are first gathered into a sequence-major copy). For each chunk: project q, k, v of
// all its rows with one matrix product each, then, as parallel tasks over (sequence, head, block
// of queries), compute the (block x keys) score tile, its stable softmax and the tile times V;
// finally project the merged heads of all the chunk's rows with to_out_0.
//
// Determinism: a task writes only its own rows and head channels of q, o (and, backward, of dq,
// dk, dv), chunks are cut by sizes alone, so results do not depend on the thread count.
#include "attention.h"
#include "gemm.h"
#include "linear.h"
#include "threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// A chunk holds at most this many reals per projection buffer (8 MiB in float32), or one
// sequence where that is larger: memory stays bounded for any number of frames.
#define ATTN_CHUNK_REALS ((size_t)1 << 21)
// The score and value tiles are computed with gemm() from this many keys on; shorter
// sequences (temporal attention's frames) use the loops, which cost less than a call there.
#define ATTN_GEMM_MIN_KEYS 32
// A task takes consecutive units of work (query blocks) up to about this many multiply-adds,
// so that tiny units (8 frames) do not each pay for a trip through the thread pool.
#define ATTN_TASK_MACS ((size_t)1 << 16)

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

// Buffers of one call: the projections of one chunk of sequences and the per-worker tiles.
typedef struct {
    real *q, *o;            // (R,D)  queries (divided by sqrt(d) in place), heads merged
    real *k, *v;            // (Rk,D) keys, values: of the chunk, or of every prompt (cross-attention)
    real *dq, *dO, *dk, *dv; // backward only: (R,D) (R,D) (Rk,D) (Rk,D)
    real *xc, *dyc, *dxc;   // temporal attention only: the chunk's x (then its output), dout, dx rows (R,C)
    real *tile;             // per worker: kt (d,Tk), then p and dp (QB,Tk) each
    double *sums;           // per worker: (QB) exp-sums of a tile's rows
    size_t per_worker;      // reals of `tile` per worker
} AttnBuf;

static void buf_free(AttnBuf *b) {
    free(b->q); free(b->o); free(b->k); free(b->v); free(b->dq); free(b->dO); free(b->dk); free(b->dv);
    free(b->xc); free(b->dyc); free(b->dxc); free(b->tile); free(b->sums);
    memset(b, 0, sizeof *b);
}

static real *alloc_reals(size_t a, size_t b, const char *what) {
    size_t n;
    if (mv_mul_size(&n, a, b) || mv_mul_size(&n, n, sizeof(real))) { mv_fail_prefix("%s", what); return NULL; }
    return (real *)mv_malloc(n, what);
}

// R query rows per chunk, Rk key/value rows; `backward` adds the gradient buffers, `temporal`
// the gathered rows (dx's only with want_dx).
static int buf_alloc(AttnBuf *b, const AttnWeights *w, size_t R, size_t Rk, size_t Tq, size_t Tk, int backward,
                     int temporal, int want_dx) {
    size_t D = w->heads * w->dim_head, qb = min_size(Tq, ATTN_QUERY_BLOCK), workers = (size_t)threads_count();
    memset(b, 0, sizeof *b);
    if (mv_mul_size(&b->per_worker, w->dim_head + 2 * qb, Tk)) return mv_fail_prefix("attention score tiles");
    if (!(b->q = alloc_reals(R, D, "attention q")) || !(b->o = alloc_reals(R, D, "attention heads")) ||
        !(b->k = alloc_reals(Rk, D, "attention k")) || !(b->v = alloc_reals(Rk, D, "attention v")) ||
        !(b->tile = alloc_reals(workers, b->per_worker, "attention score tiles")) ||
        !(b->sums = (double *)mv_calloc(workers * ATTN_QUERY_BLOCK, sizeof(double), "attention row sums")))
        goto fail;
    if (backward && (!(b->dq = alloc_reals(R, D, "attention backward dq")) || !(b->dO = alloc_reals(R, D, "attention backward do")) ||
                     !(b->dk = alloc_reals(Rk, D, "attention backward dk")) || !(b->dv = alloc_reals(Rk, D, "attention backward dv"))))
        goto fail;
    if (temporal && !(b->xc = alloc_reals(R, w->Cq, "temporal attention rows"))) goto fail;
    if (temporal && backward && !(b->dyc = alloc_reals(R, w->Cq, "temporal attention backward rows"))) goto fail;
    if (temporal && backward && want_dx && !(b->dxc = alloc_reals(R, w->Cq, "temporal attention backward rows"))) goto fail;
    return MV_OK;
fail:
    buf_free(b);
    return MV_ERR;
}

// Sequences of T rows per chunk: as many as fit ATTN_CHUNK_REALS in every buffer, at least one.
static size_t chunk_seqs(const AttnWeights *w, size_t T, size_t nseq) {
    size_t D = w->heads * w->dim_head, width = D > w->Cq ? D : w->Cq, per = ATTN_CHUNK_REALS / width / T;
    if (per < 1) per = 1;
    return per < nseq ? per : nseq;
}

// Temporal attention's sequence g = b*S + s is pixel s of clip b: its frame f is row
// (b*F + f)*S + s of the (B,F,S,C) tensor. Copy the rows of sequences g0..g0+ng-1 into a
// sequence-major block xc (ng,F,C) (gather), or back (scatter), so that they are contiguous
// like the sequences of spatial self-attention.
static void temporal_gather(real *xc, const real *x, size_t g0, size_t ng, size_t F, size_t S, size_t C) {
    size_t i, f;
    for (i = 0; i < ng; i++)
        for (f = 0; f < F; f++) {
            size_t b = (g0 + i) / S, s = (g0 + i) % S;
            memcpy(xc + (i * F + f) * C, x + ((b * F + f) * S + s) * C, C * sizeof(real));
        }
}

static void temporal_scatter(real *x, const real *xc, size_t g0, size_t ng, size_t F, size_t S, size_t C) {
    size_t i, f;
    for (i = 0; i < ng; i++)
        for (f = 0; f < F; f++) {
            size_t b = (g0 + i) / S, s = (g0 + i) % S;
            memcpy(x + ((b * F + f) * S + s) * C, xc + (i * F + f) * C, C * sizeof(real));
        }
}

// The attention of one chunk: nseq sequences of Tq query rows in q, o; sequence i reads the
// key/value block (kv_seq0 + i) / kv_group of Tk rows in k, v (self-attention: block i of the
// chunk; cross-attention: the prompt of frame kv_seq0 + i, kv_group = F).
typedef struct {
    const AttnWeights *w;
    real *q, *o;              // (nseq*Tq, D)
    const real *k, *v;        // (blocks*Tk, D)
    real *dq, *dO, *dk, *dv;  // backward: as q, o, k, v
    size_t nseq, Tq, Tk, kv_seq0, kv_group;
    size_t nqb;               // query blocks per sequence
    size_t units, per_task;   // units of work and how many one task takes
    real *tile;               // per worker, per_worker reals
    double *sums;             // per worker, ATTN_QUERY_BLOCK
    size_t per_worker;
} AttnCore;

static void core_init(AttnCore *c, AttnBuf *b, const AttnWeights *w, size_t nseq, size_t Tq, size_t Tk,
                      size_t kv_seq0, size_t kv_group) {
    memset(c, 0, sizeof *c);
    c->w = w;
    c->q = b->q; c->o = b->o; c->k = b->k; c->v = b->v;
    c->dq = b->dq; c->dO = b->dO; c->dk = b->dk; c->dv = b->dv;
    c->nseq = nseq; c->Tq = Tq; c->Tk = Tk; c->kv_seq0 = kv_seq0; c->kv_group = kv_group;
    c->nqb = (Tq + ATTN_QUERY_BLOCK - 1) / ATTN_QUERY_BLOCK;
    c->tile = b->tile; c->sums = b->sums; c->per_worker = b->per_worker;
}

// Run `units` units of about `macs` multiply-adds each as tasks of consecutive units.
static void core_run(AttnCore *c, size_t units, size_t macs, TaskFn fn) {
    c->units = units;
    c->per_task = macs >= ATTN_TASK_MACS ? 1 : ATTN_TASK_MACS / (macs ? macs : 1);
    parallel_for((units + c->per_task - 1) / c->per_task, fn, c);
}

// The number of keys query row r sees.
#define KEYS(r) (w->causal && (r) + 1 < Tk ? (r) + 1 : Tk)

// The stable softmax numerators of a score tile p (nb,Tk) whose first row is query row q0:
// each row as attention_softmax_row over the keys it sees, 0 for the others (causal), l[r] its sum.
static void softmax_numerators(real *p, double *l, size_t nb, size_t Tk, size_t q0, int causal) {
    size_t r, j;
    for (r = 0; r < nb; r++) {
        real *pr = p + r * Tk; // (Tk)
        size_t nk = causal && q0 + r + 1 < Tk ? q0 + r + 1 : Tk;
        l[r] = attention_softmax_row(pr, nk);
        for (j = nk; j < Tk; j++) pr[j] = 0; // keys a causal row may not see
    }
}

// Attention of query rows q0.. (one block) of sequence i for head h: reads the block's queries
// from c->q and divides them by sqrt(d) in place, writes the same rows and channels of c->o.
static void attend_block(const AttnCore *c, size_t i, size_t h, size_t q0, real *kt, real *p, double *l) {
    const AttnWeights *w = c->w;
    size_t d = w->dim_head, D = w->heads * d, Tk = c->Tk, nb = min_size(c->Tq - q0, ATTN_QUERY_BLOCK);
    size_t kv = (c->kv_seq0 + i) / c->kv_group, r, j, e;
    real sqrt_d = (real)sqrt((double)d);
    real *q = c->q + (i * c->Tq + q0) * D + h * d; // (nb,d) at stride D
    real *o = c->o + (i * c->Tq + q0) * D + h * d; // (nb,d) at stride D
    const real *k = c->k + kv * Tk * D + h * d;    // (Tk,d) at stride D
    const real *v = c->v + kv * Tk * D + h * d;    // (Tk,d) at stride D
    int tiles = Tk >= ATTN_GEMM_MIN_KEYS; // the tiles as matrix products (else loops)
    for (r = 0; r < nb; r++)
        for (e = 0; e < d; e++) q[r * D + e] /= sqrt_d; // q / sqrt(d), as the memory-efficient path
    // scores of the block: p[r,j] = q_(q0+r) . k_j over this head's channels; a causal row q0+r
    // has keys 0..q0+r only (FlaxCLIP adds finfo.min to the others: exp gives 0)
    // (each p[r,j] still sums its d products in order e = 0..d-1)
    if (tiles) // the whole tile as one product (nb,d) x (d,Tk); causal rows ignore the scores past their last key below
        gemm(p, q, k, nb, Tk, d, Tk, D, D, GEMM_TB);
    else {
        for (j = 0; j < Tk; j++) // k transposed, so the score loop runs contiguously over keys
            for (e = 0; e < d; e++) kt[e * Tk + j] = k[j * D + e];
        for (r = 0; r < nb; r++) {
            const real *qr = q + r * D; // (d)
            real *pr = p + r * Tk;      // (Tk)
            size_t nk = KEYS(q0 + r);
            memset(pr, 0, nk * sizeof(real));
            for (e = 0; e < d; e++) {
                real qe = qr[e];
                const real *ke = kt + e * Tk; // (Tk): channel e of every key
                for (j = 0; j < nk; j++) pr[j] += qe * ke[j];
            }
        }
    }
    // stable softmax numerators: p = exp(p - rowmax), l = row sum (in double)
    softmax_numerators(p, l, nb, Tk, q0, w->causal);
    // o_r = (p_r V) / l_r for this head's channels
    if (tiles) // (nb,Tk) x (Tk,d) into this head's channels of o
        gemm(o, p, v, nb, d, Tk, D, Tk, D, 0);
    else
        for (r = 0; r < nb; r++) {
            const real *pr = p + r * Tk; // (Tk)
            real *orow = o + r * D;      // (d)
            size_t nk = KEYS(q0 + r);
            memset(orow, 0, d * sizeof(real));
            for (j = 0; j < nk; j++) {
                real pj = pr[j];
                const real *vj = v + j * D; // (d)
                for (e = 0; e < d; e++) orow[e] += pj * vj[e];
            }
        }
    for (r = 0; r < nb; r++)
        for (e = 0; e < d; e++) o[r * D + e] = (real)((double)o[r * D + e] / l[r]);
}

// Task: units are (sequence, head, query block), query block fastest.
static void attend_task(void *ctx, size_t task, int worker) {
    const AttnCore *c = (const AttnCore *)ctx;
    size_t u, u1 = min_size((task + 1) * c->per_task, c->units);
    real *kt = c->tile + (size_t)worker * c->per_worker; // (d,Tk)
    real *p = kt + c->w->dim_head * c->Tk;               // (min(Tq,QB),Tk)
    double *l = c->sums + (size_t)worker * ATTN_QUERY_BLOCK;
    for (u = task * c->per_task; u < u1; u++) {
        size_t b = u % c->nqb, h = u / c->nqb % c->w->heads, i = u / c->nqb / c->w->heads;
        attend_block(c, i, h, b * ATTN_QUERY_BLOCK, kt, p, l);
    }
}

static void attend_chunk(AttnCore *c) {
    size_t qb = min_size(c->Tq, ATTN_QUERY_BLOCK);
    core_run(c, c->nseq * c->w->heads * c->nqb, 2 * qb * c->Tk * c->w->dim_head, attend_task);
}

// Self-attention of nseq contiguous sequences of T rows: x (nseq*T, C) -> out (same); out may
// equal x (all of x is projected before out is written).
static void self_chunk(real *out, const real *x, AttnBuf *b, const AttnWeights *w, size_t nseq, size_t T) {
    AttnCore c;
    size_t C = w->Cq, D = w->heads * w->dim_head, R = nseq * T;
    linear_forward(b->q, x, w->wq, w->bq, R, C, D);
    linear_forward(b->k, x, w->wk, w->bk, R, C, D);
    linear_forward(b->v, x, w->wv, w->bv, R, C, D);
    core_init(&c, b, w, nseq, T, T, 0, 1);
    attend_chunk(&c);
    linear_forward(out, b->o, w->wo, w->bo, R, D, C);
}

static int self_forward(real *out, const real *x, const AttnWeights *w, size_t N, size_t T) {
    AttnBuf b;
    size_t n0, ns, C = w->Cq, per;
    per = chunk_seqs(w, T, N);
    if (buf_alloc(&b, w, per * T, per * T, T, T, 0, 0, 0)) return MV_ERR;
    for (n0 = 0; n0 < N; n0 += ns) {
        ns = min_size(per, N - n0);
        self_chunk(out + n0 * T * C, x + n0 * T * C, &b, w, ns, T);
    }
    buf_free(&b);
    return MV_OK;
}

static int cross_forward(real *out, const real *x, const real *ctx, const AttnWeights *w,
                         size_t B, size_t F, size_t T, size_t Tk) {
    AttnBuf b;
    AttnCore c;
    size_t n0, ns, C = w->Cq, D = w->heads * w->dim_head, per;
    per = chunk_seqs(w, T, B * F);
    if (buf_alloc(&b, w, per * T, B * Tk, T, Tk, 0, 0, 0)) return MV_ERR;
    // keys and values of every prompt, once: frame b*F+f reads those of prompt b
    linear_forward(b.k, ctx, w->wk, w->bk, B * Tk, w->Ckv, D);
    linear_forward(b.v, ctx, w->wv, w->bv, B * Tk, w->Ckv, D);
    for (n0 = 0; n0 < B * F; n0 += ns) {
        ns = min_size(per, B * F - n0);
        linear_forward(b.q, x + n0 * T * C, w->wq, w->bq, ns * T, C, D);
        core_init(&c, &b, w, ns, T, Tk, n0, F);
        attend_chunk(&c);
        linear_forward(out + n0 * T * C, b.o, w->wo, w->bo, ns * T, D, C);
    }
    buf_free(&b);
    return MV_OK;
}

static int temporal_forward(real *out, const real *x, const AttnWeights *w, size_t B, size_t F, size_t S) {
    AttnBuf b;
    size_t g0, ng, C = w->Cq, per;
    per = chunk_seqs(w, F, B * S);
    if (buf_alloc(&b, w, per * F, per * F, F, F, 0, 1, 0)) return MV_ERR;
    // the frames of a pixel are S*C apart: gather a chunk of pixels' frame sequences, attend as
    // self-attention (output over the gathered rows), scatter the output rows back
    for (g0 = 0; g0 < B * S; g0 += ng) {
        ng = min_size(per, B * S - g0);
        temporal_gather(b.xc, x, g0, ng, F, S, C);
        self_chunk(b.xc, b.xc, &b, w, ng, F);
        temporal_scatter(out, b.xc, g0, ng, F, S, C);
    }
    buf_free(&b);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// Backward. Nothing is cached by the forward: each chunk's q, k, v and its softmax tiles are
// recomputed here (the score tile is never stored whole, as in the forward). Per head, with
// qs = q / sqrt(d), s = qs k^T, P = softmax(s) (row-wise), o = P v, out = o Wo + bo:
//   dbo += sum_i dout_i,  dWo += o^T dout,  do = dout Wo^T
//   dP = do v^T,  dv += P^T do,  ds = P * (dP - rowsum(P * dP)),  dqs = ds k,  dk += ds^T qs
//   dq = dqs / sqrt(d);  then the projections: dWq += x^T dq, dx += dq Wq^T (same for k, v
//   from their source rows c, with dc += dk Wk^T + dv Wv^T).
// A task owns one key/value block and head and goes through the query blocks of every
// sequence of the chunk that reads that block, in order: dk and dv are summed in a fixed order.

// The backward of attend_block for query rows q0.. of sequence i, head h: recomputes the block's
// qs (in c->q, divided in place), its P (tile p) and o (c->o) as the forward, then accumulates
// dq (c->dq, divided by sqrt(d) at the end) and the key/value block's dk, dv (c->dk, c->dv);
// c->dO holds do = dout Wo^T. Each step is one matrix product, or its loop for short key sequences.
static void attend_block_backward(const AttnCore *c, size_t i, size_t h, size_t q0, real *p, real *dp, double *l) {
    const AttnWeights *w = c->w;
    size_t d = w->dim_head, D = w->heads * d, Tk = c->Tk, nb = min_size(c->Tq - q0, ATTN_QUERY_BLOCK);
    size_t kv = (c->kv_seq0 + i) / c->kv_group, at = (i * c->Tq + q0) * D + h * d, r, j, e;
    real sqrt_d = (real)sqrt((double)d);
    real *q = c->q + at, *o = c->o + at, *dq = c->dq + at; // (nb,d) each, at stride D
    const real *dO = c->dO + at;                           // (nb,d) at stride D
    const real *k = c->k + kv * Tk * D + h * d, *v = c->v + kv * Tk * D + h * d; // (Tk,d) each, at stride D
    real *dk = c->dk + kv * Tk * D + h * d, *dv = c->dv + kv * Tk * D + h * d;   // (Tk,d) each, at stride D
    int tiles = Tk >= ATTN_GEMM_MIN_KEYS; // the tiles as matrix products (else loops)
    for (r = 0; r < nb; r++)
        for (e = 0; e < d; e++) q[r * D + e] /= sqrt_d; // recompute the forward's qs = q / sqrt(d)
    // recompute as the forward: s_rj = qs_r . k_j (masked keys j >= nk left out)
    if (tiles) gemm(p, q, k, nb, Tk, d, Tk, D, D, GEMM_TB);
    else
        for (r = 0; r < nb; r++)
            for (j = 0; j < KEYS(q0 + r); j++) {
                real s = 0;
                for (e = 0; e < d; e++) s += q[r * D + e] * k[j * D + e];
                p[r * Tk + j] = s;
            }
    // p_rj = exp(s_rj - max_j s_rj), l_r = sum_j p_rj (in double); masked keys get 0
    softmax_numerators(p, l, nb, Tk, q0, w->causal);
    // o_r = (sum_j p_rj v_j) / l_r, then P_rj = p_rj / l_r
    if (tiles) gemm(o, p, v, nb, d, Tk, D, Tk, D, 0);
    else
        for (r = 0; r < nb; r++) {
            memset(o + r * D, 0, d * sizeof(real));
            for (j = 0; j < KEYS(q0 + r); j++)
                for (e = 0; e < d; e++) o[r * D + e] += p[r * Tk + j] * v[j * D + e];
        }
    for (r = 0; r < nb; r++) {
        for (e = 0; e < d; e++) o[r * D + e] = (real)((double)o[r * D + e] / l[r]);
        for (j = 0; j < Tk; j++) p[r * Tk + j] = (real)((double)p[r * Tk + j] / l[r]);
    }
    // forward was: o_r = sum_j P_rj v_j, so dP_rj = do_r . v_j and dv_j += P_rj do_r
    if (tiles) {
        gemm(dp, dO, v, nb, Tk, d, Tk, D, D, GEMM_TB);            // dP = do v^T (nb,Tk)
        gemm(dv, p, dO, Tk, d, nb, D, Tk, D, GEMM_TA | GEMM_ACC); // dv += P^T do (Tk,d)
    } else
        for (r = 0; r < nb; r++)
            for (j = 0; j < KEYS(q0 + r); j++) {
                real s = 0, pj = p[r * Tk + j];
                for (e = 0; e < d; e++) {
                    s += dO[r * D + e] * v[j * D + e];
                    dv[j * D + e] += pj * dO[r * D + e];
                }
                dp[r * Tk + j] = s;
            }
    // forward was: P_r = softmax(s_r), so ds_rj = P_rj (dP_rj - sum_k P_rk dP_rk)
    // (masked keys j >= nk have P = 0 and get nothing)
    for (r = 0; r < nb; r++) {
        real *pr = p + r * Tk, *dpr = dp + r * Tk; // (Tk) (Tk)
        size_t nk = KEYS(q0 + r);
        double rowdot = 0.0;
        for (j = 0; j < nk; j++) rowdot += (double)pr[j] * (double)dpr[j];
        for (j = 0; j < nk; j++) dpr[j] = (real)((double)pr[j] * ((double)dpr[j] - rowdot));
        for (j = nk; j < Tk; j++) dpr[j] = 0;
    }
    // forward was: s_rj = qs_r . k_j, so dqs_r += sum_j ds_rj k_j and dk_j += ds_rj qs_r
    if (tiles) {
        gemm(dq, dp, k, nb, d, Tk, D, Tk, D, GEMM_ACC);           // dqs += ds k (nb,d)
        gemm(dk, dp, q, Tk, d, nb, D, Tk, D, GEMM_TA | GEMM_ACC); // dk += ds^T qs (Tk,d)
    } else
        for (r = 0; r < nb; r++)
            for (j = 0; j < KEYS(q0 + r); j++) {
                real ds = dp[r * Tk + j];
                for (e = 0; e < d; e++) {
                    dq[r * D + e] += ds * k[j * D + e];
                    dk[j * D + e] += ds * q[r * D + e];
                }
            }
    // forward was: qs = q / sqrt(d), so dq = dqs / sqrt(d) (the block's rows are complete)
    for (r = 0; r < nb; r++)
        for (e = 0; e < d; e++) dq[r * D + e] /= sqrt_d;
}

// The key/value blocks the chunk's sequences read: first .. first + count - 1.
static size_t kv_first(const AttnCore *c) { return c->kv_seq0 / c->kv_group; }
static size_t kv_count(const AttnCore *c) { return (c->kv_seq0 + c->nseq - 1) / c->kv_group - kv_first(c) + 1; }

// Task: units are (key/value block, head), head fastest; a unit runs every query block of the
// chunk's sequences that read its key/value block, sequence by sequence.
static void attend_back_task(void *ctx, size_t task, int worker) {
    const AttnCore *c = (const AttnCore *)ctx;
    size_t u, u1 = min_size((task + 1) * c->per_task, c->units), qb = min_size(c->Tq, ATTN_QUERY_BLOCK);
    real *p = c->tile + (size_t)worker * c->per_worker; // (qb,Tk)
    real *dp = p + qb * c->Tk;                          // (qb,Tk)
    double *l = c->sums + (size_t)worker * ATTN_QUERY_BLOCK;
    for (u = task * c->per_task; u < u1; u++) {
        size_t kv = kv_first(c) + u / c->w->heads, h = u % c->w->heads, i, q0;
        size_t i0 = kv * c->kv_group > c->kv_seq0 ? kv * c->kv_group - c->kv_seq0 : 0;
        size_t i1 = min_size((kv + 1) * c->kv_group - c->kv_seq0, c->nseq);
        for (i = i0; i < i1; i++)
            for (q0 = 0; q0 < c->Tq; q0 += ATTN_QUERY_BLOCK) attend_block_backward(c, i, h, q0, p, dp, l);
    }
}

static void attend_chunk_backward(AttnCore *c) {
    size_t blocks = kv_count(c), seqs = (c->nseq + blocks - 1) / blocks;
    core_run(c, blocks * c->w->heads, 5 * seqs * c->Tq * c->Tk * c->w->dim_head, attend_back_task);
}

// The query side of a chunk of R rows, before the core: q (recomputed), do = dout Wo^T; dq zeroed.
static void query_begin(AttnBuf *b, const real *dout, const real *x, const AttnWeights *w, size_t R) {
    size_t C = w->Cq, D = w->heads * w->dim_head;
    linear_forward(b->q, x, w->wq, w->bq, R, C, D);
    // forward was: out = o Wo + bo, so do = dout Wo^T (dWo, dbo in query_end, once o is known)
    memset(b->dO, 0, R * D * sizeof(real));
    linear_backward(b->dO, NULL, NULL, dout, NULL, w->wo, R, D, C);
    memset(b->dq, 0, R * D * sizeof(real));
}

// The query side after the core: the output projection's and the query projection's gradients.
static void query_end(real *dx, const AttnGrads *g, AttnBuf *b, const real *dout, const real *x,
                      const AttnWeights *w, size_t R) {
    size_t C = w->Cq, D = w->heads * w->dim_head;
    // forward was: out = o Wo + bo, so dWo += o^T dout, dbo += sum dout
    linear_backward(NULL, g->dwo, g->dbo, dout, b->o, w->wo, R, D, C);
    // forward was: q = x Wq + bq, so dx += dq Wq^T, dWq += x^T dq, dbq += sum dq
    linear_backward(dx, g->dwq, w->bq ? g->dbq : NULL, b->dq, x, w->wq, R, C, D);
}

// k, v of R source rows c (R,Ckv) into b->k, b->v; b->dk, b->dv zeroed.
static void kv_begin(AttnBuf *b, const real *c, const AttnWeights *w, size_t R) {
    size_t D = w->heads * w->dim_head;
    linear_forward(b->k, c, w->wk, w->bk, R, w->Ckv, D);
    linear_forward(b->v, c, w->wv, w->bv, R, w->Ckv, D);
    memset(b->dk, 0, R * D * sizeof(real));
    memset(b->dv, 0, R * D * sizeof(real));
}

// forward was: k = c Wk + bk, v = c Wv + bv, so dc += dk Wk^T + dv Wv^T, dWk += c^T dk, ...
static void kv_end(real *dc, const AttnGrads *g, const real *c, AttnBuf *b, const AttnWeights *w, size_t R) {
    size_t D = w->heads * w->dim_head;
    linear_backward(dc, g->dwk, w->bk ? g->dbk : NULL, b->dk, c, w->wk, R, w->Ckv, D);
    linear_backward(dc, g->dwv, w->bv ? g->dbv : NULL, b->dv, c, w->wv, R, w->Ckv, D);
}

// Self-attention backward of nseq contiguous sequences of T rows (x, dout, dx: (nseq*T, C)).
static void self_chunk_backward(real *dx, const AttnGrads *g, const real *dout, const real *x, AttnBuf *b,
                                const AttnWeights *w, size_t nseq, size_t T) {
    AttnCore c;
    size_t R = nseq * T;
    kv_begin(b, x, w, R);
    query_begin(b, dout, x, w, R);
    core_init(&c, b, w, nseq, T, T, 0, 1);
    attend_chunk_backward(&c);
    query_end(dx, g, b, dout, x, w, R);
    kv_end(dx, g, x, b, w, R);
}

static int self_backward(real *dx, const AttnGrads *dw, const real *dout, const real *x,
                         const AttnWeights *w, size_t N, size_t T) {
    AttnBuf b;
    size_t n0, ns, C = w->Cq, per;
    per = chunk_seqs(w, T, N);
    if (buf_alloc(&b, w, per * T, per * T, T, T, 1, 0, 0)) return MV_ERR;
    for (n0 = 0; n0 < N; n0 += ns) {
        ns = min_size(per, N - n0);
        self_chunk_backward(dx ? dx + n0 * T * C : NULL, dw, dout + n0 * T * C, x + n0 * T * C, &b, w, ns, T);
    }
    buf_free(&b);
    return MV_OK;
}

static int cross_backward(real *dx, real *dctx, const AttnGrads *dw, const real *dout, const real *x,
                          const real *ctx, const AttnWeights *w, size_t B, size_t F, size_t T, size_t Tk) {
    AttnBuf b;
    AttnCore c;
    size_t n0, ns, C = w->Cq, per;
    per = chunk_seqs(w, T, B * F);
    if (buf_alloc(&b, w, per * T, B * Tk, T, Tk, 1, 0, 0)) return MV_ERR;
    kv_begin(&b, ctx, w, B * Tk); // every prompt's k, v; dk, dv collect all its frames
    for (n0 = 0; n0 < B * F; n0 += ns) {
        ns = min_size(per, B * F - n0);
        query_begin(&b, dout + n0 * T * C, x + n0 * T * C, w, ns * T);
        core_init(&c, &b, w, ns, T, Tk, n0, F);
        attend_chunk_backward(&c);
        query_end(dx ? dx + n0 * T * C : NULL, dw, &b, dout + n0 * T * C, x + n0 * T * C, w, ns * T);
    }
    // forward was: frame b*F+f attends to prompt b (the context repeated F times), so the
    // prompt's dk, dv, summed over its F frames above, go through Wk, Wv once
    kv_end(dctx, dw, ctx, &b, w, B * Tk);
    buf_free(&b);
    return MV_OK;
}

static int temporal_backward(real *dx, const AttnGrads *dw, const real *dout, const real *x,
                             const AttnWeights *w, size_t B, size_t F, size_t S) {
    AttnBuf b;
    size_t g0, ng, C = w->Cq, per;
    per = chunk_seqs(w, F, B * S);
    if (buf_alloc(&b, w, per * F, per * F, F, F, 1, 1, dx != NULL)) return MV_ERR;
    // as the forward: each chunk of pixels' frame sequences gathered (x, dout and dx), run as
    // self-attention, and dx scattered back
    for (g0 = 0; g0 < B * S; g0 += ng) {
        ng = min_size(per, B * S - g0);
        temporal_gather(b.xc, x, g0, ng, F, S, C);
        temporal_gather(b.dyc, dout, g0, ng, F, S, C);
        if (dx) temporal_gather(b.dxc, dx, g0, ng, F, S, C);
        self_chunk_backward(dx ? b.dxc : NULL, dw, b.dyc, b.xc, &b, w, ng, F);
        if (dx) temporal_scatter(dx, b.dxc, g0, ng, F, S, C);
    }
    buf_free(&b);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// The entry points of the fast path: the kind of attention from the view (attention.h).

static const AttnGrads no_grads = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};

int attention_forward_fast(real *out, const real *x, const real *ctx, const AttnWeights *w, const AttnView *v) {
    if (ctx) return cross_forward(out, x, ctx, w, v->nseq / v->per_ctx, v->per_ctx, v->T, v->Tk);
    if (v->S == 1) return self_forward(out, x, w, v->nseq, v->T);
    return temporal_forward(out, x, w, v->nseq / v->S, v->T, v->S);
}

int attention_backward_fast(real *dx, real *dctx, const AttnGrads *dw, const real *dout, const real *x,
                            const real *ctx, const AttnWeights *w, const AttnView *v) {
    if (!dw) dw = &no_grads;
    if (ctx) return cross_backward(dx, dctx, dw, dout, x, ctx, w, v->nseq / v->per_ctx, v->per_ctx, v->T, v->Tk);
    if (v->S == 1) return self_backward(dx, dw, dout, x, w, v->nseq, v->T);
    return temporal_backward(dx, dw, dout, x, w, v->nseq / v->S, v->T, v->S);
}
