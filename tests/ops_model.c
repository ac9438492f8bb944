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
    return MV_OK;
}

// Block dimensions from x: (B,F,H,W,C) video, or (B,H,W,C) 2-D mode viewed as (B,1,H,W,C).
static int block_input(Case *c, Tensor *x, BlockDims *d) {
    if (case_input(c, "x", x)) return MV_ERR;
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
        tensor_free(x);
        return MV_ERR;
    }
    d->B = x->shape[0];
    d->F = x->shape[1];
    d->gn_eps = 1e-5;
    return MV_OK;
}

// Compare got (B,F,H,W,C) with y, which is 4-D in 2-D mode.
static int check_block(Case *c, Tensor *got, const BlockDims *d) {
    if (!d->temporal) {
        got->ndim = 4;
        memmove(got->shape + 1, got->shape + 2, 3 * sizeof(size_t));
    }
    return case_check(c, "y", got);
}

int run_resnet(Case *c) {
    ParamTable pt;
    BlockDims d;
    Tensor x, temb, y;
    int rc = 1;
    if (block_input(c, &x, &d)) return 1;
    if (case_input(c, "temb", &temb)) { tensor_free(&x); return 1; }
    d.Ct = temb.shape[1];
    if (case_params(c, &pt, "blk", NULL) == MV_OK) {
        if (resnet_forward(&y, &x, temb.data, &pt, "blk", &d)) case_error(c, "resnet_forward");
        else { rc = check_block(c, &y, &d); tensor_free(&y); }
    }
    free_params(&pt);
    tensor_free(&x);
    tensor_free(&temb);
    return rc;
}

int run_transformer(Case *c) {
    ParamTable pt;
    BlockDims d;
    Tensor x, ctx, y;
    long heads;
    int rc = 1;
    if (case_meta_long(c, "heads", &heads) || block_input(c, &x, &d)) return 1;
    if (case_input(c, "context", &ctx)) { tensor_free(&x); return 1; }
    if (ctx.ndim != 3) { harness_failf(c->name, "context must be (B,T,Cctx)"); tensor_free(&x); tensor_free(&ctx); return 1; }
    d.Tctx = ctx.shape[1];
    d.Cctx = ctx.shape[2];
    if (case_params(c, &pt, "blk", NULL) == MV_OK) {
        if (transformer_forward(&y, &x, ctx.data, &pt, "blk", (size_t)heads, &d)) case_error(c, "transformer_forward");
        else { rc = check_block(c, &y, &d); tensor_free(&y); }
    }
    free_params(&pt);
    tensor_free(&x);
    tensor_free(&ctx);
    return rc;
}

static int run_sampler(Case *c, int up) {
    static const Conv2dGeom conv3 = {3, 3, 1, 1, 1, 1, 1}, down3 = {3, 3, 2, 1, 1, 1, 1};
    ParamTable pt;
    BlockDims d;
    Tensor x, u, y;
    int rc = 1;
    if (block_input(c, &x, &d)) return 1;
    memset(&u, 0, sizeof u);
    if (case_params(c, &pt, "blk", NULL) == MV_OK) {
        const Tensor *in = &x;
        if (up) { // nearest 2x per frame, then the 3x3 conv
            if (tensor_alloc_v(&u, 5, d.B, d.F, 2 * x.shape[2], 2 * x.shape[3], x.shape[4])) { case_error(c, "alloc"); goto out; }
            upsample_nearest2x_forward(u.data, x.data, d.B * d.F, x.shape[2], x.shape[3], x.shape[4]);
            in = &u;
        }
        if (conv_block_forward(&y, in, &pt, "blk.conv", &d, up ? &conv3 : &down3)) case_error(c, "conv_block_forward");
        else { rc = check_block(c, &y, &d); tensor_free(&y); }
    }
out:
    free_params(&pt);
    tensor_free(&x);
    tensor_free(&u);
    return rc;
}
int run_downsample(Case *c) { return run_sampler(c, 0); }
int run_upsample(Case *c) { return run_sampler(c, 1); }

// ---------------------------------------------------------------------------------------

typedef struct {
    Case *c;
    const char *wanted; // meta `taps`: the names the file holds
    int checked, failed;
} TapCheck;

static int tap_check(void *user, const char *name, const Tensor *t) {
    TapCheck *tc = (TapCheck *)user;
    const char *n = name + 4; // without "tap."
    size_t len = strlen(n);
    const char *p = tc->wanted;
    while (p && *p) { // is n in the comma-separated list?
        size_t k = strcspn(p, ",");
        if (k == len && strncmp(p, n, len) == 0) {
            tc->failed |= case_check(tc->c, name, t);
            tc->checked++;
            break;
        }
        p += k + (p[k] == ',');
    }
    return MV_OK; // keep going: the first failing tap is the interesting one
}

int run_unet(Case *c) {
    UNetConfig cfg;
    ParamTable decl, pt;
    Tensor sample, t, ctx, out;
    TapCheck tc;
    const char *json, *taps;
    long video;
    int rc = 1;
    size_t ntaps = 1;
    const char *p;
    if (!(json = case_meta_str(c, "config")) || !(taps = case_meta_str(c, "taps")) || case_meta_long(c, "video", &video))
        return 1;
    unet_config_default(&cfg);
    if (unet_config_parse(&cfg, json, strlen(json), "meta config")) return case_error(c, "config"), 1;
    cfg.temporal = video != 0;
    params_init(&decl);
    if (unet_declare_params(&decl, &cfg)) { case_error(c, "declare"); free_params(&decl); return 1; }
    pt = decl; // case_params allocates and fills the declared table
    if (case_params(c, &pt, NULL, &decl)) { free_params(&pt); return 1; }
    if (case_input(c, "sample", &sample)) { free_params(&pt); return 1; }
    if (case_input(c, "timesteps", &t) || case_input(c, "context", &ctx)) { tensor_free(&sample); free_params(&pt); return 1; }
    tc.c = c;
    tc.wanted = taps;
    tc.checked = tc.failed = 0;
    if (unet_forward(&out, &sample, &t, &ctx, &pt, &cfg, tap_check, &tc)) case_error(c, "unet_forward");
    else {
        for (p = taps; *p; p++) ntaps += *p == ',';
        rc = case_check(c, "out", &out) | tc.failed;
        if ((size_t)tc.checked != (*taps ? ntaps : 0)) {
            harness_failf(c->name, "the file lists %lu taps, mavref produced %d of them", (unsigned long)ntaps, tc.checked);
            rc = 1;
        }
        tensor_free(&out);
    }
    tensor_free(&sample); tensor_free(&t); tensor_free(&ctx);
    free_params(&pt);
    return rc;
}
