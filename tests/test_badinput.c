// test_badinput.c: the bad-input catalogue (SPEC.md section 12): every entry's input, and
// what mavref must say. Each case checks that the call fails (never crashes), and that the
// message names the file / tensor / field and says what is wrong. Fuzzer findings
// (tools/fuzz) are kept here as regression inputs.
//
// Files are written under build/ (tests run from the repository root).
#if defined(__unix__) || defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L // symlink, mkdir, rmdir: only for the disk-full and directory cases
#include <sys/stat.h>
#include <unistd.h>
#define HAVE_POSIX 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/clip.h"
#include "../ref/image.h"
#include "../ref/json.h"
#include "../ref/params.h"
#include "../ref/tokenizer.h"
#include "../ref/unet.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define TMP(name) "build/badinput-f" STR(MAVREF_PRECISION) "-" name

// ---------------------------------------------------------------------------------------
// helpers

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    int ok;
    if (!fp) return MV_ERR;
    ok = fwrite(data, 1, n, fp) == n;
    ok = (fclose(fp) == 0) && ok;
    return ok ? MV_OK : MV_ERR;
}

static int write_text(const char *path, const char *text) { return write_bytes(path, text, strlen(text)); }

// A safetensors file: 8-byte length (hlen, or the header's own when hlen == ~0), header, data.
static int write_st(const char *path, uint64_t hlen, const char *header, const unsigned char *data, size_t ndata) {
    size_t n = strlen(header), i;
    unsigned char *b = (unsigned char *)malloc(8 + n + ndata + 1);
    int rc;
    if (!b) return MV_ERR;
    if (hlen == ~(uint64_t)0) hlen = n;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, n);
    if (ndata) memcpy(b + 8 + n, data, ndata);
    rc = write_bytes(path, b, 8 + n + ndata);
    free(b);
    return rc;
}

// 1 if the file exists (can be opened for reading).
static int exists(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp) fclose(fp);
    return fp != NULL;
}

// The whole (small) file as a NUL-terminated string, or NULL.
static char *slurp(const char *path) {
    FILE *fp = fopen(path, "rb");
    char *s;
    size_t n;
    if (!fp) return NULL;
    s = (char *)calloc(1, 4097);
    n = s ? fread(s, 1, 4096, fp) : 0;
    (void)n;
    fclose(fp);
    return s;
}

// The last error must contain every non-NULL needle.
static int msg_has(const char *where, const char *a, const char *b) {
    if ((a && !strstr(mv_error(), a)) || (b && !strstr(mv_error(), b))) {
        harness_failf(where, "message lacks '%s'%s%s%s: %s", a ? a : "", b ? " / '" : "", b ? b : "", b ? "'" : "", mv_error());
        return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Safetensors: headers the reader must refuse at st_open (beyond test_st_bad_files).

int test_bad_st_headers(void) {
    static const struct { uint64_t hlen; const char *header; size_t ndata; const char *needle; } cases[] = {
        {1, "{", 0, "header length 1 is outside"},
        {(uint64_t)1 << 40, "{}", 0, "header length 1099511627776 is outside"},
        {~(uint64_t)0, "[1]", 0, "does not start with '{'"},
        {~(uint64_t)0, "{\"x\":[1]}", 0, "tensor 'x': header entry is not an object"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'x': missing or non-string dtype"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'x': missing or non-array shape"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "tensor 'x': data_offsets must be"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "tensor 'x': rank 7 exceeds 6"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "tensor 'x': shape[0]"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "tensor 'x': shape[0]"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 4, "too large"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,18446744073709551615]}}", 8, "need 8"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551607,18446744073709551615]}}", 8, "truncated"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype 'f32'"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate key"},
        {~(uint64_t)0, "{\"__metadata__\":[],\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "__metadata__ is not an object"},
        {~(uint64_t)0, "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value 'k' is not a string"},
        {~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} \x01", 4, "invalid JSON"},
        {~(uint64_t)0, "{\"x\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid UTF-8"},
    };
    const char *p = TMP("headers.safetensors");
    unsigned char data[8] = {0};
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        StFile f;
        if (write_st(p, cases[i].hlen, cases[i].header, data, cases[i].ndata)) { harness_failf(__func__, "cannot write %s", p); return fails + 1; }
        if (st_open(&f, p) == MV_OK) {
            harness_failf(__func__, "case %lu (%s) opened, expected '%s'", (unsigned long)i, cases[i].header, cases[i].needle);
            st_close(&f);
            fails++;
            continue;
        }
        fails += msg_has(__func__, p, cases[i].needle);
    }
    remove(p);
    return fails;
}

