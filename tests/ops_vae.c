// ops_vae.c: corpus runner for the VAE (vectors from diffusers' FlaxAutoencoderKL).
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/unet.h"
#include "../ref/vae.h"

// The VAE of a case: configuration from its metadata, procedural weights (count_key: the
// metadata key holding FlaxAutoencoderKL's parameter count). The caller frees pt, also on
// an error.
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
        return 1;
    }
    if ((long)pt->count != count) {
        harness_failf(c->name, "mavref declares %lu VAE parameters, FlaxAutoencoderKL has %ld", (unsigned long)pt->count, count);
        return 1;
    }
    return 0;
}

int run_vae(Case *c) {
    Bag b = {0};
    VAEConfig cfg;
    ParamTable pt;
    Tensor *image, *latents, mean, logvar, dec;
    int rc = 1;
    params_init(&pt);
    memset(&mean, 0, sizeof mean); memset(&logvar, 0, sizeof logvar); memset(&dec, 0, sizeof dec);
    if (load_vae(c, &cfg, &pt, "params")) goto out;
    if (!(image = bag_input(c, &b, "image")) || !(latents = bag_input(c, &b, "latents"))) goto out;
    if (vae_encode(&mean, &logvar, image, &pt, &cfg)) { case_error(c, "vae_encode"); goto out; }
    if (vae_decode(&dec, latents, &pt, &cfg)) { case_error(c, "vae_decode"); goto out; }
    rc = case_check(c, "mean", &mean) | case_check(c, "logvar", &logvar) | case_check(c, "decoded", &dec);
out:
    tensor_free(&mean); tensor_free(&logvar); tensor_free(&dec);
    free_params(&pt);
    bag_free(&b);
    return rc;
}

// op vae_encode_grad: L = sum(mean * w_mean) + sum(logvar * w_logvar), gradients from jax.vjp.
// op vae_decode_grad: L = sum(decoded * w).
static int vae_grad(Case *c, int encode) {
    Bag b = {0};
    VAEConfig cfg;
    ParamTable pt, gt;
    Tensor *x, *w1, *w2, y1, y2, dx;
    int rc = 1;
    params_init(&pt); params_init(&gt);
    memset(&y1, 0, sizeof y1); memset(&y2, 0, sizeof y2); memset(&dx, 0, sizeof dx);
    if (load_vae(c, &cfg, &pt, "param_count")) goto out;
    if (unet_grads_alloc(&gt, &pt)) { case_error(c, "gradient table"); goto out; }
    if (encode) {
        if (!(x = bag_input(c, &b, "image")) || !(w1 = bag_input(c, &b, "w_mean")) || !(w2 = bag_input(c, &b, "w_logvar"))) goto out;
        if (vae_encode(&y1, &y2, x, &pt, &cfg) || vae_encode_backward(&dx, w1, w2, x, &pt, &gt, &cfg)) {
            case_error(c, "vae_encode_backward");
            goto out;
        }
        rc = case_check(c, "mean", &y1) | case_check(c, "logvar", &y2) | case_check(c, "d_image", &dx);
    } else {
        if (!(x = bag_input(c, &b, "latents")) || !(w1 = bag_input(c, &b, "w"))) goto out;
        if (vae_decode(&y1, x, &pt, &cfg) || vae_decode_backward(&dx, w1, x, &pt, &gt, &cfg)) {
            case_error(c, "vae_decode_backward");
            goto out;
        }
        rc = case_check(c, "decoded", &y1) | case_check(c, "d_latents", &dx);
    }
    rc |= check_summary(c, &pt, gt.arena, "g", 1);
out:
    tensor_free(&y1); tensor_free(&y2); tensor_free(&dx);
    free_params(&gt); free_params(&pt);
    bag_free(&b);
    return rc;
}

int run_vae_encode_grad(Case *c) { return vae_grad(c, 1); }
int run_vae_decode_grad(Case *c) { return vae_grad(c, 0); }
