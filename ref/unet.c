// unet.c: the UNet's configuration and parameter tree.
#include "unet.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void unet_config_default(UNetConfig *c) {
    static const int boc[4] = {320, 640, 1280, 1280};
    int i;
    memset(c, 0, sizeof *c);
    c->in_channels = 9;
    c->out_channels = 4;
    c->n_blocks = 4;
    for (i = 0; i < 4; i++) {
        c->block_out_channels[i] = boc[i];
        c->heads[i] = 8;
        c->down_cross[i] = i < 3;   // CrossAttnDown x3, Down
        c->up_cross[i] = i > 0;     // Up, CrossAttnUp x3
    }
    c->layers_per_block = 2;
    c->cross_attention_dim = 768;
    c->flip_sin_to_cos = 1;
    c->freq_shift = 0;
    c->temporal = 1;
}

static int read_file(const char *path, char **out, size_t *len) {
    FILE *fp = fopen(path, "rb");
    size_t cap = 4096, n = 0;
    char *buf;
    if (!fp) return mv_fail("%s: cannot open for reading", path);
    buf = (char *)mv_malloc(cap, path);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, fp);
        n += k;
        if (n < cap) break;
        if (cap >= (size_t)64 << 20) { free(buf); buf = NULL; mv_fail("%s: larger than 64 MiB, not a config", path); break; }
        cap *= 2;
        {
            char *nb = (char *)realloc(buf, cap);
            if (!nb) { free(buf); buf = NULL; mv_fail("%s: out of memory", path); break; }
            buf = nb;
        }
    }
    fclose(fp);
    if (!buf) return MV_ERR;
    *out = buf;
    *len = n;
    return MV_OK;
}

static int get_int(const JsonValue *root, const char *key, int *out, const char *path) {
    const JsonValue *v = json_get(root, key);
    if (!v) return MV_OK; // keep the default
    if (v->type != JSON_NUMBER || v->number != (double)(int)v->number || v->number < 0 || v->number > 1e6)
        return mv_fail("%s: \"%s\" must be a non-negative integer", path, key);
    *out = (int)v->number;
    return MV_OK;
}

static int get_int_list(const JsonValue *root, const char *key, int *out, int *n, const char *path) {
    const JsonValue *v = json_get(root, key);
    size_t i;
    if (!v) return MV_OK;
    if (v->type == JSON_NUMBER) { // a single value applies to every block
        int x = 0;
        if (get_int(root, key, &x, path)) return MV_ERR;
        for (i = 0; i < UNET_MAX_BLOCKS; i++) out[i] = x;
        return MV_OK;
    }
    if (v->type != JSON_ARRAY || v->count == 0 || v->count > UNET_MAX_BLOCKS)
        return mv_fail("%s: \"%s\" must be a list of 1..%d integers", path, key, UNET_MAX_BLOCKS);
    for (i = 0; i < v->count; i++) {
        const JsonValue *e = &v->items[i];
        if (e->type != JSON_NUMBER || e->number != (double)(int)e->number || e->number <= 0 || e->number > 1e6)
            return mv_fail("%s: \"%s\"[%lu] must be a positive integer", path, key, (unsigned long)i);
        out[i] = (int)e->number;
    }
    if (n) *n = (int)v->count;
    return MV_OK;
}

static int get_block_types(const JsonValue *root, const char *key, int *cross, int *n, const char *path, int down) {
    const JsonValue *v = json_get(root, key);
    size_t i;
    if (!v) return MV_OK;
    if (v->type != JSON_ARRAY || v->count == 0 || v->count > UNET_MAX_BLOCKS)
        return mv_fail("%s: \"%s\" must be a list of block type names", path, key);
    for (i = 0; i < v->count; i++) {
        const char *t = v->items[i].type == JSON_STRING ? v->items[i].text : "";
        // the 2-D names are accepted as aliases, as upstream does for lxj's timelapse model
        if (down && (!strcmp(t, "CrossAttnDownBlockPseudo3D") || !strcmp(t, "CrossAttnDownBlock2D"))) cross[i] = 1;
        else if (down && (!strcmp(t, "DownBlockPseudo3D") || !strcmp(t, "DownBlock2D"))) cross[i] = 0;
        else if (!down && (!strcmp(t, "CrossAttnUpBlockPseudo3D") || !strcmp(t, "CrossAttnUpBlock2D"))) cross[i] = 1;
        else if (!down && (!strcmp(t, "UpBlockPseudo3D") || !strcmp(t, "UpBlock2D"))) cross[i] = 0;
        else return mv_fail("%s: \"%s\"[%lu]: unknown block type '%s'", path, key, (unsigned long)i, t);
    }
    *n = (int)v->count;
    return MV_OK;
}

