// ops_train.c: corpus runners for the UNet's gradient (op unet_grad) and upstream's training
// step (op train_step), vectors from tools/cases_train.py (jax.grad / optax of the Flax model).
//
// A full gradient of even the small configuration is millions of values; the files hold per
// parameter tensor its norm and its dot product with a procedural direction u (gnorm, gdot;
// see cases_train.py), and the full values of the small tensors listed in meta `full`.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/procedural.h"
#include "../ref/train.h"
#include "../ref/unet.h"

// The case's model: configuration from meta, parameters declared by mavref and filled with
// the procedural rule (meta `params` must list as many tensors). The caller frees pt, also
// on an error.
static int load_model(Case *c, UNetConfig *cfg, ParamTable *pt) {
    const char *json = case_meta_str(c, "config"), *list = case_meta_str(c, "params"), *p;
    long seed;
    size_t count = 1;
    if (!json || !list || case_meta_long(c, "weights_seed", &seed)) return MV_ERR;
    unet_config_default(cfg);
    if (unet_config_parse(cfg, json, strlen(json), "meta config")) return case_error(c, "config");
    cfg->temporal = 1;
    params_init(pt);
    if (unet_declare_params(pt, cfg)) return case_error(c, "declare");
    for (p = list; *p; p++) count += *p == ',';
    if (count != pt->count) {
        harness_failf(c->name, "mavref declares %lu parameters, the Flax model has %lu", (unsigned long)pt->count, (unsigned long)count);
        c->failed++;
        return MV_ERR;
    }
    if (params_alloc(pt) || params_procedural(pt, (uint64_t)seed)) return case_error(c, "procedural parameters");
    return MV_OK;
}

// The index of the j-th sampled element of tensor `name` of n values (cases_train.py
// sample_indices): a splitmix64 stream keyed by the name, as the procedural generator's.
static size_t sample_index(const char *name, uint64_t seed, size_t j, size_t n) {
    uint64_t key = proc_splitmix64(seed ^ proc_fnv1a64(name));
    return (size_t)(proc_splitmix64(key + (uint64_t)j) % (uint64_t)n);
}

// A gradient (or parameter update) in pt's layout is checked tensor by tensor against the
// case's summaries, in the order of meta `params` (the Flax tree's): <prefix>norm and
// <prefix>dot, and, with meta `samples` (the unet_grad cases), <prefix>max (max|g|) and
// <prefix>sample (`samples` elements per tensor at sample_index), both relative to the
// expected max|g|: element-wise checks of every tensor. Tensors in meta `zero_grads` (zero in
// exact arithmetic; cases_train.py ZERO_REL) must stay below min(ZERO_REL, tol) times the
// global norm.
#define ZERO_REL 1e-6
enum { ERR_NORM, ERR_DOT, ERR_ZERO, ERR_MAX, ERR_SAMPLE, N_ERR };

typedef struct {
    Tensor norm, dot, max, sample; // expected: (count) each, sample (count * nsamp)
    long dir_seed, nsamp, sample_seed;
    double zero_bound;             // a zero gradient's norm must stay below this
    double err[N_ERR];             // the worst relative error of each kind (zero: of the bound)
    const Param *worst[N_ERR];     // and its tensor
    size_t tensors, nzero;         // tensors checked, of which zero gradients
} Summary;

static void summary_free(Summary *s) {
    tensor_free(&s->norm); tensor_free(&s->dot); tensor_free(&s->max); tensor_free(&s->sample);
}

