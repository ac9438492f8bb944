// scheduler.c: DDIM and DPM-Solver++ sampling, and the DDPM forward process (scheduler.h).
//
// Every scalar is computed in `real` with one rounding per operation, in the order Flax
// evaluates it. Where XLA's CPU code (the exporter's) fuses a multiply and an add into one
// fused multiply-add, so do we, correctly rounded (mv_fma/mv_fmaf in port.c, because not every
// C library's fma()/fmaf() is; mingw-w64's are not):
// the schedule arrays and every DDIM step then match the exporter bit for bit in float32;
// DPM-Solver differs only through XLA's own float32 log and exp (ulp-level).
// Each arithmetic step of a formula is its own statement where a compiler could otherwise
// contract a*b+c into a fused multiply-add (C99 6.5p8 allows that only within one
// expression; clang does it by default on some targets).
#include "scheduler.h"
#include "port.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// C99 lets a compiler fuse a*b+c within one expression (clang does by default where the target
// has FMA; GCC in ISO mode never does and rejects the pragma): results must not depend on it.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif


#if MAVREF_PRECISION == 64
#define R_SQRT(x) sqrt(x)
#define R_FMA(a, b, c) mv_fma(a, b, c)
#define R_LOG(x) log(x)
#define R_EXP(x) exp(x)
#else
#define R_SQRT(x) sqrtf(x)
#define R_FMA(a, b, c) mv_fmaf(a, b, c)
// XLA has its own float32 log/exp approximations; libm's float functions differ between
// platforms. The double function rounded once to float is portable and within half an ulp.
#define R_LOG(x) ((float)log((double)(x)))
#define R_EXP(x) ((float)exp((double)(x)))
#endif

void sched_config_sd(SchedConfig *cfg) {
    cfg->num_train_timesteps = 1000;
    cfg->beta_start = 0.00085;
    cfg->beta_end = 0.012;
    cfg->steps_offset = 1;
    cfg->set_alpha_to_one = 0;
    cfg->lower_order_final = 1;
    cfg->v_prediction = 0;
}

