// test_grad_fd.c: every backward pass against central finite differences of its forward, on
// tiny shapes, in the float64 build (registered only there: in float32 the differences carry
// no digits worth testing). For a loss L = sum(dout * forward(...)) with a fixed random dout,
// each gradient element g_i must match (L(p_i + h) - L(p_i - h)) / 2h to 1e-6 relative to the
// tensor's largest gradient. The gradient buffers are pre-filled with a pattern that is
// subtracted afterwards, which also checks that the backward ACCUMULATES (+=).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

#if MAVREF_PRECISION == 64

#define FD_H 1e-5
#define FD_TOL 1e-6
#define FD_MAXN 4096

typedef void (*FwdFn)(void *ctx, real *out);

// Deterministic values in [-scale, scale) (a 64-bit LCG, high bits).
static void fill(real *a, size_t n, uint64_t seed, double scale) {
    size_t i;
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        a[i] = (real)(((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0) * scale);
    }
}

// The pattern pre-filled into gradient buffers (removed by fd_check).
static real pattern(size_t i) { return (real)(0.25 * (double)(i % 7) - 0.5); }

static void prefill(real *g, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) g[i] = pattern(i);
}

static double loss(FwdFn fwd, void *ctx, real *out, const real *dout, size_t nout) {
    double l = 0.0;
    size_t i;
    fwd(ctx, out);
    for (i = 0; i < nout; i++) l += (double)out[i] * (double)dout[i];
    return l;
}

// Compare grad (pre-filled with pattern(), then accumulated into) with central differences of
// the loss with respect to each element of param. 0 if they agree. With expect_zero, both the
// gradient and the differences must vanish (a gradient that is zero in exact arithmetic).
static int fd_check_z(const char *what, FwdFn fwd, void *ctx, size_t nout, const real *dout,
                      real *param, size_t n, const real *grad, int expect_zero) {
    real *out = (real *)malloc(nout * sizeof(real));
    double max_err = 0.0, max_g = 0.0;
    size_t i, worst = 0;
    if (!out) return EXPECT(0, "%s: out of memory", what);
    for (i = 0; i < n; i++) {
        double save = (double)param[i], lp, lm, num, ana = (double)grad[i] - (double)pattern(i);
        param[i] = (real)(save + FD_H);
        lp = loss(fwd, ctx, out, dout, nout);
        param[i] = (real)(save - FD_H);
        lm = loss(fwd, ctx, out, dout, nout);
        param[i] = (real)save;
        num = (lp - lm) / (2.0 * FD_H);
        if (fabs(num - ana) > max_err) { max_err = fabs(num - ana); worst = i; }
        if (fabs(ana) > max_g) max_g = fabs(ana);
    }
    free(out);
    if (expect_zero) { // a gradient that is zero in exact arithmetic: both sides must be ~0
        printf("  fd %s: %lu elements, zero as expected: max|grad| %.3e, max|fd - grad| %.3e\n", what, (unsigned long)n,
               max_g, max_err);
        return EXPECT(max_g <= 1e-12 && max_err <= 1e-8, "%s: should be zero: max|grad| %.3e, max|fd - grad| %.3e", what,
                      max_g, max_err);
    }
    if (max_g == 0.0) return EXPECT(0, "%s: the gradient is identically zero (a test that cannot fail)", what);
    printf("  fd %s: %lu elements, max|grad| %.3e, rel err %.3e (worst [%lu])\n", what, (unsigned long)n, max_g,
           max_err / max_g, (unsigned long)worst);
    return EXPECT(max_err <= FD_TOL * max_g, "%s: finite differences disagree: rel %.3e at [%lu]", what, max_err / max_g,
                  (unsigned long)worst);
}

static int fd_check(const char *what, FwdFn fwd, void *ctx, size_t nout, const real *dout,
                    real *param, size_t n, const real *grad) {
    return fd_check_z(what, fwd, ctx, nout, dout, param, n, grad, 0);
}

