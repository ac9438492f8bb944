// unet_stages.h: the UNet as one list of stages (internal to ref/unet*.c).
//
// The network's order is written once, in unet_stages_build (ref/unet.c): conv_in, each
// resnet, transformer and downsampler of each down block with a skip pushed after each, the
// mid block, each up stage taking [hidden, skip] with the skips popped last-first, then the
// output norm and conv. The forward (unet_forward) walks this list keeping nothing; the tape
// of the backward (ref/unet_tape.c) walks the same list keeping stage inputs, and walks it
// back for the gradients.
#ifndef MAVREF_UNET_STAGES_H
#define MAVREF_UNET_STAGES_H

#include "blocks.h"
#include "unet.h"

typedef enum {
    ST_CONV,        // a ConvPseudo3D block (conv_in, downsamplers, upsamplers, conv_out)
    ST_RESNET,      // ResnetBlockPseudo3D
    ST_TRANSFORMER, // TransformerPseudo3DModel
    ST_PUSH,        // skip = h (h also flows on)
    ST_CONCAT,      // h = [h | skip] along channels, popping the skip of stage `skip`
    ST_UPSAMPLE,    // nearest-neighbour 2x
    ST_OUTNORM      // silu(GroupNorm(h)), statistics over all frames
} StageKind;

typedef struct {
    StageKind kind;
    char name[64];       // the block's Flax path, e.g. "down_blocks_0.resnets_1" (PUSH, CONCAT, UPSAMPLE: "")
    char tap[32];        // "tap.down_blocks_0": the forward hands h to the tap callback after this stage; "" none
    const Conv2dGeom *g; // ST_CONV
    size_t heads;        // ST_TRANSFORMER
    int skip;            // ST_CONCAT: the index of the ST_PUSH stage it pops
    size_t Ca;           // ST_CONCAT: channels of the hidden state (the skip's follow)
    int ckpt;            // the first walk keeps this stage's input
    Tensor in;           // the stage's input (B,F,h,w,C) while kept (ST_PUSH: the skip)
} Stage;

// What the first walk over the stages keeps.
typedef enum {
    KEEP_NOTHING,     // the forward: skips only, until their CONCAT
    KEEP_ALL,         // the tape: every stage input
    KEEP_CHECKPOINTS  // the tape with recomputation: every k-th stage input, and the skips
} StageKeep;

struct UNetTape {
    UNetConfig c;
    BlockDims d;
    ParamTable *pt;
    Stage *st;               // (n) the stage list
    int n;
    StageKeep keep;
    UNetTapFn tap;           // the forward's tap callback (NULL: none)
    void *user;
    size_t H, W;             // the sample's latent size
    size_t held, peak;       // bytes of activations the tape holds now / at most
    Tensor sinus, temb, ctx; // (B,c0) (B,4c0) (B,T,Cctx)
};

// Fill tp->st, tp->n with the stage list of configuration tp->c (ref/unet.c; the FLOP count
// in ref/flops.c walks it too).
int unet_stages_build(UNetTape *tp);

// Run the whole network: check the inputs, make the stage list, the time embedding, then walk
// every stage from the channels-last sample; out (channels-first, the sample's layout) is
// allocated here. *tape receives the walk's state (free it with unet_tape_free; NULL on error).
// v: a variant of the model (unet.h; NULL: the model).
int unet_run(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
             ParamTable *pt, const UNetConfig *c, const UNetVariant *v, StageKeep keep, UNetTapFn tap, void *user);
// Walk stages [from, to) on the hidden state *h (replaced by the state after stage to-1).
// rerun = 0: the first walk, keeping what tp->keep says; rerun = 1: a re-run of a segment for
// the backward, keeping every input it passes.
int unet_walk(UNetTape *tp, int from, int to, Tensor *h, int rerun);
// The output of one stage that reads an input (CONV, RESNET, TRANSFORMER, UPSAMPLE, OUTNORM),
// allocated in *out.
int unet_stage_forward(UNetTape *tp, const Stage *s, const Tensor *in, Tensor *out);
// Stages that read their input in the backward (PUSH and CONCAT only route gradients).
int unet_stage_needs_input(const Stage *s);
// Move *t into the tape's slot *slot (the tape now holds it) / release a slot.
void unet_tape_keep(UNetTape *tp, Tensor *slot, Tensor *t);
void unet_tape_drop(UNetTape *tp, Tensor *slot);

// The parameters fetched outside the blocks, each checked against its shape:
// time_embedding.linear_{1,2}.{kernel,bias}: w[0] (c0,4c0), w[1] (4c0), w[2] (4c0,4c0), w[3] (4c0).
int unet_temb_params(ParamTable *pt, size_t c0, Tensor **w);
// conv_norm_out.scale, .bias: (c0) (c0).
int unet_outnorm_params(ParamTable *pt, size_t c0, const real **gs, const real **gb);

// (B,C,S) -> (B,S,C) (the model's input, to_channels_last = 1) or the reverse.
void unet_transpose_bc(real *dst, const real *src, size_t B, size_t C, size_t S, int to_channels_last);

#endif