// Round half to even (jnp.round), for values that are exact in double.
static double round_half_even(double v) {
    double f = floor(v), d = v - f;
    if (d > 0.5) return f + 1.0;
    if (d < 0.5) return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

// ---------------------------------------------------------------------------------------
// The schedule (CommonSchedulerState.create and DPM's create_state).

// jnp.linspace(start, stop, T) as XLA compiles it: c = 1/(T-1); for i < T-1
//   v_i = fma(i, stop*c, start * fma(-i, c, 1)),   v_{T-1} = stop.
static void linspace_xla(real *out, real start, real stop, int T) {
    int i;
    if (T == 1) { out[0] = start; return; }
    {
        real c = (real)1 / (real)(T - 1);
        real sc = stop * c;
        for (i = 0; i < T - 1; i++) {
            real fi = (real)i;
            real one_minus = R_FMA(-fi, c, (real)1);
            real a = start * one_minus;
            out[i] = R_FMA(fi, sc, a);
        }
        out[T - 1] = stop;
    }
}

// Inclusive cumulative product in the order XLA's CPU code computes jnp.cumprod: the
// sequence is cut into rows of 16 (padded with ones), each row is multiplied left to right,
// the row totals are scanned the same way recursively, and each row's running products
// are multiplied by the product of all rows before it. Sequences of up to 16 elements are
// multiplied left to right. (Any order is a valid product; this one is the exporter's.)
static int cumprod_xla(real *out, const real *x, size_t n) {
    size_t rows, r, j, k;
    real *tot, *pre;
    if (n <= 16) {
        real acc = (real)1;
        for (j = 0; j < n; j++) { acc = acc * x[j]; out[j] = acc; }
        return MV_OK;
    }
    rows = (n + 15) / 16;
    tot = (real *)mv_malloc(2 * rows * sizeof(real), "cumprod row totals");
    if (!tot) return MV_ERR;
    pre = tot + rows;
    for (r = 0; r < rows; r++) {
        real acc = (real)1;
        for (j = 0; j < 16; j++) {
            k = r * 16 + j;
            if (k < n) { acc = acc * x[k]; out[k] = acc; }
        }
        tot[r] = acc; // padding multiplies by 1, exactly
    }
    if (cumprod_xla(pre, tot, rows)) { free(tot); return MV_ERR; }
    for (r = 1; r < rows; r++)
        for (j = 0; j < 16 && r * 16 + j < n; j++) out[r * 16 + j] = out[r * 16 + j] * pre[r - 1];
    free(tot);
    return MV_OK;
}

static int build_schedule(Scheduler *s) {
    int T = s->T, t;
    real *alphas;
    real start = (real)sqrt(s->cfg.beta_start), stop = (real)sqrt(s->cfg.beta_end);
    s->betas = (real *)mv_calloc((size_t)T * 5, sizeof(real), "scheduler arrays");
    if (!s->betas) return MV_ERR;
    s->alphas_cumprod = s->betas + T;
    s->alpha_t = s->betas + 2 * T;
    s->sigma_t = s->betas + 3 * T;
    s->lambda_t = s->betas + 4 * T;
    linspace_xla(s->betas, start, stop, T);
    for (t = 0; t < T; t++) s->betas[t] = s->betas[t] * s->betas[t]; // ** 2
    alphas = s->lambda_t; // scratch: 1 - beta
    for (t = 0; t < T; t++) alphas[t] = (real)1 - s->betas[t];
    if (cumprod_xla(s->alphas_cumprod, alphas, (size_t)T)) return MV_ERR;
    for (t = 0; t < T; t++) {
        s->alpha_t[t] = R_SQRT(s->alphas_cumprod[t]);
        s->sigma_t[t] = R_SQRT((real)1 - s->alphas_cumprod[t]);
        s->lambda_t[t] = R_LOG(s->alpha_t[t]) - R_LOG(s->sigma_t[t]);
    }
    s->final_alpha_cumprod = s->cfg.set_alpha_to_one ? (real)1 : s->alphas_cumprod[0];
    return MV_OK;
}

// ---------------------------------------------------------------------------------------

int sched_timesteps(int64_t *out, SchedKind kind, const SchedConfig *cfg, int n) {
    int T = cfg->num_train_timesteps, j;
    if (n < 1 || n > T) return mv_fail("scheduler: %d inference steps (must be 1..%d)", n, T);
    if (kind == SCHED_DDIM) {
        // (arange(n) * (T // n))[::-1] + steps_offset
        int ratio = T / n;
        for (j = 0; j < n; j++) out[j] = (int64_t)(n - 1 - j) * ratio + cfg->steps_offset;
    } else {
        // round(linspace(0, T-1, n+1))[::-1][:-1] in float32, as XLA computes it with start 0:
        // v_i = float(i) * float((T-1) * float(1/n)), v_n = T-1; jnp.round is half to even.
        float c = 1.0f / (float)n;
        float k = (float)(T - 1) * c;
        for (j = 0; j < n; j++) {
            int i = n - j;
            float v = i == n ? (float)(T - 1) : (float)i * k;
            out[j] = (int64_t)round_half_even((double)v);
        }
    }
    return MV_OK;
}

int sched_init(Scheduler *s, SchedKind kind, const SchedConfig *cfg, int num_steps, size_t numel) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->cfg = *cfg;
    s->T = cfg->num_train_timesteps;
    if (kind != SCHED_DDIM && kind != SCHED_DPM) return mv_fail("scheduler: unknown kind %d", (int)kind);
    if (s->T < 2 || s->T > 1000000) return mv_fail("scheduler: num_train_timesteps %d out of range", s->T);
    if (!(cfg->beta_start > 0 && cfg->beta_end > cfg->beta_start && cfg->beta_end < 1))
        return mv_fail("scheduler: beta range %g..%g is invalid", cfg->beta_start, cfg->beta_end);
    if (build_schedule(s)) { sched_free(s); return mv_fail_prefix("scheduler"); }
    if (num_steps == 0) return MV_OK;
    s->num_steps = num_steps;
    s->numel = numel;
    s->timesteps = (int64_t *)mv_calloc((size_t)(num_steps > 0 ? num_steps : 1), sizeof(int64_t), "timesteps");
    if (!s->timesteps || sched_timesteps(s->timesteps, kind, cfg, num_steps)) { sched_free(s); return MV_ERR; }
    // DDIM with n = T and steps_offset 1 starts at timestep T, one past the table: JAX
    // clamps the gather to T-1, and abar_at() does the same.
    if (kind == SCHED_DPM) {
        s->x0_cur = (real *)mv_calloc(numel, 2 * sizeof(real), "DPM-Solver history");
        if (!s->x0_cur) { sched_free(s); return MV_ERR; }
        s->x0_prev = s->x0_cur + numel;
    }
    return MV_OK;
}

