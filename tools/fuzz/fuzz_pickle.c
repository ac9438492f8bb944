// fuzz_pickle.c: libFuzzer harness for the restricted unpickler (ref/ckpt_torch.c). The input
// is data.pkl alone; the harness wraps it in a well-formed stored zip next to two storages
// (archive/data/0: 64 bytes, archive/data/1: 6 bytes), so every mutation reaches the
// unpickler rather than the zip checks (seeds: the data.pkl of torch.save archives).
#include "fuzz_ckpt_util.h"

static void put16(unsigned char *b, unsigned v) { b[0] = (unsigned char)v; b[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *b, uint32_t v) { put16(b, v & 0xFFFF); put16(b + 2, v >> 16); }


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *names[3] = {"archive/data.pkl", "archive/data/0", "archive/data/1"};
    static const uint8_t storage[64] = {0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 60, 0, 188, 1, 2, 3, 4};
    const uint8_t *payload[3];
    size_t len[3], off[3], total, at = 0, cd, i;
    unsigned char *z;
    if (size > (1u << 20)) return 0;
    payload[0] = data; len[0] = size;
    payload[1] = storage; len[1] = 64;
    payload[2] = storage; len[2] = 6;
    total = 22;
    for (i = 0; i < 3; i++) total += 30 + strlen(names[i]) + len[i] + 46 + strlen(names[i]);
    z = (unsigned char *)calloc(1, total);
    if (!z) abort();
    for (i = 0; i < 3; i++) { // local headers and data
        size_t n = strlen(names[i]);
        uint32_t crc = ck_crc32(payload[i], len[i]);
        off[i] = at;
        memcpy(z + at, "PK\3\4", 4);
        put32(z + at + 14, crc);
        put32(z + at + 18, (uint32_t)len[i]);
        put32(z + at + 22, (uint32_t)len[i]);
        put16(z + at + 26, (unsigned)n);
        memcpy(z + at + 30, names[i], n);
        if (len[i]) memcpy(z + at + 30 + n, payload[i], len[i]);
        at += 30 + n + len[i];
    }
    cd = at;
    for (i = 0; i < 3; i++) { // central directory
        size_t n = strlen(names[i]);
        memcpy(z + at, "PK\1\2", 4);
        put32(z + at + 16, ck_crc32(payload[i], len[i]));
        put32(z + at + 20, (uint32_t)len[i]);
        put32(z + at + 24, (uint32_t)len[i]);
        put16(z + at + 28, (unsigned)n);
        put32(z + at + 42, (uint32_t)off[i]);
        memcpy(z + at + 46, names[i], n);
        at += 46 + n;
    }
    memcpy(z + at, "PK\5\6", 4);
    put16(z + at + 8, 3);
    put16(z + at + 10, 3);
    put32(z + at + 12, (uint32_t)(at - cd));
    put32(z + at + 16, (uint32_t)cd);
    at += 22;
    fuzz_check_checkpoint(fuzz_write("pickle", z, at), at);
    free(z);
    return 0;
}
