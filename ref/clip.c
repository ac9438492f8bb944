// clip.c: FlaxCLIPTextTransformer (transformers modeling_flax_clip.py), pre-LN:
//   h = token_embedding[ids] + position_embedding[0..T)
//   for each layer:  h = h + out_proj(causal_attention(LN1(h)))     q,k,v,out Dense with bias
//                    h = h + fc2(quick_gelu(fc1(LN2(h))))
//   out = final_layer_norm(h)
// The causal mask of FlaxCLIPAttention adds finfo.min to the scores of later keys, whose
// exponentials are then exactly zero: the same as attending to keys 0..i only.
#include "clip.h"
#include "activations.h"
#include "attention.h"
#include "layernorm.h"
#include "linear.h"

#include <stdio.h>
#include <string.h>

void clip_config_default(ClipConfig *c) {
    c->vocab = 49408;
    c->width = 768;
    c->layers = 12;
    c->heads = 12;
    c->mlp = 3072;
    c->max_pos = 77;
    c->eps = 1e-5;
}

int clip_config_check(const ClipConfig *c) {
    if (c->vocab < 1 || c->width < 1 || c->layers < 1 || c->heads < 1 || c->mlp < 1 || c->max_pos < 1)
        return mv_fail("CLIP configuration sizes must be positive");
    if (c->width % c->heads) return mv_fail("CLIP width %d is not divisible by %d heads", c->width, c->heads);
    return MV_OK;
}

#define SHAPE(...) (const size_t[]){__VA_ARGS__}

static int decl_dense(ParamTable *pt, const char *name, size_t in, size_t out) {
    return params_add(pt, 2, SHAPE(in, out), "%s.kernel", name) || params_add(pt, 1, SHAPE(out), "%s.bias", name);
}
static int decl_norm(ParamTable *pt, const char *name, size_t c) {
    return params_add(pt, 1, SHAPE(c), "%s.scale", name) || params_add(pt, 1, SHAPE(c), "%s.bias", name);
}

int clip_declare_params(ParamTable *pt, const ClipConfig *c) {
    size_t W = (size_t)c->width, M = (size_t)c->mlp;
    char n[256];
    int i, k;
    static const char *proj[4] = {"k_proj", "v_proj", "q_proj", "out_proj"};
    if (clip_config_check(c)) return MV_ERR;
    if (params_add(pt, 2, SHAPE((size_t)c->vocab, W), "text_model.embeddings.token_embedding.embedding") ||
        params_add(pt, 2, SHAPE((size_t)c->max_pos, W), "text_model.embeddings.position_embedding.embedding"))
        return MV_ERR;
    for (i = 0; i < c->layers; i++) {
        for (k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "text_model.encoder.layers.%d.self_attn.%s", i, proj[k]);
            if (decl_dense(pt, n, W, W)) return MV_ERR;
        }
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm1", i);
        if (decl_norm(pt, n, W)) return MV_ERR;
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.mlp.fc1", i);
        if (decl_dense(pt, n, W, M)) return MV_ERR;
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.mlp.fc2", i);
        if (decl_dense(pt, n, M, W)) return MV_ERR;
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.layer_norm2", i);
        if (decl_norm(pt, n, W)) return MV_ERR;
    }
    return decl_norm(pt, "text_model.final_layer_norm", W);
}

static const real *cparam(ParamTable *pt, const char *fmt, int layer, const char *leaf) {
    char n[256], full[300];
    Tensor *t;
    snprintf(n, sizeof n, fmt, layer);
    snprintf(full, sizeof full, "%s.%s", n, leaf);
    t = params_get(pt, full);
    return t ? t->data : NULL;
}

