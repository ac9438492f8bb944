// cli.c: the `mavref` commands. Each command's arguments are parsed from the one option
// table (ref/cli_options.c) into CliArgs, then the command runs; `mavref CMD --help` prints
// its usage from the same table. The command table is at the end of this file.
//
// Every error prints one line naming the file and what is wrong; exit status 0 success,
// 1 a failure while running (compare: a mismatch), 2 bad usage or bad input. Bad input is
// anything wrong with a file the command reads (a model folder, weights, a config, the
// tokenizer, a resumed run, training data, an image): everything is read and checked before
// anything is written, so a bad input leaves no output. Running out of memory while reading
// is the machine's failure, not the input's: 1 (mv_error_is_oom).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checkpoint.h"
#include "cli.h"
#include "compare.h"
#include "convert.h"
#include "model_dir.h"
#include "safetensors.h"
#include "clip.h"
#include "noise.h"
#include "pipeline.h"
#include "tokenizer.h"
#include "unet.h"
#include "train.h"
#include "plot.h"
#include "toyworld.h"
#include "vae_train.h"
#include "procedural.h"

// "mavref CMD: [what: ]<the last error>"; returns 1, the exit status of a failed run.
static int fail(const CliArgs *a, const char *what) {
    fprintf(a->err, "mavref %s: %s%s%s\n", a->command, what, *what ? ": " : "", mv_error());
    return 1;
}

// An input that cannot be read or is malformed: "mavref CMD: <the last error>", exit status 2
// (1 when reading it ran out of memory).
static int bad_input(const CliArgs *a) {
    fprintf(a->err, "mavref %s: %s\n", a->command, mv_error());
    return mv_error_is_oom() ? 1 : 2;
}

// A usage error: "mavref CMD: message", exit status 2.
static int usage_error(const CliArgs *a, const char *message) {
    fprintf(a->err, "mavref %s: %s (mavref %s --help)\n", a->command, message, a->command);
    return 2;
}

static const char *merges_path(const char *given) {
    const char *env = getenv("MAVREF_MERGES");
    return given ? given : env && *env ? env : "vectors/clip/clip_merges.txt";
}

// ---------------------------------------------------------------------------------------
// info, compare

static int cmd_info(const CliArgs *a) {
    CkFile f;
    StFile st;
    size_t i, total = 0;
    char shp[160];
    if (ck_open(&f, a->pos[0])) { fprintf(a->err, "mavref info: %s\n", mv_error()); return 2; }
    fprintf(a->out, "%s: %s, %lu tensors\n", a->pos[0], ck_format_name(f.format), (unsigned long)f.count);
    if (f.format == CK_SAFETENSORS && st_open(&st, a->pos[0]) == MV_OK) {
        for (i = 0; i < st.nmeta; i++) fprintf(a->out, "  meta %s = %s\n", st.meta_keys[i], st.meta_values[i]);
        st_close(&st);
    }
    for (i = 0; i < f.count; i++) {
        const CkEntry *e = &f.entries[i];
        fprintf(a->out, "  %-60s %-5s %s\n", e->name, st_dtype_name(e->dtype), shape_str(shp, sizeof shp, e->ndim, e->shape));
        total += e->numel;
    }
    fprintf(a->out, "  total elements: %lu\n", (unsigned long)total);
    ck_close(&f);
    return 0;
}

// mavref convert IN OUT: one network of IN (a weight file in any format, or a model folder) as
// a safetensors file by Flax names (ref/convert.h), written tensor by tensor.
static int cmd_convert(const CliArgs *a) {
    ConvertOptions o;
    ConvertResult r;
    memset(&o, 0, sizeof o);
    o.in = a->pos[0];
    o.out = a->pos[1];
    o.component = a->component;
    o.config = a->config;
    if (strcmp(a->names, "flax") && strcmp(a->names, "stored") && strcmp(a->names, "torch"))
        return usage_error(a, "--names must be flax, torch or stored");
    if (strcmp(a->dtype, "keep") && strcmp(a->dtype, "f32")) return usage_error(a, "--dtype must be keep or f32");
    if (!strcmp(a->names, "stored") && a->config)
        return usage_error(a, "--names stored writes every tensor as stored: no --config (--component only picks a folder's file)");
    o.stored_names = !strcmp(a->names, "stored");
    o.torch_names = !strcmp(a->names, "torch");
    o.widen = !strcmp(a->dtype, "f32");
    if (convert_checkpoint(&o, &r)) return r.writing ? fail(a, "") : bad_input(a);
    fprintf(a->out, "wrote %s: %lu tensors (%s names%s%s) from %s (%s)", a->pos[1], (unsigned long)r.tensors,
            o.stored_names ? "stored" : o.torch_names ? "PyTorch" : "Flax", *r.component ? ", " : "", r.component, r.weights,
            ck_format_name(r.format));
    if (r.skipped)
        fprintf(a->out, "; %lu stored tensor%s left out (buffers%s)", (unsigned long)r.skipped, r.skipped == 1 ? "" : "s",
                r.ldm ? ", other components" : "");
    fprintf(a->out, "\n");
    return 0;
}

// One tensor of B (expected) against A's of the same name: prints a line, returns 1 on a
// mismatch, 0 on a match, -1 when a tensor cannot be read.
static int compare_tensor(const CliArgs *a, StFile *fa, StFile *fb, const StEntry *eb) {
    const StEntry *ea = st_find(fa, eb->name);
    double *ga, *gb;
    char line[512], idx[128], s1[128], s2[128];
    Metrics m;
    int d, rc;
    if (!ea) { fprintf(a->out, "FAIL %s: only in %s\n", eb->name, a->pos[1]); return 1; }
    for (d = 0; ea->ndim == eb->ndim && d < ea->ndim && ea->shape[d] == eb->shape[d]; d++) {}
    if (ea->ndim != eb->ndim || d < ea->ndim) {
        fprintf(a->out, "FAIL %s: shape %s in %s, %s in %s\n", eb->name, shape_str(s1, sizeof s1, ea->ndim, ea->shape), a->pos[0],
                shape_str(s2, sizeof s2, eb->ndim, eb->shape), a->pos[1]);
        return 1;
    }
    ga = (double *)mv_calloc(ea->numel ? ea->numel : 1, sizeof(double), ea->name);
    gb = (double *)mv_calloc(eb->numel ? eb->numel : 1, sizeof(double), eb->name);
    if (!ga || !gb || st_read_f64(fa, ea, ga) || st_read_f64(fb, eb, gb)) {
        fprintf(a->err, "mavref compare: %s\n", mv_error());
        rc = -1;
    } else {
        metrics_compute(&m, ga, gb, eb->numel);
        metrics_format(line, sizeof line, &m, index_str(idx, sizeof idx, m.worst, eb->ndim, eb->shape));
        rc = m.nonfinite || m.max_abs > a->atol + a->rtol * m.max_exp;
        fprintf(a->out, "%s %s: %s\n", rc ? "FAIL" : "  ok", eb->name, line);
    }
    free(ga);
    free(gb);
    return rc;
}

static int cmd_compare(const CliArgs *a) {
    StFile fa, fb;
    size_t i, n;
    int bad = 0, io = 0;
    if (st_open(&fa, a->pos[0])) { fprintf(a->err, "mavref compare: %s\n", mv_error()); return 2; }
    if (st_open(&fb, a->pos[1])) { fprintf(a->err, "mavref compare: %s\n", mv_error()); st_close(&fa); return 2; }
    fprintf(a->out, "comparing %s (got) with %s (expected): rtol %.1e atol %.1e\n", a->pos[0], a->pos[1], a->rtol, a->atol);
    for (i = 0; i < fb.count && !io; i++) { // B's order: the first FAIL line is where the two diverge first
        int r = compare_tensor(a, &fa, &fb, &fb.entries[i]);
        if (r < 0) io = 1;
        else bad += r;
    }
    for (i = 0; i < fa.count && !io; i++)
        if (!st_find(&fb, fa.entries[i].name)) { fprintf(a->out, "FAIL %s: only in %s\n", fa.entries[i].name, a->pos[0]); bad++; }
    n = fb.count;
    st_close(&fa);
    st_close(&fb);
    if (io) return 2;
    fprintf(a->out, "%s: %d problems over %lu tensors of %s\n", bad ? "MISMATCH" : "MATCH", bad, (unsigned long)n, a->pos[1]);
    return bad ? 1 : 0;
}

// ---------------------------------------------------------------------------------------
// tokenize, encode-text

// The 77 CLIP token ids of `text`; 0, 2 (merges file) or 1 (the text) after a message.
static int tokenize_text(const CliArgs *a, const char *text, int32_t ids[CLIP_CONTEXT]) {
    Tokenizer tok;
    int n;
    if (a->model ? md_load_tokenizer(&tok, a->model) : build_tokenizer(&tok, merges_path(a->merges))) return bad_input(a);
    n = tokenize(&tok, text, strlen(text), ids);
    free_tokenizer(&tok);
    return n < 0 ? fail(a, "") : 0;
}

static int cmd_tokenize(const CliArgs *a) {
    int32_t ids[CLIP_CONTEXT];
    int k, rc = tokenize_text(a, a->pos[0], ids);
    if (rc) return rc;
    for (k = 0; k < CLIP_CONTEXT; k++) fprintf(a->out, k ? " %d" : "%d", (int)ids[k]);
    fprintf(a->out, "\n");
    return 0;
}

static int cmd_encode_text(const CliArgs *a) {
    int32_t ids32[CLIP_CONTEXT];
    int64_t ids[CLIP_CONTEXT];
    size_t shp[2] = {1, CLIP_CONTEXT};
    ClipConfig cfg;
    ParamTable pt;
    Tensor hidden;
    StWriter w;
    int k, rc;
    if (!a->out_path || (!!a->weights + cli_given(a, "--procedural") + !!a->model) != 1)
        return usage_error(a, "needs PROMPT, --out and one of --weights / --procedural / --model");
    if ((rc = tokenize_text(a, a->pos[0], ids32))) return rc;
    for (k = 0; k < CLIP_CONTEXT; k++) ids[k] = ids32[k];
    clip_config_default(&cfg);
    params_init(&pt);
    st_writer_init(&w);
    memset(&hidden, 0, sizeof hidden);
    if (a->model ? md_load_clip(&pt, &cfg, a->model)
                 : clip_declare_params(&pt, &cfg) || params_alloc(&pt) ||
                       (a->weights ? params_load(&pt, a->weights, 0) : params_procedural(&pt, (uint64_t)a->procedural))) {
        rc = bad_input(a); // the weights (or the model folder) are bad; nothing is written
    } else if (clip_text_forward(&hidden, ids, 1, CLIP_CONTEXT, &pt, &cfg) || st_writer_add_i64(&w, "ids", ids, 2, shp) ||
        st_writer_add(&w, "hidden", &hidden, ST_REAL) || st_writer_save(&w, a->out_path)) {
        rc = fail(a, "");
    } else {
        fprintf(a->out, "wrote %s: ids (1, 77), hidden (1, 77, %d)\n", a->out_path, cfg.width);
        rc = 0;
    }
    free_params(&pt);
    st_writer_free(&w);
    tensor_free(&hidden);
    return rc;
}

