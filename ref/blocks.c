// blocks.c: ResnetBlockPseudo3D, TransformerPseudo3DModel and the convolution block.
#include "blocks.h"
#include "activations.h"
#include "attention.h"
#include "groupnorm.h"
#include "layernorm.h"
#include "linear.h"
#include "threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Elementwise glue of the forward passes, in blocks of elements or rows on the thread pool
// (each block written by one task: the same bits for any thread count).

typedef struct {
    real *y;         // (n) or (B,S,C)
    const real *x;   // (n), or (B,C): one row per clip
    size_t S, C;
} AddJob;

static void add_range(void *ctx, size_t begin, size_t end) {
    const AddJob *j = (const AddJob *)ctx;
    size_t i;
    for (i = begin; i < end; i++) j->y[i] += j->x[i];
}

// y += x, elementwise (a residual connection).
static void add_into(real *y, const real *x, size_t n) { // (n) (n)
    AddJob j;
    j.y = y; j.x = x; j.S = j.C = 0;
    parallel_range(n, (size_t)1 << 15, add_range, &j);
}

// Rows [begin, end) of the (B*S, C) view: row q += x[q / S].
static void add_rows_range(void *ctx, size_t begin, size_t end) {
    const AddJob *j = (const AddJob *)ctx;
    size_t q, c;
    for (q = begin; q < end; q++) {
        real *row = j->y + q * j->C;              // (C)
        const real *add = j->x + q / j->S * j->C; // (C)
        for (c = 0; c < j->C; c++) row[c] += add[c];
    }
}

// y[b,s,:] += x[b,:] for every position s of clip b (the time embedding).
static void add_per_clip(real *y, const real *x, size_t B, size_t S, size_t C) { // (B,S,C) (B,C)
    AddJob j;
    j.y = y; j.x = x; j.S = S; j.C = C;
    parallel_range(B * S, 16384 / (C + 1) + 1, add_rows_range, &j);
}

// A parameter by "<prefix>.<suffix>", checked against the expected shape.
static const real *param(ParamTable *pt, const char *prefix, const char *suffix, int ndim, size_t d0, size_t d1,
                         size_t d2, size_t d3) {
    char name[512];
    Tensor *t;
    size_t want[4];
    int i, ok;
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    t = params_get(pt, name);
    if (!t) return NULL;
    want[0] = d0; want[1] = d1; want[2] = d2; want[3] = d3;
    ok = t->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char a[128], b[128];
        mv_fail("parameter '%s' has shape %s, the block needs %s", name, shape_str(a, sizeof a, t->ndim, t->shape),
                shape_str(b, sizeof b, ndim, want));
        return NULL;
    }
    return t->data;
}

int conv_block_forward(Tensor *out, const Tensor *in, ParamTable *pt, const char *name, const BlockDims *d,
                       const Conv2dGeom *g) {
    size_t B = d->B, F = d->F, H = in->shape[2], W = in->shape[3], Ci = in->shape[4], Co, Ho, Wo;
    const real *sk, *sb, *tk = NULL, *tb = NULL;
    char sub[64];
    Tensor *kt;
    const char *kn = d->plain_names ? "kernel" : "spatial_conv.kernel", *bn = d->plain_names ? "bias" : "spatial_conv.bias";
    snprintf(sub, sizeof sub, "%s.%s", name, kn);
    if (!(kt = params_get(pt, sub))) return MV_ERR;
    if (kt->ndim != 4) return mv_fail("parameter '%s' must be a 4-D HWIO kernel", sub);
    Co = kt->shape[3];
    if (!(sk = param(pt, name, kn, 4, g->KH, g->KW, Ci, Co)) || !(sb = param(pt, name, bn, 1, Co, 0, 0, 0)))
        return MV_ERR;
    if (d->temporal && (!(tk = param(pt, name, "temporal_conv.kernel", 3, 3, Co, Co, 0)) ||
                        !(tb = param(pt, name, "temporal_conv.bias", 1, Co, 0, 0, 0))))
        return MV_ERR;
    if (conv2d_out_size(&Ho, &Wo, H, W, g)) return mv_fail_prefix("%s", name);
    if (tensor_alloc_v(out, 5, B, F, Ho, Wo, Co)) return mv_fail_prefix("%s", name);
    if (!d->temporal) {
        conv2d_forward(out->data, in->data, sk, sb, B * F, H, W, Ci, Co, g);
        return MV_OK;
    }
    {
        Tensor work;
        int rc;
        if (tensor_alloc_v(&work, 5, B, F, Ho, Wo, Co)) { tensor_free(out); return mv_fail_prefix("%s", name); }
        rc = conv_pseudo3d_forward(out->data, work.data, in->data, sk, sb, tk, tb, B, F, H, W, Ci, Co, g);
        tensor_free(&work);
        if (rc) { tensor_free(out); return mv_fail_prefix("%s", name); }
    }
    return MV_OK;
}

static const Conv2dGeom CONV3 = {3, 3, 1, 1, 1, 1, 1};
static const Conv2dGeom CONV1 = {1, 1, 1, 0, 0, 0, 0};

