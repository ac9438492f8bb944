// test_fastpath.c: the matrix-product fast paths of conv2d, the temporal conv, Dense and
// attention against their plain loops (the readable path), and bit-identical results for any
// thread count.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/attention.h"
#include "../ref/conv.h"
#include "../ref/engine.h"
#include "../ref/expf_poly.h"
#include "../ref/linear.h"
#include "../ref/procedural.h"
#include "../ref/threads.h"
#include "../ref/gemm.h"
#include "../ref/groupnorm.h"
#include "../ref/layernorm.h"
#include "../ref/upsample.h"

static real *rnd(size_t n, const char *name) {
    real *p = (real *)malloc((n ? n : 1) * sizeof(real));
    if (p) proc_fill(p, n, 42, name, 1.0, 0.0);
    return p;
}

// Netlib-style check: |fast - ref| <= 2 (K+1) eps sum|a||b| (+ a tiny absolute floor), where
// `mag` holds sum|a||b| per element (the same operator run on absolute values).
static int within(const char *what, const real *fast, const real *ref, const real *mag, size_t n, size_t K) {
    size_t i;
    for (i = 0; i < n; i++) {
        double bound = 2.0 * (double)(K + 1) * REAL_EPS * fabs((double)mag[i]) + 1e-30;
        double r = fabs((double)fast[i] - (double)ref[i]) / bound;
        if (!(r <= 1.0)) {
            harness_failf(what, "element %lu: fast %.17g ref %.17g exceeds 2(K+1)eps sum|a||b| (K=%lu)", (unsigned long)i,
                          (double)fast[i], (double)ref[i], (unsigned long)K);
            return 1;
        }
    }
    return 0;
}

static void absv(real *dst, const real *src, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) dst[i] = (real)fabs((double)src[i]);
}

static int fastpath_conv(void) {
    static const Conv2dGeom geoms[4] = {{3, 3, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0, 0}, {3, 3, 2, 1, 1, 1, 1}, {3, 3, 2, 0, 1, 0, 1}};
    size_t N = 2, H = 9, W = 7, Ci = 37, Co = 53, g;
    int fails = 0;
    for (g = 0; g < 4; g++) {
        size_t Ho, Wo, nin = N * H * W * Ci, nk, nout;
        real *in, *k, *b, *fast, *ref, *ain, *ak, *mag;
        conv2d_out_size(&Ho, &Wo, H, W, &geoms[g]);
        nk = geoms[g].KH * geoms[g].KW * Ci * Co;
        nout = N * Ho * Wo * Co;
        in = rnd(nin, "in"); k = rnd(nk, "k"); b = rnd(Co, "b");
        fast = rnd(nout, "f"); ref = rnd(nout, "r"); mag = rnd(nout, "m");
        ain = rnd(nin, "ai"); ak = rnd(nk, "ak");
        if (!in || !k || !b || !fast || !ref || !mag || !ain || !ak) return 1;
        absv(ain, in, nin); absv(ak, k, nk);
        conv2d_forward(fast, in, k, b, N, H, W, Ci, Co, &geoms[g]);
        conv2d_forward_ref(ref, in, k, b, N, H, W, Ci, Co, &geoms[g]);
        conv2d_forward_ref(mag, ain, ak, NULL, N, H, W, Ci, Co, &geoms[g]);
        { size_t i; for (i = 0; i < nout; i++) mag[i] += (real)fabs((double)b[i % Co]); }
        fails += within("conv2d fast vs ref", fast, ref, mag, nout, geoms[g].KH * geoms[g].KW * Ci + 1);
        free(in); free(k); free(b); free(fast); free(ref); free(mag); free(ain); free(ak);
    }
    {   // temporal conv
        size_t B = 2, F = 5, S = 11, n = B * F * S;
        real *in = rnd(n * Ci, "in"), *k = rnd(3 * Ci * Co, "k"), *b = rnd(Co, "b"), *fast = rnd(n * Co, "f"),
             *ref = rnd(n * Co, "r"), *mag = rnd(n * Co, "m"), *ain = rnd(n * Ci, "ai"), *ak = rnd(3 * Ci * Co, "ak");
        size_t i;
        if (!in || !k || !b || !fast || !ref || !mag || !ain || !ak) return 1;
        absv(ain, in, n * Ci); absv(ak, k, 3 * Ci * Co);
        temporal_conv_forward(fast, in, k, b, B, F, S, Ci, Co);
        temporal_conv_forward_ref(ref, in, k, b, B, F, S, Ci, Co);
        temporal_conv_forward_ref(mag, ain, ak, NULL, B, F, S, Ci, Co);
        for (i = 0; i < n * Co; i++) mag[i] += (real)fabs((double)b[i % Co]);
        fails += within("temporal conv fast vs ref", fast, ref, mag, n * Co, 3 * Ci + 1);
        free(in); free(k); free(b); free(fast); free(ref); free(mag); free(ain); free(ak);
    }
    return fails;
}

static int fastpath_linear(void) {
    size_t N = 67, I = 300, O = 77, i;
    real *x = rnd(N * I, "x"), *k = rnd(I * O, "k"), *b = rnd(O, "b"), *fast = rnd(N * O, "f"), *ref = rnd(N * O, "r"),
         *mag = rnd(N * O, "m"), *ax = rnd(N * I, "ax"), *ak = rnd(I * O, "ak");
    int fails;
    if (!x || !k || !b || !fast || !ref || !mag || !ax || !ak) return 1;
    absv(ax, x, N * I); absv(ak, k, I * O);
    linear_forward(fast, x, k, b, N, I, O);
    linear_forward_ref(ref, x, k, b, N, I, O);
    linear_forward_ref(mag, ax, ak, NULL, N, I, O);
    for (i = 0; i < N * O; i++) mag[i] += (real)fabs((double)b[i % O]);
    fails = within("linear fast vs ref", fast, ref, mag, N * O, I + 1);
    free(x); free(k); free(b); free(fast); free(ref); free(mag); free(ax); free(ak);
    return fails;
}

// Attention as a whole: the entry point's fast path vs the plain attention_forward_ref agree to
// a few hundred eps of the output's scale (softmax, two products of up to 300 terms); with the
// switch on (engine.h), the entry point gives the plain path's bits.
static int fastpath_attention(void) {
    size_t N = 3, T = 131, C = 64, heads = 4, n = N * T * C, i;
    AttnWeights w;
    real *x = rnd(n, "x"), *wq = rnd(C * C, "wq"), *wk = rnd(C * C, "wk"), *wv = rnd(C * C, "wv"), *wo = rnd(C * C, "wo"),
         *bo = rnd(C, "bo"), *fast = rnd(n, "f"), *ref = rnd(n, "r");
    double m = 0, d = 0;
    int fails = 0;
    if (!x || !wq || !wk || !wv || !wo || !bo || !fast || !ref) return 1;
    for (i = 0; i < C * C; i++) { wq[i] *= (real)0.125; wk[i] *= (real)0.125; wv[i] *= (real)0.125; wo[i] *= (real)0.125; }
    memset(&w, 0, sizeof w);
    w.wq = wq; w.wk = wk; w.wv = wv; w.wo = wo; w.bo = bo; w.Cq = w.Ckv = C; w.heads = heads; w.dim_head = C / heads;
    {
        AttnView v = {0, 0, 1, 0, 1};
        v.nseq = N; v.T = v.Tk = T;
        engine_set_reference(0);
        fails += attention_self_forward(fast, x, &w, N, T) != MV_OK;
        fails += attention_forward_ref(ref, x, NULL, &w, &v) != MV_OK;
        engine_set_reference(1);
        fails += attention_self_forward(x, x, &w, N, T) != MV_OK; // in place, through the door
        engine_set_reference(0);
        fails += EXPECT(memcmp(x, ref, n * sizeof(real)) == 0, "attention entry point with the switch on: not the plain path's bits");
    }
    for (i = 0; i < n; i++) {
        if (fabs((double)ref[i]) > m) m = fabs((double)ref[i]);
        if (fabs((double)fast[i] - (double)ref[i]) > d) d = fabs((double)fast[i] - (double)ref[i]);
    }
    fails += EXPECT(d <= 512 * REAL_EPS * m, "attention fast vs ref: max|d| %.3e, scale %.3e", d, m);
    free(x); free(wq); free(wk); free(wv); free(wo); free(bo); free(fast); free(ref);
    return fails;
}

