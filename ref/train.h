// train.h: upstream's training step (flax_trainer.py, dataset.py; SPEC.md section 10):
//   x_in = [add_noise(x0, noise, t), 0, hint]   x0 = 0.18215 * latents, hint = x0's first frame
//   loss = mean((noise - unet(x_in, t, ctx))^2)
//   g = dloss/dparams (all parameters); l2_grads = ||g|| (upstream's logged metric)
//   trainable leaves (all, or only those with "temporal" in their name): clip the trainable
//   gradient to global norm 1, then AdamW (decoupled weight decay); frozen leaves: no change.
#ifndef MAVREF_TRAIN_H
#define MAVREF_TRAIN_H

#include "scheduler.h"
#include "unet.h"

#define LATENT_SCALE 0.18215

typedef enum { LR_CONSTANT = 0, LR_WARMUP_COSINE = 1 } LrKind;

typedef struct {
    LrKind kind;          // LR_WARMUP_COSINE: optax.warmup_cosine_decay_schedule(0, lr, warmup, decay, end_lr)
    double lr, end_lr;    // peak learning rate, end value of the cosine
    long warmup_steps;    // linear 0 -> lr over this many steps
    long decay_steps;     // optax's decay_steps (counted from step 0, warmup included)
    double b1, b2, eps;   // 0.9, 0.999, 1e-8
    double weight_decay;  // 1e-2 (upstream default; the model card's run used 0.02)
    double clip_norm;     // 1.0
    int only_temporal;    // 1: only parameters with "temporal" in their name are trained
    const char *only;     // not NULL: only parameters whose name contains this text are trained
    int recompute;        // 1: the UNet tape keeps only checkpoints and re-runs segments in the
                          // backward (less memory, about one more forward; same gradients)
} TrainConfig;

// Upstream's defaults: constant lr 1e-4, AdamW(0.9, 0.999, 1e-8, wd 1e-2), clip 1, temporal only;
// every stage input kept (recompute 0).
void train_config_default(TrainConfig *t);
// The schedule as flax_trainer.py builds it from fractions of total_steps (L424-449):
// warmup_steps = ceil(warmup * total); decay > 0: cosine to 1e-8 over ceil(decay * total) steps
// after the warmup; decay = 0 and warmup > 0: warmup then constant lr; neither: constant.
void train_set_schedule(TrainConfig *t, double lr, double warmup, double decay, long total_steps);
// The learning rate of the update at optimizer step `count` (0 for the first update).
double train_lr(const TrainConfig *t, long count);
// 1 if the parameter named `name` is trained.
int train_is_trainable(const TrainConfig *t, const char *name);

// AdamW state: first and second moments of the trainable parameters only, packed in the
// model's order, and the number of updates taken.
typedef struct {
    real *mu, *nu; // (numel) each
    size_t numel;  // the trainable parameters' elements
    size_t *at;    // (model's count) where parameter k's moments start in mu and nu; SIZE_MAX: frozen
    size_t count;  // the model's parameter count
    long step;
} AdamState;
// Zeroed moments for the parameters of pt that tc trains.
int adam_init(AdamState *s, const ParamTable *pt, const TrainConfig *tc);
void adam_free(AdamState *s);

// The gradient table a training step needs: everything trains (tc->only_temporal == 0): the
// full table (unet_grads_alloc); otherwise a table of the trainable parameters only
// (params_grads_subset), lending the backward a buffer for each frozen block's gradients so
// that l2_grads stays the full gradient's norm (upstream's metric) without keeping them.
int train_grads_alloc(ParamTable *g, const ParamTable *pt, const TrainConfig *tc);

// dataset.py's collate for B clips: x_in (B,9,F,h,w) from clips[b] (Fc,4,h,w) (raw VAE
// latents, scaled by LATENT_SCALE here), the window [start[b], start[b]+F), noise (B,4,F,h,w)
// and integer timesteps t (B) with the DDPM schedule s (sched_add_noise). v (NULL: not
// wanted): the v_prediction target of each clip's window (sched_velocity), where the model
// predicts v (s->cfg.v_prediction) rather than the noise.
int train_collate(real *x_in,                 // (B,9,F,h,w)
                  real *v,                    // (B,4,F,h,w) or NULL
                  const real *const *clips,   // B pointers to (Fc,4,h,w)
                  const size_t *Fc, const size_t *start, size_t B, size_t F, size_t h, size_t w,
                  const real *noise,          // (B,4,F,h,w)
                  const int64_t *t,           // (B)
                  const Scheduler *s);

// The same for the 2-D UNet that makes the hint (upstream's use_imagegen, SD 1.5's training):
// x_in (B,4,h,w) = add_noise(0.18215 * clips[b][frame 0], noise[b], t[b]).
int train_collate_2d(real *x_in,               // (B,4,h,w)
                     real *v,                  // (B,4,h,w) or NULL
                     const real *const *clips, // B pointers to (Fc,4,h,w)
                     size_t B, size_t h, size_t w,
                     const real *noise,        // (B,4,h,w)
                     const int64_t *t,         // (B)
                     const Scheduler *s);

// One step: forward, loss, backward into gt (zeroed here; from train_grads_alloc or unet_grads_alloc),
// clipping and AdamW on the trainable parameters of pt. *loss and *l2_grads (the full
// gradient's norm, before clipping) are the step's metrics; *trainable_norm (may be NULL)
// the norm the clipping saw.
int train_step(ParamTable *pt, ParamTable *gt, AdamState *opt, const TrainConfig *tc, const UNetConfig *uc,
               const Tensor *x_in,       // (B,9,F,h,w)
               const Tensor *timesteps,  // (B)
               const Tensor *noise,      // (B,4,F,h,w)
               const Tensor *context,    // (B,T,Cctx)
               double *loss, double *l2_grads, double *trainable_norm);

// The update after a backward pass: the full gradient's norm (*l2_grads, may be NULL), the
// trainable part's norm (*trainable_norm, may be NULL; what the clipping sees), optax's
// clip_by_global_norm(clip_norm) of the trainable part, then AdamW on the trainable
// parameters of pt at the learning rate of step opt->step; opt->step advances. gt: the
// gradient, a full table (pt's layout) or a subset one (train_grads_alloc; the frozen
// parameters' squared norms in gt->sq when it lends).
void adamw_update(ParamTable *pt, const ParamTable *gt, AdamState *opt, const TrainConfig *tc, double *l2_grads,
                  double *trainable_norm);

// Optimizer state in a safetensors file: "mu.NAME", "nu.NAME" for every trainable parameter
// and "step" (a 1-element tensor); the parameters themselves go to another file by Flax names.
int train_save_state(const char *path, const ParamTable *pt, const AdamState *opt, const TrainConfig *tc);
int train_load_state(const char *path, const ParamTable *pt, AdamState *opt, const TrainConfig *tc);

#endif