void sched_free(Scheduler *s) {
    free(s->betas);
    free(s->timesteps);
    free(s->x0_cur < s->x0_prev ? s->x0_cur : s->x0_prev);
    memset(s, 0, sizeof *s);
}

// alphas_cumprod[t] with JAX's out-of-bounds gather rule (indices clamp to the table).
static real abar_at(const Scheduler *s, int64_t t) {
    if (t < 0) t = 0;
    if (t >= s->T) t = s->T - 1;
    return s->alphas_cumprod[t];
}

static int ddim_step(Scheduler *s, real *out, const real *eps, const real *sample, int i) {
    int64_t t = s->timesteps[i];
    int64_t prev = t - s->T / s->num_steps;
    real a_t = abar_at(s, t);
    real a_prev = prev >= 0 ? abar_at(s, prev) : s->final_alpha_cumprod;
    real b_t = (real)1 - a_t;
    real sqrt_b_t = R_SQRT(b_t), sqrt_a_t = R_SQRT(a_t);
    // eta = 0: std_dev_t = 0, so the direction coefficient is sqrt(1 - a_prev - 0^2)
    real dir_coef = R_SQRT((real)1 - a_prev);
    real x0_coef = R_SQRT(a_prev);
    size_t j;
    if (s->cfg.v_prediction) {
        for (j = 0; j < s->numel; j++) {
            real v = eps[j], x = sample[j];
            real x0 = R_FMA(sqrt_a_t, x, -(sqrt_b_t * v)); // sqrt(abar_t) x - sqrt(1 - abar_t) v
            real e = R_FMA(sqrt_b_t, x, sqrt_a_t * v);     // sqrt(abar_t) v + sqrt(1 - abar_t) x
            // XLA fuses these sums as written here inside the sampling loop (measured against
            // the Flax DDIM's scan over 12 steps: every value equal; a lone jitted step fuses
            // e the other way)
            out[j] = R_FMA(x0_coef, x0, dir_coef * e);
        }
        return MV_OK;
    }
    for (j = 0; j < s->numel; j++) {
        real e = eps[j];
        real x0 = R_FMA(-sqrt_b_t, e, sample[j]); // sample - sqrt(1 - abar_t) * eps
        real a;
        x0 = x0 / sqrt_a_t;                     // pred_original_sample
        a = x0_coef * x0;
        out[j] = R_FMA(dir_coef, e, a);         // + pred_sample_direction
    }
    return MV_OK;
}

