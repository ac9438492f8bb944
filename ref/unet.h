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
// Check that the configuration is one mavref can build (group and head divisibility, ...).
int unet_config_check(const UNetConfig *c);
// Declare every parameter of the model, named by its Flax path joined with '.'.
int unet_declare_params(ParamTable *pt, const UNetConfig *c);

#endif
