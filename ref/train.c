// train.c: upstream's training step (flax_trainer.py L423-518, dataset.py L30-104).
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if MAVREF_PRECISION == 64
#define T_SQRT(x) sqrt(x)
#else
#define T_SQRT(x) sqrtf(x)
#endif

void train_config_default(TrainConfig *t) {
    memset(t, 0, sizeof *t);
    t->kind = LR_CONSTANT;
    t->lr = t->end_lr = 1e-4;
    t->b1 = 0.9; t->b2 = 0.999; t->eps = 1e-8;
    t->weight_decay = 1e-2;
    t->clip_norm = 1.0;
    t->only_temporal = 1;
}

void train_set_schedule(TrainConfig *t, double lr, double warmup, double decay, long total_steps) {
    long ws = warmup > 0 ? (long)ceil(warmup * (double)total_steps) : 0;
    t->lr = lr;
    t->warmup_steps = ws;
    t->decay_steps = decay > 0 ? (long)ceil(decay * (double)total_steps) + ws : ws + 1;
    if (warmup > 0 || decay > 0) {
        t->kind = LR_WARMUP_COSINE;
        t->end_lr = decay > 0 ? 1e-8 : lr; // decay 0: keep the peak lr after the warmup
    } else {
        t->kind = LR_CONSTANT;
        t->end_lr = lr;
    }
}

// In double (optax evaluates the warmup/cosine formula in float32; SPEC.md section 10.1).
double train_lr(const TrainConfig *t, long count) {
    double c, D, alpha, cd;
    if (t->kind == LR_CONSTANT) return t->lr;
    // optax.join_schedules: linear_schedule(0 -> lr, warmup_steps) before the boundary
    if (count < t->warmup_steps) {
        c = (double)(count < 0 ? 0 : count);
        return (0.0 - t->lr) * (1.0 - c / (double)t->warmup_steps) + t->lr;
    }
    // then cosine_decay_schedule(lr, decay_steps - warmup_steps, alpha = end_lr / lr) at count - warmup
    D = (double)(t->decay_steps - t->warmup_steps);
    if (D <= 0) return t->lr;
    c = (double)(count - t->warmup_steps);
    if (c > D) c = D;
    alpha = t->lr == 0.0 ? 0.0 : t->end_lr / t->lr;
    cd = 0.5 * (1.0 + cos(3.14159265358979323846 * c / D));
    return t->lr * ((1.0 - alpha) * cd + alpha);
}

int train_is_trainable(const TrainConfig *t, const char *name) {
    // flax_trainer.py L257-272: 'temporal' in the joined key path
    if (t->only && !strstr(name, t->only)) return 0;
    return !t->only_temporal || strstr(name, "temporal") != NULL;
}

int adam_init(AdamState *s, const ParamTable *pt, const TrainConfig *tc) {
    size_t k, numel = 0;
    memset(s, 0, sizeof *s);
    if (!(s->at = (size_t *)mv_calloc(pt->count ? pt->count : 1, sizeof(size_t), "AdamW moment index"))) return MV_ERR;
    s->count = pt->count;
    for (k = 0; k < pt->count; k++) {
        s->at[k] = train_is_trainable(tc, pt->p[k].name) ? numel : (size_t)-1;
        if (s->at[k] != (size_t)-1) numel += pt->p[k].t.numel;
    }
    s->mu = (real *)mv_calloc(numel ? 2 * numel : 1, sizeof(real), "AdamW moments");
    if (!s->mu) { adam_free(s); return MV_ERR; }
    s->nu = s->mu + numel;
    s->numel = numel;
    return MV_OK;
}

void adam_free(AdamState *s) {
    free(s->mu);
    free(s->at);
    memset(s, 0, sizeof *s);
}

int train_grads_alloc(ParamTable *g, const ParamTable *pt, const TrainConfig *tc) {
    unsigned char *keep;
    size_t k;
    int rc;
    if (!tc->only_temporal) return unet_grads_alloc(g, pt);
    if (!(keep = (unsigned char *)mv_calloc(pt->count ? pt->count : 1, 1, "trainable flags"))) return MV_ERR;
    for (k = 0; k < pt->count; k++) keep[k] = (unsigned char)train_is_trainable(tc, pt->p[k].name);
    rc = params_grads_subset(g, pt, keep, 1);
    free(keep);
    return rc;
}

