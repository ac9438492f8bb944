// ops_sched.c: corpus runners for the schedulers (diffusers Flax), the noise generator
// (tools/noisegen.py), and the pixel rules of the pipeline (jax).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/image.h"
#include "../ref/noise.h"
#include "../ref/scheduler.h"

// An exact comparison of integers, counted as one check of the case.
static int check_i64(Case *c, const char *what, const int64_t *got, const int64_t *exp, size_t n) {
    size_t i;
    c->checks++;
    for (i = 0; i < n; i++)
        if (got[i] != exp[i]) {
            harness_failf(c->name, "%s[%lu]: got %ld, expected %ld", what, (unsigned long)i, (long)got[i], (long)exp[i]);
            c->failed++;
            return 1;
        }
    printf("  ok %s %s: %lu values equal\n", c->name, what, (unsigned long)n);
    return 0;
}

// SD 1.x's schedule, or the case's own (meta beta_start, beta_end and prediction_type, as a
// toy model's scheduler_config.json sets them: SPEC.md section 10.5).
static int case_sched_config(Case *c, SchedConfig *cfg) {
    const char *pred;
    sched_config_sd(cfg);
    if (!case_meta_opt(c, "beta_end")) return 0;
    if (case_meta_double(c, "beta_start", &cfg->beta_start) || case_meta_double(c, "beta_end", &cfg->beta_end) ||
        !(pred = case_meta_str(c, "prediction_type")))
        return 1;
    cfg->v_prediction = !strcmp(pred, "v_prediction");
    return 0;
}

int run_sched_schedule(Case *c) {
    static const char *names[] = {"betas", "alphas_cumprod", "alpha_t", "sigma_t", "lambda_t"};
    SchedConfig cfg;
    Scheduler s;
    size_t k;
    int rc = 0;
    if (case_sched_config(c, &cfg)) return 1;
    if (sched_init(&s, SCHED_DPM, &cfg, 0, 0)) return case_error(c, "sched_init");
    for (k = 0; k < 5; k++) {
        Tensor v;
        if (!st_find(&c->vec, names[k])) continue;
        memset(&v, 0, sizeof v);
        v.ndim = 1;
        v.shape[0] = v.numel = (size_t)s.T;
        v.data = k == 0 ? s.betas : k == 1 ? s.alphas_cumprod : k == 2 ? s.alpha_t : k == 3 ? s.sigma_t : s.lambda_t;
        rc |= case_check(c, names[k], &v);
    }
    sched_free(&s);
    return rc;
}

int run_sched_step(Case *c) {
    const char *kind = case_meta_str(c, "kind");
    long steps, stride;
    Bag b = {0};
    Tensor *x, *eps, *got;
    const StEntry *e;
    int64_t *ts = NULL;
    size_t nts, numel;
    SchedConfig cfg;
    Scheduler s;
    int i, rc = 1;
    memset(&s, 0, sizeof s);
    if (!kind || case_meta_long(c, "steps", &steps) || case_meta_long(c, "stride", &stride)) return 1;
    if (stride < 1 || steps < 1) { harness_failf(c->name, "bad steps/stride"); return 1; }
    if (!(x = bag_input(c, &b, "x")) || !(eps = bag_input(c, &b, "eps"))) goto out;
    numel = x->numel;
    e = st_find(&c->vec, "latents");
    if (eps->numel != (size_t)steps * numel || !e) {
        harness_failf(c->name, "eps must hold %ld latents, and 'latents' must exist", steps);
        goto out;
    }
    if (case_sched_config(c, &cfg)) goto out;
    if (sched_init(&s, strcmp(kind, "ddim") == 0 ? SCHED_DDIM : SCHED_DPM, &cfg, (int)steps, numel)) {
        case_error(c, "sched_init");
        goto out;
    }
    if (st_read_i64(&c->vec, "timesteps", &ts, &nts)) { case_error(c, "timesteps"); goto out; }
    if (nts != (size_t)steps) { harness_failf(c->name, "%lu timesteps, expected %ld", (unsigned long)nts, steps); goto out; }
    rc = check_i64(c, "timesteps", s.timesteps, ts, nts);
    if (!(got = bag_alloc(c, &b, e->ndim, e->shape))) { rc = 1; goto out; }
    if (got->numel != (size_t)(steps / stride) * numel) { harness_failf(c->name, "latents shape"); rc = 1; goto out; }
    for (i = 0; i < steps; i++) {
        if (sched_step(&s, x->data, eps->data + (size_t)i * numel, x->data, i)) { case_error(c, "step"); rc = 1; goto out; }
        if ((i + 1) % stride == 0) memcpy(got->data + (size_t)((i + 1) / stride - 1) * numel, x->data, numel * sizeof(real));
    }
    rc |= case_check(c, "latents", got);
out:
    free(ts);
    sched_free(&s);
    bag_free(&b);
    return rc;
}