int resnet_forward(Tensor *out, const Tensor *x, const real *temb, ParamTable *pt, const char *prefix, const BlockDims *d) {
    size_t B = d->B, F = d->F, H = x->shape[2], W = x->shape[3], Cin = x->shape[4], Cout, S = F * H * W;
    const real *n1s, *n1b, *n2s, *n2b, *tw, *tbias;
    Tensor h, h2, t, res;
    char name[512];
    Tensor *k1;
    int rc = MV_ERR;
    memset(&h, 0, sizeof h); memset(&h2, 0, sizeof h2); memset(&t, 0, sizeof t); memset(&res, 0, sizeof res);
    snprintf(name, sizeof name, "%s.conv1.%s", prefix, d->plain_names ? "kernel" : "spatial_conv.kernel");
    if (!(k1 = params_get(pt, name))) return MV_ERR;
    if (k1->ndim != 4) return mv_fail("parameter '%s' must be a 4-D HWIO kernel", name);
    Cout = k1->shape[3];
    if (!(n1s = param(pt, prefix, "norm1.scale", 1, Cin, 0, 0, 0)) || !(n1b = param(pt, prefix, "norm1.bias", 1, Cin, 0, 0, 0)) ||
        !(n2s = param(pt, prefix, "norm2.scale", 1, Cout, 0, 0, 0)) || !(n2b = param(pt, prefix, "norm2.bias", 1, Cout, 0, 0, 0)))
        return MV_ERR;
    tw = tbias = NULL;
    if (d->Ct && temb && (!(tw = param(pt, prefix, "time_emb_proj.kernel", 2, d->Ct, Cout, 0, 0)) ||
                          !(tbias = param(pt, prefix, "time_emb_proj.bias", 1, Cout, 0, 0, 0))))
        return MV_ERR;
    if (Cin % 32 || Cout % 32) return mv_fail("%s: channels %lu -> %lu are not multiples of 32 groups", prefix, (unsigned long)Cin, (unsigned long)Cout);
    // h = silu(GN1(x)), statistics over all frames
    if (tensor_alloc(&h, 5, x->shape)) goto done;
    groupnorm_forward(h.data, NULL, NULL, x->data, n1s, n1b, B, S, Cin, 32, d->gn_eps);
    silu_forward(h.data, h.data, h.numel);
    snprintf(name, sizeof name, "%s.conv1", prefix);
    if (conv_block_forward(&h2, &h, pt, name, d, &CONV3)) goto done;
    tensor_free(&h);
    // t = time_emb_proj(silu(temb)), added to every frame and pixel of its clip
    if (tw) {
        Tensor tp;
        if (tensor_alloc_v(&t, 2, B, d->Ct)) goto done;
        silu_forward(t.data, temb, B * d->Ct);
        if (tensor_alloc_v(&tp, 2, B, Cout)) goto done;
        linear_forward(tp.data, t.data, tw, tbias, B, d->Ct, Cout);
        add_per_clip(h2.data, tp.data, B, S, Cout);
        tensor_free(&tp);
    }
    // h = conv2(silu(GN2(h2)))
    groupnorm_forward(h2.data, NULL, NULL, h2.data, n2s, n2b, B, S, Cout, 32, d->gn_eps);
    silu_forward(h2.data, h2.data, h2.numel);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    if (conv_block_forward(out, &h2, pt, name, d, &CONV3)) goto done;
    // out += shortcut(x)
    if (Cin != Cout) {
        snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
        if (conv_block_forward(&res, x, pt, name, d, &CONV1)) { tensor_free(out); goto done; }
        add_into(out->data, res.data, out->numel);
    } else {
        add_into(out->data, x->data, out->numel);
    }
    rc = MV_OK;
done:
    if (rc) mv_fail_prefix("%s", prefix);
    tensor_free(&h); tensor_free(&h2); tensor_free(&t); tensor_free(&res);
    return rc;
}

// Attention weights "<prefix>.<attn>.{to_q,to_k,to_v,to_out_0}".
static int attn_weights(AttnWeights *w, ParamTable *pt, const char *prefix, const char *attn, size_t C, size_t Ckv,
                        size_t heads) {
    char p[512];
    memset(w, 0, sizeof *w); // FlaxAttention: no q/k/v biases, no mask
    snprintf(p, sizeof p, "%s.%s", prefix, attn);
    w->Cq = C; w->Ckv = Ckv; w->heads = heads; w->dim_head = C / heads;
    if (!(w->wq = param(pt, p, "to_q.kernel", 2, C, C, 0, 0)) || !(w->wk = param(pt, p, "to_k.kernel", 2, Ckv, C, 0, 0)) ||
        !(w->wv = param(pt, p, "to_v.kernel", 2, Ckv, C, 0, 0)) || !(w->wo = param(pt, p, "to_out_0.kernel", 2, C, C, 0, 0)) ||
        !(w->bo = param(pt, p, "to_out_0.bias", 1, C, 0, 0, 0)))
        return MV_ERR;
    return MV_OK;
}

