// ops_grad.c: corpus runners for the backward passes of the UNet's elementary operators
// (vectors from tools/cases_grad.py: jax.vjp of the flax.linen / diffusers modules). Each case
// holds the inputs, the weights, a cotangent `dout` and the expected gradients `d_<name>`; the
// runner zeroes the gradient buffers, calls the C backward once and checks every gradient.
// Every shape is checked before computing, so a bad file fails its case with a message.
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/activations.h"
#include "../ref/attention.h"
#include "../ref/conv.h"
#include "../ref/embeddings.h"
#include "../ref/groupnorm.h"
#include "../ref/layernorm.h"
#include "../ref/linear.h"
#include "../ref/upsample.h"

// Check gradient `name`: against the stored expected tensor, or, for a gradient the case lists
// in `zero_grads` (zero in exact arithmetic, not stored), require that every element is 0.
static int check_grad(Case *c, const char *name, const Tensor *got) {
    const char *zero = st_meta(&c->vec, "zero_grads");
    size_t i;
    if (zero && in_list(zero, name) && !harness_capturing()) {
        c->checks++;
        for (i = 0; i < got->numel; i++)
            if (got->data[i] != 0) {
                harness_failf(c->name, "%s: element %lu is %.17g, expected exactly 0", name, (unsigned long)i,
                              (double)got->data[i]);
                c->failed++;
                return 1;
            }
        printf("  ok %s %s: exactly zero (%lu elements)\n", c->name, name, (unsigned long)got->numel);
        return 0;
    }
    return case_check(c, name, got);
}

// The frozen-weights path: a second backward with every weight gradient NULL must give the
// same d_x (checked against the file like the first; the caller re-zeroes dx with ZERO).
static int check_dx_only(Case *c, Tensor *dx) {
    return case_check(c, "d_x", dx);
}
#define ZERO(t) memset((t)->data, 0, (t)->numel * sizeof(real))

static int read_geom(Case *c, Conv2dGeom *g, size_t KH, size_t KW) {
    long stride;
    const char *pad;
    unsigned long pt, pb, pl, pr;
    if (case_meta_long(c, "stride", &stride) || !(pad = case_meta_str(c, "pad"))) return 1;
    if (sscanf(pad, "%lu,%lu,%lu,%lu", &pt, &pb, &pl, &pr) != 4 || stride < 1) {
        harness_failf(c->name, "bad pad '%s' or stride %ld", pad, stride);
        c->failed++;
        return 1;
    }
    g->KH = KH; g->KW = KW; g->stride = (size_t)stride;
    g->pad_top = pt; g->pad_bottom = pb; g->pad_left = pl; g->pad_right = pr;
    return 0;
}

// ---------------------------------------------------------------------------------------

int run_conv2d_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *dout, *dx, *dk, *db;
    Conv2dGeom g;
    size_t N, H, W, Ci, Co, Ho, Wo;
    int rc = 1;
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "kernel")) || !(bias = bag_input(c, &b, "bias")) ||
        !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (case_expect_rank(c, x, "x", 4) || case_expect_rank(c, k, "kernel", 4)) goto out;
    N = x->shape[0]; H = x->shape[1]; W = x->shape[2]; Ci = x->shape[3]; Co = k->shape[3];
    if (read_geom(c, &g, k->shape[0], k->shape[1])) goto out;
    if (SHAPE(tensor_expect_shape(k, "kernel", 4, g.KH, g.KW, Ci, Co)) || SHAPE(tensor_expect_shape(bias, "bias", 1, Co)) ||
        SHAPE(conv2d_out_size(&Ho, &Wo, H, W, &g)) || SHAPE(tensor_expect_shape(dout, "dout", 4, N, Ho, Wo, Co)))
        goto out;
    if (!(dx = bag_alloc_like(c, &b, x)) || !(dk = bag_alloc_like(c, &b, k)) || !(db = bag_alloc_like(c, &b, bias))) goto out;
    conv2d_backward(dx->data, dk->data, db->data, dout->data, x->data, k->data, N, H, W, Ci, Co, &g);
    rc = check_grad(c, "d_x", dx) | check_grad(c, "d_kernel", dk) | check_grad(c, "d_bias", db);
    ZERO(dx);
    conv2d_backward(dx->data, NULL, NULL, dout->data, x->data, k->data, N, H, W, Ci, Co, &g);
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