int train_collate(real *x_in, real *v, const real *const *clips, const size_t *Fc, const size_t *start, size_t B, size_t F,
                  size_t h, size_t w, const real *noise, const int64_t *t, const Scheduler *s) {
    size_t b, c, f, i, S = h * w, per = 4 * F * S;
    real *x0 = (real *)mv_calloc(per, sizeof(real), "training latents");
    int rc = MV_OK;
    if (!x0) return MV_ERR;
    for (b = 0; b < B && rc == MV_OK; b++) {
        real *xb = x_in + b * 9 * F * S; // (9,F,h,w)
        if (start[b] + F > Fc[b]) { rc = mv_fail("clip %lu: window %lu..%lu outside its %lu frames", (unsigned long)b,
                                                 (unsigned long)start[b], (unsigned long)(start[b] + F), (unsigned long)Fc[b]); break; }
        // x0[c,f] = 0.18215 * clip[start + f, c]   ((F,C,h,w) -> (C,F,h,w))
        for (c = 0; c < 4; c++)
            for (f = 0; f < F; f++)
                for (i = 0; i < S; i++) x0[(c * F + f) * S + i] = clips[b][((start[b] + f) * 4 + c) * S + i] * (real)LATENT_SCALE;
        if (sched_add_noise(xb, x0, noise + b * per, t + b, 1, per, s) ||
            (v && sched_velocity(v + b * per, x0, noise + b * per, t + b, 1, per, s))) {
            rc = mv_fail_prefix("clip %lu", (unsigned long)b);
            break;
        }
        memset(xb + per, 0, F * S * sizeof(real)); // mask
        for (c = 0; c < 4; c++) // hint: the clean first frame, repeated over the frames
            for (f = 0; f < F; f++) memcpy(xb + per + F * S + (c * F + f) * S, x0 + c * F * S, S * sizeof(real));
    }
    free(x0);
    return rc;
}

int train_collate_2d(real *x_in, real *v, const real *const *clips, size_t B, size_t h, size_t w, const real *noise, const int64_t *t,
                     const Scheduler *s) {
    size_t b, i, per = 4 * h * w;
    real *x0 = (real *)mv_calloc(B * per, sizeof(real), "training latents");
    int rc;
    if (!x0) return MV_ERR;
    for (b = 0; b < B; b++) // x0[b] = 0.18215 * clip[b][0]   (frame 0 is (4,h,w) already)
        for (i = 0; i < per; i++) x0[b * per + i] = clips[b][i] * (real)LATENT_SCALE;
    rc = sched_add_noise(x_in, x0, noise, t, B, per, s) || (v && sched_velocity(v, x0, noise, t, B, per, s));
    free(x0);
    return rc;
}

void adamw_update(ParamTable *pt, const ParamTable *gt, AdamState *opt, const TrainConfig *tc, double *l2_grads,
                  double *trainable_norm) {
    size_t i, k;
    double full = 0.0, tr = 0.0, lr, bc1, bc2;
    real scale;
    int clip;
    // norms: the full gradient (upstream's metric) and the trainable part (what the clip sees)
    for (k = 0; k < pt->count; k++) {
        const Param *p = &pt->p[k];
        const real *g = params_grad_slot(pt, (ParamTable *)gt, p->t.data);
        double s = 0.0;
        if (g)
            for (i = 0; i < p->t.numel; i++) s += (double)g[i] * (double)g[i];
        else if (gt->sq) // a frozen gradient the backward lent a buffer: its norm only
            s = gt->sq[k];
        full += s;
        if (train_is_trainable(tc, p->name)) tr += s;
    }
    if (l2_grads) *l2_grads = sqrt(full);
    tr = sqrt(tr);
    if (trainable_norm) *trainable_norm = tr;
    // optax.clip_by_global_norm: g unchanged if norm < max, else (g / norm) * max
    clip = !(tr < tc->clip_norm);
    scale = (real)tr;
    // AdamW (optax.adamw = scale_by_adam, add_decayed_weights, scale_by_learning_rate)
    lr = train_lr(tc, opt->step);
    bc1 = 1.0 - pow(tc->b1, (double)(opt->step + 1));
    bc2 = 1.0 - pow(tc->b2, (double)(opt->step + 1));
    for (k = 0; k < pt->count; k++) {
        const Param *p = &pt->p[k];
        real *w = p->t.data, *g, *mu, *nu;
        if (!train_is_trainable(tc, p->name)) continue; // optax.set_to_zero: no change
        g = params_grad_slot(pt, (ParamTable *)gt, w);
        mu = opt->mu + opt->at[k];
        nu = opt->nu + opt->at[k];
        for (i = 0; i < p->t.numel; i++) {
            real gi = clip ? (g[i] / scale) * (real)tc->clip_norm : g[i];
            real mh, nh, u;
            mu[i] = (real)(1.0 - tc->b1) * gi + (real)tc->b1 * mu[i];
            nu[i] = (real)(1.0 - tc->b2) * (gi * gi) + (real)tc->b2 * nu[i];
            mh = mu[i] / (real)bc1;
            nh = nu[i] / (real)bc2;
            u = mh / (T_SQRT(nh) + (real)tc->eps);
            u = u + (real)tc->weight_decay * w[i];
            w[i] = w[i] + (real)(-lr) * u;
        }
    }
    opt->step++;
}

