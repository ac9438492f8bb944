// test_model_dir.c: the published formats, loaded through the name mapping (ref/ckpt_map.c,
// ref/model_dir.c), equal bit for bit the parameters the Flax libraries load from the same
// files (vectors/model/expected, written by tools/fixtures_flax.py from diffusers' and
// transformers' own PyTorch-to-Flax conversion and flax.serialization; make fixtures).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/ckpt_map.h"
#include "../ref/model_dir.h"
#include "../ref/pipeline.h"

#define MD "vectors/model"

// Every parameter of pt equals the tensor of the same name in the expected file, and the file
// has no other tensor. Values compare as doubles: both sides are exact widenings.
static int same_as_expected(const char *what, ParamTable *pt, const char *expected) {
    StFile f;
    size_t i, bad = 0;
    double *buf = NULL;
    if (st_open(&f, expected)) return EXPECT(0, "%s: %s", what, mv_error());
    if (f.count != pt->count) bad += EXPECT(0, "%s: %lu parameters, %s has %lu", what, (unsigned long)pt->count, expected, (unsigned long)f.count);
    for (i = 0; i < pt->count && !bad; i++) {
        const Param *p = &pt->p[i];
        const StEntry *e = st_find(&f, p->name);
        size_t k, diff = 0;
        int same = e && e->ndim == p->t.ndim;
        for (k = 0; same && k < (size_t)e->ndim; k++) same = e->shape[k] == p->t.shape[k];
        if (!same) { bad += EXPECT(0, "%s: '%s' absent from %s or of another shape", what, p->name, expected); break; }
        buf = (double *)realloc(buf, (e->numel ? e->numel : 1) * sizeof *buf);
        if (!buf || st_read_f64(&f, e, buf)) { bad += EXPECT(0, "%s: %s", what, mv_error()); break; }
        for (k = 0; k < e->numel; k++) diff += (double)p->t.data[k] != buf[k];
        if (diff) bad += EXPECT(0, "%s: '%s': %lu of %lu values differ from the Flax library's", what, p->name, (unsigned long)diff, (unsigned long)e->numel);
    }
    free(buf);
    st_close(&f);
    return bad ? 1 : 0;
}

static int unet_from(const char *what, const char *dir, int temporal, const char *file, const char *expected) {
    UNetConfig c;
    ParamTable pt;
    char cfg[512];
    int fails = 0;
    unet_config_default(&c);
    c.temporal = temporal;
    params_init(&pt);
    snprintf(cfg, sizeof cfg, "%s/unet/config.json", dir);
    if (unet_config_load(&c, cfg) || unet_declare_params(&pt, &c) || params_alloc(&pt) || md_load_weights(&pt, file, 0))
        fails += EXPECT(0, "%s: %s", what, mv_error());
    else
        fails += same_as_expected(what, &pt, expected);
    free_params(&pt);
    return fails;
}

static int vae_from(const char *what, const char *dir, const char *file, int ldm, const char *expected) {
    VAEConfig c;
    ParamTable pt;
    char cfg[512];
    int fails = 0;
    vae_config_default(&c);
    params_init(&pt);
    snprintf(cfg, sizeof cfg, "%s/vae/config.json", dir);
    if (vae_config_load(&c, cfg) || vae_declare_params(&pt, &c) || params_alloc(&pt) ||
        (ldm ? md_load_ldm(&pt, file, 'v', c.layers_per_block, c.n_blocks) : md_load_weights(&pt, file, 0)))
        fails += EXPECT(0, "%s: %s", what, mv_error());
    else
        fails += same_as_expected(what, &pt, expected);
    free_params(&pt);
    return fails;
}

static int clip_from(const char *what, const char *dir, const char *file, int ldm, const char *expected) {
    ClipConfig c;
    ParamTable pt;
    char cfg[512];
    int fails = 0;
    clip_config_default(&c);
    params_init(&pt);
    snprintf(cfg, sizeof cfg, "%s/text_encoder/config.json", dir);
    if (clip_config_load(&c, cfg) || clip_declare_params(&pt, &c) || params_alloc(&pt) ||
        (ldm ? md_load_ldm(&pt, file, 'c', 0, 0) : md_load_weights(&pt, file, 1)))
        fails += EXPECT(0, "%s: %s", what, mv_error());
    else
        fails += same_as_expected(what, &pt, expected);
    free_params(&pt);
    return fails;
}