// ---------------------------------------------------------------------------------------
// generate

// The options as the pipeline's settings and the networks' configurations; 2 on bad usage.
static int generate_settings(GenOptions *o, Models *m, const CliArgs *a) {
    memset(o, 0, sizeof *o);
    o->prompt = a->prompt;
    o->neg_prompt = a->negative;
    o->guidance = a->guidance;
    o->guidance_image = a->guidance_image; // 0: = guidance
    o->steps = (int)a->steps;
    if (!strcmp(a->scheduler, "dpm")) o->scheduler = SCHED_DPM;
    else if (!strcmp(a->scheduler, "ddim")) o->scheduler = SCHED_DDIM;
    else {
        fprintf(a->err, "mavref generate: --scheduler must be dpm or ddim, got '%s'\n", a->scheduler);
        return 2;
    }
    o->frames = (size_t)a->frames;
    o->height = (size_t)a->height;
    o->width = (size_t)a->width;
    o->seed = (uint64_t)a->seed;
    o->progress = !a->quiet;
    unet_config_default(&m->unet);
    vae_config_default(&m->vae);
    clip_config_default(&m->clip);
    if (a->vae_channels && (m->vae.n_blocks = mv_parse_int_list(a->vae_channels, m->vae.block_out_channels, VAE_MAX_BLOCKS)) < 1) {
        fprintf(a->err, "mavref generate: bad --vae-channels '%s'\n", a->vae_channels);
        return 2;
    }
    if (cli_given(a, "--vae-layers")) m->vae.layers_per_block = (int)a->vae_layers;
    if (cli_given(a, "--clip-width")) m->clip.width = (int)a->clip_width;
    if (cli_given(a, "--clip-layers")) m->clip.layers = (int)a->clip_layers;
    if (cli_given(a, "--clip-heads")) m->clip.heads = (int)a->clip_heads;
    if (cli_given(a, "--clip-mlp")) m->clip.mlp = (int)a->clip_mlp;
    return 0;
}

// Weights from a file, or procedural from a seed.
static int load_weights(ParamTable *pt, const char *file, unsigned long long seed) {
    return file ? params_load(pt, file, 0) : params_procedural(pt, (uint64_t)seed);
}

// The networks, configs and tokenizer of --model DIR and --hint-model DIR|FILE.
static int generate_load_model(Models *m, const CliArgs *a) {
    if (md_load_scheduler(&m->sched, a->model) || md_load_tokenizer(&m->tok, a->model) || md_load_unet(&m->unet_p, &m->unet, a->model, 1) ||
        md_load_vae(&m->vae_p, &m->vae, a->model) || md_load_clip(&m->clip_p, &m->clip, a->model))
        return MV_ERR;
    m->have_sched = 1;
    return MV_OK;
}

// The inputs and networks of a run that is not a replay: MV_ERR with mv_error() set.
static int generate_load(GenOptions *o, Models *m, Image *hint, Image *mask, Tensor *noise, const CliArgs *a) {
    if (a->model && generate_load_model(m, a)) return MV_ERR;
    if (a->hint_model) { // SD 1.5 (a folder, or the single file with SD 1.5's configuration)
        unet_config_default(&m->unet2d);
        m->unet2d.temporal = 0;
        m->unet2d.in_channels = 4;
        // a single file has no config.json: SD 1.5's, or --hint-unet-config
        if ((a->hint_unet_config && unet_config_load(&m->unet2d, a->hint_unet_config)) ||
            md_load_hint_unet(&m->unet2d_p, &m->unet2d, a->hint_model))
            return MV_ERR;
        m->have_unet2d = 1;
    }
    if ((!a->model && a->unet_config && unet_config_load(&m->unet, a->unet_config)) ||
        (!a->model && build_tokenizer(&m->tok, merges_path(a->merges))) ||
        (a->hint && image_read_pnm(hint, a->hint)) || (a->mask && image_read_pnm(mask, a->mask)))
        return MV_ERR;
    if (a->hint && (hint->width != o->width || hint->height != o->height || hint->channels != 3))
        return mv_fail("%s: the hint image is %lux%lu %s, the video %lux%lu RGB (--width, --height)", a->hint, (unsigned long)hint->width,
                       (unsigned long)hint->height, hint->channels == 3 ? "RGB" : "gray", (unsigned long)o->width, (unsigned long)o->height);
    if (a->mask && (mask->width != o->width || mask->height != o->height || mask->channels != 1))
        return mv_fail("%s: the mask is %lux%lu %s, it must be %lux%lu gray (a PGM)", a->mask, (unsigned long)mask->width,
                       (unsigned long)mask->height, mask->channels == 1 ? "gray" : "RGB", (unsigned long)o->width, (unsigned long)o->height);
    if (a->noise) {
        size_t factor = (size_t)1 << (m->vae.n_blocks - 1), shape[5];
        shape[0] = 1; shape[1] = 4; shape[2] = o->frames; shape[3] = o->height / factor; shape[4] = o->width / factor;
        if (noise_read(noise, a->noise, "noise", 5, shape)) return MV_ERR;
        o->noise = noise;
    }
    o->hint = a->hint ? hint : NULL;
    o->mask = a->mask ? mask : NULL;
    if (!a->model && (unet_declare_params(&m->unet_p, &m->unet) || params_alloc(&m->unet_p) || load_weights(&m->unet_p, a->unet, a->unet_seed) ||
        vae_declare_params(&m->vae_p, &m->vae) || params_alloc(&m->vae_p) || load_weights(&m->vae_p, a->vae, a->vae_seed) ||
        clip_declare_params(&m->clip_p, &m->clip) || params_alloc(&m->clip_p) || load_weights(&m->clip_p, a->clip, a->clip_seed)))
        return MV_ERR;
    if (a->hint_unet || cli_given(a, "--hint-unet-seed")) { // SD 1.5's 2-D UNet, for the hint latent when no --hint is given
        unet_config_default(&m->unet2d);
        m->unet2d.temporal = 0;
        m->unet2d.in_channels = 4;
        params_init(&m->unet2d_p);
        if ((a->hint_unet_config && unet_config_load(&m->unet2d, a->hint_unet_config)) ||
            unet_declare_params(&m->unet2d_p, &m->unet2d) || params_alloc(&m->unet2d_p) ||
            load_weights(&m->unet2d_p, a->hint_unet, a->hint_unet_seed))
            return MV_ERR;
        m->have_unet2d = 1;
    }
    return MV_OK;
}

// PREFIX_latents.safetensors, PREFIX.y4m, PREFIX.gif (and the PPM frames), only once
// everything is computed; each file is written to NAME.tmp and renamed. If a later writer
// fails, the files already written are taken back. 0, or 1 after a message.
static int generate_write(const CliArgs *a, const GenOptions *o, const unsigned char *frames, const Tensor *latents) {
    const char *prefix = a->out_path;
    char path[1024];
    StWriter w;
    int rc;
    st_writer_init(&w);
    sprintf(path, "%s_latents.safetensors", prefix);
    rc = st_writer_add(&w, "latents", latents, ST_REAL) || st_writer_save(&w, path);
    st_writer_free(&w);
    if (rc) return fail(a, "");
    sprintf(path, "%s.y4m", prefix);
    rc = video_write_y4m(path, frames, o->frames, o->height, o->width, (unsigned)a->fps, 1);
    sprintf(path, "%s.gif", prefix);
    if (!rc && a->gif_scale > 1) { // each pixel a K x K square, so that a 64x64 toy video can be seen
        size_t K = (size_t)a->gif_scale, H = o->height, W = o->width, f, y, x;
        unsigned char *big = (unsigned char *)mv_malloc(o->frames * H * K * W * K * 3, "enlarged frames");
        rc = !big;
        for (f = 0; big && f < o->frames; f++)
            for (y = 0; y < H * K; y++)
                for (x = 0; x < W * K; x++)
                    memcpy(big + ((f * H * K + y) * W * K + x) * 3, frames + ((f * H + y / K) * W + x / K) * 3, 3);
        rc = rc || video_write_gif(path, big, o->frames, H * K, W * K, (unsigned)a->fps, 1);
        free(big);
    } else {
        rc = rc || video_write_gif(path, frames, o->frames, o->height, o->width, (unsigned)a->fps, 1);
    }
    sprintf(path, "%s_", prefix);
    rc = rc || (a->ppm_frames && video_write_frames(path, frames, o->frames, o->height, o->width));
    if (rc) {
        fail(a, "");
        sprintf(path, "%s_latents.safetensors", prefix); remove(path);
        sprintf(path, "%s.y4m", prefix); remove(path);
        sprintf(path, "%s.gif", prefix); remove(path);
        return 1;
    }
    fprintf(a->out, "wrote %s.gif, %s.y4m (%lu frames %lux%lu at %llu fps) and %s_latents.safetensors\n", prefix, prefix,
            (unsigned long)o->frames, (unsigned long)o->width, (unsigned long)o->height, a->fps, prefix);
    return 0;
}

// Replay: how closely the final latents match the recorded FLAX run's.
static void report_replay(const CliArgs *a, const Tensor *latents, const Tensor *expected, int steps) {
    Metrics mt;
    char line[512], idx[128];
    const real *last;
    // the FLAX latents after every step (n, 1,4,F,h,w), or the final ones (1,4,F,h,w)
    if (expected->ndim == 6 && expected->numel == (size_t)steps * latents->numel)
        last = expected->data + (size_t)(steps - 1) * latents->numel;
    else if (tensor_same_shape(expected, latents))
        last = expected->data;
    else
        return;
    metrics_compute_real(&mt, latents->data, last, latents->numel);
    metrics_format(line, sizeof line, &mt, index_str(idx, sizeof idx, mt.worst, latents->ndim, latents->shape));
    fprintf(a->out, "final latents against the FLAX pipeline's (%s): %s\n", a->replay, line);
}

// --preview P: the clip predicted at step k as P_step<k+1>.gif (GenOptions.preview).
typedef struct { const CliArgs *a; const GenOptions *o; } PreviewSink;

