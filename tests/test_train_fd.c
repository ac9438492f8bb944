// test_train_fd.c: the whole UNet's backward against a directional finite difference, float64
// build only. With L(p, x) = sum(w * unet(x; p)) for a fixed random w and a random direction
// (u_p, u_x) over every parameter and the sample:
//   <u_p, dL/dp> + <u_x, dL/dx>  ==  (L(p + h u_p, x + h u_x) - L(p - h u_p, x - h u_x)) / 2h
// to 1e-6 relative, on a tiny configuration with and without the temporal layers. Also checks
// unet_tape_backward's accumulation (+=) into a pre-filled gradient table.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/procedural.h"
#include "../ref/unet.h"

#if MAVREF_PRECISION == 64

static double loss_at(ParamTable *pt, const UNetConfig *c, const Tensor *x, const Tensor *t, const Tensor *ctx,
                      const Tensor *w, int *err) {
    Tensor y;
    double s = 0.0;
    size_t i;
    if (unet_forward(&y, x, t, ctx, pt, c, NULL, NULL)) { *err = 1; return 0.0; }
    for (i = 0; i < y.numel; i++) s += (double)y.data[i] * (double)w->data[i];
    tensor_free(&y);
    return s;
}

static int fd_case(int temporal) {
    UNetConfig c;
    ParamTable pt, gt;
    Tensor x, t, ctx, w, dx, out;
    real *p0 = NULL, *up = NULL, *ux = NULL, *x0 = NULL;
    const double h = 1e-7;
    double dot = 0.0, fd, lp, lm, rel, unorm = 0.0, gnorm = 0.0;
    size_t i, B = 1, F = temporal ? 3 : 1, H = 4, W = 4, T = 3;
    int err = 0, fail = 1;
    unet_config_default(&c);
    c.in_channels = 9; c.out_channels = 4; c.n_blocks = 2; c.block_out_channels[0] = 32; c.block_out_channels[1] = 64;
    c.layers_per_block = 1; c.heads[0] = 2; c.heads[1] = 4; c.cross_attention_dim = 8;
    c.down_cross[0] = 1; c.down_cross[1] = 0; c.up_cross[0] = 0; c.up_cross[1] = 1; c.temporal = temporal;
    params_init(&pt);
    if (unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 11) || unet_grads_alloc(&gt, &pt)) {
        harness_failf("train_fd", "setup: %s", mv_error());
        free_params(&pt);
        return 1;
    }
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&ctx, 0, sizeof ctx); memset(&w, 0, sizeof w);
    if ((temporal ? tensor_alloc_v(&x, 5, B, (size_t)9, F, H, W) : tensor_alloc_v(&x, 4, B, (size_t)9, H, W)) ||
        (temporal ? tensor_alloc_v(&w, 5, B, (size_t)4, F, H, W) : tensor_alloc_v(&w, 4, B, (size_t)4, H, W)) ||
        tensor_alloc_v(&t, 1, B) || tensor_alloc_v(&ctx, 3, B, T, (size_t)8))
        goto out;
    proc_fill(x.data, x.numel, 1, "x", 1.0, 0.0);
    proc_fill(w.data, w.numel, 2, "w", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 3, "ctx", 1.0, 0.0);
    t.data[0] = 321;
    p0 = (real *)malloc(pt.numel * sizeof(real)); up = (real *)malloc(pt.numel * sizeof(real));
    ux = (real *)malloc(x.numel * sizeof(real)); x0 = (real *)malloc(x.numel * sizeof(real));
    if (!p0 || !up || !ux || !x0) goto out;
    memcpy(p0, pt.arena, pt.numel * sizeof(real));
    memcpy(x0, x.data, x.numel * sizeof(real));
    proc_fill(up, pt.numel, 4, "u_params", 1.0, 0.0);
    proc_fill(ux, x.numel, 5, "u_sample", 1.0, 0.0);
    // the gradient table starts at 0.5: the backward must add to it
    for (i = 0; i < gt.numel; i++) gt.arena[i] = 0.5;
    if (unet_backward(&gt, &dx, &out, &w, &x, &t, &ctx, &pt, &c)) { harness_failf("train_fd", "%s", mv_error()); goto out; }
    // u = r + a g with a random r and a = 0.05 |r| / |g|: a random direction in a million
    // dimensions is nearly orthogonal to g, and <u, g> would be a cancellation
    for (i = 0; i < pt.numel; i++) {
        double g = (double)gt.arena[i] - 0.5;
        gnorm += g * g;
        unorm += (double)up[i] * (double)up[i];
    }
    for (i = 0; i < x.numel; i++) {
        gnorm += (double)dx.data[i] * (double)dx.data[i];
        unorm += (double)ux[i] * (double)ux[i];
    }
    {
        double a = 0.05 * sqrt(unorm / gnorm);
        unorm = 0.0;
        for (i = 0; i < pt.numel; i++) {
            double g = (double)gt.arena[i] - 0.5;
            up[i] += (real)(a * g);
            dot += (double)up[i] * g;
            unorm += (double)up[i] * (double)up[i];
        }
        for (i = 0; i < x.numel; i++) {
            ux[i] += (real)(a * (double)dx.data[i]);
            dot += (double)ux[i] * (double)dx.data[i];
            unorm += (double)ux[i] * (double)ux[i];
        }
    }
    tensor_free(&dx); tensor_free(&out);
    for (i = 0; i < pt.numel; i++) pt.arena[i] = p0[i] + (real)h * up[i];
    for (i = 0; i < x.numel; i++) x.data[i] = x0[i] + (real)h * ux[i];
    lp = loss_at(&pt, &c, &x, &t, &ctx, &w, &err);
    for (i = 0; i < pt.numel; i++) pt.arena[i] = p0[i] - (real)h * up[i];
    for (i = 0; i < x.numel; i++) x.data[i] = x0[i] - (real)h * ux[i];
    lm = loss_at(&pt, &c, &x, &t, &ctx, &w, &err);
    if (err) { harness_failf("train_fd", "%s", mv_error()); goto out; }
    fd = (lp - lm) / (2 * h);
    rel = fabs(fd - dot) / fabs(dot);
    printf("  train_fd temporal=%d: %lu params, <u,g> %.12e, finite difference %.12e, rel %.2e (|u||g| %.3e)\n", temporal,
           (unsigned long)pt.numel, dot, fd, rel, sqrt(unorm * gnorm));
        if (!(rel <= 1e-6)) {
        harness_failf("train_fd", "temporal=%d: <u,g> %.12e vs finite difference %.12e (rel %.2e)", temporal, dot, fd, rel);
        goto out;
    }
    fail = 0;
