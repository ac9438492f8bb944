// cli.c: the `mavref` command.
//
//   mavref --help
//   mavref info FILE                        tensors, dtypes, shapes and metadata of a safetensors file
//   mavref compare A B [--rtol R] [--atol A] per-tensor metrics; exit 1 on any mismatch
//
// Every error prints one line naming the file and what is wrong, and exits non-zero.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "compare.h"
#include "safetensors.h"
#include "clip.h"
#include "noise.h"
#include "pipeline.h"
#include "tokenizer.h"
#include "unet.h"
#include "train.h"
#include "procedural.h"

static const char *usage =
    "mavref: portable C99 reference implementation of Make-A-Video SD (" REAL_NAME " build)\n"
    "\n"
    "usage:\n"
    "  mavref info FILE\n"
    "      list the tensors of a safetensors file: name, dtype, shape, and its metadata\n"
    "  mavref compare A B [--rtol R] [--atol T]\n"
    "      compare every tensor of A with the tensor of the same name in B (B is the expected\n"
    "      side). Prints max abs error, max relative error, NMSE, rel = max_abs/max|B| and the\n"
    "      worst element. A tensor fails if max_abs > atol + rtol * max|B| (defaults: rtol 1e-5,\n"
    "      atol 0), if shapes differ, or if it is present in one file only. Tensors are listed\n"
    "      in B's order, so the first FAIL line is the first place the two diverge.\n"
    "      Exit status: 0 all match, 1 a mismatch, 2 bad usage or unreadable input.\n"
    "  mavref train --data D --steps N --out P (--weights W | --procedural SEED | --resume P0)\n"
    "              [--config JSON] [--frames F] [--lr LR] [--warmup FRAC] [--decay FRAC]\n"
    "              [--total-steps T] [--weight-decay WD] [--all] [--seed S] [--recompute]\n"
    "      upstream's training step (spec/train.md) for N steps, batch 1: D holds latents.<i>\n"
    "      (Fc,4,h,w) raw VAE latents and context.<i> (77,768) per clip i = 0, 1, ...; each step\n"
    "      draws a clip, a window of F frames (default 24), a timestep and noise from (S, step).\n"
    "      Trains only the temporal layers unless --all; AdamW lr 5e-5 (--warmup/--decay: the\n"
    "      fractions of T = total steps as upstream), weight decay 1e-2, clip 1. Prints loss and\n"
    "      the gradient norm per step; writes P.params.safetensors (Flax names) and\n"
    "      P.opt.safetensors (mu.NAME, nu.NAME, step); --resume P0 continues from those.\n"
    "      --recompute keeps only checkpoints of the activations and re-runs the forward of each\n"
    "      segment in the backward: less memory, about one more forward, the same gradients.\n"
    "  mavref unet --inputs IN --out OUT [--weights W | --procedural SEED] [--config JSON]\n"
    "              [--2d] [--taps]\n"
    "      run the UNet: IN holds sample (B,Cin,F,H,W) (or (B,Cin,H,W) with --2d), timesteps (B)\n"
    "      and context (B,T,768); OUT gets \"out\" (B,Cout,F,H,W) and, with --taps, the\n"
    "      activations tap.time_proj, tap.time_embedding, tap.conv_in, tap.down_blocks_<i>,\n"
    "      tap.mid_block, tap.up_blocks_<i>, tap.conv_out in (B,F,H,W,C) layout. Weights come\n"
    "      from a safetensors file named by Flax paths, or from the procedural generator.\n"
    "      --config reads a diffusers config.json (default: makeavid, in_channels 9); --2d\n"
    "      runs SD 1.5's 2-D UNet (no temporal layers). `mavref compare` on two such files\n"
    "      names the first block where a backend diverges.\n"
    "(mavref --help for every command)\n";

static const char *usage_more =
    "  mavref tokenize TEXT [--merges FILE]\n"
    "      print the 77 CLIP token ids of TEXT (UTF-8), as SD 1.5's CLIPTokenizer gives them\n"
    "  mavref encode-text PROMPT --out OUT (--weights W | --procedural SEED) [--merges FILE]\n"
    "      tokenize and run the CLIP ViT-L/14 text encoder; OUT gets ids (1,77) and\n"
    "      hidden (1,77,768), the last hidden state SD conditions on\n"
    "  mavref generate --prompt TEXT (--hint IMAGE.ppm | --hint-unet W) --out PREFIX [options]\n"
    "      text (and a hint image) to video, as upstream's jax_inference.py; writes\n"
    "      PREFIX.gif, PREFIX.y4m and PREFIX_latents.safetensors (final latents)\n"
    "      --negative TEXT ('')  --guidance G (15)  --steps N (20)  --scheduler dpm|ddim (dpm)\n"
    "      --frames F (24)  --width W --height H (512)  --seed S (0)  --fps R (24)\n"
    "      --mask MASK.pgm (pixels >= 192 are masked)  --noise FILE (tensor \"noise\" (1,4,F,h,w))\n"
    "      --ppm-frames (also PREFIX_000000.ppm ...)\n"
    "      no --hint: as upstream, SD 1.5's 2-D UNet makes the hint latent: --hint-unet W or\n"
    "      --hint-unet-seed S [--hint-unet-config JSON] [--guidance-image G (= --guidance)]\n"
    "      --replay CASE.safetensors: rerun a recorded FLAX pipeline case (vectors/f32/pipeline_*)\n"
    "      with its prompts, networks, weights, hint, mask and noise, and report how closely\n"
    "      the final latents match FLAX's\n"
    "      weights: --unet W --vae W --clip W (safetensors by Flax names), or procedural:\n"
    "      --unet-seed S --vae-seed S --clip-seed S; configurations: --unet-config JSON,\n"
    "      --vae-channels 128,256,512,512 --vae-layers 2, --clip-width 768 --clip-layers 12\n"
    "      --clip-heads 12 --clip-mlp 3072\n"
    "  mavref check --backend 'CMD {case} {out}' [--ops GLOB] [--level quick|full]\n"
    "               [--precision 32|64] [--timeout S] [--cases TEXT] [--vectors DIR] [--workdir DIR]\n"
    "      run another backend's adapter on every selected corpus case (vectors/contract.json)\n"
    "      and compare the outputs it writes to {out} with the expected tensors: one line per\n"
    "      case, a table per op; exit 1 on any failure (SPEC.md, the case contract)\n"
    "  mavref --help\n"
    "\n"
    "The CLIP merges file defaults to $MAVREF_MERGES, else vectors/clip/clip_merges.txt.\n"
    "MAVREF_THREADS=N sets the thread count (default: the cores; results are bit-identical for\n"
    "any N); MAVREF_REFERENCE=1 runs the plain loops instead of the matrix-product fast path.\n";