int test_model_makeavid_unet(void) {
    const char *d = MD "/makeavid", *x = MD "/expected/makeavid_unet.safetensors";
    return unet_from("unet msgpack", d, 1, MD "/makeavid/unet/diffusion_flax_model.msgpack", x) +
           unet_from("unet .bin", d, 1, MD "/makeavid/unet/diffusion_pytorch_model.bin", x) +
           unet_from("unet PyTorch-named safetensors", d, 1, MD "/makeavid/unet/diffusion_pytorch_model.safetensors", x);
}

int test_model_makeavid_vae_clip(void) {
    const char *d = MD "/makeavid";
    return vae_from("vae .bin fp16", d, MD "/makeavid/vae/diffusion_pytorch_model.bin", 0, MD "/expected/makeavid_vae.safetensors") +
           clip_from("clip .bin fp16 + position_ids", d, MD "/makeavid/text_encoder/pytorch_model.bin", 0,
                     MD "/expected/makeavid_clip.safetensors");
}

int test_model_sd15_formats(void) {
    const char *s = MD "/sd15", *f = MD "/sd15-flax", *one = MD "/sd15.safetensors";
    const char *xu = MD "/expected/sd15_unet.safetensors", *xv = MD "/expected/sd15_vae.safetensors",
               *xc = MD "/expected/sd15_clip.safetensors";
    int fails = 0;
    UNetConfig c;
    ParamTable pt;
    // the diffusers folder in fp16 safetensors (VAE attention as to_q/to_k/to_v/to_out.0)
    fails += unet_from("sd15 unet fp16 safetensors", s, 0, MD "/sd15/unet/diffusion_pytorch_model.fp16.safetensors", xu);
    fails += vae_from("sd15 vae fp16 safetensors", s, MD "/sd15/vae/diffusion_pytorch_model.fp16.safetensors", 0, xv);
    fails += clip_from("sd15 clip fp16 safetensors", s, MD "/sd15/text_encoder/model.fp16.safetensors", 0, xc);
    // the Flax folder in bf16 msgpack
    fails += unet_from("sd15 unet bf16 msgpack", f, 0, MD "/sd15-flax/unet/diffusion_flax_model.msgpack", xu);
    fails += vae_from("sd15 vae bf16 msgpack", f, MD "/sd15-flax/vae/diffusion_flax_model.msgpack", 0, xv);
    fails += clip_from("sd15 clip bf16 msgpack", f, MD "/sd15-flax/text_encoder/flax_model.msgpack", 0, xc);
    // the single-file LDM checkpoint (configs from the folder: the file has none)
    fails += vae_from("sd15 single-file vae", s, one, 1, xv);
    fails += clip_from("sd15 single-file clip", s, one, 1, xc);
    unet_config_default(&c);
    if (unet_config_load(&c, MD "/sd15/unet/config.json")) return fails + EXPECT(0, "%s", mv_error());
    if (md_load_hint_unet(&pt, &c, one)) fails += EXPECT(0, "sd15 single-file unet: %s", mv_error());
    else { fails += same_as_expected("sd15 single-file unet", &pt, xu); free_params(&pt); }
    return fails;
}

