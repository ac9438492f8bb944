// model_dir.c: a published model folder (see model_dir.h).
#include "model_dir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_map.h"
#include "json.h"

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int md_weights_path(char *out, size_t cap, const char *dir, const char *sub) {
    static const char *const unet[] = {"diffusion_flax_model.msgpack", "diffusion_pytorch_model.bin",
                                       "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.bin",
                                       "diffusion_pytorch_model.fp16.safetensors", NULL};
    static const char *const vae[] = {"diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors",
                                      "diffusion_flax_model.msgpack", "diffusion_pytorch_model.fp16.bin",
                                      "diffusion_pytorch_model.fp16.safetensors", NULL};
    static const char *const clip[] = {"pytorch_model.bin", "model.safetensors", "flax_model.msgpack",
                                       "pytorch_model.fp16.bin", "model.fp16.safetensors", NULL};
    const char *const *names = !strcmp(sub, "unet") ? unet : !strcmp(sub, "vae") ? vae : clip;
    int i;
    for (i = 0; names[i]; i++) {
        if ((size_t)snprintf(out, cap, "%s/%s/%s", dir, sub, names[i]) >= cap) return mv_fail("%s: path too long", dir);
        if (is_file(out)) return MV_OK;
    }
    return mv_fail("%s/%s: no weight file (%s, %s, ...)", dir, sub, names[0], names[1]);
}

// ---------------------------------------------------------------------------------------
// config.json readers

static int read_json(JsonValue *root, const char *path) {
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;
    int rc;
    if (!fp) return mv_fail("%s: cannot open for reading", path);
    if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || n > (1L << 20) || fseek(fp, 0, SEEK_SET)) {
        fclose(fp);
        return mv_fail("%s: unreadable, or larger than 1 MiB (not a config)", path);
    }
    buf = (char *)mv_malloc((size_t)n + 1, path);
    if (!buf) { fclose(fp); return MV_ERR; }
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) { fclose(fp); free(buf); return mv_fail("%s: read error", path); }
    fclose(fp);
    rc = json_parse(root, buf, (size_t)n);
    free(buf);
    if (rc) return mv_fail_prefix("%s", path);
    if (root->type != JSON_OBJECT) { json_free(root); return mv_fail("%s: not a JSON object", path); }
    return MV_OK;
}

static int want_int(const JsonValue *root, const char *key, int *out, const char *path) {
    const JsonValue *v = json_get(root, key);
    if (!v) return MV_OK;
    if (v->type != JSON_NUMBER || !(v->number >= 0 && v->number <= 1e8) || v->number != (double)(int)v->number)
        return mv_fail("%s: \"%s\" must be a non-negative integer", path, key);
    *out = (int)v->number;
    return MV_OK;
}

static int want_num(const JsonValue *root, const char *key, double *out, const char *path) {
    const JsonValue *v = json_get(root, key);
    if (!v) return MV_OK;
    if (v->type != JSON_NUMBER) return mv_fail("%s: \"%s\" must be a number", path, key);
    *out = v->number;
    return MV_OK;
}

// key absent, or a string equal to one of the allowed values
static int want_str(const JsonValue *root, const char *key, const char *a, const char *b, const char *path) {
    const JsonValue *v = json_get(root, key);
    if (!v) return MV_OK;
    if (v->type == JSON_STRING && (!strcmp(v->text, a) || (b && !strcmp(v->text, b)))) return MV_OK;
    return mv_fail("%s: \"%s\" is %s%s%s; mavref supports only \"%s\"%s%s%s", path, key, v->type == JSON_STRING ? "\"" : "a ",
                   v->type == JSON_STRING ? v->text : json_type_name(v->type), v->type == JSON_STRING ? "\"" : "", a,
                   b ? " and \"" : "", b ? b : "", b ? "\"" : "");
}

static int want_bool(const JsonValue *root, const char *key, int *out, int required, const char *path) {
    const JsonValue *v = json_get(root, key);
    if (!v) return MV_OK;
    if (v->type != JSON_BOOL) return mv_fail("%s: \"%s\" must be true or false", path, key);
    if (required >= 0 && v->boolean != required)
        return mv_fail("%s: \"%s\" is %s; mavref supports only %s", path, key, v->boolean ? "true" : "false", required ? "true" : "false");
    if (out) *out = v->boolean;
    return MV_OK;
}