static const char *merges_path(const char *given) {
    const char *env = getenv("MAVREF_MERGES");
    return given ? given : env && *env ? env : "vectors/clip/clip_merges.txt";
}

static int cmd_tokenize(int argc, char **argv) {
    const char *text = NULL, *merges = NULL;
    Tokenizer tok;
    int32_t ids[CLIP_CONTEXT];
    int k, n;
    for (k = 0; k < argc; k++) {
        if (!strcmp(argv[k], "--merges") && k + 1 < argc) merges = argv[++k];
        else if (!text && (argv[k][0] != '-' || !argv[k][1] || !strcmp(argv[k], "--"))) {
            if (!strcmp(argv[k], "--") && k + 1 < argc) k++;
            text = argv[k];
        } else { fprintf(stderr, "mavref tokenize: unexpected argument '%s'\n%s", argv[k], usage); return 2; }
    }
    if (!text) { fprintf(stderr, "mavref tokenize: expected TEXT\n%s", usage); return 2; }
    if (build_tokenizer(&tok, merges_path(merges))) { fprintf(stderr, "mavref tokenize: %s\n", mv_error()); return 2; }
    n = tokenize(&tok, text, strlen(text), ids);
    free_tokenizer(&tok);
    if (n < 0) { fprintf(stderr, "mavref tokenize: %s\n", mv_error()); return 1; }
    for (k = 0; k < CLIP_CONTEXT; k++) printf(k ? " %d" : "%d", (int)ids[k]);
    printf("\n");
    return 0;
}

static int cmd_encode_text(int argc, char **argv) {
    const char *text = NULL, *merges = NULL, *outp = NULL, *weights = NULL;
    unsigned long long seed = 0;
    int have_seed = 0, k, n, rc = 2;
    char *end;
    Tokenizer tok;
    int32_t ids32[CLIP_CONTEXT];
    int64_t ids[CLIP_CONTEXT];
    size_t shp[2] = {1, CLIP_CONTEXT};
    ClipConfig cfg;
    ParamTable pt;
    Tensor y;
    StWriter w;
    for (k = 0; k < argc; k++) {
        if (!strcmp(argv[k], "--merges") && k + 1 < argc) merges = argv[++k];
        else if (!strcmp(argv[k], "--out") && k + 1 < argc) outp = argv[++k];
        else if (!strcmp(argv[k], "--weights") && k + 1 < argc) weights = argv[++k];
        else if (!strcmp(argv[k], "--procedural") && k + 1 < argc) {
            seed = strtoull(argv[++k], &end, 10);
            if (*end || end == argv[k]) { fprintf(stderr, "mavref encode-text: --procedural needs an integer seed\n"); return 2; }
            have_seed = 1;
        } else if (!text && argv[k][0] != '-') text = argv[k];
        else { fprintf(stderr, "mavref encode-text: unexpected argument '%s'\n%s", argv[k], usage); return 2; }
    }
    if (!text || !outp || (!weights) == (!have_seed)) {
        fprintf(stderr, "mavref encode-text: needs PROMPT, --out and one of --weights / --procedural\n%s", usage);
        return 2;
    }
    if (build_tokenizer(&tok, merges_path(merges))) { fprintf(stderr, "mavref encode-text: %s\n", mv_error()); return 2; }
    n = tokenize(&tok, text, strlen(text), ids32);
    free_tokenizer(&tok);
    if (n < 0) { fprintf(stderr, "mavref encode-text: %s\n", mv_error()); return 1; }
    for (k = 0; k < CLIP_CONTEXT; k++) ids[k] = ids32[k];
    clip_config_default(&cfg);
    params_init(&pt);
    st_writer_init(&w);
    memset(&y, 0, sizeof y);
    if (clip_declare_params(&pt, &cfg) || params_alloc(&pt) ||
        (weights ? params_load(&pt, weights, 0) : params_procedural(&pt, (uint64_t)seed)) ||
        clip_text_forward(&y, ids, 1, CLIP_CONTEXT, &pt, &cfg) || st_writer_add_i64(&w, "ids", ids, 2, shp) ||
        st_writer_add(&w, "hidden", &y, ST_REAL) || st_writer_save(&w, outp)) {
        fprintf(stderr, "mavref encode-text: %s\n", mv_error());
        rc = 1;
    } else {
        printf("wrote %s: ids (1, 77), hidden (1, 77, %d)\n", outp, cfg.width);
        rc = 0;
    }
    free_params(&pt);
    st_writer_free(&w);
    tensor_free(&y);
    return rc;
}