int run_temporal_conv_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *dout, *dx, *dk, *db;
    size_t B, F, H, W, Ci, Co;
    int rc = 1;
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "kernel")) || !(bias = bag_input(c, &b, "bias")) ||
        !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (case_expect_rank(c, x, "x", 5) || case_expect_rank(c, k, "kernel", 3)) goto out;
    B = x->shape[0]; F = x->shape[1]; H = x->shape[2]; W = x->shape[3]; Ci = x->shape[4]; Co = k->shape[2];
    if (SHAPE(tensor_expect_shape(k, "kernel", 3, (size_t)3, Ci, Co)) || SHAPE(tensor_expect_shape(bias, "bias", 1, Co)) ||
        SHAPE(tensor_expect_shape(dout, "dout", 5, B, F, H, W, Co)))
        goto out;
    if (!(dx = bag_alloc_like(c, &b, x)) || !(dk = bag_alloc_like(c, &b, k)) || !(db = bag_alloc_like(c, &b, bias))) goto out;
    temporal_conv_backward(dx->data, dk->data, db->data, dout->data, x->data, k->data, B, F, H * W, Ci, Co);
    rc = check_grad(c, "d_x", dx) | check_grad(c, "d_kernel", dk) | check_grad(c, "d_bias", db);
    ZERO(dx);
    temporal_conv_backward(dx->data, NULL, NULL, dout->data, x->data, k->data, B, F, H * W, Ci, Co);
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

