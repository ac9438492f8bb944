// pipeline.h: text (and a hint image) to video, in upstream's order of work
// (jax_inference.py, InferenceUNetPseudo3D._generate).
#ifndef MAVREF_PIPELINE_H
#define MAVREF_PIPELINE_H

#include "clip.h"
#include "image.h"
#include "safetensors.h"
#include "scheduler.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

// The networks and their weights. vae_factor: pixels per latent pixel (8 for SD's VAE,
// 2^(n_blocks-1) in general).
typedef struct {
    UNetConfig unet;
    VAEConfig vae;
    ClipConfig clip;
    ParamTable unet_p, vae_p, clip_p;
    Tokenizer tok;
    // Upstream's hint generator when no hint image is given (use_imagegen): SD 1.5's 2-D UNet
    // (temporal = 0, in_channels 4). have_unet2d = 0: generate needs a hint image.
    int have_unet2d;
    UNetConfig unet2d;
    ParamTable unet2d_p;
    // The noise schedule of both sampling loops: the model folder's scheduler_config.json
    // (have_sched = 1), else SD 1.x's.
    int have_sched;
    SchedConfig sched;
} Models;

typedef struct {
    const char *prompt;       // UTF-8
    const char *neg_prompt;   // "" by default
    double guidance;          // 15
    int steps;                // 20
    SchedKind scheduler;      // SCHED_DPM
    size_t frames;            // 24
    size_t height, width;     // pixels, 512
    const Image *hint;        // RGB (height, width), or NULL
    const Image *mask;        // gray (height, width), or NULL (all zero)
    const Tensor *noise;      // (1, 4, F, h, w), or NULL: noise_normal(seed, "latents")
    const Tensor *hint_noise; // (1, 4, h, w) for the 2-D hint run, or NULL: noise_normal(seed, "hint")
    double guidance_image;    // guidance of the 2-D hint run (upstream's cfg_image); 0: = guidance
    uint64_t seed;
    int progress;             // print the work ahead, a progress line per step and the time of
                              // each stage on stderr
    // Optional (NULL: none): after every step k (0-based) of n, the clip predicted at that step,
    // frames (F, height, width, 3) bytes: the data prediction x0 = (x_t - sqrt(1 - abar_t) eps)
    // / sqrt(abar_t) of the step's guided eps, decoded by the VAE (one decode of every frame per
    // step; the latents and the result are the same with or without it). Non-zero stops the run.
    int (*preview)(void *user, int k, int n, const unsigned char *frames);
    void *preview_user;
} GenOptions;

// The work of a generate run (ref/flops.h's count, FLOPs): the text encoder (both prompts),
// the hint (its VAE encode, or the 2-D UNet's sampling loop when there is no hint image),
// one denoising step (two UNet passes: text and negative prompt) and the decode of every frame.
typedef struct {
    double clip, hint, step, decode;
    double total;             // clip + hint + steps * step + decode
} GenWork;
int pipeline_work(GenWork *wk, const GenOptions *o, const Models *m);

// Optional observer of every step's latents (1,4,F,h,w) (tests and --save-steps).
typedef int (*StepFn)(void *user, int step, int64_t t, const Tensor *latents);

// Everything about the options and the networks that can be checked before computing: sizes
// (positive, multiples of the VAE's and UNets' factors), the UNet being makeavid's, the VAE's
// 4 latent channels, the text width matching the cross-attention, the hint image, mask and
// noise shapes, and (no hint image) the 2-D hint UNet. pipeline_generate calls it first; the
// command line calls it after reading every input, so that a bad combination is refused as bad
// input before any work.
int pipeline_check(const GenOptions *o, const Models *m);

// Runs the whole pipeline. frames (F, height, width, 3) uint8 is allocated here (free()),
// final_latents (1,4,F,h,w) too (may be NULL). Errors name what is wrong; nothing is written.
int pipeline_generate(unsigned char **frames, Tensor *final_latents, Tensor *frames_float,
                      const GenOptions *o, Models *m, StepFn step_fn, void *user);

// Pieces, for tests: text embeddings (1,77,width) of a prompt, and the hint and mask latents
// (1,4,h,w) and (1,1,h,w) from the hint image and mask (either may be NULL).
int pipeline_encode_prompt(Tensor *emb, int64_t ids[77], const char *text, Models *m);
int pipeline_hint_latents(Tensor *hint_lat, Tensor *mask_lat, const Image *hint, const Image *mask,
                          size_t height, size_t width, size_t h, size_t w, Models *m);
// No hint image (upstream's use_imagegen): the hint latent (1,4,h,w) is the result of a 2-D
// text-to-image sampling loop with m->unet2d: the same scheduler type and steps, guidance
// o->guidance_image, the same text features text and neg (1,77,W).
int pipeline_imagegen_hint(Tensor *hint_lat, const Tensor *text, const Tensor *neg, size_t h, size_t w,
                           const GenOptions *o, Models *m);


// A recorded FLAX pipeline run: fills the options, builds the networks and reads the hint, mask
// and noise. Two kinds of file:
//   - a corpus case of tools/cases_pipeline.py: the three networks with procedural weights from
//     the seeds and configs in its metadata; expected (n_steps, 1, 4, F, h, w) = the FLAX
//     latents after every step ("latents_steps");
//   - a case of a model folder (tools/fixtures_flax.pipeline_file: vectors/model/pipeline_*,
//     vectors/toy/pipeline_*): the networks, tokenizer and scheduler check of the folder in
//     its metadata "model" (and "hint_model", the 2-D UNet's folder or SD 1.5 file, when the
//     case has no hint image), read as --model / --hint-model read them (ref/model_dir.h);
//     expected (1, 4, F, h, w) = the FLAX pipeline's final latents ("latents").
// expected may be NULL. Strings in o (prompts) point into meta that lives until
// pipeline_replay_free.
typedef struct {
    StFile f;
    Image hint, mask;
    Tensor noise, hint_noise;
    int from_folders;   // the second kind: m->tok is the folder's tokenizer
} Replay;
int pipeline_replay_load(Replay *r, GenOptions *o, Models *m, Tensor *expected, const char *path);
// The second kind with the folders given (NULL: from the metadata; the vectors/model cases
// name none).
int pipeline_replay_load_dirs(Replay *r, GenOptions *o, Models *m, Tensor *expected, const char *path,
                              const char *model, const char *hint_model);
void pipeline_replay_free(Replay *r);
void free_models(Models *m);

#endif
