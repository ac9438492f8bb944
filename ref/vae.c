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
#include "flops.h"
#include "groupnorm.h"
#include "linear.h"
#include "upsample.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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
// The network as a list of stages, walked by the forward (keeping nothing, or keeping every
// stage's input for the backward) and backwards by vae_*_backward. Activations are NHWC
// (B,1,H,W,C): the blocks' (B,F,H,W,C) with one frame.

static const Conv2dGeom CONV3 = {3, 3, 1, 1, 1, 1, 1};
static const Conv2dGeom CONV1 = {1, 1, 1, 0, 0, 0, 0};
static const Conv2dGeom DOWN3 = {3, 3, 2, 0, 1, 0, 1}; // pad bottom/right only, then VALID

typedef enum {
    VS_CONV,      // conv_block_forward(name, geom)
    VS_RESNET,    // FlaxResnetBlock2D
    VS_ATTN,      // mid-block attention: x + proj_attn(attention(GN(x)))
    VS_NORM_SILU, // silu(GN(x)) before conv_out
    VS_UPSAMPLE   // nearest 2x
} VaeStageKind;

typedef struct {
    VaeStageKind kind;
    char name[80];            // Flax path of the stage's parameters
    const Conv2dGeom *geom;   // VS_CONV only
} VaeStage;

typedef struct {
    size_t n, cap;
    VaeStage *s;              // (n)
} VaeStages;

static int stage_add(VaeStages *st, VaeStageKind kind, const Conv2dGeom *geom, const char *fmt, ...) MV_PRINTF(4, 5);
static int stage_add(VaeStages *st, VaeStageKind kind, const Conv2dGeom *geom, const char *fmt, ...) {
    va_list ap;
    if (st->n == st->cap) return mv_fail("VAE: stage list overflow");
    st->s[st->n].kind = kind;
    st->s[st->n].geom = geom;
    va_start(ap, fmt);
    vsnprintf(st->s[st->n].name, sizeof st->s[st->n].name, fmt, ap);
    va_end(ap);
    st->n++;
    return MV_OK;
}

static int stages_alloc(VaeStages *st, const VAEConfig *c) {
    st->n = 0;
    st->cap = (size_t)c->n_blocks * ((size_t)c->layers_per_block + 3) + 12;
    st->s = (VaeStage *)mv_calloc(st->cap, sizeof(VaeStage), "VAE stage list");
    return st->s ? MV_OK : MV_ERR;
}

static int mid_stages(VaeStages *st, const char *mid) {
    return stage_add(st, VS_RESNET, NULL, "%s.resnets_0", mid) || stage_add(st, VS_ATTN, NULL, "%s.attentions_0", mid) ||
           stage_add(st, VS_RESNET, NULL, "%s.resnets_1", mid);
}

// FlaxEncoder then quant_conv: image (B,1,H,W,3) -> moments (B,1,h,w,2*latent).
static int encoder_stages(VaeStages *st, const VAEConfig *c) {
    int nb = c->n_blocks, L = c->layers_per_block, bi, j;
    if (stages_alloc(st, c) || stage_add(st, VS_CONV, &CONV3, "encoder.conv_in")) return MV_ERR;
    for (bi = 0; bi < nb; bi++) {
        for (j = 0; j < L; j++)
            if (stage_add(st, VS_RESNET, NULL, "encoder.down_blocks_%d.resnets_%d", bi, j)) return MV_ERR;
        if (bi < nb - 1 && stage_add(st, VS_CONV, &DOWN3, "encoder.down_blocks_%d.downsamplers_0.conv", bi)) return MV_ERR;
    }
    return mid_stages(st, "encoder.mid_block") || stage_add(st, VS_NORM_SILU, NULL, "encoder.conv_norm_out") ||
           stage_add(st, VS_CONV, &CONV3, "encoder.conv_out") || stage_add(st, VS_CONV, &CONV1, "quant_conv");
}