int run_conv_pseudo3d_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *sk, *sb, *tk, *tb, *dout, *y, *work, *dwork, *dx, *dsk, *dsb, *dtk, *dtb;
    Conv2dGeom g;
    size_t B, F, H, W, Ci, Co, Ho, Wo;
    int rc = 1;
    if (!(x = bag_input(c, &b, "x")) || !(sk = bag_input(c, &b, "spatial_conv.kernel")) || !(sb = bag_input(c, &b, "spatial_conv.bias")) ||
        !(tk = bag_input(c, &b, "temporal_conv.kernel")) || !(tb = bag_input(c, &b, "temporal_conv.bias")) ||
        !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (case_expect_rank(c, x, "x", 5) || case_expect_rank(c, sk, "spatial_conv.kernel", 4)) goto out;
    B = x->shape[0]; F = x->shape[1]; H = x->shape[2]; W = x->shape[3]; Ci = x->shape[4]; Co = sk->shape[3];
    if (read_geom(c, &g, sk->shape[0], sk->shape[1])) goto out;
    if (SHAPE(tensor_expect_shape(sk, "spatial_conv.kernel", 4, g.KH, g.KW, Ci, Co)) ||
        SHAPE(tensor_expect_shape(sb, "spatial_conv.bias", 1, Co)) ||
        SHAPE(tensor_expect_shape(tk, "temporal_conv.kernel", 3, (size_t)3, Co, Co)) ||
        SHAPE(tensor_expect_shape(tb, "temporal_conv.bias", 1, Co)) || SHAPE(conv2d_out_size(&Ho, &Wo, H, W, &g)) ||
        SHAPE(tensor_expect_shape(dout, "dout", 5, B, F, Ho, Wo, Co)))
        goto out;
    if (!(y = bag_alloc_like(c, &b, dout)) || !(work = bag_alloc_like(c, &b, dout)) || !(dwork = bag_alloc_like(c, &b, dout)) ||
        !(dx = bag_alloc_like(c, &b, x)) || !(dsk = bag_alloc_like(c, &b, sk)) || !(dsb = bag_alloc_like(c, &b, sb)) ||
        !(dtk = bag_alloc_like(c, &b, tk)) || !(dtb = bag_alloc_like(c, &b, tb)))
        goto out;
    // the forward leaves the spatial output in `work`: the backward's cache
    if (conv_pseudo3d_forward(y->data, work->data, x->data, sk->data, sb->data, tk->data, tb->data, B, F, H, W, Ci, Co, &g) ||
        conv_pseudo3d_backward(dx->data, dsk->data, dsb->data, dtk->data, dtb->data, dwork->data, dout->data, x->data,
                               work->data, sk->data, tk->data, B, F, H, W, Ci, Co, &g)) {
        case_error(c, "conv_pseudo3d");
        goto out;
    }
    rc = check_grad(c, "d_x", dx) | check_grad(c, "d_spatial_conv.kernel", dsk) | check_grad(c, "d_spatial_conv.bias", dsb) |
         check_grad(c, "d_temporal_conv.kernel", dtk) | check_grad(c, "d_temporal_conv.bias", dtb);
    ZERO(dx);
    if (conv_pseudo3d_backward(dx->data, NULL, NULL, NULL, NULL, dwork->data, dout->data, x->data, work->data, sk->data,
                               tk->data, B, F, H, W, Ci, Co, &g)) {
        case_error(c, "conv_pseudo3d");
        goto out;
    }
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

// ---------------------------------------------------------------------------------------

int run_groupnorm_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *scale, *bias, *dout, *y, *stats, *dx, *ds, *db;
    long groups, per_frame;
    double eps;
    size_t B, F, H, W, C, N, S, shape[2];
    int rc = 1;
    if (case_meta_long(c, "groups", &groups) || case_meta_long(c, "per_frame", &per_frame) ||
        case_meta_double(c, "eps", &eps))
        return 1;
    if (!(x = bag_input(c, &b, "x")) || !(scale = bag_input(c, &b, "scale")) || !(bias = bag_input(c, &b, "bias")) ||
        !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (case_expect_rank(c, x, "x", 5)) goto out;
    B = x->shape[0]; F = x->shape[1]; H = x->shape[2]; W = x->shape[3]; C = x->shape[4];
    if (groups < 1 || C % (size_t)groups) { harness_failf(c->name, "bad groups %ld", groups); c->failed++; goto out; }
    if (SHAPE(tensor_expect_shape(scale, "scale", 1, C)) || SHAPE(tensor_expect_shape(bias, "bias", 1, C)) ||
        SHAPE(tensor_expect_shape(dout, "dout", 5, B, F, H, W, C)))
        goto out;
    // the transformer's GroupNorm (per frame) is the joint one over (B*F) one-frame clips
    N = per_frame ? B * F : B;
    S = per_frame ? H * W : F * H * W;
    shape[0] = 2; shape[1] = N * (size_t)groups; // mean, rstd
    if (!(y = bag_alloc_like(c, &b, x)) || !(stats = bag_alloc(c, &b, 2, shape)) || !(dx = bag_alloc_like(c, &b, x)) ||
        !(ds = bag_alloc_like(c, &b, scale)) || !(db = bag_alloc_like(c, &b, bias)))
        goto out;
    groupnorm_forward(y->data, stats->data, stats->data + shape[1], x->data, scale->data, bias->data, N, S, C,
                      (size_t)groups, eps);
    groupnorm_backward(dx->data, ds->data, db->data, dout->data, x->data, scale->data, stats->data, stats->data + shape[1],
                       N, S, C, (size_t)groups);
    rc = check_grad(c, "d_x", dx) | check_grad(c, "d_scale", ds) | check_grad(c, "d_bias", db);
    ZERO(dx);
    groupnorm_backward(dx->data, NULL, NULL, dout->data, x->data, scale->data, stats->data, stats->data + shape[1], N, S, C,
                       (size_t)groups);
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

int run_layernorm_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *scale, *bias, *dout, *y, *stats, *dx, *ds, *db;
    double eps;
    size_t C, N, shape[2];
    int rc = 1;
    if (case_meta_double(c, "eps", &eps)) return 1;
    if (!(x = bag_input(c, &b, "x")) || !(scale = bag_input(c, &b, "scale")) || !(bias = bag_input(c, &b, "bias")) ||
        !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (x->ndim < 1) { harness_failf(c->name, "x must have a channel axis"); c->failed++; goto out; }
    C = x->shape[x->ndim - 1];
    if (C == 0) { harness_failf(c->name, "x has no channels"); c->failed++; goto out; }
    N = x->numel / C;
    if (SHAPE(tensor_expect_shape(scale, "scale", 1, C)) || SHAPE(tensor_expect_shape(bias, "bias", 1, C))) goto out;
    if (!tensor_same_shape(dout, x)) { harness_failf(c->name, "dout's shape differs from x's"); c->failed++; goto out; }
    shape[0] = 2; shape[1] = N;
    if (!(y = bag_alloc_like(c, &b, x)) || !(stats = bag_alloc(c, &b, 2, shape)) || !(dx = bag_alloc_like(c, &b, x)) ||
        !(ds = bag_alloc_like(c, &b, scale)) || !(db = bag_alloc_like(c, &b, bias)))
        goto out;
    layernorm_forward(y->data, stats->data, stats->data + N, x->data, scale->data, bias->data, N, C, eps);
    layernorm_backward(dx->data, ds->data, db->data, dout->data, x->data, scale->data, stats->data, stats->data + N, N, C);
    rc = check_grad(c, "d_x", dx) | check_grad(c, "d_scale", ds) | check_grad(c, "d_bias", db);
    ZERO(dx);
    layernorm_backward(dx->data, NULL, NULL, dout->data, x->data, scale->data, stats->data, stats->data + N, N, C);
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

int run_dense_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *dout, *dx, *dk, *db;
    size_t I, O, N;
    int rc = 1;
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "kernel")) || !(bias = bag_input(c, &b, "bias")) ||
        !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (x->ndim < 1 || case_expect_rank(c, k, "kernel", 2)) { if (x->ndim < 1) { harness_failf(c->name, "x has rank 0"); c->failed++; } goto out; }
    I = x->shape[x->ndim - 1]; O = k->shape[1];
    if (I == 0) { harness_failf(c->name, "x has no inputs"); c->failed++; goto out; }
    N = x->numel / I;
    if (SHAPE(tensor_expect_shape(k, "kernel", 2, I, O)) || SHAPE(tensor_expect_shape(bias, "bias", 1, O))) goto out;
    if (dout->ndim != x->ndim || dout->numel != N * O || dout->shape[dout->ndim - 1] != O) {
        harness_failf(c->name, "dout must be x's shape with %lu outputs", (unsigned long)O);
        c->failed++;
        goto out;
    }
    if (!(dx = bag_alloc_like(c, &b, x)) || !(dk = bag_alloc_like(c, &b, k)) || !(db = bag_alloc_like(c, &b, bias))) goto out;
    linear_backward(dx->data, dk->data, db->data, dout->data, x->data, k->data, N, I, O);
    rc = check_grad(c, "d_x", dx) | check_grad(c, "d_kernel", dk) | check_grad(c, "d_bias", db);
    ZERO(dx);
    linear_backward(dx->data, NULL, NULL, dout->data, x->data, k->data, N, I, O);
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

int run_activation_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *dout, *dx;
    const char *kind;
    int rc = 1;
    if (!(kind = case_meta_str(c, "kind"))) return 1;
    if (!(x = bag_input(c, &b, "x")) || !(dout = bag_input(c, &b, "dout"))) goto out;
    if (!tensor_same_shape(dout, x)) { harness_failf(c->name, "dout's shape differs from x's"); c->failed++; goto out; }
    if (!(dx = bag_alloc_like(c, &b, x))) goto out;
    if (!strcmp(kind, "silu")) silu_backward(dx->data, dout->data, x->data, x->numel);
    else if (!strcmp(kind, "gelu_tanh")) gelu_backward(dx->data, dout->data, x->data, x->numel, GELU_TANH);
    else if (!strcmp(kind, "gelu_erf")) gelu_backward(dx->data, dout->data, x->data, x->numel, GELU_ERF);
    else { harness_failf(c->name, "unknown activation '%s'", kind); c->failed++; goto out; }
    rc = check_grad(c, "d_x", dx);
out:
    bag_free(&b);
    return rc;
}