int vae_config_load(VAEConfig *c, const char *path) {
    JsonValue root;
    const JsonValue *v;
    size_t i;
    int rc = MV_ERR, groups = 32;
    if (read_json(&root, path)) return MV_ERR;
    if (want_int(&root, "in_channels", &c->in_channels, path) || want_int(&root, "out_channels", &c->out_channels, path) ||
        want_int(&root, "latent_channels", &c->latent_channels, path) ||
        want_int(&root, "layers_per_block", &c->layers_per_block, path) ||
        want_num(&root, "scaling_factor", &c->scaling_factor, path) || want_int(&root, "norm_num_groups", &groups, path) ||
        want_str(&root, "act_fn", "silu", NULL, path))
        goto done;
    if (groups != 32) { mv_fail("%s: \"norm_num_groups\" is %d; mavref supports only 32", path, groups); goto done; }
    if ((v = json_get(&root, "block_out_channels")) != NULL) {
        if (v->type != JSON_ARRAY || v->count == 0 || v->count > VAE_MAX_BLOCKS) {
            mv_fail("%s: \"block_out_channels\" must be a list of 1..%d integers", path, VAE_MAX_BLOCKS);
            goto done;
        }
        for (i = 0; i < v->count; i++) {
            const JsonValue *e = &v->items[i];
            if (e->type != JSON_NUMBER || !(e->number > 0 && e->number <= 1e6) || e->number != (double)(int)e->number) {
                mv_fail("%s: \"block_out_channels\"[%lu] must be a positive integer", path, (unsigned long)i);
                goto done;
            }
            c->block_out_channels[i] = (int)e->number;
        }
        c->n_blocks = (int)v->count;
    }
    {
        static const char *const keys[2] = {"down_block_types", "up_block_types"};
        static const char *const types[2] = {"DownEncoderBlock2D", "UpDecoderBlock2D"};
        int k;
        for (k = 0; k < 2; k++)
            if ((v = json_get(&root, keys[k])) != NULL) {
                if (v->type != JSON_ARRAY || (int)v->count != c->n_blocks) {
                    mv_fail("%s: \"%s\" must list %d block types", path, keys[k], c->n_blocks);
                    goto done;
                }
                for (i = 0; i < v->count; i++)
                    if (v->items[i].type != JSON_STRING || strcmp(v->items[i].text, types[k])) {
                        mv_fail("%s: \"%s\"[%lu]: mavref supports only %s", path, keys[k], (unsigned long)i, types[k]);
                        goto done;
                    }
            }
    }
    if (vae_config_check(c)) { mv_fail_prefix("%s", path); goto done; }
    rc = MV_OK;
done:
    json_free(&root);
    return rc;
}

int clip_config_load(ClipConfig *c, const char *path) {
    JsonValue root;
    int rc = MV_ERR;
    if (read_json(&root, path)) return MV_ERR;
    if (want_int(&root, "vocab_size", &c->vocab, path) || want_int(&root, "hidden_size", &c->width, path) ||
        want_int(&root, "num_hidden_layers", &c->layers, path) || want_int(&root, "num_attention_heads", &c->heads, path) ||
        want_int(&root, "intermediate_size", &c->mlp, path) || want_int(&root, "max_position_embeddings", &c->max_pos, path) ||
        want_num(&root, "layer_norm_eps", &c->eps, path) || want_str(&root, "hidden_act", "quick_gelu", NULL, path))
        goto done;
    if (clip_config_check(c)) { mv_fail_prefix("%s", path); goto done; }
    rc = MV_OK;
done:
    json_free(&root);
    return rc;
}

int sched_config_load(SchedConfig *c, const char *path) {
    // keys that change nothing mavref computes (bookkeeping, or PNDM's own switches)
    static const char *const ignored[] = {"_class_name", "_diffusers_version", "skip_prk_steps", "clip_sample_range",
                                          "sample_max_value", "dynamic_thresholding_ratio", "lower_order_final",
                                          "solver_order", "algorithm_type", "solver_type", "use_karras_sigmas", NULL};
    static const char *const handled[] = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset",
                                          "set_alpha_to_one", "prediction_type", "trained_betas", "clip_sample",
                                          "thresholding", "timestep_spacing", NULL};
    JsonValue root;
    const JsonValue *v;
    size_t i;
    int rc = MV_ERR, k;
    sched_config_sd(c);
    if (read_json(&root, path)) return MV_ERR;
    for (i = 0; i < root.count; i++) {
        int known = 0;
        for (k = 0; ignored[k] && !known; k++) known = !strcmp(root.keys[i], ignored[k]);
        for (k = 0; handled[k] && !known; k++) known = !strcmp(root.keys[i], handled[k]);
        if (!known) { mv_fail("%s: \"%s\" is not a scheduler setting mavref knows", path, root.keys[i]); goto done; }
    }
    if (want_int(&root, "num_train_timesteps", &c->num_train_timesteps, path) || want_num(&root, "beta_start", &c->beta_start, path) ||
        want_num(&root, "beta_end", &c->beta_end, path) || want_str(&root, "beta_schedule", "scaled_linear", NULL, path) ||
        want_int(&root, "steps_offset", &c->steps_offset, path) || want_bool(&root, "set_alpha_to_one", &c->set_alpha_to_one, -1, path) ||
        want_str(&root, "prediction_type", "epsilon", "v_prediction", path) || want_bool(&root, "clip_sample", NULL, 0, path) ||
        want_bool(&root, "thresholding", NULL, 0, path) || want_str(&root, "timestep_spacing", "leading", NULL, path))
        goto done;
    if ((v = json_get(&root, "prediction_type")) != NULL) c->v_prediction = !strcmp(v->text, "v_prediction");
    if ((v = json_get(&root, "trained_betas")) != NULL && v->type != JSON_NULL) {
        mv_fail("%s: \"trained_betas\" is set; mavref supports only the scaled_linear schedule", path);
        goto done;
    }
    if (c->num_train_timesteps < 2 || !(c->beta_start > 0 && c->beta_end > c->beta_start && c->beta_end < 1)) {
        mv_fail("%s: num_train_timesteps, beta_start and beta_end are out of range", path);
        goto done;
    }
    rc = MV_OK;
