// ops_layers.c: corpus runners for the UNet's elementary operators (vectors from
// tools/cases_ops.py: flax.linen Conv/LayerNorm/Dense, diffusers FlaxAttention and timestep
// embedding, jax.image.resize). Every runner checks every shape before computing, so a corpus
// file with a wrong or missing tensor fails its case with a message instead of crashing.
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/activations.h"
#include "../ref/attention.h"
#include "../ref/conv.h"
#include "../ref/embeddings.h"
#include "../ref/layernorm.h"
#include "../ref/linear.h"
#include "../ref/upsample.h"

// ---------------------------------------------------------------------------------------

int run_temporal_conv(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *y;
    size_t B, F, H, W, Ci, Co, shape[5];
    int rc = 1;
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "kernel")) || !(bias = bag_input(c, &b, "bias")))
        goto out;
    if (case_expect_rank(c, x, "x", 5) || case_expect_rank(c, k, "kernel", 3)) goto out;
    B = x->shape[0]; F = x->shape[1]; H = x->shape[2]; W = x->shape[3]; Ci = x->shape[4]; Co = k->shape[2];
    if (SHAPE(tensor_expect_shape(k, "kernel", 3, (size_t)3, Ci, Co)) || SHAPE(tensor_expect_shape(bias, "bias", 1, Co)))
        goto out;
    shape[0] = B; shape[1] = F; shape[2] = H; shape[3] = W; shape[4] = Co;
    if (!(y = bag_alloc(c, &b, 5, shape))) goto out;
    temporal_conv_forward(y->data, x->data, k->data, bias->data, B, F, H * W, Ci, Co);
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

int run_conv_pseudo3d(Case *c) {
    Bag b = {0};
    Tensor *x, *sk, *sb, *tk, *tb, *y, *work;
    long stride;
    const char *pad;
    unsigned long pt, pb, pl, pr;
    Conv2dGeom g;
    size_t B, F, H, W, Ci, Co, Ho, Wo, shape[5];
    int rc = 1;
    if (case_meta_long(c, "stride", &stride) || !(pad = case_meta_str(c, "pad"))) return 1;
    if (sscanf(pad, "%lu,%lu,%lu,%lu", &pt, &pb, &pl, &pr) != 4 || stride < 1) {
        harness_failf(c->name, "bad pad '%s' or stride %ld", pad, stride);
        return 1;
    }
    if (!(x = bag_input(c, &b, "x")) || !(sk = bag_input(c, &b, "spatial_conv.kernel")) ||
        !(sb = bag_input(c, &b, "spatial_conv.bias")) || !(tk = bag_input(c, &b, "temporal_conv.kernel")) ||
        !(tb = bag_input(c, &b, "temporal_conv.bias")))
        goto out;
    if (case_expect_rank(c, x, "x", 5) || case_expect_rank(c, sk, "spatial_conv.kernel", 4)) goto out;
    B = x->shape[0]; F = x->shape[1]; H = x->shape[2]; W = x->shape[3]; Ci = x->shape[4]; Co = sk->shape[3];
    if (SHAPE(tensor_expect_shape(sk, "spatial_conv.kernel", 4, sk->shape[0], sk->shape[1], Ci, Co)) ||
        SHAPE(tensor_expect_shape(sb, "spatial_conv.bias", 1, Co)) ||
        SHAPE(tensor_expect_shape(tk, "temporal_conv.kernel", 3, (size_t)3, Co, Co)) ||
        SHAPE(tensor_expect_shape(tb, "temporal_conv.bias", 1, Co)))
        goto out;
    g.KH = sk->shape[0]; g.KW = sk->shape[1]; g.stride = (size_t)stride;
    g.pad_top = pt; g.pad_bottom = pb; g.pad_left = pl; g.pad_right = pr;
    if (SHAPE(conv2d_out_size(&Ho, &Wo, H, W, &g))) goto out;
    shape[0] = B; shape[1] = F; shape[2] = Ho; shape[3] = Wo; shape[4] = Co;
    if (!(y = bag_alloc(c, &b, 5, shape)) || !(work = bag_alloc(c, &b, 5, shape))) goto out;
    if (conv_pseudo3d_forward(y->data, work->data, x->data, sk->data, sb->data, tk->data, tb->data,
                              B, F, H, W, Ci, Co, &g)) {
        case_error(c, "conv_pseudo3d");
        goto out;
    }
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

int run_layernorm(Case *c) {
    Bag b = {0};
    Tensor *x, *scale, *bias, *y;
    double eps;
    size_t C;
    int rc = 1;
    if (case_meta_double(c, "eps", &eps)) return 1;
    if (!(x = bag_input(c, &b, "x")) || !(scale = bag_input(c, &b, "scale")) || !(bias = bag_input(c, &b, "bias")))
        goto out;
    if (x->ndim < 1) { harness_failf(c->name, "x must have a channel axis"); c->failed++; goto out; }
    C = x->shape[x->ndim - 1];
    if (SHAPE(tensor_expect_shape(scale, "scale", 1, C)) || SHAPE(tensor_expect_shape(bias, "bias", 1, C))) goto out;
    if (!(y = bag_alloc(c, &b, x->ndim, x->shape))) goto out;
    layernorm_forward(y->data, NULL, NULL, x->data, scale->data, bias->data, C ? x->numel / C : 0, C, eps);
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

int run_dense(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *y;
    size_t I, O, shape[MV_MAXDIM];
    int rc = 1;
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "kernel")) || !(bias = bag_input(c, &b, "bias")))
        goto out;
    if (x->ndim < 1) { harness_failf(c->name, "x must have an input axis"); c->failed++; goto out; }
    if (case_expect_rank(c, k, "kernel", 2)) goto out;
    I = x->shape[x->ndim - 1]; O = k->shape[1];
    if (SHAPE(tensor_expect_shape(k, "kernel", 2, I, O)) || SHAPE(tensor_expect_shape(bias, "bias", 1, O))) goto out;
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = O;
    if (!(y = bag_alloc(c, &b, x->ndim, shape))) goto out;
    linear_forward(y->data, x->data, k->data, bias->data, I ? x->numel / I : 0, I, O);
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