int unet_config_load(UNetConfig *c, const char *path) {
    char *text = NULL;
    size_t len = 0;
    JsonValue root;
    int nb = c->n_blocks, nd = c->n_blocks, nu = c->n_blocks, nh = 0, rc = MV_ERR;
    const JsonValue *v;
    if (read_file(path, &text, &len)) return MV_ERR;
    if (json_parse(&root, text, len)) { free(text); return mv_fail_prefix("%s", path); }
    free(text);
    if (root.type != JSON_OBJECT) { mv_fail("%s: not a JSON object", path); goto done; }
    if (get_int(&root, "in_channels", &c->in_channels, path) || get_int(&root, "out_channels", &c->out_channels, path) ||
        get_int(&root, "layers_per_block", &c->layers_per_block, path) ||
        get_int(&root, "cross_attention_dim", &c->cross_attention_dim, path) ||
        get_int(&root, "freq_shift", &c->freq_shift, path) ||
        get_int_list(&root, "block_out_channels", c->block_out_channels, &nb, path) ||
        get_int_list(&root, "attention_head_dim", c->heads, &nh, path) ||
        get_block_types(&root, "down_block_types", c->down_cross, &nd, path, 1) ||
        get_block_types(&root, "up_block_types", c->up_cross, &nu, path, 0))
        goto done;
    if ((v = json_get(&root, "flip_sin_to_cos")) != NULL) {
        if (v->type != JSON_BOOL) { mv_fail("%s: \"flip_sin_to_cos\" must be true or false", path); goto done; }
        c->flip_sin_to_cos = v->boolean;
    }
    if (nd != nb || nu != nb || (nh && nh != nb)) {
        mv_fail("%s: block_out_channels has %d entries but down_block_types %d, up_block_types %d, attention_head_dim %d",
                path, nb, nd, nu, nh ? nh : nb);
        goto done;
    }
    c->n_blocks = nb;
    if (unet_config_check(c)) { mv_fail_prefix("%s", path); goto done; }
    rc = MV_OK;
done:
    json_free(&root);
    return rc;
}