// Read the expected summaries of `count` tensors; 1 (and a FAIL line) on error.
static int read_summary(Case *c, Summary *s, const char *prefix, size_t count) {
    char name[600];
    double total = 0.0;
    size_t k;
    if (case_meta_long(c, "dir_seed", &s->dir_seed)) return 1;
    if (st_meta(&c->vec, "samples") && (case_meta_long(c, "samples", &s->nsamp) || case_meta_long(c, "sample_seed", &s->sample_seed)))
        return 1;
    snprintf(name, sizeof name, "%snorm", prefix);
    if (case_read(c, name, &s->norm)) return 1;
    snprintf(name, sizeof name, "%sdot", prefix);
    if (case_read(c, name, &s->dot)) return 1;
    if (s->norm.numel != count || s->dot.numel != count) {
        harness_failf(c->name, "%s summaries hold %lu values for %lu tensors", prefix, (unsigned long)s->norm.numel, (unsigned long)count);
        c->failed++;
        return 1;
    }
    if (s->nsamp > 0) {
        snprintf(name, sizeof name, "%smax", prefix);
        if (case_read(c, name, &s->max)) return 1;
        snprintf(name, sizeof name, "%ssample", prefix);
        if (case_read(c, name, &s->sample)) return 1;
        if (s->max.numel != count || s->sample.numel != count * (size_t)s->nsamp) {
            harness_failf(c->name, "%s{max,sample} hold %lu and %lu values for %lu tensors", prefix, (unsigned long)s->max.numel,
                          (unsigned long)s->sample.numel, (unsigned long)count);
            c->failed++;
            return 1;
        }
    }
    for (k = 0; k < count; k++) total += (double)s->norm.data[k] * (double)s->norm.data[k];
    s->zero_bound = (ZERO_REL < c->tol ? ZERO_REL : c->tol) * sqrt(total);
    return 0;
}

// Keep e as the worst error of its kind if it is (a NaN always is).
static void note_error(Summary *s, int kind, double e, const Param *p) {
    if (e > s->err[kind] || e != e) { s->err[kind] = e; s->worst[kind] = p; }
}

// Summarize tensor p's values v (row k of the summaries) and note its errors.
static int check_tensor(Case *c, Summary *s, size_t k, const Param *p, const real *v, int zero) {
    real *u = (real *)malloc((p->t.numel ? p->t.numel : 1) * sizeof(real)); // the direction (cases_train.py)
    double n2 = 0.0, dot = 0.0, un = 0.0, mx = 0.0, den;
    size_t i;
    long j;
    if (!u) return case_error(c, "direction");
    proc_fill(u, p->t.numel, (uint64_t)s->dir_seed, p->name, 1.0, 0.0);
    for (i = 0; i < p->t.numel; i++) {
        n2 += (double)v[i] * (double)v[i];
        dot += (double)v[i] * (double)u[i];
        un += (double)u[i] * (double)u[i];
        if (fabs((double)v[i]) > mx) mx = fabs((double)v[i]);
    }
    free(u);
    if (zero) { // zero in exact arithmetic: the size of the noise only
        s->nzero++;
        note_error(s, ERR_ZERO, sqrt(n2) / s->zero_bound, p);
        return 0;
    }
    den = (double)s->norm.data[k] > 0 ? (double)s->norm.data[k] : 1.0;
    note_error(s, ERR_NORM, fabs(sqrt(n2) - (double)s->norm.data[k]) / den, p);
    note_error(s, ERR_DOT, fabs(dot - (double)s->dot.data[k]) / (den * sqrt(un)), p);
    if (s->nsamp <= 0) return 0;
    // max|g| and the sampled elements, relative to the expected max|g|
    den = (double)s->max.data[k] > 0 ? (double)s->max.data[k] : 1.0;
    note_error(s, ERR_MAX, fabs(mx - (double)s->max.data[k]) / den, p);
    for (j = 0; j < s->nsamp && p->t.numel; j++) {
        size_t idx = sample_index(p->name, (uint64_t)s->sample_seed, (size_t)j, p->t.numel);
        note_error(s, ERR_SAMPLE, fabs((double)v[idx] - (double)s->sample.data[k * (size_t)s->nsamp + (size_t)j]) / den, p);
    }
    return 0;
}

#define WORST(s, kind) ((s)->worst[kind] ? (s)->worst[kind]->name : "-")

