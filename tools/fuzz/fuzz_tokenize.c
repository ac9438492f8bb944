// fuzz_tokenize.c: libFuzzer harness for the CLIP tokenizer (ref/tokenizer.c tokenize) on
// arbitrary bytes, with the real merges table (vectors/clip/clip_merges.txt, or
// $MAVREF_MERGES), loaded once. Checks: no crash, leak or UB; invalid UTF-8 is refused with
// a message naming the byte offset; otherwise 2..77 ids, BOS first, EOS at the end and as
// padding, every id inside the vocabulary.
#include "fuzz_util.h"
#include "../../ref/tokenizer.h"

static Tokenizer g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *p = getenv("MAVREF_MERGES");
    (void)argc; (void)argv;
    if (!p || !*p) p = "vectors/clip/clip_merges.txt";
    if (build_tokenizer(&g_tok, p) != MV_OK) {
        fprintf(stderr, "fuzz_tokenize: %s (run from the repository root or set MAVREF_MERGES)\n", mv_error());
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t ids[CLIP_CONTEXT];
    int n, k;
    mv_clear_error();
    n = tokenize(&g_tok, (const char *)data, size, ids);
    if (n == MV_ERR) {
        if (!strstr(mv_error(), "byte offset") && !strstr(mv_error(), "memory")) abort();
        return 0;
    }
    if (n < 2 || n > CLIP_CONTEXT || ids[0] != CLIP_BOS || ids[n - 1] != CLIP_EOS) abort();
    for (k = 0; k < CLIP_CONTEXT; k++) {
        if (ids[k] < 0 || ids[k] >= CLIP_VOCAB) abort();
        if (k >= n && ids[k] != CLIP_EOS) abort();
    }
    return 0;
}
