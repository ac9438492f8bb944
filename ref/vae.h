// vae.h: AutoencoderKL as diffusers' FlaxAutoencoderKL computes it (SD 1.x configuration).
#ifndef MAVREF_VAE_H
#define MAVREF_VAE_H

#include "params.h"

#define VAE_MAX_BLOCKS 8

typedef struct {
    int in_channels;       // 3
    int out_channels;      // 3
    int latent_channels;   // 4
    int n_blocks;          // len(block_out_channels)
    int block_out_channels[VAE_MAX_BLOCKS]; // (128, 256, 512, 512)
    int layers_per_block;  // 2
    double scaling_factor; // 0.18215 (applied by the pipeline, not by encode/decode)
} VAEConfig;

void vae_config_default(VAEConfig *c);
int vae_config_check(const VAEConfig *c);
// Every parameter, named by its Flax path joined with '.' (encoder.*, decoder.*, quant_conv,
// post_quant_conv).
int vae_declare_params(ParamTable *pt, const VAEConfig *c);

// encode: image (B, 3, H, W) in [-1, 1] -> posterior mean and logvar (B, 4, H/8, W/8)
// (logvar clipped to [-30, 20] as FlaxDiagonalGaussianDistribution does). H and W must be
// multiples of 2^(n_blocks-1). mean and logvar are allocated here; logvar may be NULL.
int vae_encode(Tensor *mean, Tensor *logvar, const Tensor *image, ParamTable *pt, const VAEConfig *c);
// decode: latents (B, 4, h, w) -> image (B, 3, h*8, w*8), not clipped.
int vae_decode(Tensor *image, const Tensor *latents, ParamTable *pt, const VAEConfig *c);

// Backward passes (SPEC.md, the VAE's backward): given the forward's input and the gradients
// of its outputs, ACCUMULATE (+=) every parameter's gradient into gt (a table with pt's
// layout, zeroed by the caller; NULL: no parameter gradients) and return the input's gradient
// (allocated here; pass NULL if not wanted). The forward is run again, keeping the input of
// each stage (the encoder or decoder's stage list); each stage recomputes its insides.
// dlogvar may be NULL (no loss on the logvar); where the forward clipped the logvar, its
// gradient is zero.
int vae_encode_backward(Tensor *dimage,         // (B,3,H,W) or NULL
                        const Tensor *dmean,    // (B,4,h,w)
                        const Tensor *dlogvar,  // (B,4,h,w) or NULL
                        const Tensor *image,    // (B,3,H,W)
                        ParamTable *pt, ParamTable *gt, const VAEConfig *c);
int vae_decode_backward(Tensor *dlatents,       // (B,4,h,w) or NULL
                        const Tensor *dimage,   // (B,3,H,W)
                        const Tensor *latents,  // (B,4,h,w)
                        ParamTable *pt, ParamTable *gt, const VAEConfig *c);

#endif