// A zeroed-then-patterned gradient buffer of n elements (static pool, tests are tiny).
static real pool[64 * FD_MAXN];
static size_t pool_used;
static real *buf(size_t n) {
    real *p = pool + pool_used;
    if (pool_used + n > sizeof pool / sizeof pool[0]) { fprintf(stderr, "test_grad_fd: pool exhausted\n"); abort(); }
    pool_used += n;
    memset(p, 0, n * sizeof(real));
    return p;
}
static real *gradbuf(size_t n) {
    real *p = buf(n);
    prefill(p, n);
    return p;
}
static real *rnd(size_t n, uint64_t seed, double scale) {
    real *p = buf(n);
    fill(p, n, seed, scale);
    return p;
}

// ---------------------------------------------------------------------------------------
// Convolutions

typedef struct {
    real *x, *k, *b, *k2, *b2, *work;
    size_t N, F, H, W, Ci, Co;
    Conv2dGeom g;
} ConvCtx;

static void fwd_conv2d(void *v, real *out) {
    ConvCtx *c = (ConvCtx *)v;
    conv2d_forward(out, c->x, c->k, c->b, c->N, c->H, c->W, c->Ci, c->Co, &c->g);
}
static void fwd_temporal(void *v, real *out) {
    ConvCtx *c = (ConvCtx *)v;
    temporal_conv_forward(out, c->x, c->k, c->b, c->N, c->F, c->H * c->W, c->Ci, c->Co);
}
static void fwd_pseudo3d(void *v, real *out) {
    ConvCtx *c = (ConvCtx *)v;
    conv_pseudo3d_forward(out, c->work, c->x, c->k, c->b, c->k2, c->b2, c->N, c->F, c->H, c->W, c->Ci, c->Co, &c->g);
}