// ---------------------------------------------------------------------------------------
// generate

static int parse_ulong(const char *opt, const char *v, unsigned long long *out) {
    char *end;
    if (!v || !*v || *v == '-') { fprintf(stderr, "mavref generate: %s needs a non-negative integer\n", opt); return 2; }
    *out = strtoull(v, &end, 10);
    if (*end) { fprintf(stderr, "mavref generate: %s needs a non-negative integer, got '%s'\n", opt, v); return 2; }
    return 0;
}

typedef struct { const char *path; int written; } OutFile;

static int cmd_generate(int argc, char **argv) {
    GenOptions o;
    Models m;
    const char *outp = NULL, *hintp = NULL, *maskp = NULL, *noisep = NULL, *merges = NULL, *uw = NULL, *vw = NULL,
               *cw = NULL, *ucfg = NULL;
    unsigned long long useed = 0, vseed = 0, cseed = 0, v, fps = 24;
    int have_us = 0, have_vs = 0, have_cs = 0, ppm = 0, k, rc = 2;
    const char *replay = NULL, *hw2 = NULL, *hcfg2 = NULL;
    unsigned long long hseed = 0;
    int have_hs = 0;
    Replay rp;
    Tensor expected;
    Image hint, mask;
    Tensor noise, lat;
    unsigned char *frames = NULL;
    char path[1024];
    StWriter w;
    memset(&o, 0, sizeof o);
    memset(&m, 0, sizeof m);
    memset(&hint, 0, sizeof hint); memset(&mask, 0, sizeof mask); memset(&noise, 0, sizeof noise); memset(&lat, 0, sizeof lat);
    o.neg_prompt = "";
    o.guidance = 15.0;
    o.steps = 20;
    o.scheduler = SCHED_DPM;
    o.frames = 24;
    o.height = o.width = 512;
    o.progress = 1;
    unet_config_default(&m.unet);
    vae_config_default(&m.vae);
    clip_config_default(&m.clip);
    for (k = 0; k < argc; k++) {
        const char *a = argv[k], *val = k + 1 < argc ? argv[k + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--prompt") && val) o.prompt = val;
        else if (!strcmp(a, "--negative") && val) o.neg_prompt = val;
        else if (!strcmp(a, "--guidance") && val) {
            char *end;
            o.guidance = strtod(val, &end);
            if (*end || end == val) { fprintf(stderr, "mavref generate: --guidance needs a number\n"); return 2; }
        } else if (!strcmp(a, "--steps") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > 1000) { fprintf(stderr, "mavref generate: --steps must be 1..1000\n"); return 2; } o.steps = (int)v; }
        else if (!strcmp(a, "--scheduler") && val) {
            if (!strcmp(val, "dpm")) o.scheduler = SCHED_DPM;
            else if (!strcmp(val, "ddim")) o.scheduler = SCHED_DDIM;
            else { fprintf(stderr, "mavref generate: --scheduler must be dpm or ddim, got '%s'\n", val); return 2; }
        } else if (!strcmp(a, "--frames") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > 10000) { fprintf(stderr, "mavref generate: --frames must be 1..10000\n"); return 2; } o.frames = (size_t)v; }
        else if (!strcmp(a, "--width") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > IMAGE_MAX_DIM) { fprintf(stderr, "mavref generate: bad --width\n"); return 2; } o.width = (size_t)v; }
        else if (!strcmp(a, "--height") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > IMAGE_MAX_DIM) { fprintf(stderr, "mavref generate: bad --height\n"); return 2; } o.height = (size_t)v; }
        else if (!strcmp(a, "--seed") && val) { if (parse_ulong(a, val, &v)) return 2; o.seed = v; }
        else if (!strcmp(a, "--fps") && val) { if (parse_ulong(a, val, &fps) || fps < 1 || fps > 1000) { fprintf(stderr, "mavref generate: --fps must be 1..1000\n"); return 2; } }
        else if (!strcmp(a, "--hint") && val) hintp = val;
        else if (!strcmp(a, "--mask") && val) maskp = val;
        else if (!strcmp(a, "--noise") && val) noisep = val;
        else if (!strcmp(a, "--out") && val) outp = val;
        else if (!strcmp(a, "--merges") && val) merges = val;
        else if (!strcmp(a, "--unet") && val) uw = val;
        else if (!strcmp(a, "--vae") && val) vw = val;
        else if (!strcmp(a, "--clip") && val) cw = val;
        else if (!strcmp(a, "--unet-config") && val) ucfg = val;
        else if (!strcmp(a, "--unet-seed") && val) { if (parse_ulong(a, val, &useed)) return 2; have_us = 1; }
        else if (!strcmp(a, "--vae-seed") && val) { if (parse_ulong(a, val, &vseed)) return 2; have_vs = 1; }
        else if (!strcmp(a, "--clip-seed") && val) { if (parse_ulong(a, val, &cseed)) return 2; have_cs = 1; }
        else if (!strcmp(a, "--vae-channels") && val) {
            if ((m.vae.n_blocks = mv_parse_int_list(val, m.vae.block_out_channels, VAE_MAX_BLOCKS)) < 1) { fprintf(stderr, "mavref generate: bad --vae-channels '%s'\n", val); return 2; }
        } else if (!strcmp(a, "--vae-layers") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > 16) return 2; m.vae.layers_per_block = (int)v; }
        else if (!strcmp(a, "--clip-width") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > 100000) return 2; m.clip.width = (int)v; }
        else if (!strcmp(a, "--clip-layers") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > 1000) return 2; m.clip.layers = (int)v; }
        else if (!strcmp(a, "--clip-heads") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > 1000) return 2; m.clip.heads = (int)v; }
        else if (!strcmp(a, "--clip-mlp") && val) { if (parse_ulong(a, val, &v) || v < 1 || v > 1000000) return 2; m.clip.mlp = (int)v; }
        else if (!strcmp(a, "--replay") && val) replay = val;
        else if (!strcmp(a, "--hint-unet") && val) hw2 = val;
        else if (!strcmp(a, "--hint-unet-config") && val) hcfg2 = val;
        else if (!strcmp(a, "--hint-unet-seed") && val) { if (parse_ulong(a, val, &hseed)) return 2; have_hs = 1; }
        else if (!strcmp(a, "--guidance-image") && val) {
            char *end;
            o.guidance_image = strtod(val, &end);
            if (*end || end == val) { fprintf(stderr, "mavref generate: --guidance-image needs a number\n"); return 2; }
        }
        else if (!strcmp(a, "--ppm-frames")) { ppm = 1; takes = 0; }
        else if (!strcmp(a, "--quiet")) { o.progress = 0; takes = 0; }
        else { fprintf(stderr, "mavref generate: unknown or incomplete option '%s'\n%s", a, usage); return 2; }
        k += takes;
    }
    memset(&rp, 0, sizeof rp);
    memset(&expected, 0, sizeof expected);
    if (replay) { // a recorded FLAX run: its prompts, sizes, networks, weights, hint, mask and noise
        if (!outp) { fprintf(stderr, "mavref generate: needs --out\n"); return 2; }
        if (pipeline_replay_load(&rp, &o, &m, &expected, replay)) { fprintf(stderr, "mavref generate: %s\n", mv_error()); return 1; }
        o.progress = 1;
        st_writer_init(&w);
        if (build_tokenizer(&m.tok, merges_path(merges))) goto fail;
        goto run;
    }
    if (!o.prompt || !outp) { fprintf(stderr, "mavref generate: needs --prompt and --out\n%s", usage); return 2; }
    if ((!uw) == (!have_us) || (!vw) == (!have_vs) || (!cw) == (!have_cs)) {
        fprintf(stderr, "mavref generate: give each network's weights: --unet W or --unet-seed S, --vae W or --vae-seed S, "
                        "--clip W or --clip-seed S (no model is downloaded)\n");
        return 2;
    }
    if (strlen(outp) > sizeof path - 32) { fprintf(stderr, "mavref generate: --out prefix too long\n"); return 2; }
    params_init(&m.unet_p); params_init(&m.vae_p); params_init(&m.clip_p);
    st_writer_init(&w);
    if ((ucfg && unet_config_load(&m.unet, ucfg)) || build_tokenizer(&m.tok, merges_path(merges)) ||
        (hintp && image_read_pnm(&hint, hintp)) || (maskp && image_read_pnm(&mask, maskp)))
        goto fail;
    if (noisep) {
        size_t shp[5];
        size_t fac = (size_t)1 << (m.vae.n_blocks - 1);
        shp[0] = 1; shp[1] = 4; shp[2] = o.frames; shp[3] = o.height / fac; shp[4] = o.width / fac;
        if (noise_read(&noise, noisep, "noise", 5, shp)) goto fail;
        o.noise = &noise;
    }
    o.hint = hintp ? &hint : NULL;
    o.mask = maskp ? &mask : NULL;
    if (unet_declare_params(&m.unet_p, &m.unet) || params_alloc(&m.unet_p) ||
        (uw ? params_load(&m.unet_p, uw, 0) : params_procedural(&m.unet_p, useed)) ||
        vae_declare_params(&m.vae_p, &m.vae) || params_alloc(&m.vae_p) ||
        (vw ? params_load(&m.vae_p, vw, 0) : params_procedural(&m.vae_p, vseed)) ||
        clip_declare_params(&m.clip_p, &m.clip) || params_alloc(&m.clip_p) ||
        (cw ? params_load(&m.clip_p, cw, 0) : params_procedural(&m.clip_p, cseed)))
        goto fail;
    if (hw2 || have_hs) { // SD 1.5's 2-D UNet, for the hint latent when no --hint is given
        unet_config_default(&m.unet2d);
        m.unet2d.temporal = 0;
        m.unet2d.in_channels = 4;
        params_init(&m.unet2d_p);
        if ((hcfg2 && unet_config_load(&m.unet2d, hcfg2)) || unet_declare_params(&m.unet2d_p, &m.unet2d) ||
            params_alloc(&m.unet2d_p) || (hw2 ? params_load(&m.unet2d_p, hw2, 0) : params_procedural(&m.unet2d_p, hseed)))
            goto fail;
        m.have_unet2d = 1;
    }
