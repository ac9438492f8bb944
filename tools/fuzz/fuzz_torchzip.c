// fuzz_torchzip.c: libFuzzer harness for the torch.save zip reader (ref/ckpt_torch.c): the
// input is a whole file (seeds: torch.save archives), so the zip directory, zip64 records,
// local headers and the pickle inside are all mutated.
#include "fuzz_ckpt_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_check_checkpoint(fuzz_write("torchzip", data, size), size);
    return 0;
}
