// test_model_bad.c: a published model folder that is broken, as the commands see it. A copy of
// the fixture folder vectors/model/makeavid is made under build/ at test time and one file of it
// is truncated, corrupted, misnamed or replaced; then `mavref generate --model`, `train`,
// `encode-text`, `unet`, `tokenize` and `convert` are run (in-process, tests/test_cli.c) and
// must refuse it: exit status 2, one line naming the bad file (and the tensor or key), no output
// file created, no PREFIX.tmp left, and an existing output left as it was (SPEC.md section 12.7).
//
// The folders need mkdir (POSIX); elsewhere only the cases on single files run.
#if defined(__unix__) || defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L // mkdir, rmdir
#include <sys/stat.h>
#include <unistd.h>
#define HAVE_POSIX 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define ROOT "build/model-bad-f" STR(MAVREF_PRECISION)
#define MODEL ROOT "/makeavid"
#define OUT ROOT "-out"       // generate's PREFIX, train's P, convert's OUT and encode-text's OUT stem
#define SRC "vectors/model/makeavid"
#define MD_UNET_CONFIG SRC "/unet/config.json"
#define FAIL(...) (harness_failf(__VA_ARGS__), 1) // print a FAIL line, count 1

#ifdef HAVE_POSIX
static const char *const subdirs[] = {"unet", "vae", "text_encoder", "tokenizer", "scheduler", NULL};
static const char *const files[] = {
    "model_index.json", "unet/config.json", "unet/diffusion_flax_model.msgpack", "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.bin",
    "text_encoder/config.json", "text_encoder/pytorch_model.bin", "tokenizer/vocab.json", "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json", "scheduler/scheduler_config.json", NULL};
// files a case may add to the copy (removed with it)
static const char *const extra[] = {"vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", NULL};
#endif
// every output a command of these tests could write, beside OUT
static const char *const outputs[] = {".gif", ".y4m", "_latents.safetensors", "_latents.safetensors.tmp", ".gif.tmp", ".y4m.tmp",
                                      ".params.safetensors", ".opt.safetensors", ".params.safetensors.tmp",
                                      ".opt.safetensors.tmp", ".safetensors", ".safetensors.tmp", ".tmp", NULL};

#ifdef HAVE_POSIX
static long file_size(const char *path) {
    FILE *fp = fopen(path, "rb");
    long n;
    if (!fp) return -1;
    n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    fclose(fp);
    return n;
}
#endif

// Copy the first `keep` bytes of src to dst (keep < 0: all of it).
static int copy_file(const char *src, const char *dst, long keep) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    char buf[65536];
    long done = 0;
    int ok = in && out;
    while (ok && (keep < 0 || done < keep)) {
        size_t want = keep < 0 || keep - done > (long)sizeof buf ? sizeof buf : (size_t)(keep - done);
        size_t n = fread(buf, 1, want, in);
        if (n == 0) break;
        ok = fwrite(buf, 1, n, out) == n;
        done += (long)n;
    }
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok ? 0 : FAIL("model_bad", "cannot copy %s to %s", src, dst);
}

static int write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    int ok = fp && fputs(text, fp) >= 0;
    if (fp && fclose(fp) != 0) ok = 0;
    return ok ? 0 : 1;
}

static int exists(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp) fclose(fp);
    return fp != NULL;
}

static int same_text(const char *path, const char *text) {
    char buf[256];
    FILE *fp = fopen(path, "rb");
    size_t n;
    if (!fp) return 0;
    n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strcmp(buf, text) == 0;
}

static void clear_outputs(void) {
    char p[256];
    int k;
    for (k = 0; outputs[k]; k++) { snprintf(p, sizeof p, "%s%s", OUT, outputs[k]); remove(p); }
    remove(OUT);
}

#ifdef HAVE_POSIX
// A fresh copy of the fixture folder under MODEL.
static int fresh_copy(void) {
    char a[256], b[256];
    int k, fails = 0;
    mkdir(ROOT, 0700);
    mkdir(MODEL, 0700);
    for (k = 0; subdirs[k]; k++) { snprintf(a, sizeof a, "%s/%s", MODEL, subdirs[k]); mkdir(a, 0700); }
    for (k = 0; extra[k]; k++) { snprintf(a, sizeof a, "%s/%s", MODEL, extra[k]); remove(a); }
    for (k = 0; files[k]; k++) {
        snprintf(a, sizeof a, "%s/%s", SRC, files[k]);
        snprintf(b, sizeof b, "%s/%s", MODEL, files[k]);
        fails += copy_file(a, b, -1);
    }
    return fails;
}