int run_activation(Case *c) {
    Bag b = {0};
    Tensor *x, *y;
    const char *kind;
    int rc = 1;
    if (!(kind = case_meta_str(c, "kind"))) return 1;
    if (!(x = bag_input(c, &b, "x")) || !(y = bag_alloc(c, &b, x->ndim, x->shape))) goto out;
    if (!strcmp(kind, "silu")) silu_forward(y->data, x->data, x->numel);
    else if (!strcmp(kind, "gelu_tanh")) gelu_forward(y->data, x->data, x->numel, GELU_TANH);
    else if (!strcmp(kind, "gelu_erf")) gelu_forward(y->data, x->data, x->numel, GELU_ERF);
    else if (!strcmp(kind, "quick_gelu")) quick_gelu_forward(y->data, x->data, x->numel);
    else { harness_failf(c->name, "unknown activation '%s'", kind); c->failed++; goto out; }
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

int run_geglu(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *y;
    const char *gelu;
    GeluKind kind;
    size_t N, C, H, shape[2];
    int rc = 1;
    if (!(gelu = case_meta_str(c, "gelu"))) return 1;
    if (strcmp(gelu, "tanh") && strcmp(gelu, "erf")) { harness_failf(c->name, "bad gelu '%s'", gelu); return 1; }
    kind = strcmp(gelu, "erf") ? GELU_TANH : GELU_ERF;
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "proj.kernel")) || !(bias = bag_input(c, &b, "proj.bias")))
        goto out;
    if (case_expect_rank(c, x, "x", 2) || case_expect_rank(c, k, "proj.kernel", 2)) goto out;
    N = x->shape[0]; C = x->shape[1]; H = k->shape[1] / 2;
    if (SHAPE(tensor_expect_shape(k, "proj.kernel", 2, C, 2 * H)) || SHAPE(tensor_expect_shape(bias, "proj.bias", 1, 2 * H)))
        goto out;
    shape[0] = N; shape[1] = H;
    if (!(y = bag_alloc(c, &b, 2, shape))) goto out;
    if (geglu_forward(y->data, x->data, k->data, bias->data, N, C, H, kind)) { case_error(c, "geglu"); goto out; }
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Attention: the three uses share the weight reading; each case holds the outputs of both
// FlaxAttention paths (y: standard, y_memeff: memory-efficient), and mavref must match both.
// The header promises that out == x works, so each case also runs in place on a copy of x.
// attention_clip cases (transformers' FlaxCLIPAttention, one output y) test the causal mask
// and the q/k/v biases, which the UNet does not use.

typedef enum { ATTN_SELF, ATTN_CROSS, ATTN_TEMPORAL, ATTN_CLIP } AttnUse;

// Tensor names: diffusers FlaxAttention (no q/k/v biases) and transformers FlaxCLIPAttention.
static const char *const attn_names[2][8] = {
    {"to_q.kernel", "to_k.kernel", "to_v.kernel", "to_out_0.kernel", "to_out_0.bias", NULL, NULL, NULL},
    {"q_proj.kernel", "k_proj.kernel", "v_proj.kernel", "out_proj.kernel", "out_proj.bias", "q_proj.bias", "k_proj.bias",
     "v_proj.bias"},
};