// post_quant_conv then FlaxDecoder: latents (B,1,h,w,latent) -> image (B,1,H,W,3).
static int decoder_stages(VaeStages *st, const VAEConfig *c) {
    int nb = c->n_blocks, L = c->layers_per_block, bi, j;
    if (stages_alloc(st, c) || stage_add(st, VS_CONV, &CONV1, "post_quant_conv") ||
        stage_add(st, VS_CONV, &CONV3, "decoder.conv_in") || mid_stages(st, "decoder.mid_block"))
        return MV_ERR;
    for (bi = 0; bi < nb; bi++) {
        for (j = 0; j < L + 1; j++)
            if (stage_add(st, VS_RESNET, NULL, "decoder.up_blocks_%d.resnets_%d", bi, j)) return MV_ERR;
        if (bi < nb - 1 && (stage_add(st, VS_UPSAMPLE, NULL, "decoder.up_blocks_%d.upsamplers_0", bi) ||
                            stage_add(st, VS_CONV, &CONV3, "decoder.up_blocks_%d.upsamplers_0.conv", bi)))
            return MV_ERR;
    }
    return stage_add(st, VS_NORM_SILU, NULL, "decoder.conv_norm_out") || stage_add(st, VS_CONV, &CONV3, "decoder.conv_out");
}

static const real *vparam(ParamTable *pt, const char *prefix, const char *suffix, size_t n0, size_t n1) {
    Tensor *t = params_getf(pt, "%s.%s", prefix, suffix);
    if (!t) return NULL;
    if ((n1 && tensor_expect_shape(t, suffix, 2, n0, n1)) || (!n1 && tensor_expect_shape(t, suffix, 1, n0))) {
        mv_fail_prefix("%s", prefix);
        return NULL;
    }
    return t->data;
}

// The gradient slot of parameter w in gt (pt's layout), or NULL when gt is NULL.
static real *gslot(const ParamTable *pt, ParamTable *gt, const real *w) {
    return gt && w ? gt->arena + (w - pt->arena) : NULL;
}

// GroupNorm (scale, bias) of `name` (C channels).
static int norm_params(const real **gs, const real **gb, ParamTable *pt, const char *name, size_t C) {
    *gs = vparam(pt, name, "scale", C, 0);
    *gb = *gs ? vparam(pt, name, "bias", C, 0) : NULL;
    return *gb ? MV_OK : MV_ERR;
}

// FlaxAttentionBlock's weights: one head of width C; query, key, value and proj_attn all have
// biases. diffusers scales q and k each by C^-1/4, which is softmax((q k^T) / sqrt(C)): the
// attention operator's own scaling.
static int attn_params(AttnWeights *w, const real **gs, const real **gb, ParamTable *pt, const char *prefix, size_t C) {
    char gn[128];
    memset(w, 0, sizeof *w);
    snprintf(gn, sizeof gn, "%s.group_norm", prefix);
    if (norm_params(gs, gb, pt, gn, C) ||
        !(w->wq = vparam(pt, prefix, "query.kernel", C, C)) || !(w->bq = vparam(pt, prefix, "query.bias", C, 0)) ||
        !(w->wk = vparam(pt, prefix, "key.kernel", C, C)) || !(w->bk = vparam(pt, prefix, "key.bias", C, 0)) ||
        !(w->wv = vparam(pt, prefix, "value.kernel", C, C)) || !(w->bv = vparam(pt, prefix, "value.bias", C, 0)) ||
        !(w->wo = vparam(pt, prefix, "proj_attn.kernel", C, C)) || !(w->bo = vparam(pt, prefix, "proj_attn.bias", C, 0)))
        return MV_ERR;
    w->Cq = w->Ckv = C;
    w->heads = 1;
    w->dim_head = C;
    return MV_OK;
}