// Safetensors: failures after a successful open, and while reading tensors.
int test_bad_st_reads(void) {
    const char *p = TMP("reads.safetensors");
    const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"n\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[16,20]}}";
    unsigned char data[20] = {0};
    StFile f;
    Tensor t, wrong;
    int64_t *iv = NULL;
    size_t n;
    int fails = 0;
    if (write_st(p, ~(uint64_t)0, hdr, data, sizeof data) || st_open(&f, p)) {
        harness_failf(__func__, "setup: %s", mv_error());
        return 1;
    }
    // a missing tensor is named
    fails += EXPECT(st_read(&f, "v", &t) == MV_ERR, "missing tensor read");
    fails += msg_has(__func__, p, "missing tensor 'v'");
    // the wrong dtype: integers are read exactly only from integer dtypes
    fails += EXPECT(st_read_i64(&f, "w", &iv, &n) == MV_ERR && iv == NULL, "F32 read as integers");
    fails += msg_has(__func__, "tensor 'w' has dtype F32", "expected an integer dtype");
    // the wrong shape for an existing destination (how model weights are read)
    if (tensor_alloc_v(&wrong, 2, (size_t)4, (size_t)1) == MV_OK) {
        fails += EXPECT(st_read_into(&f, "w", &wrong) == MV_ERR, "wrong shape read");
        fails += msg_has(__func__, "tensor 'w' has shape (2, 2)", "expected (4, 1)");
        tensor_free(&wrong);
    } else fails++;
    // the file shrinks after st_open validated it: the read fails, naming the tensor
    if (write_st(p, ~(uint64_t)0, hdr, data, 4)) fails++;
    fails += EXPECT(st_read(&f, "n", &t) == MV_ERR, "read of a truncated file");
    fails += msg_has(__func__, "tensor 'n'", "read failed");
    st_close(&f);
    remove(p);
    return fails;
}

// ---------------------------------------------------------------------------------------
// The writer: outputs are written to PATH.tmp and renamed when complete.

static int save_one(const char *path) {
    StWriter w;
    Tensor t;
    int rc;
    if (tensor_alloc_v(&t, 1, (size_t)4096)) return MV_ERR; // larger than a stdio buffer
    st_writer_init(&w);
    rc = st_writer_add(&w, "x", &t, ST_F32);
    if (rc == MV_OK) rc = st_writer_save(&w, path);
    st_writer_free(&w);
    tensor_free(&t);
    return rc;
}