static void remove_copy(void) {
    char a[256];
    int k;
    for (k = 0; files[k]; k++) { snprintf(a, sizeof a, "%s/%s", MODEL, files[k]); remove(a); }
    for (k = 0; extra[k]; k++) { snprintf(a, sizeof a, "%s/%s", MODEL, extra[k]); remove(a); }
    for (k = 0; subdirs[k]; k++) { snprintf(a, sizeof a, "%s/%s", MODEL, subdirs[k]); rmdir(a); }
    rmdir(MODEL);
}

// Remove the copy's file `rel`: 0, or 1 after a FAIL line.
static int remove_rel(const char *rel) {
    char a[256];
    snprintf(a, sizeof a, "%s/%s", MODEL, rel);
    return remove(a) == 0 ? 0 : FAIL("model_bad", "cannot remove %s", a);
}

// Cut the copy's file `rel` to a fraction of its size.
static int truncate_copy(const char *rel, double frac) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/%s", SRC, rel);
    snprintf(b, sizeof b, "%s/%s", MODEL, rel);
    return copy_file(a, b, (long)((double)file_size(a) * frac));
}

// The Flax-named tensors of `expected` written to the copy's `rel`, but without tensor `drop`
// and with tensor `shrink` cut to its first half (a wrong shape).
static int write_variant(const char *expected, const char *rel, const char *drop, const char *shrink) {
    StFile f;
    StWriter w;
    char path[256];
    size_t i;
    int rc = 0;
    snprintf(path, sizeof path, "%s/%s", MODEL, rel);
    if (st_open(&f, expected)) return FAIL("model_bad", "%s", mv_error());
    st_writer_init(&w);
    for (i = 0; i < f.count && !rc; i++) {
        const StEntry *e = &f.entries[i];
        Tensor t;
        if (drop && !strcmp(e->name, drop)) continue;
        if (st_read(&f, e->name, &t)) { rc = 1; break; }
        if (shrink && !strcmp(e->name, shrink)) { t.shape[t.ndim - 1] /= 2; t.numel /= 2; }
        rc = st_writer_add(&w, e->name, &t, ST_F32) != 0;
        tensor_free(&t);
    }
    rc = rc || st_writer_save(&w, path) != 0;
    if (rc) harness_failf("model_bad", "%s", mv_error());
    st_writer_free(&w);
    st_close(&f);
    return rc;
}
#endif

// The run was refused as bad input: exit 2, one line "mavref CMD: ..." naming `file` (and
// `what`), nothing on stdout but progress, no output file but the old one, which is unchanged.
static int expect_refused(const char *where, const CliRun *r, const char *cmd, const char *file, const char *what,
                          const char *kept) {
    char head[64], p[256];
    const char *nl = strchr(r->err, '\n');
    int k, fails = 0;
    snprintf(head, sizeof head, "mavref %s: ", cmd);
    if (r->rc != 2 || strncmp(r->err, head, strlen(head)) || !strstr(r->err, file) || (what && !strstr(r->err, what)) || !nl || nl[1])
        fails += FAIL(where, "expected exit 2 and one line '%s...' naming %s%s%s, got exit %d: %s", head, file,
                               what ? " and " : "", what ? what : "", r->rc, r->err);
    for (k = 0; outputs[k]; k++) {
        snprintf(p, sizeof p, "%s%s", OUT, outputs[k]);
        if (kept && !strcmp(p, kept)) continue;
        if (exists(p)) fails += FAIL(where, "%s was written", p);
    }
    if (exists(OUT) && (!kept || strcmp(kept, OUT))) fails += FAIL(where, "%s was written", OUT);
    if (kept && !same_text(kept, "previous contents\n")) fails += FAIL(where, "the existing %s was changed", kept);
    clear_outputs();
    return fails ? 1 : 0;
}

#define GEN_ARGS "--prompt", "a cat", "--frames", "2", "--height", "32", "--width", "32", "--steps", "1", "--quiet"

#ifdef HAVE_POSIX
// generate --model COPY --hint-model HINT: the copy as it is runs; then one file broken at a time.
static int generate_case(const char *where, const char *bad, const char *what) {
    CliRun r;
    cli_run(&r, "generate", "--model", MODEL, "--hint-model", "vectors/model/sd15", "--out", OUT, GEN_ARGS, (char *)NULL);
    return expect_refused(where, &r, "generate", bad, what, OUT ".gif");
}
#endif

