// unet_config.c: the UNet's configuration: the makeavid defaults, a diffusers-style
// config.json read over them, and the checks that a configuration is one mavref can build.
//
// The file is read whole (configs are a few hundred bytes; more than 64 MiB is refused), then
// parsed with ref/json.c. No other reader in ref/ reads a whole text file, so the small reader
// lives here.
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
            if (!nb) { free(buf); buf = NULL; mv_fail_oom("%s: out of memory", path); break; }
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
