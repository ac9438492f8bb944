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
