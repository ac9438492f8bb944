// vae.c: the SD VAE (diffusers vae_flax.py: FlaxEncoder, FlaxDecoder, FlaxAutoencoderKL).
//
// Differences from the UNet's blocks: GroupNorm eps 1e-6, no time embedding, plain conv names
// ("conv1.kernel"), single-head mid-block attention whose Dense layers all have biases and
// which scales q and k each by C^-1/4, and encoder downsamplers that pad only the bottom and
// right edge (then a VALID 3x3 stride-2 conv).
#include "vae.h"
#include "activations.h"
#include "attention.h"
#include "blocks.h"
#include "groupnorm.h"
#include "linear.h"
#include "upsample.h"

#include <stdio.h>
#include <string.h>

void vae_config_default(VAEConfig *c) {
    static const int boc[4] = {128, 256, 512, 512};
    int i;
    memset(c, 0, sizeof *c);
    c->in_channels = 3;
    c->out_channels = 3;
    c->latent_channels = 4;
    c->n_blocks = 4;
    for (i = 0; i < 4; i++) c->block_out_channels[i] = boc[i];
    c->layers_per_block = 2;
    c->scaling_factor = 0.18215;
}

int vae_config_check(const VAEConfig *c) {
    int i;
    if (c->n_blocks < 1 || c->n_blocks > VAE_MAX_BLOCKS) return mv_fail("the VAE needs 1..%d blocks", VAE_MAX_BLOCKS);
    if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1 || c->layers_per_block < 1)
        return mv_fail("VAE channel counts and layers_per_block must be positive");
    for (i = 0; i < c->n_blocks; i++)
        if (c->block_out_channels[i] < 32 || c->block_out_channels[i] % 32)
            return mv_fail("VAE block_out_channels[%d] = %d is not a multiple of the 32 GroupNorm groups", i, c->block_out_channels[i]);
    return MV_OK;
}

#define SHAPE(...) (const size_t[]){__VA_ARGS__}

static int decl_conv(ParamTable *pt, const char *name, size_t k, size_t cin, size_t cout) {
    return params_add(pt, 4, SHAPE(k, k, cin, cout), "%s.kernel", name) || params_add(pt, 1, SHAPE(cout), "%s.bias", name);
}
static int decl_norm(ParamTable *pt, const char *name, size_t c) {
    return params_add(pt, 1, SHAPE(c), "%s.scale", name) || params_add(pt, 1, SHAPE(c), "%s.bias", name);
}
static int decl_dense(ParamTable *pt, const char *name, size_t c) {
    return params_add(pt, 2, SHAPE(c, c), "%s.kernel", name) || params_add(pt, 1, SHAPE(c), "%s.bias", name);
}
static int decl_resnet(ParamTable *pt, const char *name, size_t cin, size_t cout) {
    char n[256];
    snprintf(n, sizeof n, "%s.norm1", name);
    if (decl_norm(pt, n, cin)) return MV_ERR;
    snprintf(n, sizeof n, "%s.conv1", name);
    if (decl_conv(pt, n, 3, cin, cout)) return MV_ERR;
    snprintf(n, sizeof n, "%s.norm2", name);
    if (decl_norm(pt, n, cout)) return MV_ERR;
    snprintf(n, sizeof n, "%s.conv2", name);
    if (decl_conv(pt, n, 3, cout, cout)) return MV_ERR;
    snprintf(n, sizeof n, "%s.conv_shortcut", name);
    return cin == cout ? MV_OK : decl_conv(pt, n, 1, cin, cout);
}
static int decl_mid(ParamTable *pt, const char *name, size_t c) {
    char n[256];
    static const char *dense[4] = {"query", "key", "value", "proj_attn"};
    int i;
    snprintf(n, sizeof n, "%s.resnets_0", name);
    if (decl_resnet(pt, n, c, c)) return MV_ERR;
    snprintf(n, sizeof n, "%s.attentions_0.group_norm", name);
    if (decl_norm(pt, n, c)) return MV_ERR;
    for (i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s.attentions_0.%s", name, dense[i]);
        if (decl_dense(pt, n, c)) return MV_ERR;
    }
    snprintf(n, sizeof n, "%s.resnets_1", name);
    return decl_resnet(pt, n, c, c);
}

