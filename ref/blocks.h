// blocks.h: the composite blocks of the pseudo-3D UNet (upstream flax_resnet_pseudo3d.py,
// flax_attention_pseudo3d.py), over the parameter arena.
//
// Activations are channels-last (B,F,H,W,C). With temporal = 0 (SD 1.5's 2-D UNet) the same
// code runs with F = 1 and without temporal convolutions and temporal attention.
// `prefix` is the block's Flax path, e.g. "down_blocks_0.resnets_1"; a missing or misshaped
// parameter is an error naming it.
#ifndef MAVREF_BLOCKS_H
#define MAVREF_BLOCKS_H

#include "conv.h"
#include "params.h"

// Sizes shared by every block of one forward pass.
typedef struct {
    size_t B, F;     // batch, frames (F = 1 in 2-D mode)
    int temporal;    // 1: temporal conv + temporal attention
    size_t Tctx;     // text tokens (77)
    size_t Cctx;     // text width (768)
    size_t Ct;       // time-embedding width (1280); 0: no time embedding (VAE)
    double gn_eps;   // GroupNorm epsilon of resnets: 1e-5 UNet, 1e-6 VAE
    int plain_names; // convs named "X.kernel" (diffusers 2-D, VAE) instead of "X.spatial_conv.kernel"
} BlockDims;

// ConvPseudo3D named `name` (spatial conv, then the temporal k=3 conv when d->temporal).
// out (B,F,Ho,Wo,Co) is allocated here.
int conv_block_forward(Tensor *out,            // (B,F,Ho,Wo,Co)
                       const Tensor *in,       // (B,F,H,W,Ci)
                       ParamTable *pt, const char *name, const BlockDims *d, const Conv2dGeom *g);

// ResnetBlockPseudo3D (and, with d->Ct == 0 and temb NULL, the VAE's FlaxResnetBlock2D):
//   h = conv1(silu(GN1(x)))  + time_emb_proj(silu(temb))[b]     (added to every frame and pixel)
//   h = conv2(silu(GN2(h)))
//   out = h + (conv_shortcut(x) if Cin != Cout else x)
// GroupNorm statistics span all frames (joint). out is allocated here.
int resnet_forward(Tensor *out,          // (B,F,H,W,Cout)
                   const Tensor *x,      // (B,F,H,W,Cin)
                   const real *temb,     // (B,Ct)
                   ParamTable *pt, const char *prefix, const BlockDims *d);

// TransformerPseudo3DModel with one BasicTransformerBlockPseudo3D:
//   h = proj_in(GN(x))                  (GroupNorm per frame, 1x1 conv)
//   h = attn1(LN1(h)) + h               spatial self-attention over the H*W tokens of a frame
//   h = attn2(LN2(h), ctx) + h          cross-attention to the prompt of the clip
//   h = attn_temporal(LNt(h)) + h       temporal self-attention over the F frames of a pixel
//   h = ff(LN3(h)) + h                  ff = net_2(GEGLU(h)), GEGLU with tanh GELU
//   out = proj_out(h) + x
// out is allocated here.
int transformer_forward(Tensor *out,        // (B,F,H,W,C)
                        const Tensor *x,    // (B,F,H,W,C)
                        const real *ctx,    // (B,Tctx,Cctx)
                        ParamTable *pt, const char *prefix, size_t heads, const BlockDims *d);

#endif