static int attn_weights(Case *c, Bag *b, AttnWeights *w, size_t Cq, int clip) {
    const char *const *nm = attn_names[clip];
    Tensor *t[8];
    long heads, dim_head;
    size_t D, i;
    memset(w, 0, sizeof *w); // every bias NULL unless read below
    if (case_meta_long(c, "heads", &heads) || case_meta_long(c, "dim_head", &dim_head)) return 1;
    if (heads < 1 || dim_head < 1) { harness_failf(c->name, "bad heads %ld / dim_head %ld", heads, dim_head); c->failed++; return 1; }
    for (i = 0; i < 8 && nm[i]; i++)
        if (!(t[i] = bag_input(c, b, nm[i]))) return 1;
    D = (size_t)heads * (size_t)dim_head;
    if (case_expect_rank(c, t[1], nm[1], 2)) return 1;
    w->Cq = Cq; w->Ckv = t[1]->shape[0]; w->heads = (size_t)heads; w->dim_head = (size_t)dim_head;
    if (SHAPE(tensor_expect_shape(t[0], nm[0], 2, Cq, D)) || SHAPE(tensor_expect_shape(t[1], nm[1], 2, w->Ckv, D)) ||
        SHAPE(tensor_expect_shape(t[2], nm[2], 2, w->Ckv, D)) || SHAPE(tensor_expect_shape(t[3], nm[3], 2, D, Cq)) ||
        SHAPE(tensor_expect_shape(t[4], nm[4], 1, Cq)))
        return 1;
    w->wq = t[0]->data; w->wk = t[1]->data; w->wv = t[2]->data; w->wo = t[3]->data; w->bo = t[4]->data;
    if (clip) {
        if (SHAPE(tensor_expect_shape(t[5], nm[5], 1, D)) || SHAPE(tensor_expect_shape(t[6], nm[6], 1, D)) ||
            SHAPE(tensor_expect_shape(t[7], nm[7], 1, D)))
            return 1;
        w->bq = t[5]->data; w->bk = t[6]->data; w->bv = t[7]->data;
        w->causal = 1;
    }
    return 0;
}

// out = attention of `in`, whose shape is x's: self (N,T,C), cross (B*F,T,C) with ctx (B,Tk,Ckv),
// temporal (B,F,H,W,C).
static int attn_forward(AttnUse use, real *out, const real *in, const Tensor *x, const Tensor *ctx,
                        const AttnWeights *w) {
    switch (use) {
    case ATTN_SELF:
    case ATTN_CLIP: return attention_self_forward(out, in, w, x->shape[0], x->shape[1]);
    case ATTN_CROSS:
        return attention_cross_forward(out, in, ctx->data, w, ctx->shape[0], x->shape[0] / ctx->shape[0], x->shape[1],
                                       ctx->shape[1]);
    case ATTN_TEMPORAL: return attention_temporal_forward(out, in, w, x->shape[0], x->shape[1], x->shape[2] * x->shape[3]);
    }
    return mv_fail("unknown attention use");
}

static int run_attention(Case *c, AttnUse use) {
    static const int rank[] = {3, 3, 5, 3};
    Bag b = {0};
    Tensor *x, *ctx = NULL, *y, *io;
    AttnWeights w;
    long frames = 1;
    int rc = 1, f;
    if (use == ATTN_CROSS) {
        if (case_meta_long(c, "frames", &frames)) return 1;
        if (frames < 1) { harness_failf(c->name, "bad frames %ld", frames); c->failed++; return 1; }
        if (!(ctx = bag_input(c, &b, "context")) || case_expect_rank(c, ctx, "context", 3)) goto out;
    }
    if (!(x = bag_input(c, &b, "x")) || case_expect_rank(c, x, "x", rank[use]) ||
        attn_weights(c, &b, &w, x->shape[x->ndim - 1], use == ATTN_CLIP))
        goto out;
    if (use == ATTN_CROSS) {
        if (SHAPE(tensor_expect_shape(x, "x", 3, ctx->shape[0] * (size_t)frames, x->shape[1], w.Cq)) ||
            SHAPE(tensor_expect_shape(ctx, "context", 3, ctx->shape[0], ctx->shape[1], w.Ckv)))
            goto out;
    } else if (w.Ckv != w.Cq) {
        harness_failf(c->name, "to_k.kernel has %lu input rows, expected %lu", (unsigned long)w.Ckv, (unsigned long)w.Cq);
        c->failed++;
        goto out;
    }
    if (!(y = bag_alloc(c, &b, x->ndim, x->shape)) || !(io = bag_alloc(c, &b, x->ndim, x->shape))) goto out;
    if (attn_forward(use, y->data, x->data, x, ctx, &w)) { case_error(c, "attention"); goto out; }
    f = case_check(c, "y", y);
    if (use != ATTN_CLIP) f |= case_check(c, "y_memeff", y);
    memcpy(io->data, x->data, x->numel * sizeof(real));
    if (attn_forward(use, io->data, io->data, x, ctx, &w)) { case_error(c, "attention in place"); goto out; }
    rc = case_check(c, "y", io) | f;
out:
    bag_free(&b);
    return rc;
}