// The check lines: {norm,dot} and the zero gradients, then {max,sample}. 0 if they pass.
static int report_summary(Case *c, const Summary *s, const char *prefix) {
    int rc = 0;
    c->checks++;
    if (s->tensors != s->norm.numel || !(s->err[ERR_NORM] <= c->tol) || !(s->err[ERR_DOT] <= c->tol) || !(s->err[ERR_ZERO] <= 1.0)) {
        harness_failf(c->name, "%s per-tensor summaries of %lu tensors: norm rel %.3e (%s), dot rel %.3e (%s), %lu zero "
                      "gradients at %.3e of the bound (%s) (tol %.1e)", prefix, (unsigned long)s->tensors, s->err[ERR_NORM],
                      WORST(s, ERR_NORM), s->err[ERR_DOT], WORST(s, ERR_DOT), (unsigned long)s->nzero, s->err[ERR_ZERO],
                      WORST(s, ERR_ZERO), c->tol);
        c->failed++;
        rc = 1;
    } else {
        printf("  ok %s %s{norm,dot} of %lu tensors: norm rel %.3e (%s), dot rel %.3e (%s); %lu zero gradients at %.2e of "
               "the bound %.2e\n", c->name, prefix, (unsigned long)s->tensors, s->err[ERR_NORM], WORST(s, ERR_NORM),
               s->err[ERR_DOT], WORST(s, ERR_DOT), (unsigned long)s->nzero, s->err[ERR_ZERO], s->zero_bound);
    }
    if (s->nsamp <= 0) return rc;
    c->checks++;
    if (!(s->err[ERR_MAX] <= c->tol) || !(s->err[ERR_SAMPLE] <= c->tol)) {
        harness_failf(c->name, "%s{max,sample} of %lu tensors: max rel %.3e (%s), %ld samples each rel %.3e (%s) (tol %.1e)",
                      prefix, (unsigned long)(s->tensors - s->nzero), s->err[ERR_MAX], WORST(s, ERR_MAX), s->nsamp,
                      s->err[ERR_SAMPLE], WORST(s, ERR_SAMPLE), c->tol);
        c->failed++;
        return 1;
    }
    printf("  ok %s %s{max,sample} of %lu tensors: max rel %.3e (%s), %ld samples each rel %.3e (%s)\n", c->name, prefix,
           (unsigned long)(s->tensors - s->nzero), s->err[ERR_MAX], WORST(s, ERR_MAX), s->nsamp, s->err[ERR_SAMPLE],
           WORST(s, ERR_SAMPLE));
    return rc;
}

// The full values of the tensors of meta `full` against <prefix>.NAME.
static int check_full_tensors(Case *c, const ParamTable *pt, const real *vals, const char *prefix, const char *list) {
    char pname[512], name[600];
    int rc = 0;
    while (*list) {
        size_t n = strcspn(list, ",");
        Tensor *t, view;
        if (n >= sizeof pname) return 1;
        memcpy(pname, list, n);
        pname[n] = '\0';
        list += n + (list[n] == ',');
        if (!(t = params_get((ParamTable *)pt, pname))) return case_error(c, pname);
        view = *t;
        view.owned = 0;
        view.data = (real *)vals + (t->data - pt->arena);
        snprintf(name, sizeof name, "%s.%s", prefix, pname);
        rc |= case_check(c, name, &view);
    }
    return rc;
}

static const Param *find_param(const ParamTable *pt, const char *name) {
    size_t i;
    for (i = 0; i < pt->count; i++)
        if (!strcmp(pt->p[i].name, name)) return &pt->p[i];
    return NULL;
}

// Check `vals` (an arena of pt's layout) against the summaries <prefix>*, and when `full`
// is set the full tensors of meta `full`.
int check_summary(Case *c, const ParamTable *pt, const real *vals, const char *prefix, int full) {
    Summary s;
    const char *list, *order, *zeros;
    char pname[512];
    int rc = 1;
    memset(&s, 0, sizeof s);
    if (!(list = case_meta_str(c, "full")) || !(order = case_meta_str(c, "params")) || !(zeros = case_meta_str(c, "zero_grads")))
        return 1;
    if (read_summary(c, &s, prefix, pt->count)) goto out;
    for (s.tensors = 0; *order; s.tensors++) {
        size_t m = strcspn(order, ",");
        const Param *p;
        if (m >= sizeof pname || s.tensors >= s.norm.numel) { case_error(c, "meta params"); goto out; }
        memcpy(pname, order, m);
        pname[m] = '\0';
        order += m + (order[m] == ',');
        if (!(p = find_param(pt, pname))) { mv_fail("the model has no parameter '%s'", pname); case_error(c, "meta params"); goto out; }
        if (check_tensor(c, &s, s.tensors, p, vals + p->offset, in_list(zeros, pname))) goto out;
    }
    rc = report_summary(c, &s, prefix);
    if (full) rc |= check_full_tensors(c, pt, vals, prefix, list);
out:
    summary_free(&s);
    return rc;
}