int test_grad_fd_conv(void) {
    int f = 0;
    ConvCtx c;
    size_t Ho, Wo, no;
    real *dout, *dx, *dk, *db, *dk2, *db2, *dwork, *work_keep;
    pool_used = 0;
    // conv2d: stride 2, asymmetric padding, odd sizes
    memset(&c, 0, sizeof c);
    c.N = 2; c.H = 5; c.W = 4; c.Ci = 3; c.Co = 2;
    c.g.KH = 3; c.g.KW = 3; c.g.stride = 2; c.g.pad_top = 1; c.g.pad_bottom = 0; c.g.pad_left = 1; c.g.pad_right = 1;
    conv2d_out_size(&Ho, &Wo, c.H, c.W, &c.g);
    no = c.N * Ho * Wo * c.Co;
    c.x = rnd(c.N * c.H * c.W * c.Ci, 1, 1.0); c.k = rnd(9 * c.Ci * c.Co, 2, 0.5); c.b = rnd(c.Co, 3, 0.1);
    dout = rnd(no, 4, 1.0);
    dx = gradbuf(c.N * c.H * c.W * c.Ci); dk = gradbuf(9 * c.Ci * c.Co); db = gradbuf(c.Co);
    conv2d_backward(dx, dk, db, dout, c.x, c.k, c.N, c.H, c.W, c.Ci, c.Co, &c.g);
    f |= fd_check("conv2d d_x", fwd_conv2d, &c, no, dout, c.x, c.N * c.H * c.W * c.Ci, dx);
    f |= fd_check("conv2d d_kernel", fwd_conv2d, &c, no, dout, c.k, 9 * c.Ci * c.Co, dk);
    f |= fd_check("conv2d d_bias", fwd_conv2d, &c, no, dout, c.b, c.Co, db);

    // temporal conv: 3 frames (both edges padded), Ci != Co
    memset(&c, 0, sizeof c);
    c.N = 2; c.F = 3; c.H = 1; c.W = 2; c.Ci = 2; c.Co = 3;
    no = c.N * c.F * c.H * c.W * c.Co;
    c.x = rnd(c.N * c.F * 2 * c.Ci, 5, 1.0); c.k = rnd(3 * c.Ci * c.Co, 6, 0.5); c.b = rnd(c.Co, 7, 0.1);
    dout = rnd(no, 8, 1.0);
    dx = gradbuf(c.N * c.F * 2 * c.Ci); dk = gradbuf(3 * c.Ci * c.Co); db = gradbuf(c.Co);
    temporal_conv_backward(dx, dk, db, dout, c.x, c.k, c.N, c.F, 2, c.Ci, c.Co);
    f |= fd_check("temporal_conv d_x", fwd_temporal, &c, no, dout, c.x, c.N * c.F * 2 * c.Ci, dx);
    f |= fd_check("temporal_conv d_kernel", fwd_temporal, &c, no, dout, c.k, 3 * c.Ci * c.Co, dk);
    f |= fd_check("temporal_conv d_bias", fwd_temporal, &c, no, dout, c.b, c.Co, db);

    // ConvPseudo3D: 3x3 pad 1, 2 frames
    memset(&c, 0, sizeof c);
    c.N = 1; c.F = 2; c.H = 3; c.W = 3; c.Ci = 2; c.Co = 3;
    c.g.KH = 3; c.g.KW = 3; c.g.stride = 1; c.g.pad_top = c.g.pad_bottom = c.g.pad_left = c.g.pad_right = 1;
    no = c.N * c.F * 9 * c.Co;
    c.x = rnd(c.N * c.F * 9 * c.Ci, 9, 1.0); c.k = rnd(9 * c.Ci * c.Co, 10, 0.5); c.b = rnd(c.Co, 11, 0.1);
    c.k2 = rnd(3 * c.Co * c.Co, 12, 0.5); c.b2 = rnd(c.Co, 13, 0.1); c.work = buf(no);
    dout = rnd(no, 14, 1.0);
    work_keep = buf(no); dwork = buf(no);
    dx = gradbuf(c.N * c.F * 9 * c.Ci); dk = gradbuf(9 * c.Ci * c.Co); db = gradbuf(c.Co);
    dk2 = gradbuf(3 * c.Co * c.Co); db2 = gradbuf(c.Co);
    fwd_pseudo3d(&c, work_keep); // out (unused) ...
    memcpy(work_keep, c.work, no * sizeof(real)); // ... and the cache: the spatial output
    f |= EXPECT(conv_pseudo3d_backward(dx, dk, db, dk2, db2, dwork, dout, c.x, work_keep, c.k, c.k2, c.N, c.F, c.H, c.W,
                                       c.Ci, c.Co, &c.g) == MV_OK, "conv_pseudo3d_backward failed");
    f |= fd_check("conv_pseudo3d d_x", fwd_pseudo3d, &c, no, dout, c.x, c.N * c.F * 9 * c.Ci, dx);
    f |= fd_check("conv_pseudo3d d_spatial_kernel", fwd_pseudo3d, &c, no, dout, c.k, 9 * c.Ci * c.Co, dk);
    f |= fd_check("conv_pseudo3d d_spatial_bias", fwd_pseudo3d, &c, no, dout, c.b, c.Co, db);
    f |= fd_check("conv_pseudo3d d_temporal_kernel", fwd_pseudo3d, &c, no, dout, c.k2, 3 * c.Co * c.Co, dk2);
    f |= fd_check("conv_pseudo3d d_temporal_bias", fwd_pseudo3d, &c, no, dout, c.b2, c.Co, db2);
    return f;
}

// ---------------------------------------------------------------------------------------
// GroupNorm and LayerNorm

typedef struct {
    real *x, *scale, *bias;
    size_t N, S, C, G;
} NormCtx;

static void fwd_groupnorm(void *v, real *out) {
    NormCtx *c = (NormCtx *)v;
    groupnorm_forward(out, NULL, NULL, c->x, c->scale, c->bias, c->N, c->S, c->C, c->G, 1e-5);
}
static void fwd_layernorm(void *v, real *out) {
    NormCtx *c = (NormCtx *)v;
    layernorm_forward(out, NULL, NULL, c->x, c->scale, c->bias, c->N, c->C, 1e-5);
}

