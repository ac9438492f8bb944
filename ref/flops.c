// flops.c: the work of a forward pass, counted by walking the stage list the forward walks
// (unet_stages_build; the VAE's lists in ref/vae.c) and reading each layer's size from its
// declared parameters. The convention is in flops.h and SPEC.md section 11.8.
#include "flops.h"
#include "unet_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const Tensor *flops_param(const ParamTable *pt, const char *name) {
    size_t k;
    for (k = 0; k < pt->count; k++)
        if (strcmp(pt->p[k].name, name) == 0) return &pt->p[k].t;
    return NULL;
}

double flops_axis_pairs(size_t n, size_t nout, size_t k, size_t stride, size_t pad) {
    size_t o, t;
    double pairs = 0.0;
    for (o = 0; o < nout; o++)
        for (t = 0; t < k; t++) {
            size_t i = o * stride + t; // the input index plus pad
            if (i >= pad && i - pad < n) pairs += 1.0;
        }
    return pairs;
}

int flops_conv_block(Flops *f, const ParamTable *pt, const char *name, const Conv2dGeom *g, size_t B, size_t F,
                     size_t H, size_t W, size_t *Ho, size_t *Wo) {
    char n[160];
    const Tensor *k, *tk;
    snprintf(n, sizeof n, "%s.spatial_conv.kernel", name);
    if (!(k = flops_param(pt, n))) { // plain names (VAE, diffusers 2-D)
        snprintf(n, sizeof n, "%s.kernel", name);
        if (!(k = flops_param(pt, n)) || k->ndim != 4) return mv_fail("FLOP count: no convolution '%s'", name);
    }
    if (conv2d_out_size(Ho, Wo, H, W, g)) return mv_fail_prefix("FLOP count: %s", name);
    // out[b,f,i,j,o] += in[.., i*s+kh-pt, j*s+kw-pl, c] * k[kh,kw,c,o] at every tap inside the input
    f->conv += 2.0 * (double)(B * F) * flops_axis_pairs(H, *Ho, g->KH, g->stride, g->pad_top) *
               flops_axis_pairs(W, *Wo, g->KW, g->stride, g->pad_left) * (double)k->shape[2] * (double)k->shape[3];
    snprintf(n, sizeof n, "%s.temporal_conv.kernel", name);
    if ((tk = flops_param(pt, n))) // k=3 over the frames, zero padding 1: 3F - 2 taps inside
        f->conv += 2.0 * (double)B * flops_axis_pairs(F, F, 3, 1, 1) * (double)(*Ho * *Wo) * (double)tk->shape[1] *
                   (double)tk->shape[2];
    return MV_OK;
}

int flops_dense(Flops *f, const ParamTable *pt, const char *name, size_t N) {
    char n[160];
    const Tensor *k;
    snprintf(n, sizeof n, "%s.kernel", name);
    if (!(k = flops_param(pt, n))) return mv_fail("FLOP count: no dense layer '%s'", name);
    // a 1x1 conv's kernel (1,1,I,O) is a dense layer too
    f->dense += 2.0 * (double)N * (double)k->shape[k->ndim - 2] * (double)k->shape[k->ndim - 1];
    return MV_OK;
}

// ResnetBlockPseudo3D / FlaxResnetBlock2D: conv1, time_emb_proj (UNet), conv2, conv_shortcut
// when the channels change. Norms and activations are elementwise (not counted).
int flops_resnet(Flops *f, const ParamTable *pt, const char *name, size_t B, size_t F, size_t H, size_t W) {
    static const Conv2dGeom C3 = {3, 3, 1, 1, 1, 1, 1}, C1 = {1, 1, 1, 0, 0, 0, 0};
    char n[160];
    size_t h, w;
    snprintf(n, sizeof n, "%s.conv1", name);
    if (flops_conv_block(f, pt, n, &C3, B, F, H, W, &h, &w)) return MV_ERR;
    snprintf(n, sizeof n, "%s.time_emb_proj.kernel", name);
    if (flops_param(pt, n)) {
        snprintf(n, sizeof n, "%s.time_emb_proj", name);
        if (flops_dense(f, pt, n, B)) return MV_ERR;
    }
    snprintf(n, sizeof n, "%s.conv2", name);
    if (flops_conv_block(f, pt, n, &C3, B, F, H, W, &h, &w)) return MV_ERR;
    snprintf(n, sizeof n, "%s.conv_shortcut.spatial_conv.kernel", name);
    if (!flops_param(pt, n)) snprintf(n, sizeof n, "%s.conv_shortcut.kernel", name);
    if (flops_param(pt, n)) {
        snprintf(n, sizeof n, "%s.conv_shortcut", name);
        return flops_conv_block(f, pt, n, &C1, B, F, H, W, &h, &w);
    }
    return MV_OK;
}