int run_unet_grad(Case *c) {
    Bag b = {0};
    UNetConfig cfg;
    ParamTable pt, gt;
    Tensor *sample, *t, *ctx, *w, out, dx, ref;
    int rc = 1;
    params_init(&pt); params_init(&gt);
    memset(&out, 0, sizeof out); memset(&dx, 0, sizeof dx); memset(&ref, 0, sizeof ref);
    if (load_model(c, &cfg, &pt)) goto out;
    if (unet_grads_alloc(&gt, &pt)) { case_error(c, "gradient table"); goto out; }
    if (!(sample = bag_input(c, &b, "sample")) || !(t = bag_input(c, &b, "timesteps")) || !(ctx = bag_input(c, &b, "context")) ||
        !(w = bag_input(c, &b, "w")))
        goto out;
    if (unet_backward(&gt, &dx, &out, w, sample, t, ctx, &pt, &cfg)) { case_error(c, "unet_backward"); goto out; }
    rc = case_check(c, "out", &out) | case_check(c, "d_sample", &dx);
    // the tape's forward is unet_forward's computation, bit for bit
    if (unet_forward(&ref, sample, t, ctx, &pt, &cfg, NULL, NULL)) {
        rc |= case_error(c, "unet_forward");
    } else if (memcmp(ref.data, out.data, out.numel * sizeof(real))) {
        harness_failf(c->name, "unet_tape_forward differs from unet_forward");
        c->failed++;
        rc = 1;
    }
    rc |= check_summary(c, &pt, gt.arena, "g", 1);
out:
    tensor_free(&out); tensor_free(&dx); tensor_free(&ref);
    free_params(&gt); free_params(&pt);
    bag_free(&b);
    return rc;
}

// The clips of a training case, in the bag: "clip" (batch 1) or "clip_0" ... "clip_{B-1}"
// (meta batch), each (Fc,4,h,w) with the same Fc, h, w.
static int read_clips(Case *c, Bag *bag, Tensor **clips, long B) {
    char key[32];
    long b;
    for (b = 0; b < B; b++) {
        if (B == 1) snprintf(key, sizeof key, "clip");
        else snprintf(key, sizeof key, "clip_%ld", b);
        if (!(clips[b] = bag_input(c, bag, key))) return 1;
        if (clips[b]->ndim != 4 || clips[b]->shape[1] != 4 || !tensor_same_shape(clips[b], clips[0])) {
            harness_failf(c->name, "%s must be (Fc,4,h,w) like clip 0", key);
            c->failed++;
            return 1;
        }
    }
    return 0;
}

// Step k's window starts and timesteps: meta start_k / t_k (batch 1) or start_k_b / t_k_b.
static int read_draws(Case *c, long k, long B, size_t *start, int64_t *t, Tensor *ts) {
    char key[64];
    long b, v;
    for (b = 0; b < B; b++) {
        if (B == 1) snprintf(key, sizeof key, "start_%ld", k);
        else snprintf(key, sizeof key, "start_%ld_%ld", k, b);
        if (case_meta_long(c, key, &v)) return 1;
        start[b] = (size_t)v;
        if (B == 1) snprintf(key, sizeof key, "t_%ld", k);
        else snprintf(key, sizeof key, "t_%ld_%ld", k, b);
        if (case_meta_long(c, key, &v)) return 1;
        t[b] = (int64_t)v;
        ts->data[b] = (real)v;
    }
    return 0;
}

#define TRAIN_MAX_BATCH 8

// Every parameter tensor that train_step must leave alone (only_temporal) is unchanged:
// delta (pt's layout) is exactly zero there.
static int check_frozen(Case *c, const ParamTable *pt, const TrainConfig *tc, const real *delta, long step) {
    size_t j, i, bad = 0;
    for (j = 0; j < pt->count; j++)
        if (!train_is_trainable(tc, pt->p[j].name))
            for (i = 0; i < pt->p[j].t.numel; i++) bad += delta[pt->p[j].offset + i] != 0;
    c->checks++;
    if (!bad) return 0;
    harness_failf(c->name, "step %ld changed %lu frozen values", step, (unsigned long)bad);
    c->failed++;
    return 1;
}

