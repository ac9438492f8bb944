// attention.c: multi-head attention, the plain path: scaled dot-product attention one sequence,
// one head and one query row at a time (the readable path), forward and backward, and the entry
// points of the three kinds, which describe their sequences as an AttnView and go through the
// door (engine.h) to this path or to the tiled one of attention_fast.c.
//
// As diffusers' memory-efficient path, the one the model runs: q is divided by sqrt(d) before
// q.k, the row max is subtracted, and the exp-weighted sum of V is divided by the exp-sum at
// the end. (The standard path, softmax then V, differs only by rounding.)
#include "attention.h"
#include "engine.h"
#include "expf_poly.h"
#include "linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// e^x for x <= 0 in the build's precision: the softmax numerators (float32: expf_poly, a
// branch-free polynomial a loop of which the compiler vectorizes, within 2 ulps; float64: exp).
static real exp_real(real x) {
#if MAVREF_PRECISION == 32
    return expf_poly(x);
#else
    return exp(x);
#endif
}

double attention_softmax_row(real *p, size_t nk) {
    real m = p[0];
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j;
    for (j = 1; j < nk; j++) m = p[j] > m ? p[j] : m;
    for (j = 0; j < nk; j++) p[j] = exp_real(p[j] - m);
    // eight interleaved partial sums (j mod 8), then added in order: a fixed order that
    // vectorizes; in double, so the order changes l by ~1e-16 relative at most
    for (j = 0; j + 8 <= nk; j += 8) {
        s[0] += (double)p[j]; s[1] += (double)p[j + 1]; s[2] += (double)p[j + 2]; s[3] += (double)p[j + 3];
        s[4] += (double)p[j + 4]; s[5] += (double)p[j + 5]; s[6] += (double)p[j + 6]; s[7] += (double)p[j + 7];
    }
    for (; j < nk; j++) s[j % 8] += (double)p[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Row t of sequence n in x (and out, dout, dx): ((n / S) * T + t) * S + n % S.
static size_t view_row(const AttnView *v, size_t n, size_t t) { return ((n / v->S) * v->T + t) * v->S + n % v->S; }

// The keys query row t sees: 0..t with the causal mask (FlaxCLIP adds finfo.min to the
// others: exp gives 0), all Tk otherwise.
static size_t keys_seen(const AttnWeights *w, size_t t, size_t Tk) { return w->causal && t + 1 < Tk ? t + 1 : Tk; }

// One query row of one head: qs (d), keys and values (nk rows of d at stride D).
//   p_j = exp(qs . k_j - max_j qs . k_j)   (nk)  left in p, the softmax numerators
//   o = (sum_j p_j v_j) / l,  l = sum_j p_j      returns l
static double attend_row(real *o, real *p, const real *qs, const real *k, const real *v, size_t nk, size_t d, size_t D) {
    size_t j, e;
    double l;
    for (j = 0; j < nk; j++) {
        real s = 0;
        for (e = 0; e < d; e++) s += qs[e] * k[j * D + e];
        p[j] = s;
    }
    l = attention_softmax_row(p, nk);
    for (e = 0; e < d; e++) o[e] = 0;
    for (j = 0; j < nk; j++)
        for (e = 0; e < d; e++) o[e] += p[j] * v[j * D + e];
    for (e = 0; e < d; e++) o[e] = (real)((double)o[e] / l);
    return l;
}

// Buffers of the plain path: one sequence's projections, one row of scores.
typedef struct {
    real *q, *o, *dq, *dO; // (T,D) each: queries (then divided by sqrt(d)), heads merged, their gradients
    real *k, *v, *dk, *dv; // (Tk,D) each
    real *p, *dp;          // (Tk) each: a row of softmax numerators (then P), its gradient
} RefBuf;

static void ref_free(RefBuf *b) {
    free(b->q); free(b->o); free(b->dq); free(b->dO); free(b->k); free(b->v); free(b->dk); free(b->dv); free(b->p); free(b->dp);
}

static int ref_alloc(RefBuf *b, const AttnWeights *w, const AttnView *v, int backward) {
    size_t D = w->heads * w->dim_head, T = v->T, Tk = v->Tk;
    memset(b, 0, sizeof *b);
    b->q = (real *)mv_calloc(T * D, sizeof(real), "attention q"); b->o = (real *)mv_calloc(T * D, sizeof(real), "attention o");
    b->k = (real *)mv_calloc(Tk * D, sizeof(real), "attention k"); b->v = (real *)mv_calloc(Tk * D, sizeof(real), "attention v");
    b->p = (real *)mv_calloc(Tk, sizeof(real), "attention scores");
    if (backward) {
        b->dq = (real *)mv_calloc(T * D, sizeof(real), "attention dq"); b->dO = (real *)mv_calloc(T * D, sizeof(real), "attention do");
        b->dk = (real *)mv_calloc(Tk * D, sizeof(real), "attention dk"); b->dv = (real *)mv_calloc(Tk * D, sizeof(real), "attention dv");
        b->dp = (real *)mv_calloc(Tk, sizeof(real), "attention score gradients");
    }
    if (b->q && b->o && b->k && b->v && b->p && (!backward || (b->dq && b->dO && b->dk && b->dv && b->dp))) return MV_OK;
    ref_free(b);
    return MV_ERR;
}

// q, k, v of sequence n: q = x Wq + bq over its rows; k = c Wk + bk, v = c Wv + bv over the
// same rows (self-attention), or over its context's Tk rows (cross-attention: projected once,
// for the first of the per_ctx sequences that share it). Returns 1 when k, v were (re)made.
static int project(RefBuf *b, const real *x, const real *ctx, const AttnWeights *w, const AttnView *v, size_t n) {
    size_t C = w->Cq, D = w->heads * w->dim_head, t;
    for (t = 0; t < v->T; t++) linear_forward_ref(b->q + t * D, x + view_row(v, n, t) * C, w->wq, w->bq, 1, C, D);
    if (ctx && n % v->per_ctx) return 0; // the context's k, v are already there
    if (ctx) {
        const real *c = ctx + n / v->per_ctx * v->Tk * w->Ckv; // (Tk,Ckv)
        linear_forward_ref(b->k, c, w->wk, w->bk, v->Tk, w->Ckv, D);
        linear_forward_ref(b->v, c, w->wv, w->bv, v->Tk, w->Ckv, D);
        return 1;
    }
    for (t = 0; t < v->T; t++) {
        linear_forward_ref(b->k + t * D, x + view_row(v, n, t) * C, w->wk, w->bk, 1, C, D);
        linear_forward_ref(b->v + t * D, x + view_row(v, n, t) * C, w->wv, w->bv, 1, C, D);
    }
    return 1;
}

int attention_forward_ref(real *out, const real *x, const real *ctx, const AttnWeights *w, const AttnView *v) {
    size_t C = w->Cq, d = w->dim_head, D = w->heads * d, n, h, t, e;
    real sqrt_d = (real)sqrt((double)d);
    RefBuf b;
    if (ref_alloc(&b, w, v, 0)) return MV_ERR;
    for (n = 0; n < v->nseq; n++) {
        project(&b, x, ctx, w, v, n);
        for (h = 0; h < w->heads; h++)
            for (t = 0; t < v->T; t++) {
                real *qs = b.q + t * D + h * d; // (d)
                for (e = 0; e < d; e++) qs[e] /= sqrt_d;
                attend_row(b.o + t * D + h * d, b.p, qs, b.k + h * d, b.v + h * d, keys_seen(w, t, v->Tk), d, D);
            }
        // out = concat_h(o) Wo + bo (all of the sequence's x was read above: out may be x)
        for (t = 0; t < v->T; t++) linear_forward_ref(out + view_row(v, n, t) * C, b.o + t * D, w->wo, w->bo, 1, D, C);
    }
    ref_free(&b);
    return MV_OK;
}

// The backward of one query row t of one head h, after attend_row recomputed its numerators p
// (with l) and o: accumulates dq_t (dqs, divided by sqrt(d) by the caller) and the head's
// dk, dv; dO holds do = dout Wo^T.
static void attend_row_backward(RefBuf *b, const AttnWeights *w, size_t h, size_t t, size_t nk, double l) {
    size_t d = w->dim_head, D = w->heads * d, j, e;
    const real *qs = b->q + t * D + h * d, *dO = b->dO + t * D + h * d; // (d) (d)
    const real *k = b->k + h * d, *v = b->v + h * d;                    // (nk,d) at stride D
    real *dq = b->dq + t * D + h * d, *dk = b->dk + h * d, *dv = b->dv + h * d;
    double rowdot = 0.0;
    for (j = 0; j < nk; j++) b->p[j] = (real)((double)b->p[j] / l); // P_j = p_j / l
    // forward was: o = sum_j P_j v_j, so dP_j = do . v_j and dv_j += P_j do
    for (j = 0; j < nk; j++) {
        real s = 0;
        for (e = 0; e < d; e++) {
            s += dO[e] * v[j * D + e];
            dv[j * D + e] += b->p[j] * dO[e];
        }
        b->dp[j] = s;
    }
    // forward was: P = softmax(s), so ds_j = P_j (dP_j - sum_i P_i dP_i)
    for (j = 0; j < nk; j++) rowdot += (double)b->p[j] * (double)b->dp[j];
    for (j = 0; j < nk; j++) b->dp[j] = (real)((double)b->p[j] * ((double)b->dp[j] - rowdot));
    // forward was: s_j = qs . k_j, so dqs += ds_j k_j and dk_j += ds_j qs
    for (j = 0; j < nk; j++)
        for (e = 0; e < d; e++) {
            dq[e] += b->dp[j] * k[j * D + e];
            dk[j * D + e] += b->dp[j] * qs[e];
        }
}

// The weight and input gradients of sequence n's projections, once dq, dk, dv are complete.
static void project_backward(real *dx, real *dctx, const AttnGrads *g, RefBuf *b, const real *dout, const real *x,
                             const real *ctx, const AttnWeights *w, const AttnView *v, size_t n) {
    size_t C = w->Cq, D = w->heads * w->dim_head, t;
    for (t = 0; t < v->T; t++) { // forward was: out = o Wo + bo, so dWo += o^T dout, dbo += dout
        size_t r = view_row(v, n, t);
        linear_backward_ref(NULL, g->dwo, g->dbo, dout + r * C, b->o + t * D, w->wo, 1, D, C);
    }
    for (t = 0; t < v->T; t++) { // forward was: q = x Wq + bq, so dx += dq Wq^T, dWq += x^T dq, dbq += dq
        size_t r = view_row(v, n, t);
        linear_backward_ref(dx ? dx + r * C : NULL, g->dwq, w->bq ? g->dbq : NULL, b->dq + t * D, x + r * C, w->wq, 1, C, D);
    }
    // forward was: k = c Wk + bk, v = c Wv + bv, so dc += dk Wk^T + dv Wv^T, dWk += c^T dk, ...
    if (ctx) { // once the last sequence of the context has added its dk, dv
        const real *c = ctx + n / v->per_ctx * v->Tk * w->Ckv; // (Tk,Ckv)
        real *dc = dctx ? dctx + n / v->per_ctx * v->Tk * w->Ckv : NULL;
        if (n % v->per_ctx != v->per_ctx - 1) return;
        linear_backward_ref(dc, g->dwk, w->bk ? g->dbk : NULL, b->dk, c, w->wk, v->Tk, w->Ckv, D);
        linear_backward_ref(dc, g->dwv, w->bv ? g->dbv : NULL, b->dv, c, w->wv, v->Tk, w->Ckv, D);
        return;
    }
    for (t = 0; t < v->T; t++) {
        size_t r = view_row(v, n, t);
        linear_backward_ref(dx ? dx + r * C : NULL, g->dwk, w->bk ? g->dbk : NULL, b->dk + t * D, x + r * C, w->wk, 1, C, D);
    }
    for (t = 0; t < v->T; t++) {
        size_t r = view_row(v, n, t);
        linear_backward_ref(dx ? dx + r * C : NULL, g->dwv, w->bv ? g->dbv : NULL, b->dv + t * D, x + r * C, w->wv, 1, C, D);
    }
}

static const AttnGrads no_grads = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};

// Nothing is cached by the forward: each sequence's q, k, v, P and o are recomputed.
int attention_backward_ref(real *dx, real *dctx, const AttnGrads *dw, const real *dout, const real *x,
                           const real *ctx, const AttnWeights *w, const AttnView *v) {
    size_t C = w->Cq, d = w->dim_head, D = w->heads * d, n, h, t, e;
    real sqrt_d = (real)sqrt((double)d);
    RefBuf b;
    if (!dw) dw = &no_grads;
    if (ref_alloc(&b, w, v, 1)) return MV_ERR;
    for (n = 0; n < v->nseq; n++) {
        if (project(&b, x, ctx, w, v, n)) { // new keys and values: their gradients start at zero
            memset(b.dk, 0, v->Tk * D * sizeof(real));
            memset(b.dv, 0, v->Tk * D * sizeof(real));
        }
        // forward was: out = o Wo + bo, so do = dout Wo^T
        memset(b.dO, 0, v->T * D * sizeof(real));
        for (t = 0; t < v->T; t++) linear_backward_ref(b.dO + t * D, NULL, NULL, dout + view_row(v, n, t) * C, NULL, w->wo, 1, D, C);
        memset(b.dq, 0, v->T * D * sizeof(real));
        for (h = 0; h < w->heads; h++)
            for (t = 0; t < v->T; t++) {
                real *qs = b.q + t * D + h * d, *dq = b.dq + t * D + h * d; // (d) (d)
                size_t nk = keys_seen(w, t, v->Tk);
                double l;
                for (e = 0; e < d; e++) qs[e] /= sqrt_d; // recompute the forward: qs = q / sqrt(d), P, o
                l = attend_row(b.o + t * D + h * d, b.p, qs, b.k + h * d, b.v + h * d, nk, d, D);
                attend_row_backward(&b, w, h, t, nk, l);
                // forward was: qs = q / sqrt(d), so dq = dqs / sqrt(d)
                for (e = 0; e < d; e++) dq[e] /= sqrt_d;
            }
        project_backward(dx, dctx, dw, &b, dout, x, ctx, w, v, n);
    }
    ref_free(&b);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// The entry points: check the sizes, describe the sequences, and go through the door.

static int check_weights(const AttnWeights *w, size_t Tq, size_t Tk, int self) {
    size_t D;
    if (!w->wq || !w->wk || !w->wv || !w->wo) return mv_fail("attention: missing weight");
    if (w->heads == 0 || w->dim_head == 0 || w->Cq == 0 || w->Ckv == 0)
        return mv_fail("attention: heads, dim_head and widths must be positive");
    if (Tq == 0 || Tk == 0) return mv_fail("attention: empty sequence");
    if (w->causal && Tq != Tk) return mv_fail("attention: a causal mask needs as many keys as queries");
    if (mv_mul_size(&D, w->heads, w->dim_head)) return mv_fail_prefix("attention");
    if (self && w->Ckv != w->Cq) return mv_fail("Ckv %lu != Cq %lu", (unsigned long)w->Ckv, (unsigned long)w->Cq);
    return MV_OK;
}

static int forward(real *out, const real *x, const real *ctx, const AttnWeights *w, const AttnView *v) {
    return engine_reference() ? attention_forward_ref(out, x, ctx, w, v) : attention_forward_fast(out, x, ctx, w, v);
}

static int backward(real *dx, real *dctx, const AttnGrads *dw, const real *dout, const real *x, const real *ctx,
                    const AttnWeights *w, const AttnView *v) {
    if (engine_reference()) return attention_backward_ref(dx, dctx, dw, dout, x, ctx, w, v);
    return attention_backward_fast(dx, dctx, dw, dout, x, ctx, w, v);
}

int attention_self_forward(real *out, const real *x, const AttnWeights *w, size_t N, size_t T) {
    AttnView v = {N, T, 1, T, 1}; // N contiguous sequences of T rows
    if (check_weights(w, T, T, 1)) return mv_fail_prefix("spatial self-attention");
    return forward(out, x, NULL, w, &v);
}

int attention_cross_forward(real *out, const real *x, const real *ctx, const AttnWeights *w,
                            size_t B, size_t F, size_t T, size_t Tk) {
    AttnView v = {B * F, T, 1, Tk, F}; // frame b*F + f reads prompt b
    if (check_weights(w, T, Tk, 0)) return mv_fail_prefix("cross-attention");
    return forward(out, x, ctx, w, &v);
}

int attention_temporal_forward(real *out, const real *x, const AttnWeights *w, size_t B, size_t F, size_t S) {
    AttnView v = {B * S, F, S, F, 1}; // pixel s of clip b: the frames f, rows (b*F + f)*S + s
    if (check_weights(w, F, F, 1)) return mv_fail_prefix("temporal attention");
    return forward(out, x, NULL, w, &v);
}

int attention_self_backward(real *dx, const AttnGrads *dw, const real *dout, const real *x,
                            const AttnWeights *w, size_t N, size_t T) {
    AttnView v = {N, T, 1, T, 1};
    if (check_weights(w, T, T, 1)) return mv_fail_prefix("spatial self-attention backward");
    return backward(dx, NULL, dw, dout, x, NULL, w, &v);
}

int attention_cross_backward(real *dx, real *dctx, const AttnGrads *dw, const real *dout, const real *x,
                             const real *ctx, const AttnWeights *w, size_t B, size_t F, size_t T, size_t Tk) {
    AttnView v = {B * F, T, 1, Tk, F};
    if (check_weights(w, T, Tk, 0)) return mv_fail_prefix("cross-attention backward");
    return backward(dx, dctx, dw, dout, x, ctx, w, &v);
}

int attention_temporal_backward(real *dx, const AttnGrads *dw, const real *dout, const real *x,
                                const AttnWeights *w, size_t B, size_t F, size_t S) {
    AttnView v = {B * S, F, S, F, 1};
    if (check_weights(w, F, F, 1)) return mv_fail_prefix("temporal attention backward");
    return backward(dx, NULL, dw, dout, x, NULL, w, &v);
}