int test_bad_model_generate(void) {
    int fails = 0;
#ifdef HAVE_POSIX
    CliRun r;
    char bad[256];
    clear_outputs();
    fails += fresh_copy();
    // the copy is good: generate writes its three files
    cli_run(&r, "generate", "--model", MODEL, "--hint-model", "vectors/model/sd15", "--out", OUT, GEN_ARGS, (char *)NULL);
    fails += EXPECT(r.rc == 0 && exists(OUT ".gif") && exists(OUT ".y4m") && exists(OUT "_latents.safetensors"),
                    "generate on the fixture's copy: exit %d: %s", r.rc, r.err);
    clear_outputs();
    // every case: an existing PREFIX.gif must survive
#define CASE(where, bad_rel, what, breakit)                                          \
    do {                                                                              \
        fails += fresh_copy();                                                        \
        fails += write_text(OUT ".gif", "previous contents\n");                       \
        snprintf(bad, sizeof bad, "%s/%s", MODEL, bad_rel);                           \
        fails += breakit;                                                             \
        fails += generate_case(where, bad, what);                                     \
    } while (0)
    CASE("unet msgpack truncated", "unet/diffusion_flax_model.msgpack", "truncated", truncate_copy("unet/diffusion_flax_model.msgpack", 0.5));
    CASE("unet msgpack cut in its tree", "unet/diffusion_flax_model.msgpack", NULL, truncate_copy("unet/diffusion_flax_model.msgpack", 0.001));
    CASE("vae .bin truncated", "vae/diffusion_pytorch_model.bin", NULL, truncate_copy("vae/diffusion_pytorch_model.bin", 0.9));
    CASE("text_encoder .bin empty", "text_encoder/pytorch_model.bin", NULL, truncate_copy("text_encoder/pytorch_model.bin", 0));
    // a VAE whose weights lack a tensor (safetensors by Flax names, the .bin gone)
    CASE("vae tensor missing", "vae/diffusion_pytorch_model.safetensors", "decoder.conv_out.bias",
         remove_rel("vae/diffusion_pytorch_model.bin") + write_variant("vectors/model/expected/makeavid_vae.safetensors", "vae/diffusion_pytorch_model.safetensors",
                                            "decoder.conv_out.bias", NULL));
    // a text encoder with a tensor of the wrong shape
    CASE("text_encoder wrong shape", "text_encoder/model.safetensors", "final_layer_norm",
         remove_rel("text_encoder/pytorch_model.bin") + write_variant("vectors/model/expected/makeavid_clip.safetensors", "text_encoder/model.safetensors", NULL,
                                            "text_model.final_layer_norm.scale"));
    // weights gone: the folder names what it looked for
    CASE("unet weights missing", "unet: no weight file", NULL,
         remove_rel("unet/diffusion_flax_model.msgpack") + remove_rel("unet/diffusion_pytorch_model.bin") +
             remove_rel("unet/diffusion_pytorch_model.safetensors"));
    // configs
    CASE("unet config malformed", "unet/config.json", "invalid JSON", write_text(bad, "{\"in_channels\": 9,,}"));
    CASE("vae config absurd", "vae/config.json", "norm_num_groups", write_text(bad, "{\"norm_num_groups\": 16}"));
    CASE("text_encoder config wrong activation", "text_encoder/config.json", "hidden_act", write_text(bad, "{\"hidden_act\": \"gelu\"}"));
    CASE("scheduler key unsupported", "scheduler/scheduler_config.json", "prediction_type",
         write_text(bad, "{\"prediction_type\": \"sample\"}"));
    CASE("scheduler key unknown", "scheduler/scheduler_config.json", "rescale_betas_zero_snr",
         write_text(bad, "{\"rescale_betas_zero_snr\": true}"));
    // the pipeline samples with the folder's schedule: one it cannot compute is refused
    CASE("scheduler betas out of range", "scheduler/scheduler_config.json", "beta_end",
         write_text(bad, "{\"beta_start\": 0.00085, \"beta_end\": 1.5}"));
    CASE("tokenizer vocab truncated", "tokenizer/vocab.json", NULL, truncate_copy("tokenizer/vocab.json", 0.5));
    CASE("tokenizer merges missing", "tokenizer/merges.txt", NULL, remove_rel("tokenizer/merges.txt"));
    // a model folder that does not exist
    fails += fresh_copy();
    cli_run(&r, "generate", "--model", ROOT "/no-such-model", "--out", OUT, GEN_ARGS, (char *)NULL);
    fails += expect_refused("no such folder", &r, "generate", ROOT "/no-such-model", NULL, NULL);
#undef CASE
    // a hint image of another size than the video, and --width that the model cannot take:
    // checked before any work (pipeline_check)
    {
        static const unsigned char ppm[] = "P6\n16 16\n255\n";
        FILE *fp = fopen(ROOT "/hint.ppm", "wb");
        int k;
        if (fp) {
            fwrite(ppm, 1, sizeof ppm - 1, fp);
            for (k = 0; k < 16 * 16 * 3; k++) fputc(k & 255, fp);
            fclose(fp);
        }
        fails += write_text(OUT ".gif", "previous contents\n");
        cli_run(&r, "generate", "--model", MODEL, "--hint", ROOT "/hint.ppm", "--out", OUT, GEN_ARGS, (char *)NULL);
        fails += expect_refused("hint image of another size", &r, "generate", ROOT "/hint.ppm", "16x16", OUT ".gif");
        remove(ROOT "/hint.ppm");
        fails += write_text(OUT ".gif", "previous contents\n");
        cli_run(&r, "generate", "--model", MODEL, "--hint-model", "vectors/model/sd15", "--out", OUT, "--prompt", "a cat", "--frames", "2",
                "--height", "32", "--width", "34", "--steps", "1", "--quiet", (char *)NULL);
        fails += expect_refused("width not a multiple", &r, "generate", "multiples of", "34", OUT ".gif");
    }
    // --hint-model: the single-file checkpoint truncated (the model folder is good)
    fails += copy_file("vectors/model/sd15.safetensors", ROOT "/sd15.safetensors", file_size("vectors/model/sd15.safetensors") / 2);
    fails += write_text(OUT ".gif", "previous contents\n");
    cli_run(&r, "generate", "--model", MODEL, "--hint-model", ROOT "/sd15.safetensors", "--hint-unet-config", "vectors/model/sd15/unet/config.json",
            "--out", OUT, GEN_ARGS, (char *)NULL);
    fails += expect_refused("hint-model single file truncated", &r, "generate", ROOT "/sd15.safetensors", "truncated", OUT ".gif");
    // ... and the single file for another configuration: a shape mismatch naming both names
    fails += write_text(OUT ".gif", "previous contents\n");
    cli_run(&r, "generate", "--model", MODEL, "--hint-model", "vectors/model/sd15.safetensors", "--out", OUT, GEN_ARGS, (char *)NULL);
    fails += expect_refused("hint-model single file, wrong config", &r, "generate", "vectors/model/sd15.safetensors", "conv_in",
                            OUT ".gif");
    remove(ROOT "/sd15.safetensors");
    remove_copy();
    rmdir(ROOT);
#else
    fails += EXPECT(1, "needs POSIX mkdir");
#endif
    return fails;
}