// --model DIR: the folder reader picks each component's file (upstream's preference) and config.
int test_model_dir_folders(void) {
    UNetConfig u;
    VAEConfig v;
    ClipConfig k;
    ParamTable pt;
    SchedConfig s;
    char w[512];
    int fails = 0;
    fails += EXPECT(md_weights_path(w, sizeof w, MD "/makeavid", "unet") == 0 && strstr(w, "diffusion_flax_model.msgpack"),
                    "makeavid unet: expected the msgpack upstream reads, got %s", w);
    fails += EXPECT(md_weights_path(w, sizeof w, MD "/makeavid", "vae") == 0 && strstr(w, "diffusion_pytorch_model.bin"), "vae: %s", w);
    if (md_load_unet(&pt, &u, MD "/makeavid", 1)) fails += EXPECT(0, "%s", mv_error());
    else { fails += same_as_expected("--model unet", &pt, MD "/expected/makeavid_unet.safetensors"); free_params(&pt); }
    if (md_load_vae(&pt, &v, MD "/makeavid")) fails += EXPECT(0, "%s", mv_error());
    else { fails += same_as_expected("--model vae", &pt, MD "/expected/makeavid_vae.safetensors"); free_params(&pt); }
    if (md_load_clip(&pt, &k, MD "/makeavid")) fails += EXPECT(0, "%s", mv_error());
    else { fails += same_as_expected("--model clip", &pt, MD "/expected/makeavid_clip.safetensors"); free_params(&pt); }
    fails += EXPECT(k.vocab == 49408 && k.width == 8 && k.layers == 2 && k.heads == 2 && k.mlp == 16, "clip config not read");
    fails += EXPECT(v.n_blocks == 2 && v.block_out_channels[1] == 32 && v.layers_per_block == 1, "vae config not read");
    if (md_load_hint_unet(&pt, &u, MD "/sd15-flax")) fails += EXPECT(0, "%s", mv_error());
    else { fails += same_as_expected("--hint-model flax folder", &pt, MD "/expected/sd15_unet.safetensors"); free_params(&pt); }
    fails += EXPECT(sched_config_load(&s, MD "/makeavid/scheduler/scheduler_config.json") == 0, "%s", mv_error());
    fails += EXPECT(sched_config_load(&s, MD "/sd15/scheduler/scheduler_config.json") == 0, "%s", mv_error());
    fails += EXPECT(s.num_train_timesteps == 1000 && s.beta_start == 0.00085 && s.beta_end == 0.012 && s.steps_offset == 1 &&
                    !s.set_alpha_to_one, "scheduler config not read");
    return fails;
}

// A wrong config: the message names the stored and the Flax name; nothing loads.
int test_model_mismatch_messages(void) {
    UNetConfig c;
    ParamTable pt;
    int fails = 0, rc;
    unet_config_default(&c);
    fails += EXPECT(unet_config_load(&c, MD "/sd15/unet/config.json") == 0, "%s", mv_error());
    c.cross_attention_dim = 24; // the file's attn2.to_k is (32, 8)
    c.temporal = 0;
    params_init(&pt);
    rc = unet_declare_params(&pt, &c) || params_alloc(&pt) ||
         md_load_weights(&pt, MD "/sd15/unet/diffusion_pytorch_model.fp16.safetensors", 0);
    fails += EXPECT(rc && strstr(mv_error(), "attn2.to_k.weight") && strstr(mv_error(), "attn2.to_k.kernel") &&
                    strstr(mv_error(), "diffusion_pytorch_model.fp16.safetensors"),
                    "expected a message naming both names and the file, got: %s", mv_error());
    free_params(&pt);
    // a 2-D UNet table given the pseudo-3D file: the temporal tensors are extra
    c.cross_attention_dim = 8;
    unet_config_default(&c);
    fails += EXPECT(unet_config_load(&c, MD "/makeavid/unet/config.json") == 0, "%s", mv_error());
    c.temporal = 0;
    params_init(&pt);
    rc = unet_declare_params(&pt, &c) || params_alloc(&pt) ||
         md_load_weights(&pt, MD "/makeavid/unet/diffusion_pytorch_model.bin", 0);
    fails += EXPECT(rc && strstr(mv_error(), "temporal") && strstr(mv_error(), "not a parameter"), "expected an extra-tensor message, got: %s", mv_error());
    free_params(&pt);
    // the VAE's tables given the CLIP file: missing names the Flax parameter
    return fails;
}

