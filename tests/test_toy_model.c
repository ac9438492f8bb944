// test_toy_model.c: the toy model of `make toy-model` does what its prompts say (issue 15).
//   toy_measure_truth     the measurement (ref/toyworld.h toy_measure) reads the toy world's
//                         own clips of the 24 pairs right: every one passes
//   init_from_2d          `mavref init unet --from-2d`: the file it writes, and what it computes
//   init_whiten           `mavref init vae --whiten`: unit-variance latents, the same decoded image
// The bar itself (mavref toy-eval --model vectors/toy/makeavid --hint-model vectors/toy/hint:
// at least 90% of the 24 pairs) is not a test yet: the committed toy model scores 17 of 24
// (SPEC.md section 10.5); it becomes one with weights that pass it.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../ref/compare.h"
#include "../ref/noise.h"
#include "../ref/params.h"
#include "../ref/train.h"
#include "../ref/unet.h"
#include "../ref/vae.h"
#include "../ref/model_dir.h"
#include "../ref/safetensors.h"
#include "harness.h"
#include "tests.h"

static CliRun toy_run; // cli_run's captured output (two 64 KiB buffers: not on the stack)

static int toy_eval_truth(const char *where, const char *expect_line) {
    char line[256], last[256] = "";
    const char *p = toy_run.out, *nl;
    if (cli_run(&toy_run, "toy-eval", "--truth", (char *)NULL)) return 1;
    for (; *p; p = nl ? nl + 1 : p + strlen(p)) {
        nl = strchr(p, '\n');
        snprintf(line, sizeof line, "%.*s", (int)(nl ? nl - p : (long)strlen(p)), p);
        printf("    %s\n", line); // the table, indented like the harness's own lines
        if (!strncmp(line, "prompt adherence:", 17)) snprintf(last, sizeof last, "%s", line);
    }
    if (toy_run.rc != 0) { harness_failf(where, "mavref toy-eval --truth exited %d (%s)", toy_run.rc, last); return 1; }
    if (!strstr(last, expect_line)) { harness_failf(where, "expected '%s', got '%s'", expect_line, last); return 1; }
    return 0;
}

// ... and two options that exclude each other are a usage error (exit 2), not a run.
int test_toy_measure_truth(void) {
    if (toy_eval_truth("toy_measure_truth", "24 of 24 pairs (100.0%), held-out 8 of 8")) return 1;
    if (cli_run(&toy_run, "toy-eval", "--truth", "--true-first-frame", (char *)NULL)) return 1;
    if (toy_run.rc != 2 || !strstr(toy_run.err, "exclude each other")) {
        harness_failf("toy_measure_truth", "toy-eval --truth --true-first-frame: exit %d (%s), expected 2", toy_run.rc, toy_run.err);
        return 1;
    }
    return 0;
}


// init_from_2d: `mavref init unet --from-2d W2D` (Make-A-Video's start, SPEC.md 10.5) on the
// toy configs. The file: every 2-D tensor copied (conv_in's mask and hint channels zero), every
// temporal conv the identity, every temporal attention's to_out_0 zero, the other temporal
// parameters procedural. The behaviour: on a still video the pseudo-3D UNet computes, frame by
// frame, what the 2-D UNet computes on the frame (its GroupNorms' statistics over the frames
// of a still video are the frame's own), to rounding: the sums run in another order.
// And --from-2d with unet2d, or a file that is not a 2-D UNet of the config: exit 2.
#define STR2(x) #x
#define STR(x) STR2(x)
static const char *const init2d_path = "build/test-init-2d-f" STR(MAVREF_PRECISION) ".safetensors";
static const char *const init3d_path = "build/test-init-3d-f" STR(MAVREF_PRECISION) ".safetensors";


// The compare-and-report of both tests: "ok"/"FAIL" with the metrics, a failure naming `what`.
static int expect_close(const char *where, const char *what, const Tensor *got, const Tensor *expected, double tol) {
    Metrics m;
    char buf[256], idx[64];
    int pass;
    metrics_compute_real(&m, got->data, expected->data, expected->numel);
    metrics_format(buf, sizeof buf, &m, index_str(idx, sizeof idx, m.worst, expected->ndim, expected->shape));
    pass = metrics_pass(&m, tol);
    printf("  %s %s %s: %s\n", pass ? "ok" : "FAIL", where, what, buf);
    if (!pass) harness_failf(where, "%s: beyond %g", what, tol);
    return !pass;
}