// Every operator with a fast path gives the same bits for 1, 2, 3 and 4 threads.
static int fastpath_threads(void) {
    static const Conv2dGeom g3 = {3, 3, 1, 1, 1, 1, 1};
    size_t N = 2, H = 24, W = 20, Ci = 64, Co = 96, nin = N * H * W * Ci, nout = N * H * W * Co;
    real *in = rnd(nin, "in"), *k = rnd(9 * Ci * Co, "k"), *b = rnd(Co, "b"), *out1 = rnd(nout, "o1"), *outn = rnd(nout, "on");
    int fails = 0, saved = threads_count(), t;
    if (!in || !k || !b || !out1 || !outn) return 1;
    threads_set(1);
    conv2d_forward(out1, in, k, b, N, H, W, Ci, Co, &g3);
    for (t = 2; t <= 4; t++) {
        threads_set(t);
        conv2d_forward(outn, in, k, b, N, H, W, Ci, Co, &g3);
        fails += EXPECT(memcmp(out1, outn, nout * sizeof(real)) == 0, "conv2d differs between 1 and %d threads", t);
    }
    threads_set(1);
    linear_forward(out1, in, k, b, N * H * W / 4, 4 * Ci, Co);
    for (t = 2; t <= 4; t++) {
        threads_set(t);
        linear_forward(outn, in, k, b, N * H * W / 4, 4 * Ci, Co);
        fails += EXPECT(memcmp(out1, outn, (N * H * W / 4) * Co * sizeof(real)) == 0, "linear differs between 1 and %d threads", t);
    }
    {   // the temporal conv (a product per clip and tap), GroupNorm, LayerNorm (parallel rows)
        size_t B = 2, F = 5, S = N * H * W / 10, n = B * F * S * Ci; // n = nin
        real *o1 = rnd(3 * n, "o1"), *on = rnd(3 * n, "on");
        if (!o1 || !on) return fails + 1;
        threads_set(1);
        temporal_conv_forward(o1, in, k, b, B, F, S, Ci, Ci);
        groupnorm_forward(o1 + n, NULL, NULL, in, k, b, B, F * S, Ci, 32, 1e-5);
        layernorm_forward(o1 + 2 * n, NULL, NULL, in, k, b, B * F * S, Ci, 1e-5);
        for (t = 2; t <= 4; t++) {
            threads_set(t);
            temporal_conv_forward(on, in, k, b, B, F, S, Ci, Ci);
            groupnorm_forward(on + n, NULL, NULL, in, k, b, B, F * S, Ci, 32, 1e-5);
            layernorm_forward(on + 2 * n, NULL, NULL, in, k, b, B * F * S, Ci, 1e-5);
            fails += EXPECT(memcmp(o1, on, 3 * n * sizeof(real)) == 0, "temporal conv / norms differ between 1 and %d threads", t);
        }
        free(o1); free(on);
    }
    threads_set(saved);
    free(in); free(k); free(b); free(out1); free(outn);
    return fails;
}