#ifdef HAVE_POSIX
// A data file for train at the fixture's size: latents.0 (2,4,8,8) and context.0 (5,8).
static int write_train_data(const char *path) {
    StWriter w;
    Tensor lat, ctx;
    size_t i;
    int rc;
    memset(&lat, 0, sizeof lat); memset(&ctx, 0, sizeof ctx);
    st_writer_init(&w);
    rc = tensor_alloc_v(&lat, 4, (size_t)2, (size_t)4, (size_t)8, (size_t)8) || tensor_alloc_v(&ctx, 2, (size_t)5, (size_t)8);
    for (i = 0; !rc && i < lat.numel; i++) lat.data[i] = (real)((double)(i % 13) / 13.0 - 0.5);
    for (i = 0; !rc && i < ctx.numel; i++) ctx.data[i] = (real)((double)(i % 7) / 7.0 - 0.5);
    rc = rc || st_writer_add(&w, "latents.0", &lat, ST_REAL) || st_writer_add(&w, "context.0", &ctx, ST_REAL) || st_writer_save(&w, path);
    if (rc) harness_failf("model_bad", "%s", mv_error());
    st_writer_free(&w);
    tensor_free(&lat);
    tensor_free(&ctx);
    return rc ? 1 : 0;
}

// UNet inputs at the fixture's size: sample (1,9,2,8,8), timesteps (1), context (1,5,8).
static int write_unet_inputs(const char *path) {
    StWriter w;
    Tensor x, t, c;
    int rc;
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&c, 0, sizeof c);
    st_writer_init(&w);
    rc = tensor_alloc_v(&x, 5, (size_t)1, (size_t)9, (size_t)2, (size_t)8, (size_t)8) || tensor_alloc_v(&t, 1, (size_t)1) ||
         tensor_alloc_v(&c, 3, (size_t)1, (size_t)5, (size_t)8) || st_writer_add(&w, "sample", &x, ST_REAL) ||
         st_writer_add(&w, "timesteps", &t, ST_REAL) || st_writer_add(&w, "context", &c, ST_REAL) || st_writer_save(&w, path);
    if (rc) harness_failf("model_bad", "%s", mv_error());
    st_writer_free(&w);
    tensor_free(&x); tensor_free(&t); tensor_free(&c);
    return rc ? 1 : 0;
}
#endif

