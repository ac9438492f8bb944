// ops_vae.c: corpus runner for the VAE (vectors from diffusers' FlaxAutoencoderKL).
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/unet.h"
#include "../ref/vae.h"

// The VAE of a case: configuration from its metadata, procedural weights (count_key: the
// metadata key holding FlaxAutoencoderKL's parameter count).
static int load_vae(Case *c, VAEConfig *cfg, ParamTable *pt, const char *count_key) {
    const char *boc;
    long L, seed, count;
    vae_config_default(cfg);
    params_init(pt);
    if (!(boc = case_meta_str(c, "block_out_channels")) || case_meta_long(c, "layers_per_block", &L) ||
        case_meta_long(c, "weights_seed", &seed) || case_meta_long(c, count_key, &count))
        return 1;
    cfg->n_blocks = mv_parse_int_list(boc, cfg->block_out_channels, VAE_MAX_BLOCKS);
    cfg->layers_per_block = (int)L;
    if (cfg->n_blocks < 1) { harness_failf(c->name, "bad block_out_channels '%s'", boc); return 1; }
    if (vae_declare_params(pt, cfg) || params_alloc(pt) || params_procedural(pt, (uint64_t)seed)) {
        case_error(c, "VAE parameters");
        free_params(pt);
        return 1;
    }
    if ((long)pt->count != count) {
        harness_failf(c->name, "mavref declares %lu VAE parameters, FlaxAutoencoderKL has %ld", (unsigned long)pt->count, count);
        free_params(pt);
        return 1;
    }
    return 0;
}

int run_vae(Case *c) {
    VAEConfig cfg;
    ParamTable pt;
    Tensor image, latents, mean, logvar, dec;
    int rc = 1;
    if (load_vae(c, &cfg, &pt, "params")) return 1;
    if (case_input(c, "image", &image) == 0) {
        if (vae_encode(&mean, &logvar, &image, &pt, &cfg)) case_error(c, "vae_encode");
        else {
            rc = case_check(c, "mean", &mean) | case_check(c, "logvar", &logvar);
            tensor_free(&mean);
            tensor_free(&logvar);
        }
        tensor_free(&image);
    }
    if (case_input(c, "latents", &latents) == 0) {
        if (vae_decode(&dec, &latents, &pt, &cfg)) { case_error(c, "vae_decode"); rc = 1; }
        else {
            rc |= case_check(c, "decoded", &dec);
            tensor_free(&dec);
        }
        tensor_free(&latents);
    }
    free_params(&pt);
    return rc;
}

// op vae_encode_grad: L = sum(mean * w_mean) + sum(logvar * w_logvar), gradients from jax.vjp.
// op vae_decode_grad: L = sum(decoded * w).
static int vae_grad(Case *c, int encode) {
    VAEConfig cfg;
    ParamTable pt, gt;
    Tensor x, w1, w2, y1, y2, dx;
    int rc = 1;
    memset(&x, 0, sizeof x); memset(&w1, 0, sizeof w1); memset(&w2, 0, sizeof w2);
    memset(&y1, 0, sizeof y1); memset(&y2, 0, sizeof y2); memset(&dx, 0, sizeof dx);
    if (load_vae(c, &cfg, &pt, "param_count")) return 1;
    if (unet_grads_alloc(&gt, &pt)) { free_params(&pt); return case_error(c, "gradient table"); }
    if (encode) {
        if (case_input(c, "image", &x) || case_input(c, "w_mean", &w1) || case_input(c, "w_logvar", &w2)) goto done;
        if (vae_encode(&y1, &y2, &x, &pt, &cfg) || vae_encode_backward(&dx, &w1, &w2, &x, &pt, &gt, &cfg)) {
            case_error(c, "vae_encode_backward");
            goto done;
        }
        rc = case_check(c, "mean", &y1) | case_check(c, "logvar", &y2) | case_check(c, "d_image", &dx);
    } else {
        if (case_input(c, "latents", &x) || case_input(c, "w", &w1)) goto done;
        if (vae_decode(&y1, &x, &pt, &cfg) || vae_decode_backward(&dx, &w1, &x, &pt, &gt, &cfg)) {
            case_error(c, "vae_decode_backward");
            goto done;
        }
        rc = case_check(c, "decoded", &y1) | case_check(c, "d_latents", &dx);
    }
    rc |= check_summary(c, &pt, gt.arena, "g", 1);
done:
    tensor_free(&x); tensor_free(&w1); tensor_free(&w2); tensor_free(&y1); tensor_free(&y2); tensor_free(&dx);
    free_params(&gt);
    free_params(&pt);
    return rc;
}

int run_vae_encode_grad(Case *c) { return vae_grad(c, 1); }
int run_vae_decode_grad(Case *c) { return vae_grad(c, 0); }
