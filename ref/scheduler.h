// scheduler.h: the samplers of the pipeline, as diffusers 0.35.2's Flax schedulers compute
// them with Stable Diffusion's scheduler configuration (SPEC.md section 8 has every formula):
//   SCHED_DDIM  FlaxDDIMScheduler, eta 0, no clipping
//   SCHED_DPM   FlaxDPMSolverMultistepScheduler: DPM-Solver++, order 2, midpoint,
//               lower_order_final (first-order last step when fewer than 15 steps)
//   sched_add_noise: the forward process of FlaxDDPMScheduler.add_noise (training inputs).
//
// Precision follows Flax: the float32 build computes the schedule and every step in float32
// (with the fused multiply-adds and the product order XLA's CPU code uses, so that
// alphas_cumprod is bit-identical to the exporter's), the float64 build in float64.
// Timesteps are the same integers in both builds: they come from float32 arithmetic as in
// the upstream pipeline, which never enables x64.
//
// Use:
//   Scheduler s;
//   sched_init(&s, SCHED_DPM, &cfg, steps, numel);      // numel: elements of one latent
//   for (i = 0; i < steps; i++) {
//       eps = model(x, s.timesteps[i]);
//       sched_step(&s, x, eps, x, i);                    // x <- x_prev (in place allowed)
//   }
//   sched_free(&s);
#ifndef MAVREF_SCHEDULER_H
#define MAVREF_SCHEDULER_H

#include "mavref.h"

typedef enum { SCHED_DDIM = 0, SCHED_DPM = 1 } SchedKind;

typedef struct {
    int num_train_timesteps; // T = 1000
    double beta_start;       // 0.00085 (scaled_linear: betas = linspace(sqrt(start), sqrt(end), T)^2)
    double beta_end;         // 0.012
    int steps_offset;        // 1 (DDIM timesteps only)
    int set_alpha_to_one;    // 0: DDIM's alpha_cumprod "before" t=0 is alphas_cumprod[0]
    int lower_order_final;   // 1 (DPM)
    int v_prediction;        // 0: the model predicts epsilon (SD 1.x, upstream); 1: v = sqrt(abar) eps
                             // - sqrt(1 - abar) x0 (prediction_type v_prediction: the toy model)
} SchedConfig;

// Stable Diffusion 1.x's scheduler_config.json (the values above).
void sched_config_sd(SchedConfig *cfg);

typedef struct {
    SchedKind kind;
    SchedConfig cfg;
    int T;                      // num_train_timesteps
    real *betas;                // (T)  one allocation holds the five schedule arrays
    real *alphas_cumprod;       // (T)  abar_t = prod_{k<=t} (1 - beta_k)
    real *alpha_t;              // (T)  sqrt(abar_t)            (DPM-Solver)
    real *sigma_t;              // (T)  sqrt(1 - abar_t)
    real *lambda_t;             // (T)  log alpha_t - log sigma_t
    real final_alpha_cumprod;   // DDIM: abar "before" timestep 0
    int num_steps;              // n (0: no timesteps, add_noise only)
    int64_t *timesteps;         // (n) descending
    size_t numel;               // elements of one latent tensor
    real *x0_cur, *x0_prev;     // (numel) DPM: data predictions of this and the previous step
    int lower_order_nums;       // DPM: steps taken so far, capped at the solver order 2
} Scheduler;

// Build the schedule and set n inference steps for latents of numel elements.
// num_steps 0 is allowed (only sched_add_noise may be used then).
int sched_init(Scheduler *s, SchedKind kind, const SchedConfig *cfg, int num_steps, size_t numel);
void sched_free(Scheduler *s);

// The n timesteps of set_timesteps, descending.
int sched_timesteps(int64_t *out, SchedKind kind, const SchedConfig *cfg, int num_steps); // (n)

// Step i (0-based) of the loop: out = x_{prev} from the model's output at timesteps[i] (its
// epsilon prediction, or v with cfg.v_prediction) and the current sample. out may equal
// sample. Steps must be taken in order i = 0, 1, ..., n-1 (the DPM solver keeps the previous
// step's data prediction).
int sched_step(Scheduler *s, real *out, const real *eps, const real *sample, int i); // (numel) x3

// The data prediction x0 of a model output at timestep t (the pipeline's preview):
// epsilon: (x - sqrt(1 - abar) out) / sqrt(abar); v: sqrt(abar) x - sqrt(1 - abar) out.
int sched_x0(real *x0, const real *out, const real *sample, int64_t t, size_t n, const Scheduler *s); // (n) x3

// The training target of v_prediction (diffusers' get_velocity, eager):
// v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0 per batch item.
int sched_velocity(real *v,             // (B,per)
                   const real *x0,      // (B,per)
                   const real *noise,   // (B,per)
                   const int64_t *t,    // (B)
                   size_t B, size_t per, const Scheduler *s);

// noisy[b] = sqrt(abar[t_b]) * x0[b] + sqrt(1 - abar[t_b]) * noise[b], per batch item b.
int sched_add_noise(real *noisy,                            // (B, per)
                    const real *x0, const real *noise,      // (B, per) (B, per)
                    const int64_t *t,                       // (B) in [0, T)
                    size_t B, size_t per, const Scheduler *s);

#endif
