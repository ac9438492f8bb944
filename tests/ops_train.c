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
// the procedural rule (meta `params` must list as many tensors).
static int load_model(Case *c, UNetConfig *cfg, ParamTable *pt) {
    const char *json = case_meta_str(c, "config"), *list = case_meta_str(c, "params"), *p;
    long seed;
    size_t count = 1;
    if (!json || !list || case_meta_long(c, "weights_seed", &seed)) return MV_ERR;
    unet_config_default(cfg);
    if (unet_config_parse(cfg, json, strlen(json), "meta config")) return case_error(c, "config");
    cfg->temporal = 1;
    params_init(pt);
    if (unet_declare_params(pt, cfg)) { free_params(pt); return case_error(c, "declare"); }
    for (p = list; *p; p++) count += *p == ',';
    if (count != pt->count) {
        harness_failf(c->name, "mavref declares %lu parameters, the Flax model has %lu", (unsigned long)pt->count, (unsigned long)count);
        c->failed++;
        free_params(pt);
        return MV_ERR;
    }
    if (params_alloc(pt) || params_procedural(pt, (uint64_t)seed)) { free_params(pt); return case_error(c, "procedural parameters"); }
    return MV_OK;
}

// 1 if `name` is an element of the comma-separated `list`.
static int in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    while (*list) {
        size_t m = strcspn(list, ",");
        if (m == n && !strncmp(list, name, n)) return 1;
        list += m + (list[m] == ',');
    }
    return 0;
}

// The index of the j-th sampled element of tensor `name` of n values (cases_train.py
// sample_indices): a splitmix64 stream keyed by the name, as the procedural generator's.
static size_t sample_index(const char *name, uint64_t seed, size_t j, size_t n) {
    uint64_t key = proc_splitmix64(seed ^ proc_fnv1a64(name));
    return (size_t)(proc_splitmix64(key + (uint64_t)j) % (uint64_t)n);
}

