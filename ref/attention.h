// attention.h: multi-head attention as diffusers' FlaxAttention computes it, in the three ways
// the pseudo-3D transformer block uses it (spatial self-attention, cross-attention to the text,
// temporal self-attention across frames). The plain path (attention_forward_ref and
// attention_backward_ref, ref/attention.c) and the tiled one (ref/attention_fast.c) share one
// description of the sequences, AttnView, at the end of this header.
#ifndef MAVREF_ATTENTION_H
#define MAVREF_ATTENTION_H

#include "mavref.h"

// One attention layer's weights (Flax names attn*/to_q, to_k, to_v, to_out_0). D = heads*dim_head.
// Head h uses channels [h*dim_head, (h+1)*dim_head) of the projections. Zero the struct before
// filling it (memset): a bias left NULL means "no bias", causal left 0 means no mask.
typedef struct {
    const real *wq;  // (Cq,D)   to_q/kernel, no bias
    const real *wk;  // (Ckv,D)  to_k/kernel, no bias
    const real *wv;  // (Ckv,D)  to_v/kernel, no bias
    const real *wo;  // (D,Cq)   to_out_0/kernel
    const real *bo;  // (Cq)     to_out_0/bias, or NULL
    const real *bq;  // (D)      query bias, or NULL (NULL in the UNet; the VAE's attention has one)
    const real *bk;  // (D)      key bias, or NULL
    const real *bv;  // (D)      value bias, or NULL
    size_t Cq;       // query (and output) width
    size_t Ckv;      // key/value source width (= Cq for self-attention, 768 for the text context)
    size_t heads, dim_head;
    int causal;      // 1: query i sees only keys j <= i (CLIP's text encoder); 0 in the UNet
} AttnWeights;

// The tiled path processes queries in blocks of this many: the only score storage is one
// (ATTN_QUERY_BLOCK x keys) tile per thread, whatever the number of sequences, heads or frames.
#define ATTN_QUERY_BLOCK 64

// For every sequence, with q = x Wq, k = c Wk, v = c Wv (c = x for self-attention) and per head:
//   (q, k, v plus their optional biases)
//   s[i,j] = (q_i / sqrt(d)) . k_j,   m_i = max_j s[i,j]      (j <= i only when causal)
//   o_i = (sum_j exp(s[i,j] - m_i) v_j) / (sum_j exp(s[i,j] - m_i))      (= softmax(s) v)
//   out = concat_h(o) Wo + bo
// No padding mask, no positional term; the causal flag is the only mask. Each function returns
// MV_ERR (with a message) only on bad sizes or a failed allocation. out may equal x (each
// sequence is fully read before it is written); otherwise they must not overlap.
// Each runs attention_forward_ref where engine_reference() (engine.h), else attention_forward_fast.

// (1) Spatial self-attention: N = B*F sequences (one per frame) of T = H*W tokens.
int attention_self_forward(real *out,       // (N,T,Cq)
                           const real *x,   // (N,T,Cq)
                           const AttnWeights *w, size_t N, size_t T);

// (2) Cross-attention: frame row n = b*F + f attends to the Tk tokens of prompt b (the context
// repeated per frame, batch-major, as jnp.repeat(ctx, F, axis=0); the repeat is not materialized:
// keys and values of a prompt are projected once and shared by its F frames).
int attention_cross_forward(real *out,         // (B*F,T,Cq)
                            const real *x,     // (B*F,T,Cq)
                            const real *ctx,   // (B,Tk,Ckv)
                            const AttnWeights *w, size_t B, size_t F, size_t T, size_t Tk);

// (3) Temporal self-attention: at each of the S = H*W pixels of each clip, the F frames attend
// to each other ((B,F,S,C) viewed as (B*S, F, C) without copying).
int attention_temporal_forward(real *out,       // (B,F,S,Cq)
                               const real *x,   // (B,F,S,Cq)
                               const AttnWeights *w, size_t B, size_t F, size_t S);

// ---------------------------------------------------------------------------------------
// Backward (SPEC.md section 4.9). Gradients of one layer's weights, shaped as in AttnWeights;
// every pointer may be NULL (not wanted, e.g. frozen weights); dbq/dbk/dbv are used only when
// the layer has those biases. All gradients ACCUMULATE (+=) into caller-zeroed buffers.
typedef struct {
    real *dwq;  // (Cq,D)
    real *dwk;  // (Ckv,D)
    real *dwv;  // (Ckv,D)
    real *dwo;  // (D,Cq)
    real *dbo;  // (Cq)
    real *dbq;  // (D)
    real *dbk;  // (D)
    real *dbv;  // (D)
} AttnGrads;