// The case's training configuration and batch (meta), or 1 and a FAIL line.
static int read_train_config(Case *c, TrainConfig *tc, long *steps, long *frames, long *batch) {
    long wsteps, dsteps, only;
    double lr, end_lr, wd;
    const char *kind;
    if (case_meta_long(c, "steps", steps) || case_meta_long(c, "frames", frames) || case_meta_long(c, "warmup_steps", &wsteps) ||
        case_meta_long(c, "decay_steps", &dsteps) || case_meta_long(c, "only_temporal", &only) ||
        case_meta_double(c, "lr", &lr) || case_meta_double(c, "end_lr", &end_lr) || case_meta_double(c, "weight_decay", &wd) ||
        !(kind = case_meta_str(c, "schedule")))
        return 1;
    *batch = 1;
    if (st_meta(&c->vec, "batch") && case_meta_long(c, "batch", batch)) return 1;
    if (*batch < 1 || *batch > TRAIN_MAX_BATCH) { case_error(c, "batch out of range"); return 1; }
    train_config_default(tc);
    tc->kind = strcmp(kind, "constant") ? LR_WARMUP_COSINE : LR_CONSTANT;
    tc->lr = lr; tc->end_lr = end_lr; tc->warmup_steps = wsteps; tc->decay_steps = dsteps; tc->weight_decay = wd;
    tc->only_temporal = only != 0;
    return 0;
}