// Check per-tensor summaries of `vals` (an arena of pt's layout) against <prefix>norm and
// <prefix>dot (in the order of meta `params`, the Flax tree's), and the full tensors of meta
// `full` against <prefix>.NAME when `full` is set. Tensors in meta `zero_grads` (zero in exact
// arithmetic; cases_train.py ZERO_REL) must be below min(ZERO_REL, tol) times the global norm.
// When meta `samples` is present (the unet_grad cases), also each tensor's max|g| against
// <prefix>max and `samples` elements at sample_index against <prefix>sample (count, samples),
// both relative to the expected max|g|: element-wise checks of every tensor.
#define ZERO_REL 1e-6
int check_summary(Case *c, const ParamTable *pt, const real *vals, const char *prefix, int full) {
    Tensor en, ed, em, es, view;
    char name[600], pname[512];
    long dseed, nsamp = 0, sseed = 0;
    size_t k, i, worst_n = 0, worst_d = 0, worst_z = 0, nzero = 0;
    double err_n = 0.0, err_d = 0.0, err_z = 0.0, err_m = 0.0, err_s = 0.0, total = 0.0, zlim;
    real *u = NULL;
    int rc = 0;
    const char *list, *order, *zeros;
    const Param *worst[5] = {NULL, NULL, NULL, NULL, NULL};
    memset(&em, 0, sizeof em); memset(&es, 0, sizeof es);
    if (case_meta_long(c, "dir_seed", &dseed) || !(list = case_meta_str(c, "full")) || !(order = case_meta_str(c, "params")) ||
        !(zeros = case_meta_str(c, "zero_grads")))
        return 1;
    if (st_meta(&c->vec, "samples") && (case_meta_long(c, "samples", &nsamp) || case_meta_long(c, "sample_seed", &sseed)))
        return 1;
    snprintf(name, sizeof name, "%snorm", prefix);
    if (case_read(c, name, &en)) return 1;
    snprintf(name, sizeof name, "%sdot", prefix);
    if (case_read(c, name, &ed)) { tensor_free(&en); return 1; }
    if (en.numel != pt->count || ed.numel != pt->count) {
        harness_failf(c->name, "%s summaries hold %lu values for %lu tensors", prefix, (unsigned long)en.numel, (unsigned long)pt->count);
        c->failed++;
        rc = 1;
        goto done;
    }
    if (nsamp > 0) {
        snprintf(name, sizeof name, "%smax", prefix);
        if (case_read(c, name, &em)) { rc = 1; goto done; }
        snprintf(name, sizeof name, "%ssample", prefix);
        if (case_read(c, name, &es)) { rc = 1; goto done; }
        if (em.numel != pt->count || es.numel != pt->count * (size_t)nsamp) {
            harness_failf(c->name, "%s{max,sample} hold %lu and %lu values for %lu tensors", prefix, (unsigned long)em.numel,
                          (unsigned long)es.numel, (unsigned long)pt->count);
            c->failed++;
            rc = 1;
            goto done;
        }
    }
    for (k = 0; k < en.numel; k++) total += (double)en.data[k] * (double)en.data[k];
    total = sqrt(total);
    zlim = (ZERO_REL < c->tol ? ZERO_REL : c->tol) * total;
    for (k = 0; *order; k++) {
        size_t m = strcspn(order, ",");
        const Param *p;
        const real *v;
        double n2 = 0.0, dot = 0.0, un = 0.0, mx = 0.0, e, den;
        if (m >= sizeof pname || k >= en.numel) { rc = case_error(c, "meta params"); goto done; }
        memcpy(pname, order, m);
        pname[m] = '\0';
        order += m + (order[m] == ',');
        for (i = 0, p = NULL; i < pt->count && !p; i++)
            if (!strcmp(pt->p[i].name, pname)) p = &pt->p[i];
        if (!p) { mv_fail("the model has no parameter '%s'", pname); rc = case_error(c, "meta params"); goto done; }
        v = vals + p->offset;
        free(u);
        if (!(u = (real *)malloc((p->t.numel ? p->t.numel : 1) * sizeof(real)))) { rc = case_error(c, "direction"); goto done; }
        proc_fill(u, p->t.numel, (uint64_t)dseed, p->name, 1.0, 0.0);
        for (i = 0; i < p->t.numel; i++) {
            n2 += (double)v[i] * (double)v[i];
            dot += (double)v[i] * (double)u[i];
            un += (double)u[i] * (double)u[i];
            if (fabs((double)v[i]) > mx) mx = fabs((double)v[i]);
        }
        if (in_list(zeros, pname)) { // zero in exact arithmetic: the size of the noise only
            nzero++;
            e = sqrt(n2) / zlim;
            if (e > err_z || e != e) { err_z = e; worst_z = k; worst[2] = p; }
            continue;
        }
        den = (double)en.data[k] > 0 ? (double)en.data[k] : 1.0;
        e = fabs(sqrt(n2) - (double)en.data[k]) / den;
        if (e > err_n || e != e) { err_n = e; worst_n = k; worst[0] = p; }
        e = fabs(dot - (double)ed.data[k]) / (den * sqrt(un));
        if (e > err_d || e != e) { err_d = e; worst_d = k; worst[1] = p; }
        if (nsamp > 0) { // max|g| and the sampled elements, relative to the expected max|g|
            long j;
            den = (double)em.data[k] > 0 ? (double)em.data[k] : 1.0;
            e = fabs(mx - (double)em.data[k]) / den;
            if (e > err_m || e != e) { err_m = e; worst[3] = p; }
            for (j = 0; j < nsamp && p->t.numel; j++) {
                size_t idx = sample_index(p->name, (uint64_t)sseed, (size_t)j, p->t.numel);
                e = fabs((double)v[idx] - (double)es.data[k * (size_t)nsamp + (size_t)j]) / den;
                if (e > err_s || e != e) { err_s = e; worst[4] = p; }
            }
        }
    }
    (void)worst_n; (void)worst_d; (void)worst_z;
    c->checks++;
    if (k != en.numel || !(err_n <= c->tol) || !(err_d <= c->tol) || !(err_z <= 1.0)) {
        harness_failf(c->name, "%s per-tensor summaries of %lu tensors: norm rel %.3e (%s), dot rel %.3e (%s), %lu zero "
                      "gradients at %.3e of the bound (%s) (tol %.1e)", prefix, (unsigned long)k, err_n,
                      worst[0] ? worst[0]->name : "-", err_d, worst[1] ? worst[1]->name : "-", (unsigned long)nzero, err_z,
                      worst[2] ? worst[2]->name : "-", c->tol);
        c->failed++;
        rc = 1;
    } else {
        printf("  ok %s %s{norm,dot} of %lu tensors: norm rel %.3e (%s), dot rel %.3e (%s); %lu zero gradients at %.2e of "
               "the bound %.2e\n", c->name, prefix, (unsigned long)k, err_n, worst[0] ? worst[0]->name : "-", err_d,
               worst[1] ? worst[1]->name : "-", (unsigned long)nzero, err_z, zlim);
    }
    if (nsamp > 0) {
        c->checks++;
        if (!(err_m <= c->tol) || !(err_s <= c->tol)) {
            harness_failf(c->name, "%s{max,sample} of %lu tensors: max rel %.3e (%s), %ld samples each rel %.3e (%s) (tol %.1e)",
                          prefix, (unsigned long)(k - nzero), err_m, worst[3] ? worst[3]->name : "-", nsamp, err_s,
                          worst[4] ? worst[4]->name : "-", c->tol);
            c->failed++;
            rc = 1;
        } else {
            printf("  ok %s %s{max,sample} of %lu tensors: max rel %.3e (%s), %ld samples each rel %.3e (%s)\n", c->name,
                   prefix, (unsigned long)(k - nzero), err_m, worst[3] ? worst[3]->name : "-", nsamp, err_s,
                   worst[4] ? worst[4]->name : "-");
        }
    }
    while (full && *list) {
        size_t n = strcspn(list, ",");
        Tensor *t;
        if (n >= sizeof pname) { rc = 1; break; }
        memcpy(pname, list, n);
        pname[n] = '\0';
        list += n + (list[n] == ',');
        if (!(t = params_get((ParamTable *)pt, pname))) { rc = case_error(c, pname); break; }
        view = *t;
        view.owned = 0;
        view.data = (real *)vals + (t->data - pt->arena);
        snprintf(name, sizeof name, "%s.%s", prefix, pname);
        rc |= case_check(c, name, &view);
    }
done:
    free(u);
    tensor_free(&en); tensor_free(&ed); tensor_free(&em); tensor_free(&es);
    return rc;
}

