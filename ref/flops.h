// flops.h: the work of a forward pass, counted from the stage lists the code runs
// (SPEC.md section 11.8). Convention: 2 FLOPs per multiply-add of the products (convolutions
// counting only taps that land on the input, not on its zero padding; dense layers; the
// attention score and P.V products, every head, the full T x T square even where a mask is
// applied); elementwise work (norms, softmax, activations, GEGLU's gate, residual adds,
// resizes, the scheduler) is NOT counted. A backward computes two products per forward
// product (the input's gradient and the weight's), so its count is twice the forward's.
#ifndef MAVREF_FLOPS_H
#define MAVREF_FLOPS_H

#include "clip.h"
#include "conv.h"
#include "params.h"
#include "unet.h"
#include "vae.h"

// The parts of a count.
typedef struct {
    double conv;   // spatial and temporal convolutions (1x1 convs included)
    double dense;  // dense layers (attention projections, feed-forward, time embedding)
    double attn;   // attention scores and P.V
} Flops;

static inline double flops_total(const Flops *f) { return f->conv + f->dense + f->attn; }

// The UNet forward on a sample of B clips of F frames of H x W latents (F = 1 for the 2-D
// model) and Tctx context tokens. MV_ERR for a configuration or shape the forward refuses.
int unet_flops(Flops *f, const UNetConfig *c, size_t B, size_t F, size_t H, size_t W, size_t Tctx);
// vae_decode of B latents (H/8 x W/8) to H x W images (decode = 1), or vae_encode of B
// H x W images (decode = 0).
int vae_flops(Flops *f, const VAEConfig *c, int decode, size_t B, size_t H, size_t W);
// clip_text_forward of B prompts of T tokens.
int clip_flops(Flops *f, const ClipConfig *c, size_t B, size_t T);

// Helpers for the stage walkers (ref/flops.c): the count of one piece, looked up by
// parameter name in a declared (not necessarily allocated) table.
// The multiply-adds of one axis of a convolution: the (output, tap) pairs whose input lies
// inside [0, n) (padding taps excluded).
double flops_axis_pairs(size_t n, size_t nout, size_t k, size_t stride, size_t pad);
// A ConvPseudo3D (or plain conv) block `name` on (B,F,H,W,Ci): adds to f, sets *Ho, *Wo.
int flops_conv_block(Flops *f, const ParamTable *pt, const char *name, const Conv2dGeom *g, size_t B, size_t F,
                     size_t H, size_t W, size_t *Ho, size_t *Wo);
// A dense layer `name` (kernel (I,O)) applied to N rows.
int flops_dense(Flops *f, const ParamTable *pt, const char *name, size_t N);
// A resnet block `name` (conv1, time_emb_proj when it has one, conv2, conv_shortcut when it
// has one) on (B,F,H,W,C).
int flops_resnet(Flops *f, const ParamTable *pt, const char *name, size_t B, size_t F, size_t H, size_t W);
// The shape of parameter `name` (NULL, quietly, when the table has none).
const Tensor *flops_param(const ParamTable *pt, const char *name);

#endif