int run_train_step(Case *c) {
    Bag bag = {0};
    UNetConfig cfg;
    ParamTable pt, gt;
    TrainConfig tc;
    AdamState opt;
    Scheduler sch;
    SchedConfig scfg;
    Tensor *clips[TRAIN_MAX_BATCH], *ctx, *x_in, *ts, *losses, *norms, noise;
    const real *cp[TRAIN_MAX_BATCH];
    size_t Fc[TRAIN_MAX_BATCH], start[TRAIN_MAX_BATCH], shape[5];
    int64_t t[TRAIN_MAX_BATCH];
    real *p0 = NULL, *delta = NULL;
    long steps, F, k, B, b;
    char key[64];
    size_t i, H, W;
    int rc = 1;
    params_init(&pt); params_init(&gt);
    memset(&opt, 0, sizeof opt); memset(&sch, 0, sizeof sch); memset(&noise, 0, sizeof noise);
    if (read_train_config(c, &tc, &steps, &F, &B)) return 1;
    sched_config_sd(&scfg);
    if (load_model(c, &cfg, &pt)) goto out;
    // the table `mavref train` uses: temporal only, the trainable gradients kept and the frozen
    // ones lent per block for l2_grads
    if (train_grads_alloc(&gt, &pt, &tc)) { case_error(c, "gradient table"); goto out; }
    if (sched_init(&sch, SCHED_DDIM, &scfg, 0, 1)) { case_error(c, "scheduler"); goto out; }
    if (adam_init(&opt, &pt, &tc) || !(p0 = (real *)malloc(pt.numel * sizeof(real))) ||
        !(delta = (real *)malloc(pt.numel * sizeof(real)))) { case_error(c, "allocation"); goto out; }
    memcpy(p0, pt.arena, pt.numel * sizeof(real));
    if (read_clips(c, &bag, clips, B) || !(ctx = bag_input(c, &bag, "context"))) goto out;
    H = clips[0]->shape[2]; W = clips[0]->shape[3];
    for (b = 0; b < B; b++) { Fc[b] = clips[b]->shape[0]; cp[b] = clips[b]->data; }
    shape[0] = (size_t)B; shape[1] = 9; shape[2] = (size_t)F; shape[3] = H; shape[4] = W;
    if (!(x_in = bag_alloc(c, &bag, 5, shape)) || !(ts = bag_alloc(c, &bag, 1, shape))) goto out; // ts: (B)
    shape[0] = (size_t)steps;
    if (!(losses = bag_alloc(c, &bag, 1, shape)) || !(norms = bag_alloc(c, &bag, 1, shape))) goto out;
    rc = 0;
    for (k = 0; k < steps; k++) {
        double loss, l2;
        if (read_draws(c, k, B, start, t, ts)) { rc = 1; break; }
        snprintf(key, sizeof key, "noise_%ld", k);
        tensor_free(&noise);
        if (case_input(c, key, &noise)) { rc = 1; break; }
        if (train_collate(x_in->data, NULL, cp, Fc, start, (size_t)B, (size_t)F, H, W, noise.data, t, &sch)) { rc = case_error(c, "collate"); break; }
        if (k == 0) rc |= case_check(c, "x_in_0", x_in);
        if (train_step(&pt, &gt, &opt, &tc, &cfg, x_in, ts, &noise, ctx, &loss, &l2, NULL)) { rc = case_error(c, "train_step"); break; }
        losses->data[k] = (real)loss;
        norms->data[k] = (real)l2;
        printf("  step %ld: loss %.10f l2_grads %.10f lr %.3e\n", k, loss, l2, train_lr(&tc, k));
        for (i = 0; i < pt.numel; i++) delta[i] = pt.arena[i] - p0[i];
        snprintf(key, sizeof key, "d%ld", k);
        rc |= check_summary(c, &pt, delta, key, k == steps - 1);
        if (tc.only_temporal) rc |= check_frozen(c, &pt, &tc, delta, k);
    }
    if (k == steps) rc |= case_check(c, "loss", losses) | case_check(c, "l2_grads", norms);
out:
    tensor_free(&noise);
    free(p0); free(delta);
    adam_free(&opt);
    sched_free(&sch);
    free_params(&gt); free_params(&pt);
    bag_free(&bag);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Unit test: the optimizer state file. 2 steps, save parameters and state, load them into a
// fresh model, 1 more step == 3 uninterrupted steps, bit for bit; a state file missing a
// moment is an error naming it.
static int tiny_steps(ParamTable *pt, AdamState *opt, const TrainConfig *tc, const UNetConfig *c, long from, long to) {
    ParamTable gt;
    Tensor x, t, noise, ctx;
    long k;
    int rc = MV_ERR;
    double loss, l2;
    if (train_grads_alloc(&gt, pt, tc)) return MV_ERR;
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&noise, 0, sizeof noise); memset(&ctx, 0, sizeof ctx);
    if (tensor_alloc_v(&x, 5, (size_t)1, (size_t)9, (size_t)2, (size_t)4, (size_t)4) || tensor_alloc_v(&t, 1, (size_t)1) ||
        tensor_alloc_v(&noise, 5, (size_t)1, (size_t)4, (size_t)2, (size_t)4, (size_t)4) ||
        tensor_alloc_v(&ctx, 3, (size_t)1, (size_t)3, (size_t)8))
        goto out;
    for (k = from; k < to; k++) {
        proc_fill(x.data, x.numel, (uint64_t)k, "x_in", 1.0, 0.0);
        proc_fill(noise.data, noise.numel, (uint64_t)k, "noise", 1.0, 0.0);
        proc_fill(ctx.data, ctx.numel, (uint64_t)k, "ctx", 1.0, 0.0);
        t.data[0] = (real)(100 + 300 * k);
        if (train_step(pt, &gt, opt, tc, c, &x, &t, &noise, &ctx, &loss, &l2, NULL)) goto out;
    }
    rc = MV_OK;
out:
    tensor_free(&x); tensor_free(&t); tensor_free(&noise); tensor_free(&ctx);
    free_params(&gt);
    return rc;
}

static int tiny_model(ParamTable *pt, UNetConfig *c, AdamState *opt, const TrainConfig *tc) {
    unet_config_default(c);
    c->in_channels = 9; c->out_channels = 4; c->n_blocks = 2; c->block_out_channels[0] = 32; c->block_out_channels[1] = 64;
    c->layers_per_block = 1; c->heads[0] = 2; c->heads[1] = 4; c->cross_attention_dim = 8;
    c->down_cross[0] = 1; c->down_cross[1] = 0; c->up_cross[0] = 0; c->up_cross[1] = 1;
    params_init(pt);
    if (unet_declare_params(pt, c) || params_alloc(pt) || params_procedural(pt, 21)) return MV_ERR;
    return adam_init(opt, pt, tc);
}