static int check_init_file(const char *where, const ParamTable *p2, const ParamTable *p3) {
    size_t k, i, fails = 0, temporal = 0;
    for (k = 0; k < p3->count; k++) {
        const Param *q = &p3->p[k], *p = NULL;
        const real *x = q->t.data;
        for (i = 0; i < p2->count; i++) if (!strcmp(p2->p[i].name, q->name)) p = &p2->p[i];
        if (p && !strcmp(q->name, "conv_in.spatial_conv.kernel")) { // (3,3,Ci,Co)
            size_t ci = p->t.shape[2], cin = q->t.shape[2], co = q->t.shape[3];
            for (i = 0; i < 9 * cin * co; i++) {
                size_t jj = (i / co) % cin, tap = i / (co * cin), o = i % co;
                real want = jj < ci ? p->t.data[(tap * ci + jj) * co + o] : (real)0;
                if (x[i] != want) { fails++; break; }
            }
        } else if (p) {
            if (p->t.numel != q->t.numel || memcmp(x, p->t.data, q->t.numel * sizeof(real))) fails++;
        } else if (strstr(q->name, "temporal_conv.kernel")) { // (3,C,C): kernel[1] = I
            size_t n = q->t.shape[1], m = q->t.shape[2];
            temporal++;
            for (i = 0; i < q->t.numel; i++) {
                size_t tap = i / (n * m), c = (i / m) % n, o = i % m;
                if (x[i] != (tap == 1 && c == o ? (real)1 : (real)0)) { fails++; break; }
            }
        } else if (strstr(q->name, "temporal_conv.bias") || strstr(q->name, "attn_temporal.to_out_0.")) {
            for (i = 0; i < q->t.numel; i++) if (x[i] != (real)0) { fails++; break; }
        } else if (strstr(q->name, "attn_temporal.to_q")) {
            for (i = 0; i < q->t.numel && x[i] == (real)0; i++) {}
            if (i == q->t.numel) fails++; // procedural, not zero
        }
        if (fails) { harness_failf(where, "%s is not what --from-2d writes", q->name); return 1; }
    }
    if (!temporal) { harness_failf(where, "no temporal conv in the pseudo-3D UNet"); return 1; }
    printf("    %lu tensors: the 2-D UNet's copied, %lu temporal convs the identity, temporal attention outputs zero\n",
           (unsigned long)p3->count, (unsigned long)temporal);
    return 0;
}