static int dpm_step(Scheduler *s, real *out, const real *eps, const real *sample, int i) {
    int n = s->num_steps, k, step_index = 0, order;
    int64_t t = s->timesteps[i], prev_t, s1;
    real alpha_s0, sigma_s0, alpha_t, sigma_t, h, ratio, coef, half_coef = 0, inv_r0 = 0;
    real *swap;
    size_t j;
    // step_index: the FIRST position of t in the timesteps (jnp.where(..., size=1)). With
    // repeated timesteps (n close to T) this is not i: such steps have h = 0 and return the
    // sample unchanged, as in Flax.
    for (k = 0; k < n; k++)
        if (s->timesteps[k] == t) { step_index = k; break; }
    prev_t = step_index == n - 1 ? 0 : s->timesteps[step_index + 1];
    order = 2;
    if (s->lower_order_nums < 1) order = 1;
    else if (s->cfg.lower_order_final && n < 15 && step_index == n - 1) order = 1;
    if (order == 2 && step_index < 1) return mv_fail("DPM-Solver: second-order step at step index 0");

    alpha_s0 = s->alpha_t[t];
    sigma_s0 = s->sigma_t[t];
    alpha_t = s->alpha_t[prev_t];
    sigma_t = s->sigma_t[prev_t];
    h = s->lambda_t[prev_t] - s->lambda_t[t];
    ratio = sigma_t / sigma_s0;
    coef = R_EXP(-h) - (real)1;
    coef = alpha_t * coef;           // alpha_t * (exp(-h) - 1)
    if (order == 2) {
        s1 = s->timesteps[step_index - 1];
        {
            real h0 = s->lambda_t[t] - s->lambda_t[s1];
            real r0 = h0 / h;        // h = 0 gives r0 = inf and inv_r0 = 0, as in Flax
            inv_r0 = (real)1 / r0;
        }
        half_coef = (real)0.5 * coef;
    }
    // roll the history: x0_prev <- x0_cur, x0_cur <- this step's data prediction
    swap = s->x0_prev;
    s->x0_prev = s->x0_cur;
    s->x0_cur = swap;
    for (j = 0; j < s->numel; j++) {
        real x = sample[j];
        real m0, y;
        if (s->cfg.v_prediction) {
            m0 = R_FMA(alpha_s0, x, -(sigma_s0 * eps[j])); // convert_model_output: x0 = alpha_s x - sigma_s v
        } else {
            m0 = R_FMA(-sigma_s0, eps[j], x); // x - sigma_s * eps
            m0 = m0 / alpha_s0;               // convert_model_output: x0 = (x - sigma_s eps) / alpha_s
        }
        s->x0_cur[j] = m0;
        y = R_FMA(ratio, x, -(coef * m0));    // (sigma_t / sigma_s) x - coef * D0, D0 = m0
        if (order == 2) {
            real d1 = m0 - s->x0_prev[j];
            d1 = inv_r0 * d1;                  // D1 = (1 / r0) * (m0 - m1)
            y = R_FMA(-half_coef, d1, y);      // - 0.5 * coef * D1
        }
        out[j] = y;
    }
    if (s->lower_order_nums < 2) s->lower_order_nums++;
    return MV_OK;
}

int sched_step(Scheduler *s, real *out, const real *eps, const real *sample, int i) {
    if (i < 0 || i >= s->num_steps)
        return mv_fail("scheduler: step %d outside 0..%d", i, s->num_steps - 1);
    return s->kind == SCHED_DDIM ? ddim_step(s, out, eps, sample, i) : dpm_step(s, out, eps, sample, i);
}

int sched_x0(real *x0, const real *out, const real *sample, int64_t t, size_t n, const Scheduler *s) {
    real a, sg;
    size_t i;
    if (t < 0 || t >= s->T) return mv_fail("scheduler: timestep %lld outside the schedule", (long long)t);
    a = s->alpha_t[t];  // sqrt(abar_t)
    sg = s->sigma_t[t]; // sqrt(1 - abar_t)
    for (i = 0; i < n; i++) x0[i] = s->cfg.v_prediction ? a * sample[i] - sg * out[i] : (sample[i] - sg * out[i]) / a;
    return MV_OK;
}

// out = sqrt(abar_t) p + sign sqrt(1 - abar_t) q per batch item (sign +1 or -1): add_noise and
// the v target, as diffusers computes both (eager, two products and one sum).
static int abar_mix(real *out, const real *p, const real *q, real sign, const int64_t *t, size_t B, size_t per,
                    const Scheduler *s, const char *what) {
    size_t b, j;
    for (b = 0; b < B; b++)
        if (t[b] < 0 || t[b] >= s->T)
            return mv_fail("%s: timestep %ld of batch item %lu outside 0..%d", what, (long)t[b], (unsigned long)b, s->T - 1);
    for (b = 0; b < B; b++) {
        real sa = s->alpha_t[t[b]], sb = s->sigma_t[t[b]];
        for (j = 0; j < per; j++) {
            real u = sa * p[b * per + j];
            real w = sb * q[b * per + j];
            out[b * per + j] = u + sign * w;
        }
    }
    return MV_OK;
}

int sched_velocity(real *v, const real *x0, const real *noise, const int64_t *t, size_t B, size_t per, const Scheduler *s) {
    return abar_mix(v, noise, x0, (real)-1, t, B, per, s, "velocity"); // sqrt(abar) noise - sqrt(1 - abar) x0
}

int sched_add_noise(real *noisy, const real *x0, const real *noise, const int64_t *t,
                    size_t B, size_t per, const Scheduler *s) {
    return abar_mix(noisy, x0, noise, (real)1, t, B, per, s, "add_noise"); // sqrt(abar) x0 + sqrt(1 - abar) noise
}
