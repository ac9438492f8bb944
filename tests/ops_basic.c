// ops_basic.c: corpus runners for GroupNorm and conv2d (vectors from flax.linen).
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/conv.h"
#include "../ref/groupnorm.h"

int run_groupnorm(Case *c) {
    Bag b = {0};
    Tensor *x, *scale, *bias, *y;
    long groups, per_frame;
    double eps;
    size_t B, F, H, W, C, N, S;
    int rc = 1;
    if (case_meta_long(c, "groups", &groups) || case_meta_long(c, "per_frame", &per_frame) ||
        case_meta_double(c, "eps", &eps))
        return 1;
    if (!(x = bag_input(c, &b, "x")) || !(scale = bag_input(c, &b, "scale")) || !(bias = bag_input(c, &b, "bias")))
        goto out;
    if (x->ndim != 5) { harness_failf(c->name, "x must be (B,F,H,W,C)"); goto out; }
    B = x->shape[0]; F = x->shape[1]; H = x->shape[2]; W = x->shape[3]; C = x->shape[4];
    // per-frame statistics are joint statistics of (B*F) one-frame clips
    N = per_frame ? B * F : B;
    S = per_frame ? H * W : F * H * W;
    if (!(y = bag_alloc_like(c, &b, x))) goto out;
    groupnorm_forward(y->data, NULL, NULL, x->data, scale->data, bias->data, N, S, C, (size_t)groups, eps);
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}

int run_conv2d(Case *c) {
    Bag b = {0};
    Tensor *x, *k, *bias, *y;
    long stride;
    const char *pad;
    unsigned long pt, pb, pl, pr;
    Conv2dGeom g;
    size_t Ho, Wo, shape[4];
    int rc = 1;
    if (case_meta_long(c, "stride", &stride) || !(pad = case_meta_str(c, "pad"))) return 1;
    if (sscanf(pad, "%lu,%lu,%lu,%lu", &pt, &pb, &pl, &pr) != 4) { harness_failf(c->name, "bad pad '%s'", pad); return 1; }
    if (!(x = bag_input(c, &b, "x")) || !(k = bag_input(c, &b, "kernel")) || !(bias = bag_input(c, &b, "bias"))) goto out;
    g.KH = k->shape[0]; g.KW = k->shape[1]; g.stride = (size_t)stride;
    g.pad_top = pt; g.pad_bottom = pb; g.pad_left = pl; g.pad_right = pr;
    if (SHAPE(conv2d_out_size(&Ho, &Wo, x->shape[1], x->shape[2], &g))) goto out;
    shape[0] = x->shape[0]; shape[1] = Ho; shape[2] = Wo; shape[3] = k->shape[3];
    if (!(y = bag_alloc(c, &b, 4, shape))) goto out;
    conv2d_forward(y->data, x->data, k->data, bias->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], k->shape[3], &g);
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}