int test_bad_outputs(void) {
    const char *final = TMP("out.safetensors"), *tmp = TMP("out.safetensors.tmp");
    const char *nodir = "build/no-such-directory-badinput/out.safetensors";
    char *before, *after;
    int fails = 0;
    // a directory that does not exist: error naming the path, nothing created
    fails += EXPECT(save_one(nodir) == MV_ERR, "save into a missing directory");
    fails += msg_has(__func__, "no-such-directory-badinput/out.safetensors.tmp", "cannot open for writing");
    fails += EXPECT(!exists(nodir), "a file appeared under the final name");
    // an existing output is replaced only by a complete file
    remove(tmp);
    if (write_text(final, "previous contents\n")) return fails + 1;
    before = slurp(final);
#ifdef HAVE_POSIX
    // the disk fills up while writing: PATH.tmp is a link to /dev/full (ENOSPC on write)
    if (exists("/dev/full")) { // Linux and most Unixes
        fails += EXPECT(symlink("/dev/full", tmp) == 0, "cannot make %s a link to /dev/full", tmp);
        fails += EXPECT(save_one(final) == MV_ERR, "save onto a full disk");
        fails += msg_has(__func__, final, "write failed (disk full?)");
        fails += EXPECT(!exists(tmp), "the partial .tmp was left behind");
        remove(tmp);
    }
    // PATH.tmp cannot be created (a directory is in the way)
    fails += EXPECT(mkdir(tmp, 0700) == 0, "cannot make the directory %s", tmp);
    fails += EXPECT(save_one(final) == MV_ERR, "save with PATH.tmp a directory");
    fails += msg_has(__func__, tmp, "cannot open for writing");
    rmdir(tmp);
#endif
    after = slurp(final);
    fails += EXPECT(before && after && strcmp(before, after) == 0, "a failed write clobbered the existing file");
    free(before);
    free(after);
#ifdef HAVE_POSIX
    // the rename fails (PATH is a directory): the finished .tmp is removed
    remove(final);
    fails += EXPECT(mkdir(final, 0700) == 0, "cannot make the directory %s", final);
    fails += EXPECT(save_one(final) == MV_ERR, "save onto a directory");
    fails += msg_has(__func__, final, "cannot rename the finished file into place");
    fails += EXPECT(!exists(tmp), "the .tmp was left behind after a failed rename");
    rmdir(final);
#endif
    // a successful save replaces it and leaves no .tmp
    fails += EXPECT(save_one(final) == MV_OK, "save: %s", mv_error());
    fails += EXPECT(!exists(tmp), ".tmp left after a successful save");
    {
        StFile f;
        if (st_open(&f, final) == MV_OK) {
            fails += EXPECT(f.count == 1 && f.entries[0].numel == 4096, "saved file content");
            st_close(&f);
        } else fails += EXPECT(0, "saved file unreadable: %s", mv_error());
    }
    remove(final);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Model weights: params_load against a declared parameter tree.

int test_bad_weights(void) {
    const char *p = TMP("weights.safetensors"), *missing = TMP("no-such-weights.safetensors");
    unsigned char data[48] = {0};
    ParamTable pt;
    size_t s2[2] = {2, 2}, s1[1] = {4};
    int fails = 0;
    params_init(&pt);
    if (params_add(&pt, 2, s2, "layer.kernel") || params_add(&pt, 1, s1, "layer.bias") || params_alloc(&pt)) {
        harness_failf(__func__, "setup: %s", mv_error());
        free_params(&pt);
        return 1;
    }
    remove(missing);
    fails += EXPECT(params_load(&pt, missing, 0) == MV_ERR, "missing weights file");
    fails += msg_has(__func__, missing, "cannot open for reading");
    // a missing tensor
    write_st(p, ~(uint64_t)0, "{\"layer.kernel\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", data, 16);
    fails += EXPECT(params_load(&pt, p, 0) == MV_ERR, "missing tensor");
    fails += msg_has(__func__, p, "missing parameter tensor 'layer.bias'");
    // a wrong shape
    write_st(p, ~(uint64_t)0, "{\"layer.kernel\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"layer.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", data, 32);
    fails += EXPECT(params_load(&pt, p, 0) == MV_ERR, "wrong shape");
    fails += msg_has(__func__, "tensor 'layer.kernel' has shape (4)", "expected (2, 2)");
    // a tensor the model does not have (refused unless allow_extra)
    write_st(p, ~(uint64_t)0, "{\"layer.kernel\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
             "\"layer.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]},"
             "\"other\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[32,48]}}", data, 48);
    fails += EXPECT(params_load(&pt, p, 0) == MV_ERR, "extra tensor");
    fails += msg_has(__func__, "tensor 'other' is not a parameter", NULL);
    fails += EXPECT(params_load(&pt, p, 1) == MV_OK, "extra tensor with allow_extra: %s", mv_error());
    // another float or integer dtype is converted (F16 and BF16 checkpoints load)
    write_st(p, ~(uint64_t)0, "{\"layer.kernel\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
             "\"layer.bias\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[8,16]}}", data, 16);
    fails += EXPECT(params_load(&pt, p, 0) == MV_OK, "F16/BF16 weights: %s", mv_error());
    free_params(&pt);
    remove(p);
    return fails;
}

// ---------------------------------------------------------------------------------------
// config.json

int test_bad_config(void) {
    static const struct { const char *text; const char *needle; } cases[] = {
        {"", "invalid JSON"},
        {"{\"in_channels\": 9,}", "invalid JSON"},
        {"[4]", "not a JSON object"},
        {"{\"in_channels\": \"9\"}", "\"in_channels\" must be a non-negative integer"},
        {"{\"in_channels\": 2.5}", "\"in_channels\" must be a non-negative integer"},
        {"{\"in_channels\": -4}", "\"in_channels\" must be a non-negative integer"},
        // fuzzer regression: 1e300 converted to int before the range check (undefined behaviour)
        {"{\"in_channels\": 1e300}", "\"in_channels\" must be a non-negative integer"},
        {"{\"layers_per_block\": 1e10}", "\"layers_per_block\" must be a non-negative integer"},
        {"{\"block_out_channels\": [320, 1e300, 1280, 1280]}", "\"block_out_channels\"[1] must be a positive integer"},
        {"{\"block_out_channels\": [320, 640, 1280, -1280]}", "\"block_out_channels\"[3] must be a positive integer"},
        {"{\"block_out_channels\": []}", "must be a list of 1..8 integers"},
        {"{\"block_out_channels\": [32,32,32,32,32,32,32,32,32]}", "must be a list of 1..8 integers"},
        {"{\"block_out_channels\": true}", "must be a list of 1..8 integers"},
        {"{\"down_block_types\": [\"CrossAttnDownBlock3D\", \"CrossAttnDownBlockPseudo3D\", \"CrossAttnDownBlockPseudo3D\", \"DownBlockPseudo3D\"]}",
         "\"down_block_types\"[0]: unknown block type 'CrossAttnDownBlock3D'"},
        {"{\"up_block_types\": [\"UpBlockPseudo3D\", \"DownBlockPseudo3D\", \"CrossAttnUpBlockPseudo3D\", \"CrossAttnUpBlockPseudo3D\"]}",
         "\"up_block_types\"[1]: unknown block type 'DownBlockPseudo3D'"},
        {"{\"up_block_types\": [\"UpBlockPseudo3D\", 7, \"CrossAttnUpBlockPseudo3D\", \"CrossAttnUpBlockPseudo3D\"]}", "unknown block type ''"},
        {"{\"down_block_types\": \"CrossAttnDownBlockPseudo3D\"}", "must be a list of block type names"},
        {"{\"block_out_channels\": [320, 640, 1280]}", "block_out_channels has 3 entries but down_block_types 4"},
        {"{\"attention_head_dim\": [8, 8]}", "attention_head_dim 2"},
        {"{\"block_out_channels\": [320, 640, 1280, 1290]}", "block_out_channels[3] = 1290 is not a multiple of the 32"},
        {"{\"attention_head_dim\": 7}", "is not divisible by attention_head_dim (heads) 7"},
        {"{\"attention_head_dim\": 0}", "not divisible by attention_head_dim (heads) 0"},
        {"{\"in_channels\": 0}", "must be positive"},
        {"{\"flip_sin_to_cos\": 1}", "\"flip_sin_to_cos\" must be true or false"},
    };
    const char *p = TMP("config.json"), *missing = TMP("no-such-config.json");
    UNetConfig c;
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unet_config_default(&c);
        if (write_text(p, cases[i].text)) return fails + 1;
        if (unet_config_load(&c, p) == MV_OK) {
            harness_failf(__func__, "accepted config %s, expected '%s'", cases[i].text, cases[i].needle);
            fails++;
            continue;
        }
        fails += msg_has(__func__, p, cases[i].needle);
    }
    // a missing file
    remove(missing);
    unet_config_default(&c);
    fails += EXPECT(unet_config_load(&c, missing) == MV_ERR, "missing config");
    fails += msg_has(__func__, missing, "cannot open for reading");
    // unknown keys (diffusers writes many) are ignored; the 2-D names are aliases
    write_text(p, "{\"_class_name\": \"UNet2DConditionModel\", \"sample_size\": 64, \"down_block_types\": "
                  "[\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"]}");
    unet_config_default(&c);
    fails += EXPECT(unet_config_load(&c, p) == MV_OK, "valid config refused: %s", mv_error());
    remove(p);
    return fails;
}