int vae_declare_params(ParamTable *pt, const VAEConfig *c) {
    int nb = c->n_blocks, L = c->layers_per_block, i, j;
    size_t top = (size_t)c->block_out_channels[nb - 1], out, lat = (size_t)c->latent_channels;
    char n[256];
    if (vae_config_check(c)) return MV_ERR;
    // encoder
    out = (size_t)c->block_out_channels[0];
    if (decl_conv(pt, "encoder.conv_in", 3, (size_t)c->in_channels, out)) return MV_ERR;
    for (i = 0; i < nb; i++) {
        size_t in = out;
        out = (size_t)c->block_out_channels[i];
        for (j = 0; j < L; j++) {
            snprintf(n, sizeof n, "encoder.down_blocks_%d.resnets_%d", i, j);
            if (decl_resnet(pt, n, j ? out : in, out)) return MV_ERR;
        }
        snprintf(n, sizeof n, "encoder.down_blocks_%d.downsamplers_0.conv", i);
        if (i < nb - 1 && decl_conv(pt, n, 3, out, out)) return MV_ERR;
    }
    if (decl_mid(pt, "encoder.mid_block", top) || decl_norm(pt, "encoder.conv_norm_out", top) ||
        decl_conv(pt, "encoder.conv_out", 3, top, 2 * lat))
        return MV_ERR;
    if (decl_conv(pt, "quant_conv", 1, 2 * lat, 2 * lat) || decl_conv(pt, "post_quant_conv", 1, lat, lat)) return MV_ERR;
    // decoder
    if (decl_conv(pt, "decoder.conv_in", 3, lat, top) || decl_mid(pt, "decoder.mid_block", top)) return MV_ERR;
    out = top;
    for (i = 0; i < nb; i++) {
        size_t prev = out;
        out = (size_t)c->block_out_channels[nb - 1 - i];
        for (j = 0; j < L + 1; j++) {
            snprintf(n, sizeof n, "decoder.up_blocks_%d.resnets_%d", i, j);
            if (decl_resnet(pt, n, j ? out : prev, out)) return MV_ERR;
        }
        snprintf(n, sizeof n, "decoder.up_blocks_%d.upsamplers_0.conv", i);
        if (i < nb - 1 && decl_conv(pt, n, 3, out, out)) return MV_ERR;
    }
    out = (size_t)c->block_out_channels[0];
    return decl_norm(pt, "decoder.conv_norm_out", out) || decl_conv(pt, "decoder.conv_out", 3, out, (size_t)c->out_channels);
}

// ---------------------------------------------------------------------------------------

static const Conv2dGeom CONV3 = {3, 3, 1, 1, 1, 1, 1};
static const Conv2dGeom CONV1 = {1, 1, 1, 0, 0, 0, 0};
static const Conv2dGeom DOWN3 = {3, 3, 2, 0, 1, 0, 1}; // pad bottom/right only, then VALID

static const real *vparam(ParamTable *pt, const char *prefix, const char *suffix, size_t n0, size_t n1) {
    Tensor *t = params_getf(pt, "%s.%s", prefix, suffix);
    if (!t) return NULL;
    if ((n1 && tensor_expect_shape(t, suffix, 2, n0, n1)) || (!n1 && tensor_expect_shape(t, suffix, 1, n0))) {
        mv_fail_prefix("%s", prefix);
        return NULL;
    }
    return t->data;
}

// FlaxAttentionBlock: x + proj_attn(softmax((q C^-1/4)(k C^-1/4)^T) v), q/k/v = Dense(GN(x)).
static int vae_attention(Tensor *x, ParamTable *pt, const char *prefix, const BlockDims *d) {
    size_t C = x->shape[4], T = x->shape[2] * x->shape[3], i;
    const real *gs, *gb;
    AttnWeights w;
    Tensor n, a;
    char gn[512];
    int rc = MV_ERR;
    memset(&w, 0, sizeof w);
    snprintf(gn, sizeof gn, "%s.group_norm", prefix);
    if (!(gs = vparam(pt, gn, "scale", C, 0)) || !(gb = vparam(pt, gn, "bias", C, 0)) ||
        !(w.wq = vparam(pt, prefix, "query.kernel", C, C)) || !(w.bq = vparam(pt, prefix, "query.bias", C, 0)) ||
        !(w.wk = vparam(pt, prefix, "key.kernel", C, C)) || !(w.bk = vparam(pt, prefix, "key.bias", C, 0)) ||
        !(w.wv = vparam(pt, prefix, "value.kernel", C, C)) || !(w.bv = vparam(pt, prefix, "value.bias", C, 0)) ||
        !(w.wo = vparam(pt, prefix, "proj_attn.kernel", C, C)) || !(w.bo = vparam(pt, prefix, "proj_attn.bias", C, 0)))
        return MV_ERR;
    w.Cq = w.Ckv = C;
    w.heads = 1;
    w.dim_head = C;
    memset(&n, 0, sizeof n);
    memset(&a, 0, sizeof a);
    if (tensor_alloc(&n, 5, x->shape) || tensor_alloc(&a, 5, x->shape)) goto done;
    groupnorm_forward(n.data, NULL, NULL, x->data, gs, gb, d->B * d->F, T, C, 32, d->gn_eps);
    if (attention_self_forward(a.data, n.data, &w, d->B * d->F, T)) goto done;
    for (i = 0; i < x->numel; i++) x->data[i] += a.data[i];
    rc = MV_OK;
done:
    tensor_free(&n);
    tensor_free(&a);
    return rc;
}