// The feed-forward on rows in blocks, so the (rows, 4C) GEGLU output stays small:
// h[r] += net_2(GEGLU(n[r])) for each row r. The forward takes blocks of FF_ELEMS GEGLU
// outputs (16 MiB in float32), large enough that the products' packing of the weights is
// small beside them (blocks of 256 rows packed net_2's kernel once per 256 rows).
#define FF_ROWS 256
#define FF_ELEMS ((size_t)1 << 22)
static int feedforward_add(real *h, const real *n, size_t N, size_t C, const real *w0, const real *b0, const real *w2,
                           const real *b2, GeluKind gelu) {
    size_t r0, rows, block = FF_ELEMS / (4 * C) > FF_ROWS ? FF_ELEMS / (4 * C) : FF_ROWS;
    real *g, *o;
    int rc = MV_OK;
    if (block > N) block = N;
    g = (real *)mv_malloc(block * 4 * C * sizeof(real), "feed-forward rows"); // (block,4C)
    o = (real *)mv_malloc(block * C * sizeof(real), "feed-forward rows");     // (block,C)
    if (!g || !o) { free(g); free(o); return MV_ERR; }
    for (r0 = 0; r0 < N && rc == MV_OK; r0 += rows) {
        rows = N - r0 < block ? N - r0 : block;
        rc = geglu_forward(g, n + r0 * C, w0, b0, rows, C, 4 * C, gelu);
        linear_forward(o, g, w2, b2, rows, 4 * C, C);
        add_into(h + r0 * C, o, rows * C);
    }
    free(g);
    free(o);
    return rc;
}

// The weights of a TransformerPseudo3DModel named `prefix`, each checked against its shape
// (C channels, Cctx the text width), named as the Flax paths below `prefix` and
// `prefix.transformer_blocks_0`.
typedef struct {
    const real *scale, *bias;  // (C) (C)
} NormWeights;
typedef struct {
    const real *kernel, *bias; // (Cin,Cout) (Cout); a 1x1 conv's (1,1,Cin,Cout) kernel is the same memory
} DenseWeights;
typedef struct {
    NormWeights norm;           // norm: GroupNorm (32 groups, per frame)
    DenseWeights proj_in;       // proj_in: 1x1 conv (1,1,C,C) (C)
    NormWeights norm1;          // transformer_blocks_0.norm1: LayerNorm before attn1
    AttnWeights attn1;          // .attn1: spatial self-attention, to_q/to_k/to_v (C,C), to_out_0 (C,C) (C)
    NormWeights norm2;          // .norm2
    AttnWeights attn2;          // .attn2: cross-attention, to_k/to_v (Cctx,C)
    NormWeights norm_temporal;  // .norm_temporal (temporal mode only; NULL otherwise)
    AttnWeights attn_temporal;  // .attn_temporal: temporal self-attention (temporal mode only)
    NormWeights norm3;          // .norm3: LayerNorm before the feed-forward
    DenseWeights ff_in;         // .ff.net_0.proj: (C,8C) (8C), the GEGLU projection: value half, then gate half
    DenseWeights ff_out;        // .ff.net_2: (4C,C) (C)
    DenseWeights proj_out;      // proj_out: 1x1 conv (1,1,C,C) (C)
} TransformerWeights;

static int norm_weights(NormWeights *n, ParamTable *pt, const char *prefix, const char *name, size_t C) {
    char sub[128];
    snprintf(sub, sizeof sub, "%s.scale", name);
    if (!(n->scale = param(pt, prefix, sub, 1, C, 0, 0, 0))) return MV_ERR;
    snprintf(sub, sizeof sub, "%s.bias", name);
    return (n->bias = param(pt, prefix, sub, 1, C, 0, 0, 0)) ? MV_OK : MV_ERR;
}

// Dense `name` of a (Cin,Cout) kernel; conv1x1 = 1: the 1x1 conv's (1,1,Cin,Cout) kernel.
static int dense_weights(DenseWeights *w, ParamTable *pt, const char *prefix, const char *name, size_t Cin, size_t Cout,
                         int conv1x1) {
    char sub[128];
    snprintf(sub, sizeof sub, "%s.kernel", name);
    w->kernel = conv1x1 ? param(pt, prefix, sub, 4, 1, 1, Cin, Cout) : param(pt, prefix, sub, 2, Cin, Cout, 0, 0);
    if (!w->kernel) return MV_ERR;
    snprintf(sub, sizeof sub, "%s.bias", name);
    return (w->bias = param(pt, prefix, sub, 1, Cout, 0, 0, 0)) ? MV_OK : MV_ERR;
}

// All of them, each once per block call; the first missing or misshaped one is named.
static int transformer_weights(TransformerWeights *t, ParamTable *pt, const char *prefix, size_t C, size_t heads,
                               const BlockDims *d) {
    char tb[512];
    memset(t, 0, sizeof *t);
    snprintf(tb, sizeof tb, "%s.transformer_blocks_0", prefix);
    if (norm_weights(&t->norm, pt, prefix, "norm", C) || dense_weights(&t->proj_in, pt, prefix, "proj_in", C, C, 1) ||
        dense_weights(&t->proj_out, pt, prefix, "proj_out", C, C, 1) || norm_weights(&t->norm1, pt, tb, "norm1", C) ||
        norm_weights(&t->norm2, pt, tb, "norm2", C) || norm_weights(&t->norm3, pt, tb, "norm3", C) ||
        dense_weights(&t->ff_in, pt, tb, "ff.net_0.proj", C, 8 * C, 0) || dense_weights(&t->ff_out, pt, tb, "ff.net_2", 4 * C, C, 0) ||
        attn_weights(&t->attn1, pt, tb, "attn1", C, C, heads) || attn_weights(&t->attn2, pt, tb, "attn2", C, d->Cctx, heads))
        return mv_fail_prefix("%s", prefix);
    if (d->temporal && (norm_weights(&t->norm_temporal, pt, tb, "norm_temporal", C) ||
                        attn_weights(&t->attn_temporal, pt, tb, "attn_temporal", C, C, heads)))
        return mv_fail_prefix("%s", prefix);
    return MV_OK;
}