int unet_config_check(const UNetConfig *c) {
    int i;
    if (c->n_blocks < 1 || c->n_blocks > UNET_MAX_BLOCKS) return mv_fail("the UNet needs 1..%d blocks", UNET_MAX_BLOCKS);
    if (c->in_channels < 1 || c->out_channels < 1 || c->layers_per_block < 1 || c->cross_attention_dim < 1)
        return mv_fail("in_channels, out_channels, layers_per_block and cross_attention_dim must be positive");
    for (i = 0; i < c->n_blocks; i++) {
        if (c->block_out_channels[i] % 32)
            return mv_fail("block_out_channels[%d] = %d is not a multiple of the 32 GroupNorm groups", i, c->block_out_channels[i]);
        if (c->heads[i] < 1 || c->block_out_channels[i] % c->heads[i])
            return mv_fail("block_out_channels[%d] = %d is not divisible by attention_head_dim (heads) %d", i,
                           c->block_out_channels[i], c->heads[i]);
    }
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// The parameter tree, declared in the order of upstream's setup().

#define SHAPE(...) (const size_t[]){__VA_ARGS__}

static int declare_conv(ParamTable *pt, int temporal, const char *name, size_t k, size_t cin, size_t cout) {
    // ConvPseudo3D: spatial kxk conv, then (video only) the temporal k=3 conv
    if (params_add(pt, 4, SHAPE(k, k, cin, cout), "%s.spatial_conv.kernel", name) ||
        params_add(pt, 1, SHAPE(cout), "%s.spatial_conv.bias", name))
        return MV_ERR;
    if (!temporal) return MV_OK;
    return params_add(pt, 3, SHAPE(3, cout, cout), "%s.temporal_conv.kernel", name) ||
           params_add(pt, 1, SHAPE(cout), "%s.temporal_conv.bias", name);
}

static int declare_norm(ParamTable *pt, const char *name, size_t c) {
    return params_add(pt, 1, SHAPE(c), "%s.scale", name) || params_add(pt, 1, SHAPE(c), "%s.bias", name);
}

static int declare_dense(ParamTable *pt, const char *name, size_t in, size_t out, int bias) {
    if (params_add(pt, 2, SHAPE(in, out), "%s.kernel", name)) return MV_ERR;
    return bias ? params_add(pt, 1, SHAPE(out), "%s.bias", name) : MV_OK;
}

static int declare_resnet(ParamTable *pt, int temporal, const char *name, size_t cin, size_t cout, size_t temb) {
    char n[256];
    snprintf(n, sizeof n, "%s.norm1", name);
    if (declare_norm(pt, n, cin)) return MV_ERR;
    snprintf(n, sizeof n, "%s.conv1", name);
    if (declare_conv(pt, temporal, n, 3, cin, cout)) return MV_ERR;
    snprintf(n, sizeof n, "%s.time_emb_proj", name);
    if (declare_dense(pt, n, temb, cout, 1)) return MV_ERR;
    snprintf(n, sizeof n, "%s.norm2", name);
    if (declare_norm(pt, n, cout)) return MV_ERR;
    snprintf(n, sizeof n, "%s.conv2", name);
    if (declare_conv(pt, temporal, n, 3, cout, cout)) return MV_ERR;
    if (cin == cout) return MV_OK;
    snprintf(n, sizeof n, "%s.conv_shortcut", name);
    return declare_conv(pt, temporal, n, 1, cin, cout);
}

static int declare_attention(ParamTable *pt, const char *name, size_t c, size_t ctx) {
    char n[256];
    snprintf(n, sizeof n, "%s.to_q", name);
    if (declare_dense(pt, n, c, c, 0)) return MV_ERR;
    snprintf(n, sizeof n, "%s.to_k", name);
    if (declare_dense(pt, n, ctx, c, 0)) return MV_ERR;
    snprintf(n, sizeof n, "%s.to_v", name);
    if (declare_dense(pt, n, ctx, c, 0)) return MV_ERR;
    snprintf(n, sizeof n, "%s.to_out_0", name);
    return declare_dense(pt, n, c, c, 1);
}

static int declare_transformer(ParamTable *pt, int temporal, const char *name, size_t c, size_t ctx) {
    char n[256];
    snprintf(n, sizeof n, "%s.norm", name);
    if (declare_norm(pt, n, c)) return MV_ERR;
    if (params_add(pt, 4, SHAPE(1, 1, c, c), "%s.proj_in.kernel", name) || params_add(pt, 1, SHAPE(c), "%s.proj_in.bias", name))
        return MV_ERR;
#define TB(sub) (snprintf(n, sizeof n, "%s.transformer_blocks_0.%s", name, sub), n)
    if (declare_attention(pt, TB("attn1"), c, c) || declare_attention(pt, TB("attn2"), c, ctx)) return MV_ERR;
    if (temporal && declare_attention(pt, TB("attn_temporal"), c, c)) return MV_ERR;
    if (declare_norm(pt, TB("norm1"), c) || declare_norm(pt, TB("norm2"), c)) return MV_ERR;
    if (temporal && declare_norm(pt, TB("norm_temporal"), c)) return MV_ERR;
    if (declare_norm(pt, TB("norm3"), c)) return MV_ERR;
    if (declare_dense(pt, TB("ff.net_0.proj"), c, 8 * c, 1) || declare_dense(pt, TB("ff.net_2"), 4 * c, c, 1)) return MV_ERR;
#undef TB
    return params_add(pt, 4, SHAPE(1, 1, c, c), "%s.proj_out.kernel", name) || params_add(pt, 1, SHAPE(c), "%s.proj_out.bias", name);
}

int unet_declare_params(ParamTable *pt, const UNetConfig *c) {
    size_t c0 = (size_t)c->block_out_channels[0], temb = 4 * c0, ctx = (size_t)c->cross_attention_dim;
    int T = c->temporal, nb = c->n_blocks, L = c->layers_per_block, i, j;
    size_t out = c0;
    char n[256];
    if (unet_config_check(c)) return MV_ERR;
    if (declare_conv(pt, T, "conv_in", 3, (size_t)c->in_channels, c0)) return MV_ERR;
    if (declare_dense(pt, "time_embedding.linear_1", c0, temb, 1) || declare_dense(pt, "time_embedding.linear_2", temb, temb, 1))
        return MV_ERR;
    for (i = 0; i < nb; i++) {
        size_t in = out;
        out = (size_t)c->block_out_channels[i];
        for (j = 0; j < L; j++) {
            snprintf(n, sizeof n, "down_blocks_%d.resnets_%d", i, j);
            if (declare_resnet(pt, T, n, j == 0 ? in : out, out, temb)) return MV_ERR;
            snprintf(n, sizeof n, "down_blocks_%d.attentions_%d", i, j);
            if (c->down_cross[i] && declare_transformer(pt, T, n, out, ctx)) return MV_ERR;
        }
        snprintf(n, sizeof n, "down_blocks_%d.downsamplers_0.conv", i);
        if (i < nb - 1 && declare_conv(pt, T, n, 3, out, out)) return MV_ERR;
    }
    out = (size_t)c->block_out_channels[nb - 1];
    if (declare_resnet(pt, T, "mid_block.resnets_0", out, out, temb) ||
        declare_transformer(pt, T, "mid_block.attentions_0", out, ctx) ||
        declare_resnet(pt, T, "mid_block.resnets_1", out, out, temb))
        return MV_ERR;
    for (i = 0; i < nb; i++) {
        size_t prev = out, in = (size_t)c->block_out_channels[nb - 1 - (i + 1 < nb ? i + 1 : nb - 1)];
        out = (size_t)c->block_out_channels[nb - 1 - i];
        for (j = 0; j < L + 1; j++) {
            size_t skip = j == L ? in : out, rin = j == 0 ? prev : out;
            snprintf(n, sizeof n, "up_blocks_%d.resnets_%d", i, j);
            if (declare_resnet(pt, T, n, rin + skip, out, temb)) return MV_ERR;
            snprintf(n, sizeof n, "up_blocks_%d.attentions_%d", i, j);
            if (c->up_cross[i] && declare_transformer(pt, T, n, out, ctx)) return MV_ERR;
        }
        snprintf(n, sizeof n, "up_blocks_%d.upsamplers_0.conv", i);
        if (i < nb - 1 && declare_conv(pt, T, n, 3, out, out)) return MV_ERR;
    }
    if (declare_norm(pt, "conv_norm_out", c0)) return MV_ERR;
    return declare_conv(pt, T, "conv_out", 3, c0, (size_t)c->out_channels);
}

// ---------------------------------------------------------------------------------------
// The forward pass (upstream flax_unet_pseudo3d_condition.py __call__).

#include "blocks.h"
#include "embeddings.h"
#include "groupnorm.h"
#include "activations.h"
#include "upsample.h"

#define MAX_SKIPS 64

// (B,C,F,H,W) -> (B,F,H,W,C), or the reverse when to_channels_last == 0.
static void transpose_bc(real *dst, const real *src, size_t B, size_t C, size_t S, int to_channels_last) {
    size_t b, c, s;
    for (b = 0; b < B; b++)
        for (c = 0; c < C; c++)
            for (s = 0; s < S; s++) {
                size_t cf = (b * C + c) * S + s, cl = (b * S + s) * C + c; // channels-first / -last index
                if (to_channels_last) dst[cl] = src[cf];
                else dst[cf] = src[cl];
            }
}

// Concatenate along channels: out[..., :Ca] = a, out[..., Ca:] = b (upstream: [hidden, skip]).
static int concat_channels(Tensor *out, const Tensor *a, const Tensor *b) {
    size_t n = a->numel / a->shape[4], Ca = a->shape[4], Cb = b->shape[4], i;
    if (b->numel / Cb != n) return mv_fail("skip connection of shape mismatching the hidden state");
    if (tensor_alloc_v(out, 5, a->shape[0], a->shape[1], a->shape[2], a->shape[3], Ca + Cb)) return MV_ERR;
    for (i = 0; i < n; i++) {
        memcpy(out->data + i * (Ca + Cb), a->data + i * Ca, Ca * sizeof(real));
        memcpy(out->data + i * (Ca + Cb) + Ca, b->data + i * Cb, Cb * sizeof(real));
    }
    return MV_OK;
}

typedef struct {
    Tensor h;              // the current hidden state (B,F,H,W,C)
    int h_is_skip;         // h is also the newest skip: do not free it when replaced
    Tensor skips[MAX_SKIPS];
    int nskips;
} FwdState;

// Replace the hidden state with `next`, freeing the old one unless a skip owns it.
static void set_h(FwdState *s, Tensor *next) {
    if (!s->h_is_skip) tensor_free(&s->h);
    s->h = *next;
    s->h_is_skip = 0;
    memset(next, 0, sizeof *next);
}

static int push_skip(FwdState *s) {
    if (s->nskips == MAX_SKIPS) return mv_fail("too many skip connections");
    s->skips[s->nskips++] = s->h;
    s->h_is_skip = 1;
    return MV_OK;
}

static int emit(UNetTapFn tap, void *user, const char *name, const Tensor *t) {
    return tap ? tap(user, name, t) : MV_OK;
}

int unet_forward(Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                 ParamTable *pt, const UNetConfig *c, UNetTapFn tap, void *user) {
    static const Conv2dGeom conv3 = {3, 3, 1, 1, 1, 1, 1}, down3 = {3, 3, 2, 1, 1, 1, 1};
    FwdState s;
    BlockDims d;
    Tensor x, sinus, temb, next, tmp;
    size_t B, F, H, W, Cin = (size_t)c->in_channels, c0 = (size_t)c->block_out_channels[0], mult, i;
    int nb = c->n_blocks, L = c->layers_per_block, bi, j, rc = MV_ERR;
    char name[128];
    const real *gs, *gb;
    memset(&s, 0, sizeof s); memset(&x, 0, sizeof x); memset(&sinus, 0, sizeof sinus);
    memset(&temb, 0, sizeof temb); memset(&next, 0, sizeof next); memset(&tmp, 0, sizeof tmp);
    memset(out, 0, sizeof *out);
    // ---- validate the inputs
    if (unet_config_check(c)) return MV_ERR;
    if (sample->ndim != (c->temporal ? 5 : 4))
        return mv_fail("sample must be (B, C, %sH, W), got rank %d", c->temporal ? "F, " : "", sample->ndim);
    B = sample->shape[0];
    F = c->temporal ? sample->shape[2] : 1;
    H = sample->shape[sample->ndim - 2];
    W = sample->shape[sample->ndim - 1];
    if (sample->shape[1] != Cin) return mv_fail("sample has %lu channels, the model takes %lu", (unsigned long)sample->shape[1], (unsigned long)Cin);
    mult = (size_t)1 << (nb - 1);
    if (B == 0 || F == 0 || H == 0 || W == 0 || H % mult || W % mult)
        return mv_fail("sample size %lux%lu must be non-empty and divisible by %lu (one halving per down block)",
                       (unsigned long)H, (unsigned long)W, (unsigned long)mult);
    if (tensor_expect_shape(timesteps, "timesteps", 1, B)) return MV_ERR;
    if (context->ndim != 3 || context->shape[0] != B || context->shape[2] != (size_t)c->cross_attention_dim)
        return mv_fail("context must be (B=%lu, T, %d)", (unsigned long)B, c->cross_attention_dim);
    d.B = B; d.F = F; d.temporal = c->temporal; d.Tctx = context->shape[1]; d.Cctx = context->shape[2]; d.Ct = 4 * c0;
    d.gn_eps = 1e-5; d.plain_names = 0;
    // ---- time embedding: (B) -> (B, 4*c0)
    if (tensor_alloc_v(&sinus, 2, B, c0) || tensor_alloc_v(&temb, 2, B, 4 * c0)) goto done;
    timestep_sinusoid_forward(sinus.data, timesteps->data, B, c0, c->flip_sin_to_cos, (double)c->freq_shift);
    {
        Tensor *w1 = params_get(pt, "time_embedding.linear_1.kernel"), *b1 = params_get(pt, "time_embedding.linear_1.bias");
        Tensor *w2 = params_get(pt, "time_embedding.linear_2.kernel"), *b2 = params_get(pt, "time_embedding.linear_2.bias");
        if (!w1 || !b1 || !w2 || !b2) goto done;
        if (tensor_expect_shape(w1, "time_embedding.linear_1.kernel", 2, c0, 4 * c0) ||
            tensor_expect_shape(b1, "time_embedding.linear_1.bias", 1, 4 * c0) ||
            tensor_expect_shape(w2, "time_embedding.linear_2.kernel", 2, 4 * c0, 4 * c0) ||
            tensor_expect_shape(b2, "time_embedding.linear_2.bias", 1, 4 * c0))
            goto done;
        if (timestep_embedding_forward(temb.data, sinus.data, w1->data, b1->data, w2->data, b2->data, B, c0, 4 * c0)) goto done;
    }
    if (emit(tap, user, "tap.time_proj", &sinus) || emit(tap, user, "tap.time_embedding", &temb)) goto done;
    // ---- (B,C,F,H,W) -> (B,F,H,W,C), then conv_in
    if (tensor_alloc_v(&x, 5, B, F, H, W, Cin)) goto done;
    transpose_bc(x.data, sample->data, B, Cin, F * H * W, 1);
    if (conv_block_forward(&s.h, &x, pt, "conv_in", &d, &conv3)) goto done;
    tensor_free(&x);
    if (push_skip(&s) || emit(tap, user, "tap.conv_in", &s.h)) goto done;
    // ---- down blocks
    for (bi = 0; bi < nb; bi++) {
        for (j = 0; j < L; j++) {
            snprintf(name, sizeof name, "down_blocks_%d.resnets_%d", bi, j);
            if (resnet_forward(&next, &s.h, temb.data, pt, name, &d)) goto done;
            set_h(&s, &next);
            if (c->down_cross[bi]) {
                snprintf(name, sizeof name, "down_blocks_%d.attentions_%d", bi, j);
                if (transformer_forward(&next, &s.h, context->data, pt, name, (size_t)c->heads[bi], &d)) goto done;
                set_h(&s, &next);
            }
            if (push_skip(&s)) goto done;
        }
        if (bi < nb - 1) {
            snprintf(name, sizeof name, "down_blocks_%d.downsamplers_0.conv", bi);
            if (conv_block_forward(&next, &s.h, pt, name, &d, &down3)) goto done;
            set_h(&s, &next);
            if (push_skip(&s)) goto done;
        }
        snprintf(name, sizeof name, "tap.down_blocks_%d", bi);
        if (emit(tap, user, name, &s.h)) goto done;
    }
    // ---- mid block: resnet, transformer, resnet
    if (resnet_forward(&next, &s.h, temb.data, pt, "mid_block.resnets_0", &d)) goto done;
    set_h(&s, &next);
    if (transformer_forward(&next, &s.h, context->data, pt, "mid_block.attentions_0", (size_t)c->heads[nb - 1], &d)) goto done;
    set_h(&s, &next);
    if (resnet_forward(&next, &s.h, temb.data, pt, "mid_block.resnets_1", &d)) goto done;
    set_h(&s, &next);
    if (emit(tap, user, "tap.mid_block", &s.h)) goto done;
    // ---- up blocks: each resnet takes [hidden, skip] (hidden first), skips popped last-first
    for (bi = 0; bi < nb; bi++) {
        for (j = 0; j < L + 1; j++) {
            Tensor skip;
            if (s.nskips == 0) { mv_fail("internal: skip stack empty"); goto done; }
            skip = s.skips[--s.nskips];
            rc = concat_channels(&tmp, &s.h, &skip);
            tensor_free(&skip);
            s.h_is_skip = 0; // the newest skip (if it was h) is gone; h is now owned by nobody else
            if (rc) { rc = MV_ERR; goto done; }
            rc = MV_ERR;
            snprintf(name, sizeof name, "up_blocks_%d.resnets_%d", bi, j);
            if (resnet_forward(&next, &tmp, temb.data, pt, name, &d)) goto done;
            tensor_free(&tmp);
            set_h(&s, &next);
            if (c->up_cross[bi]) {
                snprintf(name, sizeof name, "up_blocks_%d.attentions_%d", bi, j);
                if (transformer_forward(&next, &s.h, context->data, pt, name, (size_t)c->heads[nb - 1 - bi], &d)) goto done;
                set_h(&s, &next);
            }
        }
        if (bi < nb - 1) {
            size_t hh = s.h.shape[2], ww = s.h.shape[3], cc = s.h.shape[4];
            if (tensor_alloc_v(&tmp, 5, B, F, 2 * hh, 2 * ww, cc)) goto done;
            upsample_nearest2x_forward(tmp.data, s.h.data, B * F, hh, ww, cc);
            snprintf(name, sizeof name, "up_blocks_%d.upsamplers_0.conv", bi);
            if (conv_block_forward(&next, &tmp, pt, name, &d, &conv3)) goto done;
            tensor_free(&tmp);
            set_h(&s, &next);
        }
        snprintf(name, sizeof name, "tap.up_blocks_%d", bi);
        if (emit(tap, user, name, &s.h)) goto done;
    }
    // ---- out = conv_out(silu(GroupNorm(h))), statistics over all frames
    {
        Tensor *ts = params_get(pt, "conv_norm_out.scale"), *tb = ts ? params_get(pt, "conv_norm_out.bias") : NULL;
        if (!ts || !tb) goto done;
        if (tensor_expect_shape(ts, "conv_norm_out.scale", 1, c0) || tensor_expect_shape(tb, "conv_norm_out.bias", 1, c0)) goto done;
        gs = ts->data;
        gb = tb->data;
    }
    if (tensor_alloc(&tmp, 5, s.h.shape)) goto done;
    groupnorm_forward(tmp.data, NULL, NULL, s.h.data, gs, gb, B, F * H * W, c0, 32, 1e-5);
    silu_forward(tmp.data, tmp.data, tmp.numel);
    if (conv_block_forward(&next, &tmp, pt, "conv_out", &d, &conv3)) goto done;
    tensor_free(&tmp);
    if (emit(tap, user, "tap.conv_out", &next)) goto done;
    {
        size_t Co = next.shape[4];
        int r = c->temporal ? tensor_alloc_v(out, 5, B, Co, F, H, W) : tensor_alloc_v(out, 4, B, Co, H, W);
        if (r) goto done;
        transpose_bc(out->data, next.data, B, Co, F * H * W, 0);
    }
    rc = MV_OK;
done:
    if (!s.h_is_skip) tensor_free(&s.h);
    for (i = 0; i < (size_t)s.nskips; i++) tensor_free(&s.skips[i]);
    tensor_free(&x); tensor_free(&sinus); tensor_free(&temb); tensor_free(&next); tensor_free(&tmp);
    if (rc) tensor_free(out);
    return rc;
}