run:
    if (pipeline_generate(&frames, &lat, NULL, &o, &m, NULL, NULL)) goto fail;
    if (replay && expected.ndim == 6 && expected.numel == (size_t)o.steps * lat.numel) {
        Metrics mt;
        char line[512], idx[128];
        const real *last = expected.data + (size_t)(o.steps - 1) * lat.numel;
        metrics_compute_real(&mt, lat.data, last, lat.numel);
        metrics_format(line, sizeof line, &mt, index_str(idx, sizeof idx, mt.worst, lat.ndim, lat.shape));
        printf("final latents against the FLAX pipeline's (%s): %s\n", replay, line);
    }
    // Outputs only once everything is computed; each file is written to NAME.tmp and renamed.
    sprintf(path, "%s_latents.safetensors", outp);
    if (st_writer_add(&w, "latents", &lat, ST_REAL) || st_writer_save(&w, path)) goto fail;
    sprintf(path, "%s.y4m", outp);
    if (video_write_y4m(path, frames, o.frames, o.height, o.width, (unsigned)fps, 1)) goto fail_rm;
    sprintf(path, "%s.gif", outp);
    if (video_write_gif(path, frames, o.frames, o.height, o.width, (unsigned)fps, 1)) goto fail_rm;
    if (ppm) {
        sprintf(path, "%s_", outp);
        if (video_write_frames(path, frames, o.frames, o.height, o.width)) goto fail_rm;
    }
    printf("wrote %s.gif, %s.y4m (%lu frames %lux%lu at %llu fps) and %s_latents.safetensors\n", outp, outp,
           (unsigned long)o.frames, (unsigned long)o.width, (unsigned long)o.height, fps, outp);
    rc = 0;
    goto done;