// train --model, --resume, --weights; encode-text, unet, tokenize --model: the same refusals.
int test_bad_model_train(void) {
    int fails = 0;
#ifdef HAVE_POSIX
    CliRun r;
    const char *data = ROOT "/data.safetensors", *p0 = ROOT "/p0";
    const char *cfg = MODEL "/unet/config.json";
    clear_outputs();
    fails += fresh_copy();
    fails += write_train_data(data);
    // a good run P0 to resume from
    cli_run(&r, "train", "--model", MODEL, "--data", data, "--steps", "1", "--frames", "2", "--out", p0, (char *)NULL);
    fails += EXPECT(r.rc == 0, "train on the fixture's copy: exit %d: %s", r.rc, r.err);
    // --resume of a truncated optimizer state, and of truncated parameters
    fails += copy_file(ROOT "/p0.opt.safetensors", ROOT "/p1.opt.safetensors", file_size(ROOT "/p0.opt.safetensors") - 100);
    fails += copy_file(ROOT "/p0.params.safetensors", ROOT "/p1.params.safetensors", -1);
    fails += write_text(OUT ".params.safetensors", "previous contents\n");
    cli_run(&r, "train", "--resume", ROOT "/p1", "--config", cfg, "--data", data, "--steps", "1", "--frames", "2", "--out", OUT, (char *)NULL);
    fails += expect_refused("resume truncated opt", &r, "train", ROOT "/p1.opt.safetensors", "truncated", OUT ".params.safetensors");
    fails += copy_file(ROOT "/p0.params.safetensors", ROOT "/p1.params.safetensors", 4000);
    cli_run(&r, "train", "--resume", ROOT "/p1", "--config", cfg, "--data", data, "--steps", "1", "--frames", "2", "--out", OUT, (char *)NULL);
    fails += expect_refused("resume truncated params", &r, "train", ROOT "/p1.params.safetensors", NULL, NULL);
    // --model with a truncated UNet
    fails += truncate_copy("unet/diffusion_flax_model.msgpack", 0.7);
    fails += write_text(OUT ".params.safetensors", "previous contents\n");
    cli_run(&r, "train", "--model", MODEL, "--data", data, "--steps", "1", "--frames", "2", "--out", OUT, (char *)NULL);
    fails += expect_refused("train --model truncated unet", &r, "train", MODEL "/unet/diffusion_flax_model.msgpack", NULL,
                            OUT ".params.safetensors");
    // --weights of the wrong network
    cli_run(&r, "train", "--weights", "vectors/model/expected/makeavid_vae.safetensors", "--config", cfg, "--data", data, "--steps", "1",
            "--frames", "2", "--out", OUT, (char *)NULL);
    fails += expect_refused("train --weights of the VAE", &r, "train", "makeavid_vae.safetensors", NULL, NULL);
    // a data file that is not one
    cli_run(&r, "train", "--model", ROOT "/p0", "--data", cfg, "--steps", "1", "--out", OUT, (char *)NULL);
    fails += expect_refused("train --model not a folder", &r, "train", ROOT "/p0", NULL, NULL);
    fails += fresh_copy();
    cli_run(&r, "train", "--model", MODEL, "--data", cfg, "--steps", "1", "--frames", "2", "--out", OUT, (char *)NULL);
    fails += expect_refused("train --data not safetensors", &r, "train", cfg, NULL, NULL);
    // encode-text, unet, tokenize with a broken text encoder / UNet / tokenizer
    fails += truncate_copy("text_encoder/pytorch_model.bin", 0.5);
    fails += write_text(OUT, "previous contents\n");
    cli_run(&r, "encode-text", "--model", MODEL, "--out", OUT, "a cat", (char *)NULL);
    fails += expect_refused("encode-text --model truncated", &r, "encode-text", MODEL "/text_encoder/pytorch_model.bin", NULL, OUT);
    fails += truncate_copy("unet/diffusion_flax_model.msgpack", 0.3);
    fails += write_text(OUT, "previous contents\n");
    cli_run(&r, "unet", "--model", MODEL, "--inputs", data, "--out", OUT, (char *)NULL);
    // (the inputs are read first: data.safetensors has no 'sample')
    fails += expect_refused("unet --inputs without sample", &r, "unet", data, "sample", OUT);
    fails += write_unet_inputs(ROOT "/inputs.safetensors");
    fails += write_text(OUT, "previous contents\n");
    cli_run(&r, "unet", "--model", MODEL, "--inputs", ROOT "/inputs.safetensors", "--out", OUT, (char *)NULL);
    fails += expect_refused("unet --model truncated", &r, "unet", MODEL "/unet/diffusion_flax_model.msgpack", NULL, OUT);
    remove(ROOT "/inputs.safetensors");
    fails += write_text(MODEL "/tokenizer/merges.txt", "#version: 0.2\nno merges here\n");
    cli_run(&r, "tokenize", "--model", MODEL, "a cat", (char *)NULL);
    fails += expect_refused("tokenize --model bad merges", &r, "tokenize", MODEL "/tokenizer/merges.txt", NULL, NULL);
    remove(ROOT "/p0.opt.safetensors"); remove(ROOT "/p0.params.safetensors");
    remove(ROOT "/p1.opt.safetensors"); remove(ROOT "/p1.params.safetensors");
    remove(data);
    remove_copy();
    rmdir(ROOT);
#else
    fails += EXPECT(1, "needs POSIX mkdir");
#endif
    return fails;
}