// tokenizer/vocab.json + merges.txt as transformers writes them give today's tokenizer: the
// same byte map and the same merge table, so the same ids for every text.
int test_model_tokenizer_hf(void) {
    Tokenizer a, b;
    int fails = 0;
    size_t i;
    int32_t x[CLIP_CONTEXT], y[CLIP_CONTEXT];
    static const char *const texts[] = {"a photo of a cat", "An astronaut riding a horse, 4k, trending on artstation!!",
                                        "naïve café — ½ ｆｕｌｌｗｉｄｔｈ", ""};
    if (build_tokenizer(&a, "vectors/clip/clip_merges.txt")) return EXPECT(0, "%s", mv_error());
    if (build_tokenizer_hf(&b, MD "/makeavid/tokenizer/vocab.json", MD "/makeavid/tokenizer/merges.txt")) {
        free_tokenizer(&a);
        return EXPECT(0, "%s", mv_error());
    }
    fails += EXPECT(a.pair_cap == b.pair_cap && memcmp(a.byte_id, b.byte_id, sizeof a.byte_id) == 0 &&
                    memcmp(a.pair_keys, b.pair_keys, a.pair_cap * sizeof *a.pair_keys) == 0 &&
                    memcmp(a.pair_rank, b.pair_rank, a.pair_cap * sizeof *a.pair_rank) == 0,
                    "the tokenizer from vocab.json + merges.txt differs from the one from clip_merges.txt");
    for (i = 0; i < sizeof texts / sizeof *texts; i++) {
        int na = tokenize(&a, texts[i], strlen(texts[i]), x), nb = tokenize(&b, texts[i], strlen(texts[i]), y);
        fails += EXPECT(na == nb && memcmp(x, y, sizeof x) == 0, "ids differ for '%s'", texts[i]);
    }
    fails += EXPECT(x[0] == CLIP_BOS && x[1] == CLIP_EOS, "empty text");
    free_tokenizer(&a);
    free_tokenizer(&b);
    // truncated copies of either file are refused naming the file; nothing crashes
    {
        static const char *const src[2] = {MD "/makeavid/tokenizer/vocab.json", MD "/makeavid/tokenizer/merges.txt"};
        static const char *const cut[2] = {"build/test_tok_vocab.json", "build/test_tok_merges.txt"};
        static const double frac[5] = {0.0, 0.001, 0.3, 0.7, 0.99999};
        int which, k;
        for (which = 0; which < 2; which++)
            for (k = 0; k < 5; k++) {
                FILE *in = fopen(src[which], "rb"), *out = fopen(cut[which], "wb");
                long n, j;
                if (!in || !out) { if (in) fclose(in); if (out) fclose(out); fails += EXPECT(0, "cannot copy %s", src[which]); continue; }
                fseek(in, 0, SEEK_END);
                n = (long)(ftell(in) * frac[k]);
                fseek(in, 0, SEEK_SET);
                for (j = 0; j < n; j++) fputc(fgetc(in), out);
                fclose(in);
                fclose(out);
                fails += EXPECT(build_tokenizer_hf(&b, which ? src[0] : cut[0], which ? cut[1] : src[1]) != 0 &&
                                    strstr(mv_error(), cut[which]) != NULL,
                                "%s cut to %.5f: expected an error naming it, got '%s'", src[which], frac[k], mv_error());
                remove(cut[which]);
            }
    }
    // a vocab.json that is not CLIP's is refused naming the file
    fails += EXPECT(build_tokenizer_hf(&b, MD "/makeavid/tokenizer/merges.txt", MD "/makeavid/tokenizer/merges.txt") != 0 &&
                    strstr(mv_error(), "vocab") == NULL && strstr(mv_error(), "merges.txt"), "bad vocab: %s", mv_error());
    return fails;
}

// ---------------------------------------------------------------------------------------
// generate --model: the pipeline on a model folder against upstream's FLAX pipeline run on the
// same folder (tools/fixtures_flax.pipeline_file): the final latents within the case's
// tolerance (meta "tol", relative to max|expected|: float64 1e-9, float32 5e-5 or, for a toy
// case where JAX float32's own error is larger, 8x that error). The folders are read as
// --model / --hint-model read them (pipeline_replay_load_dirs, what `generate --replay` runs):
//   vectors/model/pipeline_*: vectors/model/makeavid, and SD 1.5's UNet from vectors/model/sd15
//     for the hint latent (make fixtures)
//   vectors/toy/pipeline_*: the folders in the case's metadata, the toy model's
//     vectors/toy/makeavid and vectors/toy/hint (make toy-cases; issue 15)

static double rel_err(const Tensor *got, const Tensor *want) {
    double maxd = 0, maxe = 0;
    size_t i;
    for (i = 0; i < want->numel; i++) {
        double d = (double)got->data[i] - (double)want->data[i], e = (double)want->data[i];
        if (d < 0) d = -d;
        if (e < 0) e = -e;
        if (d > maxd) maxd = d;
        if (e > maxe) maxe = e;
    }
    return maxe > 0 ? maxd / maxe : (maxd > 0 ? 1.0 : 0.0);
}