out:
    free(p0); free(up); free(ux); free(x0);
    tensor_free(&x); tensor_free(&t); tensor_free(&ctx); tensor_free(&w);
    free_params(&gt); free_params(&pt);
    return fail;
}

int test_train_fd_unet(void) {
    return fd_case(1) | fd_case(0);
}

#endif

// ---------------------------------------------------------------------------------------
// The tape's recompute mode (every precision): a configuration of 3 down blocks with 2
// layers (63 stages), temporal and 2-D. The gradients (parameters and sample, added to a
// table that starts at 0.5) and the output are bit-identical to those of the default mode,
// also with 3 threads, and the tape holds fewer bytes at its peak; unet_forward gives the same
// output and the documented taps in order. One training step with
// TrainConfig.recompute moves the parameters exactly as the default step.
#include "../ref/threads.h"
#include "../ref/train.h"

typedef struct {
    Tensor out, dx;
    ParamTable gt;
    size_t peak;
} TapeRun;

static int tape_case(TapeRun *r, ParamTable *pt, const UNetConfig *c, const Tensor *x, const Tensor *t, const Tensor *ctx,
                     const Tensor *w, int recompute) {
    UNetTape *tp;
    size_t i;
    memset(r, 0, sizeof *r);
    if (unet_grads_alloc(&r->gt, pt)) return MV_ERR;
    for (i = 0; i < r->gt.numel; i++) r->gt.arena[i] = (real)0.5;
    if (unet_tape_forward_mode(&tp, &r->out, x, t, ctx, pt, c, recompute)) return MV_ERR;
    if (unet_tape_backward(tp, &r->gt, &r->dx, w)) { unet_tape_free(tp); return MV_ERR; }
    r->peak = unet_tape_peak_bytes(tp);
    unet_tape_free(tp);
    return MV_OK;
}

static void tape_run_free(TapeRun *r) {
    tensor_free(&r->out); tensor_free(&r->dx);
    free_params(&r->gt);
}

static int tape_same(const char *what, const TapeRun *a, const TapeRun *b) {
    int fails = 0;
    fails += EXPECT(a->out.numel == b->out.numel && memcmp(a->out.data, b->out.data, a->out.numel * sizeof(real)) == 0,
                    "%s: outputs differ", what);
    fails += EXPECT(a->dx.numel == b->dx.numel && memcmp(a->dx.data, b->dx.data, a->dx.numel * sizeof(real)) == 0,
                    "%s: sample gradients differ", what);
    fails += EXPECT(memcmp(a->gt.arena, b->gt.arena, a->gt.numel * sizeof(real)) == 0, "%s: parameter gradients differ", what);
    return fails;
}

// The names of the taps unet_forward hands out, in order, joined by ','.
typedef struct {
    char names[512];
    size_t n;
} TapNames;