done:
    json_free(&root);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Components

int md_load_weights(ParamTable *pt, const char *file, int transformers_names) {
    CkmFile f;
    CkmOptions o;
    int rc;
    memset(&o, 0, sizeof o);
    o.family = transformers_names ? CKM_TRANSFORMERS : CKM_DIFFUSERS;
    if (ckm_open(&f, file)) return MV_ERR;
    rc = ckm_load(pt, &f.src, &o);
    ckm_close(&f);
    return rc;
}

int md_load_ldm(ParamTable *pt, const char *file, char component, int layers, int blocks) {
    CkmFile f;
    CkmOptions o;
    int rc;
    memset(&o, 0, sizeof o);
    o.family = component == 'c' ? CKM_TRANSFORMERS : CKM_DIFFUSERS;
    o.ldm = component;
    o.ldm_layers = layers;
    o.ldm_blocks = blocks;
    if (ckm_open(&f, file)) return MV_ERR;
    rc = ckm_load(pt, &f.src, &o);
    ckm_close(&f);
    return rc;
}

static int sub_path(char *out, size_t cap, const char *dir, const char *sub, const char *name) {
    if ((size_t)snprintf(out, cap, "%s/%s/%s", dir, sub, name) >= cap) return mv_fail("%s: path too long", dir);
    return MV_OK;
}

int md_load_unet(ParamTable *pt, UNetConfig *c, const char *dir, int temporal) {
    char cfg[4096], w[4096];
    unet_config_default(c);
    c->temporal = temporal;
    params_init(pt);
    if (sub_path(cfg, sizeof cfg, dir, "unet", "config.json") || unet_config_load(c, cfg) ||
        md_weights_path(w, sizeof w, dir, "unet") || unet_declare_params(pt, c) || md_load_weights(pt, w, 0)) {
        free_params(pt);
        return MV_ERR;
    }
    return MV_OK;
}

int md_load_vae(ParamTable *pt, VAEConfig *c, const char *dir) {
    char cfg[4096], w[4096];
    vae_config_default(c);
    params_init(pt);
    if (sub_path(cfg, sizeof cfg, dir, "vae", "config.json") || vae_config_load(c, cfg) ||
        md_weights_path(w, sizeof w, dir, "vae") || vae_declare_params(pt, c) || md_load_weights(pt, w, 0)) {
        free_params(pt);
        return MV_ERR;
    }
    return MV_OK;
}

int md_load_clip(ParamTable *pt, ClipConfig *c, const char *dir) {
    char cfg[4096], w[4096];
    clip_config_default(c);
    params_init(pt);
    if (sub_path(cfg, sizeof cfg, dir, "text_encoder", "config.json") || clip_config_load(c, cfg) ||
        md_weights_path(w, sizeof w, dir, "text_encoder") || clip_declare_params(pt, c) || md_load_weights(pt, w, 1)) {
        free_params(pt);
        return MV_ERR;
    }
    return MV_OK;
}

int md_load_tokenizer(Tokenizer *t, const char *dir) {
    char v[4096], m[4096];
    if (sub_path(v, sizeof v, dir, "tokenizer", "vocab.json") || sub_path(m, sizeof m, dir, "tokenizer", "merges.txt")) return MV_ERR;
    return build_tokenizer_hf(t, v, m);
}

int md_load_hint_unet(ParamTable *pt, UNetConfig *c, const char *dir_or_file) {
    if (is_dir(dir_or_file)) return md_load_unet(pt, c, dir_or_file, 0);
    c->temporal = 0;
    params_init(pt);
    if (unet_declare_params(pt, c) || md_load_ldm(pt, dir_or_file, 'u', c->layers_per_block, c->n_blocks)) {
        free_params(pt);
        return MV_ERR;
    }
    return MV_OK;
}

int md_load_scheduler(SchedConfig *c, const char *dir) {
    char path[4096];
    if (sub_path(path, sizeof path, dir, "scheduler", "scheduler_config.json") || sched_config_load(c, path)) return MV_ERR;
    return MV_OK;
}