int clip_text_forward(Tensor *out, const int64_t *ids, size_t B, size_t T, ParamTable *pt, const ClipConfig *c) {
    size_t W = (size_t)c->width, M = (size_t)c->mlp, N = B * T, b, t, i;
    const real *tok, *pos;
    Tensor n, a, m;
    Tensor *te, *pe;
    int l, rc = MV_ERR;
    memset(out, 0, sizeof *out);
    memset(&n, 0, sizeof n); memset(&a, 0, sizeof a); memset(&m, 0, sizeof m);
    if (clip_config_check(c)) return MV_ERR;
    if (T == 0 || T > (size_t)c->max_pos || B == 0)
        return mv_fail("CLIP text encoder: %lu tokens per prompt, expected 1..%d", (unsigned long)T, c->max_pos);
    for (i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return mv_fail("CLIP text encoder: token id %lld at position %lu is outside the vocabulary 0..%d",
                           (long long)ids[i], (unsigned long)i, c->vocab - 1);
    if (!(te = params_get(pt, "text_model.embeddings.token_embedding.embedding")) ||
        !(pe = params_get(pt, "text_model.embeddings.position_embedding.embedding")) ||
        tensor_expect_shape(te, "token_embedding", 2, (size_t)c->vocab, W) ||
        tensor_expect_shape(pe, "position_embedding", 2, (size_t)c->max_pos, W))
        return MV_ERR;
    tok = te->data;
    pos = pe->data;
    if (tensor_alloc_v(out, 3, B, T, W) || tensor_alloc_v(&n, 3, B, T, W) || tensor_alloc_v(&a, 3, B, T, W) ||
        tensor_alloc_v(&m, 3, B, T, M))
        goto done;
    for (b = 0; b < B; b++)
        for (t = 0; t < T; t++) {
            real *h = out->data + (b * T + t) * W; // (W)
            const real *e = tok + (size_t)ids[b * T + t] * W, *p = pos + t * W;
            for (i = 0; i < W; i++) h[i] = e[i] + p[i];
        }
    for (l = 0; l < c->layers; l++) {
        const real *ln1s = cparam(pt, "text_model.encoder.layers.%d.layer_norm1", l, "scale"),
                   *ln1b = cparam(pt, "text_model.encoder.layers.%d.layer_norm1", l, "bias"),
                   *ln2s = cparam(pt, "text_model.encoder.layers.%d.layer_norm2", l, "scale"),
                   *ln2b = cparam(pt, "text_model.encoder.layers.%d.layer_norm2", l, "bias"),
                   *f1k = cparam(pt, "text_model.encoder.layers.%d.mlp.fc1", l, "kernel"),
                   *f1b = cparam(pt, "text_model.encoder.layers.%d.mlp.fc1", l, "bias"),
                   *f2k = cparam(pt, "text_model.encoder.layers.%d.mlp.fc2", l, "kernel"),
                   *f2b = cparam(pt, "text_model.encoder.layers.%d.mlp.fc2", l, "bias");
        AttnWeights w;
        memset(&w, 0, sizeof w);
        w.wq = cparam(pt, "text_model.encoder.layers.%d.self_attn.q_proj", l, "kernel");
        w.bq = cparam(pt, "text_model.encoder.layers.%d.self_attn.q_proj", l, "bias");
        w.wk = cparam(pt, "text_model.encoder.layers.%d.self_attn.k_proj", l, "kernel");
        w.bk = cparam(pt, "text_model.encoder.layers.%d.self_attn.k_proj", l, "bias");
        w.wv = cparam(pt, "text_model.encoder.layers.%d.self_attn.v_proj", l, "kernel");
        w.bv = cparam(pt, "text_model.encoder.layers.%d.self_attn.v_proj", l, "bias");
        w.wo = cparam(pt, "text_model.encoder.layers.%d.self_attn.out_proj", l, "kernel");
        w.bo = cparam(pt, "text_model.encoder.layers.%d.self_attn.out_proj", l, "bias");
        if (!ln1s || !ln1b || !ln2s || !ln2b || !f1k || !f1b || !f2k || !f2b || !w.wq || !w.bq || !w.wk || !w.bk ||
            !w.wv || !w.bv || !w.wo || !w.bo)
            goto done;
        w.Cq = w.Ckv = W;
        w.heads = (size_t)c->heads;
        w.dim_head = W / w.heads;
        w.causal = 1;
        layernorm_forward(n.data, NULL, NULL, out->data, ln1s, ln1b, N, W, c->eps);
        if (attention_self_forward(a.data, n.data, &w, B, T)) goto done;
        for (i = 0; i < N * W; i++) out->data[i] += a.data[i];
        layernorm_forward(n.data, NULL, NULL, out->data, ln2s, ln2b, N, W, c->eps);
        linear_forward(m.data, n.data, f1k, f1b, N, W, M);
        quick_gelu_forward(m.data, m.data, N * M);
        linear_forward(a.data, m.data, f2k, f2b, N, M, W);
        for (i = 0; i < N * W; i++) out->data[i] += a.data[i];
    }
    {
        Tensor *fs = params_get(pt, "text_model.final_layer_norm.scale");
        Tensor *fb = fs ? params_get(pt, "text_model.final_layer_norm.bias") : NULL;
        if (!fs || !fb) goto done;
        layernorm_forward(out->data, NULL, NULL, out->data, fs->data, fb->data, N, W, c->eps);
    }
    rc = MV_OK;
done:
    tensor_free(&n); tensor_free(&a); tensor_free(&m);
    if (rc) { mv_fail_prefix("CLIP text encoder"); tensor_free(out); }
    return rc;
}
