// attention.c: multi-head attention with query-block tiling, forward and backward.
//
// Every entry point walks over sequences; a sequence is a set of token rows at a fixed stride
// (contiguous for spatial and cross attention, H*W*C apart for temporal attention). For each
// sequence: project q, k, v into scratch, then for each head and each block of queries compute
// the (block x keys) score tile, its stable softmax, and the tile times V; finally project the
// merged heads with to_out_0. This follows diffusers' memory-efficient path, the one the model
// runs: q is divided by sqrt(d) before q.k, the row max is subtracted, and the exp-weighted sum
// of V is divided by the exp-sum at the end. (The standard path, softmax then V, differs only
// by rounding.)
#include "attention.h"
#include "gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Scratch for one sequence.
typedef struct {
    real *q;    // (Tq,D)
    real *k;    // (Tk,D)
    real *kt;   // (D,Tk)  k transposed, so the score loop runs contiguously over keys
    real *v;    // (Tk,D)
    real *o;    // (Tq,D)  heads merged, before to_out_0
    real *p;    // (QB,Tk) one score tile
    double *l;  // (QB)    exp-sums of the tile's rows
} AttnWork;

static void work_free(AttnWork *a) {
    free(a->q); free(a->k); free(a->kt); free(a->v); free(a->o); free(a->p); free(a->l);
    memset(a, 0, sizeof *a);
}

static real *alloc_reals(size_t a, size_t b, const char *what) {
    size_t n;
    if (mv_mul_size(&n, a, b) || mv_mul_size(&n, n, sizeof(real))) { mv_fail_prefix("%s", what); return NULL; }
    return (real *)mv_malloc(n, what);
}

static int work_alloc(AttnWork *a, const AttnWeights *w, size_t Tq, size_t Tk) {
    size_t D = w->heads * w->dim_head, qb = Tq < ATTN_QUERY_BLOCK ? Tq : ATTN_QUERY_BLOCK;
    memset(a, 0, sizeof *a);
    if (!(a->q = alloc_reals(Tq, D, "attention q")) || !(a->k = alloc_reals(Tk, D, "attention k")) ||
        !(a->kt = alloc_reals(D, Tk, "attention k transposed")) ||
        !(a->v = alloc_reals(Tk, D, "attention v")) || !(a->o = alloc_reals(Tq, D, "attention heads")) ||
        !(a->p = alloc_reals(qb, Tk, "attention score tile")) ||
        !(a->l = (double *)mv_calloc(qb, sizeof(double), "attention row sums"))) {
        work_free(a);
        return MV_ERR;
    }
    return MV_OK;
}

static int check_weights(const AttnWeights *w, size_t Tq, size_t Tk) {
    size_t D;
    if (!w->wq || !w->wk || !w->wv || !w->wo) return mv_fail("attention: missing weight");
    if (w->heads == 0 || w->dim_head == 0 || w->Cq == 0 || w->Ckv == 0)
        return mv_fail("attention: heads, dim_head and widths must be positive");
    if (Tq == 0 || Tk == 0) return mv_fail("attention: empty sequence");
    if (w->causal && Tq != Tk) return mv_fail("attention: a causal mask needs as many keys as queries");
    if (mv_mul_size(&D, w->heads, w->dim_head)) return mv_fail_prefix("attention");
    return MV_OK;
}

// y[t,:] = bias + x[t,:] @ kernel for T rows read at stride xs and written at stride ys.
static void rows_linear(real *y, size_t ys, const real *x, size_t xs, const real *kernel, const real *bias,
                        size_t T, size_t I, size_t O) {
    size_t t, i, o;
    if (!mv_reference_path) { // fast path: y = bias, then y += x kernel as one matrix product
        for (t = 0; t < T; t++) {
            if (bias) memcpy(y + t * ys, bias, O * sizeof(real));
            else memset(y + t * ys, 0, O * sizeof(real));
        }
        if (gemm(y, x, kernel, T, O, I, ys, xs, O, GEMM_ACC) == MV_OK) return;
    }
    for (t = 0; t < T; t++) {
        const real *xt = x + t * xs; // (I)
        real *yt = y + t * ys;       // (O)
        if (bias) memcpy(yt, bias, O * sizeof(real));
        else memset(yt, 0, O * sizeof(real));
        for (i = 0; i < I; i++) {
            real xi = xt[i];
            const real *k = kernel + i * O; // (O)
            for (o = 0; o < O; o++) yt[o] += xi * k[o];
        }
    }
}