fail_rm: // a later writer failed: take back the files already written
    fprintf(stderr, "mavref generate: %s\n", mv_error());
    sprintf(path, "%s_latents.safetensors", outp); remove(path);
    sprintf(path, "%s.y4m", outp); remove(path);
    sprintf(path, "%s.gif", outp); remove(path);
    rc = 1;
    goto done;
fail:
    fprintf(stderr, "mavref generate: %s\n", mv_error());
    rc = 1;
done:
    free(frames);
    tensor_free(&lat); tensor_free(&noise);
    image_free(&hint); image_free(&mask);
    free_params(&m.unet_p); free_params(&m.vae_p); free_params(&m.clip_p); free_params(&m.unet2d_p);
    free_tokenizer(&m.tok);
    st_writer_free(&w);
    pipeline_replay_free(&rp);
    tensor_free(&expected);
    return rc;
}

// ---------------------------------------------------------------------------------------

typedef struct { StWriter *w; } TapSink;

static int write_tap(void *user, const char *name, const Tensor *t) {
    TapSink *s = (TapSink *)user;
    return st_writer_add(s->w, name, t, ST_REAL);
}

static int cmd_unet(int argc, char **argv) {
    const char *in = NULL, *outp = NULL, *weights = NULL, *config = NULL;
    unsigned long long seed = 0;
    int have_seed = 0, taps = 0, twod = 0, k, rc = 2;
    UNetConfig cfg;
    ParamTable pt;
    StFile f;
    StWriter w;
    TapSink sink;
    Tensor sample, t, ctx, out;
    char *end;
    for (k = 0; k < argc; k++) {
        if (!strcmp(argv[k], "--inputs") && k + 1 < argc) in = argv[++k];
        else if (!strcmp(argv[k], "--out") && k + 1 < argc) outp = argv[++k];
        else if (!strcmp(argv[k], "--weights") && k + 1 < argc) weights = argv[++k];
        else if (!strcmp(argv[k], "--config") && k + 1 < argc) config = argv[++k];
        else if (!strcmp(argv[k], "--procedural") && k + 1 < argc) {
            seed = strtoull(argv[++k], &end, 10);
            if (*end || end == argv[k]) { fprintf(stderr, "mavref unet: --procedural needs an integer seed\n"); return 2; }
            have_seed = 1;
        } else if (!strcmp(argv[k], "--taps")) taps = 1;
        else if (!strcmp(argv[k], "--2d")) twod = 1;
        else { fprintf(stderr, "mavref unet: unknown or incomplete option '%s'\n%s", argv[k], usage); return 2; }
    }
    if (!in || !outp || (!weights) == (!have_seed)) {
        fprintf(stderr, "mavref unet: needs --inputs, --out and exactly one of --weights / --procedural\n%s", usage);
        return 2;
    }
    unet_config_default(&cfg);
    if (twod) { cfg.temporal = 0; cfg.in_channels = 4; }
    if (config && unet_config_load(&cfg, config)) { fprintf(stderr, "mavref unet: %s\n", mv_error()); return 2; }
    params_init(&pt);
    st_writer_init(&w);
    memset(&sample, 0, sizeof sample); memset(&t, 0, sizeof t); memset(&ctx, 0, sizeof ctx); memset(&out, 0, sizeof out);
    if (st_open(&f, in)) { fprintf(stderr, "mavref unet: %s\n", mv_error()); return 2; }
    if (st_read(&f, "sample", &sample) || st_read(&f, "timesteps", &t) || st_read(&f, "context", &ctx)) {
        fprintf(stderr, "mavref unet: %s\n", mv_error());
        goto done;
    }
    if (unet_check_inputs(&sample, &t, &ctx, &cfg)) { // before minutes of loading weights
        fprintf(stderr, "mavref unet: %s: %s\n", in, mv_error());
        goto done;
    }
    if (unet_declare_params(&pt, &cfg) || params_alloc(&pt) ||
        (weights ? params_load(&pt, weights, 0) : params_procedural(&pt, (uint64_t)seed))) {
        fprintf(stderr, "mavref unet: %s\n", mv_error());
        goto done;
    }
    sink.w = &w;
    if (unet_forward(&out, &sample, &t, &ctx, &pt, &cfg, taps ? write_tap : NULL, &sink) ||
        st_writer_add(&w, "out", &out, ST_REAL) || st_writer_meta(&w, "producer", "mavref " REAL_NAME) ||
        st_writer_save(&w, outp)) {
        fprintf(stderr, "mavref unet: %s\n", mv_error());
        rc = 1;
        goto done;
    }
    printf("wrote %s: out%s\n", outp, taps ? " and taps" : "");
    rc = 0;
done:
    st_close(&f);
    free_params(&pt);
    st_writer_free(&w);
    tensor_free(&sample); tensor_free(&t); tensor_free(&ctx); tensor_free(&out);
    return rc;
}

