// ops_vae.c: corpus runner for the VAE (vectors from diffusers' FlaxAutoencoderKL).
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/vae.h"

int run_vae(Case *c) {
    VAEConfig cfg;
    ParamTable pt;
    Tensor image, latents, mean, logvar, dec;
    const char *boc;
    long L, seed, count;
    int rc = 1;
    vae_config_default(&cfg);
    if (!(boc = case_meta_str(c, "block_out_channels")) || case_meta_long(c, "layers_per_block", &L) ||
        case_meta_long(c, "weights_seed", &seed) || case_meta_long(c, "params", &count))
        return 1;
    cfg.n_blocks = mv_parse_int_list(boc, cfg.block_out_channels, VAE_MAX_BLOCKS);
    cfg.layers_per_block = (int)L;
    if (cfg.n_blocks < 1) { harness_failf(c->name, "bad block_out_channels '%s'", boc); return 1; }
    params_init(&pt);
    if (vae_declare_params(&pt, &cfg) || params_alloc(&pt) || params_procedural(&pt, (uint64_t)seed)) {
        case_error(c, "VAE parameters");
        free_params(&pt);
        return 1;
    }
    if ((long)pt.count != count) {
        harness_failf(c->name, "mavref declares %lu VAE parameters, FlaxAutoencoderKL has %ld", (unsigned long)pt.count, count);
        free_params(&pt);
        return 1;
    }
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