// The forward keeps no cache: q, k, v, the softmax tiles and o are recomputed per chunk of
// sequences (as the forward computes them). Per head, qs = q/sqrt(d), P = softmax(qs k^T), o = P v:
//   dWo += o^T dout, dbo += sum dout, do = dout Wo^T
//   dP = do v^T, dv += P^T do, ds = P * (dP - rowsum(P * dP)), dq = (ds k)/sqrt(d), dk += ds^T qs
//   dx += dq Wq^T (+ dk Wk^T + dv Wv^T for self-attention), dW* += source^T d*
// dx (and dctx) may be NULL; dw may be NULL (no weight gradients). dx must not overlap dout
// or x. MV_ERR (with a message) on bad sizes or a failed allocation.
int attention_self_backward(real *dx,               // (N,T,Cq) or NULL
                            const AttnGrads *dw,
                            const real *dout,       // (N,T,Cq)
                            const real *x,          // (N,T,Cq)
                            const AttnWeights *w, size_t N, size_t T);

// The context gradient of prompt b sums over its F frames (the forward's per-frame repeat).
int attention_cross_backward(real *dx,              // (B*F,T,Cq) or NULL
                             real *dctx,            // (B,Tk,Ckv) or NULL
                             const AttnGrads *dw,
                             const real *dout,      // (B*F,T,Cq)
                             const real *x,         // (B*F,T,Cq)
                             const real *ctx,       // (B,Tk,Ckv)
                             const AttnWeights *w, size_t B, size_t F, size_t T, size_t Tk);

int attention_temporal_backward(real *dx,           // (B,F,S,Cq) or NULL
                                const AttnGrads *dw,
                                const real *dout,   // (B,F,S,Cq)
                                const real *x,      // (B,F,S,Cq)
                                const AttnWeights *w, size_t B, size_t F, size_t S);

// ---------------------------------------------------------------------------------------
// The two paths behind the entry points, on one description of the sequences. Query row t of
// sequence n is row view_row(n, t) = ((n / S) * T + t) * S + n % S of x (and out, dout, dx):
//   spatial self-attention  {N, T, 1, T, 1}      contiguous sequences
//   cross-attention         {B*F, T, 1, Tk, F}   keys and values from ctx: sequence n reads the
//                                                Tk rows of prompt n / F, shared by its F frames
//   temporal attention      {B*S, F, S, F, 1}    sequence b*S + s is pixel s of clip b: its frames
//                                                are S rows apart (an index view, nothing copied)
// ctx is NULL for self-attention (the keys are the sequence's own rows). The sizes are not
// checked here: the entry points above check them first.
typedef struct {
    size_t nseq;    // sequences
    size_t T;       // query rows per sequence
    size_t S;       // the stride of a sequence's rows (1: contiguous)
    size_t Tk;      // keys per sequence (= T for self-attention)
    size_t per_ctx; // cross-attention: consecutive sequences sharing one context (1 otherwise)
} AttnView;

// The plain path: one sequence, head and query row at a time, the formulas above as loops;
// the dense projections are linear_forward_ref / linear_backward_ref row by row. The backward
// recomputes q, k, v, P and o per sequence (nothing cached) and accumulates as the backward
// entry points do. MV_ERR only if its buffers (a sequence's projections) cannot be had.
int attention_forward_ref(real *out,            // rows of x's layout, (nseq*T, Cq) in all
                          const real *x,        // as out
                          const real *ctx,      // (nseq/per_ctx, Tk, Ckv), or NULL
                          const AttnWeights *w, const AttnView *v);
int attention_backward_ref(real *dx,            // as x, or NULL
                           real *dctx,          // as ctx, or NULL
                           const AttnGrads *dw, // or NULL
                           const real *dout,    // as x
                           const real *x,       // as out of the forward
                           const real *ctx,     // (nseq/per_ctx, Tk, Ckv), or NULL
                           const AttnWeights *w, const AttnView *v);

// The fast path (attention_fast.c): the same math on chunks of sequences, with matrix products
// (ref/gemm.c), query-block tiles and the thread pool. Same arguments and contract as the _ref
// functions; results differ from them only by rounding and do not depend on the thread count.
int attention_forward_fast(real *out, const real *x, const real *ctx, const AttnWeights *w, const AttnView *v);
int attention_backward_fast(real *dx, real *dctx, const AttnGrads *dw, const real *dout, const real *x,
                            const real *ctx, const AttnWeights *w, const AttnView *v);

// The stable softmax numerators of one row of nk scores, as both paths compute them:
// p[j] = exp(p[j] - max_j p[j]) in place; returns l = sum_j p[j], summed in double as eight
// interleaved partial sums (j mod 8) added pairwise (a fixed order that vectorizes).
double attention_softmax_row(real *p, size_t nk);

#endif
