// vae_train.h: training the VAE (`mavref train-vae`; the toy model's VAE is trained by mavref
// from scratch). SD's own VAE was trained with perceptual and adversarial losses; this is the
// plain variational objective, enough for the toy world's flat shapes:
//   mean, logvar = encode(x);  z = mean + exp(logvar / 2) * eps;  y = decode(z)
//   recon = mean over the B*3*H*W pixels of (y - x)^2
//   kl    = mean over the B*4*h*w latents of (mean^2 + exp(logvar) - 1 - logvar) / 2
//   loss  = recon + kl_weight * kl
// then the update of ref/train.h (clip to global norm, AdamW) on every parameter.
#ifndef MAVREF_VAE_TRAIN_H
#define MAVREF_VAE_TRAIN_H

#include "train.h"
#include "vae.h"

typedef struct {
    double loss, recon, kl; // the step's objective and its two parts
    double l2_grads;        // the gradient's norm before clipping
} VaeStepStats;

// The gradient of the objective into gt (zeroed here; pt's layout), without an update.
int vae_loss_grad(ParamTable *gt, VaeStepStats *st, ParamTable *pt, const VAEConfig *c,
                  const Tensor *images,  // (B,3,H,W) in [-1, 1]
                  const Tensor *eps,     // (B,4,h,w) standard normal
                  double kl_weight);

// One training step: vae_loss_grad, then adamw_update (tc->only_temporal must be 0).
int vae_train_step(ParamTable *pt, ParamTable *gt, AdamState *opt, const TrainConfig *tc, const VAEConfig *c,
                   const Tensor *images, const Tensor *eps, double kl_weight, VaeStepStats *st);

#endif
