// fuzz_merges.c: libFuzzer harness for the CLIP merges-file reader (ref/tokenizer.c
// build_tokenizer), the input written to a file. Checks: no crash, leak or UB; a refused
// file has a message naming it. (A valid file has exactly 48,894 merges; the unit test
// tokenizer corpus covers it. The fuzzer explores the header and line parsing.)
#include "fuzz_util.h"
#include "../../ref/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("merges", data, size);
    Tokenizer t;
    mv_clear_error();
    if (build_tokenizer(&t, path) != MV_OK) {
        fuzz_expect_message("build_tokenizer");
        if (!strstr(mv_error(), path)) abort();
        return 0;
    }
    {
        int32_t ids[CLIP_CONTEXT];
        if (tokenize(&t, "a photo of a cat", 16, ids) < 2) abort();
    }
    free_tokenizer(&t);
    return 0;
}
