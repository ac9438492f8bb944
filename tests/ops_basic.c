// ops_basic.c: corpus runners for GroupNorm and conv2d (vectors from flax.linen).
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/conv.h"
#include "../ref/groupnorm.h"

int run_groupnorm(Case *c) {
    Tensor x, scale, bias, y;
    long groups, per_frame;
    double eps;
    size_t B, F, H, W, C, N, S;
    int rc = 1;
    if (case_meta_long(c, "groups", &groups) || case_meta_long(c, "per_frame", &per_frame) ||
        case_meta_double(c, "eps", &eps))
        return 1;
    if (case_input(c, "x", &x)) return 1;
    if (case_input(c, "scale", &scale) || case_input(c, "bias", &bias)) goto out0;
    if (x.ndim != 5) { harness_failf(c->name, "x must be (B,F,H,W,C)"); goto out1; }
    B = x.shape[0]; F = x.shape[1]; H = x.shape[2]; W = x.shape[3]; C = x.shape[4];
    // per-frame statistics are joint statistics of (B*F) one-frame clips
    N = per_frame ? B * F : B;
    S = per_frame ? H * W : F * H * W;
    if (tensor_alloc(&y, 5, x.shape)) { case_error(c, "alloc"); goto out1; }
    groupnorm_forward(y.data, NULL, NULL, x.data, scale.data, bias.data, N, S, C, (size_t)groups, eps);
    rc = case_check(c, "y", &y);
    tensor_free(&y);
out1:
    tensor_free(&scale);
    tensor_free(&bias);
out0:
    tensor_free(&x);
    return rc;
}

int run_conv2d(Case *c) {
    Tensor x, k, b, y;
    long stride;
    const char *pad;
    unsigned long pt, pb, pl, pr;
    Conv2dGeom g;
    size_t Ho, Wo;
    int rc = 1;
    if (case_meta_long(c, "stride", &stride) || !(pad = case_meta_str(c, "pad"))) return 1;
    if (sscanf(pad, "%lu,%lu,%lu,%lu", &pt, &pb, &pl, &pr) != 4) { harness_failf(c->name, "bad pad '%s'", pad); return 1; }
    if (case_input(c, "x", &x)) return 1;
    if (case_input(c, "kernel", &k)) { tensor_free(&x); return 1; }
    if (case_input(c, "bias", &b)) { tensor_free(&x); tensor_free(&k); return 1; }
    g.KH = k.shape[0]; g.KW = k.shape[1]; g.stride = (size_t)stride;
    g.pad_top = pt; g.pad_bottom = pb; g.pad_left = pl; g.pad_right = pr;
    if (conv2d_out_size(&Ho, &Wo, x.shape[1], x.shape[2], &g) ||
        tensor_alloc_v(&y, 4, x.shape[0], Ho, Wo, k.shape[3])) {
        case_error(c, "conv2d");
    } else {
        conv2d_forward(y.data, x.data, k.data, b.data, x.shape[0], x.shape[1], x.shape[2], x.shape[3], k.shape[3], &g);
        rc = case_check(c, "y", &y);
        tensor_free(&y);
    }
    tensor_free(&x);
    tensor_free(&k);
    tensor_free(&b);
    return rc;
}
