// attention.c: multi-head attention with query-block tiling.
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
                a->l[i] = l;
            }
            // o_i = (p_i V) / l_i for this head's channels
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