int train_step(ParamTable *pt, ParamTable *gt, AdamState *opt, const TrainConfig *tc, const UNetConfig *uc,
               const Tensor *x_in, const Tensor *timesteps, const Tensor *noise, const Tensor *context, double *loss,
               double *l2_grads, double *trainable_norm) {
    UNetTape *tp;
    Tensor pred, dout;
    size_t i, n;
    double acc;
    int rc = MV_ERR;
    if ((!gt->slot && gt->numel != pt->numel) || (gt->slot && gt->model_count != pt->count) || opt->count != pt->count)
        return mv_fail("train_step: gradient table or optimizer state of another model");
    if (unet_tape_forward_mode(&tp, &pred, x_in, timesteps, context, pt, uc, tc->recompute)) return mv_fail_prefix("train_step");
    memset(&dout, 0, sizeof dout);
    if (!tensor_same_shape(&pred, noise)) { mv_fail("train_step: noise must have the prediction's shape"); goto done; }
    // loss = mean((noise - pred)^2); dloss/dpred = -2 (noise - pred) / n
    n = pred.numel;
    if (tensor_alloc(&dout, pred.ndim, pred.shape)) goto done;
    acc = 0.0;
    for (i = 0; i < n; i++) {
        real e = noise->data[i] - pred.data[i];
        acc += (double)e * (double)e;
        dout.data[i] = (real)(-2.0 * (double)e / (double)n);
    }
    *loss = acc / (double)n;
    memset(gt->arena, 0, gt->numel * sizeof(real));
    if (unet_tape_backward(tp, gt, NULL, &dout)) goto done;
    adamw_update(pt, gt, opt, tc, l2_grads, trainable_norm);
    rc = MV_OK;
done:
    if (rc) mv_fail_prefix("train_step");
    unet_tape_free(tp);
    tensor_free(&pred); tensor_free(&dout);
    return rc;
}

int train_save_state(const char *path, const ParamTable *pt, const AdamState *opt, const TrainConfig *tc) {
    StWriter w;
    Tensor v, st;
    size_t k;
    char name[600];
    int rc = MV_ERR;
    st_writer_init(&w);
    if (tensor_alloc_v(&st, 1, (size_t)1)) return MV_ERR;
    st.data[0] = (real)opt->step;
    for (k = 0; k < pt->count; k++) {
        const Param *p = &pt->p[k];
        if (!train_is_trainable(tc, p->name)) continue;
        v = p->t;
        v.owned = 0;
        v.data = opt->mu + opt->at[k];
        snprintf(name, sizeof name, "mu.%s", p->name);
        if (st_writer_add(&w, name, &v, ST_REAL)) goto done;
        v.data = opt->nu + opt->at[k];
        snprintf(name, sizeof name, "nu.%s", p->name);
        if (st_writer_add(&w, name, &v, ST_REAL)) goto done;
    }
    if (st_writer_add(&w, "step", &st, ST_F64) || st_writer_save(&w, path)) goto done;
    rc = MV_OK;
done:
    st_writer_free(&w);
    tensor_free(&st);
    return rc ? mv_fail_prefix("optimizer state %s", path) : MV_OK;
}

int train_load_state(const char *path, const ParamTable *pt, AdamState *opt, const TrainConfig *tc) {
    StFile f;
    Tensor v, st;
    size_t k;
    char name[600];
    int rc = MV_ERR;
    if (st_open(&f, path)) return MV_ERR;
    memset(opt->mu, 0, 2 * opt->numel * sizeof(real));
    for (k = 0; k < pt->count; k++) {
        const Param *p = &pt->p[k];
        if (!train_is_trainable(tc, p->name)) continue;
        v = p->t;
        v.owned = 0;
        v.data = opt->mu + opt->at[k];
        snprintf(name, sizeof name, "mu.%s", p->name);
        if (st_read_into(&f, name, &v)) goto done;
        v.data = opt->nu + opt->at[k];
        snprintf(name, sizeof name, "nu.%s", p->name);
        if (st_read_into(&f, name, &v)) goto done;
    }
    if (st_read(&f, "step", &st)) goto done;
    if (st.numel != 1 || st.data[0] < 0) { tensor_free(&st); mv_fail("'step' must be one non-negative value"); goto done; }
    opt->step = (long)st.data[0];
    tensor_free(&st);
    rc = MV_OK;
done:
    st_close(&f);
    return rc ? mv_fail_prefix("optimizer state %s", path) : MV_OK;
}