static int tap_name(void *user, const char *name, const Tensor *t) {
    TapNames *tn = (TapNames *)user;
    int k = snprintf(tn->names + tn->n, sizeof tn->names - tn->n, "%s%s", tn->n ? "," : "", name);
    (void)t;
    if (k < 0 || (size_t)k >= sizeof tn->names - tn->n) return mv_fail("too many taps");
    tn->n += (size_t)k;
    return MV_OK;
}

// A tap that stops the forward at the tap named `user` (each block boundary in turn: the walk
// then holds skips, and the hidden state may be a view of one; make sanitize / valgrind see
// that nothing leaks).
static int tap_stop(void *user, const char *name, const Tensor *t) {
    (void)t;
    return strcmp(name, (const char *)user) ? MV_OK : mv_fail("stopped at %s", name);
}

// The forward walks the tape's stage list keeping nothing (the skips shared, not copied): its
// output is the tape's, bit for bit, its taps are the documented ones at block boundaries, and
// a tap's error stops it at any of them.
static int forward_same(const TapeRun *keep, ParamTable *pt, const UNetConfig *c, const Tensor *x, const Tensor *t,
                        const Tensor *ctx) {
    static const char *want = "tap.time_proj,tap.time_embedding,tap.conv_in,tap.down_blocks_0,tap.down_blocks_1,"
                              "tap.down_blocks_2,tap.mid_block,tap.up_blocks_0,tap.up_blocks_1,tap.up_blocks_2,tap.conv_out";
    TapNames tn;
    Tensor y;
    const char *p;
    int fails = 0;
    memset(&tn, 0, sizeof tn);
    if (unet_forward(&y, x, t, ctx, pt, c, tap_name, &tn)) {
        harness_failf("tape_recompute", "unet_forward: %s", mv_error());
        return 1;
    }
    fails += EXPECT(y.numel == keep->out.numel && memcmp(y.data, keep->out.data, y.numel * sizeof(real)) == 0,
                    "temporal=%d: unet_forward differs from the tape's forward", c->temporal);
    fails += EXPECT(strcmp(tn.names, want) == 0, "temporal=%d: taps %s, expected %s", c->temporal, tn.names, want);
    tensor_free(&y);
    for (p = want; *p; p += *p == ',') {
        char name[32];
        size_t k = strcspn(p, ",");
        memcpy(name, p, k);
        name[k] = 0;
        p += k;
        fails += EXPECT(unet_forward(&y, x, t, ctx, pt, c, tap_stop, name) == MV_ERR && !y.data && strstr(mv_error(), name),
                        "temporal=%d: a tap failing at %s did not stop the forward with its message", c->temporal, name);
        tensor_free(&y);
    }
    return fails;
}

static int recompute_case(int temporal) {
    UNetConfig c;
    ParamTable pt;
    Tensor x, t, ctx, w;
    TapeRun keep, rec, rec3;
    size_t B = 1, F = temporal ? 3 : 1, H = 8, W = 8;
    int fails = 0, saved = threads_count();
    unet_config_default(&c);
    c.in_channels = 9; c.out_channels = 4; c.n_blocks = 3;
    c.block_out_channels[0] = 32; c.block_out_channels[1] = 64; c.block_out_channels[2] = 64;
    c.layers_per_block = 2; c.heads[0] = 2; c.heads[1] = 4; c.heads[2] = 4; c.cross_attention_dim = 8;
    c.down_cross[0] = 1; c.down_cross[1] = 1; c.down_cross[2] = 0; c.up_cross[0] = 0; c.up_cross[1] = 1; c.up_cross[2] = 1;
    c.temporal = temporal;
    params_init(&pt);
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&ctx, 0, sizeof ctx); memset(&w, 0, sizeof w);
    memset(&keep, 0, sizeof keep); memset(&rec, 0, sizeof rec); memset(&rec3, 0, sizeof rec3);
    if (unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 12) ||
        (temporal ? tensor_alloc_v(&x, 5, B, (size_t)9, F, H, W) : tensor_alloc_v(&x, 4, B, (size_t)9, H, W)) ||
        (temporal ? tensor_alloc_v(&w, 5, B, (size_t)4, F, H, W) : tensor_alloc_v(&w, 4, B, (size_t)4, H, W)) ||
        tensor_alloc_v(&t, 1, B) || tensor_alloc_v(&ctx, 3, B, (size_t)5, (size_t)8)) {
        harness_failf("tape_recompute", "setup: %s", mv_error());
        fails = 1;
        goto out;
    }
    proc_fill(x.data, x.numel, 1, "x", 1.0, 0.0);
    proc_fill(w.data, w.numel, 2, "w", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 3, "ctx", 1.0, 0.0);
    t.data[0] = 654;
    threads_set(1);
    if (tape_case(&keep, &pt, &c, &x, &t, &ctx, &w, 0) || tape_case(&rec, &pt, &c, &x, &t, &ctx, &w, 1)) {
        harness_failf("tape_recompute", "temporal=%d: %s", temporal, mv_error());
        fails = 1;
        goto out;
    }
    threads_set(3);
    if (tape_case(&rec3, &pt, &c, &x, &t, &ctx, &w, 1)) {
        harness_failf("tape_recompute", "temporal=%d: %s", temporal, mv_error());
        fails = 1;
        goto out;
    }
    printf("  tape_recompute temporal=%d: tape peak %lu bytes keeping every stage input, %lu with checkpoints\n", temporal,
           (unsigned long)keep.peak, (unsigned long)rec.peak);
    fails += tape_same(temporal ? "recompute vs keep (temporal)" : "recompute vs keep (2-D)", &keep, &rec);
    fails += forward_same(&keep, &pt, &c, &x, &t, &ctx);
    fails += tape_same(temporal ? "recompute, 3 threads vs 1 (temporal)" : "recompute, 3 threads vs 1 (2-D)", &rec, &rec3);
    fails += EXPECT(rec.peak < keep.peak, "temporal=%d: recompute holds %lu bytes at its peak, not fewer than %lu", temporal,
                    (unsigned long)rec.peak, (unsigned long)keep.peak);