// out = x + proj_attn(attention(GN(x))), GroupNorm per image.
static int attn_forward(Tensor *out, const Tensor *x, ParamTable *pt, const char *prefix, const BlockDims *d) {
    size_t C = x->shape[4], T = x->shape[2] * x->shape[3], i;
    const real *gs, *gb;
    AttnWeights w;
    Tensor n;
    if (attn_params(&w, &gs, &gb, pt, prefix, C)) return MV_ERR;
    if (tensor_alloc(&n, 5, x->shape)) return MV_ERR;
    if (tensor_alloc(out, 5, x->shape)) { tensor_free(&n); return MV_ERR; }
    groupnorm_forward(n.data, NULL, NULL, x->data, gs, gb, d->B * d->F, T, C, 32, d->gn_eps);
    if (attention_self_forward(out->data, n.data, &w, d->B * d->F, T)) { tensor_free(&n); tensor_free(out); return MV_ERR; }
    for (i = 0; i < x->numel; i++) out->data[i] = x->data[i] + out->data[i];
    tensor_free(&n);
    return MV_OK;
}

// out = silu(GN(x)), GroupNorm statistics over the whole image.
static int norm_silu_forward(Tensor *out, const Tensor *x, ParamTable *pt, const char *name, const BlockDims *d) {
    size_t C = x->shape[4];
    const real *gs, *gb;
    if (norm_params(&gs, &gb, pt, name, C) || tensor_alloc(out, 5, x->shape)) return MV_ERR;
    groupnorm_forward(out->data, NULL, NULL, x->data, gs, gb, d->B, x->numel / (d->B * C), C, 32, d->gn_eps);
    silu_forward(out->data, out->data, out->numel);
    return MV_OK;
}

// out = stage(in), allocated here.
static int stage_forward(Tensor *out, const Tensor *in, const VaeStage *s, ParamTable *pt, const BlockDims *d) {
    switch (s->kind) {
    case VS_CONV: return conv_block_forward(out, in, pt, s->name, d, s->geom);
    case VS_RESNET: return resnet_forward(out, in, NULL, pt, s->name, d);
    case VS_ATTN: return attn_forward(out, in, pt, s->name, d);
    case VS_NORM_SILU: return norm_silu_forward(out, in, pt, s->name, d);
    case VS_UPSAMPLE: {
        size_t H = in->shape[2], W = in->shape[3], C = in->shape[4];
        if (tensor_alloc_v(out, 5, d->B, (size_t)1, 2 * H, 2 * W, C)) return MV_ERR;
        upsample_nearest2x_forward(out->data, in->data, d->B, H, W, C);
        return MV_OK;
    }
    }
    return mv_fail("VAE: unknown stage kind");
}

