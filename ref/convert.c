// convert.c: `mavref convert` (see convert.h).
#include "convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_map.h"
#include "model_dir.h"

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static void put_le32(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)v; b[1] = (unsigned char)(v >> 8); b[2] = (unsigned char)(v >> 16); b[3] = (unsigned char)(v >> 24);
}

static int is_half(StDtype d) { return d == ST_F16 || d == ST_BF16; }

// The dtype a stored tensor is written as.
static StDtype out_dtype(StDtype stored, int widen) { return widen && is_half(stored) ? ST_F32 : stored; }

// n float16/bfloat16 values (little-endian) as float32 (little-endian): exact, every half value
// is a float.
static void widen_to_f32(unsigned char *dst, const unsigned char *src, size_t n, StDtype d) {
    size_t i;
    for (i = 0; i < n; i++) {
        float v = (float)st_decode(src + 2 * i, d);
        uint32_t u;
        memcpy(&u, &v, 4);
        put_le32(dst + 4 * i, u);
    }
}

// A name of the LDM single file (ckpt_map.h: ckm_ldm_name), possibly under a .ckpt's state_dict.
static int ldm_name(const char *name) {
    if (starts(name, "state_dict/")) name += 11;
    return starts(name, "model.diffusion_model.") || starts(name, "first_stage_model.") || starts(name, "cond_stage_model.");
}

// Which network a (non-LDM) file holds, from its tensor names in any naming: "" if unclear.
static const char *infer_component(const CkFile *f) {
    size_t i;
    int temporal = 0, text = 0, vae = 0, unet = 0;
    for (i = 0; i < f->count; i++) {
        const char *n = f->entries[i].name;
        temporal |= strstr(n, "temporal") != NULL;
        text |= starts(n, "text_model") || strstr(n, "token_embedding") != NULL;
        vae |= strstr(n, "quant_conv") != NULL || starts(n, "decoder");
        unet |= strstr(n, "time_embedding") != NULL;
    }
    if (text + vae + (unet || temporal) != 1) return "";
    return text ? "text_encoder" : vae ? "vae" : temporal ? "unet" : "unet2d";
}

// The file to read and the config.json beside it: a model folder's component, or a file.
static int find_files(const ConvertOptions *o, ConvertResult *r, const char *sub) {
    r->config[0] = '\0';
    if (is_dir(o->in)) {
        if (!o->component)
            return mv_fail("%s is a model folder: say which network to convert with --component unet|unet2d|vae|text_encoder", o->in);
        if (md_weights_path(r->weights, sizeof r->weights, o->in, sub)) return MV_ERR;
        if ((size_t)snprintf(r->config, sizeof r->config, "%s/%s/config.json", o->in, sub) >= sizeof r->config)
            return mv_fail("%s: path too long", o->in);
    } else {
        const char *slash = strrchr(o->in, '/'), *bslash = strrchr(o->in, '\\');
        int dirlen;
        if (bslash && (!slash || bslash > slash)) slash = bslash;
        if ((size_t)snprintf(r->weights, sizeof r->weights, "%s", o->in) >= sizeof r->weights) return mv_fail("%s: path too long", o->in);
        dirlen = slash ? (int)(slash - o->in) : 1;
        if ((size_t)snprintf(r->config, sizeof r->config, "%.*s/config.json", dirlen, slash ? o->in : ".") >= sizeof r->config)
            return mv_fail("%s: path too long", o->in);
    }
    if (o->config) snprintf(r->config, sizeof r->config, "%s", o->config);
    else if (!is_file(r->config)) r->config[0] = '\0'; // a file alone (the single-file checkpoint): the defaults
    return MV_OK;
}

// The parameter table (declared, not allocated: the plan needs only names and shapes) and the
// mapping options of the component.
static int declare_component(ParamTable *pt, CkmOptions *mo, const char *comp, const char *config, int ldm) {
    memset(mo, 0, sizeof *mo);
    mo->family = CKM_DIFFUSERS;
    if (!strcmp(comp, "unet") || !strcmp(comp, "unet2d")) {
        UNetConfig c;
        unet_config_default(&c);
        c.temporal = !strcmp(comp, "unet");
        if (!c.temporal) c.in_channels = 4; // SD 1.5's, when no config says otherwise
        if ((*config && unet_config_load(&c, config)) || unet_declare_params(pt, &c)) return MV_ERR;
        mo->ldm = ldm ? 'u' : 0;
        mo->ldm_layers = c.layers_per_block;
        mo->ldm_blocks = c.n_blocks;
    } else if (!strcmp(comp, "vae")) {
        VAEConfig c;
        vae_config_default(&c);
        if ((*config && vae_config_load(&c, config)) || vae_declare_params(pt, &c)) return MV_ERR;
        mo->ldm = ldm ? 'v' : 0;
        mo->ldm_layers = c.layers_per_block;
        mo->ldm_blocks = c.n_blocks;
    } else {
        ClipConfig c;
        clip_config_default(&c);
        if ((*config && clip_config_load(&c, config)) || clip_declare_params(pt, &c)) return MV_ERR;
        mo->family = CKM_TRANSFORMERS;
        mo->ldm = ldm ? 'c' : 0;
    }
    return MV_OK;
}