// The forward fast paths give exactly the bits of the products they stand for, for 1..3
// threads: conv2d (patches read from the image) = gemm() on the patch matrix built
// explicitly; the temporal conv (a product per clip and tap) = gemm() per clip, frame and
// tap; GroupNorm and LayerNorm (parallel) = their plain loops; the upsampler copies.
static int fastpath_forward_bits(void) {
    static const Conv2dGeom geoms[5] = {{3, 3, 1, 1, 1, 1, 1}, {3, 3, 2, 1, 1, 1, 1}, {3, 3, 2, 0, 1, 0, 1}, {2, 3, 1, 0, 2, 2, 0},
                                        {3, 3, 1, 0, 0, 0, 0}};
    static const size_t cis[5] = {37, 9, 300, 4, 16};
    size_t N = 2, H = 9, W = 7, Co = 53, g, i;
    int fails = 0, saved = threads_count(), t;
    for (g = 0; g < 5; g++) {
        const Conv2dGeom *gg = &geoms[g];
        size_t Ci = cis[g], Ho, Wo, K = gg->KH * gg->KW * Ci, P, p, kh, kw;
        real *in, *k, *b, *patch, *want, *got;
        conv2d_out_size(&Ho, &Wo, H, W, gg);
        P = N * Ho * Wo;
        in = rnd(N * H * W * Ci, "in"); k = rnd(K * Co, "k"); b = rnd(Co, "b");
        patch = rnd(P * K, "p"); want = rnd(P * Co, "w"); got = rnd(P * Co, "g");
        if (!in || !k || !b || !patch || !want || !got) return fails + 1;
        for (p = 0; p < P; p++) // the patch matrix, written out
            for (kh = 0; kh < gg->KH; kh++)
                for (kw = 0; kw < gg->KW; kw++) {
                    size_t j = p % Wo, ii = p / Wo % Ho, n = p / (Wo * Ho), hi = ii * gg->stride + kh, wi = j * gg->stride + kw;
                    real *dst = patch + p * K + (kh * gg->KW + kw) * Ci; // (Ci)
                    int pad = hi < gg->pad_top || hi - gg->pad_top >= H || wi < gg->pad_left || wi - gg->pad_left >= W;
                    for (i = 0; i < Ci; i++)
                        dst[i] = pad ? 0 : in[((n * H + hi - gg->pad_top) * W + wi - gg->pad_left) * Ci + i];
                }
        for (p = 0; p < P; p++) memcpy(want + p * Co, b, Co * sizeof(real));
        fails += gemm(want, patch, k, P, Co, K, Co, K, Co, GEMM_ACC) != MV_OK;
        for (t = 1; t <= 3; t++) {
            threads_set(t);
            conv2d_forward(got, in, k, b, N, H, W, Ci, Co, gg);
            fails += EXPECT(memcmp(got, want, P * Co * sizeof(real)) == 0, "conv2d geometry %lu, %d threads: not the bits of gemm() on the patches",
                            (unsigned long)g, t);
        }
        free(in); free(k); free(b); free(patch); free(want); free(got);
    }
    {   // temporal conv, F = 1 (centre tap only), 2, 5
        size_t B = 2, S = 13, Ci = 300, F;
        for (F = 1; F <= 5; F += F < 2 ? 1 : 3) {
            size_t n = B * F * S, f, kk;
            real *in = rnd(n * Ci, "in"), *k = rnd(3 * Ci * Co, "k"), *b = rnd(Co, "b"), *want = rnd(n * Co, "w"), *got = rnd(n * Co, "g");
            if (!in || !k || !b || !want || !got) return fails + 1;
            for (i = 0; i < n; i++) memcpy(want + i * Co, b, Co * sizeof(real));
            for (i = 0; i < B * F; i++) // frame by frame, taps in order: the plain product
                for (kk = 0; kk < 3; kk++) {
                    f = i % F;
                    if (f + kk < 1 || f + kk - 1 >= F) continue;
                    fails += gemm(want + i * S * Co, in + (i + kk - 1) * S * Ci, k + kk * Ci * Co, S, Co, Ci, Co, Ci, Co, GEMM_ACC) != MV_OK;
                }
            for (t = 1; t <= 3; t++) {
                threads_set(t);
                temporal_conv_forward(got, in, k, b, B, F, S, Ci, Co);
                fails += EXPECT(memcmp(got, want, n * Co * sizeof(real)) == 0, "temporal conv F=%lu, %d threads: not the bits of gemm() per frame",
                                (unsigned long)F, t);
            }
            free(in); free(k); free(b); free(want); free(got);
        }
    }
    {   // GroupNorm (G = 32 and 4 groups, in place too), LayerNorm, the 2x upsampler
        size_t Nn = 3, S = 70, C = 96, n = Nn * S * C, Gs[2] = {32, 4}, gi, c;
        real *x = rnd(n, "x"), *sc = rnd(C, "s"), *bi = rnd(C, "b"), *want = rnd(n, "w"), *got = rnd(n, "g"), *up = rnd(4 * n, "u");
        real st[4 * 3 * 70]; // statistics: (want, got) x (mean, rstd) of up to Nn*S rows
        if (!x || !sc || !bi || !want || !got || !up) return fails + 1;
        for (i = 0; i < n; i++) x[i] = x[i] * (real)3 + (real)(i % C) * (real)0.25; // groups of different means
        for (gi = 0; gi < 2; gi++) {
            size_t G = Gs[gi];
            groupnorm_forward_ref(want, st, st + Nn * G, x, sc, bi, Nn, S, C, G, 1e-5);
            for (t = 1; t <= 3; t++) {
                threads_set(t);
                memcpy(got, x, n * sizeof(real));
                groupnorm_forward(got, st + 2 * Nn * G, st + 3 * Nn * G, got, sc, bi, Nn, S, C, G, 1e-5); // in place
                fails += EXPECT(memcmp(got, want, n * sizeof(real)) == 0 && memcmp(st, st + 2 * Nn * G, 2 * Nn * G * sizeof(real)) == 0,
                                "groupnorm G=%lu, %d threads: not the bits of the plain loop", (unsigned long)G, t);
            }
        }
        layernorm_forward_ref(want, st, st + Nn * S, x, sc, bi, Nn * S, C, 1e-5);
        for (t = 1; t <= 3; t++) {
            threads_set(t);
            layernorm_forward(got, st + 2 * Nn * S, NULL, x, sc, bi, Nn * S, C, 1e-5);
            fails += EXPECT(memcmp(got, want, n * sizeof(real)) == 0 && memcmp(st, st + 2 * Nn * S, Nn * S * sizeof(real)) == 0,
                            "layernorm, %d threads: not the bits of the plain loop", t);
            upsample_nearest2x_forward(up, x, Nn, 7, 10, C); // (Nn,14,20,C) from (Nn,7,10,C)
            for (i = 0; i < 4 * n; i += C) {
                size_t j = i / C % 20, ii = i / C / 20 % 14, nn = i / C / 280;
                for (c = 0; c < C && fails < 100; c++)
                    fails += EXPECT(up[i + c] == x[((nn * 7 + ii / 2) * 10 + j / 2) * C + c], "upsample, %d threads: wrong copy", t);
            }
        }
        free(x); free(sc); free(bi); free(want); free(got); free(up);
    }
    threads_set(saved);
    return fails;
}