// Walk the stages: h (the input, consumed) becomes the last stage's output. With tape
// (st->n tensors), stage k's input is kept in tape[k] instead of being freed.
static int run_stages(Tensor *h, const VaeStages *st, ParamTable *pt, const BlockDims *d, Tensor *tape) {
    size_t k;
    for (k = 0; k < st->n; k++) {
        Tensor next;
        if (stage_forward(&next, h, &st->s[k], pt, d)) return mv_fail_prefix("%s", st->s[k].name);
        if (tape) tape[k] = *h;
        else tensor_free(h);
        *h = next;
    }
    return MV_OK;
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

static int check_image(const Tensor *image, const VAEConfig *c, const char *what) {
    size_t mult = (size_t)1 << (c->n_blocks - 1);
    if (image->ndim != 4 || image->shape[1] != (size_t)c->in_channels)
        return mv_fail("VAE %s: image must be (B, %d, H, W)", what, c->in_channels);
    if (image->shape[0] == 0 || image->shape[2] == 0 || image->shape[2] % mult || image->shape[3] == 0 || image->shape[3] % mult)
        return mv_fail("VAE %s: image size %lux%lu must be a non-zero multiple of %lu", what, (unsigned long)image->shape[2],
                       (unsigned long)image->shape[3], (unsigned long)mult);
    return MV_OK;
}

static int check_latents(const Tensor *latents, const VAEConfig *c, const char *what) {
    if (latents->ndim != 4 || latents->shape[1] != (size_t)c->latent_channels || latents->shape[0] == 0 ||
        latents->shape[2] == 0 || latents->shape[3] == 0)
        return mv_fail("VAE %s: latents must be non-empty (B, %d, h, w)", what, c->latent_channels);
    return MV_OK;
}

static int is_shape4(const Tensor *t, size_t a, size_t b, size_t c, size_t d) {
    return t->ndim == 4 && t->shape[0] == a && t->shape[1] == b && t->shape[2] == c && t->shape[3] == d;
}

static real clip_logvar(real v) { return v < -30 ? (real)-30 : v > 20 ? (real)20 : v; }

// moments (B,1,h,w,2*latent) -> mean, logvar (B,latent,h,w), the logvar clipped to [-30, 20]
// as FlaxDiagonalGaussianDistribution does.
static int split_moments(Tensor *mean, Tensor *logvar, const Tensor *h, size_t lat) {
    size_t i;
    if (to_nchw(mean, h, 0, lat)) return MV_ERR;
    if (!logvar) return MV_OK;
    if (to_nchw(logvar, h, lat, lat)) { tensor_free(mean); return MV_ERR; }
    for (i = 0; i < logvar->numel; i++) logvar->data[i] = clip_logvar(logvar->data[i]);
    return MV_OK;
}

int vae_encode(Tensor *mean, Tensor *logvar, const Tensor *image, ParamTable *pt, const VAEConfig *c) {
    VaeStages st = {0, 0, NULL};
    BlockDims d;
    Tensor h;
    int rc = MV_ERR;
    memset(mean, 0, sizeof *mean);
    if (logvar) memset(logvar, 0, sizeof *logvar);
    if (vae_config_check(c) || check_image(image, c, "encode")) return MV_ERR;
    vae_dims(&d, image->shape[0]);
    if (encoder_stages(&st, c) || to_nhwc(&h, image)) { free(st.s); return MV_ERR; }
    if (run_stages(&h, &st, pt, &d, NULL) == MV_OK && split_moments(mean, logvar, &h, (size_t)c->latent_channels) == MV_OK)
        rc = MV_OK;
    tensor_free(&h);
    free(st.s);
    if (rc) mv_fail_prefix("VAE encode");
    return rc;
}

int vae_decode(Tensor *image, const Tensor *latents, ParamTable *pt, const VAEConfig *c) {
    VaeStages st = {0, 0, NULL};
    BlockDims d;
    Tensor h;
    int rc = MV_ERR;
    memset(image, 0, sizeof *image);
    if (vae_config_check(c) || check_latents(latents, c, "decode")) return MV_ERR;
    vae_dims(&d, latents->shape[0]);
    if (decoder_stages(&st, c) || to_nhwc(&h, latents)) { free(st.s); return MV_ERR; }
    if (run_stages(&h, &st, pt, &d, NULL) == MV_OK && to_nchw(image, &h, 0, h.shape[4]) == MV_OK) rc = MV_OK;
    tensor_free(&h);
    free(st.s);
    if (rc) mv_fail_prefix("VAE decode");
    return rc;
}

// The FLOP count (ref/flops.h) of the stage list vae_encode or vae_decode walks.
int vae_flops(Flops *f, const VAEConfig *c, int decode, size_t B, size_t H, size_t W) {
    VaeStages st = {0, 0, NULL};
    ParamTable pt;
    size_t k, h, w, down = (size_t)1 << (c->n_blocks - 1);
    char n[160];
    int rc = MV_ERR;
    memset(f, 0, sizeof *f);
    params_init(&pt);
    if (vae_config_check(c) || vae_declare_params(&pt, c) || (decode ? decoder_stages(&st, c) : encoder_stages(&st, c)))
        goto done;
    h = decode ? H / down : H; // the decoder starts from the latents
    w = decode ? W / down : W;
    for (k = 0; k < st.n; k++) {
        const VaeStage *s = &st.s[k];
        switch (s->kind) {
        case VS_CONV:
            if (flops_conv_block(f, &pt, s->name, s->geom, B, 1, h, w, &h, &w)) goto done;
            break;
        case VS_RESNET:
            if (flops_resnet(f, &pt, s->name, B, 1, h, w)) goto done;
            break;
        case VS_ATTN: { // one head over the h*w tokens: query, key, value, proj_attn; scores and P.V
            static const char *proj[4] = {"query", "key", "value", "proj_attn"};
            const Tensor *q;
            int i;
            for (i = 0; i < 4; i++) {
                snprintf(n, sizeof n, "%s.%s", s->name, proj[i]);
                if (flops_dense(f, &pt, n, B * h * w)) goto done;
            }
            snprintf(n, sizeof n, "%s.query.kernel", s->name);
            if (!(q = flops_param(&pt, n))) goto done;
            f->attn += 2.0 * 2.0 * (double)B * (double)(h * w) * (double)(h * w) * (double)q->shape[1];
            break;
        }
        case VS_UPSAMPLE: h *= 2; w *= 2; break;
        default: break; // GroupNorm and SiLU: elementwise
        }
    }
    rc = MV_OK;
done:
    free(st.s);
    free_params(&pt);
    return rc ? mv_fail_prefix("VAE FLOP count") : MV_OK;
}

// ---------------------------------------------------------------------------------------
// Backward. Each stage's backward ACCUMULATES (+=) into din (zeroed by the caller) and into
// the parameter gradients in gt, from the stage's kept input; what the stage computed inside
// is recomputed (as the blocks' backward passes do).

// forward was: out = x + proj_attn(attention(n)), n = GN(x)
static int attn_backward(real *dx, const real *dout, const Tensor *x, ParamTable *pt, ParamTable *gt, const char *prefix,
                         const BlockDims *d) {
    size_t C = x->shape[4], T = x->shape[2] * x->shape[3], N = d->B * d->F, G = 32, i;
    const real *gs, *gb;
    AttnWeights w;
    AttnGrads g;
    Tensor n, dn, mean, rstd;
    int rc = MV_ERR;
    if (attn_params(&w, &gs, &gb, pt, prefix, C)) return MV_ERR;
    g.dwq = gslot(pt, gt, w.wq); g.dwk = gslot(pt, gt, w.wk); g.dwv = gslot(pt, gt, w.wv); g.dwo = gslot(pt, gt, w.wo);
    g.dbq = gslot(pt, gt, w.bq); g.dbk = gslot(pt, gt, w.bk); g.dbv = gslot(pt, gt, w.bv); g.dbo = gslot(pt, gt, w.bo);
    memset(&n, 0, sizeof n); memset(&dn, 0, sizeof dn); memset(&mean, 0, sizeof mean); memset(&rstd, 0, sizeof rstd);
    if (tensor_alloc(&n, 5, x->shape) || tensor_alloc(&dn, 5, x->shape) || tensor_alloc_v(&mean, 2, N, G) ||
        tensor_alloc_v(&rstd, 2, N, G))
        goto done;
    for (i = 0; i < x->numel; i++) dx[i] += dout[i]; // the residual
    groupnorm_forward(n.data, mean.data, rstd.data, x->data, gs, gb, N, T, C, G, d->gn_eps);
    if (attention_self_backward(dn.data, &g, dout, n.data, &w, N, T)) goto done;
    groupnorm_backward(dx, gslot(pt, gt, gs), gslot(pt, gt, gb), dn.data, x->data, gs, mean.data, rstd.data, N, T, C, G);
    rc = MV_OK;
done:
    tensor_free(&n); tensor_free(&dn); tensor_free(&mean); tensor_free(&rstd);
    return rc;
}

// forward was: out = silu(a), a = GN(x)
static int norm_silu_backward(real *dx, const real *dout, const Tensor *x, ParamTable *pt, ParamTable *gt, const char *name,
                              const BlockDims *d) {
    size_t C = x->shape[4], S = x->numel / (d->B * C), G = 32;
    const real *gs, *gb;
    Tensor a, da, mean, rstd;
    int rc = MV_ERR;
    if (norm_params(&gs, &gb, pt, name, C)) return MV_ERR;
    memset(&a, 0, sizeof a); memset(&da, 0, sizeof da); memset(&mean, 0, sizeof mean); memset(&rstd, 0, sizeof rstd);
    if (tensor_alloc(&a, 5, x->shape) || tensor_alloc(&da, 5, x->shape) || tensor_alloc_v(&mean, 2, d->B, G) ||
        tensor_alloc_v(&rstd, 2, d->B, G))
        goto done;
    groupnorm_forward(a.data, mean.data, rstd.data, x->data, gs, gb, d->B, S, C, G, d->gn_eps);
    silu_backward(da.data, dout, a.data, a.numel);
    groupnorm_backward(dx, gslot(pt, gt, gs), gslot(pt, gt, gb), da.data, x->data, gs, mean.data, rstd.data, d->B, S, C, G);
    rc = MV_OK;
done:
    tensor_free(&a); tensor_free(&da); tensor_free(&mean); tensor_free(&rstd);
    return rc;
}

static int stage_backward(real *din, const real *dout, const Tensor *in, const VaeStage *s, ParamTable *pt, ParamTable *gt,
                          const BlockDims *d) {
    switch (s->kind) {
    case VS_CONV: return conv_block_backward(din, dout, in, pt, gt, s->name, d, s->geom);
    case VS_RESNET: return resnet_backward(din, NULL, dout, in, NULL, pt, gt, s->name, d);
    case VS_ATTN: return attn_backward(din, dout, in, pt, gt, s->name, d);
    case VS_NORM_SILU: return norm_silu_backward(din, dout, in, pt, gt, s->name, d);
    case VS_UPSAMPLE:
        upsample_nearest2x_backward(din, dout, d->B, in->shape[2], in->shape[3], in->shape[4]);
        return MV_OK;
    }
    return mv_fail("VAE: unknown stage kind");
}

// dh: the gradient of the last stage's output (consumed); on return dx (allocated) holds the
// gradient of the first stage's input. tape[k]: stage k's input.
static int back_stages(Tensor *dx, Tensor *dh, const VaeStages *st, const Tensor *tape, ParamTable *pt, ParamTable *gt,
                       const BlockDims *d) {
    size_t k = st->n;
    while (k-- > 0) {
        Tensor din;
        if (tensor_alloc(&din, tape[k].ndim, tape[k].shape)) return MV_ERR; // zeroed
        if (stage_backward(din.data, dh->data, &tape[k], &st->s[k], pt, gt, d)) {
            tensor_free(&din);
            return mv_fail_prefix("%s backward", st->s[k].name);
        }
        tensor_free(dh);
        *dh = din;
    }
    *dx = *dh;
    memset(dh, 0, sizeof *dh);
    return MV_OK;
}

// A forward that keeps every stage's input: the stage list, the kept inputs and the output.
typedef struct {
    VaeStages st;
    Tensor *tape;   // (st.n) stage k's input
    Tensor out;     // the last stage's output, NHWC
    BlockDims d;
} VaeTape;

static void vae_tape_free(VaeTape *tp) {
    size_t k;
    if (tp->tape)
        for (k = 0; k < tp->st.n; k++) tensor_free(&tp->tape[k]);
    free(tp->tape);
    free(tp->st.s);
    tensor_free(&tp->out);
}

// Run the encoder (encoder = 1) or decoder stages on input (NCHW), keeping the tape.
static int vae_tape_forward(VaeTape *tp, int encoder, const Tensor *input, ParamTable *pt, const VAEConfig *c) {
    memset(tp, 0, sizeof *tp);
    vae_dims(&tp->d, input->shape[0]);
    if (encoder ? encoder_stages(&tp->st, c) : decoder_stages(&tp->st, c)) return MV_ERR;
    tp->tape = (Tensor *)mv_calloc(tp->st.n, sizeof(Tensor), "VAE tape");
    if (!tp->tape || to_nhwc(&tp->out, input)) return MV_ERR;
    return run_stages(&tp->out, &tp->st, pt, &tp->d, tp->tape);
}

// dout (NHWC, the gradient of tp->out; consumed) back through the stages; dinput (NCHW,
// allocated) gets the input's gradient unless NULL.
static int vae_tape_backward(Tensor *dinput, Tensor *dout, VaeTape *tp, ParamTable *pt, ParamTable *gt) {
    Tensor dx;
    int rc;
    if (back_stages(&dx, dout, &tp->st, tp->tape, pt, gt, &tp->d)) return MV_ERR;
    rc = dinput ? to_nchw(dinput, &dx, 0, dx.shape[4]) : MV_OK;
    tensor_free(&dx);
    return rc;
}

int vae_encode_backward(Tensor *dimage, const Tensor *dmean, const Tensor *dlogvar, const Tensor *image, ParamTable *pt,
                        ParamTable *gt, const VAEConfig *c) {
    VaeTape tp;
    Tensor dh;
    size_t lat = (size_t)c->latent_channels, B, h, w, S, b, ch, s;
    int rc = MV_ERR;
    if (dimage) memset(dimage, 0, sizeof *dimage);
    memset(&dh, 0, sizeof dh);
    if (vae_config_check(c) || check_image(image, c, "encode backward")) return MV_ERR;
    if (vae_tape_forward(&tp, 1, image, pt, c)) goto done;
    B = tp.out.shape[0]; h = tp.out.shape[2]; w = tp.out.shape[3]; S = h * w;
    if (!is_shape4(dmean, B, lat, h, w) || (dlogvar && !is_shape4(dlogvar, B, lat, h, w))) {
        mv_fail("dmean/dlogvar must be (%lu, %lu, %lu, %lu)", (unsigned long)B, (unsigned long)lat, (unsigned long)h,
                (unsigned long)w);
        goto done;
    }
    // forward was: mean = moments[..., :lat], logvar = clip(moments[..., lat:], -30, 20)
    if (tensor_alloc(&dh, 5, tp.out.shape)) goto done;
    for (b = 0; b < B; b++)
        for (ch = 0; ch < lat; ch++)
            for (s = 0; s < S; s++) {
                size_t o = (b * S + s) * 2 * lat + ch, i = (b * lat + ch) * S + s;
                real raw = tp.out.data[o + lat];
                dh.data[o] = dmean->data[i];
                if (dlogvar && raw > -30 && raw < 20) dh.data[o + lat] = dlogvar->data[i];
            }
    rc = vae_tape_backward(dimage, &dh, &tp, pt, gt);
done:
    tensor_free(&dh);
    vae_tape_free(&tp);
    if (rc) mv_fail_prefix("VAE encode backward");
    return rc;
}

int vae_decode_backward(Tensor *dlatents, const Tensor *dimage, const Tensor *latents, ParamTable *pt, ParamTable *gt,
                        const VAEConfig *c) {
    VaeTape tp;
    Tensor dh;
    int rc = MV_ERR;
    if (dlatents) memset(dlatents, 0, sizeof *dlatents);
    memset(&dh, 0, sizeof dh);
    if (vae_config_check(c) || check_latents(latents, c, "decode backward")) return MV_ERR;
    if (vae_tape_forward(&tp, 0, latents, pt, c) == MV_OK) {
        const Tensor *o = &tp.out;
        if (!is_shape4(dimage, o->shape[0], o->shape[4], o->shape[2], o->shape[3]))
            mv_fail("dimage must be (%lu, %lu, %lu, %lu)", (unsigned long)o->shape[0], (unsigned long)o->shape[4],
                    (unsigned long)o->shape[2], (unsigned long)o->shape[3]);
        else if (to_nhwc(&dh, dimage) == MV_OK)
            rc = vae_tape_backward(dlatents, &dh, &tp, pt, gt);
    }
    tensor_free(&dh);
    vae_tape_free(&tp);
    if (rc) mv_fail_prefix("VAE decode backward");
    return rc;
}