int test_grad_fd_norms(void) {
    int f = 0;
    NormCtx c;
    size_t n;
    real *dout, *dx, *ds, *db, *mean, *rstd, *out;
    pool_used = 0;
    c.N = 2; c.S = 3; c.C = 6; c.G = 2; n = c.N * c.S * c.C;
    c.x = rnd(n, 21, 1.5); c.scale = rnd(c.C, 22, 1.0); c.bias = rnd(c.C, 23, 0.5);
    dout = rnd(n, 24, 1.0); out = buf(n); mean = buf(c.N * c.G); rstd = buf(c.N * c.G);
    dx = gradbuf(n); ds = gradbuf(c.C); db = gradbuf(c.C);
    groupnorm_forward(out, mean, rstd, c.x, c.scale, c.bias, c.N, c.S, c.C, c.G, 1e-5);
    groupnorm_backward(dx, ds, db, dout, c.x, c.scale, mean, rstd, c.N, c.S, c.C, c.G);
    f |= fd_check("groupnorm d_x", fwd_groupnorm, &c, n, dout, c.x, n, dx);
    f |= fd_check("groupnorm d_scale", fwd_groupnorm, &c, n, dout, c.scale, c.C, ds);
    f |= fd_check("groupnorm d_bias", fwd_groupnorm, &c, n, dout, c.bias, c.C, db);

    c.N = 3; c.S = 1; c.C = 5; c.G = 1; n = c.N * c.C;
    c.x = rnd(n, 25, 1.5); c.scale = rnd(c.C, 26, 1.0); c.bias = rnd(c.C, 27, 0.5);
    dout = rnd(n, 28, 1.0); out = buf(n); mean = buf(c.N); rstd = buf(c.N);
    dx = gradbuf(n); ds = gradbuf(c.C); db = gradbuf(c.C);
    layernorm_forward(out, mean, rstd, c.x, c.scale, c.bias, c.N, c.C, 1e-5);
    layernorm_backward(dx, ds, db, dout, c.x, c.scale, mean, rstd, c.N, c.C);
    f |= fd_check("layernorm d_x", fwd_layernorm, &c, n, dout, c.x, n, dx);
    f |= fd_check("layernorm d_scale", fwd_layernorm, &c, n, dout, c.scale, c.C, ds);
    f |= fd_check("layernorm d_bias", fwd_layernorm, &c, n, dout, c.bias, c.C, db);
    return f;
}

// ---------------------------------------------------------------------------------------
// Dense, activations, GEGLU

typedef struct {
    real *x, *k, *b;
    size_t N, I, O;
    GeluKind kind;
    int act; // 0 silu, 1 gelu
} DenseCtx;

static void fwd_dense(void *v, real *out) {
    DenseCtx *c = (DenseCtx *)v;
    linear_forward(out, c->x, c->k, c->b, c->N, c->I, c->O);
}
static void fwd_act(void *v, real *out) {
    DenseCtx *c = (DenseCtx *)v;
    if (c->act == 0) silu_forward(out, c->x, c->N);
    else gelu_forward(out, c->x, c->N, c->kind);
}
static void fwd_geglu(void *v, real *out) {
    DenseCtx *c = (DenseCtx *)v;
    geglu_forward(out, c->x, c->k, c->b, c->N, c->I, c->O, c->kind);
}