#define TR_STR2(x) #x
#define TR_STR(x) TR_STR2(x)
#define MAVREF_PRECISION_STR TR_STR(MAVREF_PRECISION)

// Once training everything (full gradient table, moments over the whole arena) and once
// temporal only (the trainable subset's gradients and moments).
static int train_resume_once(int only_temporal) {
    const char *pp = "build/train-resume-f" MAVREF_PRECISION_STR "-params.safetensors";
    const char *sp = "build/train-resume-f" MAVREF_PRECISION_STR "-opt.safetensors";
    const char *bad = "build/train-resume-f" MAVREF_PRECISION_STR "-bad.safetensors";
    UNetConfig c;
    TrainConfig tc;
    ParamTable a, b;
    AdamState oa, ob;
    StWriter w;
    size_t i;
    int fail = 1;
    memset(&oa, 0, sizeof oa); memset(&ob, 0, sizeof ob);
    params_init(&a); params_init(&b);
    st_writer_init(&w);
    train_config_default(&tc);
    train_set_schedule(&tc, 1e-3, 0.25, 0.5, 4);
    tc.only_temporal = only_temporal;
    if (tiny_model(&a, &c, &oa, &tc) || tiny_model(&b, &c, &ob, &tc)) { harness_failf("train_resume", "setup: %s", mv_error()); goto out; }
    // a: 3 steps; b: 2 steps, saved, reloaded into fresh memory, 1 step
    if (tiny_steps(&a, &oa, &tc, &c, 0, 3) || tiny_steps(&b, &ob, &tc, &c, 0, 2)) { harness_failf("train_resume", "%s", mv_error()); goto out; }
    for (i = 0; i < b.count; i++)
        if (st_writer_add(&w, b.p[i].name, &b.p[i].t, ST_REAL)) { harness_failf("train_resume", "%s", mv_error()); goto out; }
    if (st_writer_save(&w, pp) || train_save_state(sp, &b, &ob, &tc)) { harness_failf("train_resume", "%s", mv_error()); goto out; }
    memset(b.arena, 0, b.numel * sizeof(real));
    memset(ob.mu, 0, 2 * ob.numel * sizeof(real));
    ob.step = 0;
    if (params_load(&b, pp, 0) || train_load_state(sp, &b, &ob, &tc) || tiny_steps(&b, &ob, &tc, &c, 2, 3)) {
        harness_failf("train_resume", "%s", mv_error());
        goto out;
    }
    if (ob.step != 3 || oa.step != 3 || memcmp(a.arena, b.arena, a.numel * sizeof(real)) ||
        memcmp(oa.mu, ob.mu, 2 * oa.numel * sizeof(real))) {
        harness_failf("train_resume", "a resumed run differs from an uninterrupted one");
        goto out;
    }
    // a state file without the moments of the parameters is refused, naming the tensor
    st_writer_free(&w);
    st_writer_init(&w);
    if (st_writer_add(&w, "step", &a.p[0].t, ST_F64) || st_writer_save(&w, bad)) { harness_failf("train_resume", "%s", mv_error()); goto out; }
    if (train_load_state(bad, &b, &ob, &tc) == MV_OK || !strstr(mv_error(), "mu.")) {
        harness_failf("train_resume", "a state without moments was accepted or not named: %s", mv_error());
        goto out;
    }
    fail = 0;
out:
    remove(pp); remove(sp); remove(bad);
    st_writer_free(&w);
    adam_free(&oa); adam_free(&ob);
    free_params(&a); free_params(&b);
    return fail;
}

int test_train_resume(void) { return train_resume_once(0) | train_resume_once(1); }