// The whole UNet (a small procedural configuration) gives the same bits for 1, 2 and 4 threads.
#include "../ref/unet.h"
int test_unet_threads(void) {
    static const char *cfg_json =
        "{\"in_channels\":9,\"out_channels\":4,\"block_out_channels\":[32,64],\"layers_per_block\":1,"
        "\"attention_head_dim\":4,\"cross_attention_dim\":32,"
        "\"down_block_types\":[\"CrossAttnDownBlockPseudo3D\",\"DownBlockPseudo3D\"],"
        "\"up_block_types\":[\"UpBlockPseudo3D\",\"CrossAttnUpBlockPseudo3D\"]}";
    UNetConfig c;
    ParamTable pt;
    Tensor x, t, ctx, out1, outn;
    int fails = 0, saved = threads_count(), n;
    unet_config_default(&c);
    params_init(&pt);
    if (unet_config_parse(&c, cfg_json, strlen(cfg_json), "test config") || unet_declare_params(&pt, &c) ||
        params_alloc(&pt) || params_procedural(&pt, 5) || tensor_alloc_v(&x, 5, (size_t)1, (size_t)9, (size_t)3, (size_t)8, (size_t)8) ||
        tensor_alloc_v(&t, 1, (size_t)1) || tensor_alloc_v(&ctx, 3, (size_t)1, (size_t)77, (size_t)32)) {
        harness_failf(__func__, "%s", mv_error());
        return 1;
    }
    proc_fill(x.data, x.numel, 6, "x", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 6, "ctx", 1.0, 0.0);
    t.data[0] = 500;
    threads_set(1);
    if (unet_forward(&out1, &x, &t, &ctx, &pt, &c, NULL, NULL)) { harness_failf(__func__, "%s", mv_error()); return 1; }
    for (n = 2; n <= 4; n += 2) {
        threads_set(n);
        if (unet_forward(&outn, &x, &t, &ctx, &pt, &c, NULL, NULL)) { harness_failf(__func__, "%s", mv_error()); return 1; }
        fails += EXPECT(memcmp(out1.data, outn.data, out1.numel * sizeof(real)) == 0, "UNet output differs between 1 and %d threads", n);
        tensor_free(&outn);
    }
    threads_set(saved);
    tensor_free(&out1); tensor_free(&x); tensor_free(&t); tensor_free(&ctx);
    free_params(&pt);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Backward passes: fast (matrix products) against the plain loops. Gradients start from
// nonzero values (the backward adds to them); mag is the plain loop on absolute values, so
// |fast - ref| <= 2 (K+1) eps sum|a||b| holds per element with K the terms of the sum.

// n copies of one start value set: dst = src (or |src| when absolute).
static real *copyv(const real *src, size_t n, int absolute) {
    real *p = (real *)malloc((n ? n : 1) * sizeof(real));
    size_t i;
    if (p)
        for (i = 0; i < n; i++) p[i] = absolute ? (real)fabs((double)src[i]) : src[i];
    return p;
}

static int same(const char *what, const real *a, const real *b, size_t n) {
    return EXPECT(memcmp(a, b, n * sizeof(real)) == 0, "%s: not bit-identical", what);
}

// The buffers of one backward fast-vs-ref check: inputs (x, kernel, dout), a common start for
// the accumulated gradients g0 (i: input, k: kernel, b: bias), and from it the fast (f), the
// reference (r), the one-gradient-at-a-time (x) results and the magnitudes (m: the reference
// run on absolute values, for `within`).
typedef struct {
    size_t nin, nk, nout, nb;
    real *in, *k, *dy, *g0i, *g0k, *g0b, *fi, *fk, *fb, *ri, *rk, *rb, *mi, *mk, *mb, *ai, *ak, *ady, *xi, *xk;
} BwdBufs;

static void bwd_bufs_free(BwdBufs *b) {
    free(b->in); free(b->k); free(b->dy); free(b->g0i); free(b->g0k); free(b->g0b); free(b->fi); free(b->fk);
    free(b->fb); free(b->ri); free(b->rk); free(b->rb); free(b->mi); free(b->mk); free(b->mb); free(b->ai);
    free(b->ak); free(b->ady); free(b->xi); free(b->xk);
}

static int bwd_bufs_alloc(BwdBufs *b, size_t nin, size_t nk, size_t nout, size_t nb) {
    memset(b, 0, sizeof *b);
    b->nin = nin; b->nk = nk; b->nout = nout; b->nb = nb;
    b->in = rnd(nin, "in"); b->k = rnd(nk, "k"); b->dy = rnd(nout, "dy");
    b->g0i = rnd(nin, "g0i"); b->g0k = rnd(nk, "g0k"); b->g0b = rnd(nb, "g0b");
    if (!b->in || !b->k || !b->dy || !b->g0i || !b->g0k || !b->g0b) { bwd_bufs_free(b); return 1; }
    b->fi = copyv(b->g0i, nin, 0); b->fk = copyv(b->g0k, nk, 0); b->fb = copyv(b->g0b, nb, 0);
    b->ri = copyv(b->g0i, nin, 0); b->rk = copyv(b->g0k, nk, 0); b->rb = copyv(b->g0b, nb, 0);
    b->mi = copyv(b->g0i, nin, 1); b->mk = copyv(b->g0k, nk, 1); b->mb = copyv(b->g0b, nb, 1);
    b->ai = copyv(b->in, nin, 1); b->ak = copyv(b->k, nk, 1); b->ady = copyv(b->dy, nout, 1);
    b->xi = copyv(b->g0i, nin, 0); b->xk = copyv(b->g0k, nk, 0);
    if (!b->fi || !b->fk || !b->fb || !b->ri || !b->rk || !b->rb || !b->mi || !b->mk || !b->mb || !b->ai || !b->ak ||
        !b->ady || !b->xi || !b->xk) { bwd_bufs_free(b); return 1; }
    return 0;
}

// Reset the fast results to the common start (for the reference-switch run).
static void bwd_bufs_reset_fast(BwdBufs *b) {
    memcpy(b->fi, b->g0i, b->nin * sizeof(real)); memcpy(b->fk, b->g0k, b->nk * sizeof(real));
    memcpy(b->fb, b->g0b, b->nb * sizeof(real));
}

// One conv2d geometry: fast vs ref (each gradient), the reference switch, and NULL gradients.
static int conv_bwd_case(size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g) {
    size_t Ho, Wo;
    BwdBufs b;
    int fails = 0;
    conv2d_out_size(&Ho, &Wo, H, W, g);
    if (bwd_bufs_alloc(&b, N * H * W * Ci, g->KH * g->KW * Ci * Co, N * Ho * Wo * Co, Co)) return 1;
    conv2d_backward(b.fi, b.fk, b.fb, b.dy, b.in, b.k, N, H, W, Ci, Co, g);
    conv2d_backward_ref(b.ri, b.rk, b.rb, b.dy, b.in, b.k, N, H, W, Ci, Co, g);
    conv2d_backward_ref(b.mi, b.mk, b.mb, b.ady, b.ai, b.ak, N, H, W, Ci, Co, g);
    fails += within("conv2d backward dinp fast vs ref", b.fi, b.ri, b.mi, b.nin, g->KH * g->KW * Co + 1);
    fails += within("conv2d backward dkernel fast vs ref", b.fk, b.rk, b.mk, b.nk, N * Ho * Wo + 1);
    fails += same("conv2d backward dbias fast vs ref", b.fb, b.rb, Co); // the same sums in the same order
    // one gradient at a time gives the same bits as all three together
    conv2d_backward(b.xi, NULL, NULL, b.dy, b.in, b.k, N, H, W, Ci, Co, g);
    conv2d_backward(NULL, b.xk, NULL, b.dy, b.in, b.k, N, H, W, Ci, Co, g);
    fails += same("conv2d backward dinp alone", b.xi, b.fi, b.nin);
    fails += same("conv2d backward dkernel alone", b.xk, b.fk, b.nk);
    // MAVREF_REFERENCE selects the plain loops
    bwd_bufs_reset_fast(&b);
    engine_set_reference(1);
    conv2d_backward(b.fi, b.fk, b.fb, b.dy, b.in, b.k, N, H, W, Ci, Co, g);
    engine_set_reference(0);
    fails += same("conv2d backward reference switch (dinp)", b.fi, b.ri, b.nin);
    fails += same("conv2d backward reference switch (dkernel)", b.fk, b.rk, b.nk);
    bwd_bufs_free(&b);
    return fails;
}

static int temporal_bwd_case(size_t B, size_t F, size_t S, size_t Ci, size_t Co) {
    BwdBufs b;
    int fails = 0;
    if (bwd_bufs_alloc(&b, B * F * S * Ci, 3 * Ci * Co, B * F * S * Co, Co)) return 1;
    temporal_conv_backward(b.fi, b.fk, b.fb, b.dy, b.in, b.k, B, F, S, Ci, Co);
    temporal_conv_backward_ref(b.ri, b.rk, b.rb, b.dy, b.in, b.k, B, F, S, Ci, Co);
    temporal_conv_backward_ref(b.mi, b.mk, b.mb, b.ady, b.ai, b.ak, B, F, S, Ci, Co);
    fails += within("temporal conv backward dinp fast vs ref", b.fi, b.ri, b.mi, b.nin, 3 * Co + 1);
    fails += within("temporal conv backward dkernel fast vs ref", b.fk, b.rk, b.mk, b.nk, B * F * S + 1);
    fails += same("temporal conv backward dbias fast vs ref", b.fb, b.rb, Co);
    temporal_conv_backward(b.xi, NULL, NULL, b.dy, b.in, b.k, B, F, S, Ci, Co);
    temporal_conv_backward(NULL, b.xk, NULL, b.dy, b.in, b.k, B, F, S, Ci, Co);
    fails += same("temporal conv backward dinp alone", b.xi, b.fi, b.nin);
    fails += same("temporal conv backward dkernel alone", b.xk, b.fk, b.nk);
    bwd_bufs_reset_fast(&b);
    engine_set_reference(1);
    temporal_conv_backward(b.fi, b.fk, b.fb, b.dy, b.in, b.k, B, F, S, Ci, Co);
    engine_set_reference(0);
    fails += same("temporal conv backward reference switch (dinp)", b.fi, b.ri, b.nin);
    fails += same("temporal conv backward reference switch (dkernel)", b.fk, b.rk, b.nk);
    bwd_bufs_free(&b);
    return fails;
}

static int fastpath_conv_backward(void) {
    static const Conv2dGeom geoms[6] = {{3, 3, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0, 0}, {3, 3, 2, 1, 1, 1, 1},
                                        {3, 3, 2, 0, 1, 0, 1}, {1, 1, 2, 0, 0, 0, 0}, {2, 3, 1, 0, 1, 2, 0}};
    size_t g;
    int fails = 0;
    for (g = 0; g < 6; g++) fails += conv_bwd_case(2, 9, 7, 37, 53, &geoms[g]);
    fails += conv_bwd_case(3, 23, 17, 5, 7, &geoms[0]); // 1173 output pixels: more than one tile
    fails += conv_bwd_case(1, 1, 1, 4, 4, &geoms[0]);
    fails += temporal_bwd_case(2, 5, 11, 37, 53);
    fails += temporal_bwd_case(1, 1, 3, 8, 5); // F = 1: the centre tap only
    fails += temporal_bwd_case(3, 2, 7, 16, 9);
    return fails;
}

static int fastpath_linear_backward(void) {
    static const size_t sizes[3][3] = {{67, 300, 77}, {1, 5, 3}, {300, 33, 290}};
    int fails = 0, s;
    for (s = 0; s < 3; s++) {
        size_t N = sizes[s][0], I = sizes[s][1], O = sizes[s][2];
        real *x = rnd(N * I, "x"), *k = rnd(I * O, "k"), *dy = rnd(N * O, "dy"), *g0x = rnd(N * I, "g0x"),
             *g0k = rnd(I * O, "g0k"), *g0b = rnd(O, "g0b");
        real *fx, *fk, *fb, *rx, *rk, *rb, *mx, *mk, *mb, *ax, *ak, *ady, *xx;
        if (!x || !k || !dy || !g0x || !g0k || !g0b) return 1;
        fx = copyv(g0x, N * I, 0); fk = copyv(g0k, I * O, 0); fb = copyv(g0b, O, 0);
        rx = copyv(g0x, N * I, 0); rk = copyv(g0k, I * O, 0); rb = copyv(g0b, O, 0);
        mx = copyv(g0x, N * I, 1); mk = copyv(g0k, I * O, 1); mb = copyv(g0b, O, 1);
        ax = copyv(x, N * I, 1); ak = copyv(k, I * O, 1); ady = copyv(dy, N * O, 1); xx = copyv(g0x, N * I, 0);
        if (!fx || !fk || !fb || !rx || !rk || !rb || !mx || !mk || !mb || !ax || !ak || !ady || !xx) return 1;
        linear_backward(fx, fk, fb, dy, x, k, N, I, O);
        linear_backward_ref(rx, rk, rb, dy, x, k, N, I, O);
        linear_backward_ref(mx, mk, mb, ady, ax, ak, N, I, O);
        fails += within("linear backward dx fast vs ref", fx, rx, mx, N * I, O + 1);
        fails += within("linear backward dkernel fast vs ref", fk, rk, mk, I * O, N + 1);
        fails += same("linear backward dbias fast vs ref", fb, rb, O);
        linear_backward(xx, NULL, NULL, dy, x, k, N, I, O);
        fails += same("linear backward dx alone", xx, fx, N * I);
        memcpy(fx, g0x, N * I * sizeof(real)); memcpy(fk, g0k, I * O * sizeof(real));
        engine_set_reference(1);
        linear_backward(fx, fk, NULL, dy, x, k, N, I, O);
        engine_set_reference(0);
        fails += same("linear backward reference switch (dx)", fx, rx, N * I);
        fails += same("linear backward reference switch (dkernel)", fk, rk, I * O);
        free(x); free(k); free(dy); free(g0x); free(g0k); free(g0b); free(fx); free(fk); free(fb); free(rx); free(rk); free(rb);
        free(mx); free(mk); free(mb); free(ax); free(ak); free(ady); free(xx);
    }
    return fails;
}

// The backward fast paths give the same bits for 1, 2, 3 and 4 threads.
static int fastpath_backward_threads(void) {
    static const Conv2dGeom geoms[2] = {{3, 3, 1, 1, 1, 1, 1}, {3, 3, 2, 1, 1, 1, 1}};
    size_t N = 2, H = 24, W = 20, Ci = 64, Co = 96, nin = N * H * W * Ci, nk = 9 * Ci * Co, nout = N * H * W * Co, g;
    real *in = rnd(nin, "in"), *k = rnd(nk, "k"), *dy = rnd(nout, "dy");
    real *i1 = rnd(nin, "i1"), *k1 = rnd(nk, "k1"), *b1 = rnd(Co, "b1"), *in_ = rnd(nin, "in_"), *kn = rnd(nk, "kn"), *bn = rnd(Co, "bn");
    int fails = 0, saved = threads_count(), t;
    if (!in || !k || !dy || !i1 || !k1 || !b1 || !in_ || !kn || !bn) return 1;
    for (g = 0; g < 3; g++) { // two conv2d geometries, then the temporal conv (B 2, F 4, S 120)
        for (t = 1; t <= 4; t++) {
            real *gi = t == 1 ? i1 : in_, *gk = t == 1 ? k1 : kn, *gb = t == 1 ? b1 : bn;
            memset(gi, 0, nin * sizeof(real)); memset(gk, 0, nk * sizeof(real)); memset(gb, 0, Co * sizeof(real));
            threads_set(t);
            if (g < 2) conv2d_backward(gi, gk, gb, dy, in, k, N, H, W, Ci, Co, &geoms[g]);
            else temporal_conv_backward(gi, gk, gb, dy, in, k, 2, 4, 120, Ci, Co);
            if (t > 1) {
                fails += EXPECT(memcmp(i1, in_, nin * sizeof(real)) == 0, "backward %lu: dinp differs between 1 and %d threads", (unsigned long)g, t);
                fails += EXPECT(memcmp(k1, kn, nk * sizeof(real)) == 0, "backward %lu: dkernel differs between 1 and %d threads", (unsigned long)g, t);
                fails += EXPECT(memcmp(b1, bn, Co * sizeof(real)) == 0, "backward %lu: dbias differs between 1 and %d threads", (unsigned long)g, t);
            }
        }
    }
    for (t = 1; t <= 4; t++) { // Dense over (N*H*W/4) rows of 4*Ci
        real *gi = t == 1 ? i1 : in_, *gk = t == 1 ? k1 : kn, *gb = t == 1 ? b1 : bn;
        memset(gi, 0, nin * sizeof(real)); memset(gk, 0, nk * sizeof(real)); memset(gb, 0, Co * sizeof(real));
        threads_set(t);
        linear_backward(gi, gk, gb, dy, in, k, N * H * W / 4, 4 * Ci, Co);
        if (t > 1) {
            fails += EXPECT(memcmp(i1, in_, nin * sizeof(real)) == 0, "linear backward: dx differs between 1 and %d threads", t);
            fails += EXPECT(memcmp(k1, kn, nk * sizeof(real)) == 0, "linear backward: dkernel differs between 1 and %d threads", t);
        }
    }
    threads_set(saved);
    free(in); free(k); free(dy); free(i1); free(k1); free(b1); free(in_); free(kn); free(bn);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Attention and the activations: the fast path (gemm projections and tiles, parallel tasks)
// against the readable path, forward and backward, for the three kinds of attention with
// short (loop) and long (gemm tile) key sequences; calls cut into chunks against the same
// work cut by the caller; and the same bits for any thread count.
#include "../ref/activations.h"

typedef struct {
    int kind;                  // 0 self (N = B), 1 cross, 2 temporal
    size_t B, F, T, Tk, S;     // self: B sequences of T; cross: B*F frames of T, Tk keys; temporal: (B,F,S)
    size_t Cq, Ckv, heads, d;
    int causal, biases;
} AttnShape;

static size_t attn_rows(const AttnShape *s) { return s->kind == 0 ? s->B * s->T : s->kind == 1 ? s->B * s->F * s->T : s->B * s->F * s->S; }

// Weights (wq wk wv wo bo bq bk bv in one block), scaled by 1/sqrt(fan-in) so softmax rows are not one-hot.
static real *attn_weights(AttnWeights *w, const AttnShape *s) {
    size_t D = s->heads * s->d, n = 2 * s->Cq * D + 2 * s->Ckv * D + s->Cq + 3 * D, i;
    real *p = rnd(n, "attention weights");
    if (!p) return NULL;
    for (i = 0; i < s->Cq * D; i++) p[i] *= (real)(1.0 / sqrt((double)s->Cq));
    for (; i < s->Cq * D + 2 * s->Ckv * D; i++) p[i] *= (real)(1.0 / sqrt((double)s->Ckv));
    for (; i < 2 * s->Cq * D + 2 * s->Ckv * D; i++) p[i] *= (real)(1.0 / sqrt((double)D));
    memset(w, 0, sizeof *w);
    w->wq = p; w->wk = p + s->Cq * D; w->wv = w->wk + s->Ckv * D; w->wo = w->wv + s->Ckv * D;
    w->bo = w->wo + D * s->Cq;
    if (s->biases) { w->bq = w->bo + s->Cq; w->bk = w->bq + D; w->bv = w->bk + D; }
    w->Cq = s->Cq; w->Ckv = s->Ckv; w->heads = s->heads; w->dim_head = s->d; w->causal = s->causal;
    return p;
}

// The sequences of a shape as the two paths see them (attention.h), and their context.
static AttnView attn_view(const AttnShape *s) {
    AttnView v;
    v.nseq = s->kind == 0 ? s->B : s->kind == 1 ? s->B * s->F : s->B * s->S;
    v.T = s->kind == 2 ? s->F : s->T;
    v.S = s->kind == 2 ? s->S : 1;
    v.Tk = s->kind == 1 ? s->Tk : v.T;
    v.per_ctx = s->kind == 1 ? s->F : 1;
    return v;
}

// Which way to run attention: through the entry points (the door, engine.h), or straight
// into the fast or the plain path.
enum { VIA_ENTRY, VIA_FAST, VIA_REF };

static int attn_fwd_via(int via, const AttnShape *s, real *out, const real *x, const real *ctx, const AttnWeights *w) {
    AttnView v = attn_view(s);
    if (via == VIA_FAST) return attention_forward_fast(out, x, s->kind == 1 ? ctx : NULL, w, &v);
    if (via == VIA_REF) return attention_forward_ref(out, x, s->kind == 1 ? ctx : NULL, w, &v);
    if (s->kind == 0) return attention_self_forward(out, x, w, s->B, s->T);
    if (s->kind == 1) return attention_cross_forward(out, x, ctx, w, s->B, s->F, s->T, s->Tk);
    return attention_temporal_forward(out, x, w, s->B, s->F, s->S);
}

static int attn_fwd(const AttnShape *s, real *out, const real *x, const real *ctx, const AttnWeights *w) {
    return attn_fwd_via(VIA_ENTRY, s, out, x, ctx, w);
}

// g: 10 gradient buffers dx dctx dwq dwk dwv dwo dbo dbq dbk dbv (sizes: attn_grad_sizes)
static void attn_grad_sizes(size_t *n, const AttnShape *s) {
    size_t D = s->heads * s->d;
    n[0] = attn_rows(s) * s->Cq; n[1] = s->B * s->Tk * s->Ckv;
    n[2] = s->Cq * D; n[3] = n[4] = s->Ckv * D; n[5] = D * s->Cq; n[6] = s->Cq; n[7] = n[8] = n[9] = D;
}

static int attn_bwd_via(int via, const AttnShape *s, real **g, const real *dout, const real *x, const real *ctx,
                        const AttnWeights *w) {
    AttnGrads dw;
    AttnView v = attn_view(s);
    dw.dwq = g[2]; dw.dwk = g[3]; dw.dwv = g[4]; dw.dwo = g[5]; dw.dbo = g[6]; dw.dbq = g[7]; dw.dbk = g[8]; dw.dbv = g[9];
    if (via == VIA_FAST) return attention_backward_fast(g[0], s->kind == 1 ? g[1] : NULL, &dw, dout, x, s->kind == 1 ? ctx : NULL, w, &v);
    if (via == VIA_REF) return attention_backward_ref(g[0], s->kind == 1 ? g[1] : NULL, &dw, dout, x, s->kind == 1 ? ctx : NULL, w, &v);
    if (s->kind == 0) return attention_self_backward(g[0], &dw, dout, x, w, s->B, s->T);
    if (s->kind == 1) return attention_cross_backward(g[0], g[1], &dw, dout, x, ctx, w, s->B, s->F, s->T, s->Tk);
    return attention_temporal_backward(g[0], &dw, dout, x, w, s->B, s->F, s->S);
}

static int attn_bwd(const AttnShape *s, real **g, const real *dout, const real *x, const real *ctx, const AttnWeights *w) {
    return attn_bwd_via(VIA_ENTRY, s, g, dout, x, ctx, w);
}

// max |a - b| <= tol * max |b| (tol in eps of the build)
static int close_scaled(const char *what, const real *a, const real *b, size_t n, double tol) {
    double m = 0, dmax = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
        if (fabs((double)a[i] - (double)b[i]) > dmax) dmax = fabs((double)a[i] - (double)b[i]);
    }
    return EXPECT(dmax <= tol * REAL_EPS * m, "%s: max|d| %.3e = %.1f eps of the scale %.3e (allowed %.0f)", what, dmax,
                  m > 0 ? dmax / (REAL_EPS * m) : 0.0, m, tol);
}

// Everything one attention shape needs: inputs, start values of the gradients, outputs of two runs.
typedef struct {
    AttnShape s;
    AttnWeights w;
    real *wts, *x, *ctx, *dout, *out[2], *g0[10], *g[2][10];
    size_t n[10];
} AttnRun;

static void attn_run_free(AttnRun *r) {
    int i, k;
    free(r->wts); free(r->x); free(r->ctx); free(r->dout); free(r->out[0]); free(r->out[1]);
    for (i = 0; i < 10; i++) { free(r->g0[i]); for (k = 0; k < 2; k++) free(r->g[k][i]); }
}

static int attn_run_init(AttnRun *r, const AttnShape *s) {
    size_t nx = attn_rows(s) * s->Cq, i;
    int k;
    memset(r, 0, sizeof *r);
    r->s = *s;
    attn_grad_sizes(r->n, s);
    r->wts = attn_weights(&r->w, s);
    r->x = rnd(nx, "x"); r->ctx = rnd(s->B * s->Tk * s->Ckv + 1, "ctx"); r->dout = rnd(nx, "dout");
    r->out[0] = rnd(nx, "o0"); r->out[1] = rnd(nx, "o1");
    if (!r->wts || !r->x || !r->ctx || !r->dout || !r->out[0] || !r->out[1]) return 1;
    for (i = 0; i < 10; i++) {
        if (!(r->g0[i] = rnd(r->n[i], "g0"))) return 1;
        for (k = 0; k < 2; k++)
            if (!(r->g[k][i] = copyv(r->g0[i], r->n[i], 0))) return 1;
    }
    return 0;
}

// Run forward and backward into slot k (gradients restarted from g0), by the way `via` says.
static int attn_run_via(AttnRun *r, int k, int via) {
    size_t i;
    for (i = 0; i < 10; i++) memcpy(r->g[k][i], r->g0[i], r->n[i] * sizeof(real));
    if (attn_fwd_via(via, &r->s, r->out[k], r->x, r->ctx, &r->w) ||
        attn_bwd_via(via, &r->s, r->g[k], r->dout, r->x, r->ctx, &r->w)) {
        harness_failf("attention", "%s", mv_error());
        return 1;
    }
    return 0;
}

static int attn_run_once(AttnRun *r, int k) { return attn_run_via(r, k, VIA_ENTRY); }

static const char *const grad_names[10] = {"dx", "dctx", "dwq", "dwk", "dwv", "dwo", "dbo", "dbq", "dbk", "dbv"};

static int fastpath_attention_kinds(void) {
    static const AttnShape shapes[] = {
        {0, 2, 1, 67, 67, 0, 32, 32, 2, 16, 0, 0},  // self, two query blocks, gemm tiles
        {0, 3, 1, 9, 9, 0, 16, 16, 2, 8, 0, 0},     // self, short: loops
        {0, 2, 1, 70, 70, 0, 24, 24, 3, 8, 1, 1},   // causal with q/k/v biases (CLIP), gemm tiles
        {0, 1, 1, 7, 7, 0, 24, 24, 3, 8, 1, 1},     // causal, loops
        {1, 2, 3, 37, 77, 0, 32, 24, 2, 16, 0, 0},  // cross, 77 keys: gemm tiles
        {1, 2, 3, 5, 7, 0, 16, 24, 2, 8, 0, 0},     // cross, 7 keys: loops
        {2, 2, 8, 0, 8, 7, 32, 32, 4, 8, 0, 0},     // temporal, 8 frames: loops
        {2, 1, 40, 0, 40, 3, 16, 16, 2, 8, 0, 0},   // temporal, 40 frames: gemm tiles
    };
    size_t k, i;
    int fails = 0;
    for (k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        AttnRun r;
        char what[96];
        if (attn_run_init(&r, &shapes[k])) { attn_run_free(&r); return fails + 1; }
        fails += attn_run_via(&r, 0, VIA_FAST);
        fails += attn_run_via(&r, 1, VIA_REF);
        snprintf(what, sizeof what, "attention shape %lu forward fast vs ref", (unsigned long)k);
        fails += close_scaled(what, r.out[0], r.out[1], attn_rows(&r.s) * r.s.Cq, 128);
        for (i = 0; i < 10; i++) {
            if (i == 1 && r.s.kind != 1) continue;
            if (i >= 7 && !r.s.biases) continue;
            snprintf(what, sizeof what, "attention shape %lu backward %s fast vs ref", (unsigned long)k, grad_names[i]);
            fails += close_scaled(what, r.g[0][i], r.g[1][i], r.n[i], 256);
        }
        // the entry points with the switch on give the plain path's bits
        engine_set_reference(1);
        fails += attn_run_via(&r, 0, VIA_ENTRY);
        engine_set_reference(0);
        fails += EXPECT(memcmp(r.out[0], r.out[1], attn_rows(&r.s) * r.s.Cq * sizeof(real)) == 0,
                        "attention shape %lu: the switch does not give attention_forward_ref's bits", (unsigned long)k);
        for (i = 0; i < 10; i++)
            fails += EXPECT(memcmp(r.g[0][i], r.g[1][i], r.n[i] * sizeof(real)) == 0,
                            "attention shape %lu: the switch does not give attention_backward_ref's %s", (unsigned long)k, grad_names[i]);
        attn_run_free(&r);
    }
    return fails;
}

// The plain path through the entry points: one call over many sequences gives the bits of two
// calls over the pieces (every sum runs over the same rows in the same order), forward and
// backward, also where a prompt's frames or a clip's pixels are cut between the calls. Sizes
// just over one chunk of the fast path (ATTN_CHUNK_REALS, 2^21 reals at width 8).
int test_attention_chunks(void) {
    static const AttnShape whole[3] = {
        {0, 131075, 1, 2, 2, 0, 8, 8, 2, 4, 0, 1},    // 131072 sequences of 2 rows per chunk
        {1, 2, 65600, 2, 3, 0, 8, 8, 2, 4, 0, 1},     // 131072 frames per chunk: the second prompt spans two
        {2, 2, 2, 0, 2, 65600, 8, 8, 2, 4, 0, 1},     // 131072 pixels per chunk: the second clip spans two
    };
    int fails = 0, k, saved = engine_reference();
    engine_set_reference(1);
    for (k = 0; k < 3; k++) {
        AttnRun r;
        AttnShape piece = whole[k];
        size_t cut = k == 0 ? 70000 : 1, rows0, i; // piece 0: sequences (self) or clips/prompts 0..cut-1
        real *g1[10];
        if (attn_run_init(&r, &whole[k])) { attn_run_free(&r); engine_set_reference(saved); return fails + 1; }
        fails += attn_run_once(&r, 0);
        // the same as two calls: piece 0, then piece 1 adding to the same weight gradients
        for (i = 0; i < 10; i++) memcpy(r.g[1][i], r.g0[i], r.n[i] * sizeof(real));
        piece.B = cut;
        rows0 = attn_rows(&piece);
        fails += attn_fwd(&piece, r.out[1], r.x, r.ctx, &r.w) != MV_OK;
        fails += attn_bwd(&piece, r.g[1], r.dout, r.x, r.ctx, &r.w) != MV_OK;
        piece.B = whole[k].B - cut;
        for (i = 0; i < 10; i++) g1[i] = r.g[1][i];
        g1[0] += rows0 * piece.Cq;
        g1[1] += cut * piece.Tk * piece.Ckv;
        fails += attn_fwd(&piece, r.out[1] + rows0 * piece.Cq, r.x + rows0 * piece.Cq, r.ctx + cut * piece.Tk * piece.Ckv, &r.w) != MV_OK;
        fails += attn_bwd(&piece, g1, r.dout + rows0 * piece.Cq, r.x + rows0 * piece.Cq, r.ctx + cut * piece.Tk * piece.Ckv, &r.w) != MV_OK;
        fails += EXPECT(memcmp(r.out[0], r.out[1], r.n[0] * sizeof(real)) == 0, "attention kind %d: chunked forward differs", k);
        for (i = 0; i < 10; i++)
            if (i != 1 || k == 1)
                fails += EXPECT(memcmp(r.g[0][i], r.g[1][i], r.n[i] * sizeof(real)) == 0, "attention kind %d: chunked backward %s differs",
                                k, grad_names[i]);
        attn_run_free(&r);
    }
    engine_set_reference(saved);
    return fails;
}

// GEGLU fast (gemm, parallel gate) vs the row loop, forward and backward.
static int fastpath_geglu(void) {
    size_t N = 300, C = 40, H = 96, kind;
    int fails = 0;
    for (kind = 0; kind < 2; kind++) {
        real *x = rnd(N * C, "x"), *k = rnd(C * 2 * H, "k"), *b = rnd(2 * H, "b"), *dy = rnd(N * H, "dy");
        real *yf = rnd(N * H, "yf"), *yr = rnd(N * H, "yr"), *g0[3], *gf[3], *gr[3];
        size_t n[3] = {N * C, C * 2 * H, 2 * H}, i;
        GeluKind gk = kind ? GELU_ERF : GELU_TANH;
        if (!x || !k || !b || !dy || !yf || !yr) return 1;
        for (i = 0; i < C * 2 * H; i++) k[i] *= (real)(1.0 / sqrt((double)C));
        for (i = 0; i < 3; i++) {
            g0[i] = rnd(n[i], "g0"); gf[i] = copyv(g0[i], n[i], 0); gr[i] = copyv(g0[i], n[i], 0);
            if (!g0[i] || !gf[i] || !gr[i]) return 1;
        }
        fails += geglu_forward(yf, x, k, b, N, C, H, gk) != MV_OK;
        fails += geglu_backward(gf[0], gf[1], gf[2], dy, x, k, b, N, C, H, gk) != MV_OK;
        engine_set_reference(1);
        fails += geglu_forward(yr, x, k, b, N, C, H, gk) != MV_OK;
        fails += geglu_backward(gr[0], gr[1], gr[2], dy, x, k, b, N, C, H, gk) != MV_OK;
        engine_set_reference(0);
        fails += close_scaled("geglu forward fast vs ref", yf, yr, N * H, 64);
        fails += close_scaled("geglu backward dx fast vs ref", gf[0], gr[0], n[0], 128);
        fails += close_scaled("geglu backward dkernel fast vs ref", gf[1], gr[1], n[1], 128);
        fails += close_scaled("geglu backward dbias fast vs ref", gf[2], gr[2], n[2], 128);
        free(x); free(k); free(b); free(dy); free(yf); free(yr);
        for (i = 0; i < 3; i++) { free(g0[i]); free(gf[i]); free(gr[i]); }
    }
    return fails;
}

// Attention (forward and backward, each kind), the activations and GEGLU give the same bits
// for 1, 2, 3 and 4 threads.
static int fastpath_attention_threads(void) {
    static const AttnShape shapes[3] = {
        {0, 3, 1, 67, 67, 0, 32, 32, 2, 16, 0, 0},
        {1, 2, 3, 37, 77, 0, 32, 24, 2, 16, 0, 0},
        {2, 2, 8, 0, 8, 50, 32, 32, 4, 8, 0, 0},
    };
    size_t n = 50001, N = 300, C = 40, H = 96, i, k;
    int fails = 0, saved = threads_count(), t;
    for (k = 0; k < 3; k++) {
        AttnRun r;
        if (attn_run_init(&r, &shapes[k])) { attn_run_free(&r); return fails + 1; }
        threads_set(1);
        fails += attn_run_once(&r, 0);
        for (t = 2; t <= 4; t++) {
            threads_set(t);
            fails += attn_run_once(&r, 1);
            fails += EXPECT(memcmp(r.out[0], r.out[1], r.n[0] * sizeof(real)) == 0, "attention kind %lu forward differs between 1 and %d threads",
                            (unsigned long)k, t);
            for (i = 0; i < 10; i++)
                fails += EXPECT(memcmp(r.g[0][i], r.g[1][i], r.n[i] * sizeof(real)) == 0,
                                "attention kind %lu backward %s differs between 1 and %d threads", (unsigned long)k, grad_names[i], t);
        }
        attn_run_free(&r);
    }
    {
        real *x = rnd(n, "x"), *dy = rnd(n, "dy"), *o1 = rnd(8 * n, "o1"), *on = rnd(8 * n, "on");
        real *kk = rnd(C * 2 * H, "k"), *b = rnd(2 * H, "b");
        if (!x || !dy || !o1 || !on || !kk || !b) return 1;
        for (t = 1; t <= 4; t++) {
            real *o = t == 1 ? o1 : on;
            threads_set(t);
            memset(o, 0, 8 * n * sizeof(real));
            silu_forward(o, x, n);
            gelu_forward(o + n, x, n, GELU_TANH);
            gelu_forward(o + 2 * n, x, n, GELU_ERF);
            quick_gelu_forward(o + 3 * n, x, n);
            silu_backward(o + 4 * n, dy, x, n);
            gelu_backward(o + 5 * n, dy, x, n, GELU_TANH);
            fails += geglu_forward(o + 6 * n, x, kk, b, N, C, H, GELU_TANH) != MV_OK;           // (N,H) < n
            fails += geglu_backward(o + 7 * n, o + 6 * n + N * H, o + 6 * n + N * H + C * 2 * H, dy, x, kk, b, N, C, H,
                                    GELU_TANH) != MV_OK;                                        // dx, dkernel, dbias
            if (t > 1) fails += EXPECT(memcmp(o1, on, 8 * n * sizeof(real)) == 0, "activations differ between 1 and %d threads", t);
        }
        free(x); free(dy); free(o1); free(on); free(kk); free(b);
    }
    threads_set(saved);
    return fails;
}

// expf_poly (the float32 softmax's exponential, ref/expf_poly.h) against exp in double rounded
// to float: every float in [-87.33, 0] with its low 8 mantissa bits zero (about 4 million
// values, every binade), within 2 ulps; 0 below -87.33, exactly 1 at 0.
static double ulps_apart(float a, float b) {
    float lo = a < b ? a : b, hi = a < b ? b : a, step = nextafterf(lo, 1e30f) - lo;
    return step > 0 ? (double)(hi - lo) / (double)step : 0.0;
}

int test_expf_poly(void) {
    double worst = 0;
    float worst_x = 0;
    uint32_t bits;
    for (bits = 0x80000000u; bits <= 0xC2AEA8F6u; bits += 256u) { // -0 down to about -87.33
        float x, got, want;
        memcpy(&x, &bits, sizeof x);
        if (x < EXPF_POLY_MIN) break;
        got = expf_poly(x);
        want = (float)exp((double)x);
        if (ulps_apart(got, want) > worst) { worst = ulps_apart(got, want); worst_x = x; }
    }
    printf("  expf_poly: worst %.2f ulps at x = %.9g over [-87.33, 0]\n", worst, (double)worst_x);
    if (!(worst <= 2.0)) { harness_failf("expf_poly", "%.2f ulps from exp at x = %.9g (at most 2)", worst, (double)worst_x); return 1; }
    if (expf_poly(0.0f) != 1.0f || expf_poly(-88.0f) != 0.0f || expf_poly(-1e30f) != 0.0f) {
        harness_failf("expf_poly", "e^0 = %.9g, e^-88 = %.9g, e^-1e30 = %.9g (want 1, 0, 0)", (double)expf_poly(0.0f),
                      (double)expf_poly(-88.0f), (double)expf_poly(-1e30f));
        return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// The checks above run on the fast path whatever the switch (engine.h) was, and leave it as
// they found it.
static int on_fast_path(int (*check)(void)) {
    int fails, saved = engine_reference();
    engine_set_reference(0);
    fails = check();
    engine_set_reference(saved);
    return fails;
}

int test_fastpath_conv(void) { return on_fast_path(fastpath_conv); }
int test_fastpath_linear(void) { return on_fast_path(fastpath_linear); }
int test_fastpath_attention(void) { return on_fast_path(fastpath_attention); }
int test_fastpath_threads(void) { return on_fast_path(fastpath_threads); }
int test_fastpath_forward_bits(void) { return on_fast_path(fastpath_forward_bits); }
int test_fastpath_conv_backward(void) { return on_fast_path(fastpath_conv_backward); }
int test_fastpath_linear_backward(void) { return on_fast_path(fastpath_linear_backward); }
int test_fastpath_backward_threads(void) { return on_fast_path(fastpath_backward_threads); }
int test_fastpath_attention_kinds(void) { return on_fast_path(fastpath_attention_kinds); }
int test_fastpath_geglu(void) { return on_fast_path(fastpath_geglu); }
int test_fastpath_attention_threads(void) { return on_fast_path(fastpath_attention_threads); }
