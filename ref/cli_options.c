// cli_options.c: the options of every `mavref` command, one row each, and the parser and
// usage printer that read them (ref/cli.h).
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "image.h"

#define F(field) offsetof(CliArgs, field)
#define ANY ULLONG_MAX
#define LONG_ANY ((unsigned long long)LONG_MAX) // train keeps its counts in long
#define GEN CMD_GENERATE
#define TRAIN CMD_TRAIN
#define TVAE CMD_TRAIN_VAE
#define TOY CMD_TOYWORLD

// name, commands, kind, destination, argument, default, range (counts), help
const CliOption cli_options[] = {
    // info, compare
    {"--rtol", CMD_COMPARE, OPT_NONNEG, F(rtol), "R", "1e-5", 0, 0, "relative tolerance"},
    {"--atol", CMD_COMPARE, OPT_NONNEG, F(atol), "T", "0", 0, 0, "absolute tolerance"},
    // convert
    {"--component", CMD_CONVERT, OPT_TEXT, F(component), "unet|unet2d|vae|text_encoder", NULL, 0, 0,
     "the network to write (needed for a model folder or a single-file checkpoint; else inferred from the names)"},
    {"--config", CMD_CONVERT, OPT_TEXT, F(config), "JSON", NULL, 0, 0,
     "the network's config.json (default: the folder's, or the one beside IN; else the published model's)"},
    {"--names", CMD_CONVERT, OPT_TEXT, F(names), "flax|torch|stored", "flax", 0, 0,
     "flax: mavref's parameter names and layouts (what --weights loads); torch: PyTorch's names and layouts; stored: every tensor as stored"},
    {"--dtype", CMD_CONVERT, OPT_TEXT, F(dtype), "keep|f32", "keep", 0, 0, "keep: as stored; f32: float16 and bfloat16 widened to float32 (exact)"},
    // shared by several commands
    {"--out", CMD_UNET | CMD_ENCODE_TEXT, OPT_TEXT, F(out_path), "OUT", NULL, 0, 0, "the safetensors file to write"},
    {"--out", TRAIN | TVAE, OPT_TEXT, F(out_path), "P", NULL, 0, 0, "writes P.params.safetensors and P.opt.safetensors"},
    {"--out", GEN, OPT_TEXT, F(out_path), "PREFIX", NULL, 0, 0, "writes PREFIX.gif, PREFIX.y4m, PREFIX_latents.safetensors"},
    {"--weights", CMD_UNET | CMD_ENCODE_TEXT | TRAIN | TVAE | CMD_INIT, OPT_TEXT, F(weights), "W", NULL, 0, 0, "weights: a safetensors file by Flax names"},
    {"--procedural", CMD_UNET | CMD_ENCODE_TEXT | TRAIN | TVAE, OPT_COUNT, F(procedural), "SEED", NULL, 0, ANY, "weights from the procedural generator"},
    {"--config", CMD_UNET | TRAIN | CMD_INIT, OPT_TEXT, F(config), "JSON", NULL, 0, 0, "a diffusers UNet config.json (default: makeavid)"},
    {"--model", CMD_UNET | CMD_ENCODE_TEXT | CMD_TOKENIZE | TRAIN | GEN | CMD_ENCODE_CLIPS | CMD_TOY_EVAL, OPT_TEXT, F(model), "DIR", NULL, 0, 0,
     "a published model folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/): configs, tokenizer and weights in any of their published formats"},
    {"--merges", CMD_TOKENIZE | CMD_ENCODE_TEXT | GEN, OPT_TEXT, F(merges), "FILE", NULL, 0, 0, "CLIP merges (default $MAVREF_MERGES, else vectors/clip/clip_merges.txt)"},
    // unet
    {"--inputs", CMD_UNET, OPT_TEXT, F(inputs), "IN", NULL, 0, 0, "sample, timesteps and context"},
    {"--2d", CMD_UNET, OPT_FLAG, F(two_d), NULL, NULL, 0, 0, "SD 1.5's 2-D UNet (no temporal layers)"},
    {"--taps", CMD_UNET, OPT_FLAG, F(taps), NULL, NULL, 0, 0, "also write the activation at every block boundary"},
    // train
    {"--data", TRAIN, OPT_TEXT, F(data), "D", NULL, 0, 0, "latents.<i> and context.<i> per clip i"},
    {"--steps", TRAIN | TVAE, OPT_COUNT, F(steps), "N", NULL, 0, LONG_ANY, "training steps"},
    {"--resume", TRAIN | TVAE, OPT_TEXT, F(resume), "P0", NULL, 0, 0, "continue from P0.params.safetensors and P0.opt.safetensors"},
    {"--frames", TRAIN, OPT_COUNT, F(frames), "F", "24", 1, LONG_ANY, "frames per training window"},
    {"--batch", TRAIN, OPT_COUNT, F(batch), "N", "1", 1, 64, "clips per step (upstream's effective batch is 4); the loss is their mean"},
    {"--lr", TRAIN, OPT_NUMBER, F(lr), "LR", "5e-5", 0, 0, "peak learning rate"},
    {"--warmup", TRAIN | TVAE, OPT_NUMBER, F(warmup), "FRAC", "0", 0, 0, "warmup, a fraction of the total steps"},
    {"--decay", TRAIN | TVAE, OPT_NUMBER, F(decay), "FRAC", "0", 0, 0, "cosine decay, a fraction of the total steps"},
    {"--total-steps", TRAIN | TVAE, OPT_COUNT, F(total_steps), "T", "0", 0, LONG_ANY, "the schedule's total steps; 0: this run's last step"},
    {"--weight-decay", TRAIN | TVAE, OPT_NUMBER, F(weight_decay), "WD", "1e-2", 0, 0, "AdamW weight decay"},
    {"--all", TRAIN, OPT_FLAG, F(all), NULL, NULL, 0, 0, "train every parameter, not only the temporal layers"},
    {"--seed", TRAIN, OPT_COUNT, F(seed), "S", "0", 0, ANY, "seed of the clip, window, timestep and noise draws"},
    {"--plot", TRAIN | TVAE, OPT_TEXT, F(plot), "FILE", NULL, 0, 0, "write the loss per step as an SVG curve"},
    {"--2d", TRAIN, OPT_FLAG, F(two_d), NULL, NULL, 0, 0, "train a 2-D UNet (SD 1.5's, for the hint) on each clip's first frame"},
    {"--scheduler-config", TRAIN, OPT_TEXT, F(scheduler_config), "JSON", NULL, 0, 0,
     "the scheduler_config.json whose noise schedule (betas) the noise is added with (default: --model's, else SD 1.5's)"},
    {"--cond-drop", TRAIN, OPT_NONNEG, F(cond_drop), "P", "0", 0, 0, "with probability P a clip's context is context.uncond of D (the empty prompt's), for guidance; upstream: 0"},
    {"--recompute", TRAIN, OPT_FLAG, F(recompute), NULL, NULL, 0, 0, "keep checkpoints only, recompute in the backward"},
    // train-vae
    {"--data", TVAE, OPT_TEXT, F(data), "D", NULL, 0, 0, "frames.<i> (Fc,H,W,3) bytes per clip i (mavref toyworld)"},
    {"--batch", TVAE, OPT_COUNT, F(batch), "N", "4", 1, 64, "images per step"},
    {"--lr", TVAE, OPT_NUMBER, F(lr), "LR", "1e-3", 0, 0, "peak learning rate"},
    {"--train-only", TVAE, OPT_TEXT, F(train_only), "TEXT", NULL, 0, 0, "train only the parameters whose name contains TEXT (e.g. decoder: the encoder and its latents stay as they are)"},
    {"--kl", TVAE, OPT_NONNEG, F(kl), "W", "1e-4", 0, 0, "weight of the KL term (both terms are means over their elements)"},
    {"--seed", TVAE, OPT_COUNT, F(seed), "S", "0", 0, ANY, "seed of the image and noise draws"},
    // init, encode-clips
    {"--procedural", CMD_INIT, OPT_COUNT, F(procedural), "SEED", "0", 0, ANY, "seed of the procedural generator"},
    {"--out", CMD_INIT | CMD_ENCODE_CLIPS, OPT_TEXT, F(out_path), "OUT", NULL, 0, 0, "the safetensors file to write"},
    {"--from-2d", CMD_INIT, OPT_TEXT, F(from_2d), "W2D", NULL, 0, 0, "unet: start from a trained 2-D UNet (W2D, Flax names), as Make-A-Video does: its weights where the names agree (conv_in's extra mask and hint channels zero), every temporal conv the identity, every temporal attention's output zero"},
    {"--whiten", CMD_INIT, OPT_TEXT, F(whiten), "DATA", NULL, 0, 0, "vae, with --weights: rescale the latent per channel so that 0.18215 x latent has mean 0 and variance 1 over the latents.<i> of DATA (encode-clips of this VAE): quant_conv and post_quant_conv change, the decoder's output does not"},
    {"--dtype", CMD_INIT, OPT_TEXT, F(dtype), "f32|f16", "f32", 0, 0, "stored dtype; f16: the values are rounded to float16 first, so the file holds them exactly"},
    {"--data", CMD_ENCODE_CLIPS, OPT_TEXT, F(data), "D", NULL, 0, 0, "frames.<i> (Fc,H,W,3) bytes and caption.<i> metadata per clip (mavref toyworld)"},
    // toy-eval
    {"--steps", CMD_TOY_EVAL, OPT_COUNT, F(steps), "N", "12", 1, 1000, "sampling steps"},
    {"--guidance", CMD_TOY_EVAL, OPT_NUMBER, F(guidance), "G", "5", 0, 0, "classifier-free guidance scale (both UNets)"},
    {"--scheduler", CMD_TOY_EVAL, OPT_TEXT, F(scheduler), "dpm|ddim", "dpm", 0, 0, "DPM-Solver++ or DDIM"},
    {"--truth", CMD_TOY_EVAL, OPT_FLAG, F(truth), NULL, NULL, 0, 0, "measure the toy world's own clips of the pairs instead (checks the measurement)"},
    {"--true-first-frame", CMD_TOY_EVAL, OPT_FLAG, F(true_first_frame), NULL, NULL, 0, 0, "give the video UNet the toy world's own first frame of each pair as the hint (no --hint-model): measures the video UNet alone"},
    {"--out", CMD_TOY_EVAL, OPT_TEXT, F(out_path), "PREFIX", NULL, 0, 0, "also write each clip as PREFIX_<k>.gif"},
    // toyworld
    {"--out", TOY, OPT_TEXT, F(out_path), "D", NULL, 0, 0, "the safetensors file to write"},
    {"--clips", TOY, OPT_COUNT, F(clips), "N", "64", 1, 100000, "clips"},
    {"--size", TOY, OPT_COUNT, F(size), "S", "64", 32, 512, "frame size in pixels"},
    {"--frames", TOY, OPT_COUNT, F(frames), "F", "12", 2, 1000, "frames per clip"},
    {"--seed", TOY, OPT_COUNT, F(seed), "S", "0", 0, ANY, "seed of the clips"},
    {"--first-frame", TOY, OPT_TEXT, F(first_frame), "IMAGE.ppm", NULL, 0, 0, "also write clip 0's first frame (a hint image for generate)"},
    {"--held-out", TOY, OPT_FLAG, F(held_out), NULL, NULL, 0, 0, "only the held-out combinations (default: only the training ones)"},
    // generate: the video
    {"--prompt", GEN, OPT_TEXT, F(prompt), "TEXT", NULL, 0, 0, "the prompt (taken as it is, even if it begins with '-')"},
    {"--negative", GEN, OPT_TEXT, F(negative), "TEXT", "", 0, 0, "the negative prompt"},
    {"--guidance", GEN, OPT_NUMBER, F(guidance), "G", "15", 0, 0, "classifier-free guidance scale"},
    {"--steps", GEN, OPT_COUNT, F(steps), "N", "20", 1, 1000, "sampling steps"},
    {"--scheduler", GEN, OPT_TEXT, F(scheduler), "dpm|ddim", "dpm", 0, 0, "DPM-Solver++ or DDIM"},
    {"--frames", GEN, OPT_COUNT, F(frames), "F", "24", 1, 10000, "frames"},
    {"--width", GEN, OPT_COUNT, F(width), "W", "512", 1, IMAGE_MAX_DIM, "width in pixels"},
    {"--height", GEN, OPT_COUNT, F(height), "H", "512", 1, IMAGE_MAX_DIM, "height in pixels"},
    {"--seed", GEN, OPT_COUNT, F(seed), "S", "0", 0, ANY, "seed of the noise"},
    {"--fps", GEN, OPT_COUNT, F(fps), "R", "24", 1, 1000, "frames per second of the GIF and Y4M"},
    {"--hint", GEN, OPT_TEXT, F(hint), "IMAGE.ppm", NULL, 0, 0, "the hint image"},
    {"--mask", GEN, OPT_TEXT, F(mask), "MASK.pgm", NULL, 0, 0, "inpainting mask: pixels >= 192 are masked"},
    {"--noise", GEN, OPT_TEXT, F(noise), "FILE", NULL, 0, 0, "initial noise: tensor \"noise\" (1,4,F,h,w)"},
    {"--gif-scale", GEN, OPT_COUNT, F(gif_scale), "K", "1", 1, 16, "the GIF's frames enlarged K times (nearest pixel), for small videos"},
    {"--ppm-frames", GEN, OPT_FLAG, F(ppm_frames), NULL, NULL, 0, 0, "also write PREFIX_000000.ppm ..."},
    {"--preview", GEN, OPT_TEXT, F(preview), "P", NULL, 0, 0, "after every step k, the clip predicted so far (its x0, decoded) as P_step001.gif ..."},
    {"--quiet", GEN, OPT_FLAG, F(quiet), NULL, NULL, 0, 0, "no progress line per step"},
    {"--replay", GEN, OPT_TEXT, F(replay), "CASE", NULL, 0, 0, "rerun a recorded FLAX pipeline case (vectors/f32/pipeline_*, vectors/toy/pipeline_*)"},
    // generate: the networks
    {"--unet", GEN, OPT_TEXT, F(unet), "W", NULL, 0, 0, "UNet weights (safetensors by Flax names)"},
    {"--vae", GEN, OPT_TEXT, F(vae), "W", NULL, 0, 0, "VAE weights"},
    {"--clip", GEN, OPT_TEXT, F(clip), "W", NULL, 0, 0, "CLIP text encoder weights"},
    {"--unet-seed", GEN, OPT_COUNT, F(unet_seed), "S", NULL, 0, ANY, "procedural UNet weights instead of --unet"},
    {"--vae-seed", GEN, OPT_COUNT, F(vae_seed), "S", NULL, 0, ANY, "procedural VAE weights instead of --vae"},
    {"--clip-seed", GEN, OPT_COUNT, F(clip_seed), "S", NULL, 0, ANY, "procedural CLIP weights instead of --clip"},
    {"--unet-config", GEN, OPT_TEXT, F(unet_config), "JSON", NULL, 0, 0, "UNet config.json (default: makeavid)"},
    {"--vae-channels", GEN | TVAE, OPT_TEXT, F(vae_channels), "LIST", NULL, 0, 0, "VAE block channels (default 128,256,512,512)"},
    {"--vae-layers", GEN | TVAE, OPT_COUNT, F(vae_layers), "N", NULL, 1, 16, "VAE layers per block (default 2)"},
    {"--clip-width", GEN, OPT_COUNT, F(clip_width), "N", NULL, 1, 100000, "CLIP width (default 768)"},
    {"--clip-layers", GEN, OPT_COUNT, F(clip_layers), "N", NULL, 1, 1000, "CLIP layers (default 12)"},
    {"--clip-heads", GEN, OPT_COUNT, F(clip_heads), "N", NULL, 1, 1000, "CLIP heads (default 12)"},
    {"--clip-mlp", GEN, OPT_COUNT, F(clip_mlp), "N", NULL, 1, 1000000, "CLIP MLP width (default 3072)"},
    // check (ref/check.c)
    {"--backend", CMD_CHECK, OPT_TEXT, F(backend), "'CMD {case} {out}'", NULL, 0, 0, "the adapter: {case} and {out} become the case file and the output path"},
    {"--vectors", CMD_CHECK, OPT_TEXT, F(vectors), "DIR", "vectors", 0, 0, "the corpus (DIR/contract.json, DIR/f32, DIR/f64)"},
    {"--ops", CMD_CHECK, OPT_TEXT, F(ops), "GLOB[,GLOB]", "*", 0, 0, "only these ops (shell globs: * and ?)"},
    {"--cases", CMD_CHECK, OPT_TEXT, F(cases), "TEXT", NULL, 0, 0, "only cases whose name contains TEXT"},
    {"--level", CMD_CHECK, OPT_TEXT, F(level), "quick|full", "full", 0, 0, "quick: the quick cases only"},
    {"--precision", CMD_CHECK, OPT_COUNT, F(precision), "32|64", NULL, 32, 64, "the float32 or float64 cases (default: the build's)"},
    {"--timeout", CMD_CHECK, OPT_NONNEG, F(timeout), "S", "600", 0, 0, "seconds per case before the adapter is stopped"},
    {"--workdir", CMD_CHECK, OPT_TEXT, F(workdir), "DIR", NULL, 0, 0, "outputs and logs (default: a new $TMPDIR/mavref-check-XXXXXX)"},
    // generate: the hint latent without --hint (SD 1.5's 2-D UNet, as upstream)
    {"--hint-model", GEN | CMD_TOY_EVAL, OPT_TEXT, F(hint_model), "DIR|FILE", NULL, 0, 0, "SD 1.5 for the hint latent: a diffusers folder (PyTorch or Flax weights) or the single-file original checkpoint"},
    {"--hint-unet", GEN, OPT_TEXT, F(hint_unet), "W", NULL, 0, 0, "2-D UNet weights for the hint latent"},
    {"--hint-unet-seed", GEN, OPT_COUNT, F(hint_unet_seed), "S", NULL, 0, ANY, "procedural 2-D UNet weights instead"},
    {"--hint-unet-config", GEN, OPT_TEXT, F(hint_unet_config), "JSON", NULL, 0, 0, "2-D UNet config.json (default: SD 1.5)"},
    {"--guidance-image", GEN, OPT_NUMBER, F(guidance_image), "G", NULL, 0, 0, "guidance of the hint run (default: --guidance)"},
};
const size_t n_cli_options = sizeof cli_options / sizeof cli_options[0];
// CliArgs.given has a flag per row: a table longer than CLI_MAX_OPTIONS does not compile.
typedef char cli_options_fit_in_given[sizeof cli_options / sizeof cli_options[0] <= CLI_MAX_OPTIONS ? 1 : -1];