static int write_preview(void *user, int k, int n, const unsigned char *frames) {
    const PreviewSink *p = (const PreviewSink *)user;
    char path[1024 + 32];
    (void)n;
    sprintf(path, "%s_step%03d.gif", p->a->preview, k + 1);
    return video_write_gif(path, frames, p->o->frames, p->o->height, p->o->width, (unsigned)p->a->fps, 1);
}

static int cmd_generate(const CliArgs *a) {
    GenOptions o;
    PreviewSink ps;
    Models m;
    Replay replay;
    Image hint, mask;
    Tensor noise, latents, expected;
    unsigned char *frames = NULL;
    int rc;
    memset(&m, 0, sizeof m); memset(&replay, 0, sizeof replay);
    memset(&hint, 0, sizeof hint); memset(&mask, 0, sizeof mask);
    memset(&noise, 0, sizeof noise); memset(&latents, 0, sizeof latents); memset(&expected, 0, sizeof expected);
    if ((rc = generate_settings(&o, &m, a))) return rc;
    if (!a->out_path || (!a->replay && !a->prompt)) return usage_error(a, "needs --prompt and --out (or --replay CASE and --out)");
    if (strlen(a->out_path) > 1024 - 32) return usage_error(a, "--out prefix too long");
    if (a->preview && strlen(a->preview) > 1024) return usage_error(a, "--preview prefix too long");
    if (a->model && (a->unet || a->vae || a->clip || cli_given(a, "--unet-seed") || cli_given(a, "--vae-seed") ||
                     cli_given(a, "--clip-seed") || a->unet_config || a->replay))
        return usage_error(a, "--model DIR gives every network, its config and the tokenizer: no --unet/--vae/--clip, "
                              "their seeds, --unet-config or --replay with it");
    if (a->hint_model && (a->hint_unet || cli_given(a, "--hint-unet-seed")))
        return usage_error(a, "--hint-model and --hint-unet / --hint-unet-seed are alternatives");
    if (!a->replay && !a->model && ((!a->unet) == !cli_given(a, "--unet-seed") || (!a->vae) == !cli_given(a, "--vae-seed") ||
                       (!a->clip) == !cli_given(a, "--clip-seed")))
        return usage_error(a, "give each network's weights: --unet W or --unet-seed S, --vae W or --vae-seed S, "
                              "--clip W or --clip-seed S (no model is downloaded)");
    if (a->replay) { // a recorded FLAX run: its prompts, sizes, networks, weights, hint, mask and noise
        if (pipeline_replay_load(&replay, &o, &m, &expected, a->replay)) { rc = bad_input(a); goto out; }
        o.progress = !a->quiet;
        rc = replay.from_folders ? 0 : build_tokenizer(&m.tok, merges_path(a->merges)); // a folder's case: its tokenizer
    } else {
        params_init(&m.unet_p); params_init(&m.vae_p); params_init(&m.clip_p);
        rc = generate_load(&o, &m, &hint, &mask, &noise, a);
    }
    // every input is read and checked against the others before anything is computed or written
    if (rc || pipeline_check(&o, &m)) { rc = bad_input(a); goto out; }
    if (a->preview) {
        ps.a = a; ps.o = &o;
        o.preview = write_preview;
        o.preview_user = &ps;
    }
    if (pipeline_generate(&frames, &latents, NULL, &o, &m, NULL, NULL)) { rc = fail(a, ""); goto out; }
    if (a->replay) report_replay(a, &latents, &expected, o.steps);
    rc = generate_write(a, &o, frames, &latents);
out:
    free(frames);
    tensor_free(&latents); tensor_free(&noise); tensor_free(&expected);
    image_free(&hint); image_free(&mask);
    free_params(&m.unet_p); free_params(&m.vae_p); free_params(&m.clip_p); free_params(&m.unet2d_p);
    free_tokenizer(&m.tok);
    pipeline_replay_free(&replay);
    return rc;
}

// ---------------------------------------------------------------------------------------
// unet

typedef struct { StWriter *w; } TapSink;

static int write_tap(void *user, const char *name, const Tensor *t) {
    TapSink *s = (TapSink *)user;
    return st_writer_add(s->w, name, t, ST_REAL);
}

static int cmd_unet(const CliArgs *a) {
    UNetConfig cfg;
    ParamTable pt;
    StFile f;
    StWriter w;
    TapSink sink;
    Tensor sample, t, ctx, out;
    int rc = 2;
    char mcfg[4096];
    if (!a->inputs || !a->out_path || (!!a->weights + cli_given(a, "--procedural") + !!a->model) != 1)
        return usage_error(a, "needs --inputs, --out and exactly one of --weights / --procedural / --model");
    if (a->model && a->config) return usage_error(a, "--model DIR has its own unet/config.json: no --config");
    unet_config_default(&cfg);
    if (a->two_d) { cfg.temporal = 0; cfg.in_channels = 4; }
    if (a->model) snprintf(mcfg, sizeof mcfg, "%s/unet/config.json", a->model);
    if ((a->config || a->model) && unet_config_load(&cfg, a->model ? mcfg : a->config)) return bad_input(a);
    params_init(&pt);
    st_writer_init(&w);
    memset(&sample, 0, sizeof sample); memset(&t, 0, sizeof t); memset(&ctx, 0, sizeof ctx); memset(&out, 0, sizeof out);
    if (st_open(&f, a->inputs)) return bad_input(a);
    if (st_read(&f, "sample", &sample) || st_read(&f, "timesteps", &t) || st_read(&f, "context", &ctx)) { rc = bad_input(a); goto out; }
    if (unet_check_inputs(&sample, &t, &ctx, &cfg)) { fail(a, a->inputs); goto out; } // before minutes of loading weights
    if (a->model ? md_load_unet(&pt, &cfg, a->model, !a->two_d)
                 : unet_declare_params(&pt, &cfg) || params_alloc(&pt) || load_weights(&pt, a->weights, a->procedural)) {
        rc = bad_input(a);
        goto out;
    }
    sink.w = &w;
    if (unet_forward(&out, &sample, &t, &ctx, &pt, &cfg, a->taps ? write_tap : NULL, &sink) ||
        st_writer_add(&w, "out", &out, ST_REAL) || st_writer_meta(&w, "producer", "mavref " REAL_NAME) ||
        st_writer_save(&w, a->out_path)) {
        rc = fail(a, "");
        goto out;
    }
    fprintf(a->out, "wrote %s: out%s\n", a->out_path, a->taps ? " and taps" : "");
    rc = 0;
out:
    st_close(&f);
    free_params(&pt);
    st_writer_free(&w);
    tensor_free(&sample); tensor_free(&t); tensor_free(&ctx); tensor_free(&out);
    return rc;
}

// ---------------------------------------------------------------------------------------
// train: upstream's training loop on precomputed latents (SPEC.md section 10.3)

#define TRAIN_MAX_BATCH 64 // the --batch option's bound

typedef struct {
    UNetConfig cfg;
    TrainConfig tc;
    ParamTable params, grads;
    AdamState opt;
    Scheduler sched;
    StFile data;
    size_t nclips;
    Tensor clip[TRAIN_MAX_BATCH];      // one step's clips (Fc,4,h,w)
    Tensor ctx, x_in, ts, noise, v;    // their contexts (B,T,C), the input, timesteps, noise and
                                       // (v_prediction) the v target
    LossPlot plot;                     // the loss per step, for --plot
} TrainRun;

static void train_run_free(TrainRun *r) {
    size_t b;
    st_close(&r->data);
    for (b = 0; b < TRAIN_MAX_BATCH; b++) tensor_free(&r->clip[b]);
    tensor_free(&r->ctx);
    plot_free(&r->plot); tensor_free(&r->x_in); tensor_free(&r->ts); tensor_free(&r->noise); tensor_free(&r->v);
    adam_free(&r->opt);
    sched_free(&r->sched);
    free_params(&r->grads); free_params(&r->params);
}

// --resume P0: the parameters and optimizer state that run P0 wrote (P0.params.safetensors,
// P0.opt.safetensors). 0, or 2 (bad input) after a message.
static int resume_run(ParamTable *params, AdamState *opt, TrainConfig *tc, const CliArgs *a) {
    char path[1024];
    snprintf(path, sizeof path, "%s.params.safetensors", a->resume);
    if (params_load(params, path, 0)) return bad_input(a);
    snprintf(path, sizeof path, "%s.opt.safetensors", a->resume);
    if (train_load_state(path, params, opt, tc)) return bad_input(a);
    return 0;
}

// A training run's data file (--data) and its number of clips: the consecutive tensors
// NAME.0, NAME.1, ... 0, or 2 after a message (unreadable, or no NAME.0).
static int open_clips(StFile *data, size_t *nclips, const char *name, const CliArgs *a) {
    char key[256];
    if (st_open(data, a->data)) return bad_input(a);
    for (*nclips = 0;; (*nclips)++) {
        snprintf(key, sizeof key, "%s.%lu", name, (unsigned long)*nclips);
        if (!st_find(data, key)) break;
    }
    if (*nclips == 0) { fprintf(a->err, "mavref %s: %s holds no tensor '%s.0'\n", a->command, a->data, name); return 2; }
    return 0;
}

// The model, its weights (or a resumed run's), the optimizer, the schedule and the data file.
static int train_setup(TrainRun *r, const CliArgs *a) {
    SchedConfig scfg;
    char path[1024];
    unet_config_default(&r->cfg);
    if (a->two_d) { // SD 1.5's 2-D UNet: no temporal layers, 4 input channels unless the config says otherwise
        r->cfg.temporal = 0;
        r->cfg.in_channels = 4;
        if (!a->all) return usage_error(a, "--2d trains every parameter: add --all");
    }
    if (a->model) snprintf(path, sizeof path, "%s/unet/config.json", a->model);
    if ((a->config || a->model) && unet_config_load(&r->cfg, a->model ? path : a->config)) return bad_input(a);
    train_config_default(&r->tc);
    r->tc.only_temporal = !a->all;
    r->tc.weight_decay = a->weight_decay;
    r->tc.recompute = a->recompute;
    // the noise schedule: --scheduler-config, else --model's, else SD 1.x's
    sched_config_sd(&scfg);
    if (a->scheduler_config ? sched_config_load(&scfg, a->scheduler_config) : a->model ? md_load_scheduler(&scfg, a->model) : MV_OK)
        return bad_input(a);
    if (unet_declare_params(&r->params, &r->cfg) || params_alloc(&r->params) || train_grads_alloc(&r->grads, &r->params, &r->tc) ||
        adam_init(&r->opt, &r->params, &r->tc) || sched_init(&r->sched, SCHED_DDIM, &scfg, 0, 1))
        return fail(a, "setup");
    if (a->resume) {
        int rc = resume_run(&r->params, &r->opt, &r->tc, a);
        if (rc) return rc;
    } else if (a->model) {
        char w[1024];
        if (md_weights_path(w, sizeof w, a->model, "unet") || md_load_weights(&r->params, w, 0)) return bad_input(a);
    } else if (load_weights(&r->params, a->weights, a->procedural)) {
        return bad_input(a);
    }
    train_set_schedule(&r->tc, a->lr, a->warmup, a->decay, a->total_steps ? (long)a->total_steps : r->opt.step + (long)a->steps);
    return open_clips(&r->data, &r->nclips, "latents", a);
}

