// clip.h: the CLIP ViT-L/14 text transformer as transformers' FlaxCLIPTextModel computes it,
// returning the last hidden state after the final LayerNorm (what SD conditions on).
#ifndef MAVREF_CLIP_H
#define MAVREF_CLIP_H

#include "params.h"

typedef struct {
    int vocab;        // 49408
    int width;        // hidden_size 768
    int layers;       // 12
    int heads;        // 12
    int mlp;          // intermediate_size 3072
    int max_pos;      // max_position_embeddings 77
    double eps;       // layer_norm_eps 1e-5
} ClipConfig;

void clip_config_default(ClipConfig *c);
int clip_config_check(const ClipConfig *c);
// Parameters named text_model.embeddings.token_embedding.embedding, ...
// text_model.encoder.layers.<i>.self_attn.{q,k,v,out}_proj.{kernel,bias}, layer_norm1/2,
// mlp.fc1/fc2, text_model.final_layer_norm (the Flax paths joined with '.').
int clip_declare_params(ParamTable *pt, const ClipConfig *c);
// ids (B, T) with 0 <= id < vocab and T <= max_pos -> out (B, T, width), allocated here.
int clip_text_forward(Tensor *out, const int64_t *ids, size_t B, size_t T, ParamTable *pt, const ClipConfig *c);

#endif