// ---------------------------------------------------------------------------------------
// The CLIP merges file and the tokenizer.

// A structurally valid merges file: rank r merges symbols 0 and r (always an earlier symbol).
static int write_merges(const char *path, long n, const char *header, long bad_line, const char *bad_text) {
    FILE *fp = fopen(path, "w");
    long r;
    if (!fp) return MV_ERR;
    fputs(header, fp);
    for (r = 0; r < n; r++) {
        if (r + 2 == bad_line) fputs(bad_text, fp);
        else fprintf(fp, "0 %ld\n", r);
    }
    return fclose(fp) == 0 ? MV_OK : MV_ERR;
}

int test_bad_merges(void) {
    static const char *hdr = "# mavref CLIP BPE merges v1 test\n";
    static const struct { long n; const char *header; long line; const char *text; const char *needle; } cases[] = {
        {0, "", 0, "", "line 1 is not a mavref CLIP merges header"},
        {10, "#version: 0.2\n", 0, "", "line 1 is not a mavref CLIP merges header"},
        {100, "# mavref CLIP BPE merges v1 test\n", 0, "", "line 102: expected two ids"},          // truncated
        {CLIP_N_MERGES + 1, "# mavref CLIP BPE merges v1 test\n", 0, "", "more than 48894 merges"},
        {50, "# mavref CLIP BPE merges v1 test\n", 7, "0 517\n", "line 7: expected two ids of earlier symbols"},
        {50, "# mavref CLIP BPE merges v1 test\n", 7, "-1 2\n", "line 7: expected two ids"},
        {50, "# mavref CLIP BPE merges v1 test\n", 7, "1 2 3\n", "line 7: expected two ids"},
        {50, "# mavref CLIP BPE merges v1 test\n", 7, "a b\n", "line 7: expected two ids"},
        {CLIP_N_MERGES, "# mavref CLIP BPE merges v1 test\n", 7, "0 3\n", "line 7: duplicate merge 0 3"},
        {50, "# mavref CLIP BPE merges v1 test\n", 7, "99999999999999999999999 1\n", "line 7: expected two ids"},
    };
    const char *p = TMP("merges.txt"), *missing = TMP("no-such-merges.txt");
    Tokenizer t;
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (write_merges(p, cases[i].n, cases[i].header, cases[i].line, cases[i].text)) return fails + 1;
        if (build_tokenizer(&t, p) == MV_OK) {
            harness_failf(__func__, "case %lu accepted, expected '%s'", (unsigned long)i, cases[i].needle);
            free_tokenizer(&t);
            fails++;
            continue;
        }
        fails += msg_has(__func__, p, cases[i].needle);
    }
    remove(missing);
    fails += EXPECT(build_tokenizer(&t, missing) == MV_ERR, "missing merges file");
    fails += msg_has(__func__, missing, "cannot open the CLIP merges file");
    // the structurally valid file loads (its ids are meaningless, but consistent)
    if (write_merges(p, CLIP_N_MERGES, hdr, 0, "") == MV_OK) {
        fails += EXPECT(build_tokenizer(&t, p) == MV_OK, "valid merges refused: %s", mv_error());
        free_tokenizer(&t);
    }
    remove(p);
    return fails;
}