// Clip b of global step g's batch: its index, window start and timestep. The draws depend on
// (seed, g, b) only, so a resumed run repeats an uninterrupted one, and clip 0 draws what a
// batch-1 run draws.
static void train_draw(const TrainRun *r, const CliArgs *a, long g, size_t b, size_t Fc, size_t *ci, size_t *start, int64_t *t) {
    uint64_t draw = proc_splitmix64((uint64_t)a->seed ^ proc_splitmix64((uint64_t)g));
    if (b > 0) draw = proc_splitmix64(draw + 2 + b);
    *ci = (size_t)(draw % (uint64_t)r->nclips);
    *t = (int64_t)(proc_splitmix64(draw + 1) % (uint64_t)r->sched.T);
    if (Fc) *start = (size_t)(proc_splitmix64(draw + 2) % (uint64_t)(Fc - (size_t)a->frames + 1)); // dataset.py: random.randint(0, Fc - F), inclusive
}

// --cond-drop P: 1 if clip b of step g trains on the empty prompt's context, drawn from its own
// stream of (seed, g, b) so that the other draws are those of a run without it.
static int train_drop_context(const CliArgs *a, long g, size_t b) {
    uint64_t u = proc_splitmix64(proc_splitmix64((uint64_t)a->seed ^ proc_splitmix64((uint64_t)g)) ^ 0x636f6e642d64726fULL ^ (uint64_t)b);
    return a->cond_drop > 0 && (double)(u >> 11) * (1.0 / 9007199254740992.0) < a->cond_drop;
}

// Read clip ci's latents (Fc,4,h,w) into r->clip[b] and its context (T,C) or (1,T,C) into
// row b of r->ctx (B,T,C); uncond: context.uncond instead of context.<ci>.
static int train_read_clip(TrainRun *r, const CliArgs *a, size_t b, size_t ci, int uncond) {
    size_t B = (size_t)a->batch, need = a->two_d ? 1 : (size_t)a->frames;
    Tensor ctx;
    char name[64];
    tensor_free(&r->clip[b]);
    snprintf(name, sizeof name, "latents.%lu", (unsigned long)ci);
    if (st_read(&r->data, name, &r->clip[b])) return bad_input(a);
    if (r->clip[b].ndim != 4 || r->clip[b].shape[1] != 4 || r->clip[b].shape[0] < need ||
        (b > 0 && (r->clip[b].shape[2] != r->clip[0].shape[2] || r->clip[b].shape[3] != r->clip[0].shape[3]))) {
        fprintf(a->err, "mavref train: latents.%lu must be (F >= %llu, 4, h, w), every clip of one size\n", (unsigned long)ci, a->frames);
        return 2;
    }
    if (uncond) snprintf(name, sizeof name, "context.uncond");
    else snprintf(name, sizeof name, "context.%lu", (unsigned long)ci);
    if (st_read(&r->data, name, &ctx)) return bad_input(a);
    if (ctx.ndim == 3 && ctx.shape[0] == 1) { ctx.ndim = 2; ctx.shape[0] = ctx.shape[1]; ctx.shape[1] = ctx.shape[2]; }
    if (ctx.ndim != 2 || (b > 0 && (ctx.shape[0] != r->ctx.shape[1] || ctx.shape[1] != r->ctx.shape[2]))) {
        fprintf(a->err, "mavref train: context.%lu must be (T, C), every clip's the same\n", (unsigned long)ci);
        tensor_free(&ctx);
        return 2;
    }
    if (b == 0) {
        tensor_free(&r->ctx);
        if (tensor_alloc_v(&r->ctx, 3, B, ctx.shape[0], ctx.shape[1])) { tensor_free(&ctx); return fail(a, ""); }
    }
    memcpy(r->ctx.data + b * ctx.numel, ctx.data, ctx.numel * sizeof(real));
    tensor_free(&ctx);
    return 0;
}

// One step: the batch's draws, the collated input, train_step, and its line of output.
static int train_one_step(TrainRun *r, const CliArgs *a) {
    long g = r->opt.step;
    size_t B = (size_t)a->batch, F = (size_t)a->frames, b, ci[TRAIN_MAX_BATCH], Fc[TRAIN_MAX_BATCH], start[TRAIN_MAX_BATCH], H, W;
    int64_t t[TRAIN_MAX_BATCH];
    const real *cp[TRAIN_MAX_BATCH];
    double lr, loss, l2, norm;
    char name[64];
    int rc;
    int drop[TRAIN_MAX_BATCH];
    if (r->cfg.in_channels != (a->two_d ? 4 : 9)) {
        fprintf(a->err, "mavref train: the training input has %d channels, the model takes %d\n", a->two_d ? 4 : 9, r->cfg.in_channels);
        return 2;
    }
    for (b = 0; b < B; b++) {
        drop[b] = train_drop_context(a, g, b);
        train_draw(r, a, g, b, 0, &ci[b], &start[b], &t[b]);
        if ((rc = train_read_clip(r, a, b, ci[b], drop[b]))) return rc;
        Fc[b] = r->clip[b].shape[0];
        if (a->two_d) start[b] = 0; // the first frame: the picture the video starts from
        else train_draw(r, a, g, b, Fc[b], &ci[b], &start[b], &t[b]);
        cp[b] = r->clip[b].data;
    }
    H = r->clip[0].shape[2]; W = r->clip[0].shape[3];
    tensor_free(&r->x_in); tensor_free(&r->noise); tensor_free(&r->ts);
    if ((a->two_d ? tensor_alloc_v(&r->x_in, 4, B, (size_t)4, H, W) || tensor_alloc_v(&r->noise, 4, B, (size_t)4, H, W)
                  : tensor_alloc_v(&r->x_in, 5, B, (size_t)r->cfg.in_channels, F, H, W) || tensor_alloc_v(&r->noise, 5, B, (size_t)4, F, H, W)) ||
        tensor_alloc_v(&r->ts, 1, B))
        return fail(a, "");
    snprintf(name, sizeof name, "train noise %ld", g);
    if (noise_normal(r->noise.data, r->noise.numel, (uint64_t)a->seed, name)) return fail(a, "");
    // the target: the noise (upstream), or v where the schedule says v_prediction (the toy model)
    tensor_free(&r->v);
    if (r->sched.cfg.v_prediction && tensor_alloc(&r->v, r->noise.ndim, r->noise.shape)) return fail(a, "");
    if (a->two_d ? train_collate_2d(r->x_in.data, r->v.data, cp, B, H, W, r->noise.data, t, &r->sched)
                 : train_collate(r->x_in.data, r->v.data, cp, Fc, start, B, F, H, W, r->noise.data, t, &r->sched))
        return fail(a, "");
    for (b = 0; b < B; b++) r->ts.data[b] = (real)t[b];
    lr = train_lr(&r->tc, r->opt.step);
    if (train_step(&r->params, &r->grads, &r->opt, &r->tc, &r->cfg, &r->x_in, &r->ts, r->sched.cfg.v_prediction ? &r->v : &r->noise,
                   &r->ctx, &loss, &l2, &norm))
        return fail(a, "");
    fprintf(a->out, "step %ld", g);
    for (b = 0; b < B; b++)
        fprintf(a->out, " clip %lu%s start %lu t %ld", (unsigned long)ci[b], drop[b] ? " uncond" : "", (unsigned long)start[b], (long)t[b]);
    fprintf(a->out, " lr %.6e loss %.9e l2_grads %.9e trainable_norm %.9e\n", lr, loss, l2, norm);
    fflush(a->out);
    return plot_add(&r->plot, (double)g, loss);
}

// P.params.safetensors (the parameters by Flax name), P.opt.safetensors (the optimizer) and
// the --plot curve.
static int write_run(const CliArgs *a, const ParamTable *pt, const AdamState *opt, const TrainConfig *tc, const LossPlot *plot,
                     const char *producer) {
    StWriter w;
    char path[1024], line[160];
    size_t s;
    int rc = 0;
    st_writer_init(&w);
    for (s = 0; s < pt->count && !rc; s++) rc = st_writer_add(&w, pt->p[s].name, &pt->p[s].t, ST_REAL);
    snprintf(line, sizeof line, "%s " REAL_NAME, producer);
    rc = rc || st_writer_meta(&w, "producer", line);
    snprintf(path, sizeof path, "%s.params.safetensors", a->out_path);
    rc = rc || st_writer_save(&w, path);
    st_writer_free(&w);
    if (rc) return fail(a, "writing");
    fprintf(a->out, "wrote %s\n", path);
    snprintf(path, sizeof path, "%s.opt.safetensors", a->out_path);
    if (train_save_state(path, pt, opt, tc)) return fail(a, "writing");
    fprintf(a->out, "wrote %s (step %ld)\n", path, opt->step);
    if (a->plot && plot->n) {
        snprintf(path, sizeof path, "%s: loss of %s, steps %ld-%ld", producer, a->out_path, opt->step - (long)a->steps, opt->step - 1);
        if (plot_write_svg(a->plot, plot, path)) return fail(a, "writing");
        fprintf(a->out, "wrote %s\n", a->plot);
    }
    return 0;
}

static int cmd_train(const CliArgs *a) {
    TrainRun r;
    unsigned long long k;
    int rc;
    if (!a->data || !a->out_path || !cli_given(a, "--steps") ||
        (!!a->weights + cli_given(a, "--procedural") + !!a->resume + !!a->model) != 1 || (a->model && a->config))
        return usage_error(a, "needs --data, --out, --steps and exactly one of --weights / --procedural / --resume / --model"
                              " (--model DIR has its own config)");
    memset(&r, 0, sizeof r);
    params_init(&r.params);
    params_init(&r.grads);
    rc = train_setup(&r, a);
    for (k = 0; k < a->steps && !rc; k++) rc = train_one_step(&r, a);
    if (!rc) rc = write_run(a, &r.params, &r.opt, &r.tc, &r.plot, "mavref train");
    train_run_free(&r);
    return rc;
}