int run_unet_grad(Case *c) {
    UNetConfig cfg;
    ParamTable pt, gt;
    Tensor sample, t, ctx, w, out, dx, ref;
    int rc = 1;
    if (load_model(c, &cfg, &pt)) return 1;
    if (unet_grads_alloc(&gt, &pt)) { free_params(&pt); return case_error(c, "gradient table"); }
    memset(&sample, 0, sizeof sample); memset(&t, 0, sizeof t); memset(&ctx, 0, sizeof ctx); memset(&w, 0, sizeof w);
    if (case_input(c, "sample", &sample) || case_input(c, "timesteps", &t) || case_input(c, "context", &ctx) ||
        case_input(c, "w", &w))
        goto done;
    if (unet_backward(&gt, &dx, &out, &w, &sample, &t, &ctx, &pt, &cfg)) { case_error(c, "unet_backward"); goto done; }
    rc = case_check(c, "out", &out) | case_check(c, "d_sample", &dx);
    // the tape's forward is unet_forward's computation, bit for bit
    if (unet_forward(&ref, &sample, &t, &ctx, &pt, &cfg, NULL, NULL)) rc |= case_error(c, "unet_forward");
    else {
        if (memcmp(ref.data, out.data, out.numel * sizeof(real))) {
            harness_failf(c->name, "unet_tape_forward differs from unet_forward");
            c->failed++;
            rc = 1;
        }
        tensor_free(&ref);
    }
    rc |= check_summary(c, &pt, gt.arena, "g", 1);
    tensor_free(&out); tensor_free(&dx);
done:
    tensor_free(&sample); tensor_free(&t); tensor_free(&ctx); tensor_free(&w);
    free_params(&gt); free_params(&pt);
    return rc;
}