// h <- f(h): run a resnet named `name` and replace h with its output.
static int step_resnet(Tensor *h, ParamTable *pt, const char *name, const BlockDims *d) {
    Tensor next;
    if (resnet_forward(&next, h, NULL, pt, name, d)) return MV_ERR;
    tensor_free(h);
    *h = next;
    return MV_OK;
}
static int step_conv(Tensor *h, ParamTable *pt, const char *name, const BlockDims *d, const Conv2dGeom *g) {
    Tensor next;
    if (conv_block_forward(&next, h, pt, name, d, g)) return MV_ERR;
    tensor_free(h);
    *h = next;
    return MV_OK;
}
static int step_mid(Tensor *h, ParamTable *pt, const char *name, const BlockDims *d) {
    char n[256];
    snprintf(n, sizeof n, "%s.resnets_0", name);
    if (step_resnet(h, pt, n, d)) return MV_ERR;
    snprintf(n, sizeof n, "%s.attentions_0", name);
    if (vae_attention(h, pt, n, d)) return MV_ERR;
    snprintf(n, sizeof n, "%s.resnets_1", name);
    return step_resnet(h, pt, n, d);
}
// conv_out(silu(GroupNorm(h)))
static int step_out(Tensor *h, ParamTable *pt, const char *prefix, const BlockDims *d) {
    size_t C = h->shape[4];
    const real *gs, *gb;
    char n[256];
    snprintf(n, sizeof n, "%s.conv_norm_out", prefix);
    if (!(gs = vparam(pt, n, "scale", C, 0)) || !(gb = vparam(pt, n, "bias", C, 0))) return MV_ERR;
    groupnorm_forward(h->data, NULL, NULL, h->data, gs, gb, d->B, h->numel / (d->B * C), C, 32, d->gn_eps);
    silu_forward(h->data, h->data, h->numel);
    snprintf(n, sizeof n, "%s.conv_out", prefix);
    return step_conv(h, pt, n, d, &CONV3);
}

// NCHW (B,C,H,W) <-> NHWC (B,1,H,W,C)
static int to_nhwc(Tensor *out, const Tensor *in) {
    size_t B = in->shape[0], C = in->shape[1], S = in->shape[2] * in->shape[3], b, c, s;
    if (tensor_alloc_v(out, 5, B, (size_t)1, in->shape[2], in->shape[3], C)) return MV_ERR;
    for (b = 0; b < B; b++)
        for (c = 0; c < C; c++)
            for (s = 0; s < S; s++) out->data[(b * S + s) * C + c] = in->data[(b * C + c) * S + s];
    return MV_OK;
}
static int to_nchw(Tensor *out, const Tensor *in, size_t c0, size_t nc) {
    size_t B = in->shape[0], C = in->shape[4], S = in->shape[2] * in->shape[3], b, c, s;
    if (tensor_alloc_v(out, 4, B, nc, in->shape[2], in->shape[3])) return MV_ERR;
    for (b = 0; b < B; b++)
        for (c = 0; c < nc; c++)
            for (s = 0; s < S; s++) out->data[(b * nc + c) * S + s] = in->data[(b * S + s) * C + c0 + c];
    return MV_OK;
}

static void vae_dims(BlockDims *d, size_t B) {
    memset(d, 0, sizeof *d);
    d->B = B; d->F = 1; d->temporal = 0; d->Ct = 0; d->gn_eps = 1e-6; d->plain_names = 1;
}