int test_init_from_2d(void) {
    ParamTable p2, p3;
    UNetConfig c2, c3;
    Tensor x2, x3, t2, t3, ctx2, ctx3, o2, o3, want;
    size_t F = 3, H = 8, W = 8, S = H * W, T = 5, Cc, f, c, i;
    int fails = 0;
    FILE *probe;
    params_init(&p2); params_init(&p3);
    memset(&x2, 0, sizeof x2); memset(&x3, 0, sizeof x3); memset(&t2, 0, sizeof t2); memset(&t3, 0, sizeof t3);
    memset(&ctx2, 0, sizeof ctx2); memset(&ctx3, 0, sizeof ctx3); memset(&o2, 0, sizeof o2); memset(&o3, 0, sizeof o3);
    memset(&want, 0, sizeof want);
    remove("build/test-init-bad.safetensors");
    if (cli_run(&toy_run, "init", "unet2d", "--config", "vectors/toy/hint/unet/config.json", "--procedural", "5", "--out",
                init2d_path, (char *)NULL) || toy_run.rc ||
        cli_run(&toy_run, "init", "unet", "--config", "vectors/toy/makeavid/unet/config.json", "--procedural", "6", "--from-2d",
                init2d_path, "--out", init3d_path, (char *)NULL) || toy_run.rc) {
        harness_failf(__func__, "mavref init exited %d: %s", toy_run.rc, toy_run.err);
        return 1;
    }
    if (cli_run(&toy_run, "init", "unet2d", "--config", "vectors/toy/hint/unet/config.json", "--procedural", "6", "--from-2d",
                init2d_path, "--out", "build/test-init-bad.safetensors", (char *)NULL) || toy_run.rc != 2) {
        harness_failf(__func__, "init unet2d --from-2d: exit %d, expected 2", toy_run.rc);
        fails++;
    }
    if (cli_run(&toy_run, "init", "unet", "--config", "vectors/toy/makeavid/unet/config.json", "--procedural", "6", "--from-2d",
                "vectors/toy/makeavid/text_encoder/model.safetensors", "--out", "build/test-init-bad.safetensors", (char *)NULL) ||
        toy_run.rc != 2) {
        harness_failf(__func__, "--from-2d a text encoder: exit %d, expected 2", toy_run.rc);
        fails++;
    }
    if ((probe = fopen("build/test-init-bad.safetensors", "rb"))) { fclose(probe); harness_failf(__func__, "a refused init wrote its --out"); fails++; }
    unet_config_default(&c2); unet_config_default(&c3);
    c2.temporal = 0; c2.in_channels = 4;
    if (unet_config_load(&c2, "vectors/toy/hint/unet/config.json") || unet_config_load(&c3, "vectors/toy/makeavid/unet/config.json") ||
        unet_declare_params(&p2, &c2) || unet_declare_params(&p3, &c3) || params_alloc(&p2) || params_alloc(&p3) ||
        params_load(&p2, init2d_path, 0) || params_load(&p3, init3d_path, 0)) {
        harness_failf(__func__, "%s", mv_error());
        fails++;
        goto done;
    }
    fails += check_init_file(__func__, &p2, &p3);
    // a still video: frame 0 repeated; mask and hint channels arbitrary (their weights are zero)
    Cc = (size_t)c3.cross_attention_dim;
    if (tensor_alloc_v(&x2, 4, F, (size_t)4, H, W) || tensor_alloc_v(&x3, 5, (size_t)1, (size_t)9, F, H, W) ||
        tensor_alloc_v(&t2, 1, F) || tensor_alloc_v(&t3, 1, (size_t)1) || tensor_alloc_v(&ctx2, 3, F, T, Cc) ||
        tensor_alloc_v(&ctx3, 3, (size_t)1, T, Cc) || tensor_alloc_v(&want, 5, (size_t)1, (size_t)4, F, H, W) ||
        noise_normal(ctx3.data, ctx3.numel, 11, "init ctx") || noise_normal(x3.data, x3.numel, 12, "init x")) {
        fails++;
        goto done;
    }
    for (c = 0; c < 4; c++)
        for (f = 0; f < F; f++)
            for (i = 0; i < S; i++) {
                x3.data[(c * F + f) * S + i] = x3.data[c * F * S + i];
                x2.data[(f * 4 + c) * S + i] = x3.data[c * F * S + i];
            }
    t3.data[0] = (real)437;
    for (f = 0; f < F; f++) {
        t2.data[f] = (real)437;
        memcpy(ctx2.data + f * T * Cc, ctx3.data, T * Cc * sizeof(real));
    }
    if (unet_forward(&o2, &x2, &t2, &ctx2, &p2, &c2, NULL, NULL) || unet_forward(&o3, &x3, &t3, &ctx3, &p3, &c3, NULL, NULL)) {
        harness_failf(__func__, "%s", mv_error());
        fails++;
        goto done;
    }
    for (c = 0; c < 4; c++) // (F,4,H,W) -> (1,4,F,H,W)
        for (f = 0; f < F; f++) memcpy(want.data + (c * F + f) * S, o2.data + (f * 4 + c) * S, S * sizeof(real));
    fails += expect_close("init_from_2d", "still video, pseudo-3D vs 2-D per frame", &o3, &want, MAVREF_PRECISION == 64 ? 1e-12 : 1e-5);
done:
    tensor_free(&x2); tensor_free(&x3); tensor_free(&t2); tensor_free(&t3); tensor_free(&ctx2); tensor_free(&ctx3);
    tensor_free(&o2); tensor_free(&o3); tensor_free(&want);
    free_params(&p2); free_params(&p3);
    remove(init2d_path); remove(init3d_path);
    return fails ? 1 : 0;
}

// init_whiten: `mavref init vae --weights V --whiten DATA` (SPEC.md 10.5) on a procedural VAE of
// the toy config. DATA: the VAE's posterior means of three random images. The whitened VAE's
// means of the same images, x 0.18215, have mean 0 and variance 1 per channel; decoding
// them gives the image the original VAE decodes from its own means (to rounding).
static const char *const wv_path = "build/test-whiten-v-f" STR(MAVREF_PRECISION) ".safetensors";
static const char *const wd_path = "build/test-whiten-d-f" STR(MAVREF_PRECISION) ".safetensors";
static const char *const ww_path = "build/test-whiten-w-f" STR(MAVREF_PRECISION) ".safetensors";