out:
    threads_set(saved);
    tape_run_free(&keep); tape_run_free(&rec); tape_run_free(&rec3);
    tensor_free(&x); tensor_free(&t); tensor_free(&ctx); tensor_free(&w);
    free_params(&pt);
    return fails;
}

// One train_step of the default and of the recompute tape: the same parameters, bit for bit.
static int recompute_train_step(void) {
    UNetConfig c;
    ParamTable p[2], gt;
    AdamState opt[2];
    TrainConfig tc;
    Tensor x, t, noise, ctx;
    double loss[2], l2[2];
    int m, fails = 0;
    unet_config_default(&c);
    c.in_channels = 9; c.out_channels = 4; c.n_blocks = 2; c.block_out_channels[0] = 32; c.block_out_channels[1] = 64;
    c.layers_per_block = 1; c.heads[0] = 2; c.heads[1] = 4; c.cross_attention_dim = 8;
    c.down_cross[0] = 1; c.down_cross[1] = 0; c.up_cross[0] = 0; c.up_cross[1] = 1;
    train_config_default(&tc);
    tc.only_temporal = 0;
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&noise, 0, sizeof noise); memset(&ctx, 0, sizeof ctx);
    memset(opt, 0, sizeof opt);
    params_init(&p[0]); params_init(&p[1]); params_init(&gt);
    for (m = 0; m < 2; m++)
        if (unet_declare_params(&p[m], &c) || params_alloc(&p[m]) || params_procedural(&p[m], 21) || adam_init(&opt[m], &p[m], &tc)) {
            fails = 1;
            goto out;
        }
    if (unet_grads_alloc(&gt, &p[0]) || tensor_alloc_v(&x, 5, (size_t)1, (size_t)9, (size_t)2, (size_t)4, (size_t)4) ||
        tensor_alloc_v(&t, 1, (size_t)1) || tensor_alloc_v(&noise, 5, (size_t)1, (size_t)4, (size_t)2, (size_t)4, (size_t)4) ||
        tensor_alloc_v(&ctx, 3, (size_t)1, (size_t)3, (size_t)8)) {
        fails = 1;
        goto out;
    }
    proc_fill(x.data, x.numel, 7, "x_in", 1.0, 0.0);
    proc_fill(noise.data, noise.numel, 7, "noise", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 7, "ctx", 1.0, 0.0);
    t.data[0] = 400;
    for (m = 0; m < 2; m++) {
        tc.recompute = m;
        if (train_step(&p[m], &gt, &opt[m], &tc, &c, &x, &t, &noise, &ctx, &loss[m], &l2[m], NULL)) { fails = 1; goto out; }
    }
    fails += EXPECT(loss[0] == loss[1] && l2[0] == l2[1], "train_step: loss or l2_grads differ with recompute");
    fails += EXPECT(memcmp(p[0].arena, p[1].arena, p[0].numel * sizeof(real)) == 0, "train_step: parameters differ with recompute");
out:
    if (fails && *mv_error()) harness_failf("tape_recompute", "train_step: %s", mv_error());
    adam_free(&opt[0]); adam_free(&opt[1]);
    tensor_free(&x); tensor_free(&t); tensor_free(&noise); tensor_free(&ctx);
    free_params(&gt); free_params(&p[0]); free_params(&p[1]);
    return fails;
}

int test_tape_recompute(void) {
    return recompute_case(1) + recompute_case(0) + recompute_train_step();
}
