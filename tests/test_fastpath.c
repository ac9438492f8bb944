// test_fastpath.c: the matrix-product fast paths of conv2d, the temporal conv, Dense and
// attention against their plain loops (the readable path), and bit-identical results for any
// thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/attention.h"
#include "../ref/conv.h"
#include "../ref/linear.h"
#include "../ref/procedural.h"
#include "../ref/threads.h"

static real *rnd(size_t n, const char *name) {
    real *p = (real *)malloc((n ? n : 1) * sizeof(real));
    if (p) proc_fill(p, n, 42, name, 1.0, 0.0);
    return p;
}

// Netlib-style check: |fast - ref| <= 2 (K+1) eps sum|a||b| (+ a tiny absolute floor), where
// `mag` holds sum|a||b| per element (the same operator run on absolute values).
static int within(const char *what, const real *fast, const real *ref, const real *mag, size_t n, size_t K) {
    size_t i;
    double worst = 0;
    for (i = 0; i < n; i++) {
        double bound = 2.0 * (double)(K + 1) * REAL_EPS * fabs((double)mag[i]) + 1e-30;
        double r = fabs((double)fast[i] - (double)ref[i]) / bound;
        if (!(r <= 1.0)) {
            harness_failf(what, "element %lu: fast %.17g ref %.17g exceeds 2(K+1)eps sum|a||b| (K=%lu)", (unsigned long)i,
                          (double)fast[i], (double)ref[i], (unsigned long)K);
            return 1;
        }
        if (r > worst) worst = r;
    }
    return 0;
}

static void absv(real *dst, const real *src, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) dst[i] = (real)fabs((double)src[i]);
}

int test_fastpath_conv(void) {
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

int test_fastpath_linear(void) {
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

// Attention as a whole: fast vs reference path agree to a few hundred eps of the output's
// scale (softmax, two products of up to 300 terms), and both are deterministic.
int test_fastpath_attention(void) {
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
    fails += attention_self_forward(fast, x, &w, N, T) != MV_OK;
    mv_reference_path = 1;
    fails += attention_self_forward(ref, x, &w, N, T) != MV_OK;
    mv_reference_path = 0;
    for (i = 0; i < n; i++) {
        if (fabs((double)ref[i]) > m) m = fabs((double)ref[i]);
        if (fabs((double)fast[i] - (double)ref[i]) > d) d = fabs((double)fast[i] - (double)ref[i]);
    }
    fails += EXPECT(d <= 512 * REAL_EPS * m, "attention fast vs ref: max|d| %.3e, scale %.3e", d, m);
    free(x); free(wq); free(wk); free(wv); free(wo); free(bo); free(fast); free(ref);
    return fails;
}

// Every operator with a fast path gives the same bits for 1, 2, 3 and 4 threads.
int test_fastpath_threads(void) {
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
    threads_set(saved);
    free(in); free(k); free(b); free(out1); free(outn);
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