// ---------------------------------------------------------------------------------------
// Parsing

static const CliOption *find_option(const CliArgs *a, const char *name) {
    size_t i;
    for (i = 0; i < n_cli_options; i++)
        if ((cli_options[i].commands & a->bit) && !strcmp(cli_options[i].name, name)) return &cli_options[i];
    return NULL;
}

int cli_given(const CliArgs *a, const char *name) {
    const CliOption *o = find_option(a, name);
    return o && a->given[o - cli_options];
}

// Store `text` as option o's value: 0, or 2 after a message saying what o needs.
static int set_value(CliArgs *a, const CliOption *o, const char *text) {
    char *dest = (char *)a + o->field, *end;
    if (o->kind == OPT_TEXT) {
        *(const char **)dest = text;
    } else if (o->kind == OPT_COUNT) {
        unsigned long long v = 0;
        int ok = *text >= '0' && *text <= '9'; // no sign, no space
        if (ok) {
            v = strtoull(text, &end, 10);
            ok = !*end && v >= o->lo && v <= o->hi;
        }
        if (!ok) {
            if (o->hi >= LONG_ANY) fprintf(a->err, "mavref %s: %s needs an integer >= %llu, got '%s'\n", a->command, o->name, o->lo, text);
            else fprintf(a->err, "mavref %s: %s needs an integer in %llu..%llu, got '%s'\n", a->command, o->name, o->lo, o->hi, text);
            return 2;
        }
        *(unsigned long long *)dest = v;
    } else { // OPT_NUMBER, OPT_NONNEG
        double v = strtod(text, &end);
        if (end == text || *end || (o->kind == OPT_NONNEG && !(v >= 0))) {
            fprintf(a->err, "mavref %s: %s needs a%s number, got '%s'\n", a->command, o->name,
                    o->kind == OPT_NONNEG ? " non-negative" : "", text);
            return 2;
        }
        *(double *)dest = v;
    }
    return 0;
}