int run_train_step(Case *c) {
    UNetConfig cfg;
    ParamTable pt, gt;
    TrainConfig tc;
    AdamState opt;
    Scheduler sch;
    SchedConfig scfg;
    Tensor clip, ctx, noise, x_in, ts, losses, norms;
    real *p0 = NULL, *delta = NULL;
    long steps, F, wsteps, dsteps, only, k, v;
    double lr, end_lr, wd;
    const char *kind;
    char key[64];
    size_t i, H, W, Fc;
    int rc = 1;
    memset(&clip, 0, sizeof clip); memset(&ctx, 0, sizeof ctx); memset(&noise, 0, sizeof noise);
    memset(&x_in, 0, sizeof x_in); memset(&ts, 0, sizeof ts); memset(&losses, 0, sizeof losses); memset(&norms, 0, sizeof norms);
    memset(&opt, 0, sizeof opt);
    if (case_meta_long(c, "steps", &steps) || case_meta_long(c, "frames", &F) || case_meta_long(c, "warmup_steps", &wsteps) ||
        case_meta_long(c, "decay_steps", &dsteps) || case_meta_long(c, "only_temporal", &only) ||
        case_meta_double(c, "lr", &lr) || case_meta_double(c, "end_lr", &end_lr) || case_meta_double(c, "weight_decay", &wd) ||
        !(kind = case_meta_str(c, "schedule")))
        return 1;
    train_config_default(&tc);
    tc.kind = strcmp(kind, "constant") ? LR_WARMUP_COSINE : LR_CONSTANT;
    tc.lr = lr; tc.end_lr = end_lr; tc.warmup_steps = wsteps; tc.decay_steps = dsteps; tc.weight_decay = wd;
    tc.only_temporal = only != 0;
    if (load_model(c, &cfg, &pt)) return 1;
    sched_config_sd(&scfg);
    if (unet_grads_alloc(&gt, &pt)) { free_params(&pt); return case_error(c, "gradient table"); }
    if (sched_init(&sch, SCHED_DDIM, &scfg, 0, 1)) { free_params(&gt); free_params(&pt); return case_error(c, "scheduler"); }
    if (adam_init(&opt, pt.numel) || !(p0 = (real *)malloc(pt.numel * sizeof(real))) ||
        !(delta = (real *)malloc(pt.numel * sizeof(real)))) { case_error(c, "allocation"); goto done; }
    memcpy(p0, pt.arena, pt.numel * sizeof(real));
    if (case_input(c, "clip", &clip) || case_input(c, "context", &ctx)) goto done;
    if (clip.ndim != 4 || clip.shape[1] != 4) { harness_failf(c->name, "clip must be (Fc,4,h,w)"); c->failed++; goto done; }
    Fc = clip.shape[0]; H = clip.shape[2]; W = clip.shape[3];
    if (tensor_alloc_v(&x_in, 5, (size_t)1, (size_t)9, (size_t)F, H, W) || tensor_alloc_v(&ts, 1, (size_t)1) ||
        tensor_alloc_v(&losses, 1, (size_t)steps) || tensor_alloc_v(&norms, 1, (size_t)steps)) { case_error(c, "allocation"); goto done; }
    rc = 0;
    for (k = 0; k < steps; k++) {
        size_t start;
        int64_t t;
        const real *cp = clip.data;
        double loss, l2;
        snprintf(key, sizeof key, "start_%ld", k);
        if (case_meta_long(c, key, &v)) { rc = 1; break; }
        start = (size_t)v;
        snprintf(key, sizeof key, "t_%ld", k);
        if (case_meta_long(c, key, &v)) { rc = 1; break; }
        t = (int64_t)v;
        snprintf(key, sizeof key, "noise_%ld", k);
        tensor_free(&noise);
        if (case_input(c, key, &noise)) { rc = 1; break; }
        if (train_collate(x_in.data, &cp, &Fc, &start, 1, (size_t)F, H, W, noise.data, &t, &sch)) { rc = case_error(c, "collate"); break; }
        if (k == 0) rc |= case_check(c, "x_in_0", &x_in);
        ts.data[0] = (real)t;
        if (train_step(&pt, &gt, &opt, &tc, &cfg, &x_in, &ts, &noise, &ctx, &loss, &l2, NULL)) { rc = case_error(c, "train_step"); break; }
        losses.data[k] = (real)loss;
        norms.data[k] = (real)l2;
        printf("  step %ld: loss %.10f l2_grads %.10f lr %.3e\n", k, loss, l2, train_lr(&tc, k));
        for (i = 0; i < pt.numel; i++) delta[i] = pt.arena[i] - p0[i];
        snprintf(key, sizeof key, "d%ld", k);
        rc |= check_summary(c, &pt, delta, key, k == steps - 1);
        if (tc.only_temporal) { // frozen parameters: exactly unchanged
            size_t j, bad = 0;
            for (j = 0; j < pt.count; j++)
                if (!train_is_trainable(&tc, pt.p[j].name))
                    for (i = 0; i < pt.p[j].t.numel; i++) bad += delta[pt.p[j].offset + i] != 0;
            c->checks++;
            if (bad) { harness_failf(c->name, "step %ld changed %lu frozen values", k, (unsigned long)bad); c->failed++; rc = 1; }
        }
    }
    if (k == steps) rc |= case_check(c, "loss", &losses) | case_check(c, "l2_grads", &norms);
done:
    tensor_free(&clip); tensor_free(&ctx); tensor_free(&noise); tensor_free(&x_in); tensor_free(&ts);
    tensor_free(&losses); tensor_free(&norms);
    free(p0); free(delta);
    adam_free(&opt);
    sched_free(&sch);
    free_params(&gt); free_params(&pt);
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
    if (unet_grads_alloc(&gt, pt)) return MV_ERR;
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&noise, 0, sizeof noise); memset(&ctx, 0, sizeof ctx);
    if (tensor_alloc_v(&x, 5, (size_t)1, (size_t)9, (size_t)2, (size_t)4, (size_t)4) || tensor_alloc_v(&t, 1, (size_t)1) ||
        tensor_alloc_v(&noise, 5, (size_t)1, (size_t)4, (size_t)2, (size_t)4, (size_t)4) ||
        tensor_alloc_v(&ctx, 3, (size_t)1, (size_t)3, (size_t)8))
        goto done;
    for (k = from; k < to; k++) {
        proc_fill(x.data, x.numel, (uint64_t)k, "x_in", 1.0, 0.0);
        proc_fill(noise.data, noise.numel, (uint64_t)k, "noise", 1.0, 0.0);
        proc_fill(ctx.data, ctx.numel, (uint64_t)k, "ctx", 1.0, 0.0);
        t.data[0] = (real)(100 + 300 * k);
        if (train_step(pt, &gt, opt, tc, c, &x, &t, &noise, &ctx, &loss, &l2, NULL)) goto done;
    }
    rc = MV_OK;