// ---------------------------------------------------------------------------------------
// toyworld, train-vae: the toy world's clips, and training a VAE on their frames

static int cmd_toyworld(const CliArgs *a) {
    StWriter w;
    ToyClip clip;
    size_t S = (size_t)a->size, F = (size_t)a->frames, shape[4], i;
    unsigned char *frames = NULL;
    char name[64], caption[96], value[32];
    int rc = 0;
    if (!a->out_path) return usage_error(a, "needs --out");
    st_writer_init(&w);
    shape[0] = F; shape[1] = S; shape[2] = S; shape[3] = 3;
    if (!(frames = (unsigned char *)mv_malloc(F * S * S * 3, "frames"))) { st_writer_free(&w); return fail(a, ""); }
    for (i = 0; i < (size_t)a->clips && !rc; i++) {
        toy_clip(&clip, (uint64_t)a->seed, (uint64_t)i, a->held_out ? 1 : 0, (int)S, (int)F);
        toy_render(frames, &clip, (int)S, (int)F);
        toy_caption(caption, sizeof caption, &clip);
        snprintf(name, sizeof name, "frames.%lu", (unsigned long)i);
        rc = st_writer_add_u8(&w, name, frames, 4, shape);
        snprintf(name, sizeof name, "caption.%lu", (unsigned long)i);
        rc = rc || st_writer_meta(&w, name, caption);
        if (!rc && i == 0 && a->first_frame) { // frame 0 of clip 0: (S,S,3), the start of frames
            Image img;
            img.width = img.height = S; img.channels = 3; img.data = frames;
            rc = image_write_pnm(a->first_frame, &img);
            if (!rc) fprintf(a->out, "wrote %s: the first frame of \"%s\"\n", a->first_frame, caption);
        }
    }
    snprintf(value, sizeof value, "%llu", a->seed);
    rc = rc || st_writer_meta(&w, "seed", value) || st_writer_meta(&w, "held_out", a->held_out ? "1" : "0") ||
         st_writer_meta(&w, "producer", "mavref toyworld (ref/toyworld.h)") || st_writer_save(&w, a->out_path);
    free(frames);
    st_writer_free(&w);
    if (rc) return fail(a, "");
    fprintf(a->out, "wrote %s: %llu clips of %lu frames %lux%lu\n", a->out_path, a->clips, (unsigned long)F, (unsigned long)S,
            (unsigned long)S);
    return 0;
}

typedef struct {
    VAEConfig cfg;
    TrainConfig tc;
    ParamTable params, grads;
    AdamState opt;
    StFile data;
    size_t nclips;
    LossPlot plot;
} VaeRun;

static void vae_run_free(VaeRun *r) {
    st_close(&r->data);
    adam_free(&r->opt);
    plot_free(&r->plot);
    free_params(&r->grads);
    free_params(&r->params);
}

static int vae_setup(VaeRun *r, const CliArgs *a) {
    vae_config_default(&r->cfg);
    if (a->vae_channels && (r->cfg.n_blocks = mv_parse_int_list(a->vae_channels, r->cfg.block_out_channels, VAE_MAX_BLOCKS)) < 1)
        return usage_error(a, "bad --vae-channels");
    if (cli_given(a, "--vae-layers")) r->cfg.layers_per_block = (int)a->vae_layers;
    train_config_default(&r->tc);
    r->tc.only_temporal = 0;
    r->tc.only = a->train_only;
    r->tc.weight_decay = a->weight_decay;
    if (vae_declare_params(&r->params, &r->cfg) || params_alloc(&r->params) || unet_grads_alloc(&r->grads, &r->params) ||
        adam_init(&r->opt, &r->params, &r->tc))
        return fail(a, "setup");
    if (a->resume) {
        int rc = resume_run(&r->params, &r->opt, &r->tc, a);
        if (rc) return rc;
    } else if (load_weights(&r->params, a->weights, a->procedural)) {
        return bad_input(a);
    }
    train_set_schedule(&r->tc, a->lr, a->warmup, a->decay, a->total_steps ? (long)a->total_steps : r->opt.step + (long)a->steps);
    return open_clips(&r->data, &r->nclips, "frames", a);
}

// Image b of step g: frame f of clip ci, both drawn from (seed, g, b); pixels to [-1, 1].
static int vae_image(VaeRun *r, const CliArgs *a, long g, size_t b, Tensor *images, size_t *ci, size_t *fi) {
    uint64_t draw = proc_splitmix64((uint64_t)a->seed ^ proc_splitmix64((uint64_t)g));
    const StEntry *e;
    Tensor clip;
    size_t H, W, c, i;
    char name[64];
    if (b > 0) draw = proc_splitmix64(draw + 2 + b);
    *ci = (size_t)(draw % (uint64_t)r->nclips);
    snprintf(name, sizeof name, "frames.%lu", (unsigned long)*ci);
    e = st_find(&r->data, name);
    if (e->ndim != 4 || e->shape[3] != 3 || e->shape[0] < 1 || e->shape[1] != images->shape[2] || e->shape[2] != images->shape[3]) {
        fprintf(a->err, "mavref train-vae: %s of %s must be (F, %lu, %lu, 3)\n", name, a->data, (unsigned long)images->shape[2],
                (unsigned long)images->shape[3]);
        return 2;
    }
    *fi = (size_t)(proc_splitmix64(draw + 1) % (uint64_t)e->shape[0]);
    if (st_read(&r->data, name, &clip)) return bad_input(a);
    H = e->shape[1]; W = e->shape[2];
    for (c = 0; c < 3; c++) // (H,W,3) bytes -> (3,H,W) in [-1, 1]
        for (i = 0; i < H * W; i++)
            images->data[((b * 3 + c) * H * W) + i] = clip.data[(*fi * H * W + i) * 3 + c] / (real)127.5 - (real)1;
    tensor_free(&clip);
    return 0;
}

static int vae_one_step(VaeRun *r, const CliArgs *a, Tensor *images, Tensor *eps) {
    long g = r->opt.step;
    size_t b, ci, fi;
    VaeStepStats st;
    char name[64];
    int rc;
    fprintf(a->out, "step %ld", g);
    for (b = 0; b < images->shape[0]; b++) {
        if ((rc = vae_image(r, a, g, b, images, &ci, &fi))) return rc;
        fprintf(a->out, " %lu:%lu", (unsigned long)ci, (unsigned long)fi);
    }
    snprintf(name, sizeof name, "vae noise %ld", g);
    if (noise_normal(eps->data, eps->numel, (uint64_t)a->seed, name)) return fail(a, "");
    if (vae_train_step(&r->params, &r->grads, &r->opt, &r->tc, &r->cfg, images, eps, a->kl, &st)) return fail(a, "");
    fprintf(a->out, " lr %.6e loss %.9e recon %.9e kl %.9e l2_grads %.9e\n", train_lr(&r->tc, g), st.loss, st.recon, st.kl,
            st.l2_grads);
    fflush(a->out);
    return plot_add(&r->plot, (double)g, st.loss) ? fail(a, "") : 0;
}

static int cmd_train_vae(const CliArgs *a) {
    VaeRun r;
    Tensor images, eps;
    const StEntry *e;
    unsigned long long k;
    size_t f;
    int rc;
    if (!a->data || !a->out_path || !cli_given(a, "--steps") || (!!a->weights + cli_given(a, "--procedural") + !!a->resume) != 1)
        return usage_error(a, "needs --data, --out, --steps and exactly one of --weights / --procedural / --resume");
    memset(&r, 0, sizeof r);
    memset(&images, 0, sizeof images);
    memset(&eps, 0, sizeof eps);
    params_init(&r.params);
    params_init(&r.grads);
    rc = vae_setup(&r, a);
    if (!rc) {
        e = st_find(&r.data, "frames.0");
        f = (size_t)1 << (r.cfg.n_blocks - 1);
        if (e->ndim != 4 || e->shape[1] % f || e->shape[2] % f) rc = usage_error(a, "frames.0 must be (F, H, W, 3), H and W multiples of the VAE's factor");
        else if (tensor_alloc_v(&images, 4, (size_t)a->batch, (size_t)3, e->shape[1], e->shape[2]) ||
                 tensor_alloc_v(&eps, 4, (size_t)a->batch, (size_t)r.cfg.latent_channels, e->shape[1] / f, e->shape[2] / f))
            rc = fail(a, "");
    }
    for (k = 0; k < a->steps && !rc; k++) rc = vae_one_step(&r, a, &images, &eps);
    if (!rc) rc = write_run(a, &r.params, &r.opt, &r.tc, &r.plot, "mavref train-vae");
    tensor_free(&images);
    tensor_free(&eps);
    vae_run_free(&r);
    return rc;
}

// ---------------------------------------------------------------------------------------
// init, encode-clips: a network's starting weights, and a training set from toy-world clips

// COMPONENT's parameters, declared for its config.json (the defaults without --config).
static int init_declare(ParamTable *pt, const CliArgs *a, const char *component) {
    if (!strcmp(component, "unet") || !strcmp(component, "unet2d")) {
        UNetConfig c;
        unet_config_default(&c);
        if (!strcmp(component, "unet2d")) { c.temporal = 0; c.in_channels = 4; }
        return (a->config && unet_config_load(&c, a->config)) || unet_declare_params(pt, &c) ? MV_ERR : MV_OK;
    }
    if (!strcmp(component, "vae")) {
        VAEConfig c;
        vae_config_default(&c);
        return (a->config && vae_config_load(&c, a->config)) || vae_declare_params(pt, &c) ? MV_ERR : MV_OK;
    }
    if (!strcmp(component, "text_encoder")) {
        ClipConfig c;
        clip_config_default(&c);
        return (a->config && clip_config_load(&c, a->config)) || clip_declare_params(pt, &c) ? MV_ERR : MV_OK;
    }
    return mv_fail("unknown component '%s' (unet, unet2d, vae or text_encoder)", component);
}

