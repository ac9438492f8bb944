// bench_model.c: model-level figures for `make bench` (printed as NAME = NUMBER lines).
//
//   bench_model tokenize FILE...      tokenizer rate over the corpus strings of the given
//                                     tokenize_*.safetensors files
//   bench_model unet B F H W          wall time of one UNet forward of the real makeavid
//                                     configuration with procedural weights (threads: all)
//   bench_model train B F H W [recompute]
//                                     wall time of one forward + backward (every parameter's
//                                     gradient) of the same, keeping every stage's input or
//                                     (recompute) only checkpoints, and the peak memory
//   bench_model unet B F H W NAME     the same, its lines named NAME_* (NAME_gflops: the
//                                     counted FLOPs, ref/flops.h, over the wall time)
//   bench_model unet2d B H W [NAME]   the same for SD 1.5's 2-D UNet (the hint model), sample
//                                     (B,4,H,W) (default NAME unet2d_forward)
//   bench_model unet ... NAME warm, unet2d ... NAME warm
//                                     time the second of two calls, as tools/bench_torch.py and
//                                     bench_jax.py time their peers (the first call pays the
//                                     page faults of every buffer)
//   bench_model vae decode|encode B H W NAME
//                                     wall time of vae_decode of B latents to H x W images (one
//                                     call per image, as generate) or vae_encode of B images
//   bench_model trainstep F H W       one train_step of upstream's configuration: batch 1, F
//                                     frames, H x W latents, temporal layers only, recompute,
//                                     procedural weights (train_step_real_s, _peak_gb)
//   bench_model flops unet CONFIG|- B F H W T
//                                     the FLOP count (ref/flops.h) of one UNet forward of the
//                                     configuration (a config.json, or - for makeavid's) on
//                                     sample (B,Cin,F,H,W) with T context tokens
//   bench_model flops vae encode|decode B H W   the same of the VAE at H x W pixels
//   bench_model flops clip B T
#define _POSIX_C_SOURCE 200809L // clock_gettime
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../ref/flops.h"
#include "../ref/model_dir.h"
#include "../ref/procedural.h"
#include "../ref/safetensors.h"
#include "../ref/threads.h"
#include "../ref/tokenizer.h"
#include "../ref/train.h"
#include "../ref/unet.h"

// Wall-clock seconds with POSIX's monotonic clock (tools/ may use POSIX; ref/ stays C99). The
// figures are single runs; clock() (CPU time of all threads) is reported beside them.
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// The process's peak resident memory in kB (Linux: VmHWM in /proc/self/status), or -1.
static long peak_rss_kb(void) {
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
    fclose(f);
    return kb;
}

static int bench_tokenize(int argc, char **argv) {
    Tokenizer tok;
    size_t nstr = 0, nbytes = 0, k;
    int i, rep, reps = 0;
    int32_t ids[CLIP_CONTEXT];
    clock_t c0;
    double cpu, w0;
    unsigned char **texts = NULL;
    size_t *lens = NULL, cap = 0;
    if (build_tokenizer(&tok, "vectors/clip/clip_merges.txt")) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    for (i = 0; i < argc; i++) {
        StFile f;
        int64_t *txt = NULL, *off = NULL;
        size_t nt, no;
        if (st_open(&f, argv[i]) || st_read_i64(&f, "text", &txt, &nt) || st_read_i64(&f, "text_offsets", &off, &no)) {
            fprintf(stderr, "%s\n", mv_error());
            return 1;
        }
        for (k = 0; k + 1 < no; k++) {
            size_t n = (size_t)(off[k + 1] - off[k]), j;
            if (nstr == cap) {
                cap = cap ? 2 * cap : 1024;
                texts = (unsigned char **)realloc(texts, cap * sizeof *texts);
                lens = (size_t *)realloc(lens, cap * sizeof *lens);
                if (!texts || !lens) return 1;
            }
            texts[nstr] = (unsigned char *)malloc(n + 1);
            if (!texts[nstr]) return 1;
            for (j = 0; j < n; j++) texts[nstr][j] = (unsigned char)txt[off[k] + j];
            lens[nstr++] = n;
            nbytes += n;
        }
        free(txt);
        free(off);
        st_close(&f);
    }
    c0 = clock();
    w0 = now();
    for (rep = 0; rep < 1000 && (reps < 3 || now() - w0 < 3.0); rep++, reps++)
        for (k = 0; k < nstr; k++) (void)tokenize(&tok, (const char *)texts[k], lens[k], ids);
    cpu = (double)(clock() - c0) / CLOCKS_PER_SEC / reps;
    printf("tokenizer: %lu strings (%lu bytes) in %.3f s per pass (CPU time, %d passes)\n", (unsigned long)nstr,
           (unsigned long)nbytes, cpu, reps);
    printf("tokenize_corpus_s = %.4f\n", cpu);
    printf("tokenize_strings_per_s = %.0f\n", (double)nstr / cpu);
    for (k = 0; k < nstr; k++) free(texts[k]);
    free(texts);
    free(lens);
    free_tokenizer(&tok);
    return 0;
}