int test_grad_fd_dense_act(void) {
    int f = 0, a;
    DenseCtx c;
    real *dout, *dx, *dk, *db;
    char what[64];
    pool_used = 0;
    memset(&c, 0, sizeof c);
    c.N = 3; c.I = 4; c.O = 5;
    c.x = rnd(12, 31, 1.0); c.k = rnd(20, 32, 0.7); c.b = rnd(5, 33, 0.1);
    dout = rnd(15, 34, 1.0); dx = gradbuf(12); dk = gradbuf(20); db = gradbuf(5);
    linear_backward(dx, dk, db, dout, c.x, c.k, c.N, c.I, c.O);
    f |= fd_check("dense d_x", fwd_dense, &c, 15, dout, c.x, 12, dx);
    f |= fd_check("dense d_kernel", fwd_dense, &c, 15, dout, c.k, 20, dk);
    f |= fd_check("dense d_bias", fwd_dense, &c, 15, dout, c.b, 5, db);

    for (a = 0; a < 3; a++) { // silu, gelu tanh, gelu erf over [-6, 6)
        memset(&c, 0, sizeof c);
        c.N = 24; c.act = a > 0; c.kind = a == 2 ? GELU_ERF : GELU_TANH;
        c.x = rnd(24, 40 + (uint64_t)a, 6.0); dout = rnd(24, 50 + (uint64_t)a, 1.0); dx = gradbuf(24);
        if (a == 0) silu_backward(dx, dout, c.x, 24);
        else gelu_backward(dx, dout, c.x, 24, c.kind);
        snprintf(what, sizeof what, "%s d_x", a == 0 ? "silu" : a == 1 ? "gelu_tanh" : "gelu_erf");
        f |= fd_check(what, fwd_act, &c, 24, dout, c.x, 24, dx);
    }

    for (a = 0; a < 2; a++) { // GEGLU with both GELUs: N=2, C=3, H=4
        memset(&c, 0, sizeof c);
        c.N = 2; c.I = 3; c.O = 4; c.kind = a ? GELU_ERF : GELU_TANH;
        c.x = rnd(6, 60 + (uint64_t)a, 1.0); c.k = rnd(24, 62 + (uint64_t)a, 1.0); c.b = rnd(8, 64 + (uint64_t)a, 0.3);
        dout = rnd(8, 66 + (uint64_t)a, 1.0); dx = gradbuf(6); dk = gradbuf(24); db = gradbuf(8);
        f |= EXPECT(geglu_backward(dx, dk, db, dout, c.x, c.k, c.b, c.N, c.I, c.O, c.kind) == MV_OK, "geglu_backward");
        snprintf(what, sizeof what, "geglu(%s) d_x", a ? "erf" : "tanh");
        f |= fd_check(what, fwd_geglu, &c, 8, dout, c.x, 6, dx);
        snprintf(what, sizeof what, "geglu(%s) d_kernel", a ? "erf" : "tanh");
        f |= fd_check(what, fwd_geglu, &c, 8, dout, c.k, 24, dk);
        snprintf(what, sizeof what, "geglu(%s) d_bias", a ? "erf" : "tanh");
        f |= fd_check(what, fwd_geglu, &c, 8, dout, c.b, 8, db);
    }
    return f;
}

// ---------------------------------------------------------------------------------------
// Attention

typedef struct {
    int use; // 0 self, 1 cross, 2 temporal
    real *x, *ctx;
    real *wq, *wk, *wv, *wo, *bo, *bq, *bk, *bv;
    AttnWeights w;
    size_t B, F, T, Tk, S;
} AttnCtx;

static void attn_sync(AttnCtx *c) {
    c->w.wq = c->wq; c->w.wk = c->wk; c->w.wv = c->wv; c->w.wo = c->wo; c->w.bo = c->bo;
    c->w.bq = c->bq; c->w.bk = c->bk; c->w.bv = c->bv;
}

static void fwd_attn(void *v, real *out) {
    AttnCtx *c = (AttnCtx *)v;
    if (c->use == 0) attention_self_forward(out, c->x, &c->w, c->B, c->T);
    else if (c->use == 1) attention_cross_forward(out, c->x, c->ctx, &c->w, c->B, c->F, c->T, c->Tk);
    else attention_temporal_forward(out, c->x, &c->w, c->B, c->F, c->S);
}