// init unet --from-2d W2D: the pseudo-3D UNet starts as the 2-D UNet of W2D run on each frame
// (Make-A-Video's initialization): the 2-D weights where the names agree; conv_in's channels
// beyond W2D's (the mask and the hint) zero; every temporal conv the identity (kernel[1] = I,
// the other taps and the bias zero: there is no residual around it); every temporal
// attention's to_out_0 zero (it sits inside a residual). The other temporal parameters keep
// their procedural values; with to_out_0 at zero they start to learn at its first update.
static int init_from_2d(ParamTable *pt, const char *path) {
    StFile f;
    size_t k, i, j, n;
    int rc = MV_OK;
    if (st_open(&f, path)) return MV_ERR;
    for (k = 0; k < pt->count && rc == MV_OK; k++) {
        Param *p = &pt->p[k];
        const StEntry *e = st_find(&f, p->name);
        const char *leaf = strrchr(p->name, '.');
        Tensor src;
        if (e) {
            if (st_read(&f, p->name, &src)) { rc = MV_ERR; break; }
            if (src.numel == p->t.numel) {
                memcpy(p->t.data, src.data, src.numel * sizeof(real));
            } else if (!strcmp(p->name, "conv_in.spatial_conv.kernel") && src.ndim == 4 && p->t.ndim == 4 &&
                       src.shape[0] == p->t.shape[0] && src.shape[1] == p->t.shape[1] && src.shape[3] == p->t.shape[3] &&
                       src.shape[2] < p->t.shape[2]) {
                size_t ci = src.shape[2], co = src.shape[3], cin = p->t.shape[2]; // (KH,KW,Ci,Co)
                memset(p->t.data, 0, p->t.numel * sizeof(real));
                for (i = 0; i < src.shape[0] * src.shape[1]; i++)
                    for (j = 0; j < ci; j++) memcpy(p->t.data + (i * cin + j) * co, src.data + (i * ci + j) * co, co * sizeof(real));
            } else {
                rc = mv_fail("%s: %s has %lu values, the pseudo-3D UNet's %lu", path, p->name, (unsigned long)src.numel, (unsigned long)p->t.numel);
            }
            tensor_free(&src);
        } else if (strstr(p->name, "temporal_conv.")) {
            memset(p->t.data, 0, p->t.numel * sizeof(real));
            if (leaf && !strcmp(leaf, ".kernel")) { // (3,C,C): kernel[1] = I
                n = p->t.shape[1];
                for (i = 0; i < n; i++) p->t.data[(n + i) * p->t.shape[2] + i] = (real)1;
            }
        } else if (strstr(p->name, "attn_temporal.to_out_0.")) {
            memset(p->t.data, 0, p->t.numel * sizeof(real));
        } else if (!strstr(p->name, "temporal")) {
            rc = mv_fail("%s: no %s (a 2-D UNet of the same config?)", path, p->name);
        }
    }
    st_close(&f);
    return rc;
}

// init vae --whiten DATA: SD's pipeline multiplies the VAE's latent by 0.18215 (upstream has
// the number in its code), a factor chosen for SD's VAE to give the diffusion unit variance.
// For another VAE, rescale its latent instead: with m_c and s_c the mean and standard
// deviation of channel c over every latents.<i> of DATA (this VAE's posterior means),
//   z'_c = (z_c - m_c) k_c,  k_c = 1 / (0.18215 s_c)
// quant_conv's mean outputs become (W z + b - m) k, its log-variance outputs gain 2 ln k_c
// (the same posterior, rescaled), and post_quant_conv reads z = z'/k + m: its kernel rows are
// divided by k_c and its bias gains sum_c m_c W[c,o]. The decoder's output is unchanged.
static int init_whiten(ParamTable *pt, const char *data_path, FILE *out) {
    StFile f;
    Tensor *qk = params_get(pt, "quant_conv.kernel"), *qb = params_get(pt, "quant_conv.bias"),
           *pk = params_get(pt, "post_quant_conv.kernel"), *pb = params_get(pt, "post_quant_conv.bias");
    double sum[64], sq[64], mean[64], k[64], cnt = 0;
    size_t L, i, j, c, o, e, per;
    int rc = MV_OK;
    if (!qk || !qb || !pk || !pb) return MV_ERR;
    L = pk->shape[2]; // (1,1,L,L)
    if (L > sizeof sum / sizeof sum[0] || qk->shape[3] != 2 * L) return mv_fail("--whiten: unexpected quant_conv shape");
    for (c = 0; c < L; c++) sum[c] = sq[c] = 0;
    if (st_open(&f, data_path)) return MV_ERR;
    for (e = 0; e < f.count && rc == MV_OK; e++) {
        Tensor z;
        if (strncmp(f.entries[e].name, "latents.", 8)) continue;
        if (st_read(&f, f.entries[e].name, &z)) { rc = MV_ERR; break; }
        if (z.ndim != 4 || z.shape[1] != L) {
            rc = mv_fail("%s: %s must be (F, %lu, h, w)", data_path, f.entries[e].name, (unsigned long)L);
        } else {
            per = z.shape[2] * z.shape[3];
            for (i = 0; i < z.shape[0]; i++)
                for (c = 0; c < L; c++)
                    for (j = 0; j < per; j++) { double v = z.data[(i * L + c) * per + j]; sum[c] += v; sq[c] += v * v; }
            cnt += (double)(z.shape[0] * per);
        }
        tensor_free(&z);
    }
    st_close(&f);
    if (rc) return rc;
    if (cnt < 2) return mv_fail("%s: no latents.<i> to measure", data_path);
    for (c = 0; c < L; c++) {
        double var = sq[c] / cnt - (sum[c] / cnt) * (sum[c] / cnt);
        if (!(var > 0)) return mv_fail("%s: latent channel %lu does not vary", data_path, (unsigned long)c);
        mean[c] = sum[c] / cnt;
        k[c] = 1.0 / (LATENT_SCALE * sqrt(var));
    }
    for (o = 0; o < L; o++) { // post_quant_conv: bias += sum_c m_c W[c,o] (the original W), then rows / k_c
        double add = 0;
        for (c = 0; c < L; c++) add += mean[c] * (double)pk->data[c * L + o];
        pb->data[o] = (real)((double)pb->data[o] + add);
    }
    for (c = 0; c < L; c++)
        for (o = 0; o < L; o++) pk->data[c * L + o] = (real)((double)pk->data[c * L + o] / k[c]);
    for (i = 0; i < 2 * L; i++) // quant_conv (1,1,2L,2L): mean outputs c < L, log-variances L + c
        for (c = 0; c < L; c++) qk->data[i * 2 * L + c] = (real)((double)qk->data[i * 2 * L + c] * k[c]);
    for (c = 0; c < L; c++) {
        qb->data[c] = (real)(((double)qb->data[c] - mean[c]) * k[c]);
        qb->data[L + c] = (real)((double)qb->data[L + c] + 2.0 * log(k[c]));
    }
    for (c = 0; c < L; c++) fprintf(out, "latent channel %lu: mean %.6g std %.6g -> scale %.6g\n", (unsigned long)c, mean[c], 1.0 / (LATENT_SCALE * k[c]), k[c]);
    return MV_OK;
}

static int cmd_init(const CliArgs *a) {
    ParamTable pt;
    StWriter w;
    size_t k, i;
    int half, rc;
    char line[160];
    if (!a->out_path) return usage_error(a, "needs COMPONENT and --out");
    if (a->from_2d && (strcmp(a->pos[0], "unet") || a->weights)) return usage_error(a, "--from-2d is for unet, with --procedural");
    if (a->whiten && (strcmp(a->pos[0], "vae") || !a->weights)) return usage_error(a, "--whiten is for vae, with --weights");
    half = !strcmp(a->dtype, "f16");
    if (!half && strcmp(a->dtype, "f32")) return usage_error(a, "--dtype must be f32 or f16");
    params_init(&pt);
    st_writer_init(&w);
    if (init_declare(&pt, a, a->pos[0]) || params_alloc(&pt) ||
        (a->weights ? params_load(&pt, a->weights, 0) : params_procedural(&pt, (uint64_t)a->procedural)) ||
        (a->from_2d && init_from_2d(&pt, a->from_2d)) || (a->whiten && init_whiten(&pt, a->whiten, a->out))) {
        rc = bad_input(a);
    } else {
        for (k = 0; k < pt.count; k++) // f16: round first, so the file holds the values exactly
            for (i = 0; half && i < pt.p[k].t.numel; i++)
                pt.p[k].t.data[i] = (real)st_f16_to_double(st_f16_from_double((double)pt.p[k].t.data[i]));
        if (a->weights) snprintf(line, sizeof line, "mavref init %s --weights (trained by mavref)%s", a->pos[0], a->whiten ? " --whiten" : "");
        else snprintf(line, sizeof line, "mavref init %s --procedural %llu%s", a->pos[0], a->procedural, a->from_2d ? " --from-2d" : "");
        rc = 0;
        for (k = 0; k < pt.count && !rc; k++) rc = st_writer_add(&w, pt.p[k].name, &pt.p[k].t, half ? ST_F16 : ST_F32);
        rc = rc || st_writer_meta(&w, "producer", line) || st_writer_save(&w, a->out_path);
        if (rc) rc = fail(a, "writing");
        else fprintf(a->out, "wrote %s: %lu tensors, %lu values (%s)\n", a->out_path, (unsigned long)pt.count, (unsigned long)pt.numel, a->dtype);
    }
    st_writer_free(&w);
    free_params(&pt);
    return rc;
}

// One clip of D: frames (Fc,H,W,3) bytes -> images (Fc,3,H,W) in [-1, 1] -> the VAE's posterior
// mean (Fc,4,h,w); its caption -> the text encoder's last hidden state (77,C).
static int encode_one_clip(StWriter *w, StFile *data, size_t i, Models *m, const CliArgs *a) {
    Tensor frames, images, mean, hidden;
    int32_t ids32[CLIP_CONTEXT];
    int64_t ids[CLIP_CONTEXT];
    const char *caption;
    char name[64];
    size_t F, H, W, f, c, p;
    int k, rc = MV_ERR;
    memset(&images, 0, sizeof images); memset(&mean, 0, sizeof mean); memset(&hidden, 0, sizeof hidden);
    snprintf(name, sizeof name, "caption.%lu", (unsigned long)i);
    if (!(caption = st_meta(data, name))) return mv_fail("%s: no caption.%lu in the metadata", a->data, (unsigned long)i);
    snprintf(name, sizeof name, "frames.%lu", (unsigned long)i);
    if (st_read(data, name, &frames)) return MV_ERR;
    if (frames.ndim != 4 || frames.shape[3] != 3) { tensor_free(&frames); return mv_fail("%s: %s must be (F, H, W, 3)", a->data, name); }
    F = frames.shape[0]; H = frames.shape[1]; W = frames.shape[2];
    if (tensor_alloc_v(&images, 4, F, (size_t)3, H, W)) goto done;
    for (f = 0; f < F; f++) // (H,W,3) bytes -> (3,H,W) in [-1, 1], as train-vae and the pipeline's hint
        for (c = 0; c < 3; c++)
            for (p = 0; p < H * W; p++) images.data[(f * 3 + c) * H * W + p] = frames.data[(f * H * W + p) * 3 + c] / (real)127.5 - (real)1;
    if (vae_encode(&mean, NULL, &images, &m->vae_p, &m->vae) || tokenize(&m->tok, caption, strlen(caption), ids32) < 0) goto done;
    for (k = 0; k < CLIP_CONTEXT; k++) ids[k] = ids32[k];
    if (clip_text_forward(&hidden, ids, 1, CLIP_CONTEXT, &m->clip_p, &m->clip)) goto done;
    hidden.ndim = 2; hidden.shape[0] = CLIP_CONTEXT; hidden.shape[1] = hidden.shape[2];
    snprintf(name, sizeof name, "latents.%lu", (unsigned long)i);
    if (st_writer_add(w, name, &mean, ST_REAL)) goto done;
    snprintf(name, sizeof name, "context.%lu", (unsigned long)i);
    if (st_writer_add(w, name, &hidden, ST_REAL) || st_writer_meta(w, name, caption)) goto done;
    rc = MV_OK;
done:
    tensor_free(&frames); tensor_free(&images); tensor_free(&mean); tensor_free(&hidden);
    return rc;
}