int test_init_whiten(void) {
    ParamTable pv, pw;
    VAEConfig c;
    Tensor img, zv, zw, dv, dw;
    StWriter w;
    size_t B = 3, L, per, b, ch, i;
    int fails = 0;
    char name[32];
    params_init(&pv); params_init(&pw); st_writer_init(&w);
    memset(&img, 0, sizeof img); memset(&zv, 0, sizeof zv); memset(&zw, 0, sizeof zw);
    memset(&dv, 0, sizeof dv); memset(&dw, 0, sizeof dw);
    vae_config_default(&c);
    if (cli_run(&toy_run, "init", "vae", "--config", "vectors/toy/makeavid/vae/config.json", "--procedural", "8", "--out", wv_path,
                (char *)NULL) || toy_run.rc) {
        harness_failf(__func__, "mavref init vae exited %d: %s", toy_run.rc, toy_run.err);
        return 1;
    }
    if (vae_config_load(&c, "vectors/toy/makeavid/vae/config.json") || vae_declare_params(&pv, &c) || params_alloc(&pv) ||
        params_load(&pv, wv_path, 0) || tensor_alloc_v(&img, 4, B, (size_t)3, (size_t)32, (size_t)32) ||
        noise_normal(img.data, img.numel, 21, "whiten images") || vae_encode(&zv, NULL, &img, &pv, &c)) {
        harness_failf(__func__, "%s", mv_error());
        fails++;
        goto done;
    }
    L = zv.shape[1]; per = zv.shape[2] * zv.shape[3];
    for (b = 0; b < B && !fails; b++) { // latents.<b>: (1, L, h, w), as encode-clips writes (F, L, h, w)
        Tensor one;
        memset(&one, 0, sizeof one);
        snprintf(name, sizeof name, "latents.%lu", (unsigned long)b);
        if (tensor_alloc_v(&one, 4, (size_t)1, L, zv.shape[2], zv.shape[3])) { fails++; break; }
        memcpy(one.data, zv.data + b * L * per, L * per * sizeof(real));
        if (st_writer_add(&w, name, &one, ST_REAL)) fails++;
        tensor_free(&one);
    }
    if (fails || st_writer_save(&w, wd_path)) { harness_failf(__func__, "writing %s", wd_path); fails++; goto done; }
    if (cli_run(&toy_run, "init", "vae", "--config", "vectors/toy/makeavid/vae/config.json", "--procedural", "8", "--whiten", wd_path,
                "--out", ww_path, (char *)NULL) || toy_run.rc != 2) {
        harness_failf(__func__, "--whiten without --weights: exit %d, expected 2", toy_run.rc);
        fails++;
    }
    if (cli_run(&toy_run, "init", "vae", "--config", "vectors/toy/makeavid/vae/config.json", "--weights", wv_path, "--whiten", wd_path,
                "--out", ww_path, (char *)NULL) || toy_run.rc) {
        harness_failf(__func__, "mavref init vae --whiten exited %d: %s", toy_run.rc, toy_run.err);
        fails++;
        goto done;
    }
    if (vae_declare_params(&pw, &c) || params_alloc(&pw) || params_load(&pw, ww_path, 0) || vae_encode(&zw, NULL, &img, &pw, &c)) {
        harness_failf(__func__, "%s", mv_error());
        fails++;
        goto done;
    }
    for (ch = 0; ch < L; ch++) { // 0.18215 z': mean 0, variance 1 over the three images
        double s = 0, q = 0, n = (double)(B * per);
        for (b = 0; b < B; b++)
            for (i = 0; i < per; i++) { double v = LATENT_SCALE * zw.data[(b * L + ch) * per + i]; s += v; q += v * v; }
        printf("    channel %lu: 0.18215 z' mean %.3e variance %.9f\n", (unsigned long)ch, s / n, q / n - (s / n) * (s / n));
        if (fabs(s / n) > 1e-5 || fabs(q / n - (s / n) * (s / n) - 1) > 1e-5) { // float32 files, both builds
            harness_failf(__func__, "channel %lu is not whitened", (unsigned long)ch);
            fails++;
        }
    }
    if (vae_decode(&dv, &zv, &pv, &c) || vae_decode(&dw, &zw, &pw, &c)) { harness_failf(__func__, "%s", mv_error()); fails++; goto done; }
    // the files hold float32 (init's default): in the float64 build the whitened weights are
    // rounded to float32 on the way (relative 6e-8 each), the rest is exact
    fails += expect_close("init_whiten", "decode(whitened VAE, its latents) vs decode(VAE, its latents)", &dw, &dv,
                          MAVREF_PRECISION == 64 ? 1e-6 : 1e-5);
done:
    tensor_free(&img); tensor_free(&zv); tensor_free(&zw); tensor_free(&dv); tensor_free(&dw);
    free_params(&pv); free_params(&pw); st_writer_free(&w);
    remove(wv_path); remove(wd_path); remove(ww_path);
    return fails ? 1 : 0;
}