// name_gflop (the count) and name_gflops (over `seconds`) of a forward counted in *f.
static void print_rate(const char *name, const Flops *f, double seconds) {
    printf("%s_gflop = %.1f\n", name, flops_total(f) * 1e-9);
    if (seconds > 0) printf("%s_gflops = %.1f\n", name, flops_total(f) * 1e-9 / seconds);
}

// F = 0: SD 1.5's 2-D UNet (the hint model: the same configuration, 4 input channels, no
// temporal layers), sample (B,4,H,W); else the makeavid UNet, sample (B,9,F,H,W).
static int bench_unet(size_t B, size_t F, size_t H, size_t W, const char *name, int warm) {
    UNetConfig c;
    ParamTable pt;
    Tensor x, t, ctx, out;
    Flops fl;
    double w0, w1;
    clock_t c0;
    size_t i;
    int rc;
    char shape[96];
    unet_config_default(&c);
    if (F == 0) { c.temporal = 0; c.in_channels = 4; }
    params_init(&pt);
    rc = F == 0 ? tensor_alloc_v(&x, 4, B, (size_t)4, H, W) : tensor_alloc_v(&x, 5, B, (size_t)9, F, H, W);
    if (rc || unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 1) ||
        tensor_alloc_v(&t, 1, B) || tensor_alloc_v(&ctx, 3, B, (size_t)77, (size_t)768)) {
        fprintf(stderr, "%s\n", mv_error());
        return 1;
    }
    proc_fill(x.data, x.numel, 2, "sample", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 2, "context", 1.0, 0.0);
    for (i = 0; i < B; i++) t.data[i] = (real)(999 - 250 * i);
    if (warm) { // the untimed first call
        if (unet_forward(&out, &x, &t, &ctx, &pt, &c, NULL, NULL)) { fprintf(stderr, "%s\n", mv_error()); return 1; }
        tensor_free(&out);
    }
    c0 = clock();
    w0 = now();
    if (unet_forward(&out, &x, &t, &ctx, &pt, &c, NULL, NULL)) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    w1 = now();
    printf("UNet forward, %s configuration, sample %s, %d threads, %s call: %.2f s wall, %.1f s CPU\n", F ? "makeavid" : "SD 1.5 2-D",
           shape_str(shape, sizeof shape, x.ndim, x.shape), threads_count(), warm ? "second" : "first", w1 - w0,
           (double)(clock() - c0) / CLOCKS_PER_SEC);
    printf("%s_s = %.2f\n", name, w1 - w0);
    if (unet_flops(&fl, &c, B, F ? F : 1, H, W, 77) == MV_OK) print_rate(name, &fl, w1 - w0);
    printf("%s_peak_rss_kb = %ld\n", name, peak_rss_kb());
    tensor_free(&out); tensor_free(&x); tensor_free(&t); tensor_free(&ctx);
    free_params(&pt);
    return 0;
}