static int cmd_info(int argc, char **argv) {
    StFile f;
    size_t i, total = 0;
    char shp[160];
    if (argc != 1) { fprintf(stderr, "mavref info: expected one FILE\n%s", usage); return 2; }
    if (st_open(&f, argv[0])) { fprintf(stderr, "mavref info: %s\n", mv_error()); return 2; }
    printf("%s: %lu tensors\n", argv[0], (unsigned long)f.count);
    for (i = 0; i < f.nmeta; i++) printf("  meta %s = %s\n", f.meta_keys[i], f.meta_values[i]);
    for (i = 0; i < f.count; i++) {
        const StEntry *e = &f.entries[i];
        printf("  %-60s %-5s %s\n", e->name, st_dtype_name(e->dtype), shape_str(shp, sizeof shp, e->ndim, e->shape));
        total += e->numel;
    }
    printf("  total elements: %lu\n", (unsigned long)total);
    st_close(&f);
    return 0;
}

static int parse_num(const char *opt, const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    if (end == s || *end || !(*out >= 0)) { fprintf(stderr, "mavref compare: %s needs a non-negative number, got '%s'\n", opt, s); return 2; }
    return 0;
}

static int cmd_compare(int argc, char **argv) {
    const char *pa = NULL, *pb = NULL;
    double rtol = 1e-5, atol = 0.0;
    StFile a, b;
    size_t i, n;
    int bad = 0, io = 0, k;
    for (k = 0; k < argc; k++) {
        if (!strcmp(argv[k], "--rtol") && k + 1 < argc) { if (parse_num("--rtol", argv[++k], &rtol)) return 2; }
        else if (!strcmp(argv[k], "--atol") && k + 1 < argc) { if (parse_num("--atol", argv[++k], &atol)) return 2; }
        else if (argv[k][0] == '-' && argv[k][1]) { fprintf(stderr, "mavref compare: unknown option '%s'\n%s", argv[k], usage); return 2; }
        else if (!pa) pa = argv[k];
        else if (!pb) pb = argv[k];
        else { fprintf(stderr, "mavref compare: too many files\n%s", usage); return 2; }
    }
    if (!pa || !pb) { fprintf(stderr, "mavref compare: expected two files A and B\n%s", usage); return 2; }
    if (st_open(&a, pa)) { fprintf(stderr, "mavref compare: %s\n", mv_error()); return 2; }
    if (st_open(&b, pb)) { fprintf(stderr, "mavref compare: %s\n", mv_error()); st_close(&a); return 2; }
    printf("comparing %s (got) with %s (expected): rtol %.1e atol %.1e\n", pa, pb, rtol, atol);
    for (i = 0; i < b.count && !io; i++) {
        const StEntry *eb = &b.entries[i], *ea = st_find(&a, eb->name);
        double *ga = NULL, *gb = NULL;
        char line[512], idx[128], s1[128], s2[128];
        Metrics m;
        int same = 1, d;
        if (!ea) { printf("FAIL %s: only in %s\n", eb->name, pb); bad++; continue; }
        same = ea->ndim == eb->ndim;
        for (d = 0; same && d < ea->ndim; d++) same = ea->shape[d] == eb->shape[d];
        if (!same) {
            printf("FAIL %s: shape %s in %s, %s in %s\n", eb->name, shape_str(s1, sizeof s1, ea->ndim, ea->shape), pa,
                   shape_str(s2, sizeof s2, eb->ndim, eb->shape), pb);
            bad++;
            continue;
        }
        ga = (double *)mv_calloc(ea->numel ? ea->numel : 1, sizeof(double), ea->name);
        gb = (double *)mv_calloc(eb->numel ? eb->numel : 1, sizeof(double), eb->name);
        if (!ga || !gb || st_read_f64(&a, ea, ga) || st_read_f64(&b, eb, gb)) {
            fprintf(stderr, "mavref compare: %s\n", mv_error());
            io = 1;
        } else {
            metrics_compute(&m, ga, gb, eb->numel);
            metrics_format(line, sizeof line, &m, index_str(idx, sizeof idx, m.worst, eb->ndim, eb->shape));
            if (m.nonfinite || m.max_abs > atol + rtol * m.max_exp) { printf("FAIL %s: %s\n", eb->name, line); bad++; }
            else printf("  ok %s: %s\n", eb->name, line);
        }
        free(ga);
        free(gb);
    }
    for (i = 0; i < a.count && !io; i++)
        if (!st_find(&b, a.entries[i].name)) { printf("FAIL %s: only in %s\n", a.entries[i].name, pa); bad++; }
    n = b.count;
    st_close(&a);
    st_close(&b);
    if (io) return 2;
    printf("%s: %d problems over %lu tensors of %s\n", bad ? "MISMATCH" : "MATCH", bad, (unsigned long)n, pb);
    return bad ? 1 : 0;
}