// One attention layer `name` (to_q, to_k, to_v, to_out_0): Nq query rows, Nkv key rows,
// `seqs` sequences of Tq queries against Tk keys each, C channels over all heads.
static int attn_flops(Flops *f, const ParamTable *pt, const char *name, size_t Nq, size_t Nkv, size_t seqs, size_t Tq,
                      size_t Tk, size_t C) {
    char n[192]; // the transformer's 160-byte name and a projection's
    static const char *proj[4] = {"to_q", "to_k", "to_v", "to_out_0"};
    int i;
    for (i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s.%s", name, proj[i]);
        if (flops_dense(f, pt, n, i == 1 || i == 2 ? Nkv : Nq)) return MV_ERR;
    }
    f->attn += 2.0 * 2.0 * (double)seqs * (double)Tq * (double)Tk * (double)C; // q k^T, then P v
    return MV_OK;
}

// TransformerPseudo3DModel on (B,F,H,W,C): proj_in, self-attention over the S = H*W tokens
// of each frame, cross-attention to the Tctx tokens of the prompt (keys and values projected
// once per prompt, not per frame: ref/attention.h), temporal attention over the F frames at
// each pixel, GEGLU feed-forward (C -> 8C, gate, 4C -> C), proj_out.
static int transformer_flops(Flops *f, const ParamTable *pt, const char *name, size_t B, size_t F, size_t H, size_t W,
                             size_t Tctx) {
    char n[160];
    const Tensor *k;
    size_t S = H * W, N = B * F * S, C;
    snprintf(n, sizeof n, "%s.proj_in.kernel", name);
    if (!(k = flops_param(pt, n))) return mv_fail("FLOP count: no transformer '%s'", name);
    C = k->shape[k->ndim - 1];
#define SUB(x) (snprintf(n, sizeof n, "%s.%s", name, x), n)
    if (flops_dense(f, pt, SUB("proj_in"), N) ||
        attn_flops(f, pt, SUB("transformer_blocks_0.attn1"), N, N, B * F, S, S, C) ||
        attn_flops(f, pt, SUB("transformer_blocks_0.attn2"), N, B * Tctx, B * F, S, Tctx, C))
        return MV_ERR;
    if (flops_param(pt, SUB("transformer_blocks_0.attn_temporal.to_q.kernel")) &&
        attn_flops(f, pt, SUB("transformer_blocks_0.attn_temporal"), N, N, B * S, F, F, C))
        return MV_ERR;
    if (flops_dense(f, pt, SUB("transformer_blocks_0.ff.net_0.proj"), N) ||
        flops_dense(f, pt, SUB("transformer_blocks_0.ff.net_2"), N) || flops_dense(f, pt, SUB("proj_out"), N))
        return MV_ERR;
#undef SUB
    return MV_OK;
}

int unet_flops(Flops *f, const UNetConfig *c, size_t B, size_t F, size_t H, size_t W, size_t Tctx) {
    UNetTape tp;
    ParamTable pt;
    size_t h = H, w = W;
    int k, rc = MV_ERR;
    memset(f, 0, sizeof *f);
    memset(&tp, 0, sizeof tp);
    params_init(&pt);
    tp.c = *c;
    if (!c->temporal) F = 1;
    if (unet_declare_params(&pt, c) || unet_stages_build(&tp)) goto done; // names and shapes only: no arena
    if (flops_dense(f, &pt, "time_embedding.linear_1", B) || flops_dense(f, &pt, "time_embedding.linear_2", B)) goto done;
    for (k = 0; k < tp.n; k++) {
        const Stage *s = &tp.st[k];
        switch (s->kind) {
        case ST_CONV:
            if (flops_conv_block(f, &pt, s->name, s->g, B, F, h, w, &h, &w)) goto done;
            break;
        case ST_RESNET:
            if (flops_resnet(f, &pt, s->name, B, F, h, w)) goto done;
            break;
        case ST_TRANSFORMER:
            if (transformer_flops(f, &pt, s->name, B, F, h, w, Tctx)) goto done;
            break;
        case ST_UPSAMPLE: h *= 2; w *= 2; break;
        default: break; // PUSH, CONCAT, OUTNORM: no products
        }
    }
    rc = MV_OK;
done:
    free(tp.st);
    free_params(&pt);
    return rc ? mv_fail_prefix("UNet FLOP count") : MV_OK;
}

int clip_flops(Flops *f, const ClipConfig *c, size_t B, size_t T) {
    double N = (double)(B * T), Wd = (double)c->width;
    memset(f, 0, sizeof *f);
    if (clip_config_check(c)) return MV_ERR;
    // each layer: q, k, v, out projections; scores and P.V over all T x T pairs (the causal
    // mask is applied to the full square); fc1 (W -> mlp) and fc2 (mlp -> W)
    f->dense = (double)c->layers * (4.0 * 2.0 * N * Wd * Wd + 2.0 * 2.0 * N * Wd * (double)c->mlp);
    f->attn = (double)c->layers * 2.0 * 2.0 * (double)B * (double)T * (double)T * Wd;
    return MV_OK;
}