// Project k and v of one key/value sequence (Tk rows at stride cs).
static void project_kv(AttnWork *a, const real *c, size_t cs, const AttnWeights *w, size_t Tk) {
    size_t D = w->heads * w->dim_head, j, e;
    rows_linear(a->k, D, c, cs, w->wk, w->bk, Tk, w->Ckv, D);
    rows_linear(a->v, D, c, cs, w->wv, w->bv, Tk, w->Ckv, D);
    for (j = 0; j < Tk; j++)
        for (e = 0; e < D; e++) a->kt[e * Tk + j] = a->k[j * D + e];
}

// The number of keys query row r sees.
#define KEYS(r) (w->causal && (r) + 1 < Tk ? (r) + 1 : Tk)

// Attention of one sequence whose keys and values are already in a->kt, a->v: reads the Tq query rows of
// x (stride xs), writes the Tq output rows of out (stride os).
static void attend_sequence(real *out, size_t os, const real *x, size_t xs, AttnWork *a,
                            const AttnWeights *w, size_t Tq, size_t Tk) {
    size_t d = w->dim_head, D = w->heads * d, h, q0, i, j, e, t;
    real sqrt_d = (real)sqrt((double)d);
    rows_linear(a->q, D, x, xs, w->wq, w->bq, Tq, w->Cq, D);
    for (t = 0; t < Tq * D; t++) a->q[t] /= sqrt_d; // q / sqrt(d), as the memory-efficient path
    for (h = 0; h < w->heads; h++)
        for (q0 = 0; q0 < Tq; q0 += ATTN_QUERY_BLOCK) {
            size_t nb = Tq - q0 < ATTN_QUERY_BLOCK ? Tq - q0 : ATTN_QUERY_BLOCK;
            // scores of the block: p[i,j] = q_(q0+i) . k_j over this head's channels; a causal
            // row q0+i has keys 0..q0+i only (FlaxCLIP adds finfo.min to the others: exp gives 0)
            // (each p[i,j] still sums its d products in order e = 0..d-1)
            // fast path: the whole tile as one product (nb,d) x (d,Tk); causal rows ignore the
            // scores past their last key below
            if (mv_reference_path || gemm(a->p, a->q + q0 * D + h * d, a->kt + h * d * Tk, nb, Tk, d, Tk, D, Tk, 0))
                for (i = 0; i < nb; i++) {
                    const real *qi = a->q + (q0 + i) * D + h * d; // (d)
                    real *pi = a->p + i * Tk;                     // (Tk)
                    size_t nk = KEYS(q0 + i);
                    memset(pi, 0, nk * sizeof(real));
                    for (e = 0; e < d; e++) {
                        real qe = qi[e];
                        const real *ke = a->kt + (h * d + e) * Tk; // (Tk): channel h*d+e of every key
                        for (j = 0; j < nk; j++) pi[j] += qe * ke[j];
                    }
                }
            // stable softmax numerators: p = exp(p - rowmax), l = row sum (in double)
            for (i = 0; i < nb; i++) {
                real *pi = a->p + i * Tk, m = pi[0];
                size_t nk = KEYS(q0 + i);
                double l = 0.0;
                for (j = 1; j < nk; j++) if (pi[j] > m) m = pi[j];
                for (j = 0; j < nk; j++) {
                    pi[j] = (real)exp((double)(pi[j] - m));
                    l += (double)pi[j];
                }
                for (j = nk; j < Tk; j++) pi[j] = 0; // keys a causal row may not see
                a->l[i] = l;
            }
            // o_i = (p_i V) / l_i for this head's channels
            // fast path: (nb,Tk) x (Tk,d) into this head's channels of o
            if (mv_reference_path || gemm(a->o + q0 * D + h * d, a->p, a->v + h * d, nb, d, Tk, D, Tk, D, 0))
                for (i = 0; i < nb; i++) {
                    const real *pi = a->p + i * Tk;
                    real *oi = a->o + (q0 + i) * D + h * d; // (d)
                    size_t nk = KEYS(q0 + i);
                    memset(oi, 0, d * sizeof(real));
                    for (j = 0; j < nk; j++) {
                        real pj = pi[j];
                        const real *vj = a->v + j * D + h * d; // (d)
                        for (e = 0; e < d; e++) oi[e] += pj * vj[e];
                    }
                }
            for (i = 0; i < nb; i++) {
                real *oi = a->o + (q0 + i) * D + h * d; // (d)
                for (e = 0; e < d; e++) oi[e] = (real)((double)oi[e] / a->l[i]);
            }
        }
    rows_linear(out, os, a->o, D, w->wo, w->bo, Tq, D, w->Cq);
}

