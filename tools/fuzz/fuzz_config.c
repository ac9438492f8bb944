// fuzz_config.c: libFuzzer harness for config.json loading (ref/unet.c unet_config_load),
// the input written to a file. Checks: no crash, leak or UB; a failure has a message naming
// the file; an accepted configuration passes unet_config_check. With FUZZ_DECLARE=1 in the
// environment, an accepted configuration with layers_per_block <= 4 also declares its
// parameter tree (about 900 names: six times slower, so not the default).
#include "fuzz_util.h"
#include "../../ref/unet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("config", data, size);
    UNetConfig c;
    ParamTable pt;
    int twod = size > 0 && (data[0] & 1); // both starting points: makeavid and SD 1.5 2-D
    unet_config_default(&c);
    if (twod) { c.temporal = 0; c.in_channels = 4; }
    mv_clear_error();
    if (unet_config_load(&c, path) != MV_OK) {
        fuzz_expect_message("unet_config_load");
        if (!strstr(mv_error(), path)) abort();
        return 0;
    }
    if (unet_config_check(&c) != MV_OK) abort();
    // The tree has about 30 x n_blocks x layers_per_block names; only small ones are declared
    // (absurd sizes are refused by params_alloc, which cannot allocate them).
    if (c.layers_per_block <= 4 && getenv("FUZZ_DECLARE")) {
        params_init(&pt);
        if (unet_declare_params(&pt, &c) != MV_OK) fuzz_expect_message("unet_declare_params");
        free_params(&pt);
    }
    return 0;
}