static int cmd_encode_clips(const CliArgs *a) {
    Models m;
    StFile data;
    StWriter w;
    Tensor hidden;
    int32_t ids32[CLIP_CONTEXT];
    int64_t ids[CLIP_CONTEXT];
    size_t i, n = 0;
    char name[64];
    int k, rc = 0;
    if (!a->model || !a->data || !a->out_path) return usage_error(a, "needs --model, --data and --out");
    memset(&m, 0, sizeof m);
    memset(&hidden, 0, sizeof hidden);
    params_init(&m.vae_p); params_init(&m.clip_p);
    st_writer_init(&w);
    if (st_open(&data, a->data)) { st_writer_free(&w); return bad_input(a); }
    if (md_load_tokenizer(&m.tok, a->model) || md_load_vae(&m.vae_p, &m.vae, a->model) || md_load_clip(&m.clip_p, &m.clip, a->model)) {
        rc = bad_input(a);
        goto done;
    }
    for (;; n++) {
        snprintf(name, sizeof name, "frames.%lu", (unsigned long)n);
        if (!st_find(&data, name)) break;
    }
    if (n == 0) { fprintf(a->err, "mavref encode-clips: %s holds no tensor 'frames.0'\n", a->data); rc = 2; goto done; }
    for (i = 0; i < n && !rc; i++)
        if (encode_one_clip(&w, &data, i, &m, a)) rc = bad_input(a);
    // the empty prompt, for training with --cond-drop (the unconditional half of guidance)
    if (!rc && tokenize(&m.tok, "", 0, ids32) < 0) rc = fail(a, "");
    for (k = 0; k < CLIP_CONTEXT; k++) ids[k] = ids32[k];
    if (!rc && clip_text_forward(&hidden, ids, 1, CLIP_CONTEXT, &m.clip_p, &m.clip)) rc = fail(a, "");
    if (!rc) {
        hidden.ndim = 2; hidden.shape[0] = CLIP_CONTEXT; hidden.shape[1] = hidden.shape[2];
        if (st_writer_add(&w, "context.uncond", &hidden, ST_REAL) || st_writer_meta(&w, "producer", "mavref encode-clips") ||
            st_writer_save(&w, a->out_path))
            rc = fail(a, "writing");
        else fprintf(a->out, "wrote %s: %lu clips\n", a->out_path, (unsigned long)n);
    }
done:
    st_close(&data);
    st_writer_free(&w);
    tensor_free(&hidden);
    free_params(&m.vae_p); free_params(&m.clip_p);
    free_tokenizer(&m.tok);
    return rc;
}

// ---------------------------------------------------------------------------------------
// toy-eval: does the toy model do what the prompt says?

// Pair k's clip: generated by the model (text only: the 2-D UNet makes the first frame), or
// with --truth the toy world's own rendering of the same combination, or with
// --true-first-frame generated by the video UNet from that rendering's first frame (the
// 2-D UNet left out, so that a failure is the video UNet's own).
static int toy_eval_clip(unsigned char **frames, const CliArgs *a, GenOptions *o, Models *m, int k, char *caption, size_t cap) {
    ToyClip clip;
    uint64_t seed;
    Image first;
    int rc;
    toy_eval_pair(k, &clip.color, &clip.shape, &clip.dir, &seed);
    toy_caption(caption, cap, &clip);
    o->prompt = caption;
    o->seed = seed;
    if (!a->truth && !a->true_first_frame) return pipeline_generate(frames, NULL, NULL, o, m, NULL, NULL);
    toy_clip_for(&clip, clip.color, clip.shape, clip.dir, seed, 0, 64, 12);
    if (!(*frames = (unsigned char *)mv_malloc((size_t)12 * 64 * 64 * 3, "frames"))) return MV_ERR;
    toy_render(*frames, &clip, 64, 12); // (12,64,64,3)
    if (a->truth) return MV_OK;
    first.width = first.height = 64; first.channels = 3;
    first.data = *frames; // frame 0
    o->hint = &first;
    rc = pipeline_generate(frames, NULL, NULL, o, m, NULL, NULL); // *frames: the generated clip
    o->hint = NULL;
    free(first.data);
    return rc;
}

static int cmd_toy_eval(const CliArgs *a) {
    GenOptions o;
    Models m;
    Image hint, mask;
    Tensor noise;
    unsigned char *frames = NULL;
    char caption[96], path[1100];
    int k, rc = 0, pass = 0, held_pass = 0, held_n = 0;
    memset(&m, 0, sizeof m); memset(&hint, 0, sizeof hint); memset(&mask, 0, sizeof mask); memset(&noise, 0, sizeof noise);
    if (a->truth && a->true_first_frame) return usage_error(a, "--truth and --true-first-frame exclude each other");
    if (!a->truth && (!a->model || (!a->hint_model && !a->true_first_frame)))
        return usage_error(a, "needs --model DIR and --hint-model DIR (or --true-first-frame, or --truth)");
    if ((rc = generate_settings(&o, &m, a))) return rc;
    o.frames = 12; o.width = o.height = 64; // the toy world's clips
    o.progress = 0;
    params_init(&m.unet_p); params_init(&m.vae_p); params_init(&m.clip_p); params_init(&m.unet2d_p);
    if (!a->truth && generate_load(&o, &m, &hint, &mask, &noise, a)) { rc = bad_input(a); goto out; }
    fprintf(a->out, "%-3s %-36s %-4s %-7s %-6s %-6s %-8s %-6s %-9s %s\n", "k", "prompt", "held", "colour", "dir", "along", "shape", "px", "", "");
    for (k = 0; k < TOY_EVAL_PAIRS; k++) {
        ToyMeasure me;
        int color, shape, dir, ok;
        uint64_t seed;
        toy_eval_pair(k, &color, &shape, &dir, &seed);
        if (toy_eval_clip(&frames, a, &o, &m, k, caption, sizeof caption)) { rc = fail(a, ""); goto out; }
        toy_measure(&me, frames, 64, 12, color);
        // the asked colour's blob moves the asked way by a quarter of the frame, and has the asked shape
        ok = me.dir == dir && toy_along(&me, dir) >= 64 / 4.0 && me.shape == shape;
        pass += ok;
        held_n += toy_held_out(color, shape, dir);
        held_pass += ok && toy_held_out(color, shape, dir);
        fprintf(a->out, "%-3d %-36s %-4s %-7s %-6s %6.1f %-8s %3ld/%-3ld %s\n", k, caption, toy_held_out(color, shape, dir) ? "yes" : "",
                me.color < 0 ? "none" : toy_color_names[me.color], me.dir < 0 ? "none" : toy_dir_names[me.dir], toy_along(&me, dir),
                me.shape < 0 ? "none" : toy_shape_names[me.shape], me.pixels0, me.pixels1, ok ? "PASS" : "FAIL");
        if (a->out_path) {
            snprintf(path, sizeof path, "%s_%02d.gif", a->out_path, k);
            if (video_write_gif(path, frames, 12, 64, 64, 8, 1)) { rc = fail(a, "writing"); goto out; }
        }
        fflush(a->out);
        free(frames);
        frames = NULL;
    }
    fprintf(a->out, "prompt adherence: %d of %d pairs (%.1f%%), held-out %d of %d; the bar is 90%%\n", pass, TOY_EVAL_PAIRS,
            100.0 * pass / TOY_EVAL_PAIRS, held_pass, held_n);
    rc = pass * 10 >= TOY_EVAL_PAIRS * 9 ? 0 : 1;
out:
    free(frames);
    free_params(&m.unet_p); free_params(&m.vae_p); free_params(&m.clip_p); free_params(&m.unet2d_p);
    free_tokenizer(&m.tok);
    return rc;
}

// ---------------------------------------------------------------------------------------
// The commands

typedef int (*CommandFn)(const CliArgs *a);

// ---------------------------------------------------------------------------------------
// check (ref/check.c)

static int cmd_check(const CliArgs *a) {
    CheckOpts o;
    memset(&o, 0, sizeof o);
    if (!a->backend) return usage_error(a, "--backend is required");
    o.backend = a->backend;
    o.vectors = a->vectors;
    o.ops = a->ops;
    o.cases = a->cases;
    o.level = a->level;
    o.workdir = a->workdir;
    o.precision = (int)a->precision;
    o.timeout = a->timeout;
    return check_run(&o, a->out, a->err);
}

