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

int run_sched_schedule(Case *c) {
    static const char *names[] = {"betas", "alphas_cumprod", "alpha_t", "sigma_t", "lambda_t"};
    SchedConfig cfg;
    Scheduler s;
    size_t k;
    int rc = 0;
    sched_config_sd(&cfg);
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
    Tensor x, eps, got;
    const StEntry *e;
    int64_t *ts = NULL;
    size_t nts, numel;
    SchedConfig cfg;
    Scheduler s;
    int i, rc = 1;
    if (!kind || case_meta_long(c, "steps", &steps) || case_meta_long(c, "stride", &stride)) return 1;
    if (stride < 1 || steps < 1) { harness_failf(c->name, "bad steps/stride"); return 1; }
    if (case_input(c, "x", &x)) return 1;
    if (case_input(c, "eps", &eps)) { tensor_free(&x); return 1; }
    numel = x.numel;
    e = st_find(&c->vec, "latents");
    if (eps.numel != (size_t)steps * numel || !e) {
        harness_failf(c->name, "eps must hold %ld latents, and 'latents' must exist", steps);
        goto out0;
    }
    sched_config_sd(&cfg);
    if (sched_init(&s, strcmp(kind, "ddim") == 0 ? SCHED_DDIM : SCHED_DPM, &cfg, (int)steps, numel)) {
        case_error(c, "sched_init");
        goto out0;
    }
    if (st_read_i64(&c->vec, "timesteps", &ts, &nts)) { case_error(c, "timesteps"); goto out1; }
    if (nts != (size_t)steps) { harness_failf(c->name, "%lu timesteps, expected %ld", (unsigned long)nts, steps); goto out2; }
    rc = check_i64(c, "timesteps", s.timesteps, ts, nts);
    if (tensor_alloc(&got, e->ndim, e->shape)) { case_error(c, "alloc"); rc = 1; goto out2; }
    if (got.numel != (size_t)(steps / stride) * numel) { harness_failf(c->name, "latents shape"); rc = 1; goto out3; }
    for (i = 0; i < steps; i++) {
        if (sched_step(&s, x.data, eps.data + (size_t)i * numel, x.data, i)) { case_error(c, "step"); rc = 1; goto out3; }
        if ((i + 1) % stride == 0) memcpy(got.data + (size_t)((i + 1) / stride - 1) * numel, x.data, numel * sizeof(real));
    }
    rc |= case_check(c, "latents", &got);
out3:
    tensor_free(&got);
out2:
    free(ts);
out1:
    sched_free(&s);
out0:
    tensor_free(&x);
    tensor_free(&eps);
    return rc;
}

int run_sched_add_noise(Case *c) {
    Tensor x0, noise, y;
    int64_t *t = NULL;
    size_t nt;
    SchedConfig cfg;
    Scheduler s;
    int rc = 1;
    if (case_input(c, "x0", &x0)) return 1;
    if (case_input(c, "noise", &noise)) { tensor_free(&x0); return 1; }
    if (st_read_i64(&c->vec, "t", &t, &nt)) { case_error(c, "t"); goto out0; }
    if (nt != x0.shape[0] || !tensor_same_shape(&x0, &noise)) { harness_failf(c->name, "shapes"); goto out1; }
    sched_config_sd(&cfg);
    if (sched_init(&s, SCHED_DDIM, &cfg, 0, 0)) { case_error(c, "sched_init"); goto out1; }
    if (tensor_alloc(&y, x0.ndim, x0.shape)) { case_error(c, "alloc"); goto out2; }
    if (sched_add_noise(y.data, x0.data, noise.data, t, nt, x0.numel / nt, &s)) case_error(c, "add_noise");
    else rc = case_check(c, "noisy", &y);
    tensor_free(&y);
out2:
    sched_free(&s);
out1:
    free(t);
out0:
    tensor_free(&x0);
    tensor_free(&noise);
    return rc;
}

int run_noise_normal(Case *c) {
    const char *seed_s = case_meta_str(c, "noise_seed"), *stream = case_meta_str(c, "stream");
    long n;
    Tensor exp, got;
    size_t i, diff = 0;
    int rc;
    if (!seed_s || !stream || case_meta_long(c, "n", &n) || n < 1) return 1;
    if (case_read(c, "z", &exp)) return 1;
    if (tensor_alloc_v(&got, 1, (size_t)n)) { tensor_free(&exp); return case_error(c, "alloc"); }
    noise_normal(got.data, (size_t)n, (uint64_t)strtoull(seed_s, NULL, 10), stream);
    rc = case_check(c, "z", &got);
    // the generator is defined bit for bit: every value must be identical
    for (i = 0; rc == 0 && i < got.numel && i < exp.numel; i++) diff += got.data[i] != exp.data[i];
    c->checks++;
    if (diff) { harness_failf(c->name, "%lu values differ in their bits", (unsigned long)diff); c->failed++; rc = 1; }
    tensor_free(&exp);
    tensor_free(&got);
    return rc;
}

int run_image_quantize(Case *c) {
    Tensor x, q;
    unsigned char *b;
    size_t i;
    int rc;
    if (case_input(c, "x", &x)) return 1;
    if (tensor_alloc(&q, x.ndim, x.shape)) { tensor_free(&x); return case_error(c, "alloc"); }
    b = (unsigned char *)malloc(x.numel ? x.numel : 1);
    if (!b) { tensor_free(&x); tensor_free(&q); return case_error(c, "alloc"); }
    image_quantize(b, x.data, x.numel);
    for (i = 0; i < x.numel; i++) q.data[i] = (real)b[i];
    rc = case_check(c, "q", &q);
    free(b);
    tensor_free(&x);
    tensor_free(&q);
    return rc;
}

int run_image_resize_nearest(Case *c) {
    Tensor x, y;
    const StEntry *e = st_find(&c->vec, "y");
    int rc;
    if (!e || e->ndim != 3) { harness_failf(c->name, "'y' must be (N,h,w)"); return 1; }
    if (case_input(c, "x", &x)) return 1;
    if (x.ndim != 3 || x.shape[0] != e->shape[0]) { tensor_free(&x); harness_failf(c->name, "'x' must be (N,H,W)"); return 1; }
    if (tensor_alloc(&y, 3, e->shape)) { tensor_free(&x); return case_error(c, "alloc"); }
    image_resize_nearest(y.data, x.data, x.shape[0], x.shape[1], x.shape[2], e->shape[1], e->shape[2]);
    rc = case_check(c, "y", &y);
    tensor_free(&x);
    tensor_free(&y);
    return rc;
}