// mavref train: upstream's training loop on precomputed latents (SPEC.md section 10).
static int train_fail(const char *what) {
    fprintf(stderr, "mavref train: %s%s%s\n", what, *what ? ": " : "", mv_error());
    return 1;
}

static int parse_dbl(const char *opt, const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    if (*end || end == s) { fprintf(stderr, "mavref train: %s needs a number, got '%s'\n", opt, s); return 2; }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    const char *data = NULL, *outp = NULL, *weights = NULL, *config = NULL, *resume = NULL;
    unsigned long long seed = 0, dseed = 0;
    double lr = 5e-5, warmup = 0, decay = 0, wd = 1e-2, v;
    long steps = -1, frames = 24, total = 0, k, nclips = 0, s;
    int have_seed = 0, all = 0, recompute = 0, rc = 2, i;
    char *end, path[1024];
    UNetConfig cfg;
    TrainConfig tc;
    ParamTable pt, gt;
    AdamState opt;
    Scheduler sch;
    SchedConfig scfg;
    StFile f;
    StWriter w;
    Tensor clip, ctx, x_in, ts, noise;
    memset(&clip, 0, sizeof clip); memset(&ctx, 0, sizeof ctx); memset(&x_in, 0, sizeof x_in);
    memset(&ts, 0, sizeof ts); memset(&noise, 0, sizeof noise); memset(&opt, 0, sizeof opt); memset(&sch, 0, sizeof sch);
    memset(&f, 0, sizeof f);
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--data") && more) data = argv[++i];
        else if (!strcmp(a, "--out") && more) outp = argv[++i];
        else if (!strcmp(a, "--weights") && more) weights = argv[++i];
        else if (!strcmp(a, "--config") && more) config = argv[++i];
        else if (!strcmp(a, "--resume") && more) resume = argv[++i];
        else if (!strcmp(a, "--all")) all = 1;
        else if (!strcmp(a, "--recompute")) recompute = 1;
        else if ((!strcmp(a, "--procedural") || !strcmp(a, "--seed")) && more) {
            unsigned long long x = strtoull(argv[++i], &end, 10);
            if (*end || end == argv[i]) { fprintf(stderr, "mavref train: %s needs an integer\n", a); return 2; }
            if (!strcmp(a, "--seed")) dseed = x;
            else { seed = x; have_seed = 1; }
        } else if ((!strcmp(a, "--steps") || !strcmp(a, "--frames") || !strcmp(a, "--total-steps")) && more) {
            long x = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || x < (strcmp(a, "--frames") ? 0 : 1)) { fprintf(stderr, "mavref train: %s needs a count\n", a); return 2; }
            if (!strcmp(a, "--steps")) steps = x;
            else if (!strcmp(a, "--frames")) frames = x;
            else total = x;
        } else if (!strcmp(a, "--lr") && more) { if (parse_dbl(a, argv[++i], &lr)) return 2; }
        else if (!strcmp(a, "--warmup") && more) { if (parse_dbl(a, argv[++i], &warmup)) return 2; }
        else if (!strcmp(a, "--decay") && more) { if (parse_dbl(a, argv[++i], &decay)) return 2; }
        else if (!strcmp(a, "--weight-decay") && more) { if (parse_dbl(a, argv[++i], &wd)) return 2; }
        else { fprintf(stderr, "mavref train: unknown or incomplete option '%s'\n%s", a, usage); return 2; }
    }
    if (!data || !outp || steps < 0 || (!!weights + have_seed + !!resume) != 1) {
        fprintf(stderr, "mavref train: needs --data, --out, --steps and exactly one of --weights / --procedural / --resume\n%s", usage);
        return 2;
    }
    unet_config_default(&cfg);
    if (config && unet_config_load(&cfg, config)) return train_fail("");
    train_config_default(&tc);
    tc.only_temporal = !all;
    tc.weight_decay = wd;
    tc.recompute = recompute;
    params_init(&pt);
    params_init(&gt);
    st_writer_init(&w);
    sched_config_sd(&scfg);
    if (unet_declare_params(&pt, &cfg) || params_alloc(&pt) || unet_grads_alloc(&gt, &pt) || adam_init(&opt, pt.numel) ||
        sched_init(&sch, SCHED_DDIM, &scfg, 0, 1)) { rc = train_fail("setup"); goto done; }
    if (resume) {
        snprintf(path, sizeof path, "%s.params.safetensors", resume);
        if (params_load(&pt, path, 0)) { rc = train_fail("resume"); goto done; }
        snprintf(path, sizeof path, "%s.opt.safetensors", resume);
        if (train_load_state(path, &pt, &opt, &tc)) { rc = train_fail("resume"); goto done; }
    } else if (weights ? params_load(&pt, weights, 0) : params_procedural(&pt, (uint64_t)seed)) { rc = train_fail("weights"); goto done; }
    if (total == 0) total = opt.step + steps;
    train_set_schedule(&tc, lr, warmup, decay, total);
    if (st_open(&f, data)) { rc = train_fail(""); goto done; }
    while (1) {
        snprintf(path, sizeof path, "latents.%ld", nclips);
        if (!st_find(&f, path)) break;
        nclips++;
    }
    if (nclips == 0) { fprintf(stderr, "mavref train: %s holds no tensor 'latents.0'\n", data); rc = 2; goto done; }
    for (k = 0; k < steps; k++) {
        long g = opt.step; // the global step: every draw below depends on (seed, g) only, so a resumed run repeats an uninterrupted one
        uint64_t r = proc_splitmix64((uint64_t)dseed ^ proc_splitmix64((uint64_t)g));
        size_t ci = (size_t)(r % (uint64_t)nclips), Fc, H, W, start;
        int64_t t = (int64_t)(proc_splitmix64(r + 1) % 1000u);
        const real *cp;
        double loss, l2, tn;
        char stream[64];
        tensor_free(&clip); tensor_free(&ctx);
        snprintf(path, sizeof path, "latents.%lu", (unsigned long)ci);
        if (st_read(&f, path, &clip)) { rc = train_fail(""); goto done; }
        snprintf(path, sizeof path, "context.%lu", (unsigned long)ci);
        if (st_read(&f, path, &ctx)) { rc = train_fail(""); goto done; }
        if (clip.ndim != 4 || clip.shape[1] != 4 || clip.shape[0] < (size_t)frames) {
            fprintf(stderr, "mavref train: latents.%lu must be (F >= %ld, 4, h, w)\n", (unsigned long)ci, frames);
            rc = 2; goto done;
        }
        if (ctx.ndim == 2) { ctx.ndim = 3; ctx.shape[2] = ctx.shape[1]; ctx.shape[1] = ctx.shape[0]; ctx.shape[0] = 1; }
        Fc = clip.shape[0]; H = clip.shape[2]; W = clip.shape[3];
        start = (size_t)(proc_splitmix64(r + 2) % (uint64_t)(Fc - (size_t)frames + 1)); // dataset.py: random.randint(0, Fc - F), inclusive
        tensor_free(&x_in); tensor_free(&noise); tensor_free(&ts);
        if (tensor_alloc_v(&x_in, 5, (size_t)1, (size_t)cfg.in_channels, (size_t)frames, H, W) ||
            tensor_alloc_v(&noise, 5, (size_t)1, (size_t)4, (size_t)frames, H, W) || tensor_alloc_v(&ts, 1, (size_t)1)) { rc = train_fail(""); goto done; }
        if (cfg.in_channels != 9) { fprintf(stderr, "mavref train: the training input has 9 channels, the model takes %d\n", cfg.in_channels); rc = 2; goto done; }
        snprintf(stream, sizeof stream, "train noise %ld", g);
        if (noise_normal(noise.data, noise.numel, (uint64_t)dseed, stream)) { rc = train_fail(""); goto done; }
        cp = clip.data;
        if (train_collate(x_in.data, &cp, &Fc, &start, 1, (size_t)frames, H, W, noise.data, &t, &sch)) { rc = train_fail(""); goto done; }
        ts.data[0] = (real)t;
        v = train_lr(&tc, opt.step);
        if (train_step(&pt, &gt, &opt, &tc, &cfg, &x_in, &ts, &noise, &ctx, &loss, &l2, &tn)) { rc = train_fail(""); goto done; }
        printf("step %ld clip %lu start %lu t %ld lr %.6e loss %.9e l2_grads %.9e trainable_norm %.9e\n", g, (unsigned long)ci,
               (unsigned long)start, (long)t, v, loss, l2, tn);
        fflush(stdout);
    }
    // the parameters by Flax name, then the optimizer state
    for (s = 0; s < (long)pt.count; s++)
        if (st_writer_add(&w, pt.p[s].name, &pt.p[s].t, ST_REAL)) { rc = train_fail("writing"); goto done; }
    snprintf(path, sizeof path, "%s.params.safetensors", outp);
    if (st_writer_meta(&w, "producer", "mavref train " REAL_NAME) || st_writer_save(&w, path)) { rc = train_fail("writing"); goto done; }
    printf("wrote %s\n", path);
    snprintf(path, sizeof path, "%s.opt.safetensors", outp);
    if (train_save_state(path, &pt, &opt, &tc)) { rc = train_fail("writing"); goto done; }
    printf("wrote %s (step %ld)\n", path, opt.step);
    rc = 0;
done:
    st_close(&f);
    st_writer_free(&w);
    tensor_free(&clip); tensor_free(&ctx); tensor_free(&x_in); tensor_free(&ts); tensor_free(&noise);
    adam_free(&opt);
    sched_free(&sch);
    free_params(&gt); free_params(&pt);
    return rc;
}

int main(int argc, char **argv) {
    const char *ref = getenv("MAVREF_REFERENCE");
    mv_reference_path = ref && *ref && strcmp(ref, "0") != 0; // run the plain loops instead of the fast path
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        if (argc >= 2) fputs(usage_more, stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(argv[1], "compare")) return cmd_compare(argc - 2, argv + 2);
    if (!strcmp(argv[1], "unet")) return cmd_unet(argc - 2, argv + 2);
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(argv[1], "encode-text")) return cmd_encode_text(argc - 2, argv + 2);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(argv[1], "check")) return check_main(argc - 2, argv + 2);
    fprintf(stderr, "mavref: unknown command '%s'\n%s", argv[1], usage);
    return 2;
}