int vae_encode(Tensor *mean, Tensor *logvar, const Tensor *image, ParamTable *pt, const VAEConfig *c) {
    size_t mult, lat = (size_t)c->latent_channels, i;
    BlockDims d;
    Tensor h;
    int nb = c->n_blocks, L = c->layers_per_block, bi, j, rc = MV_ERR;
    char n[256];
    memset(mean, 0, sizeof *mean);
    if (logvar) memset(logvar, 0, sizeof *logvar);
    if (vae_config_check(c)) return MV_ERR;
    mult = (size_t)1 << (nb - 1);
    if (image->ndim != 4 || image->shape[1] != (size_t)c->in_channels)
        return mv_fail("VAE encode: image must be (B, %d, H, W)", c->in_channels);
    if (image->shape[0] == 0 || image->shape[2] == 0 || image->shape[2] % mult || image->shape[3] == 0 || image->shape[3] % mult)
        return mv_fail("VAE encode: image size %lux%lu must be a non-zero multiple of %lu", (unsigned long)image->shape[2],
                       (unsigned long)image->shape[3], (unsigned long)mult);
    vae_dims(&d, image->shape[0]);
    if (to_nhwc(&h, image)) return MV_ERR;
    if (step_conv(&h, pt, "encoder.conv_in", &d, &CONV3)) goto done;
    for (bi = 0; bi < nb; bi++) {
        for (j = 0; j < L; j++) {
            snprintf(n, sizeof n, "encoder.down_blocks_%d.resnets_%d", bi, j);
            if (step_resnet(&h, pt, n, &d)) goto done;
        }
        snprintf(n, sizeof n, "encoder.down_blocks_%d.downsamplers_0.conv", bi);
        if (bi < nb - 1 && step_conv(&h, pt, n, &d, &DOWN3)) goto done;
    }
    if (step_mid(&h, pt, "encoder.mid_block", &d) || step_out(&h, pt, "encoder", &d)) goto done;
    if (step_conv(&h, pt, "quant_conv", &d, &CONV1)) goto done;
    if (to_nchw(mean, &h, 0, lat)) goto done;
    if (logvar) {
        if (to_nchw(logvar, &h, lat, lat)) goto done;
        for (i = 0; i < logvar->numel; i++) // FlaxDiagonalGaussianDistribution clips the logvar
            logvar->data[i] = logvar->data[i] < -30 ? (real)-30 : logvar->data[i] > 20 ? (real)20 : logvar->data[i];
    }
    rc = MV_OK;
done:
    tensor_free(&h);
    if (rc) {
        mv_fail_prefix("VAE encode");
        tensor_free(mean);
        if (logvar) tensor_free(logvar);
    }
    return rc;
}

int vae_decode(Tensor *image, const Tensor *latents, ParamTable *pt, const VAEConfig *c) {
    BlockDims d;
    Tensor h, up;
    int nb = c->n_blocks, L = c->layers_per_block, bi, j, rc = MV_ERR;
    char n[256];
    memset(image, 0, sizeof *image);
    if (vae_config_check(c)) return MV_ERR;
    if (latents->ndim != 4 || latents->shape[1] != (size_t)c->latent_channels || latents->shape[0] == 0 ||
        latents->shape[2] == 0 || latents->shape[3] == 0)
        return mv_fail("VAE decode: latents must be non-empty (B, %d, h, w)", c->latent_channels);
    vae_dims(&d, latents->shape[0]);
    if (to_nhwc(&h, latents)) return MV_ERR;
    if (step_conv(&h, pt, "post_quant_conv", &d, &CONV1) || step_conv(&h, pt, "decoder.conv_in", &d, &CONV3) ||
        step_mid(&h, pt, "decoder.mid_block", &d))
        goto done;
    for (bi = 0; bi < nb; bi++) {
        for (j = 0; j < L + 1; j++) {
            snprintf(n, sizeof n, "decoder.up_blocks_%d.resnets_%d", bi, j);
            if (step_resnet(&h, pt, n, &d)) goto done;
        }
        if (bi < nb - 1) {
            size_t H = h.shape[2], W = h.shape[3], C = h.shape[4];
            if (tensor_alloc_v(&up, 5, d.B, (size_t)1, 2 * H, 2 * W, C)) goto done;
            upsample_nearest2x_forward(up.data, h.data, d.B, H, W, C);
            tensor_free(&h);
            h = up;
            snprintf(n, sizeof n, "decoder.up_blocks_%d.upsamplers_0.conv", bi);
            if (step_conv(&h, pt, n, &d, &CONV3)) goto done;
        }
    }
    if (step_out(&h, pt, "decoder", &d)) goto done;
    if (to_nchw(image, &h, 0, h.shape[4])) goto done;
    rc = MV_OK;
done:
    tensor_free(&h);
    if (rc) mv_fail_prefix("VAE decode");
    return rc;
}
