// unet.h: UNetPseudo3DConditionModel (Make-A-Video SD), and plain SD 1.5's
// UNet2DConditionModel when the temporal layers are off.
#ifndef MAVREF_UNET_H
#define MAVREF_UNET_H

#include "params.h"

#define UNET_MAX_BLOCKS 8

typedef struct {
    int in_channels;                         // 9 for makeavid: [latents 4, mask 1, hint 4]
    int out_channels;                        // 4
    int n_blocks;                            // len(block_out_channels)
    int block_out_channels[UNET_MAX_BLOCKS]; // (320, 640, 1280, 1280)
    int layers_per_block;                    // 2
    int heads[UNET_MAX_BLOCKS];              // config "attention_head_dim": the HEAD COUNT per block
    int cross_attention_dim;                 // 768
    int down_cross[UNET_MAX_BLOCKS];         // 1: CrossAttnDownBlock, 0: DownBlock
    int up_cross[UNET_MAX_BLOCKS];           // 1: CrossAttnUpBlock, 0: UpBlock
    int flip_sin_to_cos;                     // 1
    int freq_shift;                          // 0
    int temporal;                            // 1: pseudo-3D (makeavid); 0: SD 1.5 2-D UNet
} UNetConfig;

// The makeavid configuration (in_channels 9, the SD 1.x UNet otherwise).
void unet_config_default(UNetConfig *c);
// Read a diffusers-style config.json over the defaults; unknown block types, missing files,
// malformed JSON or inconsistent sizes are errors naming the file and the field.
int unet_config_load(UNetConfig *c, const char *path);
// The same from JSON text in memory; `what` names its source in messages.
int unet_config_parse(UNetConfig *c, const char *text, size_t len, const char *what);
// Check that the configuration is one mavref can build (group and head divisibility, ...).
int unet_config_check(const UNetConfig *c);
// Declare every parameter of the model, named by its Flax path joined with '.'.
int unet_declare_params(ParamTable *pt, const UNetConfig *c);


// Called with each activation tap during unet_forward (layout (B,F,H,W,C)); return MV_ERR to
// stop the forward. Names: "tap.time_proj" (B,c0) and "tap.time_embedding" (B,4*c0), "tap.conv_in", "tap.down_blocks_<i>", "tap.mid_block",
// "tap.up_blocks_<i>" (each block's output), "tap.conv_out" (before the final transpose).
typedef int (*UNetTapFn)(void *user, const char *name, const Tensor *t);

// The forward with upstream's signature:
//   sample (B, Cin, F, H, W) (or (B, Cin, H, W) when c->temporal == 0), timesteps (B),
//   context (B, T, cross_attention_dim)  ->  out (B, Cout, F, H, W) (or (B, Cout, H, W)).
// H and W must be divisible by 2^(n_blocks-1). out is allocated here. tap may be NULL.
// The network's order is written once, as a list of stages (ref/unet.c); the forward walks it
// keeping nothing and the tape below walks it keeping stage inputs.
// The checks unet_forward makes of its inputs, for callers that want them before loading weights.
int unet_check_inputs(const Tensor *sample, const Tensor *timesteps, const Tensor *context, const UNetConfig *c);
int unet_forward(Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                 ParamTable *pt, const UNetConfig *c, UNetTapFn tap, void *user);

// Deliberate departures from the model for a forward (SPEC.md section 13.4); zero = the model.
typedef struct {
    // (B, c0): the sinusoid the network runs from in place of the one computed from the
    // timesteps (the corpus' float32-sinusoid cases feed the Flax model's own, input
    // `time_proj`); tap.time_proj is then this tensor. NULL: computed (timestep_sinusoid_forward).
    const Tensor *sinusoid;
    // 1: exact-erf GELU in every transformer feed-forward (PyTorch's GEGLU) instead of the
    // model's tanh form; for showing what `mavref check` reports on such a backend.
    int ff_gelu_erf;
} UNetVariant;
// unet_forward with a variant (NULL: exactly unet_forward).
int unet_forward_variant(Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                         ParamTable *pt, const UNetConfig *c, const UNetVariant *v, UNetTapFn tap, void *user);

// ---------------------------------------------------------------------------------------
// Backward (SPEC.md section 5.5).

// A gradient table with p's names, shapes and layout (one zeroed arena): the gradient of
// p->p[i] is g->p[i], at the same offset.
int unet_grads_alloc(ParamTable *g, const ParamTable *p);

// The forward kept for a backward: each block's input (the activations at block granularity,
// skips included), the time embedding and the context. unet_tape_forward computes `out` as
// unet_forward does (the same operations in the same order: equal bit for bit).
typedef struct UNetTape UNetTape;
int unet_tape_forward(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps,
                      const Tensor *context, ParamTable *pt, const UNetConfig *c);
// The same with a choice of the memory/time trade-off (SPEC.md section 5.5). recompute = 0: as
// unet_tape_forward, every stage input is kept. recompute = 1: only checkpoints are kept (the
// input of every k-th stage, k ~ sqrt(stages)) and the skips; the backward re-runs the forward
// of each segment from its checkpoint before walking it back (about one more forward in all).
// The gradients are bit-identical between the two.
int unet_tape_forward_mode(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps,
                           const Tensor *context, ParamTable *pt, const UNetConfig *c, int recompute);
// The most bytes of activations (stage inputs and skips) the tape has held so far.
size_t unet_tape_peak_bytes(const UNetTape *tape);
// Given dout (the output's shape), ACCUMULATE (+=) the gradient of every parameter into gt
// (from unet_grads_alloc; NULL: none) and, when d_sample is not NULL, allocate and fill the
// gradient of the sample. The tape's activations are released as the walk passes them; free
// the tape with unet_tape_free afterwards (one backward per tape).
int unet_tape_backward(UNetTape *tape, ParamTable *gt, Tensor *d_sample, const Tensor *dout);
void unet_tape_free(UNetTape *tape);
// Both: forward (out, when not NULL, receives the output) then backward.
int unet_backward(ParamTable *gt, Tensor *d_sample, Tensor *out, const Tensor *dout, const Tensor *sample,
                  const Tensor *timesteps, const Tensor *context, ParamTable *pt, const UNetConfig *c);

#endif
