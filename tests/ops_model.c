// ops_model.c: corpus runners for the composite blocks and the whole UNet (vectors from
// tools/mavflax.py, mavref's Flax implementation of upstream's model, SPEC.md section 5.7).
//
// Every parameter of a case is procedural: meta `params` lists the names, `gen.NAME` their
// descriptions. The runner declares them, fills them with mavref's own procedural rule
// (params_procedural) and checks that rule against every description, so the C rule and the
// exporter's rule cannot drift apart silently.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/blocks.h"
#include "../ref/embeddings.h"
#include "../ref/procedural.h"
#include "../ref/unet.h"
#include "../ref/upsample.h"

// Declare the case's parameters (named `prefix` + name, or as listed when prefix is NULL),
// then fill them with the procedural rule and check it against the file's descriptions.
static int case_params(Case *c, ParamTable *pt, const char *prefix, ParamTable *declared) {
    const char *list = case_meta_str(c, "params");
    long seed;
    char name[512], key[600];
    size_t i;
    if (!list || case_meta_long(c, "weights_seed", &seed)) return MV_ERR;
    if (!declared) { // blocks: declare from the descriptions
        const char *p = list;
        params_init(pt);
        while (*p) {
            size_t n = strcspn(p, ","), shape[MV_MAXDIM];
            uint64_t s;
            double scale, offset;
            int ndim;
            const char *desc;
            if (n >= 300) { harness_failf(c->name, "parameter name too long"); c->failed++; return MV_ERR; }
            memcpy(name, p, n);
            name[n] = '\0';
            snprintf(key, sizeof key, "gen.%s", name);
            if (!(desc = case_meta_str(c, key))) return MV_ERR;
            if (proc_parse(desc, &s, &scale, &offset, &ndim, shape)) return case_error(c, key);
            if (params_add(pt, ndim, shape, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", name))
                return case_error(c, "declaring parameters");
            p += n + (p[n] == ',');
        }
    } else { // the whole model: mavref declares its own tree, which must be the file's list
        size_t count = 1;
        const char *p;
        for (p = list; *p; p++) count += *p == ',';
        if (count != declared->count) {
            harness_failf(c->name, "mavref declares %lu parameters, the Flax model has %lu", (unsigned long)declared->count,
                          (unsigned long)count);
            c->failed++;
            return MV_ERR;
        }
    }
    if (params_alloc(pt) || params_procedural(pt, (uint64_t)seed)) return case_error(c, "procedural parameters");
    // Block files name parameters within the block ("norm1.scale"): regenerate under that name.
    for (i = 0; prefix && i < pt->count; i++) {
        double rs, ro;
        if (params_proc_rule(&pt->p[i], &rs, &ro)) return case_error(c, "procedural rule");
        proc_fill(pt->p[i].t.data, pt->p[i].t.numel, (uint64_t)seed, pt->p[i].name + strlen(prefix) + 1, rs, ro);
    }
    for (i = 0; i < pt->count; i++) { // the C rule must give the exporter's descriptions
        const char *nm = pt->p[i].name + (prefix ? strlen(prefix) + 1 : 0), *desc;
        uint64_t s;
        double scale, offset, rs, ro;
        size_t shape[MV_MAXDIM];
        int ndim, d, same;
        snprintf(key, sizeof key, "gen.%s", nm);
        if (!(desc = case_meta_str(c, key))) return MV_ERR;
        if (proc_parse(desc, &s, &scale, &offset, &ndim, shape) || params_proc_rule(&pt->p[i], &rs, &ro))
            return case_error(c, key);
        same = s == (uint64_t)seed && scale == rs && offset == ro && ndim == pt->p[i].t.ndim;
        for (d = 0; same && d < ndim; d++) same = shape[d] == pt->p[i].t.shape[d];
        if (!same) {
            harness_failf(c->name, "parameter '%s': the exporter describes '%s', mavref's rule gives seed %ld scale %.17g offset %.17g",
                          nm, desc, seed, rs, ro);
            c->failed++;
            return MV_ERR;
        }
    }
    for (i = 0; i < pt->count; i++) // MAVREF_PERTURB's deliberate mistakes (run_tests --run-case only)
        case_perturb_param(c, pt->p[i].name + (prefix ? strlen(prefix) + 1 : 0), &pt->p[i].t);
    return MV_OK;
}

// x (B,F,H,W,C) video, or (B,H,W,C) 2-D mode viewed as (B,1,H,W,C), in the bag, and the
// block dimensions from it; NULL (and a FAIL line) on error.
static Tensor *block_input(Case *c, Bag *b, BlockDims *d) {
    Tensor *x = bag_input(c, b, "x");
    if (!x) return NULL;
    memset(d, 0, sizeof *d);
    if (x->ndim == 4) {
        x->ndim = 5;
        memmove(x->shape + 2, x->shape + 1, 3 * sizeof(size_t));
        x->shape[1] = 1;
        d->temporal = 0;
    } else if (x->ndim == 5) {
        d->temporal = 1;
    } else {
        harness_failf(c->name, "x must be (B,F,H,W,C) or (B,H,W,C)");
        c->failed++;
        return NULL;
    }
    d->B = x->shape[0];
    d->F = x->shape[1];
    d->gn_eps = 1e-5;
    return x;
}

// Compare got (B,F,H,W,C) with y, which is 4-D in 2-D mode.
static int check_block(Case *c, Tensor *got, const BlockDims *d) {
    if (!d->temporal) {
        got->ndim = 4;
        memmove(got->shape + 1, got->shape + 2, 3 * sizeof(size_t));
    }
    return case_check(c, "y", got);
}

// What a block runner holds: its inputs (the bag), the block's parameters and its output y.
typedef struct {
    Bag b;
    ParamTable pt;
    BlockDims d;
    Tensor y;
} BlockRun;

// Start a block case: x (returned; NULL on error) and the procedural parameters "blk.*".
static Tensor *block_begin(Case *c, BlockRun *r) {
    Tensor *x;
    memset(r, 0, sizeof *r);
    if (!(x = block_input(c, &r->b, &r->d)) || case_params(c, &r->pt, "blk", NULL)) return NULL;
    return x;
}

// End it: check y when the forward ran (ok), free everything; the runner's result.
static int block_end(Case *c, BlockRun *r, int ok) {
    int rc = ok ? check_block(c, &r->y, &r->d) : 1;
    tensor_free(&r->y);
    free_params(&r->pt);
    bag_free(&r->b);
    return rc;
}

int run_resnet(Case *c) {
    BlockRun r;
    Tensor *x = block_begin(c, &r), *temb;
    int ok = 0;
    if (x && (temb = bag_input(c, &r.b, "temb"))) {
        r.d.Ct = temb->shape[1];
        ok = resnet_forward(&r.y, x, temb->data, &r.pt, "blk", &r.d) == MV_OK;
        if (!ok) case_error(c, "resnet_forward");
    }
    return block_end(c, &r, ok);
}

int run_transformer(Case *c) {
    BlockRun r;
    Tensor *x, *ctx;
    long heads;
    int ok = 0;
    if (case_meta_long(c, "heads", &heads)) return 1;
    x = block_begin(c, &r);
    if (x && (ctx = bag_input(c, &r.b, "context")) && !case_expect_rank(c, ctx, "context (B,T,Cctx)", 3)) {
        r.d.Tctx = ctx->shape[1];
        r.d.Cctx = ctx->shape[2];
        ok = transformer_forward(&r.y, x, ctx->data, &r.pt, "blk", (size_t)heads, &r.d) == MV_OK;
        if (!ok) case_error(c, "transformer_forward");
    }
    return block_end(c, &r, ok);
}

static int run_sampler(Case *c, int up) {
    static const Conv2dGeom conv3 = {3, 3, 1, 1, 1, 1, 1}, down3 = {3, 3, 2, 1, 1, 1, 1};
    BlockRun r;
    Tensor *x = block_begin(c, &r), *in = x;
    size_t shape[5];
    int ok = 0;
    if (x && up) { // nearest 2x per frame, then the 3x3 conv
        shape[0] = r.d.B; shape[1] = r.d.F; shape[2] = 2 * x->shape[2]; shape[3] = 2 * x->shape[3]; shape[4] = x->shape[4];
        if ((in = bag_alloc(c, &r.b, 5, shape)) != NULL)
            upsample_nearest2x_forward(in->data, x->data, r.d.B * r.d.F, x->shape[2], x->shape[3], x->shape[4]);
    }
    if (in) {
        ok = conv_block_forward(&r.y, in, &r.pt, "blk.conv", &r.d, up ? &conv3 : &down3) == MV_OK;
        if (!ok) case_error(c, "conv_block_forward");
    }
    return block_end(c, &r, ok);
}
int run_downsample(Case *c) { return run_sampler(c, 0); }
int run_upsample(Case *c) { return run_sampler(c, 1); }

// ---------------------------------------------------------------------------------------

typedef struct {
    Case *c;
    const char *wanted;        // meta `taps`: the names the file holds
    const Tensor *own_sinusoid; // float32-sinusoid cases: mavref's own, checked as tap.time_proj
    double tol_sinusoid;       // its tolerance (meta tol.tap.time_proj)
    int checked, failed;
} TapCheck;

static int tap_check(void *user, const char *name, const Tensor *t) {
    TapCheck *tc = (TapCheck *)user;
    if (in_list(tc->wanted, name + 4)) { // the name without "tap."
        if (tc->own_sinusoid && !strcmp(name, "tap.time_proj")) { // the network runs from the fed one
            double tol = tc->c->tol;
            tc->c->tol = tc->tol_sinusoid;
            tc->failed |= case_check(tc->c, name, tc->own_sinusoid);
            tc->c->tol = tol;
        } else {
            tc->failed |= case_check(tc->c, name, t);
        }
        tc->checked++;
    }
    return MV_OK; // keep going: the first failing tap is the interesting one
}

// Meta `sinusoid` = float32 (tools/cases_unet_f32sin.py, SPEC.md section 13.4): the case is
// upstream's float64 forward with its float32 sinusoid. mavref computes its own float32-step
// sinusoid (timestep_sinusoid_forward_f32), checks it as tap.time_proj at tol.tap.time_proj,
// and runs the network from the file's input `time_proj` (the Flax model's own sinusoid), so
// everything after it is compared at the case's tolerance. Meta `gelu` = erf: the feed-forward
// with exact-erf GELU (a deliberate variant: MAVREF_PERTURB=unet:meta:gelu=erf).
int run_unet(Case *c) {
    Bag b = {0};
    UNetConfig cfg;
    UNetVariant v;
    ParamTable pt;
    Tensor *sample, *t, *ctx, out, own;
    TapCheck tc;
    const char *json, *taps, *sin_kind, *gelu, *tol_sin;
    long video;
    int rc = 1;
    size_t ntaps = 1;
    const char *p;
    params_init(&pt);
    memset(&out, 0, sizeof out);
    memset(&own, 0, sizeof own);
    memset(&v, 0, sizeof v);
    if (!(json = case_meta_str(c, "config")) || !(taps = case_meta_str(c, "taps")) || case_meta_long(c, "video", &video))
        return 1;
    sin_kind = case_meta_opt(c, "sinusoid");
    gelu = case_meta_opt(c, "gelu");
    if ((sin_kind && strcmp(sin_kind, "float32")) || (gelu && strcmp(gelu, "erf") && strcmp(gelu, "tanh"))) {
        harness_failf(c->name, "metadata sinusoid='%s' gelu='%s': expected float32 / erf or tanh", sin_kind ? sin_kind : "",
                      gelu ? gelu : "");
        c->failed++;
        return 1;
    }
    v.ff_gelu_erf = gelu && !strcmp(gelu, "erf");
    unet_config_default(&cfg);
    if (unet_config_parse(&cfg, json, strlen(json), "meta config")) return case_error(c, "config"), 1;
    cfg.temporal = video != 0;
    // mavref declares its own tree; case_params checks it against the file's list, then fills it
    if (unet_declare_params(&pt, &cfg)) { case_error(c, "declare"); goto out; }
    if (case_params(c, &pt, NULL, &pt)) goto out;
    if (!(sample = bag_input(c, &b, "sample")) || !(t = bag_input(c, &b, "timesteps")) || !(ctx = bag_input(c, &b, "context")))
        goto out;
    tc.c = c;
    tc.wanted = taps;
    tc.own_sinusoid = NULL;
    tc.tol_sinusoid = c->tol;
    tc.checked = tc.failed = 0;
    if (sin_kind) {
        if (tensor_alloc_v(&own, 2, t->numel, (size_t)cfg.block_out_channels[0])) { case_error(c, "sinusoid"); goto out; }
        timestep_sinusoid_forward_f32(own.data, t->data, t->numel, own.shape[1], cfg.flip_sin_to_cos, (double)cfg.freq_shift);
        tc.own_sinusoid = &own;
        if ((tol_sin = case_meta_opt(c, "tol.tap.time_proj")) != NULL) tc.tol_sinusoid = strtod(tol_sin, NULL);
        // the network runs from the file's sinusoid where it gives one, else from mavref's own
        if (st_find(&c->vec, "time_proj") && !(v.sinusoid = bag_input(c, &b, "time_proj"))) goto out;
        if (!v.sinusoid) v.sinusoid = &own;
    }
    if (unet_forward_variant(&out, sample, t, ctx, &pt, &cfg, &v, tap_check, &tc)) { case_error(c, "unet_forward"); goto out; }
    for (p = taps; *p; p++) ntaps += *p == ',';
    rc = case_check(c, "out", &out) | tc.failed;
    if ((size_t)tc.checked != (*taps ? ntaps : 0)) {
        harness_failf(c->name, "the file lists %lu taps, mavref produced %d of them", (unsigned long)ntaps, tc.checked);
        rc = 1;
    }
out:
    tensor_free(&out);
    tensor_free(&own);
    free_params(&pt);
    bag_free(&b);
    return rc;
}
