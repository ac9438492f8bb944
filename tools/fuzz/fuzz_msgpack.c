// fuzz_msgpack.c: libFuzzer harness for the Flax msgpack reader (ref/checkpoint.c). The input
// is a whole file (seeds: flax.serialization.to_bytes outputs, chunked arrays included).
#include "fuzz_ckpt_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_check_checkpoint(fuzz_write("msgpack", data, size), size);
    return 0;
}