// The output's metadata: where it came from.
static int add_meta(StWriter *w, const ConvertResult *r, const ConvertOptions *o) {
    return st_writer_meta(w, "producer", "mavref convert") || st_writer_meta(w, "source", r->weights) ||
           st_writer_meta(w, "source_format", ck_format_name(r->format)) ||
           st_writer_meta(w, "names", o->stored_names ? "stored" : o->torch_names ? "torch" : "flax") ||
           (*r->component && st_writer_meta(w, "component", r->component));
}

// Declared, then streamed: tensor k of the output is stored tensor src[k] of f, through
// layout lay[k] (NULL: as stored).
static int write_stream(const ConvertOptions *o, ConvertResult *r, const CkFile *f, StWriter *w, const size_t *src,
                        const CkmLayout *const *lay, size_t n) {
    StStream s;
    unsigned char *raw = NULL, *perm = NULL, *wide = NULL;
    size_t k, most = 1, most_perm = 1, most_wide = 1;
    int rc = MV_ERR;
    for (k = 0; k < n; k++) { // the largest tensor of each buffer, in bytes (ck_open has checked the sizes)
        const CkEntry *e = &f->entries[src[k]];
        size_t b = e->numel * st_dtype_size(e->dtype);
        if (b > most) most = b;
        if (lay && lay[k] && !lay[k]->identity && b > most_perm) most_perm = b;
        if (out_dtype(e->dtype, o->widen) != e->dtype && 4 * e->numel > most_wide) most_wide = 4 * e->numel;
    }
    raw = (unsigned char *)mv_malloc(most, "convert buffer");
    perm = (unsigned char *)mv_malloc(most_perm, "convert buffer");
    wide = (unsigned char *)mv_malloc(most_wide, "convert buffer");
    if (!raw || !perm || !wide) goto done;
    if (st_stream_begin(&s, w, o->out)) { r->writing = 1; goto done; }
    for (k = 0; k < n; k++) {
        const CkEntry *e = &f->entries[src[k]];
        size_t esz = st_dtype_size(e->dtype);
        unsigned char *b = raw;
        if (ck_read_raw(f, e, raw)) { st_stream_abort(&s); goto done; }
        if (lay && lay[k] && !lay[k]->identity) {
            ckm_permute(perm, raw, esz, lay[k], e->shape);
            b = perm;
        }
        if (out_dtype(e->dtype, o->widen) != e->dtype) {
            widen_to_f32(wide, b, e->numel, e->dtype);
            b = wide;
            esz = 4;
        }
        if (st_stream_put(&s, b, e->numel * esz)) { r->writing = 1; goto done; } // (put aborts on failure)
    }
    if (st_stream_end(&s)) { r->writing = 1; goto done; }
    r->tensors = n;
    rc = MV_OK;
done:
    free(raw);
    free(perm);
    free(wide);
    return rc;
}

// --names stored: every tensor as it is stored.
static int convert_stored(const ConvertOptions *o, ConvertResult *r, const CkFile *f) {
    StWriter w;
    size_t *src = (size_t *)mv_calloc(f->count ? f->count : 1, sizeof(size_t), "tensor list"), k;
    int rc = MV_ERR;
    st_writer_init(&w);
    if (!src) return MV_ERR;
    for (k = 0; k < f->count; k++) {
        const CkEntry *e = &f->entries[k];
        src[k] = k;
        if (st_writer_declare(&w, e->name, out_dtype(e->dtype, o->widen), e->ndim, e->shape)) {
            mv_fail_prefix("%s", f->path); // e.g. two msgpack paths that join to one name
            goto done;
        }
    }
    if (add_meta(&w, r, o)) goto done;
    rc = write_stream(o, r, f, &w, src, NULL, f->count);
done:
    st_writer_free(&w);
    free(src);
    return rc;
}