// One attention configuration: fills weights, runs the backward, checks every gradient.
static int attn_case(const char *name, int use, size_t B, size_t F, size_t T, size_t Tk, size_t S, size_t Cq, size_t Ckv,
                     size_t heads, size_t dh, int biases, int causal, uint64_t seed) {
    AttnCtx c;
    AttnGrads g;
    size_t D = heads * dh, nx, nc = 0, i;
    real *dout, *dx, *dctx = NULL;
    real **params[8];
    real *grads[8];
    size_t sizes[8];
    static const char *const pn[8] = {"d_wq", "d_wk", "d_wv", "d_wo", "d_bo", "d_bq", "d_bk", "d_bv"};
    int f = 0;
    char what[96];
    memset(&c, 0, sizeof c);
    c.use = use; c.B = B; c.F = F; c.T = T; c.Tk = Tk; c.S = S;
    nx = use == 0 ? B * T * Cq : use == 1 ? B * F * T * Cq : B * F * S * Cq;
    c.x = rnd(nx, seed, 1.0);
    if (use == 1) { nc = B * Tk * Ckv; c.ctx = rnd(nc, seed + 1, 1.0); }
    c.wq = rnd(Cq * D, seed + 2, 1.2); c.wk = rnd(Ckv * D, seed + 3, 1.2); c.wv = rnd(Ckv * D, seed + 4, 1.0);
    c.wo = rnd(D * Cq, seed + 5, 1.0); c.bo = rnd(Cq, seed + 6, 0.2);
    if (biases) { c.bq = rnd(D, seed + 7, 0.3); c.bk = rnd(D, seed + 8, 0.3); c.bv = rnd(D, seed + 9, 0.3); }
    c.w.Cq = Cq; c.w.Ckv = Ckv; c.w.heads = heads; c.w.dim_head = dh; c.w.causal = causal;
    attn_sync(&c);
    dout = rnd(nx, seed + 10, 1.0);
    dx = gradbuf(nx);
    if (use == 1) dctx = gradbuf(nc);
    params[0] = &c.wq; params[1] = &c.wk; params[2] = &c.wv; params[3] = &c.wo; params[4] = &c.bo;
    params[5] = &c.bq; params[6] = &c.bk; params[7] = &c.bv;
    sizes[0] = Cq * D; sizes[1] = Ckv * D; sizes[2] = Ckv * D; sizes[3] = D * Cq; sizes[4] = Cq;
    sizes[5] = sizes[6] = sizes[7] = D;
    for (i = 0; i < 8; i++) grads[i] = (i < 5 || biases) ? gradbuf(sizes[i]) : NULL;
    g.dwq = grads[0]; g.dwk = grads[1]; g.dwv = grads[2]; g.dwo = grads[3]; g.dbo = grads[4];
    g.dbq = grads[5]; g.dbk = grads[6]; g.dbv = grads[7];
    if (use == 0) f |= EXPECT(attention_self_backward(dx, &g, dout, c.x, &c.w, B, T) == MV_OK, "%s: %s", name, mv_error());
    else if (use == 1)
        f |= EXPECT(attention_cross_backward(dx, dctx, &g, dout, c.x, c.ctx, &c.w, B, F, T, Tk) == MV_OK, "%s: %s", name,
                    mv_error());
    else f |= EXPECT(attention_temporal_backward(dx, &g, dout, c.x, &c.w, B, F, S) == MV_OK, "%s: %s", name, mv_error());
    snprintf(what, sizeof what, "%s d_x", name);
    f |= fd_check(what, fwd_attn, &c, nx, dout, c.x, nx, dx);
    if (use == 1) {
        snprintf(what, sizeof what, "%s d_context", name);
        f |= fd_check(what, fwd_attn, &c, nx, dout, c.ctx, nc, dctx);
    }
    for (i = 0; i < 8; i++) {
        if (!grads[i]) continue;
        snprintf(what, sizeof what, "%s %s", name, pn[i]);
        // the key bias adds q_i . bk to every score of row i: softmax ignores it, so d_bk = 0
        f |= fd_check_z(what, fwd_attn, &c, nx, dout, *params[i], sizes[i], grads[i], i == 6);
    }
    return f;
}

int test_grad_fd_attention(void) {
    int f = 0;
    pool_used = 0;
    f |= attn_case("attention_self", 0, 2, 1, 3, 3, 0, 4, 4, 2, 2, 0, 0, 100);
    f |= attn_case("attention_self(66 tokens)", 0, 1, 1, 66, 66, 0, 2, 2, 1, 2, 0, 0, 120); // two query blocks
    f |= attn_case("attention_self(biases, causal)", 0, 2, 1, 4, 4, 0, 4, 4, 2, 2, 1, 1, 140);
    f |= attn_case("attention_cross", 1, 2, 2, 3, 2, 0, 4, 3, 2, 3, 0, 0, 160);
    f |= attn_case("attention_temporal", 2, 1, 3, 0, 0, 2, 4, 4, 2, 2, 0, 0, 180);
    return f;
}