// One training step's UNet work on the real configuration with procedural weights: the taped
// forward, then the backward of L = sum(out * w) into a gradient table of every parameter.
static int bench_train(size_t B, size_t F, size_t H, size_t W, int recompute) {
    UNetConfig c;
    ParamTable pt, gt;
    UNetTape *tp;
    Tensor x, t, ctx, out, dout;
    double t0, t1, t2;
    clock_t c0, c1;
    long rss_weights;
    size_t i, tape_peak;
    const char *sfx = recompute ? "_recompute" : "";
    unet_config_default(&c);
    params_init(&pt);
    if (unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 1) || unet_grads_alloc(&gt, &pt) ||
        tensor_alloc_v(&x, 5, B, (size_t)9, F, H, W) || tensor_alloc_v(&t, 1, B) || tensor_alloc_v(&ctx, 3, B, (size_t)77, (size_t)768) ||
        tensor_alloc_v(&dout, 5, B, (size_t)4, F, H, W)) {
        fprintf(stderr, "%s\n", mv_error());
        return 1;
    }
    proc_fill(x.data, x.numel, 2, "sample", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 2, "context", 1.0, 0.0);
    proc_fill(dout.data, dout.numel, 3, "dout", 1.0, 0.0);
    for (i = 0; i < B; i++) t.data[i] = (real)(999 - 250 * i);
    memset(gt.arena, 0, gt.numel * sizeof(real)); // as train_step does: the gradients are resident
    rss_weights = peak_rss_kb();                   // parameters and gradients, before any activation
    c0 = clock();
    t0 = now();
    if (unet_tape_forward_mode(&tp, &out, &x, &t, &ctx, &pt, &c, recompute)) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    t1 = now();
    c1 = clock();
    if (unet_tape_backward(tp, &gt, NULL, &dout)) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    t2 = now();
    tape_peak = unet_tape_peak_bytes(tp);
    unet_tape_free(tp);
    printf("UNet training forward + backward (%s), makeavid configuration, sample (%lu,9,%lu,%lu,%lu), %d threads: "
           "forward %.1f s, backward %.1f s wall; %.1f + %.1f s CPU\n",
           recompute ? "checkpoints, segments recomputed" : "every stage input kept", (unsigned long)B, (unsigned long)F,
           (unsigned long)H, (unsigned long)W, threads_count(), t1 - t0, t2 - t1, (double)(c1 - c0) / CLOCKS_PER_SEC,
           (double)(clock() - c1) / CLOCKS_PER_SEC);
    printf("unet_train_forward%s_s = %.1f\n", sfx, t1 - t0);
    printf("unet_backward%s_s = %.1f\n", sfx, t2 - t1);
    printf("unet_tape%s_peak_bytes = %lu\n", sfx, (unsigned long)tape_peak);
    if (rss_weights > 0) {
        printf("unet_train%s_peak_rss_kb = %ld\n", sfx, peak_rss_kb());
        printf("unet_train%s_activations_peak_kb = %ld\n", sfx, peak_rss_kb() - rss_weights);
    }
    tensor_free(&out); tensor_free(&dout); tensor_free(&x); tensor_free(&t); tensor_free(&ctx);
    free_params(&gt); free_params(&pt);
    return 0;
}

// vae_decode of B latents one at a time (as mavref generate decodes its frames), or vae_encode
// of B images in one call, with procedural weights.
static int bench_vae(int decode, size_t B, size_t H, size_t W, const char *name) {
    VAEConfig c;
    ParamTable pt;
    Tensor in, out, logvar;
    Flops fl;
    size_t fac, b;
    double w0, w1;
    vae_config_default(&c);
    params_init(&pt);
    fac = (size_t)1 << (c.n_blocks - 1);
    if (vae_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 2) ||
        (decode ? tensor_alloc_v(&in, 4, (size_t)1, (size_t)c.latent_channels, H / fac, W / fac)
                : tensor_alloc_v(&in, 4, B, (size_t)3, H, W))) {
        fprintf(stderr, "%s\n", mv_error());
        return 1;
    }
    proc_fill(in.data, in.numel, 2, "vae input", 1.0, 0.0);
    w0 = now();
    for (b = 0; b < (decode ? B : 1); b++) {
        if (decode ? vae_decode(&out, &in, &pt, &c) : vae_encode(&out, &logvar, &in, &pt, &c)) { fprintf(stderr, "%s\n", mv_error()); return 1; }
        tensor_free(&out);
        if (!decode) tensor_free(&logvar);
    }
    w1 = now();
    printf("VAE %s of %lu %s at %lux%lu pixels, %d threads: %.2f s wall\n", decode ? "decode" : "encode", (unsigned long)B,
           decode ? "latents" : "images", (unsigned long)W, (unsigned long)H, threads_count(), w1 - w0);
    printf("%s_s = %.2f\n", name, w1 - w0);
    if (vae_flops(&fl, &c, decode, B, H, W) == MV_OK) print_rate(name, &fl, w1 - w0);
    printf("%s_peak_rss_kb = %ld\n", name, peak_rss_kb());
    tensor_free(&in);
    free_params(&pt);
    return 0;
}