int run_geglu_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *dout, *dx, *dk, *db;
    const char *gelu;
    GeluKind kind;
    size_t N, C, H;
    int rc = 1;
    if (!(gelu = case_meta_str(c, "gelu"))) return 1;
    if (strcmp(gelu, "tanh") && strcmp(gelu, "erf")) { harness_failf(c->name, "bad gelu '%s'", gelu); c->failed++; return 1; }
    kind = strcmp(gelu, "erf") ? GELU_TANH : GELU_ERF;
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "proj.kernel")) || !(bias = bag_input(c, &b, "proj.bias")) ||
        !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (case_expect_rank(c, x, "x", 2) || case_expect_rank(c, k, "proj.kernel", 2)) goto out;
    N = x->shape[0]; C = x->shape[1]; H = k->shape[1] / 2;
    if (SHAPE(tensor_expect_shape(k, "proj.kernel", 2, C, 2 * H)) || SHAPE(tensor_expect_shape(bias, "proj.bias", 1, 2 * H)) ||
        SHAPE(tensor_expect_shape(dout, "dout", 2, N, H)))
        goto out;
    if (!(dx = bag_alloc_like(c, &b, x)) || !(dk = bag_alloc_like(c, &b, k)) || !(db = bag_alloc_like(c, &b, bias))) goto out;
    if (geglu_backward(dx->data, dk->data, db->data, dout->data, x->data, k->data, bias->data, N, C, H, kind)) {
        case_error(c, "geglu backward");
        goto out;
    }
    rc = check_grad(c, "d_x", dx) | check_grad(c, "d_proj.kernel", dk) | check_grad(c, "d_proj.bias", db);
    ZERO(dx);
    if (geglu_backward(dx->data, NULL, NULL, dout->data, x->data, k->data, bias->data, N, C, H, kind)) {
        case_error(c, "geglu backward");
        goto out;
    }
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Attention (diffusers FlaxAttention; the vectors are the memory-efficient path's VJP, which
// the exporter checked against the standard path's).

typedef enum { GA_SELF, GA_CROSS, GA_TEMPORAL } GradAttnUse;

static const char *const ga_names[5] = {"to_q.kernel", "to_k.kernel", "to_v.kernel", "to_out_0.kernel", "to_out_0.bias"};

static int run_attention_grad(Case *c, GradAttnUse use) {
    static const int rank[] = {3, 3, 5};
    Bag b = {0};
    Tensor *x, *ctx = NULL, *dout, *t[5], *dx, *dctx = NULL, *dt[5];
    AttnWeights w;
    AttnGrads g;
    long heads, dim_head, frames = 1;
    size_t C, D, i;
    int rc = 1, f;
    char dname[64];
    if (case_meta_long(c, "heads", &heads) || case_meta_long(c, "dim_head", &dim_head)) return 1;
    if (use == GA_CROSS && case_meta_long(c, "frames", &frames)) return 1;
    if (heads < 1 || dim_head < 1 || frames < 1) {
        harness_failf(c->name, "bad heads %ld / dim_head %ld / frames %ld", heads, dim_head, frames);
        c->failed++;
        return 1;
    }
    if (!(x = bag_input(c, &b, "x")) || !(dout = bag_input(c, &b, "dout"))) goto out;
    if (use == GA_CROSS && (!(ctx = bag_input(c, &b, "context")) || case_expect_rank(c, ctx, "context", 3))) goto out;
    for (i = 0; i < 5; i++)
        if (!(t[i] = bag_input(c, &b, ga_names[i]))) goto out;
    if (case_expect_rank(c, x, "x", rank[use]) || case_expect_rank(c, t[1], ga_names[1], 2)) goto out;
    C = x->shape[x->ndim - 1];
    D = (size_t)heads * (size_t)dim_head;
    memset(&w, 0, sizeof w);
    w.Cq = C; w.Ckv = t[1]->shape[0]; w.heads = (size_t)heads; w.dim_head = (size_t)dim_head;
    if (SHAPE(tensor_expect_shape(t[0], ga_names[0], 2, C, D)) || SHAPE(tensor_expect_shape(t[1], ga_names[1], 2, w.Ckv, D)) ||
        SHAPE(tensor_expect_shape(t[2], ga_names[2], 2, w.Ckv, D)) || SHAPE(tensor_expect_shape(t[3], ga_names[3], 2, D, C)) ||
        SHAPE(tensor_expect_shape(t[4], ga_names[4], 1, C)))
        goto out;
    if (!tensor_same_shape(dout, x)) { harness_failf(c->name, "dout's shape differs from x's"); c->failed++; goto out; }
    if (use == GA_CROSS) {
        if (SHAPE(tensor_expect_shape(x, "x", 3, ctx->shape[0] * (size_t)frames, x->shape[1], C)) ||
            SHAPE(tensor_expect_shape(ctx, "context", 3, ctx->shape[0], ctx->shape[1], w.Ckv)))
            goto out;
    } else if (w.Ckv != C) {
        harness_failf(c->name, "to_k.kernel has %lu input rows, expected %lu", (unsigned long)w.Ckv, (unsigned long)C);
        c->failed++;
        goto out;
    }
    w.wq = t[0]->data; w.wk = t[1]->data; w.wv = t[2]->data; w.wo = t[3]->data; w.bo = t[4]->data;
    if (!(dx = bag_alloc_like(c, &b, x)) || (use == GA_CROSS && !(dctx = bag_alloc_like(c, &b, ctx)))) goto out;
    for (i = 0; i < 5; i++)
        if (!(dt[i] = bag_alloc_like(c, &b, t[i]))) goto out;
    memset(&g, 0, sizeof g);
    g.dwq = dt[0]->data; g.dwk = dt[1]->data; g.dwv = dt[2]->data; g.dwo = dt[3]->data; g.dbo = dt[4]->data;
    switch (use) {
    case GA_SELF: f = attention_self_backward(dx->data, &g, dout->data, x->data, &w, x->shape[0], x->shape[1]); break;
    case GA_CROSS:
        f = attention_cross_backward(dx->data, dctx->data, &g, dout->data, x->data, ctx->data, &w, ctx->shape[0],
                                     (size_t)frames, x->shape[1], ctx->shape[1]);
        break;
    default:
        f = attention_temporal_backward(dx->data, &g, dout->data, x->data, &w, x->shape[0], x->shape[1],
                                        x->shape[2] * x->shape[3]);
    }
    if (f) { case_error(c, "attention backward"); goto out; }
    rc = check_grad(c, "d_x", dx);
    if (use == GA_CROSS) rc |= check_grad(c, "d_context", dctx);
    for (i = 0; i < 5; i++) {
        snprintf(dname, sizeof dname, "d_%s", ga_names[i]);
        rc |= check_grad(c, dname, dt[i]);
    }
    // the frozen-weights path: no weight gradients at all (dw = NULL)
    ZERO(dx);
    switch (use) {
    case GA_SELF: f = attention_self_backward(dx->data, NULL, dout->data, x->data, &w, x->shape[0], x->shape[1]); break;
    case GA_CROSS:
        f = attention_cross_backward(dx->data, NULL, NULL, dout->data, x->data, ctx->data, &w, ctx->shape[0],
                                     (size_t)frames, x->shape[1], ctx->shape[1]);
        break;
    default:
        f = attention_temporal_backward(dx->data, NULL, dout->data, x->data, &w, x->shape[0], x->shape[1],
                                        x->shape[2] * x->shape[3]);
    }
    if (f) { case_error(c, "attention backward (no weight gradients)"); goto out; }
    rc |= check_dx_only(c, dx);
out:
    bag_free(&b);
    return rc;
}

int run_attention_self_grad(Case *c) { return run_attention_grad(c, GA_SELF); }
int run_attention_cross_grad(Case *c) { return run_attention_grad(c, GA_CROSS); }
int run_attention_temporal_grad(Case *c) { return run_attention_grad(c, GA_TEMPORAL); }

// ---------------------------------------------------------------------------------------

int run_upsample_nearest_grad(Case *c) {
    Bag b = {0};
    Tensor *x, *dout, *dx;
    long Ho, Wo;
    int rc = 1;
    if (case_meta_long(c, "Ho", &Ho) || case_meta_long(c, "Wo", &Wo)) return 1;
    if (Ho < 1 || Wo < 1) { harness_failf(c->name, "bad output size %ldx%ld", Ho, Wo); c->failed++; return 1; }
    if (!(x = bag_input(c, &b, "x")) || !(dout = bag_input(c, &b, "dout"))) goto out;
    if (case_expect_rank(c, x, "x", 4) ||
        SHAPE(tensor_expect_shape(dout, "dout", 4, x->shape[0], (size_t)Ho, (size_t)Wo, x->shape[3])))
        goto out;
    if (!(dx = bag_alloc_like(c, &b, x))) goto out;
    if ((size_t)Ho == 2 * x->shape[1] && (size_t)Wo == 2 * x->shape[2])
        upsample_nearest2x_backward(dx->data, dout->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3]);
    else
        resize_nearest_backward(dx->data, dout->data, x->shape[0], x->shape[1], x->shape[2], (size_t)Ho, (size_t)Wo,
                                x->shape[3]);
    rc = check_grad(c, "d_x", dx);
out:
    bag_free(&b);
    return rc;
}