int test_bad_tokenizer_text(void) {
    const char *p = TMP("merges-text.txt");
    Tokenizer t;
    int32_t ids[CLIP_CONTEXT];
    char *big;
    size_t i, n = 100000;
    int r, fails = 0;
    if (write_merges(p, CLIP_N_MERGES, "# mavref CLIP BPE merges v1 test\n", 0, "") || build_tokenizer(&t, p)) {
        harness_failf(__func__, "setup: %s", mv_error());
        remove(p);
        return 1;
    }
    remove(p);
    // fuzzer regression: text that ftfy reduces to nothing (control characters only) made
    // whitespace_clean add an offset to a NULL buffer
    r = tokenize(&t, "\x01\0\0\0\0\0\0\x12", 8, ids);
    fails += EXPECT(r == 2 && ids[0] == CLIP_BOS && ids[1] == CLIP_EOS && ids[76] == CLIP_EOS, "control characters only: %d", r);
    r = tokenize(&t, "\x7f\x1b \t\r\n", 6, ids);
    fails += EXPECT(r == 2, "controls and whitespace only: %d", r);
    // only special tokens: each is kept, then EOS
    r = tokenize(&t, "<|endoftext|><|startoftext|>", 28, ids);
    fails += EXPECT(r == 4 && ids[1] == CLIP_EOS && ids[2] == CLIP_BOS && ids[3] == CLIP_EOS, "special tokens only: %d", r);
    // a huge prompt is cut to 77 ids, EOS last
    big = (char *)malloc(n);
    if (big) {
        for (i = 0; i < n; i++) big[i] = (char)("ab c\xc3\xa9 "[i % 7]);
        big[n - 1] = ' ';
        r = tokenize(&t, big, n, ids);
        fails += EXPECT(r == CLIP_CONTEXT && ids[0] == CLIP_BOS && ids[76] == CLIP_EOS, "100,000-byte prompt: %d", r);
        // invalid UTF-8 at the very end of a long prompt is still found and located
        big[n - 1] = '\xc3';
        r = tokenize(&t, big, n, ids);
        fails += EXPECT(r == MV_ERR, "invalid UTF-8 at the end of a long prompt accepted");
        fails += msg_has(__func__, "invalid UTF-8", "byte offset 99999");
        free(big);
    } else fails++;
    free_tokenizer(&t);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Model inputs of the wrong shape (what `mavref unet` reads from --inputs), on a tiny UNet.

int test_bad_unet_inputs(void) {
    static const struct { int ndim; size_t s[5]; size_t tb; size_t ctx[3]; const char *needle; } cases[] = {
        {4, {1, 9, 4, 4, 0}, 1, {1, 3, 8}, "sample must be (B, C, F, H, W), got rank 4"},
        {5, {1, 4, 2, 4, 4}, 1, {1, 3, 8}, "sample has 4 channels, the model takes 9"},
        {5, {1, 9, 2, 3, 4}, 1, {1, 3, 8}, "sample size 3x4 must be non-empty and divisible by 2"},
        {5, {0, 9, 2, 4, 4}, 0, {0, 3, 8}, "must be non-empty"},
        {5, {1, 9, 0, 4, 4}, 1, {1, 3, 8}, "must be non-empty"},
        {5, {1, 9, 2, 4, 4}, 2, {1, 3, 8}, "timesteps has shape (2), expected (1)"},
        {5, {2, 9, 2, 4, 4}, 2, {1, 3, 8}, "context must be (B=2, T, 8)"},
        {5, {1, 9, 2, 4, 4}, 1, {1, 3, 16}, "context must be (B=1, T, 8)"},
    };
    UNetConfig c;
    ParamTable pt;
    size_t i;
    int fails = 0;
    unet_config_default(&c);
    c.n_blocks = 2;
    c.block_out_channels[0] = 32; c.block_out_channels[1] = 64;
    c.heads[0] = 1; c.heads[1] = 2;
    c.down_cross[0] = 1; c.down_cross[1] = 0;
    c.up_cross[0] = 0; c.up_cross[1] = 1;
    c.layers_per_block = 1;
    c.cross_attention_dim = 8;
    params_init(&pt);
    if (unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 1)) {
        harness_failf(__func__, "setup: %s", mv_error());
        free_params(&pt);
        return 1;
    }
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Tensor s, t, ctx, out;
        memset(&out, 0, sizeof out);
        if (tensor_alloc(&s, cases[i].ndim, cases[i].s) || tensor_alloc_v(&t, 1, cases[i].tb) || tensor_alloc(&ctx, 3, cases[i].ctx)) {
            harness_failf(__func__, "alloc: %s", mv_error());
            free_params(&pt);
            return fails + 1;
        }
        if (unet_forward(&out, &s, &t, &ctx, &pt, &c, NULL, NULL) == MV_OK) {
            harness_failf(__func__, "case %lu accepted, expected '%s'", (unsigned long)i, cases[i].needle);
            fails++;
        } else fails += msg_has(__func__, cases[i].needle, NULL);
        tensor_free(&s); tensor_free(&t); tensor_free(&ctx); tensor_free(&out);
    }
    free_params(&pt);
    return fails;
}

