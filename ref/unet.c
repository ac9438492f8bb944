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
    // range first: converting a double outside int's range to int is undefined behaviour
    if (v->type != JSON_NUMBER || !(v->number >= 0 && v->number <= 1e6) || v->number != (double)(int)v->number)
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
        if (e->type != JSON_NUMBER || !(e->number > 0 && e->number <= 1e6) || e->number != (double)(int)e->number)
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
    int rc;
    if (read_file(path, &text, &len)) return MV_ERR;
    rc = unet_config_parse(c, text, len, path);
    free(text);
    return rc;
}

int unet_config_parse(UNetConfig *c, const char *text, size_t len, const char *path) {
    JsonValue root;
    int nb = c->n_blocks, nd = c->n_blocks, nu = c->n_blocks, nh = 0, rc = MV_ERR;
    const JsonValue *v;
    if (json_parse(&root, text, len)) return mv_fail_prefix("%s", path);
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
#include "threads.h"

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

// Rows [begin, end) of a channel concatenation (blocks of rows run in parallel: copies).
typedef struct {
    real *out;           // (n,Ca+Cb)
    const real *a, *b;   // (n,Ca) (n,Cb)
    size_t Ca, Cb;
} ConcatJob;
static void concat_rows(void *ctx, size_t begin, size_t end) {
    const ConcatJob *j = (const ConcatJob *)ctx;
    size_t i;
    for (i = begin; i < end; i++) {
        memcpy(j->out + i * (j->Ca + j->Cb), j->a + i * j->Ca, j->Ca * sizeof(real));
        memcpy(j->out + i * (j->Ca + j->Cb) + j->Ca, j->b + i * j->Cb, j->Cb * sizeof(real));
    }
}

// Concatenate along channels: out[..., :Ca] = a, out[..., Ca:] = b (upstream: [hidden, skip]).
static int concat_channels(Tensor *out, const Tensor *a, const Tensor *b) {
    size_t n = a->numel / a->shape[4], Ca = a->shape[4], Cb = b->shape[4];
    ConcatJob j;
    if (b->numel / Cb != n) return mv_fail("skip connection of shape mismatching the hidden state");
    if (tensor_alloc_v(out, 5, a->shape[0], a->shape[1], a->shape[2], a->shape[3], Ca + Cb)) return MV_ERR;
    j.out = out->data; j.a = a->data; j.b = b->data; j.Ca = Ca; j.Cb = Cb;
    parallel_range(n, 16384 / (Ca + Cb + 1) + 1, concat_rows, &j);
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

// Hand a tap to the caller; in 2-D mode (F = 1, no temporal layers) as (B,H,W,C), the layout
// of the 2-D model, instead of (B,1,H,W,C).
static int emit(UNetTapFn tap, void *user, const char *name, const Tensor *t, int temporal) {
    Tensor v;
    if (!tap) return MV_OK;
    if (temporal || t->ndim != 5) return tap(user, name, t);
    v = *t;
    v.owned = 0;
    v.ndim = 4;
    v.shape[1] = t->shape[2]; v.shape[2] = t->shape[3]; v.shape[3] = t->shape[4];
    return tap(user, name, &v);
}

int unet_check_inputs(const Tensor *sample, const Tensor *timesteps, const Tensor *context, const UNetConfig *c) {
    size_t B, F, H, W, Cin = (size_t)c->in_channels, mult;
    if (unet_config_check(c)) return MV_ERR;
    if (sample->ndim != (c->temporal ? 5 : 4))
        return mv_fail("sample must be (B, C, %sH, W), got rank %d", c->temporal ? "F, " : "", sample->ndim);
    B = sample->shape[0];
    F = c->temporal ? sample->shape[2] : 1;
    H = sample->shape[sample->ndim - 2];
    W = sample->shape[sample->ndim - 1];
    if (sample->shape[1] != Cin) return mv_fail("sample has %lu channels, the model takes %lu", (unsigned long)sample->shape[1], (unsigned long)Cin);
    mult = (size_t)1 << (c->n_blocks - 1);
    if (B == 0 || F == 0 || H == 0 || W == 0 || H % mult || W % mult)
        return mv_fail("sample size %lux%lu must be non-empty and divisible by %lu (one halving per down block)",
                       (unsigned long)H, (unsigned long)W, (unsigned long)mult);
    if (tensor_expect_shape(timesteps, "timesteps", 1, B)) return MV_ERR;
    if (context->ndim != 3 || context->shape[0] != B || context->shape[2] != (size_t)c->cross_attention_dim)
        return mv_fail("context must be (B=%lu, T, %d)", (unsigned long)B, c->cross_attention_dim);
    return MV_OK;
}

int unet_forward(Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                 ParamTable *pt, const UNetConfig *c, UNetTapFn tap, void *user) {
    static const Conv2dGeom conv3 = {3, 3, 1, 1, 1, 1, 1}, down3 = {3, 3, 2, 1, 1, 1, 1};
    FwdState s;
    BlockDims d;
    Tensor x, sinus, temb, next, tmp;
    size_t B, F, H, W, Cin = (size_t)c->in_channels, c0 = (size_t)c->block_out_channels[0], i;
    int nb = c->n_blocks, L = c->layers_per_block, bi, j, rc = MV_ERR;
    char name[128];
    const real *gs, *gb;
    memset(&s, 0, sizeof s); memset(&x, 0, sizeof x); memset(&sinus, 0, sizeof sinus);
    memset(&temb, 0, sizeof temb); memset(&next, 0, sizeof next); memset(&tmp, 0, sizeof tmp);
    memset(out, 0, sizeof *out);
    // ---- validate the inputs
    if (unet_check_inputs(sample, timesteps, context, c)) return MV_ERR;
    B = sample->shape[0];
    F = c->temporal ? sample->shape[2] : 1;
    H = sample->shape[sample->ndim - 2];
    W = sample->shape[sample->ndim - 1];
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
    if (emit(tap, user, "tap.time_proj", &sinus, c->temporal) || emit(tap, user, "tap.time_embedding", &temb, c->temporal)) goto done;
    // ---- (B,C,F,H,W) -> (B,F,H,W,C), then conv_in
    if (tensor_alloc_v(&x, 5, B, F, H, W, Cin)) goto done;
    transpose_bc(x.data, sample->data, B, Cin, F * H * W, 1);
    if (conv_block_forward(&s.h, &x, pt, "conv_in", &d, &conv3)) goto done;
    tensor_free(&x);
    if (push_skip(&s) || emit(tap, user, "tap.conv_in", &s.h, c->temporal)) goto done;
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
        if (emit(tap, user, name, &s.h, c->temporal)) goto done;
    }
    // ---- mid block: resnet, transformer, resnet
    if (resnet_forward(&next, &s.h, temb.data, pt, "mid_block.resnets_0", &d)) goto done;
    set_h(&s, &next);
    if (transformer_forward(&next, &s.h, context->data, pt, "mid_block.attentions_0", (size_t)c->heads[nb - 1], &d)) goto done;
    set_h(&s, &next);
    if (resnet_forward(&next, &s.h, temb.data, pt, "mid_block.resnets_1", &d)) goto done;
    set_h(&s, &next);
    if (emit(tap, user, "tap.mid_block", &s.h, c->temporal)) goto done;
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
        if (emit(tap, user, name, &s.h, c->temporal)) goto done;
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
    if (emit(tap, user, "tap.conv_out", &next, c->temporal)) goto done;
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

// ---------------------------------------------------------------------------------------
// Backward (SPEC.md section 5.5). The forward is run as a tape of stages, each keeping its input
// (the activations at block granularity, the skips included); the backward walks the tape in
// reverse, each block recomputing its internals from its stored input (ref/blocks.c).

int unet_grads_alloc(ParamTable *g, const ParamTable *p) {
    size_t i;
    params_init(g);
    for (i = 0; i < p->count; i++)
        if (params_add(g, p->p[i].t.ndim, p->p[i].t.shape, "%s", p->p[i].name)) { free_params(g); return MV_ERR; }
    if (params_alloc(g)) { free_params(g); return MV_ERR; }
    return MV_OK;
}

static real *gslot_unet(const ParamTable *pt, ParamTable *gt, const real *w) {
    return gt && w ? gt->arena + (w - pt->arena) : NULL;
}

enum { ST_CONV, ST_RESNET, ST_TRANSFORMER, ST_PUSH, ST_CONCAT, ST_UPSAMPLE, ST_OUTNORM };

typedef struct {
    int kind;
    char name[64];
    const Conv2dGeom *g; // ST_CONV
    size_t heads;        // ST_TRANSFORMER
    int skip;            // ST_CONCAT: the index of the ST_PUSH stage it pops
    size_t Ca;           // ST_CONCAT: channels of the hidden state (the skip's follow)
    int ckpt;            // the forward keeps this stage's input (every stage unless recomputing)
    Tensor in;           // the stage's input (ST_PUSH: the skip)
} Stage;

struct UNetTape {
    UNetConfig c;
    BlockDims d;
    ParamTable *pt;
    Stage *st;
    int n;
    int recompute;           // 1: only checkpoints are kept; segments are re-run in the backward
    size_t H, W;             // the sample's latent size
    size_t held, peak;       // bytes of activations the tape holds now / at most
    Tensor sinus, temb, ctx; // (B,c0) (B,4c0) (B,T,Cctx)
};

// Stages that read their input in the backward (PUSH and CONCAT only route gradients).
static int needs_input(const Stage *s) { return s->kind != ST_PUSH && s->kind != ST_CONCAT; }

// Move *t into the tape's slot *slot (the tape now holds it) / release a slot.
static void tape_keep(UNetTape *tp, Tensor *slot, Tensor *t) {
    *slot = *t;
    memset(t, 0, sizeof *t);
    tp->held += slot->numel * sizeof(real);
    if (tp->held > tp->peak) tp->peak = tp->held;
}
static void tape_drop(UNetTape *tp, Tensor *slot) {
    if (slot->data) tp->held -= slot->numel * sizeof(real);
    tensor_free(slot);
}

// Which stage inputs the forward keeps. All of them by default; with recompute, the input of
// every k-th stage that reads one (k = ceil(sqrt(count)), the first stage included): the
// checkpoints. The skips are kept either way (until the CONCAT that takes them has run for
// the last time), so a segment between two checkpoints can be re-run on its own.
static void tape_plan(UNetTape *tp, int recompute) {
    int i, m = 0, k = 1, count = 0;
    tp->recompute = recompute;
    for (i = 0; i < tp->n; i++) count += needs_input(&tp->st[i]);
    while (recompute && k * k < count) k++;
    for (i = 0; i < tp->n; i++) {
        Stage *s = &tp->st[i];
        s->ckpt = !recompute;
        if (needs_input(s)) s->ckpt = m++ % k == 0;
    }
}

static const Conv2dGeom T_CONV3 = {3, 3, 1, 1, 1, 1, 1}, T_DOWN3 = {3, 3, 2, 1, 1, 1, 1};

static Stage *tape_add(UNetTape *tp, int kind, const char *fmt, int i, int j) {
    Stage *s = &tp->st[tp->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    if (fmt) snprintf(s->name, sizeof s->name, fmt, i, j);
    return s;
}

// The stage list of the configuration (the order of unet_forward).
static int tape_build(UNetTape *tp) {
    const UNetConfig *c = &tp->c;
    int nb = c->n_blocks, L = c->layers_per_block, i, j, stack[MAX_SKIPS], ns = 0, cap = 8 + nb * (4 * L + 4) + nb * (3 * (L + 1) + 2);
    Stage *s;
    tp->st = (Stage *)mv_calloc((size_t)cap, sizeof(Stage), "UNet tape");
    if (!tp->st) return MV_ERR;
    tp->n = 0;
    s = tape_add(tp, ST_CONV, "conv_in", 0, 0); s->g = &T_CONV3;
#define PUSH() (stack[ns++] = tp->n, tape_add(tp, ST_PUSH, NULL, 0, 0))
    PUSH();
    for (i = 0; i < nb; i++) {
        for (j = 0; j < L; j++) {
            tape_add(tp, ST_RESNET, "down_blocks_%d.resnets_%d", i, j);
            if (c->down_cross[i]) { s = tape_add(tp, ST_TRANSFORMER, "down_blocks_%d.attentions_%d", i, j); s->heads = (size_t)c->heads[i]; }
            PUSH();
        }
        if (i < nb - 1) { s = tape_add(tp, ST_CONV, "down_blocks_%d.downsamplers_0.conv", i, 0); s->g = &T_DOWN3; PUSH(); }
    }
    tape_add(tp, ST_RESNET, "mid_block.resnets_0", 0, 0);
    s = tape_add(tp, ST_TRANSFORMER, "mid_block.attentions_0", 0, 0); s->heads = (size_t)c->heads[nb - 1];
    tape_add(tp, ST_RESNET, "mid_block.resnets_1", 0, 0);
    for (i = 0; i < nb; i++) {
        for (j = 0; j < L + 1; j++) {
            s = tape_add(tp, ST_CONCAT, NULL, 0, 0); s->skip = stack[--ns];
            tape_add(tp, ST_RESNET, "up_blocks_%d.resnets_%d", i, j);
            if (c->up_cross[i]) { s = tape_add(tp, ST_TRANSFORMER, "up_blocks_%d.attentions_%d", i, j); s->heads = (size_t)c->heads[nb - 1 - i]; }
        }
        if (i < nb - 1) { tape_add(tp, ST_UPSAMPLE, NULL, 0, 0); s = tape_add(tp, ST_CONV, "up_blocks_%d.upsamplers_0.conv", i, 0); s->g = &T_CONV3; }
    }
#undef PUSH
    tape_add(tp, ST_OUTNORM, "conv_norm_out", 0, 0);
    s = tape_add(tp, ST_CONV, "conv_out", 0, 0); s->g = &T_CONV3;
    return ns == 0 && tp->n <= cap ? MV_OK : mv_fail("internal: UNet tape inconsistent");
}

void unet_tape_free(UNetTape *tp) {
    int i;
    if (!tp) return;
    for (i = 0; tp->st && i < tp->n; i++) tensor_free(&tp->st[i].in);
    free(tp->st);
    tensor_free(&tp->sinus); tensor_free(&tp->temb); tensor_free(&tp->ctx);
    free(tp);
}

// conv_norm_out's parameters.
static int outnorm_params(ParamTable *pt, size_t c0, const real **gs, const real **gb) {
    Tensor *ts = params_get(pt, "conv_norm_out.scale"), *tb = ts ? params_get(pt, "conv_norm_out.bias") : NULL;
    if (!ts || !tb) return MV_ERR;
    if (tensor_expect_shape(ts, "conv_norm_out.scale", 1, c0) || tensor_expect_shape(tb, "conv_norm_out.bias", 1, c0)) return MV_ERR;
    *gs = ts->data;
    *gb = tb->data;
    return MV_OK;
}

static int temb_params(ParamTable *pt, size_t c0, Tensor **w) {
    static const char *nm[4] = {"time_embedding.linear_1.kernel", "time_embedding.linear_1.bias",
                                "time_embedding.linear_2.kernel", "time_embedding.linear_2.bias"};
    int i;
    for (i = 0; i < 4; i++)
        if (!(w[i] = params_get(pt, nm[i]))) return MV_ERR;
    if (tensor_expect_shape(w[0], nm[0], 2, c0, 4 * c0) || tensor_expect_shape(w[1], nm[1], 1, 4 * c0) ||
        tensor_expect_shape(w[2], nm[2], 2, 4 * c0, 4 * c0) || tensor_expect_shape(w[3], nm[3], 1, 4 * c0))
        return MV_ERR;
    return MV_OK;
}

// The output of one stage that reads an input (CONV, RESNET, TRANSFORMER, UPSAMPLE, OUTNORM),
// allocated in *out.
static int stage_forward(UNetTape *tp, const Stage *s, const Tensor *in, Tensor *out) {
    const BlockDims *d = &tp->d;
    ParamTable *pt = tp->pt;
    size_t c0 = (size_t)tp->c.block_out_channels[0];
    switch (s->kind) {
    case ST_CONV: return conv_block_forward(out, in, pt, s->name, d, s->g);
    case ST_RESNET: return resnet_forward(out, in, tp->temb.data, pt, s->name, d);
    case ST_TRANSFORMER: return transformer_forward(out, in, tp->ctx.data, pt, s->name, s->heads, d);
    case ST_UPSAMPLE:
        if (tensor_alloc_v(out, 5, d->B, d->F, 2 * in->shape[2], 2 * in->shape[3], in->shape[4])) return MV_ERR;
        upsample_nearest2x_forward(out->data, in->data, d->B * d->F, in->shape[2], in->shape[3], in->shape[4]);
        return MV_OK;
    default: { // ST_OUTNORM: silu(GroupNorm(h)), statistics over all frames
        const real *gs, *gb;
        if (outnorm_params(pt, c0, &gs, &gb) || tensor_alloc(out, 5, in->shape)) return MV_ERR;
        groupnorm_forward(out->data, NULL, NULL, in->data, gs, gb, d->B, d->F * in->shape[2] * in->shape[3], c0, 32, 1e-5);
        silu_forward(out->data, out->data, out->numel);
        return MV_OK;
    }
    }
}

// Run stages [from, to) on the hidden state *h (replaced by the state after stage to-1).
// The first run (rerun = 0) keeps the checkpoints' inputs and copies of the skips; a re-run
// of a segment for the backward (rerun = 1) keeps every input it passes. A skip is released
// when the CONCAT that takes it has run for the last time.
static int tape_run(UNetTape *tp, int from, int to, Tensor *h, int rerun) {
    Tensor next;
    int k;
    memset(&next, 0, sizeof next);
    for (k = from; k < to; k++) {
        Stage *s = &tp->st[k];
        if (s->kind == ST_PUSH) { // the skip is a copy: h moves on into the next stage
            if (rerun) continue;  // the copy from the first run is still held, or was used up
            if (tensor_alloc(&next, 5, h->shape)) return MV_ERR;
            memcpy(next.data, h->data, h->numel * sizeof(real));
            tape_keep(tp, &s->in, &next);
            continue;
        }
        if (s->kind == ST_CONCAT) {
            Stage *p = &tp->st[s->skip];
            if (!p->in.data) return mv_fail("internal: UNet tape: skip %d already released", s->skip);
            s->Ca = h->shape[4];
            if (concat_channels(&next, h, &p->in)) return MV_ERR;
            if (rerun || !tp->recompute) tape_drop(tp, &p->in); // not needed again
        } else {
            if (stage_forward(tp, s, h, &next)) return MV_ERR;
            if (rerun || s->ckpt) tape_keep(tp, &s->in, h);
        }
        tensor_free(h);
        *h = next;
        memset(&next, 0, sizeof next);
    }
    return MV_OK;
}

// Recompute mode: give stage k (which reads its input) its input again by re-running the
// forward from the nearest checkpoint before it; every input on the way is kept, so the
// backward walks the segment down to the checkpoint without another re-run.
static int tape_rerun(UNetTape *tp, int k) {
    Tensor h;
    int c = k - 1;
    while (c >= 0 && !(needs_input(&tp->st[c]) && tp->st[c].in.data)) c--;
    if (c < 0) return mv_fail("internal: UNet tape: no checkpoint before stage %d", k);
    memset(&h, 0, sizeof h);
    if (stage_forward(tp, &tp->st[c], &tp->st[c].in, &h) || tape_run(tp, c + 1, k, &h, 1)) {
        tensor_free(&h);
        return mv_fail_prefix("recomputing %s", tp->st[c].name);
    }
    tape_keep(tp, &tp->st[k].in, &h);
    return MV_OK;
}

size_t unet_tape_peak_bytes(const UNetTape *tp) { return tp->peak; }

int unet_tape_forward(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                      ParamTable *pt, const UNetConfig *c) {
    return unet_tape_forward_mode(tape, out, sample, timesteps, context, pt, c, 0);
}

int unet_tape_forward_mode(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps,
                           const Tensor *context, ParamTable *pt, const UNetConfig *c, int recompute) {
    UNetTape *tp;
    Tensor h;
    Tensor *tw[4];
    size_t B, F, H, W, Cin = (size_t)c->in_channels, c0 = (size_t)c->block_out_channels[0];
    int rc = MV_ERR;
    *tape = NULL;
    memset(out, 0, sizeof *out); memset(&h, 0, sizeof h);
    if (unet_check_inputs(sample, timesteps, context, c)) return MV_ERR;
    B = sample->shape[0];
    F = c->temporal ? sample->shape[2] : 1;
    H = sample->shape[sample->ndim - 2];
    W = sample->shape[sample->ndim - 1];
    if (temb_params(pt, c0, tw)) return MV_ERR;
    if (!(tp = (UNetTape *)mv_calloc(1, sizeof *tp, "UNet tape"))) return MV_ERR;
    tp->c = *c;
    tp->pt = pt;
    tp->d.B = B; tp->d.F = F; tp->d.temporal = c->temporal; tp->d.Tctx = context->shape[1]; tp->d.Cctx = context->shape[2];
    tp->d.Ct = 4 * c0; tp->d.gn_eps = 1e-5; tp->d.plain_names = 0;
    tp->H = H; tp->W = W;
    if (tape_build(tp)) goto done;
    tape_plan(tp, recompute);
    if (tensor_alloc(&tp->ctx, 3, context->shape)) goto done;
    memcpy(tp->ctx.data, context->data, context->numel * sizeof(real));
    if (tensor_alloc_v(&tp->sinus, 2, B, c0) || tensor_alloc_v(&tp->temb, 2, B, 4 * c0)) goto done;
    timestep_sinusoid_forward(tp->sinus.data, timesteps->data, B, c0, c->flip_sin_to_cos, (double)c->freq_shift);
    if (timestep_embedding_forward(tp->temb.data, tp->sinus.data, tw[0]->data, tw[1]->data, tw[2]->data, tw[3]->data, B, c0, 4 * c0))
        goto done;
    if (tensor_alloc_v(&h, 5, B, F, H, W, Cin)) goto done;
    transpose_bc(h.data, sample->data, B, Cin, F * H * W, 1);
    if (tape_run(tp, 0, tp->n, &h, 0)) goto done;
    {
        size_t Co = h.shape[4];
        int r = c->temporal ? tensor_alloc_v(out, 5, B, Co, F, H, W) : tensor_alloc_v(out, 4, B, Co, H, W);
        if (r) goto done;
        transpose_bc(out->data, h.data, B, Co, F * H * W, 0);
    }
    rc = MV_OK;
done:
    tensor_free(&h);
    if (rc) { unet_tape_free(tp); return MV_ERR; }
    *tape = tp;
    return MV_OK;
}

int unet_tape_backward(UNetTape *tp, ParamTable *gt, Tensor *d_sample, const Tensor *dout) {
    const UNetConfig *c = &tp->c;
    const BlockDims *d = &tp->d;
    ParamTable *pt = tp->pt;
    Tensor dh, dprev, dtemb, *dskip = NULL;
    Tensor *tw[4];
    size_t B = d->B, F = d->F, c0 = (size_t)c->block_out_channels[0], Co = (size_t)c->out_channels, S, i;
    int k, rc = MV_ERR;
    memset(&dh, 0, sizeof dh); memset(&dprev, 0, sizeof dprev); memset(&dtemb, 0, sizeof dtemb);
    if (d_sample) memset(d_sample, 0, sizeof *d_sample);
    if (gt && gt->numel != pt->numel) return mv_fail("gradient table of %lu values for %lu parameters", (unsigned long)gt->numel, (unsigned long)pt->numel);
    S = tp->H * tp->W;
    if (dout->numel != B * Co * F * S || dout->ndim != (c->temporal ? 5 : 4))
        return mv_fail("dout must have the output's shape (B, %lu, %sH, W)", (unsigned long)Co, c->temporal ? "F, " : "");
    if (tensor_alloc_v(&dh, 5, B, F, tp->H, tp->W, Co)) return MV_ERR;
    transpose_bc(dh.data, dout->data, B, Co, F * S, 1);
    if (temb_params(pt, c0, tw) || tensor_alloc_v(&dtemb, 2, B, 4 * c0)) goto done;
    if (!(dskip = (Tensor *)mv_calloc((size_t)tp->n, sizeof(Tensor), "skip gradients"))) goto done;
    for (k = tp->n - 1; k >= 0; k--) {
        Stage *s = &tp->st[k];
        if (needs_input(s) && !s->in.data && tape_rerun(tp, k)) goto done; // recompute mode
        if (s->kind == ST_PUSH) { // forward was: skip = h (h also flows on)
            if (dskip[k].data)
                for (i = 0; i < dh.numel; i++) dh.data[i] += dskip[k].data[i];
            tensor_free(&dskip[k]);
            continue;
        }
        if (s->kind == ST_CONCAT) { // forward was: h = [h | skip] along channels
            size_t Ca = s->Ca, Cab = dh.shape[4], Cb = Cab - Ca, n = dh.numel / Cab;
            if (tensor_alloc_v(&dprev, 5, B, F, dh.shape[2], dh.shape[3], Ca) ||
                tensor_alloc_v(&dskip[s->skip], 5, B, F, dh.shape[2], dh.shape[3], Cb))
                goto done;
            for (i = 0; i < n; i++) {
                memcpy(dprev.data + i * Ca, dh.data + i * Cab, Ca * sizeof(real));
                memcpy(dskip[s->skip].data + i * Cb, dh.data + i * Cab + Ca, Cb * sizeof(real));
            }
            tape_drop(tp, &tp->st[s->skip].in); // recompute mode: no re-run reaches this CONCAT any more
        } else {
            if (tensor_alloc(&dprev, 5, s->in.shape)) goto done;
            switch (s->kind) {
            case ST_CONV:
                if (conv_block_backward(dprev.data, dh.data, &s->in, pt, gt, s->name, d, s->g)) goto done;
                break;
            case ST_RESNET:
                if (resnet_backward(dprev.data, dtemb.data, dh.data, &s->in, tp->temb.data, pt, gt, s->name, d)) goto done;
                break;
            case ST_TRANSFORMER:
                if (transformer_backward(dprev.data, NULL, dh.data, &s->in, tp->ctx.data, pt, gt, s->name, s->heads, d)) goto done;
                break;
            case ST_UPSAMPLE:
                upsample_nearest2x_backward(dprev.data, dh.data, B * F, s->in.shape[2], s->in.shape[3], s->in.shape[4]);
                break;
            default: { // ST_OUTNORM. forward was: y = silu(a), a = GN(h)
                const real *gs, *gb;
                real *stat;
                Tensor a, da;
                size_t Sx = F * s->in.shape[2] * s->in.shape[3];
                if (outnorm_params(pt, c0, &gs, &gb)) goto done;
                if (!(stat = (real *)mv_calloc(2 * B * 32, sizeof(real), "norm statistics"))) goto done;
                if (tensor_alloc(&a, 5, s->in.shape)) { free(stat); goto done; }
                if (tensor_alloc(&da, 5, s->in.shape)) { free(stat); tensor_free(&a); goto done; }
                groupnorm_forward(a.data, stat, stat + B * 32, s->in.data, gs, gb, B, Sx, c0, 32, 1e-5);
                silu_backward(da.data, dh.data, a.data, a.numel);
                groupnorm_backward(dprev.data, gslot_unet(pt, gt, gs), gslot_unet(pt, gt, gb), da.data, s->in.data, gs, stat,
                                   stat + B * 32, B, Sx, c0, 32);
                free(stat); tensor_free(&a); tensor_free(&da);
            }
            }
        }
        tape_drop(tp, &s->in);
        tensor_free(&dh);
        dh = dprev;
        memset(&dprev, 0, sizeof dprev);
    }
    // the time embedding MLP (the sinusoid of the integer timestep ends the chain)
    if (gt && timestep_embedding_backward(NULL, gslot_unet(pt, gt, tw[0]->data), gslot_unet(pt, gt, tw[1]->data),
                                          gslot_unet(pt, gt, tw[2]->data), gslot_unet(pt, gt, tw[3]->data), dtemb.data,
                                          tp->sinus.data, tw[0]->data, tw[1]->data, tw[2]->data, B, c0, 4 * c0))
        goto done;
    if (d_sample) { // dh is the gradient of the channels-last input (B,F,H,W,Cin)
        size_t Cin = dh.shape[4], H = dh.shape[2], W = dh.shape[3];
        int r = c->temporal ? tensor_alloc_v(d_sample, 5, B, Cin, F, H, W) : tensor_alloc_v(d_sample, 4, B, Cin, H, W);
        if (r) goto done;
        transpose_bc(d_sample->data, dh.data, B, Cin, F * H * W, 0);
    }
    rc = MV_OK;
done:
    for (k = 0; dskip && k < tp->n; k++) tensor_free(&dskip[k]);
    free(dskip);
    tensor_free(&dh); tensor_free(&dprev); tensor_free(&dtemb);
    return rc;
}

int unet_backward(ParamTable *gt, Tensor *d_sample, Tensor *out, const Tensor *dout, const Tensor *sample,
                  const Tensor *timesteps, const Tensor *context, ParamTable *pt, const UNetConfig *c) {
    UNetTape *tp;
    Tensor y;
    int rc;
    if (unet_tape_forward(&tp, &y, sample, timesteps, context, pt, c)) return MV_ERR;
    rc = unet_tape_backward(tp, gt, d_sample, dout);
    unet_tape_free(tp);
    if (out && rc == MV_OK) *out = y;
    else tensor_free(&y);
    return rc;
}