// Unit test: the gradient tables of a subset (train_grads_alloc's, temporal only). One backward
// into the full table, a subset that lends the frozen blocks buffers, and a subset that gives
// them NULL (their weight products skipped): every kept gradient and the sample's gradient are
// the full table's bit for bit, the lent squared norms are the full gradients' (summed as
// adamw_update sums), and the lent buffers are all returned.
int test_grad_subset(void) {
    UNetConfig c;
    TrainConfig tc;
    AdamState opt;
    ParamTable pt, full, lend, skip;
    unsigned char *keep = NULL;
    Tensor x, t, ctx, dout, dx[3];
    UNetTape *tp;
    ParamTable *tabs[3];
    size_t k, i, kept = 0, frozen = 0;
    int m, fail = 1;
    memset(dx, 0, sizeof dx);
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&ctx, 0, sizeof ctx); memset(&dout, 0, sizeof dout);
    params_init(&full); params_init(&lend); params_init(&skip);
    train_config_default(&tc); // temporal only
    if (tiny_model(&pt, &c, &opt, &tc)) { harness_failf("grad_subset", "setup: %s", mv_error()); return 1; }
    if (!(keep = (unsigned char *)calloc(pt.count, 1))) goto out;
    for (k = 0; k < pt.count; k++) keep[k] = (unsigned char)train_is_trainable(&tc, pt.p[k].name);
    if (unet_grads_alloc(&full, &pt) || train_grads_alloc(&lend, &pt, &tc) || params_grads_subset(&skip, &pt, keep, 0) ||
        tensor_alloc_v(&x, 5, (size_t)1, (size_t)9, (size_t)2, (size_t)4, (size_t)4) || tensor_alloc_v(&t, 1, (size_t)1) ||
        tensor_alloc_v(&dout, 5, (size_t)1, (size_t)4, (size_t)2, (size_t)4, (size_t)4) ||
        tensor_alloc_v(&ctx, 3, (size_t)1, (size_t)3, (size_t)8)) {
        harness_failf("grad_subset", "setup: %s", mv_error());
        goto out;
    }
    proc_fill(x.data, x.numel, 1, "x_in", 1.0, 0.0);
    proc_fill(dout.data, dout.numel, 1, "dout", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 1, "ctx", 1.0, 0.0);
    t.data[0] = 250;
    tabs[0] = &full; tabs[1] = &lend; tabs[2] = &skip;
    for (m = 0; m < 3; m++) {
        Tensor y;
        if (unet_tape_forward_mode(&tp, &y, &x, &t, &ctx, &pt, &c, m == 1)) { harness_failf("grad_subset", "%s", mv_error()); goto out; }
        tensor_free(&y);
        if (unet_tape_backward(tp, tabs[m], &dx[m], &dout)) { unet_tape_free(tp); harness_failf("grad_subset", "%s", mv_error()); goto out; }
        unet_tape_free(tp);
    }
    if (memcmp(dx[0].data, dx[1].data, dx[0].numel * sizeof(real)) || memcmp(dx[0].data, dx[2].data, dx[0].numel * sizeof(real))) {
        harness_failf("grad_subset", "the sample's gradient depends on the gradient table");
        goto out;
    }
    for (k = 0; k < pt.count; k++) {
        const Param *p = &pt.p[k];
        const real *g = full.arena + p->offset;
        if (keep[k]) {
            kept++;
            if (!lend.slot[k] || !skip.slot[k] || memcmp(g, lend.slot[k], p->t.numel * sizeof(real)) ||
                memcmp(g, skip.slot[k], p->t.numel * sizeof(real))) {
                harness_failf("grad_subset", "%s: the kept gradient differs from the full table's", p->name);
                goto out;
            }
        } else {
            double s = 0.0;
            frozen++;
            for (i = 0; i < p->t.numel; i++) s += (double)g[i] * (double)g[i];
            if (lend.slot[k] || skip.slot[k] || lend.sq[k] != s || s == 0.0) {
                harness_failf("grad_subset", "%s: lent norm %.17g, full %.17g (or a buffer not returned)", p->name, lend.sq[k], s);
                goto out;
            }
        }
    }
    if (kept == 0 || frozen == 0) { harness_failf("grad_subset", "the tiny model must have both kinds of tensor"); goto out; }
    fail = 0;
out:
    free(keep);
    for (m = 0; m < 3; m++) tensor_free(&dx[m]);
    tensor_free(&x); tensor_free(&t); tensor_free(&ctx); tensor_free(&dout);
    adam_free(&opt);
    free_params(&full); free_params(&lend); free_params(&skip); free_params(&pt);
    return fail;
}