// Token ids the CLIP text encoder must refuse (ids from a file, not from the tokenizer).
int test_bad_clip_ids(void) {
    static const struct { int64_t id; size_t T; const char *needle; } cases[] = {
        {CLIP_VOCAB, 4, "token id 49408 at position 2 is outside the vocabulary 0..49407"},
        {-1, 4, "token id -1 at position 2"},
        {1, 78, "78 tokens per prompt, expected 1..77"},
        {1, 0, "0 tokens per prompt"},
    };
    ClipConfig c;
    ParamTable pt;
    int64_t ids[78];
    size_t i, k;
    int fails = 0;
    clip_config_default(&c);
    c.width = 8; c.heads = 2; c.layers = 1; c.mlp = 16;
    params_init(&pt);
    if (clip_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 1)) {
        harness_failf(__func__, "setup: %s", mv_error());
        free_params(&pt);
        return 1;
    }
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Tensor out;
        memset(&out, 0, sizeof out);
        for (k = 0; k < 78; k++) ids[k] = 320;
        ids[2] = cases[i].id;
        if (clip_text_forward(&out, ids, 1, cases[i].T, &pt, &c) == MV_OK) {
            harness_failf(__func__, "case %lu accepted, expected '%s'", (unsigned long)i, cases[i].needle);
            fails++;
        } else fails += msg_has(__func__, "CLIP text encoder", cases[i].needle);
        tensor_free(&out);
    }
    free_params(&pt);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Images (ref/image.c; the reader's other bad files are in test_image.c, pnm_bad_files).

int test_bad_images(void) {
    // fuzzer regression: a pixel above maxval; the message read the pixel after freeing it
    static const char over[] = "P62\n 2\n2\n4\n\0\0\x7f\0\0\0\xff%\x80\x80";
    // a few bytes that claim 32768x32768 pixels: refused before allocating 3 GiB
    static const char huge[] = "P6\n32768 32768\n255\n\1\2\3";
    const char *p = TMP("image.pnm");
    unsigned char px[12] = {0};
    Image img;
    int fails = 0;
    write_bytes(p, over, sizeof over - 1);
    fails += EXPECT(image_read_pnm(&img, p) == MV_ERR, "pixel above maxval accepted");
    fails += msg_has(__func__, p, "pixel value 52 exceeds maxval 2");
    write_bytes(p, huge, sizeof huge - 1);
    fails += EXPECT(image_read_pnm(&img, p) == MV_ERR, "truncated huge image accepted");
    fails += msg_has(__func__, p, "truncated: 32768x32768 P6 needs 3221225472 bytes of pixel data");
    remove(p);
    // writers: a missing directory, a full disk
    img.width = 2; img.height = 2; img.channels = 3; img.data = px;
    fails += EXPECT(image_write_pnm("build/no-such-directory-badinput/x.ppm", &img) == MV_ERR, "PNM into a missing directory");
    fails += msg_has(__func__, "build/no-such-directory-badinput/x.ppm", "cannot create");
#ifdef HAVE_POSIX
    if (exists("/dev/full")) {
        const char *out = TMP("image-out.ppm"), *tmp = TMP("image-out.ppm.tmp");
        remove(tmp);
        remove(out);
        fails += EXPECT(symlink("/dev/full", tmp) == 0, "cannot make %s a link to /dev/full", tmp);
        fails += EXPECT(video_write_y4m(out, px, 1, 2, 2, 8, 1) == MV_ERR, "Y4M onto a full disk");
        fails += msg_has(__func__, out, "write error");
        fails += EXPECT(!exists(tmp) && !exists(out), "files left after a failed write");
        remove(tmp);
    }
#endif
    return fails;
}