// ---------------------------------------------------------------------------------------
// Nearest resize and the timestep MLP

typedef struct {
    real *x, *w1, *b1, *w2, *b2;
    size_t N, H, W, Ho, Wo, C, Cs, Ct;
} MiscCtx;

static void fwd_resize(void *v, real *out) {
    MiscCtx *c = (MiscCtx *)v;
    resize_nearest_forward(out, c->x, c->N, c->H, c->W, c->Ho, c->Wo, c->C);
}
static void fwd_temb(void *v, real *out) {
    MiscCtx *c = (MiscCtx *)v;
    timestep_embedding_forward(out, c->x, c->w1, c->b1, c->w2, c->b2, c->N, c->Cs, c->Ct);
}

int test_grad_fd_upsample_temb(void) {
    int f = 0;
    MiscCtx c;
    size_t nx, no;
    real *dout, *dx, *dw1, *db1, *dw2, *db2;
    pool_used = 0;
    memset(&c, 0, sizeof c);
    c.N = 2; c.H = 2; c.W = 3; c.C = 2; c.Ho = 4; c.Wo = 6; nx = 24; no = 96;
    c.x = rnd(nx, 200, 1.0); dout = rnd(no, 201, 1.0); dx = gradbuf(nx);
    upsample_nearest2x_backward(dx, dout, c.N, c.H, c.W, c.C);
    f |= fd_check("upsample_nearest2x d_x", fwd_resize, &c, no, dout, c.x, nx, dx);
    c.N = 1; c.H = 3; c.W = 5; c.C = 2; c.Ho = 7; c.Wo = 3; nx = 30; no = 42;
    c.x = rnd(nx, 202, 1.0); dout = rnd(no, 203, 1.0); dx = gradbuf(nx);
    resize_nearest_backward(dx, dout, c.N, c.H, c.W, c.Ho, c.Wo, c.C);
    f |= fd_check("resize_nearest(3x5 -> 7x3) d_x", fwd_resize, &c, no, dout, c.x, nx, dx);

    memset(&c, 0, sizeof c);
    c.N = 2; c.Cs = 4; c.Ct = 5; nx = 8; no = 10;
    c.x = rnd(nx, 210, 1.0); c.w1 = rnd(20, 211, 1.0); c.b1 = rnd(5, 212, 0.3); c.w2 = rnd(25, 213, 0.8);
    c.b2 = rnd(5, 214, 0.3);
    dout = rnd(no, 215, 1.0);
    dx = gradbuf(nx); dw1 = gradbuf(20); db1 = gradbuf(5); dw2 = gradbuf(25); db2 = gradbuf(5);
    f |= EXPECT(timestep_embedding_backward(dx, dw1, db1, dw2, db2, dout, c.x, c.w1, c.b1, c.w2, c.N, c.Cs, c.Ct) == MV_OK,
                "timestep_embedding_backward");
    f |= fd_check("timestep_embedding d_sinusoid", fwd_temb, &c, no, dout, c.x, nx, dx);
    f |= fd_check("timestep_embedding d_linear_1.kernel", fwd_temb, &c, no, dout, c.w1, 20, dw1);
    f |= fd_check("timestep_embedding d_linear_1.bias", fwd_temb, &c, no, dout, c.b1, 5, db1);
    f |= fd_check("timestep_embedding d_linear_2.kernel", fwd_temb, &c, no, dout, c.w2, 25, dw2);
    f |= fd_check("timestep_embedding d_linear_2.bias", fwd_temb, &c, no, dout, c.b2, 5, db2);
    return f;
}

#else // float32: the finite differences would carry ~3 digits; these are registered only in float64

static int skipped(const char *what) {
    printf("  skipped %s (finite-difference tests run in the float64 build)\n", what);
    return 0;
}
int test_grad_fd_conv(void) { return skipped(__func__); }
int test_grad_fd_norms(void) { return skipped(__func__); }
int test_grad_fd_dense_act(void) { return skipped(__func__); }
int test_grad_fd_attention(void) { return skipped(__func__); }
int test_grad_fd_upsample_temb(void) { return skipped(__func__); }

#endif
