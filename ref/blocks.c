// blocks.c: ResnetBlockPseudo3D, TransformerPseudo3DModel and the convolution block.
#include "blocks.h"
#include "activations.h"
#include "attention.h"
#include "groupnorm.h"
#include "layernorm.h"
#include "linear.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    size_t B = d->B, F = d->F, H = x->shape[2], W = x->shape[3], Cin = x->shape[4], Cout, S = F * H * W, b, s, c;
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
        for (b = 0; b < B; b++)
            for (s = 0; s < S; s++) {
                real *row = h2.data + (b * S + s) * Cout; // (Cout)
                for (c = 0; c < Cout; c++) row[c] += tp.data[b * Cout + c];
            }
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
        for (s = 0; s < out->numel; s++) out->data[s] += res.data[s];
    } else {
        for (s = 0; s < out->numel; s++) out->data[s] += x->data[s];
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
// h[r] += net_2(GEGLU(n[r])) for each row r.
#define FF_ROWS 256
static int feedforward_add(real *h, const real *n, size_t N, size_t C, const real *w0, const real *b0, const real *w2,
                           const real *b2) {
    size_t r0, rows, i;
    real *g = (real *)mv_calloc(FF_ROWS * 4 * C, sizeof(real), "feed-forward rows");
    real *o = (real *)mv_calloc(FF_ROWS * C, sizeof(real), "feed-forward rows");
    int rc = MV_OK;
    if (!g || !o) { free(g); free(o); return MV_ERR; }
    for (r0 = 0; r0 < N && rc == MV_OK; r0 += rows) {
        rows = N - r0 < FF_ROWS ? N - r0 : FF_ROWS;
        rc = geglu_forward(g, n + r0 * C, w0, b0, rows, C, 4 * C, GELU_TANH);
        linear_forward(o, g, w2, b2, rows, 4 * C, C);
        for (i = 0; i < rows * C; i++) h[r0 * C + i] += o[i];
    }
    free(g);
    free(o);
    return rc;
}

int transformer_forward(Tensor *out, const Tensor *x, const real *ctx, ParamTable *pt, const char *prefix, size_t heads,
                        const BlockDims *d) {
    size_t B = d->B, F = d->F, H = x->shape[2], W = x->shape[3], C = x->shape[4], S = H * W, N = B * F * S, i;
    const real *gs, *gb, *pik, *pib, *pok, *pob, *ln[8] = {0}, *w0, *b0, *w2, *b2;
    AttnWeights a1, a2, at;
    Tensor h, n, a;
    char tb[512];
    int rc = MV_ERR;
    memset(&h, 0, sizeof h); memset(&n, 0, sizeof n); memset(&a, 0, sizeof a);
    if (heads == 0 || C % heads || C % 32) return mv_fail("%s: %lu channels do not split into %lu heads and 32 groups", prefix, (unsigned long)C, (unsigned long)heads);
    snprintf(tb, sizeof tb, "%s.transformer_blocks_0", prefix);
    if (!(gs = param(pt, prefix, "norm.scale", 1, C, 0, 0, 0)) || !(gb = param(pt, prefix, "norm.bias", 1, C, 0, 0, 0)) ||
        !(pik = param(pt, prefix, "proj_in.kernel", 4, 1, 1, C, C)) || !(pib = param(pt, prefix, "proj_in.bias", 1, C, 0, 0, 0)) ||
        !(pok = param(pt, prefix, "proj_out.kernel", 4, 1, 1, C, C)) || !(pob = param(pt, prefix, "proj_out.bias", 1, C, 0, 0, 0)) ||
        !(ln[0] = param(pt, tb, "norm1.scale", 1, C, 0, 0, 0)) || !(ln[1] = param(pt, tb, "norm1.bias", 1, C, 0, 0, 0)) ||
        !(ln[2] = param(pt, tb, "norm2.scale", 1, C, 0, 0, 0)) || !(ln[3] = param(pt, tb, "norm2.bias", 1, C, 0, 0, 0)) ||
        !(ln[6] = param(pt, tb, "norm3.scale", 1, C, 0, 0, 0)) || !(ln[7] = param(pt, tb, "norm3.bias", 1, C, 0, 0, 0)) ||
        !(w0 = param(pt, tb, "ff.net_0.proj.kernel", 2, C, 8 * C, 0, 0)) || !(b0 = param(pt, tb, "ff.net_0.proj.bias", 1, 8 * C, 0, 0, 0)) ||
        !(w2 = param(pt, tb, "ff.net_2.kernel", 2, 4 * C, C, 0, 0)) || !(b2 = param(pt, tb, "ff.net_2.bias", 1, C, 0, 0, 0)) ||
        attn_weights(&a1, pt, tb, "attn1", C, C, heads) || attn_weights(&a2, pt, tb, "attn2", C, d->Cctx, heads))
        return mv_fail_prefix("%s", prefix);
    if (d->temporal && (!(ln[4] = param(pt, tb, "norm_temporal.scale", 1, C, 0, 0, 0)) ||
                        !(ln[5] = param(pt, tb, "norm_temporal.bias", 1, C, 0, 0, 0)) ||
                        attn_weights(&at, pt, tb, "attn_temporal", C, C, heads)))
        return mv_fail_prefix("%s", prefix);
    if (tensor_alloc(&n, 5, x->shape) || tensor_alloc(&h, 5, x->shape) || tensor_alloc(&a, 5, x->shape)) goto done;
    // h = proj_in(GN(x)): GroupNorm with per-frame statistics, then a 1x1 conv = a Dense over C
    groupnorm_forward(n.data, NULL, NULL, x->data, gs, gb, B * F, S, C, 32, 1e-5);
    linear_forward(h.data, n.data, pik, pib, N, C, C);
    // spatial self-attention over the H*W tokens of each frame
    layernorm_forward(n.data, NULL, NULL, h.data, ln[0], ln[1], N, C, 1e-5);
    if (attention_self_forward(a.data, n.data, &a1, B * F, S)) goto done;
    for (i = 0; i < h.numel; i++) h.data[i] += a.data[i];
    // cross-attention: frame b*F+f attends to prompt b
    layernorm_forward(n.data, NULL, NULL, h.data, ln[2], ln[3], N, C, 1e-5);
    if (attention_cross_forward(a.data, n.data, ctx, &a2, B, F, S, d->Tctx)) goto done;
    for (i = 0; i < h.numel; i++) h.data[i] += a.data[i];
    // temporal self-attention over the F frames of each pixel
    if (d->temporal) {
        layernorm_forward(n.data, NULL, NULL, h.data, ln[4], ln[5], N, C, 1e-5);
        if (attention_temporal_forward(a.data, n.data, &at, B, F, S)) goto done;
        for (i = 0; i < h.numel; i++) h.data[i] += a.data[i];
    }
    // feed-forward
    layernorm_forward(n.data, NULL, NULL, h.data, ln[6], ln[7], N, C, 1e-5);
    if (feedforward_add(h.data, n.data, N, C, w0, b0, w2, b2)) goto done;
    // out = proj_out(h) + x
    if (tensor_alloc(out, 5, x->shape)) goto done;
    linear_forward(out->data, h.data, pok, pob, N, C, C);
    for (i = 0; i < out->numel; i++) out->data[i] += x->data[i];
    rc = MV_OK;
done:
    if (rc) mv_fail_prefix("%s", prefix);
    tensor_free(&h); tensor_free(&n); tensor_free(&a);
    return rc;
}
