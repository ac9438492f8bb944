// test_safetensors.c: the JSON parser, the safetensors reader/writer, and bad files.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/json.h"
#include "../ref/procedural.h"

// ---------------------------------------------------------------------------------------
// helpers

static void put64(unsigned char *b, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

// Write a file made of an 8-byte length (the given one, or the header's if len == ~0),
// the header text, and `data`.
static int write_raw(const char *path, uint64_t len, const char *header, const unsigned char *data, size_t ndata) {
    unsigned char b[8];
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    put64(b, len == ~(uint64_t)0 ? (uint64_t)strlen(header) : len);
    fwrite(b, 1, 8, fp);
    fwrite(header, 1, strlen(header), fp);
    if (ndata) fwrite(data, 1, ndata, fp);
    fclose(fp);
    return 0;
}

// Opening must fail with a message that names the file and contains `needle`.
static int expect_open_fails(const char *path, const char *needle) {
    StFile f;
    int fails = 0;
    if (st_open(&f, path) == MV_OK) {
        st_close(&f);
        harness_failf("safetensors_bad_files", "%s: opened, but should have been refused (%s)", path, needle);
        return 1;
    }
    fails += EXPECT(strstr(mv_error(), path) != NULL, "error does not name the file: %s", mv_error());
    fails += EXPECT(strstr(mv_error(), needle) != NULL, "error for %s lacks '%s': %s", path, needle, mv_error());
    return fails;
}

// ---------------------------------------------------------------------------------------

int test_json_valid(void) {
    JsonValue v;
    const char *t = " {\"a\": [1, -2.5e3, true, false, null], \"b\": \"x\\u00e9\\ud83d\\ude00\\n\", \"c\": {}} ";
    int fails = 0;
    uint64_t u;
    if (json_parse(&v, t, strlen(t))) { harness_failf(__func__, "valid JSON refused: %s", mv_error()); return 1; }
    fails += EXPECT(v.type == JSON_OBJECT && v.count == 3, "top level");
    fails += EXPECT(json_get(&v, "a")->count == 5, "array length");
    fails += EXPECT(json_get(&v, "a")->items[1].number == -2500.0, "number");
    fails += EXPECT(json_as_u64(&json_get(&v, "a")->items[0], &u) == 0 && u == 1, "u64");
    fails += EXPECT(json_as_u64(&json_get(&v, "a")->items[1], &u) != 0, "negative refused as u64");
    fails += EXPECT(strcmp(json_get(&v, "b")->text, "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0, "escapes decode to UTF-8");
    fails += EXPECT(json_get(&v, "c")->type == JSON_OBJECT && json_get(&v, "c")->count == 0, "empty object");
    json_free(&v);
    {
        const char *big = "18446744073709551615", *over = "18446744073709551616";
        if (json_parse(&v, big, strlen(big)) == 0) {
            fails += EXPECT(json_as_u64(&v, &u) == 0 && u == UINT64_MAX, "uint64 max");
            json_free(&v);
        } else fails++;
        if (json_parse(&v, over, strlen(over)) == 0) {
            fails += EXPECT(json_as_u64(&v, &u) != 0, "uint64 overflow refused");
            json_free(&v);
        } else fails++;
    }
    return fails;
}

int test_json_rejects(void) {
    static const char *bad[] = {
        "", "{", "}", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "{\"a\":1}x", "01", "1.", "-", "1e", "+1",
        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "tru", "nul", "{\"a\":1,\"a\":2}",
        "\"\x01\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "{1:2}", "[1 2]", "NaN", "[\"a\":1]",
    };
    JsonValue v;
    char deep[200];
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (json_parse(&v, bad[i], strlen(bad[i])) == MV_OK) {
            harness_failf(__func__, "accepted invalid JSON '%s'", bad[i]);
            json_free(&v);
            fails++;
        } else {
            fails += EXPECT(strstr(mv_error(), "invalid JSON at byte") != NULL, "message: %s", mv_error());
        }
    memset(deep, '[', sizeof deep); // nesting beyond JSON_MAX_DEPTH must be refused, not recursed
    if (json_parse(&v, deep, sizeof deep) == MV_OK) { json_free(&v); fails++; }
    return fails;
}

int test_st_roundtrip(void) {
    const char *path = "build/test_roundtrip.safetensors";
    StWriter w;
    StFile f;
    Tensor a, b, r;
    int64_t ids[6] = {49406, 320, -1, 0, (int64_t)1 << 40, 49407}, *ri = NULL;
    size_t shp[2] = {2, 3}, n, i;
    int fails = 0;
    if (tensor_alloc_v(&a, 3, (size_t)2, (size_t)3, (size_t)4) || tensor_alloc_v(&b, 1, (size_t)5)) return 1;
    for (i = 0; i < a.numel; i++) a.data[i] = (real)(0.1 * (double)i - 1.0);
    for (i = 0; i < b.numel; i++) b.data[i] = (real)(1.0 / (double)(i + 1));
    st_writer_init(&w);
    fails += EXPECT(st_writer_add(&w, "a.b\"c", &a, ST_F32) == 0, "add a");
    fails += EXPECT(st_writer_add(&w, "b", &b, ST_F64) == 0, "add b");
    fails += EXPECT(st_writer_add(&w, "b", &b, ST_F64) != 0, "duplicate name refused");
    fails += EXPECT(st_writer_add_i64(&w, "ids", ids, 2, shp) == 0, "add ids");
    fails += EXPECT(st_writer_meta(&w, "op", "test") == 0, "meta");
    fails += EXPECT(st_writer_save(&w, path) == 0, "save: %s", mv_error());
    st_writer_free(&w);
    if (st_open(&f, path)) { harness_failf(__func__, "%s", mv_error()); tensor_free(&a); tensor_free(&b); return 1; }
    fails += EXPECT(f.count == 3, "3 tensors");
    fails += EXPECT(st_meta(&f, "op") && strcmp(st_meta(&f, "op"), "test") == 0, "metadata");
    fails += EXPECT(f.data_start % 8 == 0, "data region aligned");
    if (st_read(&f, "a.b\"c", &r) == 0) {
        fails += EXPECT(tensor_same_shape(&r, &a), "shape of a");
        for (i = 0; i < a.numel; i++) fails += EXPECT((float)r.data[i] == (float)a.data[i], "a[%lu]", (unsigned long)i);
        tensor_free(&r);
    } else fails++;
    if (st_read(&f, "b", &r) == 0) {
        for (i = 0; i < b.numel; i++) fails += EXPECT(r.data[i] == b.data[i], "b[%lu] exact", (unsigned long)i);
        tensor_free(&r);
    } else fails++;
    if (st_read_i64(&f, "ids", &ri, &n) == 0) {
        for (i = 0; i < 6; i++) fails += EXPECT(ri[i] == ids[i], "ids[%lu] exact", (unsigned long)i);
        free(ri);
    } else fails++;
    fails += EXPECT(st_read(&f, "nope", &r) != 0 && strstr(mv_error(), "missing tensor 'nope'"), "missing tensor named");
    st_close(&f);
    tensor_free(&a);
    tensor_free(&b);
    remove(path);
    return fails;
}

int test_st_dtypes(void) {
    // Hand-built little-endian bytes of every readable dtype, decoded whatever the host order.
    const char *path = "build/test_dtypes.safetensors";
    const char *hdr =
        "{\"f16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
        "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
        "\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[12,16]},"
        "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]},"
        "\"f32\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]}}";
    unsigned char d[28] = {
        0x00, 0x3c,  0x00, 0xc0,  0x01, 0x00,  0x00, 0x7c, // f16: 1, -2, 2^-24 (subnormal), +inf
        0x80, 0x3f,  0x40, 0xc0,                           // bf16: 1, -3
        0xfe, 0xff, 0xff, 0xff,                            // i32: -2
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,    // i64: 2^32
        0x00, 0x00, 0x20, 0x40};                           // f32: 2.5
    StFile f;
    Tensor t;
    int fails = 0;
    write_raw(path, ~(uint64_t)0, hdr, d, sizeof d);
    if (st_open(&f, path)) { harness_failf(__func__, "%s", mv_error()); return 1; }
    if (st_read(&f, "f16", &t) == 0) {
        fails += EXPECT(t.data[0] == 1 && t.data[1] == -2 && (double)t.data[2] == 1.0 / 16777216.0 && t.data[3] > 1e38, "f16 values");
        tensor_free(&t);
    } else fails++;
    if (st_read(&f, "bf16", &t) == 0) { fails += EXPECT(t.data[0] == 1 && t.data[1] == -3, "bf16 values"); tensor_free(&t); } else fails++;
    if (st_read(&f, "i32", &t) == 0) { fails += EXPECT(t.data[0] == -2, "i32 value"); tensor_free(&t); } else fails++;
    if (st_read(&f, "i64", &t) == 0) { fails += EXPECT(t.data[0] == 4294967296.0, "i64 value"); tensor_free(&t); } else fails++;
    if (st_read(&f, "f32", &t) == 0) { fails += EXPECT(t.ndim == 0 && t.numel == 1 && t.data[0] == 2.5, "scalar"); tensor_free(&t); } else fails++;
    st_close(&f);
    remove(path);
    return fails;
}

int test_st_bad_files(void) {
    const char *p = "build/test_bad.safetensors";
    const char *ok = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    unsigned char d[16] = {0};
    int fails = 0;
    FILE *fp;
    // missing file
    remove(p);
    fails += expect_open_fails(p, "cannot open");
    // shorter than 8 bytes
    fp = fopen(p, "wb"); fputs("abc", fp); fclose(fp);
    fails += expect_open_fails(p, "shorter than its 8-byte header length");
    // not a safetensors file: text whose first 8 bytes make an absurd length
    fp = fopen(p, "wb"); fputs("hello, this is not a tensor file at all\n", fp); fclose(fp);
    fails += expect_open_fails(p, "not a safetensors file");
    // header length larger than the file
    write_raw(p, 4000, ok, d, 8);
    fails += expect_open_fails(p, "truncated");
    // data region truncated
    write_raw(p, ~(uint64_t)0, ok, d, 4);
    fails += expect_open_fails(p, "truncated");
    // offsets that do not match dtype x shape
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", d, 12);
    fails += expect_open_fails(p, "need 8");
    // offsets past the end of the file
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d, 8);
    fails += expect_open_fails(p, "truncated");
    // end before begin
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", d, 8);
    fails += expect_open_fails(p, "end before they begin");
    // overlapping tensors
    write_raw(p, ~(uint64_t)0,
              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", d, 12);
    fails += expect_open_fails(p, "overlap");
    // unknown dtype
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", d, 2);
    fails += expect_open_fails(p, "unsupported dtype");
    // absurd shape: the element count overflows 64 bits (a 32-bit size_t refuses it earlier)
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", d, 8);
    fails += expect_open_fails(p, sizeof(size_t) < 8 ? "size_t" : "overflow");
    // 2^31 elements: fine on 64 bits (then refused for its offsets), never wrapped on 32 bits
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[65536,32768],\"data_offsets\":[0,8]}}", d, 8);
    fails += expect_open_fails(p, sizeof(size_t) < 8 ? "size_t" : "need 8589934592");
    // malformed JSON
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", d, 8);
    fails += expect_open_fails(p, "invalid JSON");
    // a field that is not part of the format
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", d, 8);
    fails += expect_open_fails(p, "unknown header field");
    // negative offset
    write_raw(p, ~(uint64_t)0, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", d, 8);
    fails += expect_open_fails(p, "data_offsets");
    remove(p);
    return fails;
}

int test_procedural(void) {
    // Properties only: the values themselves are checked against the exporter's numpy
    // generator by the corpus op "procedural".
    Tensor a, b;
    size_t i;
    int fails = 0, differ = 0;
    if (tensor_alloc_v(&a, 1, (size_t)1000) || tensor_alloc_v(&b, 1, (size_t)1000)) return 1;
    proc_fill(a.data, a.numel, 7, "w", 0.5, 1.0);
    proc_fill(b.data, b.numel, 7, "w", 0.5, 1.0);
    for (i = 0; i < a.numel; i++) fails += EXPECT(a.data[i] == b.data[i] && a.data[i] >= 0.5 && a.data[i] < 1.5, "range/determinism");
    proc_fill(b.data, b.numel, 7, "v", 0.5, 1.0);
    for (i = 0; i < a.numel; i++) differ += a.data[i] != b.data[i];
    fails += EXPECT(differ > 990, "names give independent streams");
    tensor_free(&a);
    tensor_free(&b);
    return fails;
}