int run_attention_self(Case *c) { return run_attention(c, ATTN_SELF); }
int run_attention_cross(Case *c) { return run_attention(c, ATTN_CROSS); }
int run_attention_temporal(Case *c) { return run_attention(c, ATTN_TEMPORAL); }
int run_attention_clip(Case *c) { return run_attention(c, ATTN_CLIP); }

// ---------------------------------------------------------------------------------------

int run_upsample_nearest(Case *c) {
    Bag b = {0};
    Tensor *x, *y;
    long Ho, Wo;
    size_t shape[4];
    int rc = 1;
    if (case_meta_long(c, "Ho", &Ho) || case_meta_long(c, "Wo", &Wo)) return 1;
    if (Ho < 1 || Wo < 1) { harness_failf(c->name, "bad output size %ldx%ld", Ho, Wo); c->failed++; return 1; }
    if (!(x = bag_input(c, &b, "x")) || case_expect_rank(c, x, "x", 4)) goto out;
    shape[0] = x->shape[0]; shape[1] = (size_t)Ho; shape[2] = (size_t)Wo; shape[3] = x->shape[3];
    if (!(y = bag_alloc(c, &b, 4, shape))) goto out;
    if (shape[1] == 2 * x->shape[1] && shape[2] == 2 * x->shape[2])
        upsample_nearest2x_forward(y->data, x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3]);
    else
        resize_nearest_forward(y->data, x->data, x->shape[0], x->shape[1], x->shape[2], shape[1], shape[2], x->shape[3]);
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

// The sinusoid is a float32 quantity in the model, so its check uses the case's `tol.sinusoid`
// (float32 precision of the argument) in both builds; the MLP is then checked at the case's own
// tolerance on the exporter's sinusoid, which makes the float64 comparison exact.
int run_timestep_embedding(Case *c) {
    Bag b = {0};
    Tensor *t, *sin_exp, *w1, *b1, *w2, *b2, *sinus, *temb;
    long dim, flip;
    double freq_shift, tol_sin, tol_case = c->tol;
    size_t N, Ct, shape[2];
    int rc = 1, f;
    if (case_meta_long(c, "dim", &dim) || case_meta_long(c, "flip_sin_to_cos", &flip) ||
        case_meta_double(c, "freq_shift", &freq_shift) || case_meta_double(c, "tol.sinusoid", &tol_sin))
        return 1;
    if (dim < 2 || dim % 2) { harness_failf(c->name, "bad dim %ld", dim); c->failed++; return 1; }
    if (!(t = bag_input(c, &b, "t")) || !(sin_exp = bag_input(c, &b, "sinusoid")) ||
        !(w1 = bag_input(c, &b, "linear_1.kernel")) || !(b1 = bag_input(c, &b, "linear_1.bias")) ||
        !(w2 = bag_input(c, &b, "linear_2.kernel")) || !(b2 = bag_input(c, &b, "linear_2.bias")))
        goto out;
    if (case_expect_rank(c, t, "t", 1) || case_expect_rank(c, w1, "linear_1.kernel", 2)) goto out;
    N = t->shape[0]; Ct = w1->shape[1];
    if (SHAPE(tensor_expect_shape(sin_exp, "sinusoid", 2, N, (size_t)dim)) ||
        SHAPE(tensor_expect_shape(w1, "linear_1.kernel", 2, (size_t)dim, Ct)) ||
        SHAPE(tensor_expect_shape(b1, "linear_1.bias", 1, Ct)) ||
        SHAPE(tensor_expect_shape(w2, "linear_2.kernel", 2, Ct, Ct)) ||
        SHAPE(tensor_expect_shape(b2, "linear_2.bias", 1, Ct)))
        goto out;
    shape[0] = N; shape[1] = (size_t)dim;
    if (!(sinus = bag_alloc(c, &b, 2, shape))) goto out;
    shape[1] = Ct;
    if (!(temb = bag_alloc(c, &b, 2, shape))) goto out;
    timestep_sinusoid_forward(sinus->data, t->data, N, (size_t)dim, (int)flip, freq_shift);
    c->tol = tol_sin;
    f = case_check(c, "sinusoid", sinus);
    c->tol = tol_case;
    if (timestep_embedding_forward(temb->data, sin_exp->data, w1->data, b1->data, w2->data, b2->data, N, (size_t)dim, Ct)) {
        case_error(c, "timestep embedding");
        goto out;
    }
    rc = case_check(c, "temb", temb) | f;
out:
    bag_free(&b);
    return rc;
}
