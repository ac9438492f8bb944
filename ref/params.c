// params.c: the parameter arena (see params.h).
#include "params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void params_init(ParamTable *pt) { memset(pt, 0, sizeof *pt); }

int params_add(ParamTable *pt, int ndim, const size_t *shape, const char *fmt, ...) {
    char name[512];
    va_list ap;
    Param *p;
    size_t n, i;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (i = 0; i < pt->count; i++)
        if (strcmp(pt->p[i].name, name) == 0) return mv_fail("parameter '%s' declared twice", name);
    if (shape_numel(&n, ndim, shape)) return mv_fail_prefix("parameter '%s'", name);
    if (pt->count == pt->cap) {
        size_t ncap = pt->cap ? 2 * pt->cap : 64;
        Param *np = (Param *)realloc(pt->p, ncap * sizeof(Param));
        if (!np) return mv_fail_oom("out of memory declaring parameters");
        pt->p = np;
        pt->cap = ncap;
    }
    p = &pt->p[pt->count];
    memset(p, 0, sizeof *p);
    p->name = (char *)mv_malloc(strlen(name) + 1, "parameter name");
    if (!p->name) return MV_ERR;
    strcpy(p->name, name);
    p->t.ndim = ndim;
    for (i = 0; i < (size_t)ndim; i++) p->t.shape[i] = shape[i];
    p->t.numel = n;
    p->offset = pt->numel;
    if (mv_add_size(&pt->numel, pt->numel, n)) return mv_fail_prefix("parameter '%s'", name);
    pt->count++;
    return MV_OK;
}

int params_alloc(ParamTable *pt) {
    size_t i;
    pt->arena = (real *)mv_calloc(pt->numel ? pt->numel : 1, sizeof(real), "parameter arena");
    if (!pt->arena) return MV_ERR;
    for (i = 0; i < pt->count; i++) pt->p[i].t.data = pt->arena + pt->p[i].offset;
    return MV_OK;
}

void free_params(ParamTable *pt) {
    size_t i;
    for (i = 0; i < pt->count; i++) free(pt->p[i].name);
    free(pt->p);
    free(pt->arena);
    free(pt->slot);
    free(pt->sq);
    memset(pt, 0, sizeof *pt);
}

int params_grads_subset(ParamTable *g, const ParamTable *pt, const unsigned char *keep, int lend_norms) {
    size_t k, j;
    params_init(g);
    for (k = 0; k < pt->count; k++)
        if (keep[k] && params_add(g, pt->p[k].t.ndim, pt->p[k].t.shape, "%s", pt->p[k].name)) goto fail;
    if (params_alloc(g)) goto fail;
    g->model_count = pt->count;
    if (!(g->slot = (real **)mv_calloc(pt->count ? pt->count : 1, sizeof(real *), "gradient slots"))) goto fail;
    if (lend_norms && !(g->sq = (double *)mv_calloc(pt->count ? pt->count : 1, sizeof(double), "gradient norms"))) goto fail;
    for (k = 0, j = 0; k < pt->count; k++) g->slot[k] = keep[k] ? g->p[j++].t.data : NULL;
    return MV_OK;
fail:
    free_params(g);
    return MV_ERR;
}

size_t params_index_of(const ParamTable *pt, const real *w) {
    // the last parameter whose offset is <= w's (offsets increase in declaration order)
    size_t off = (size_t)(w - pt->arena), lo = 0, hi = pt->count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (pt->p[mid].offset <= off) lo = mid;
        else hi = mid;
    }
    return lo;
}

real *params_grad_slot(const ParamTable *pt, ParamTable *gt, const real *w) {
    size_t k;
    if (!gt || !w) return NULL;
    if (!gt->slot) return gt->arena + (w - pt->arena); // the full table: the same offset
    k = params_index_of(pt, w);
    return gt->slot[k] ? gt->slot[k] + (w - pt->p[k].t.data) : NULL;
}

Tensor *params_get(ParamTable *pt, const char *name) {
    size_t i;
    for (i = 0; i < pt->count; i++)
        if (strcmp(pt->p[i].name, name) == 0) return &pt->p[i].t;
    mv_fail("the model has no parameter '%s'", name);
    return NULL;
}

Tensor *params_getf(ParamTable *pt, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return params_get(pt, name);
}

int params_load(ParamTable *pt, const char *path, int allow_extra) {
    StFile f;
    size_t i;
    if (st_open(&f, path)) return MV_ERR;
    for (i = 0; i < pt->count; i++) {
        if (!st_find(&f, pt->p[i].name)) {
            mv_fail("%s: missing parameter tensor '%s'", path, pt->p[i].name);
            st_close(&f);
            return MV_ERR;
        }
        if (st_read_into(&f, pt->p[i].name, &pt->p[i].t)) { st_close(&f); return MV_ERR; }
    }
    if (!allow_extra)
        for (i = 0; i < f.count; i++) {
            size_t j;
            int found = 0;
            for (j = 0; j < pt->count && !found; j++) found = strcmp(pt->p[j].name, f.entries[i].name) == 0;
            if (!found) {
                mv_fail("%s: tensor '%s' is not a parameter of this model (wrong checkpoint or config?)", path, f.entries[i].name);
                st_close(&f);
                return MV_ERR;
            }
        }
    st_close(&f);
    return MV_OK;
}

#include <math.h>

#include "procedural.h"

int params_proc_rule(const Param *p, double *scale, double *offset) {
    const char *leaf = strrchr(p->name, '.');
    leaf = leaf ? leaf + 1 : p->name;
    if (strcmp(leaf, "kernel") == 0) {
        size_t fan_in = p->t.ndim ? p->t.numel / p->t.shape[p->t.ndim - 1] : 1;
        if (fan_in == 0) return mv_fail("parameter '%s' has an empty fan-in", p->name);
        *scale = sqrt(3.0 / (double)fan_in);
        *offset = 0.0;
    } else if (strcmp(leaf, "bias") == 0) {
        *scale = 0.1;
        *offset = 0.0;
    } else if (strcmp(leaf, "scale") == 0) {
        *scale = 0.1;
        *offset = 1.0;
    } else if (strcmp(leaf, "embedding") == 0) { // CLIP's token and position tables
        *scale = 1.0;
        *offset = 0.0;
    } else {
        return mv_fail("no procedural rule for parameter '%s'", p->name);
    }
    return MV_OK;
}

int params_procedural(ParamTable *pt, uint64_t seed) {
    size_t i;
    for (i = 0; i < pt->count; i++) {
        double scale = 0, offset = 0;
        if (params_proc_rule(&pt->p[i], &scale, &offset)) return MV_ERR;
        proc_fill(pt->p[i].t.data, pt->p[i].t.numel, seed, pt->p[i].name, scale, offset);
    }
    return MV_OK;
}
