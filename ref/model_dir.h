// model_dir.h: reading a published model folder as Hugging Face lays it out (diffusers-style):
//   model_index.json, unet/config.json + weights, vae/config.json + weights,
//   text_encoder/config.json + weights, tokenizer/vocab.json + merges.txt,
//   scheduler/scheduler_config.json
// and SD 1.5 for the hint image as such a folder or as the single-file original checkpoint.
// Weights are read from whichever file is present, in the order upstream prefers them:
//   unet          diffusion_flax_model.msgpack, diffusion_pytorch_model.bin, .safetensors
//   vae           diffusion_pytorch_model.bin, .safetensors, diffusion_flax_model.msgpack
//   text_encoder  pytorch_model.bin, model.safetensors, flax_model.msgpack
// each also as the ".fp16" variant (diffusion_pytorch_model.fp16.safetensors, ...).
#ifndef MAVREF_MODEL_DIR_H
#define MAVREF_MODEL_DIR_H

#include "clip.h"
#include "params.h"
#include "scheduler.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

// The weight file of component `sub` ("unet", "vae", "text_encoder") in dir, by preference.
int md_weights_path(char *out, size_t cap, const char *dir, const char *sub);
// Configs from config.json (diffusers AutoencoderKL; transformers CLIPTextConfig); what mavref
// cannot compute (another activation, norm groups, block type) is refused naming the key.
int vae_config_load(VAEConfig *c, const char *path);
int clip_config_load(ClipConfig *c, const char *path);
// scheduler_config.json: T, the betas, steps_offset, set_alpha_to_one; any key whose value
// mavref does not support (beta_schedule other than scaled_linear, prediction_type other than
// epsilon and v_prediction, trained_betas, clip_sample true, thresholding, ...) or does not know is refused.
int sched_config_load(SchedConfig *c, const char *path);
// dir/scheduler/scheduler_config.json: the schedule the pipeline samples with (SD 1.x's for the
// published model; the toy model's own, SPEC.md section 10.5).
int md_load_scheduler(SchedConfig *c, const char *dir);

// Each component: config, parameter table (declared, allocated) and weights. temporal: 1 for
// makeavid's pseudo-3D UNet, 0 for SD 1.5's 2-D UNet.
int md_load_unet(ParamTable *pt, UNetConfig *c, const char *dir, int temporal);
int md_load_vae(ParamTable *pt, VAEConfig *c, const char *dir);
int md_load_clip(ParamTable *pt, ClipConfig *c, const char *dir);
int md_load_tokenizer(Tokenizer *t, const char *dir);
// SD 1.5's UNet for the hint image from a folder (as md_load_unet, temporal 0) or from a
// single-file LDM checkpoint (config: *c as given, SD 1.5's if the caller set the defaults).
int md_load_hint_unet(ParamTable *pt, UNetConfig *c, const char *dir_or_file);
// A single-file LDM checkpoint's component ('u' UNet, 'v' VAE, 'c' CLIP) into a declared
// table (allocated as by md_load_weights); layers/blocks: that component's layers_per_block and number of blocks.
int md_load_ldm(ParamTable *pt, const char *file, char component, int layers, int blocks);
// Load one weight file into a declared table (any format, any naming); the table is allocated
// only once the file's names and shapes are known to fit it (ckm_load), so a wrong file is
// refused before the memory of the model is taken.
int md_load_weights(ParamTable *pt, const char *file, int transformers_names);

#endif