int run_timestep_embedding_grad(Case *c) {
    Bag b = {0};
    Tensor *s, *w1, *b1, *w2, *b2, *dout, *ds, *dw1, *db1, *dw2, *db2;
    size_t N, Cs, Ct;
    int rc = 1;
    if (!(s = bag_input(c, &b, "sinusoid")) || !(w1 = bag_input(c, &b, "linear_1.kernel")) || !(b1 = bag_input(c, &b, "linear_1.bias")) ||
        !(w2 = bag_input(c, &b, "linear_2.kernel")) || !(b2 = bag_input(c, &b, "linear_2.bias")) || !(dout = bag_input(c, &b, "dout")))
        goto out;
    if (case_expect_rank(c, s, "sinusoid", 2) || case_expect_rank(c, w1, "linear_1.kernel", 2)) goto out;
    N = s->shape[0]; Cs = s->shape[1]; Ct = w1->shape[1];
    if (SHAPE(tensor_expect_shape(w1, "linear_1.kernel", 2, Cs, Ct)) || SHAPE(tensor_expect_shape(b1, "linear_1.bias", 1, Ct)) ||
        SHAPE(tensor_expect_shape(w2, "linear_2.kernel", 2, Ct, Ct)) || SHAPE(tensor_expect_shape(b2, "linear_2.bias", 1, Ct)) ||
        SHAPE(tensor_expect_shape(dout, "dout", 2, N, Ct)))
        goto out;
    if (!(ds = bag_alloc_like(c, &b, s)) || !(dw1 = bag_alloc_like(c, &b, w1)) || !(db1 = bag_alloc_like(c, &b, b1)) ||
        !(dw2 = bag_alloc_like(c, &b, w2)) || !(db2 = bag_alloc_like(c, &b, b2)))
        goto out;
    if (timestep_embedding_backward(ds->data, dw1->data, db1->data, dw2->data, db2->data, dout->data, s->data, w1->data,
                                    b1->data, w2->data, N, Cs, Ct)) {
        case_error(c, "timestep embedding backward");
        goto out;
    }
    rc = check_grad(c, "d_sinusoid", ds) | check_grad(c, "d_linear_1.kernel", dw1) | check_grad(c, "d_linear_1.bias", db1) |
         check_grad(c, "d_linear_2.kernel", dw2) | check_grad(c, "d_linear_2.bias", db2);
out:
    bag_free(&b);
    return rc;
}