static const struct { CliCommand c; CommandFn run; } commands[] = {
    {{"info", CMD_INFO, 1, 1, "FILE", "FILE",
      "      list the tensors of a checkpoint: name, dtype, shape (safetensors: and its metadata).\n"
      "      Reads safetensors, Flax msgpack (flax.serialization) and torch.save zip files.\n"}, cmd_info},
    {{"convert", CMD_CONVERT, 2, 2, "IN OUT", "IN OUT [--component unet|unet2d|vae|text_encoder] [--names flax|torch|stored] [--dtype keep|f32]",
      "      write one network of IN as the safetensors file OUT by mavref's Flax names and layouts,\n"
      "      exactly the tensors --weights/--unet/--vae/--clip load (the mapping --model applies:\n"
      "      OIHW -> HWIO, Linear transposed, norm weight -> scale, buffers left out). IN: a weight\n"
      "      file (safetensors, Flax msgpack, torch.save zip, the single-file LDM checkpoint) or a\n"
      "      model folder. The dtype is kept as stored unless --dtype f32. Written tensor by tensor\n"
      "      to OUT.tmp, renamed to OUT when complete. --names torch: the other direction, the\n"
      "      same parameters by their PyTorch (diffusers/transformers) names and layouts.\n"
      "      Exit status: 0 written, 1 the write failed (or out of memory), 2 bad usage or input.\n"}, cmd_convert},
    {{"compare", CMD_COMPARE, 2, 2, "A B", "A B [--rtol R] [--atol T]",
      "      compare every tensor of A with the tensor of the same name in B (B is the expected\n"
      "      side). Prints max abs error, max relative error, NMSE, rel = max_abs/max|B| and the\n"
      "      worst element. A tensor fails if max_abs > atol + rtol * max|B|, if shapes differ,\n"
      "      or if it is present in one file only. Tensors are listed in B's order, so the first\n"
      "      FAIL line is the first place the two diverge.\n"
      "      Exit status: 0 all match, 1 a mismatch, 2 bad usage or unreadable input.\n"}, cmd_compare},
    {{"train", CMD_TRAIN, 0, 0, "", "--data D --steps N --out P (--weights W | --procedural SEED | --resume P0) [options]",
      "      upstream's training step (SPEC.md section 10.3) for N steps: D holds latents.<i>\n"
      "      (Fc,4,h,w) raw VAE latents and context.<i> (77,768) per clip i = 0, 1, ...; each step\n"
      "      draws --batch clips, each a window of F frames, a timestep and noise from (S, step).\n"
      "      Trains only the temporal layers unless --all; AdamW (--warmup/--decay: the fractions\n"
      "      of T = total steps as upstream), gradient clip 1. Prints loss and the gradient norm\n"
      "      per step; writes P.params.safetensors (Flax names) and P.opt.safetensors (mu.NAME,\n"
      "      nu.NAME, step); --resume P0 continues from those. --recompute keeps only checkpoints\n"
      "      of the activations and re-runs the forward of each segment in the backward: less\n"
      "      memory, about one more forward, the same gradients.\n"}, cmd_train},
    {{"toyworld", CMD_TOYWORLD, 0, 0, "", "--out D [--clips N] [--size S] [--frames F] [--seed S] [--held-out]",
      "      write clips of the toy world (SPEC.md section 8.10): frames.<i> (F,S,S,3) bytes and\n"
      "      the caption of each clip in the metadata (caption.<i>), e.g. \"a red circle moving left\";\n"
      "      the training combinations, or with --held-out the 8 held-out ones\n"}, cmd_toyworld},
    {{"train-vae", CMD_TRAIN_VAE, 0, 0, "", "--data D --steps N --out P (--weights W | --procedural SEED | --resume P0) [options]",
      "      train a VAE on the frames of D (mavref toyworld): each step draws --batch frames,\n"
      "      encodes, samples z = mean + exp(logvar/2) eps, decodes; loss = mean squared error +\n"
      "      W * KL (--kl W; both means over their elements); AdamW on every parameter, clip 1.\n"
      "      Writes P.params.safetensors and P.opt.safetensors like train.\n"}, cmd_train_vae},
    {{"unet", CMD_UNET, 0, 0, "", "--inputs IN --out OUT (--weights W | --procedural SEED) [--config JSON] [--2d] [--taps]",
      "      run the UNet: IN holds sample (B,Cin,F,H,W) (or (B,Cin,H,W) with --2d), timesteps (B)\n"
      "      and context (B,T,768); OUT gets \"out\" (B,Cout,F,H,W) and, with --taps, the\n"
      "      activations tap.time_proj, tap.time_embedding, tap.conv_in, tap.down_blocks_<i>,\n"
      "      tap.mid_block, tap.up_blocks_<i>, tap.conv_out in (B,F,H,W,C) layout. Weights come\n"
      "      from a safetensors file named by Flax paths, or from the procedural generator.\n"
      "      `mavref compare` on two such files names the first block where a backend diverges.\n"}, cmd_unet},
    {{"tokenize", CMD_TOKENIZE, 1, 1, "TEXT", "[--merges FILE] [--] TEXT",
      "      print the 77 CLIP token ids of TEXT (UTF-8), as SD 1.5's CLIPTokenizer gives them;\n"
      "      a TEXT that begins with '-' goes after `--`\n"}, cmd_tokenize},
    {{"encode-text", CMD_ENCODE_TEXT, 1, 1, "PROMPT", "--out OUT (--weights W | --procedural SEED) [--merges FILE] [--] PROMPT",
      "      tokenize and run the CLIP ViT-L/14 text encoder; OUT gets ids (1,77) and\n"
      "      hidden (1,77,768), the last hidden state SD conditions on; a PROMPT that begins\n"
      "      with '-' goes after `--`\n"}, cmd_encode_text},
    {{"generate", CMD_GENERATE, 0, 0, "", "--prompt TEXT (--hint IMAGE.ppm | --hint-unet W) --out PREFIX [options]",
      "      text (and a hint image) to video, as upstream's jax_inference.py; writes\n"
      "      PREFIX.gif, PREFIX.y4m and PREFIX_latents.safetensors (final latents).\n"
      "      The published model: --model DIR (every network, its config, the tokenizer) and\n"
      "      --hint-model DIR|FILE (SD 1.5 for the hint latent; README \"Run the published model\").\n"
      "      Weights: --unet W --vae W --clip W (safetensors by Flax names), or procedural:\n"
      "      --unet-seed S --vae-seed S --clip-seed S. No --hint: as upstream, SD 1.5's 2-D UNet\n"
      "      makes the hint latent (--hint-unet W or --hint-unet-seed S). --replay CASE reruns a\n"
      "      recorded FLAX pipeline case with its prompts, networks, weights, hint, mask and\n"
      "      noise, and reports how closely the final latents match FLAX's; a case of a model\n"
      "      folder (vectors/toy/pipeline_*) loads the networks from the folders it names.\n"}, cmd_generate},
    {{"init", CMD_INIT, 1, 1, "COMPONENT", "COMPONENT --out OUT [--config JSON] [--procedural SEED | --weights W] [--dtype f32|f16]",
      "      write procedural weights (SPEC.md section 2) for COMPONENT (unet, unet2d, vae or\n"
      "      text_encoder) of the configuration in JSON (a diffusers/transformers config.json;\n"
      "      default: the published model's) as a safetensors file by Flax names: the starting\n"
      "      point of a training run, or fixed weights (the toy model's frozen text encoder).\n"
      "      --weights W: W's values instead (every tensor of the component, by Flax name), e.g.\n"
      "      to store a trained network as float16 (--dtype f16 rounds to nearest, ties to even)\n"}, cmd_init},
    {{"encode-clips", CMD_ENCODE_CLIPS, 0, 0, "", "--model DIR --data D --out OUT",
      "      a training set for `mavref train` from the clips of D (mavref toyworld): with the VAE,\n"
      "      text encoder and tokenizer of the model folder DIR, OUT gets latents.<i> (Fc,4,h,w), the\n"
      "      VAE's posterior mean of every frame, and context.<i> (77,C), the caption's last hidden\n"
      "      state, per clip; and context.uncond, the empty prompt's (for train --cond-drop)\n"}, cmd_encode_clips},
    {{"toy-eval", CMD_TOY_EVAL, 0, 0, "", "--model DIR (--hint-model DIR | --true-first-frame) [--steps N] [--guidance G] [--out PREFIX] | --truth",
      "      the toy model's prompt-adherence test: for 24 fixed (prompt, seed) pairs, 8 of them\n"
      "      combinations never shown in training, generate 12 frames of 64x64 from the text alone\n"
      "      and measure (ref/toyworld.h): the asked colour's blob must move the asked way by at\n"
      "      least a quarter of the frame and have the asked shape. Prints a line per pair and the\n"
      "      score; exit 0 if at least 90% of the pairs pass, 1 if not. --true-first-frame: the\n"
      "      video UNet alone, from the toy world's own first frame of each pair\n"}, cmd_toy_eval},
    {{"check", CMD_CHECK, 0, 0, "", "--backend 'CMD {case} {out}' [--ops GLOB] [--level quick|full] [--precision 32|64] [options]",
      "      the golden corpus against another backend: for every selected case of\n"
      "      vectors/contract.json, runs the adapter CMD with {case} = the case file and {out} = a\n"
      "      path for its outputs (safetensors, one tensor per output of the contract), and compares\n"
      "      each output with the expected tensor at the manifest's tolerance. One line per case\n"
      "      (op, case, rel and worst element, PASS or the reason: crashed, timed out, wrote\n"
      "      nothing, wrong shape, ...), then a table per op. Needs sh and timeout (POSIX).\n"
      "      Exit status: 0 all passed, 1 a failure, 2 bad usage or unreadable contract.\n"}, cmd_check},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const char *trailer =
    "Options take their value from the next argument, even one that begins with '-'; `--` ends\n"
    "the options, so a TEXT or PROMPT that begins with '-' follows it.\n"
    "The CLIP merges file defaults to $MAVREF_MERGES, else vectors/clip/clip_merges.txt.\n"
    "MAVREF_THREADS=N sets the thread count (default: the cores; results are bit-identical for\n"
    "any N); MAVREF_REFERENCE=1 runs the plain loops instead of the matrix-product fast path.\n"
    "Exit status: 0 success; 1 a failure while running (a write failed, out of memory; compare:\n"
    "a mismatch); 2 bad usage or bad input (a file that cannot be read, is malformed or does not\n"
    "fit the model): every input is read and checked first, so then nothing is written.\n";

const CliCommand *mavref_command(size_t i) { return i < N_COMMANDS ? &commands[i].c : NULL; }

// `mavref` alone: the commands, one line each (exit 2); `mavref --help`: every usage (exit 0).
static int print_help(FILE *fp, int full) {
    size_t i;
    fprintf(fp, "mavref: portable C99 reference implementation of Make-A-Video SD (" REAL_NAME " build)\n\n");
    for (i = 0; i < N_COMMANDS; i++) {
        if (full) { cli_usage(fp, &commands[i].c); fprintf(fp, "\n"); }
        else fprintf(fp, "usage: mavref %s %s\n", commands[i].c.name, commands[i].c.synopsis);
    }
    if (full) fputs(trailer, fp);
    else fprintf(fp, "(mavref --help for every command; mavref CMD --help for one)\n");
    return full ? 0 : 2;
}

int mavref_main(int argc, char **argv, FILE *out, FILE *err) {
    size_t i;
    if (argc < 2) return print_help(err, 0);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) return print_help(out, 1);
    for (i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].c.name)) {
            CliArgs a;
            int rc;
            memset(&a, 0, sizeof a);
            a.out = out;
            a.err = err;
            rc = cli_parse(&a, &commands[i].c, argc - 2, argv + 2);
            return rc == 1 ? 0 : rc == 2 ? 2 : commands[i].run(&a);
        }
    fprintf(err, "mavref: unknown command '%s' (mavref --help lists them)\n", argv[1]);
    return 2;
}