// One training step as `mavref train --recompute` takes it (temporal layers only: gradients
// and moments of the trainable tensors), batch 1, procedural weights and inputs.
static int bench_trainstep(size_t F, size_t H, size_t W) {
    UNetConfig c;
    TrainConfig tc;
    ParamTable pt, gt;
    AdamState opt;
    Tensor x, t, ctx, noise;
    Flops fl;
    double w0, w1, loss, l2;
    unet_config_default(&c);
    train_config_default(&tc);
    tc.recompute = 1;
    params_init(&pt);
    if (unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 1) || train_grads_alloc(&gt, &pt, &tc) ||
        adam_init(&opt, &pt, &tc) || tensor_alloc_v(&x, 5, (size_t)1, (size_t)9, F, H, W) || tensor_alloc_v(&t, 1, (size_t)1) ||
        tensor_alloc_v(&ctx, 3, (size_t)1, (size_t)77, (size_t)768) || tensor_alloc_v(&noise, 5, (size_t)1, (size_t)4, F, H, W)) {
        fprintf(stderr, "%s\n", mv_error());
        return 1;
    }
    proc_fill(x.data, x.numel, 2, "sample", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 2, "context", 1.0, 0.0);
    proc_fill(noise.data, noise.numel, 3, "noise", 1.0, 0.0);
    t.data[0] = 500;
    w0 = now();
    if (train_step(&pt, &gt, &opt, &tc, &c, &x, &t, &noise, &ctx, &loss, &l2, NULL)) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    w1 = now();
    printf("training step, makeavid configuration, temporal layers only, recompute, sample (1,9,%lu,%lu,%lu), %d threads: "
           "%.1f s wall, loss %.6f\n", (unsigned long)F, (unsigned long)H, (unsigned long)W, threads_count(), w1 - w0, loss);
    printf("train_step_real_s = %.1f\n", w1 - w0);
    // the model's work: forward + backward (3 forwards' products; mavref also recomputes)
    if (unet_flops(&fl, &c, 1, F, H, W, 77) == MV_OK) {
        fl.conv *= 3; fl.dense *= 3; fl.attn *= 3;
        print_rate("train_step_real", &fl, w1 - w0);
    }
    printf("train_step_real_peak_gb = %.2f\n", (double)peak_rss_kb() * 1024.0 / 1e9);
    tensor_free(&x); tensor_free(&t); tensor_free(&ctx); tensor_free(&noise);
    adam_free(&opt);
    free_params(&gt); free_params(&pt);
    return 0;
}

// Bytes of the weights `mavref generate` holds: UNet, VAE and CLIP text encoder (defaults).
static int bench_weights(void) {
    UNetConfig u;
    VAEConfig v;
    ClipConfig c;
    ParamTable a, b, d;
    unet_config_default(&u); vae_config_default(&v); clip_config_default(&c);
    params_init(&a); params_init(&b); params_init(&d);
    if (unet_declare_params(&a, &u) || vae_declare_params(&b, &v) || clip_declare_params(&d, &c)) return 1;
    printf("weights: UNet %lu, VAE %lu, CLIP %lu parameters\n", (unsigned long)a.numel, (unsigned long)b.numel, (unsigned long)d.numel);
    printf("generate_weights_bytes = %.0f\n", (double)(a.numel + b.numel + d.numel) * sizeof(real));
    free_params(&a); free_params(&b); free_params(&d);
    return 0;
}

static int print_flops(const char *what, int rc, const Flops *f) {
    if (rc) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    printf("%s_flops = %.0f\n%s_flops_conv = %.0f\n%s_flops_dense = %.0f\n%s_flops_attn = %.0f\n", what, flops_total(f), what,
           f->conv, what, f->dense, what, f->attn);
    return 0;
}