// --names flax: the component's parameters by Flax name, in the table's order; --names torch:
// the same parameters by their PyTorch names and in PyTorch's layouts.
static int convert_flax(const ConvertOptions *o, ConvertResult *r, CkmFile *cf) {
    const CkFile *f = &cf->f;
    ParamTable pt;
    CkmOptions mo;
    CkmPlan plan;
    StWriter w;
    const CkmLayout **lay = NULL;
    CkmLayout *torch = NULL; // (pt.count) stored -> PyTorch layouts, --names torch
    size_t k;
    int rc = MV_ERR;
    memset(&plan, 0, sizeof plan);
    params_init(&pt);
    st_writer_init(&w);
    for (k = 0; k < f->count && !r->ldm; k++) r->ldm = ldm_name(f->entries[k].name);
    if (!o->component) {
        if (r->ldm) {
            mv_fail("%s is a single-file checkpoint (UNet, VAE and text encoder): say which to convert with --component "
                    "unet|vae|text_encoder", f->path);
            goto done;
        }
        r->component = infer_component(f);
        if (!*r->component) {
            mv_fail("%s: cannot tell from its tensor names which network it holds; give --component unet|unet2d|vae|text_encoder", f->path);
            goto done;
        }
    } else if (!strcmp(o->component, "unet")) {
        // a UNet without temporal layers (SD 1.5, and every single file) is mavref's 2-D UNet
        r->component = r->ldm || !strcmp(infer_component(f), "unet2d") ? "unet2d" : "unet";
    } else {
        r->component = o->component;
    }
    if (declare_component(&pt, &mo, r->component, r->config, r->ldm) || ckm_plan(&plan, &pt, &cf->src, &mo)) goto done;
    lay = (const CkmLayout **)mv_calloc(pt.count ? pt.count : 1, sizeof *lay, "layouts");
    torch = (CkmLayout *)mv_calloc(pt.count ? pt.count : 1, sizeof *torch, "layouts");
    if (!lay || !torch) goto done;
    for (k = 0; k < pt.count; k++) {
        const CkEntry *e = &f->entries[plan.source[k]];
        const Param *p = &pt.p[k];
        lay[k] = &plan.layout[plan.source[k]];
        if (o->torch_names) {
            // stored -> Flax (the plan), then Flax -> PyTorch: PyTorch axis j is Flax axis
            // t.perm[j], which is stored axis lay.perm[t.perm[j]]
            char name[512];
            size_t shape[MV_MAXDIM];
            CkmLayout t;
            int j;
            if (ckm_torch_name(name, sizeof name, &t, p, mo.family, !strcmp(r->component, "unet2d"))) goto done;
            torch[k].ndim = t.ndim;
            torch[k].identity = 1;
            for (j = 0; j < t.ndim; j++) {
                torch[k].perm[j] = lay[k]->perm[t.perm[j]];
                torch[k].identity &= torch[k].perm[j] == j;
                shape[j] = p->t.shape[t.perm[j]];
            }
            lay[k] = &torch[k];
            if (st_writer_declare(&w, name, out_dtype(e->dtype, o->widen), t.ndim, shape)) goto done;
        } else if (st_writer_declare(&w, p->name, out_dtype(e->dtype, o->widen), p->t.ndim, p->t.shape)) {
            goto done;
        }
    }
    r->skipped = f->count - pt.count;
    if (add_meta(&w, r, o)) goto done;
    rc = write_stream(o, r, f, &w, plan.source, lay, pt.count);
done:
    free((void *)lay);
    free(torch);
    ckm_plan_free(&plan);
    st_writer_free(&w);
    free_params(&pt);
    return rc;
}

int convert_checkpoint(const ConvertOptions *o, ConvertResult *r) {
    static const char *const comps[] = {"unet", "unet2d", "vae", "text_encoder", NULL};
    CkmFile cf;
    const char *sub = "unet";
    int k, rc;
    memset(r, 0, sizeof *r);
    r->component = "";
    if (o->component) {
        for (k = 0; comps[k] && strcmp(comps[k], o->component); k++) {}
        if (!comps[k]) return mv_fail("--component must be unet, unet2d, vae or text_encoder, got '%s'", o->component);
        sub = !strcmp(o->component, "unet2d") ? "unet" : o->component;
    }
    if (find_files(o, r, sub) || ckm_open(&cf, r->weights)) return MV_ERR;
    r->format = cf.f.format;
    rc = o->stored_names ? convert_stored(o, r, &cf.f) : convert_flax(o, r, &cf);
    ckm_close(&cf);
    return rc;
}