int attention_self_forward(real *out, const real *x, const AttnWeights *w, size_t N, size_t T) {
    AttnWork a;
    size_t n, C = w->Cq;
    if (check_weights(w, T, T)) return mv_fail_prefix("spatial self-attention");
    if (w->Ckv != w->Cq) return mv_fail("spatial self-attention: Ckv %lu != Cq %lu", (unsigned long)w->Ckv, (unsigned long)C);
    if (work_alloc(&a, w, T, T)) return MV_ERR;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * T * C; // (T,C)
        project_kv(&a, xn, C, w, T);
        attend_sequence(out + n * T * C, C, xn, C, &a, w, T, T);
    }
    work_free(&a);
    return MV_OK;
}

int attention_cross_forward(real *out, const real *x, const real *ctx, const AttnWeights *w,
                            size_t B, size_t F, size_t T, size_t Tk) {
    AttnWork a;
    size_t b, f, C = w->Cq;
    if (check_weights(w, T, Tk)) return mv_fail_prefix("cross-attention");
    if (work_alloc(&a, w, T, Tk)) return MV_ERR;
    for (b = 0; b < B; b++) {
        project_kv(&a, ctx + b * Tk * w->Ckv, w->Ckv, w, Tk); // once per prompt, shared by its frames
        for (f = 0; f < F; f++) {
            size_t n = b * F + f;
            attend_sequence(out + n * T * C, C, x + n * T * C, C, &a, w, T, Tk);
        }
    }
    work_free(&a);
    return MV_OK;
}

