// ckpt_map.c: published checkpoint names and layouts -> mavref's Flax names (see ckpt_map.h).
#include "ckpt_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_CAP 512

static const Param *find_param(const ParamTable *pt, const char *name) {
    size_t i;
    for (i = 0; i < pt->count; i++)
        if (strcmp(pt->p[i].name, name) == 0) return &pt->p[i];
    return NULL;
}

// The parameter `name` names, or, for mavref's UNet, the same conv nested as
// `<prefix>.spatial_conv.<leaf>` (SD 1.5's Flax and PyTorch names have no such level).
static const Param *resolve(const ParamTable *pt, char *name, size_t cap) {
    const Param *p = find_param(pt, name);
    char alt[NAME_CAP];
    const char *dot = strrchr(name, '.');
    if (p || !dot) return p;
    if ((size_t)snprintf(alt, sizeof alt, "%.*s.spatial_conv%s", (int)(dot - name), name, dot) >= sizeof alt) return NULL;
    p = find_param(pt, alt);
    if (p && strlen(alt) < cap) strcpy(name, alt);
    return p;
}

// diffusers' rename_key: "word.N" -> "word_N" where a component of word characters is
// followed by one of digits, scanning left to right (the regex \w+[.]\d+): an index that
// was joined to its word is never itself the word of the next join.
static int all_in(const char *s, size_t n, int digits_only) {
    size_t k;
    if (n == 0) return 0;
    for (k = 0; k < n; k++) {
        char ch = s[k];
        int dig = ch >= '0' && ch <= '9';
        if (digits_only ? !dig : !(dig || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_')) return 0;
    }
    return 1;
}

static void rename_indices(char *out, size_t cap, const char *in) {
    size_t o = 0;
    const char *s = in, *prev = NULL;
    size_t prev_n = 0;
    int prev_joined = 0;
    for (;;) {
        const char *e = strchr(s, '.');
        size_t n = e ? (size_t)(e - s) : strlen(s), k;
        int join = prev && !prev_joined && all_in(prev, prev_n, 0) && all_in(s, n, 1);
        if (prev && o + 1 < cap) out[o++] = join ? '_' : '.';
        for (k = 0; k < n && o + 1 < cap; k++) out[o++] = s[k];
        prev = s;
        prev_n = n;
        prev_joined = join;
        if (!e) break;
        s = e + 1;
    }
    out[o] = '\0';
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// Buffers a PyTorch state dict carries that are no parameters.
static int is_buffer(const char *name) {
    return ends_with(name, "position_ids") || ends_with(name, "num_batches_tracked") || ends_with(name, ".running_mean") ||
           ends_with(name, ".running_var");
}

static void shape_text(char *buf, size_t cap, int ndim, const size_t *shape) {
    size_t o = 0;
    int i;
    o += (size_t)snprintf(buf, cap, "(");
    for (i = 0; i < ndim && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ",%lu" : "%lu", (unsigned long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, ")");
}

static int same_shape(const Param *p, int ndim, const size_t *shape) {
    int i;
    if (p->t.ndim != ndim) return 0;
    for (i = 0; i < ndim; i++)
        if (p->t.shape[i] != shape[i]) return 0;
    return 1;
}

// The Flax shape a layout gives a stored shape.
static void apply_layout(size_t *out, const CkmLayout *l, const size_t *shape) {
    int i;
    for (i = 0; i < l->ndim; i++) out[i] = shape[l->perm[i]];
}

static void set_identity(CkmLayout *l, int ndim) {
    int i;
    l->ndim = ndim;
    for (i = 0; i < ndim; i++) l->perm[i] = i;
    l->identity = 1;
}

static void set_reversed(CkmLayout *l, int ndim) {
    int i;
    l->ndim = ndim;
    for (i = 0; i < ndim; i++) l->perm[i] = ndim - 1 - i;
    l->identity = ndim < 2;
}

static int mismatch(const char *path, const char *stored, const char *flax, int ndim, const size_t *fshape, const Param *p) {
    char a[96], b[96];
    shape_text(a, sizeof a, ndim, fshape);
    shape_text(b, sizeof b, p->t.ndim, p->t.shape);
    return mv_fail("%s: tensor '%s' maps to Flax '%s' with shape %s, but the model's is %s (wrong config?)", path, stored,
                   flax, a, b);
}

int ckm_map(char *flax, size_t cap, CkmLayout *layout, const ParamTable *pt, CkmFamily fam, const char *stored, int ndim,
            const size_t *shape, const char *path) {
    char key[NAME_CAP], base[NAME_CAP - 32], cand[NAME_CAP];
    const char *leaf, *dot;
    const Param *p;
    size_t fshape[MV_MAXDIM], blen;
    int i;
    flax[0] = '\0';
    if (ndim < 0 || ndim > MV_MAXDIM) return mv_fail("%s: tensor '%s' has %d axes", path, stored, ndim);
    if (strlen(stored) >= NAME_CAP) return mv_fail("%s: tensor name of %lu bytes is too long", path, (unsigned long)strlen(stored));
    // 1. A Flax name: '/'-joined (msgpack) or '.'-joined, already in Flax layout.
    for (i = 0; stored[i]; i++) key[i] = stored[i] == '/' ? '.' : stored[i];
    key[i] = '\0';
    p = resolve(pt, key, sizeof key);
    if (p && same_shape(p, ndim, shape)) {
        set_identity(layout, ndim);
        goto found;
    }
    if (is_buffer(stored)) return 0;
    // 2. PyTorch names.
    if (fam == CKM_DIFFUSERS) rename_indices(key, sizeof key, stored);
    else strcpy(key, stored);
    dot = strrchr(key, '.');
    if (!dot) return mv_fail("%s: tensor '%s' is not a parameter name this model has", path, stored);
    leaf = dot + 1;
    blen = (size_t)(dot - key);
    if (blen >= sizeof base) return mv_fail("%s: tensor name '%s' is too long", path, stored);
    memcpy(base, key, blen);
    base[blen] = '\0';
    // The VAE attention in its newer PyTorch spelling (diffusers checks the renamed key exists).
    if (fam == CKM_DIFFUSERS) {
        static const char *const from[4] = {"to_out_0", "to_k", "to_v", "to_q"};
        static const char *const to[4] = {"proj_attn", "key", "value", "query"};
        const char *last = strrchr(base, '.');
        last = last ? last + 1 : base;
        for (i = 0; i < 4; i++)
            if (strcmp(last, from[i]) == 0) {
                snprintf(cand, sizeof cand, "%.*s%s.%s", (int)(last - base), base, to[i], strcmp(leaf, "weight") == 0 ? "kernel" : leaf);
                if (find_param(pt, cand)) {
                    if (strcmp(leaf, "weight") == 0) set_reversed(layout, ndim); // before key (and leaf) change
                    else set_identity(layout, ndim);
                    strcpy(key, cand);
                    goto check;
                }
            }
    }
    // Norm gains: weight/gamma -> scale where the model has a scale.
    snprintf(cand, sizeof cand, "%s.scale", base);
    if ((strcmp(leaf, "weight") == 0 || strcmp(leaf, "gamma") == 0) && find_param(pt, cand)) {
        strcpy(key, cand);
        set_identity(layout, ndim);
        goto check;
    }
    // Embedding tables (CLIP): weight -> embedding, same layout.
    snprintf(cand, sizeof cand, "%s.embedding", base);
    if (fam == CKM_TRANSFORMERS && strcmp(leaf, "weight") == 0 && find_param(pt, cand)) {
        strcpy(key, cand);
        set_identity(layout, ndim);
        goto check;
    }
    if (strcmp(leaf, "weight") == 0) {
        snprintf(key, sizeof key, "%s.kernel", base);
        if (ndim == 4) { // conv (O,I,H,W) -> (H,W,I,O)
            layout->ndim = 4;
            layout->perm[0] = 2; layout->perm[1] = 3; layout->perm[2] = 1; layout->perm[3] = 0;
            layout->identity = 0;
        } else { // Linear (O,I) -> (I,O), Conv1d (O,I,K) -> (K,I,O): all axes reversed
            set_reversed(layout, ndim);
        }
        // A 1x1 conv (C,C,1,1) where the model has a Linear (C,C): the LDM VAE attention.
        p = resolve(pt, key, sizeof key);
        if (p && ndim == 4 && p->t.ndim == 2 && shape[2] == 1 && shape[3] == 1) set_reversed(layout, 2);
        goto check;
    }
    if (strcmp(leaf, "gamma") == 0) snprintf(key, sizeof key, "%s.weight", base);
    else if (strcmp(leaf, "beta") == 0) snprintf(key, sizeof key, "%s.bias", base);
    set_identity(layout, ndim);
check:
    p = resolve(pt, key, sizeof key);
    apply_layout(fshape, layout, shape);
    if (!p) return mv_fail("%s: tensor '%s' (Flax '%s') is not a parameter of this model (wrong checkpoint or config?)", path, stored, key);
    if (!same_shape(p, layout->ndim, fshape)) return mismatch(path, stored, key, layout->ndim, fshape, p);
found:
    if (strlen(p->name) >= cap) return mv_fail("%s: Flax name too long", path);
    strcpy(flax, p->name);
    return 1;
}

// ---------------------------------------------------------------------------------------
// The other direction: mavref's Flax names -> PyTorch names (mavref convert --names torch).

int ckm_torch_name(char *out, size_t cap, CkmLayout *layout, const Param *p, CkmFamily fam, int strip_spatial) {
    // diffusers' ModuleLists and Sequentials: the Flax "word_N" that was PyTorch's "word.N"
    static const char *const lists[] = {"down_blocks", "up_blocks", "resnets", "attentions", "transformer_blocks",
                                        "downsamplers", "upsamplers", "to_out", "net", NULL};
    const char *s = p->name, *leaf = strrchr(p->name, '.');
    size_t o = 0;
    int i;
    leaf = leaf ? leaf + 1 : p->name;
    out[0] = '\0';
    while (*s) {
        const char *e = strchr(s, '.');
        size_t n = e ? (size_t)(e - s) : strlen(s), w = n;
        int k, is_list = 0;
        if (s == leaf) break; // the leaf is renamed below
        if (strip_spatial && n == 12 && !strncmp(s, "spatial_conv", 12)) { s = e ? e + 1 : s + n; continue; }
        while (w > 0 && s[w - 1] >= '0' && s[w - 1] <= '9') w--; // "down_blocks_0": w at the digits
        if (fam == CKM_DIFFUSERS && w > 1 && w < n && s[w - 1] == '_')
            for (k = 0; lists[k] && !is_list; k++) is_list = strlen(lists[k]) == w - 1 && !strncmp(s, lists[k], w - 1);
        if (o + n + 2 >= cap) return mv_fail("parameter name '%s' is too long", p->name);
        memcpy(out + o, s, n);
        if (is_list) out[o + w - 1] = '.';
        o += n;
        out[o++] = '.';
        s = e ? e + 1 : s + n;
    }
    // the leaf: kernel, scale, embedding -> weight (kernels in PyTorch's layout); bias as it is
    if (o + 8 >= cap) return mv_fail("parameter name '%s' is too long", p->name);
    strcpy(out + o, !strcmp(leaf, "kernel") || !strcmp(leaf, "scale") || !strcmp(leaf, "embedding") ? "weight" : leaf);
    layout->ndim = p->t.ndim;
    layout->identity = 1;
    for (i = 0; i < p->t.ndim; i++) layout->perm[i] = i;
    if (!strcmp(leaf, "kernel") && p->t.ndim == 4) { // (H,W,I,O) -> (O,I,H,W)
        layout->perm[0] = 3; layout->perm[1] = 2; layout->perm[2] = 0; layout->perm[3] = 1;
        layout->identity = 0;
    } else if (!strcmp(leaf, "kernel") && p->t.ndim >= 2) { // Linear (I,O) -> (O,I); temporal (3,I,O) -> (O,I,3)
        for (i = 0; i < p->t.ndim; i++) layout->perm[i] = p->t.ndim - 1 - i;
        layout->identity = 0;
    }
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// LDM single-file names -> diffusers names.

// Parse "<digits>." at *s; advance past it.
static int take_index(const char **s, long *v) {
    char *end;
    if (**s < '0' || **s > '9') return 0;
    *v = strtol(*s, &end, 10);
    if (*end != '.') return 0;
    *s = end + 1;
    return 1;
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

// An LDM ResBlock's inner names -> diffusers ResnetBlock2D's.
static int ldm_resnet(char *out, size_t cap, const char *block, const char *rest) {
    static const char *const from[6] = {"in_layers.0.", "in_layers.2.", "out_layers.0.", "out_layers.3.", "emb_layers.1.", "skip_connection."};
    static const char *const to[6] = {"norm1.", "conv1.", "norm2.", "conv2.", "time_emb_proj.", "conv_shortcut."};
    int i;
    for (i = 0; i < 6; i++)
        if (starts(rest, from[i])) return snprintf(out, cap, "%s.%s%s", block, to[i], rest + strlen(from[i])) < (int)cap ? 1 : MV_ERR;
    return MV_ERR;
}

// The VAE's LDM ResnetBlock (nin_shortcut) and AttnBlock (norm, q, k, v, proj_out) inner names.
static int ldm_vae_inner(char *out, size_t cap, const char *block, const char *rest) {
    static const char *const from[5] = {"nin_shortcut.", "norm.", "q.", "k.", "v."};
    static const char *const to[5] = {"conv_shortcut.", "group_norm.", "query.", "key.", "value."};
    int i;
    for (i = 0; i < 5; i++)
        if (starts(rest, from[i])) return snprintf(out, cap, "%s.%s%s", block, to[i], rest + strlen(from[i])) < (int)cap ? 1 : MV_ERR;
    if (starts(rest, "proj_out.")) return snprintf(out, cap, "%s.proj_attn.%s", block, rest + 9) < (int)cap ? 1 : MV_ERR;
    return snprintf(out, cap, "%s.%s", block, rest) < (int)cap ? 1 : MV_ERR;
}

static int ldm_unet(char *out, size_t cap, const char *s, int L, int nb) {
    long i, j;
    const char *r = s;
    char block[128];
    if (starts(s, "time_embed.0.")) return snprintf(out, cap, "time_embedding.linear_1.%s", s + 13) < (int)cap ? 1 : MV_ERR;
    if (starts(s, "time_embed.2.")) return snprintf(out, cap, "time_embedding.linear_2.%s", s + 13) < (int)cap ? 1 : MV_ERR;
    if (starts(s, "input_blocks.0.0.")) return snprintf(out, cap, "conv_in.%s", s + 17) < (int)cap ? 1 : MV_ERR;
    if (starts(s, "out.0.")) return snprintf(out, cap, "conv_norm_out.%s", s + 6) < (int)cap ? 1 : MV_ERR;
    if (starts(s, "out.2.")) return snprintf(out, cap, "conv_out.%s", s + 6) < (int)cap ? 1 : MV_ERR;
    if (starts(s, "input_blocks.")) {
        long b, l;
        r = s + 13;
        if (!take_index(&r, &i) || !take_index(&r, &j) || i < 1) return MV_ERR;
        b = (i - 1) / (L + 1);
        l = (i - 1) % (L + 1);
        if (b >= nb) return MV_ERR;
        if (l == L) { // the downsampler: input_blocks.i.0.op
            if (j != 0 || !starts(r, "op.")) return MV_ERR;
            return snprintf(out, cap, "down_blocks.%ld.downsamplers.0.conv.%s", b, r + 3) < (int)cap ? 1 : MV_ERR;
        }
        if (j == 0) {
            snprintf(block, sizeof block, "down_blocks.%ld.resnets.%ld", b, l);
            return ldm_resnet(out, cap, block, r);
        }
        if (j == 1) return snprintf(out, cap, "down_blocks.%ld.attentions.%ld.%s", b, l, r) < (int)cap ? 1 : MV_ERR;
        return MV_ERR;
    }
    if (starts(s, "middle_block.")) {
        r = s + 13;
        if (!take_index(&r, &i)) return MV_ERR;
        if (i == 0 || i == 2) {
            snprintf(block, sizeof block, "mid_block.resnets.%ld", i / 2);
            return ldm_resnet(out, cap, block, r);
        }
        if (i == 1) return snprintf(out, cap, "mid_block.attentions.0.%s", r) < (int)cap ? 1 : MV_ERR;
        return MV_ERR;
    }
    if (starts(s, "output_blocks.")) {
        long b, l;
        r = s + 14;
        if (!take_index(&r, &i) || !take_index(&r, &j)) return MV_ERR;
        b = i / (L + 1);
        l = i % (L + 1);
        if (b >= nb) return MV_ERR;
        if (j == 0) {
            snprintf(block, sizeof block, "up_blocks.%ld.resnets.%ld", b, l);
            return ldm_resnet(out, cap, block, r);
        }
        // after the resnet: the attention, then (last layer of a block) the upsampler's conv
        if (starts(r, "conv.")) return snprintf(out, cap, "up_blocks.%ld.upsamplers.0.conv.%s", b, r + 5) < (int)cap ? 1 : MV_ERR;
        if (j == 1) return snprintf(out, cap, "up_blocks.%ld.attentions.%ld.%s", b, l, r) < (int)cap ? 1 : MV_ERR;
        return MV_ERR;
    }
    return MV_ERR;
}

static int ldm_vae(char *out, size_t cap, const char *s, int nb) {
    long i, j;
    const char *r;
    char block[128];
    const char *side = starts(s, "encoder.") ? "encoder" : starts(s, "decoder.") ? "decoder" : NULL;
    if (starts(s, "quant_conv.") || starts(s, "post_quant_conv.")) return snprintf(out, cap, "%s", s) < (int)cap ? 1 : MV_ERR;
    if (!side) return MV_ERR;
    r = s + 8;
    if (starts(r, "conv_in.") || starts(r, "conv_out.")) return snprintf(out, cap, "%s", s) < (int)cap ? 1 : MV_ERR;
    if (starts(r, "norm_out.")) return snprintf(out, cap, "%s.conv_norm_out.%s", side, r + 9) < (int)cap ? 1 : MV_ERR;
    if (starts(r, "mid.block_1.") || starts(r, "mid.block_2.")) {
        snprintf(block, sizeof block, "%s.mid_block.resnets.%c", side, r[10] == '1' ? '0' : '1');
        return ldm_vae_inner(out, cap, block, r + 12);
    }
    if (starts(r, "mid.attn_1.")) {
        snprintf(block, sizeof block, "%s.mid_block.attentions.0", side);
        return ldm_vae_inner(out, cap, block, r + 11);
    }
    if (starts(r, "down.") || starts(r, "up.")) {
        int up = r[0] == 'u';
        long b;
        r += up ? 3 : 5;
        if (!take_index(&r, &i) || i >= nb) return MV_ERR;
        b = up ? nb - 1 - i : i; // LDM numbers the decoder's levels from the lowest resolution
        if (starts(r, "block.")) {
            r += 6;
            if (!take_index(&r, &j)) return MV_ERR;
            snprintf(block, sizeof block, "%s.%s_blocks.%ld.resnets.%ld", side, up ? "up" : "down", b, j);
            return ldm_vae_inner(out, cap, block, r);
        }
        if (starts(r, "downsample.conv.") && !up)
            return snprintf(out, cap, "%s.down_blocks.%ld.downsamplers.0.conv.%s", side, b, r + 16) < (int)cap ? 1 : MV_ERR;
        if (starts(r, "upsample.conv.") && up)
            return snprintf(out, cap, "%s.up_blocks.%ld.upsamplers.0.conv.%s", side, b, r + 14) < (int)cap ? 1 : MV_ERR;
    }
    return MV_ERR;
}

int ckm_ldm_name(char *out, size_t cap, char *component, const char *ldm, int L, int nb) {
    int rc;
    *component = 0;
    out[0] = '\0';
    if (starts(ldm, "model.diffusion_model.")) {
        *component = 'u';
        rc = ldm_unet(out, cap, ldm + 22, L, nb);
    } else if (starts(ldm, "first_stage_model.")) {
        *component = 'v';
        rc = ldm_vae(out, cap, ldm + 18, nb);
    } else if (starts(ldm, "cond_stage_model.transformer.")) {
        const char *r = ldm + 29;
        *component = 'c';
        // older checkpoints lack the text_model level CLIPTextModel has
        rc = snprintf(out, cap, "%s%s", starts(r, "text_model.") ? "" : "text_model.", r) < (int)cap ? 1 : MV_ERR;
    } else {
        return 0; // model_ema.*, betas, alphas_cumprod, ...: no component's parameter
    }
    if (rc == MV_ERR) return mv_fail("'%s' is not an LDM name mavref knows", ldm);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Loading.

void ckm_permute(void *dst, const void *src, size_t esize, const CkmLayout *l, const size_t *shape) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    size_t sstride[MV_MAXDIM], dshape[MV_MAXDIM], idx[MV_MAXDIM], n = 1, k, off = 0;
    int i, nd = l->ndim;
    for (i = nd - 1; i >= 0; i--) { sstride[i] = n; n *= shape[i]; }
    for (i = 0; i < nd; i++) { dshape[i] = shape[l->perm[i]]; idx[i] = 0; }
    for (k = 0; k < n; k++) {
        switch (esize) { // fixed sizes, so the copy is one load and one store
        case 2: memcpy(d + 2 * k, s + 2 * off, 2); break;
        case 4: memcpy(d + 4 * k, s + 4 * off, 4); break;
        case 8: memcpy(d + 8 * k, s + 8 * off, 8); break;
        default: memcpy(d + esize * k, s + esize * off, esize); break;
        }
        // advance the Flax index (C order) and the stored offset with it
        for (i = nd - 1; i >= 0; i--) {
            off += sstride[l->perm[i]];
            if (++idx[i] < dshape[i]) break;
            off -= sstride[l->perm[i]] * dshape[i];
            idx[i] = 0;
        }
    }
}

void ckm_plan_free(CkmPlan *plan) {
    free(plan->param);
    free(plan->layout);
    free(plan->source);
    memset(plan, 0, sizeof *plan);
}

int ckm_plan(CkmPlan *plan, const ParamTable *pt, const CkmSource *src, const CkmOptions *opt) {
    size_t i;
    memset(plan, 0, sizeof *plan);
    plan->param = (size_t *)mv_calloc(src->count ? src->count : 1, sizeof(size_t), "checkpoint plan");
    plan->layout = (CkmLayout *)mv_calloc(src->count ? src->count : 1, sizeof(CkmLayout), "checkpoint plan");
    plan->source = (size_t *)mv_calloc(pt->count ? pt->count : 1, sizeof(size_t), "checkpoint plan");
    if (!plan->param || !plan->layout || !plan->source) goto fail;
    for (i = 0; i < pt->count; i++) plan->source[i] = CKM_NONE;
    for (i = 0; i < src->count; i++) {
        const CkmTensor *t = &src->t[i];
        const char *name = t->name;
        char ldm[NAME_CAP], flax[NAME_CAP];
        const Param *p;
        size_t pi;
        int m, nd = t->ndim, ax;
        size_t shape[MV_MAXDIM];
        plan->param[i] = CKM_NONE;
        for (ax = 0; ax < nd && ax < MV_MAXDIM; ax++) shape[ax] = t->shape[ax];
        if (opt->ldm) {
            char comp;
            int r;
            if (starts(name, "state_dict/")) name += 11; // an LDM .ckpt nests its weights there
            // only the wanted component's names are rewritten (the others need other sizes)
            if (!starts(name, opt->ldm == 'u' ? "model.diffusion_model." : opt->ldm == 'v' ? "first_stage_model." : "cond_stage_model.transformer."))
                continue;
            r = ckm_ldm_name(ldm, sizeof ldm, &comp, name, opt->ldm_layers, opt->ldm_blocks);
            if (r < 0) { mv_fail_prefix("%s", src->path); goto fail; }
            if (r == 0 || comp != opt->ldm) continue;
            name = ldm;
        } else if (opt->prefix) {
            if (!starts(name, opt->prefix)) continue;
            name += strlen(opt->prefix);
        }
        m = ckm_map(flax, sizeof flax, &plan->layout[i], pt, opt->family, name, nd, shape, src->path);
        if (m == 0) continue;
        if (m < 0) {
            if (!opt->allow_extra || strstr(mv_error(), "is not a parameter") == NULL) goto fail;
            mv_clear_error();
            continue;
        }
        p = find_param(pt, flax);
        pi = (size_t)(p - pt->p);
        if (plan->source[pi] != CKM_NONE) {
            mv_fail("%s: tensors '%s' and '%s' both map to Flax '%s'", src->path, src->t[plan->source[pi]].name, t->name, flax);
            goto fail;
        }
        plan->param[i] = pi;
        plan->source[pi] = i;
    }
    for (i = 0; i < pt->count; i++)
        if (plan->source[i] == CKM_NONE) {
            mv_fail("%s: no tensor maps to the model's parameter '%s' (missing tensor, or wrong config?)", src->path, pt->p[i].name);
            goto fail;
        }
    return MV_OK;
fail:
    ckm_plan_free(plan);
    return MV_ERR;
}

int ckm_load(ParamTable *pt, const CkmSource *src, const CkmOptions *opt) {
    CkmPlan plan;
    real *scratch = NULL;
    size_t scratch_n = 0, i;
    int rc = MV_ERR;
    if (ckm_plan(&plan, pt, src, opt)) return MV_ERR;
    // a table only declared is allocated now that the file is known to fit it: a wrong
    // checkpoint is refused before gigabytes are allocated for it
    if (!pt->arena && params_alloc(pt)) goto done;
    for (i = 0; i < src->count; i++) { // in the file's order: one pass over it
        const CkmTensor *t = &src->t[i];
        const CkmLayout *lay = &plan.layout[i];
        Param *p;
        if (plan.param[i] == CKM_NONE) continue;
        p = &pt->p[plan.param[i]];
        if (lay->identity) {
            if (src->read(src->ctx, i, p->t.data)) goto done;
        } else {
            if (t->numel > scratch_n) {
                free(scratch);
                scratch = (real *)mv_malloc(t->numel * sizeof(real), "checkpoint scratch buffer");
                scratch_n = scratch ? t->numel : 0;
                if (!scratch) goto done;
            }
            if (src->read(src->ctx, i, scratch)) goto done;
            ckm_permute(p->t.data, scratch, sizeof(real), lay, t->shape);
        }
    }
    rc = MV_OK;
done:
    ckm_plan_free(&plan);
    free(scratch);
    return rc;
}

// ---------------------------------------------------------------------------------------
// A checkpoint file as a source.

static int ck_source_read(void *ctx, size_t i, real *dst) {
    CkmFile *s = (CkmFile *)ctx;
    return ck_read_into(&s->f, &s->f.entries[i], dst);
}

int ckm_open(CkmFile *s, const char *path) {
    size_t i;
    memset(s, 0, sizeof *s);
    if (ck_open(&s->f, path)) return MV_ERR;
    s->src.t = (CkmTensor *)mv_calloc(s->f.count ? s->f.count : 1, sizeof(CkmTensor), "tensor list");
    if (!s->src.t) { ck_close(&s->f); return MV_ERR; }
    for (i = 0; i < s->f.count; i++) {
        const CkEntry *e = &s->f.entries[i];
        int k;
        s->src.t[i].name = e->name;
        s->src.t[i].ndim = e->ndim;
        for (k = 0; k < e->ndim; k++) s->src.t[i].shape[k] = e->shape[k];
        s->src.t[i].numel = e->numel;
    }
    s->src.path = s->f.path;
    s->src.count = s->f.count;
    s->src.ctx = s;
    s->src.read = ck_source_read;
    return MV_OK;
}

void ckm_close(CkmFile *s) {
    free(s->src.t);
    ck_close(&s->f);
    memset(s, 0, sizeof *s);
}