static int add_positional(CliArgs *a, const CliCommand *c, const char *arg) {
    if (a->npos >= c->max_pos) {
        fprintf(a->err, "mavref %s: unexpected argument '%s' (mavref %s --help)\n", a->command, arg, a->command);
        return 2;
    }
    a->pos[a->npos++] = arg;
    return 0;
}

int cli_parse(CliArgs *a, const CliCommand *c, int argc, char **argv) {
    size_t i;
    int k, options_end = 0;
    a->command = c->name;
    a->bit = c->bit;
    for (i = 0; i < n_cli_options; i++) // the defaults, as if typed
        if ((cli_options[i].commands & c->bit) && cli_options[i].def && set_value(a, &cli_options[i], cli_options[i].def))
            return 2;
    for (k = 0; k < argc; k++) {
        const char *arg = argv[k];
        const CliOption *o;
        if (options_end || arg[0] != '-' || !arg[1]) { // "-" alone is a positional argument (a file name)
            if (add_positional(a, c, arg)) return 2;
            continue;
        }
        if (!strcmp(arg, "--")) { options_end = 1; continue; }
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { cli_usage(a->out, c); return 1; }
        if (!(o = find_option(a, arg))) {
            fprintf(a->err, "mavref %s: unknown option '%s' (mavref %s --help lists the options)\n", a->command, arg, a->command);
            return 2;
        }
        a->given[o - cli_options] = 1;
        if (o->kind == OPT_FLAG) { *(int *)((char *)a + o->field) = 1; continue; }
        if (k + 1 >= argc) { fprintf(a->err, "mavref %s: %s needs an argument %s\n", a->command, o->name, o->arg); return 2; }
        if (set_value(a, o, argv[++k])) return 2;
    }
    if (a->npos < c->min_pos) {
        fprintf(a->err, "mavref %s: expected %s (mavref %s --help)\n", a->command, c->positional, a->command);
        return 2;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Usage

void cli_usage(FILE *fp, const CliCommand *c) {
    size_t i;
    fprintf(fp, "usage: mavref %s %s\n%s", c->name, c->synopsis, c->about);
    for (i = 0; i < n_cli_options; i++) {
        const CliOption *o = &cli_options[i];
        char left[64];
        if (!(o->commands & c->bit)) continue;
        snprintf(left, sizeof left, "%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(fp, "        %-26s %s", left, o->help);
        if (o->def) fprintf(fp, " (default %s%s%s)", *o->def ? "" : "'", o->def, *o->def ? "" : "'");
        fprintf(fp, "\n");
    }
}
