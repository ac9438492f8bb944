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
    int ff_gelu;     // GeluKind of the transformer feed-forward: GELU_TANH (0, the Flax model) or
                     // GELU_ERF (PyTorch's GEGLU: a deliberate variant, UNetVariant in unet.h)
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

// ---------------------------------------------------------------------------------------
// Backward passes (SPEC.md sections 5.1-5.3). Given the block's forward inputs and dout, the gradient of
// the block's output, they ACCUMULATE (+=) the input gradients (dx, dtemb, dctx, dinp: each
// may be NULL) and every parameter's gradient into gt, a ParamTable with pt's layout (the
// gradient of a parameter sits at the same arena offset; gt NULL: no weight gradients).
// No cache is kept between forward and backward: each call recomputes its block's forward
// from the input, holding the internal activations only for the duration of the call.
int conv_block_backward(real *dinp,          // (B,F,H,W,Ci) or NULL
                        const real *dout,    // (B,F,Ho,Wo,Co)
                        const Tensor *in,    // (B,F,H,W,Ci)
                        ParamTable *pt, ParamTable *gt, const char *name, const BlockDims *d, const Conv2dGeom *g);
// Keeps a1 = GN1(x), silu(a1), h2 (conv1 output + time embedding), GN2(h2), silu(GN2(h2)),
// the spatial conv outputs (temporal mode) and the GroupNorm statistics.
int resnet_backward(real *dx,                // (B,F,H,W,Cin) or NULL
                    real *dtemb,             // (B,Ct) or NULL
                    const real *dout,        // (B,F,H,W,Cout)
                    const Tensor *x,         // (B,F,H,W,Cin)
                    const real *temb,        // (B,Ct)
                    ParamTable *pt, ParamTable *gt, const char *prefix, const BlockDims *d);
// Keeps h after proj_in, attn1, attn2, attn_temporal and the feed-forward (5 tensors of x's
// size, 4 without temporal layers); the normalized inputs of each stage are recomputed.
int transformer_backward(real *dx,           // (B,F,H,W,C) or NULL
                         real *dctx,         // (B,Tctx,Cctx) or NULL
                         const real *dout,   // (B,F,H,W,C)
                         const Tensor *x,    // (B,F,H,W,C)
                         const real *ctx,    // (B,Tctx,Cctx)
                         ParamTable *pt, ParamTable *gt, const char *prefix, size_t heads, const BlockDims *d);

#endif