static int bench_flops(int argc, char **argv) {
    Flops f;
    if (argc == 7 && !strcmp(argv[0], "unet")) {
        UNetConfig c;
        unet_config_default(&c);
        if (strcmp(argv[1], "-") && unet_config_load(&c, argv[1])) { fprintf(stderr, "%s\n", mv_error()); return 1; }
        return print_flops("unet_forward", unet_flops(&f, &c, (size_t)atol(argv[2]), (size_t)atol(argv[3]), (size_t)atol(argv[4]),
                                                      (size_t)atol(argv[5]), (size_t)atol(argv[6])), &f);
    }
    if (argc == 5 && !strcmp(argv[0], "vae")) {
        VAEConfig c;
        vae_config_default(&c);
        return print_flops(!strcmp(argv[1], "decode") ? "vae_decode" : "vae_encode",
                           vae_flops(&f, &c, !strcmp(argv[1], "decode"), (size_t)atol(argv[2]), (size_t)atol(argv[3]), (size_t)atol(argv[4])), &f);
    }
    if (argc == 3 && !strcmp(argv[0], "clip")) {
        ClipConfig c;
        clip_config_default(&c);
        return print_flops("clip_text", clip_flops(&f, &c, (size_t)atol(argv[1]), (size_t)atol(argv[2])), &f);
    }
    fprintf(stderr, "usage: bench_model flops unet CONFIG|- B F H W T | flops vae encode|decode B H W | flops clip B T\n");
    return 2;
}

// The published UNet read from a folder (DIR/unet/config.json + diffusion_flax_model.msgpack,
// written by tools/bench_msgpack.py): the time to read it into the parameter arena, and the
// process's peak memory against the weights' bytes (issue 14: at most 1.1).
static int bench_load(const char *dir) {
    ParamTable pt;
    UNetConfig c;
    double t0, dt;
    long rss;
    params_init(&pt);
    t0 = now();
    if (md_load_unet(&pt, &c, dir, 1)) { fprintf(stderr, "bench_model load: %s\n", mv_error()); free_params(&pt); return 1; }
    dt = now() - t0;
    rss = peak_rss_kb();
    printf("load_unet_msgpack_s = %.2f\n", dt);
    printf("load_unet_msgpack_params = %lu\n", (unsigned long)pt.numel);
    printf("load_peak_rss_kb = %ld\n", rss);
    printf("load_peak_rss_vs_weights = %.3f\n", (double)rss * 1024.0 / ((double)pt.numel * sizeof(real)));
    free_params(&pt);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "flops")) return bench_flops(argc - 2, argv + 2);
    if (argc == 3 && !strcmp(argv[1], "load")) return bench_load(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "weights")) return bench_weights();
    if (argc >= 3 && !strcmp(argv[1], "tokenize")) return bench_tokenize(argc - 2, argv + 2);
    if ((argc == 5 || argc == 6 || (argc == 7 && !strcmp(argv[6], "warm"))) && !strcmp(argv[1], "unet2d"))
        return bench_unet((size_t)atol(argv[2]), 0, (size_t)atol(argv[3]), (size_t)atol(argv[4]), argc >= 6 ? argv[5] : "unet2d_forward",
                          argc == 7);
    if ((argc == 6 || argc == 7 || (argc == 8 && !strcmp(argv[7], "warm"))) && !strcmp(argv[1], "unet"))
        return bench_unet((size_t)atol(argv[2]), (size_t)atol(argv[3]), (size_t)atol(argv[4]), (size_t)atol(argv[5]),
                          argc >= 7 ? argv[6] : "unet_forward", argc == 8);
    if (argc == 7 && !strcmp(argv[1], "vae"))
        return bench_vae(!strcmp(argv[2], "decode"), (size_t)atol(argv[3]), (size_t)atol(argv[4]), (size_t)atol(argv[5]), argv[6]);
    if (argc == 5 && !strcmp(argv[1], "trainstep"))
        return bench_trainstep((size_t)atol(argv[2]), (size_t)atol(argv[3]), (size_t)atol(argv[4]));
    if ((argc == 6 || (argc == 7 && !strcmp(argv[6], "recompute"))) && !strcmp(argv[1], "train"))
        return bench_train((size_t)atol(argv[2]), (size_t)atol(argv[3]), (size_t)atol(argv[4]), (size_t)atol(argv[5]), argc == 7);
    fprintf(stderr, "usage: bench_model tokenize FILE... | unet B F H W [NAME [warm]] | unet2d B H W [NAME [warm]] | train B F H W [recompute] | "
                    "vae decode|encode B H W NAME | trainstep F H W | flops ...\n");
    return 2;
}