// Weight files given one by one (--unet/--vae/--clip, --weights, --resume): the same refusals.
int test_bad_weights_cli(void) {
    const char *cut = "build/model-bad-f" STR(MAVREF_PRECISION) "-cut.safetensors";
    const char *small = MD_UNET_CONFIG;
    CliRun r;
    int fails = 0;
    clear_outputs();
    fails += copy_file("vectors/model/expected/makeavid_unet.safetensors", cut, 5000);
    fails += write_text(OUT ".gif", "previous contents\n");
    cli_run(&r, "generate", "--unet", cut, "--unet-config", small, "--vae-seed", "1", "--clip-seed", "1", "--out", OUT, GEN_ARGS, (char *)NULL);
    fails += expect_refused("generate --unet truncated", &r, "generate", cut, "truncated", OUT ".gif");
    cli_run(&r, "generate", "--unet", "vectors/model/expected/makeavid_vae.safetensors", "--unet-config", small, "--vae-seed", "1",
            "--clip-seed", "1", "--out", OUT, GEN_ARGS, (char *)NULL);
    fails += expect_refused("generate --unet of the VAE", &r, "generate", "makeavid_vae.safetensors", "missing parameter", NULL);
    fails += write_text(OUT, "previous contents\n");
    cli_run(&r, "encode-text", "--weights", cut, "--out", OUT, "a cat", (char *)NULL);
    fails += expect_refused("encode-text --weights truncated", &r, "encode-text", cut, NULL, OUT);
    cli_run(&r, "unet", "--weights", cut, "--config", small, "--inputs", cut, "--out", OUT, (char *)NULL);
    fails += expect_refused("unet --inputs truncated", &r, "unet", cut, NULL, NULL);
    fails += write_text(OUT ".params.safetensors", "previous contents\n");
    cli_run(&r, "train-vae", "--weights", cut, "--vae-channels", "32,32", "--vae-layers", "1", "--data", cut, "--steps", "1", "--out", OUT,
            (char *)NULL);
    fails += expect_refused("train-vae --weights truncated", &r, "train-vae", cut, NULL, OUT ".params.safetensors");
    cli_run(&r, "train-vae", "--resume", ROOT "-no-such-run", "--vae-channels", "32,32", "--vae-layers", "1", "--data", cut, "--steps", "1",
            "--out", OUT, (char *)NULL);
    fails += expect_refused("train-vae --resume missing", &r, "train-vae", ROOT "-no-such-run.params.safetensors", NULL, NULL);
    cli_run(&r, "convert", cut, OUT, (char *)NULL);
    fails += expect_refused("convert truncated", &r, "convert", cut, "truncated", NULL);
    cli_run(&r, "info", cut, (char *)NULL);
    fails += EXPECT(r.rc == 2 && strstr(r.err, cut), "info truncated: exit %d: %s", r.rc, r.err);
    remove(cut);
    return fails;
}