int transformer_forward(Tensor *out, const Tensor *x, const real *ctx, ParamTable *pt, const char *prefix, size_t heads,
                        const BlockDims *d) {
    size_t B = d->B, F = d->F, H = x->shape[2], W = x->shape[3], C = x->shape[4], S = H * W, N = B * F * S;
    TransformerWeights w;
    Tensor h, n, a;
    int rc = MV_ERR;
    memset(&h, 0, sizeof h); memset(&n, 0, sizeof n); memset(&a, 0, sizeof a);
    if (heads == 0 || C % heads || C % 32) return mv_fail("%s: %lu channels do not split into %lu heads and 32 groups", prefix, (unsigned long)C, (unsigned long)heads);
    if (transformer_weights(&w, pt, prefix, C, heads, d)) return MV_ERR;
    if (tensor_alloc(&n, 5, x->shape) || tensor_alloc(&h, 5, x->shape) || tensor_alloc(&a, 5, x->shape)) goto done;
    // h = proj_in(GN(x)): GroupNorm with per-frame statistics, then a 1x1 conv = a Dense over C
    groupnorm_forward(n.data, NULL, NULL, x->data, w.norm.scale, w.norm.bias, B * F, S, C, 32, 1e-5);
    linear_forward(h.data, n.data, w.proj_in.kernel, w.proj_in.bias, N, C, C);
    // spatial self-attention over the H*W tokens of each frame
    layernorm_forward(n.data, NULL, NULL, h.data, w.norm1.scale, w.norm1.bias, N, C, 1e-5);
    if (attention_self_forward(a.data, n.data, &w.attn1, B * F, S)) goto done;
    add_into(h.data, a.data, h.numel);
    // cross-attention: frame b*F+f attends to prompt b
    layernorm_forward(n.data, NULL, NULL, h.data, w.norm2.scale, w.norm2.bias, N, C, 1e-5);
    if (attention_cross_forward(a.data, n.data, ctx, &w.attn2, B, F, S, d->Tctx)) goto done;
    add_into(h.data, a.data, h.numel);
    // temporal self-attention over the F frames of each pixel
    if (d->temporal) {
        layernorm_forward(n.data, NULL, NULL, h.data, w.norm_temporal.scale, w.norm_temporal.bias, N, C, 1e-5);
        if (attention_temporal_forward(a.data, n.data, &w.attn_temporal, B, F, S)) goto done;
        add_into(h.data, a.data, h.numel);
    }
    // feed-forward
    layernorm_forward(n.data, NULL, NULL, h.data, w.norm3.scale, w.norm3.bias, N, C, 1e-5);
    if (feedforward_add(h.data, n.data, N, C, w.ff_in.kernel, w.ff_in.bias, w.ff_out.kernel, w.ff_out.bias,
                        d->ff_gelu ? GELU_ERF : GELU_TANH))
        goto done;
    // out = proj_out(h) + x
    if (tensor_alloc(out, 5, x->shape)) goto done;
    linear_forward(out->data, h.data, w.proj_out.kernel, w.proj_out.bias, N, C, C);
    add_into(out->data, x->data, out->numel);
    rc = MV_OK;
done:
    if (rc) mv_fail_prefix("%s", prefix);
    tensor_free(&h); tensor_free(&n); tensor_free(&a);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Backward passes of the blocks (SPEC.md sections 5.1-5.3). Each recomputes its block's forward from the
// block input (keeping the internal activations it needs only for the duration of the call),
// then differentiates it with the operators' X_backward functions. Gradients ACCUMULATE (+=).

// The gradient slot of parameter data `w` in gt (params_grad_slot). NULL when gt is NULL or
// keeps no gradient of that parameter: the operator then skips that weight gradient.
static real *gslot(const ParamTable *pt, ParamTable *gt, const real *w) { return params_grad_slot(pt, gt, w); }

typedef struct {
    const real *sk, *sb, *tk, *tb; // spatial kernel (KH,KW,Ci,Co), bias (Co); temporal (3,Co,Co), (Co) or NULL
    size_t Ci, Co;
} ConvW;

// The weights of the convolution block `name` taking Ci channels (the checks of conv_block_forward).
static int conv_weights(ConvW *w, ParamTable *pt, const char *name, size_t Ci, const BlockDims *d, const Conv2dGeom *g) {
    const char *kn = d->plain_names ? "kernel" : "spatial_conv.kernel", *bn = d->plain_names ? "bias" : "spatial_conv.bias";
    char sub[512];
    Tensor *kt;
    memset(w, 0, sizeof *w);
    snprintf(sub, sizeof sub, "%s.%s", name, kn);
    if (!(kt = params_get(pt, sub))) return MV_ERR;
    if (kt->ndim != 4) return mv_fail("parameter '%s' must be a 4-D HWIO kernel", sub);
    w->Ci = Ci;
    w->Co = kt->shape[3];
    if (!(w->sk = param(pt, name, kn, 4, g->KH, g->KW, Ci, w->Co)) || !(w->sb = param(pt, name, bn, 1, w->Co, 0, 0, 0)))
        return MV_ERR;
    if (d->temporal && (!(w->tk = param(pt, name, "temporal_conv.kernel", 3, 3, w->Co, w->Co, 0)) ||
                        !(w->tb = param(pt, name, "temporal_conv.bias", 1, w->Co, 0, 0, 0))))
        return MV_ERR;
    return MV_OK;
}

// The forward's spatial output `work` (B,F,Ho,Wo,Co) that conv_pseudo3d_backward needs
// (temporal mode only; nothing is allocated otherwise).
static int conv_work(Tensor *work, const Tensor *in, const ConvW *w, const BlockDims *d, const Conv2dGeom *g) {
    size_t Ho, Wo;
    memset(work, 0, sizeof *work);
    if (!d->temporal) return MV_OK;
    if (conv2d_out_size(&Ho, &Wo, in->shape[2], in->shape[3], g)) return MV_ERR;
    if (tensor_alloc_v(work, 5, d->B, d->F, Ho, Wo, w->Co)) return MV_ERR;
    conv2d_forward(work->data, in->data, w->sk, w->sb, d->B * d->F, in->shape[2], in->shape[3], w->Ci, w->Co, g);
    return MV_OK;
}

// dinp += d conv(in)/d in ^T dout, weight gradients into gt; `work` from conv_work.
static int conv_bwd(real *dinp, const real *dout, const Tensor *in, const Tensor *work, const ConvW *w, ParamTable *pt,
                    ParamTable *gt, const BlockDims *d, const Conv2dGeom *g) {
    size_t H = in->shape[2], W = in->shape[3], Ho, Wo;
    Tensor dwork;
    int rc;
    if (!d->temporal) {
        conv2d_backward(dinp, gslot(pt, gt, w->sk), gslot(pt, gt, w->sb), dout, in->data, w->sk, d->B * d->F, H, W, w->Ci, w->Co, g);
        return MV_OK;
    }
    if (conv2d_out_size(&Ho, &Wo, H, W, g) || tensor_alloc_v(&dwork, 5, d->B, d->F, Ho, Wo, w->Co)) return MV_ERR;
    rc = conv_pseudo3d_backward(dinp, gslot(pt, gt, w->sk), gslot(pt, gt, w->sb), gslot(pt, gt, w->tk), gslot(pt, gt, w->tb),
                                dwork.data, dout, in->data, work->data, w->sk, w->tk, d->B, d->F, H, W, w->Ci, w->Co, g);
    tensor_free(&dwork);
    return rc;
}

int conv_block_backward(real *dinp, const real *dout, const Tensor *in, ParamTable *pt, ParamTable *gt, const char *name,
                        const BlockDims *d, const Conv2dGeom *g) {
    ConvW w;
    Tensor work;
    int rc;
    if (conv_weights(&w, pt, name, in->shape[4], d, g) || conv_work(&work, in, &w, d, g)) return mv_fail_prefix("%s", name);
    rc = conv_bwd(dinp, dout, in, &work, &w, pt, gt, d, g);
    tensor_free(&work);
    return rc ? mv_fail_prefix("%s", name) : MV_OK;
}

int resnet_backward(real *dx, real *dtemb, const real *dout, const Tensor *x, const real *temb, ParamTable *pt,
                    ParamTable *gt, const char *prefix, const BlockDims *d) {
    size_t B = d->B, F = d->F, H = x->shape[2], W = x->shape[3], Cin = x->shape[4], Cout, S = F * H * W, b, s, c, i;
    const real *n1s, *n1b, *n2s, *n2b, *tw = NULL, *tbias = NULL;
    ConvW c1, c2, csc;
    // a1 = GN1(x), s1 = silu(a1), h2 = conv1(s1) + tp, a2 = GN2(h2), s2 = silu(a2); work* = spatial conv outputs
    Tensor a1, s1, work1, h2, a2, s2, work2, worksc, tsil, ds, da, dh2, st;
    real *mean1 = NULL, *rstd1 = NULL, *mean2 = NULL, *rstd2 = NULL;
    char name[512];
    int rc = MV_ERR;
    Tensor *all[] = {&a1, &s1, &work1, &h2, &a2, &s2, &work2, &worksc, &tsil, &ds, &da, &dh2, &st};
    for (i = 0; i < sizeof all / sizeof all[0]; i++) memset(all[i], 0, sizeof(Tensor));
    snprintf(name, sizeof name, "%s.conv1", prefix);
    if (conv_weights(&c1, pt, name, Cin, d, &CONV3)) return mv_fail_prefix("%s", prefix);
    Cout = c1.Co;
    snprintf(name, sizeof name, "%s.conv2", prefix);
    if (conv_weights(&c2, pt, name, Cout, d, &CONV3)) return mv_fail_prefix("%s", prefix);
    snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
    if (Cin != Cout && conv_weights(&csc, pt, name, Cin, d, &CONV1)) return mv_fail_prefix("%s", prefix);
    if (!(n1s = param(pt, prefix, "norm1.scale", 1, Cin, 0, 0, 0)) || !(n1b = param(pt, prefix, "norm1.bias", 1, Cin, 0, 0, 0)) ||
        !(n2s = param(pt, prefix, "norm2.scale", 1, Cout, 0, 0, 0)) || !(n2b = param(pt, prefix, "norm2.bias", 1, Cout, 0, 0, 0)))
        return mv_fail_prefix("%s", prefix);
    if (d->Ct && temb && (!(tw = param(pt, prefix, "time_emb_proj.kernel", 2, d->Ct, Cout, 0, 0)) ||
                          !(tbias = param(pt, prefix, "time_emb_proj.bias", 1, Cout, 0, 0, 0))))
        return mv_fail_prefix("%s", prefix);
    if (Cin % 32 || Cout % 32) return mv_fail("%s: channels %lu -> %lu are not multiples of 32 groups", prefix, (unsigned long)Cin, (unsigned long)Cout);
    mean1 = (real *)mv_calloc(B * 32 * 4, sizeof(real), "norm statistics");
    if (!mean1) goto done;
    rstd1 = mean1 + B * 32; mean2 = rstd1 + B * 32; rstd2 = mean2 + B * 32;
    // ---- forward, keeping what the backward reads (as resnet_forward computes it)
    if (tensor_alloc(&a1, 5, x->shape) || tensor_alloc(&s1, 5, x->shape)) goto done;
    groupnorm_forward(a1.data, mean1, rstd1, x->data, n1s, n1b, B, S, Cin, 32, d->gn_eps);
    silu_forward(s1.data, a1.data, s1.numel);
    if (conv_work(&work1, &s1, &c1, d, &CONV3) || tensor_alloc_v(&h2, 5, B, F, H, W, Cout)) goto done;
    if (d->temporal) temporal_conv_forward(h2.data, work1.data, c1.tk, c1.tb, B, F, H * W, Cout, Cout);
    else conv2d_forward(h2.data, s1.data, c1.sk, c1.sb, B * F, H, W, Cin, Cout, &CONV3);
    if (tw) {
        Tensor tp;
        if (tensor_alloc_v(&tsil, 2, B, d->Ct) || tensor_alloc_v(&tp, 2, B, Cout)) goto done;
        silu_forward(tsil.data, temb, B * d->Ct);
        linear_forward(tp.data, tsil.data, tw, tbias, B, d->Ct, Cout);
        for (b = 0; b < B; b++)
            for (s = 0; s < S; s++)
                for (c = 0; c < Cout; c++) h2.data[(b * S + s) * Cout + c] += tp.data[b * Cout + c];
        tensor_free(&tp);
    }
    if (tensor_alloc(&a2, 5, h2.shape) || tensor_alloc(&s2, 5, h2.shape)) goto done;
    groupnorm_forward(a2.data, mean2, rstd2, h2.data, n2s, n2b, B, S, Cout, 32, d->gn_eps);
    silu_forward(s2.data, a2.data, s2.numel);
    if (conv_work(&work2, &s2, &c2, d, &CONV3)) goto done;
    // ---- backward. forward was: out = conv2(s2) + (conv_shortcut(x) or x)
    if (Cin != Cout) {
        if (conv_work(&worksc, x, &csc, d, &CONV1) || conv_bwd(dx, dout, x, &worksc, &csc, pt, gt, d, &CONV1)) goto done;
    } else if (dx) {
        for (i = 0; i < x->numel; i++) dx[i] += dout[i];
    }
    if (tensor_alloc(&ds, 5, h2.shape) || tensor_alloc(&da, 5, h2.shape) || tensor_alloc(&dh2, 5, h2.shape)) goto done;
    if (conv_bwd(ds.data, dout, &s2, &work2, &c2, pt, gt, d, &CONV3)) goto done;
    // forward was: s2 = silu(a2), a2 = GN2(h2)
    silu_backward(da.data, ds.data, a2.data, da.numel);
    groupnorm_backward(dh2.data, gslot(pt, gt, n2s), gslot(pt, gt, n2b), da.data, h2.data, n2s, mean2, rstd2, B, S, Cout, 32);
    tensor_free(&ds); tensor_free(&da); tensor_free(&a2); tensor_free(&s2); tensor_free(&work2);
    // forward was: h2[b,s,:] += time_emb_proj(silu(temb))[b]
    if (tw) {
        Tensor dtp, dts;
        if (tensor_alloc_v(&dtp, 2, B, Cout)) goto done;
        if (tensor_alloc_v(&dts, 2, B, d->Ct)) { tensor_free(&dtp); goto done; }
        for (b = 0; b < B; b++)
            for (s = 0; s < S; s++)
                for (c = 0; c < Cout; c++) dtp.data[b * Cout + c] += dh2.data[(b * S + s) * Cout + c];
        linear_backward(dts.data, gslot(pt, gt, tw), gslot(pt, gt, tbias), dtp.data, tsil.data, tw, B, d->Ct, Cout);
        if (dtemb) silu_backward(dtemb, dts.data, temb, B * d->Ct);
        tensor_free(&dtp); tensor_free(&dts);
    }
    // forward was: h2 = conv1(s1), s1 = silu(a1), a1 = GN1(x)
    if (tensor_alloc(&ds, 5, x->shape) || tensor_alloc(&da, 5, x->shape)) goto done;
    if (conv_bwd(ds.data, dh2.data, &s1, &work1, &c1, pt, gt, d, &CONV3)) goto done;
    silu_backward(da.data, ds.data, a1.data, da.numel);
    groupnorm_backward(dx, gslot(pt, gt, n1s), gslot(pt, gt, n1b), da.data, x->data, n1s, mean1, rstd1, B, S, Cin, 32);
    rc = MV_OK;
done:
    if (rc) mv_fail_prefix("%s", prefix);
    for (i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
    free(mean1);
    return rc;
}

static void attn_grads(AttnGrads *g, const ParamTable *pt, ParamTable *gt, const AttnWeights *w) {
    memset(g, 0, sizeof *g);
    g->dwq = gslot(pt, gt, w->wq); g->dwk = gslot(pt, gt, w->wk); g->dwv = gslot(pt, gt, w->wv);
    g->dwo = gslot(pt, gt, w->wo); g->dbo = gslot(pt, gt, w->bo);
}

// dn += d(feed-forward)/dn ^T dh, rows in blocks of FF_ROWS (the GEGLU output is recomputed).
static int feedforward_backward(real *dn, const real *dh, const real *n, size_t N, size_t C, const real *w0, const real *b0,
                                const real *w2, real *dw0, real *db0, real *dw2, real *db2, GeluKind gelu) {
    size_t r0, rows;
    real *g = (real *)mv_calloc(FF_ROWS * 4 * C, sizeof(real), "feed-forward rows");
    real *dg = (real *)mv_calloc(FF_ROWS * 4 * C, sizeof(real), "feed-forward rows");
    int rc = MV_OK;
    if (!g || !dg) { free(g); free(dg); return MV_ERR; }
    for (r0 = 0; r0 < N && rc == MV_OK; r0 += rows) {
        rows = N - r0 < FF_ROWS ? N - r0 : FF_ROWS;
        // forward was: o = net_2(g), g = GEGLU(n)
        rc = geglu_forward(g, n + r0 * C, w0, b0, rows, C, 4 * C, gelu);
        memset(dg, 0, rows * 4 * C * sizeof(real));
        linear_backward(dg, dw2, db2, dh + r0 * C, g, w2, rows, 4 * C, C);
        if (rc == MV_OK) rc = geglu_backward(dn + r0 * C, dw0, db0, dg, n + r0 * C, w0, b0, rows, C, 4 * C, gelu);
    }
    free(g);
    free(dg);
    return rc;
}

int transformer_backward(real *dx, real *dctx, const real *dout, const Tensor *x, const real *ctx, ParamTable *pt,
                         ParamTable *gt, const char *prefix, size_t heads, const BlockDims *d) {
    size_t B = d->B, F = d->F, H = x->shape[2], W = x->shape[3], C = x->shape[4], S = H * W, N = B * F * S, i, k;
    TransformerWeights w;
    AttnGrads g1, g2, gtmp;
    Tensor hk[4], n, a, dh, dn; // hk: h after proj_in, attn1, attn2, attn_temporal (h4 = after ff: kept in a)
    real *stat = NULL, *mean, *rstd;
    const real *h3;
    int rc = MV_ERR;
    memset(hk, 0, sizeof hk); memset(&n, 0, sizeof n); memset(&a, 0, sizeof a); memset(&dh, 0, sizeof dh); memset(&dn, 0, sizeof dn);
    if (heads == 0 || C % heads || C % 32) return mv_fail("%s: %lu channels do not split into %lu heads and 32 groups", prefix, (unsigned long)C, (unsigned long)heads);
    if (transformer_weights(&w, pt, prefix, C, heads, d)) return MV_ERR;
    // statistics: GroupNorm (B*F, 32) mean and rstd, then LayerNorm (N) mean and rstd
    stat = (real *)mv_calloc(2 * B * F * 32 + 2 * N, sizeof(real), "norm statistics");
    if (!stat) goto done;
    mean = stat + 2 * B * F * 32;
    rstd = mean + N;
    for (k = 0; k < 4; k++)
        if ((k < 3 || d->temporal) && tensor_alloc(&hk[k], 5, x->shape)) goto done;
    if (tensor_alloc(&n, 5, x->shape) || tensor_alloc(&a, 5, x->shape)) goto done;
    // ---- forward (as transformer_forward), keeping h after each residual stage
    groupnorm_forward(n.data, NULL, NULL, x->data, w.norm.scale, w.norm.bias, B * F, S, C, 32, 1e-5);
    linear_forward(hk[0].data, n.data, w.proj_in.kernel, w.proj_in.bias, N, C, C);
    layernorm_forward(n.data, NULL, NULL, hk[0].data, w.norm1.scale, w.norm1.bias, N, C, 1e-5);
    if (attention_self_forward(a.data, n.data, &w.attn1, B * F, S)) goto done;
    for (i = 0; i < N * C; i++) hk[1].data[i] = hk[0].data[i] + a.data[i];
    layernorm_forward(n.data, NULL, NULL, hk[1].data, w.norm2.scale, w.norm2.bias, N, C, 1e-5);
    if (attention_cross_forward(a.data, n.data, ctx, &w.attn2, B, F, S, d->Tctx)) goto done;
    for (i = 0; i < N * C; i++) hk[2].data[i] = hk[1].data[i] + a.data[i];
    h3 = hk[2].data;
    if (d->temporal) {
        layernorm_forward(n.data, NULL, NULL, hk[2].data, w.norm_temporal.scale, w.norm_temporal.bias, N, C, 1e-5);
        if (attention_temporal_forward(a.data, n.data, &w.attn_temporal, B, F, S)) goto done;
        for (i = 0; i < N * C; i++) hk[3].data[i] = hk[2].data[i] + a.data[i];
        h3 = hk[3].data;
    }
    layernorm_forward(n.data, NULL, NULL, h3, w.norm3.scale, w.norm3.bias, N, C, 1e-5);
    memcpy(a.data, h3, N * C * sizeof(real)); // a = h4 = h3 + ff(LN3(h3))
    if (feedforward_add(a.data, n.data, N, C, w.ff_in.kernel, w.ff_in.bias, w.ff_out.kernel, w.ff_out.bias,
                        d->ff_gelu ? GELU_ERF : GELU_TANH))
        goto done;
    // ---- backward. forward was: out = proj_out(h4) + x
    if (dx)
        for (i = 0; i < N * C; i++) dx[i] += dout[i];
    if (tensor_alloc(&dh, 5, x->shape) || tensor_alloc(&dn, 5, x->shape)) goto done;
    linear_backward(dh.data, gslot(pt, gt, w.proj_out.kernel), gslot(pt, gt, w.proj_out.bias), dout, a.data, w.proj_out.kernel,
                    N, C, C);
    // forward was: h4 = h3 + ff(n), n = LN3(h3)   (dh then holds dh3)
    layernorm_forward(n.data, mean, rstd, h3, w.norm3.scale, w.norm3.bias, N, C, 1e-5);
    if (feedforward_backward(dn.data, dh.data, n.data, N, C, w.ff_in.kernel, w.ff_in.bias, w.ff_out.kernel,
                             gslot(pt, gt, w.ff_in.kernel), gslot(pt, gt, w.ff_in.bias), gslot(pt, gt, w.ff_out.kernel),
                             gslot(pt, gt, w.ff_out.bias), d->ff_gelu ? GELU_ERF : GELU_TANH))
        goto done;
    layernorm_backward(dh.data, gslot(pt, gt, w.norm3.scale), gslot(pt, gt, w.norm3.bias), dn.data, h3, w.norm3.scale, mean,
                       rstd, N, C);
    // forward was: h3 = h2 + attn_temporal(n), n = LNt(h2)
    if (d->temporal) {
        layernorm_forward(n.data, mean, rstd, hk[2].data, w.norm_temporal.scale, w.norm_temporal.bias, N, C, 1e-5);
        memset(dn.data, 0, N * C * sizeof(real));
        attn_grads(&gtmp, pt, gt, &w.attn_temporal);
        if (attention_temporal_backward(dn.data, gt ? &gtmp : NULL, dh.data, n.data, &w.attn_temporal, B, F, S)) goto done;
        layernorm_backward(dh.data, gslot(pt, gt, w.norm_temporal.scale), gslot(pt, gt, w.norm_temporal.bias), dn.data, hk[2].data,
                           w.norm_temporal.scale, mean, rstd, N, C);
    }
    // forward was: h2 = h1 + attn2(n, ctx), n = LN2(h1)
    layernorm_forward(n.data, mean, rstd, hk[1].data, w.norm2.scale, w.norm2.bias, N, C, 1e-5);
    memset(dn.data, 0, N * C * sizeof(real));
    attn_grads(&g2, pt, gt, &w.attn2);
    if (attention_cross_backward(dn.data, dctx, gt ? &g2 : NULL, dh.data, n.data, ctx, &w.attn2, B, F, S, d->Tctx)) goto done;
    layernorm_backward(dh.data, gslot(pt, gt, w.norm2.scale), gslot(pt, gt, w.norm2.bias), dn.data, hk[1].data, w.norm2.scale,
                       mean, rstd, N, C);
    // forward was: h1 = h0 + attn1(n), n = LN1(h0)
    layernorm_forward(n.data, mean, rstd, hk[0].data, w.norm1.scale, w.norm1.bias, N, C, 1e-5);
    memset(dn.data, 0, N * C * sizeof(real));
    attn_grads(&g1, pt, gt, &w.attn1);
    if (attention_self_backward(dn.data, gt ? &g1 : NULL, dh.data, n.data, &w.attn1, B * F, S)) goto done;
    layernorm_backward(dh.data, gslot(pt, gt, w.norm1.scale), gslot(pt, gt, w.norm1.bias), dn.data, hk[0].data, w.norm1.scale,
                       mean, rstd, N, C);
    // forward was: h0 = proj_in(n), n = GN(x) per frame
    groupnorm_forward(n.data, stat, stat + B * F * 32, x->data, w.norm.scale, w.norm.bias, B * F, S, C, 32, 1e-5);
    memset(dn.data, 0, N * C * sizeof(real));
    linear_backward(dn.data, gslot(pt, gt, w.proj_in.kernel), gslot(pt, gt, w.proj_in.bias), dh.data, n.data, w.proj_in.kernel,
                    N, C, C);
    groupnorm_backward(dx, gslot(pt, gt, w.norm.scale), gslot(pt, gt, w.norm.bias), dn.data, x->data, w.norm.scale, stat,
                       stat + B * F * 32, B * F, S, C, 32);
    rc = MV_OK;
done:
    if (rc) mv_fail_prefix("%s", prefix);
    for (k = 0; k < 4; k++) tensor_free(&hk[k]);
    tensor_free(&n); tensor_free(&a); tensor_free(&dh); tensor_free(&dn);
    free(stat);
    return rc;
}