int attention_temporal_forward(real *out, const real *x, const AttnWeights *w, size_t B, size_t F, size_t S) {
    AttnWork a;
    size_t b, s, C = w->Cq;
    if (check_weights(w, F, F)) return mv_fail_prefix("temporal attention");
    if (w->Ckv != w->Cq) return mv_fail("temporal attention: Ckv %lu != Cq %lu", (unsigned long)w->Ckv, (unsigned long)C);
    if (work_alloc(&a, w, F, F)) return MV_ERR;
    for (b = 0; b < B; b++)
        for (s = 0; s < S; s++) {
            // frame f of pixel s of clip b is row (b*F + f)*S + s: stride S*C between frames
            const real *xs = x + (b * F * S + s) * C;
            project_kv(&a, xs, S * C, w, F);
            attend_sequence(out + (b * F * S + s) * C, S * C, xs, S * C, &a, w, F, F);
        }
    work_free(&a);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// Backward. Nothing is cached by the forward: each sequence's q, k, v and its softmax tiles
// are recomputed here (the score tile is never stored whole, as in the forward). Per head,
// with qs = q / sqrt(d), s = qs k^T, P = softmax(s) (row-wise), o = P v, out = o Wo + bo:
//   dbo += sum_i dout_i,  dWo += o^T dout,  do = dout Wo^T
//   dP = do v^T,  dv += P^T do,  ds = P * (dP - rowsum(P * dP)),  dqs = ds k,  dk += ds^T qs
//   dq = dqs / sqrt(d);  then the projections: dWq += x^T dq, dx += dq Wq^T (same for k, v
//   from their source rows c, with dc += dk Wk^T + dv Wv^T).

typedef struct {
    real *q, *o, *dq, *dO;  // (Tq,D) each
    real *k, *v, *dk, *dv;  // (Tk,D) each
    real *p, *dp;           // (QB,Tk) one tile of probabilities and of their gradient
} AttnBackWork;

static void back_free(AttnBackWork *a) {
    free(a->q); free(a->o); free(a->dq); free(a->dO); free(a->k); free(a->v); free(a->dk); free(a->dv);
    free(a->p); free(a->dp);
    memset(a, 0, sizeof *a);
}

static int back_alloc(AttnBackWork *a, const AttnWeights *w, size_t Tq, size_t Tk) {
    size_t D = w->heads * w->dim_head, qb = Tq < ATTN_QUERY_BLOCK ? Tq : ATTN_QUERY_BLOCK;
    memset(a, 0, sizeof *a);
    if (!(a->q = alloc_reals(Tq, D, "attention backward q")) || !(a->o = alloc_reals(Tq, D, "attention backward o")) ||
        !(a->dq = alloc_reals(Tq, D, "attention backward dq")) || !(a->dO = alloc_reals(Tq, D, "attention backward do")) ||
        !(a->k = alloc_reals(Tk, D, "attention backward k")) || !(a->v = alloc_reals(Tk, D, "attention backward v")) ||
        !(a->dk = alloc_reals(Tk, D, "attention backward dk")) || !(a->dv = alloc_reals(Tk, D, "attention backward dv")) ||
        !(a->p = alloc_reals(qb, Tk, "attention backward tile")) || !(a->dp = alloc_reals(qb, Tk, "attention backward tile"))) {
        back_free(a);
        return MV_ERR;
    }
    return MV_OK;
}

// Gradients of rows_linear (y[t] = bias + x[t] kernel), T rows at strides: accumulates
//   dx[t,:] += dy[t,:] kernel^T,  dkernel += x[t,:]^T dy[t,:],  dbias += dy[t,:]   (each NULL-able)
static void rows_linear_backward(real *dx, size_t dxs, real *dkernel, real *dbias,
                                 const real *dy, size_t dys, const real *x, size_t xs, const real *kernel,
                                 size_t T, size_t I, size_t O) {
    size_t t, i, o;
    for (t = 0; t < T; t++) {
        const real *dyt = dy + t * dys; // (O)
        if (dbias)
            for (o = 0; o < O; o++) dbias[o] += dyt[o];
        for (i = 0; i < I; i++) {
            const real *k = kernel + i * O; // (O)
            if (dx) {
                real acc = 0;
                for (o = 0; o < O; o++) acc += dyt[o] * k[o];
                dx[t * dxs + i] += acc;
            }
            if (dkernel) {
                real xi = x[t * xs + i];
                real *dk = dkernel + i * O; // (O)
                for (o = 0; o < O; o++) dk[o] += xi * dyt[o];
            }
        }
    }
}

// The backward of attend_sequence for Tq query rows (x at stride xs, dout at stride dos, dx at
// stride dxs) against the keys/values in a->k, a->v: accumulates dx (query path), the q and
// out projections' weight gradients, and adds the keys'/values' gradients to a->dk, a->dv.
static void attend_sequence_backward(real *dx, size_t dxs, const AttnGrads *g, const real *dout, size_t dos,
                                     const real *x, size_t xs, AttnBackWork *a, const AttnWeights *w,
                                     size_t Tq, size_t Tk) {
    size_t d = w->dim_head, D = w->heads * d, h, q0, i, j, e, t;
    real sqrt_d = (real)sqrt((double)d);
    // recompute the forward's qs = (x Wq + bq) / sqrt(d)
    rows_linear(a->q, D, x, xs, w->wq, w->bq, Tq, w->Cq, D);
    for (t = 0; t < Tq * D; t++) a->q[t] /= sqrt_d;
    // forward was: out = o Wo + bo, so do = dout Wo^T (dWo, dbo below, once o is known)
    memset(a->dO, 0, Tq * D * sizeof(real));
    rows_linear_backward(a->dO, D, NULL, NULL, dout, dos, NULL, 0, w->wo, Tq, D, w->Cq);
    memset(a->dq, 0, Tq * D * sizeof(real));
    for (h = 0; h < w->heads; h++)
        for (q0 = 0; q0 < Tq; q0 += ATTN_QUERY_BLOCK) {
            size_t nb = Tq - q0 < ATTN_QUERY_BLOCK ? Tq - q0 : ATTN_QUERY_BLOCK;
            for (i = 0; i < nb; i++) {
                const real *qi = a->q + (q0 + i) * D + h * d;   // (d)
                const real *doi = a->dO + (q0 + i) * D + h * d; // (d)
                real *oi = a->o + (q0 + i) * D + h * d;         // (d)
                real *dqi = a->dq + (q0 + i) * D + h * d;       // (d)
                real *pi = a->p + i * Tk, *dpi = a->dp + i * Tk; // (Tk) (Tk)
                size_t nk = KEYS(q0 + i);
                real m;
                double l = 0.0, rowdot = 0.0;
                // recompute as the forward: s_ij = qs_i . k_j, p_ij = exp(s_ij - max) / l_i, o_i = (sum_j exp v_j) / l_i
                for (j = 0; j < nk; j++) {
                    const real *kj = a->k + j * D + h * d; // (d)
                    real s = 0;
                    for (e = 0; e < d; e++) s += qi[e] * kj[e];
                    pi[j] = s;
                }
                m = pi[0];
                for (j = 1; j < nk; j++) if (pi[j] > m) m = pi[j];
                for (j = 0; j < nk; j++) {
                    pi[j] = (real)exp((double)(pi[j] - m));
                    l += (double)pi[j];
                }
                memset(oi, 0, d * sizeof(real));
                for (j = 0; j < nk; j++) {
                    const real *vj = a->v + j * D + h * d; // (d)
                    for (e = 0; e < d; e++) oi[e] += pi[j] * vj[e];
                }
                for (e = 0; e < d; e++) oi[e] = (real)((double)oi[e] / l);
                for (j = 0; j < nk; j++) pi[j] = (real)((double)pi[j] / l); // now P_ij
                // forward was: o_i = sum_j P_ij v_j, so dP_ij = do_i . v_j and dv_j += P_ij do_i
                for (j = 0; j < nk; j++) {
                    const real *vj = a->v + j * D + h * d; // (d)
                    real *dvj = a->dv + j * D + h * d;     // (d)
                    real s = 0;
                    for (e = 0; e < d; e++) {
                        s += doi[e] * vj[e];
                        dvj[e] += pi[j] * doi[e];
                    }
                    dpi[j] = s;
                    rowdot += (double)pi[j] * (double)s;
                }
                // forward was: P_i = softmax(s_i), so ds_ij = P_ij (dP_ij - sum_k P_ik dP_ik)
                // (masked keys j >= nk have P = 0 and get nothing)
                for (j = 0; j < nk; j++) dpi[j] = (real)((double)pi[j] * ((double)dpi[j] - rowdot));
                // forward was: s_ij = qs_i . k_j, so dqs_i += sum_j ds_ij k_j and dk_j += ds_ij qs_i
                for (j = 0; j < nk; j++) {
                    const real *kj = a->k + j * D + h * d; // (d)
                    real *dkj = a->dk + j * D + h * d;     // (d)
                    real ds = dpi[j];
                    for (e = 0; e < d; e++) {
                        dqi[e] += ds * kj[e];
                        dkj[e] += ds * qi[e];
                    }
                }
            }
        }
    // forward was: qs = q / sqrt(d), so dq = dqs / sqrt(d)
    for (t = 0; t < Tq * D; t++) a->dq[t] /= sqrt_d;
    // forward was: out = o Wo + bo, so dWo += o^T dout, dbo += sum dout
    rows_linear_backward(NULL, 0, g->dwo, g->dbo, dout, dos, a->o, D, w->wo, Tq, D, w->Cq);
    // forward was: q = x Wq + bq, so dx += dq Wq^T, dWq += x^T dq, dbq += sum dq
    rows_linear_backward(dx, dxs, g->dwq, w->bq ? g->dbq : NULL, a->dq, D, x, xs, w->wq, Tq, w->Cq, D);
}

// k, v of the Tk source rows c (stride cs) into a->k, a->v; a->dk, a->dv zeroed.
static void back_kv_begin(AttnBackWork *a, const real *c, size_t cs, const AttnWeights *w, size_t Tk) {
    size_t D = w->heads * w->dim_head;
    rows_linear(a->k, D, c, cs, w->wk, w->bk, Tk, w->Ckv, D);
    rows_linear(a->v, D, c, cs, w->wv, w->bv, Tk, w->Ckv, D);
    memset(a->dk, 0, Tk * D * sizeof(real));
    memset(a->dv, 0, Tk * D * sizeof(real));
}

// forward was: k = c Wk + bk, v = c Wv + bv, so dc += dk Wk^T + dv Wv^T, dWk += c^T dk, ...
static void back_kv_end(real *dc, size_t dcs, const AttnGrads *g, const real *c, size_t cs, AttnBackWork *a,
                        const AttnWeights *w, size_t Tk) {
    size_t D = w->heads * w->dim_head;
    rows_linear_backward(dc, dcs, g->dwk, w->bk ? g->dbk : NULL, a->dk, D, c, cs, w->wk, Tk, w->Ckv, D);
    rows_linear_backward(dc, dcs, g->dwv, w->bv ? g->dbv : NULL, a->dv, D, c, cs, w->wv, Tk, w->Ckv, D);
}

static const AttnGrads no_grads = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};