// The prompt's 77 ids (exact) and its text embedding (within tol) against the case's.
static int prompt_pieces(Replay *r, GenOptions *o, Models *m, const char *path, double tol) {
    Tensor emb, want_emb;
    int64_t ids[77], *want = NULL;
    size_t n = 0;
    int fails = 0;
    memset(&emb, 0, sizeof emb); memset(&want_emb, 0, sizeof want_emb);
    if (pipeline_encode_prompt(&emb, ids, o->prompt, m) || st_read_i64(&r->f, "ids", &want, &n) || st_read(&r->f, "text_emb", &want_emb))
        fails += EXPECT(0, "%s: %s", path, mv_error());
    else if (n != 77 || memcmp(ids, want, sizeof ids) != 0)
        fails += EXPECT(0, "%s: the prompt's ids differ from transformers' CLIPTokenizer's", path);
    else if (!tensor_same_shape(&emb, &want_emb))
        fails += EXPECT(0, "%s: text_emb of another shape", path);
    else
        fails += EXPECT(rel_err(&emb, &want_emb) <= tol, "%s: text_emb rel %.3e > %.0e", path, rel_err(&emb, &want_emb), tol);
    free(want);
    tensor_free(&emb); tensor_free(&want_emb);
    return fails;
}

// maker: the command that writes the case, named when it is missing.
static int pipeline_case(const char *dir, const char *name, const char *model, const char *hint_model, const char *maker) {
    char path[256];
    Replay r;
    Models m;
    GenOptions o;
    Tensor expected, latents;
    unsigned char *frames = NULL;
    const char *s;
    int fails = 0;
    double tol, maxe = 0, maxd = 0;
    size_t i;
    snprintf(path, sizeof path, "%s/pipeline_%s_%s.safetensors", dir, name, MAVREF_PRECISION == 64 ? "f64" : "f32");
    memset(&expected, 0, sizeof expected);
    memset(&latents, 0, sizeof latents);
    if (pipeline_replay_load_dirs(&r, &o, &m, &expected, path, model, hint_model))
        return EXPECT(0, "%s (the case and the folders it names: %s)", mv_error(), maker);
    tol = (s = st_meta(&r.f, "tol")) ? atof(s) : 0;
    if (tol <= 0) { fails += EXPECT(0, "%s: no tolerance in the metadata", path); goto out; }
    fails += prompt_pieces(&r, &o, &m, path, tol);
    if (pipeline_generate(&frames, &latents, NULL, &o, &m, NULL, NULL)) { fails += EXPECT(0, "%s: %s", path, mv_error()); goto out; }
    if (latents.numel != expected.numel) { fails += EXPECT(0, "%s: latents of %lu values, expected %lu", path, (unsigned long)latents.numel, (unsigned long)expected.numel); goto out; }
    for (i = 0; i < expected.numel; i++) {
        double d = (double)latents.data[i] - (double)expected.data[i], e = (double)expected.data[i];
        if (d < 0) d = -d;
        if (e < 0) e = -e;
        if (d > maxd) maxd = d;
        if (e > maxe) maxe = e;
    }
    printf("    pipeline %s: final latents rel %.3e of the FLAX pipeline's (tol %.0e)\n", path, maxd / maxe, tol);
    fails += EXPECT(maxe > 0 && maxd <= tol * maxe, "%s: final latents differ from the FLAX pipeline's: rel %.3e > %.0e", path, maxd / maxe, tol);
out:
    free(frames);
    free_models(&m);
    tensor_free(&expected); tensor_free(&latents);
    pipeline_replay_free(&r);
    return fails;
}

int test_model_pipeline(void) {
    return pipeline_case(MD, "hint", MD "/makeavid", MD "/sd15", "make fixtures") +
           pipeline_case(MD, "imagegen", MD "/makeavid", MD "/sd15", "make fixtures");
}

// The toy model of issue 15 (its committed weights) against the FLAX pipeline on them: text
// only (the 2-D UNet draws the first frame) and with a toy-world first frame.
int test_model_pipeline_toy(void) {
    return pipeline_case("vectors/toy", "imagegen", NULL, NULL, "make toy-model, make toy-cases") +
           pipeline_case("vectors/toy", "hint", NULL, NULL, "make toy-model, make toy-cases");
}