done:
    tensor_free(&x); tensor_free(&t); tensor_free(&noise); tensor_free(&ctx);
    free_params(&gt);
    return rc;
}

static int tiny_model(ParamTable *pt, UNetConfig *c, AdamState *opt) {
    unet_config_default(c);
    c->in_channels = 9; c->out_channels = 4; c->n_blocks = 2; c->block_out_channels[0] = 32; c->block_out_channels[1] = 64;
    c->layers_per_block = 1; c->heads[0] = 2; c->heads[1] = 4; c->cross_attention_dim = 8;
    c->down_cross[0] = 1; c->down_cross[1] = 0; c->up_cross[0] = 0; c->up_cross[1] = 1;
    params_init(pt);
    if (unet_declare_params(pt, c) || params_alloc(pt) || params_procedural(pt, 21)) return MV_ERR;
    return adam_init(opt, pt->numel);
}

#define TR_STR2(x) #x
#define TR_STR(x) TR_STR2(x)
#define MAVREF_PRECISION_STR TR_STR(MAVREF_PRECISION)

int test_train_resume(void) {
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
    tc.only_temporal = 0;
    if (tiny_model(&a, &c, &oa) || tiny_model(&b, &c, &ob)) { harness_failf("train_resume", "setup: %s", mv_error()); goto done; }
    // a: 3 steps; b: 2 steps, saved, reloaded into fresh memory, 1 step
    if (tiny_steps(&a, &oa, &tc, &c, 0, 3) || tiny_steps(&b, &ob, &tc, &c, 0, 2)) { harness_failf("train_resume", "%s", mv_error()); goto done; }
    for (i = 0; i < b.count; i++)
        if (st_writer_add(&w, b.p[i].name, &b.p[i].t, ST_REAL)) { harness_failf("train_resume", "%s", mv_error()); goto done; }
    if (st_writer_save(&w, pp) || train_save_state(sp, &b, &ob, &tc)) { harness_failf("train_resume", "%s", mv_error()); goto done; }
    memset(b.arena, 0, b.numel * sizeof(real));
    memset(ob.mu, 0, 2 * ob.numel * sizeof(real));
    ob.step = 0;
    if (params_load(&b, pp, 0) || train_load_state(sp, &b, &ob, &tc) || tiny_steps(&b, &ob, &tc, &c, 2, 3)) {
        harness_failf("train_resume", "%s", mv_error());
        goto done;
    }
    if (ob.step != 3 || oa.step != 3 || memcmp(a.arena, b.arena, a.numel * sizeof(real)) ||
        memcmp(oa.mu, ob.mu, 2 * oa.numel * sizeof(real))) {
        harness_failf("train_resume", "a resumed run differs from an uninterrupted one");
        goto done;
    }
    // a state file without the moments of the parameters is refused, naming the tensor
    st_writer_free(&w);
    st_writer_init(&w);
    if (st_writer_add(&w, "step", &a.p[0].t, ST_F64) || st_writer_save(&w, bad)) { harness_failf("train_resume", "%s", mv_error()); goto done; }
    if (train_load_state(bad, &b, &ob, &tc) == MV_OK || !strstr(mv_error(), "mu.")) {
        harness_failf("train_resume", "a state without moments was accepted or not named: %s", mv_error());
        goto done;
    }
    fail = 0;
done:
    remove(pp); remove(sp); remove(bad);
    st_writer_free(&w);
    adam_free(&oa); adam_free(&ob);
    free_params(&a); free_params(&b);
    return fail;
}
