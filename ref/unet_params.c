// unet_params.c: the UNet's parameter tree: every parameter declared by its Flax path, in
// the order of upstream's setup() (flax_unet_pseudo3d_condition.py), which is the order of the
// arena and of the tensors in a checkpoint mavref writes.
#include "unet.h"

#include <stdio.h>

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