int attention_self_backward(real *dx, const AttnGrads *dw, const real *dout, const real *x,
                            const AttnWeights *w, size_t N, size_t T) {
    AttnBackWork a;
    size_t n, C = w->Cq;
    if (!dw) dw = &no_grads;
    if (check_weights(w, T, T)) return mv_fail_prefix("spatial self-attention backward");
    if (w->Ckv != w->Cq) return mv_fail("spatial self-attention backward: Ckv %lu != Cq %lu", (unsigned long)w->Ckv, (unsigned long)C);
    if (back_alloc(&a, w, T, T)) return MV_ERR;
    for (n = 0; n < N; n++) {
        const real *xn = x + n * T * C; // (T,C)
        real *dxn = dx ? dx + n * T * C : NULL; // (T,C)
        back_kv_begin(&a, xn, C, w, T);
        attend_sequence_backward(dxn, C, dw, dout + n * T * C, C, xn, C, &a, w, T, T);
        back_kv_end(dxn, C, dw, xn, C, &a, w, T);
    }
    back_free(&a);
    return MV_OK;
}

int attention_cross_backward(real *dx, real *dctx, const AttnGrads *dw, const real *dout, const real *x,
                             const real *ctx, const AttnWeights *w, size_t B, size_t F, size_t T, size_t Tk) {
    AttnBackWork a;
    size_t b, f, C = w->Cq;
    if (!dw) dw = &no_grads;
    if (check_weights(w, T, Tk)) return mv_fail_prefix("cross-attention backward");
    if (back_alloc(&a, w, T, Tk)) return MV_ERR;
    for (b = 0; b < B; b++) {
        const real *cb = ctx + b * Tk * w->Ckv; // (Tk,Ckv)
        back_kv_begin(&a, cb, w->Ckv, w, Tk);
        // forward was: frame b*F+f attends to prompt b (the context repeated F times), so the
        // prompt's dk, dv collect the gradients of all F frames before going through Wk, Wv
        for (f = 0; f < F; f++) {
            size_t n = b * F + f;
            attend_sequence_backward(dx ? dx + n * T * C : NULL, C, dw, dout + n * T * C, C, x + n * T * C, C, &a,
                                     w, T, Tk);
        }
        back_kv_end(dctx ? dctx + b * Tk * w->Ckv : NULL, w->Ckv, dw, cb, w->Ckv, &a, w, Tk);
    }
    back_free(&a);
    return MV_OK;
}

int attention_temporal_backward(real *dx, const AttnGrads *dw, const real *dout, const real *x,
                                const AttnWeights *w, size_t B, size_t F, size_t S) {
    AttnBackWork a;
    size_t b, s, C = w->Cq;
    if (!dw) dw = &no_grads;
    if (check_weights(w, F, F)) return mv_fail_prefix("temporal attention backward");
    if (w->Ckv != w->Cq) return mv_fail("temporal attention backward: Ckv %lu != Cq %lu", (unsigned long)w->Ckv, (unsigned long)C);
    if (back_alloc(&a, w, F, F)) return MV_ERR;
    for (b = 0; b < B; b++)
        for (s = 0; s < S; s++) {
            // frame f of pixel s of clip b is row (b*F + f)*S + s: stride S*C between frames
            size_t at = (b * F * S + s) * C;
            real *dxs = dx ? dx + at : NULL;
            back_kv_begin(&a, x + at, S * C, w, F);
            attend_sequence_backward(dxs, S * C, dw, dout + at, S * C, x + at, S * C, &a, w, F, F);
            back_kv_end(dxs, S * C, dw, x + at, S * C, &a, w, F);
        }
    back_free(&a);
    return MV_OK;
}