int run_sched_add_noise(Case *c) {
    Bag b = {0};
    Tensor *x0, *noise, *y;
    int64_t *t = NULL;
    size_t nt;
    SchedConfig cfg;
    Scheduler s;
    int rc = 1;
    memset(&s, 0, sizeof s);
    if (!(x0 = bag_input(c, &b, "x0")) || !(noise = bag_input(c, &b, "noise"))) goto out;
    if (st_read_i64(&c->vec, "t", &t, &nt)) { case_error(c, "t"); goto out; }
    if (nt != x0->shape[0] || !tensor_same_shape(x0, noise)) { harness_failf(c->name, "shapes"); goto out; }
    if (case_sched_config(c, &cfg)) goto out;
    if (sched_init(&s, SCHED_DDIM, &cfg, 0, 0)) { case_error(c, "sched_init"); goto out; }
    if (!(y = bag_alloc_like(c, &b, x0))) goto out;
    if (sched_add_noise(y->data, x0->data, noise->data, t, nt, x0->numel / nt, &s)) case_error(c, "add_noise");
    else rc = case_check(c, "noisy", y);
    if (rc == 0 && st_find(&c->vec, "velocity")) { // v_prediction's training target
        if (sched_velocity(y->data, x0->data, noise->data, t, nt, x0->numel / nt, &s)) rc = case_error(c, "velocity");
        else rc = case_check(c, "velocity", y);
    }
out:
    free(t);
    sched_free(&s);
    bag_free(&b);
    return rc;
}

int run_noise_normal(Case *c) {
    const char *seed_s = case_meta_str(c, "noise_seed"), *stream = case_meta_str(c, "stream");
    long n;
    Bag b = {0};
    Tensor *expected, *got;
    size_t i, diff = 0, shape[1];
    int rc = 1;
    if (!seed_s || !stream || case_meta_long(c, "n", &n) || n < 1) return 1;
    shape[0] = (size_t)n;
    if (!(expected = bag_input(c, &b, "z")) || !(got = bag_alloc(c, &b, 1, shape))) goto out;
    noise_normal(got->data, (size_t)n, (uint64_t)strtoull(seed_s, NULL, 10), stream);
    rc = case_check(c, "z", got);
    // the generator is defined bit for bit: every value must be identical
    for (i = 0; rc == 0 && i < got->numel && i < expected->numel; i++) diff += got->data[i] != expected->data[i];
    c->checks++;
    if (diff) { harness_failf(c->name, "%lu values differ in their bits", (unsigned long)diff); c->failed++; rc = 1; }
out:
    bag_free(&b);
    return rc;
}

int run_image_quantize(Case *c) {
    Bag b = {0};
    Tensor *x, *q;
    unsigned char *bytes = NULL;
    size_t i;
    int rc = 1;
    if (!(x = bag_input(c, &b, "x")) || !(q = bag_alloc_like(c, &b, x))) goto out;
    if (!(bytes = (unsigned char *)malloc(x->numel ? x->numel : 1))) { case_error(c, "alloc"); goto out; }
    image_quantize(bytes, x->data, x->numel);
    for (i = 0; i < x->numel; i++) q->data[i] = (real)bytes[i];
    rc = case_check(c, "q", q);
out:
    free(bytes);
    bag_free(&b);
    return rc;
}

int run_image_resize_nearest(Case *c) {
    Bag b = {0};
    Tensor *x, *y;
    const StEntry *e = st_find(&c->vec, "y");
    int rc = 1;
    if (!e || e->ndim != 3) { harness_failf(c->name, "'y' must be (N,h,w)"); return 1; }
    if (!(x = bag_input(c, &b, "x"))) goto out;
    if (x->ndim != 3 || x->shape[0] != e->shape[0]) { harness_failf(c->name, "'x' must be (N,H,W)"); goto out; }
    if (!(y = bag_alloc(c, &b, 3, e->shape))) goto out;
    image_resize_nearest(y->data, x->data, x->shape[0], x->shape[1], x->shape[2], e->shape[1], e->shape[2]);
    rc = case_check(c, "y", y);
out:
    bag_free(&b);
    return rc;
}
