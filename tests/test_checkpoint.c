// test_checkpoint.c: the checkpoint readers (ref/checkpoint.h) against files written by the
// real writers (flax.serialization.to_bytes, torch.save), with the values the writing library
// holds: vectors/checkpoint/NAME.expected.safetensors, written by tools/ckpt_fixtures.py
// (`make ckpt-fixtures`). Every tensor must match bit for bit, with its dtype and shape, and
// no tensor may be missing or extra.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/checkpoint.h"

#define FIXTURES "vectors/checkpoint/"

// Equal bits, or both NaN (numpy and C may quiet a NaN's payload differently when widening).
static int same_double(double a, double b) { return (a != a && b != b) || memcmp(&a, &b, sizeof a) == 0; }
static int same_real(real a, real b) { return (a != a && b != b) || memcmp(&a, &b, sizeof a) == 0; }

// The stored dtype the library reports: the line "DTYPE NAME" of the metadata 'dtypes'.
static const char *expected_dtype(const StFile *ex, const char *name, char *buf, size_t cap) {
    const char *s = st_meta(ex, "dtypes");
    size_t n = strlen(name);
    while (s && *s) {
        const char *sp = strchr(s, ' '), *nl = strchr(s, '\n');
        if (!sp || !nl || sp > nl) return NULL;
        if ((size_t)(nl - sp - 1) == n && strncmp(sp + 1, name, n) == 0 && (size_t)(sp - s) < cap) {
            memcpy(buf, s, (size_t)(sp - s));
            buf[sp - s] = '\0';
            return buf;
        }
        s = nl + 1;
    }
    return NULL;
}

// One fixture: every expected tensor read three ways (ck_read_f64 exactly, ck_read_into as the
// build's reals, ck_read_raw as the stored little-endian bytes), and the same count of
// tensors in the file.
static int check_fixture(const char *file, CkFormat fmt) {
    char path[256], epath[300], key[300];
    CkFile f;
    StFile ex;
    size_t i;
    int fails = 0;
    snprintf(path, sizeof path, FIXTURES "%s", file);
    snprintf(epath, sizeof epath, "%s.expected.safetensors", path);
    if (ck_open(&f, path)) { harness_failf(file, "%s", mv_error()); return 1; }
    if (st_open(&ex, epath)) { harness_failf(file, "%s", mv_error()); ck_close(&f); return 1; }
    fails += EXPECT(f.format == fmt, "%s: format %s, expected %s", file, ck_format_name(f.format), ck_format_name(fmt));
    fails += EXPECT(f.count == ex.count, "%s: %lu tensors, the library holds %lu", file, (unsigned long)f.count, (unsigned long)ex.count);
    for (i = 0; i < ex.count; i++) {
        const StEntry *x = &ex.entries[i];
        const CkEntry *e = ck_find(&f, x->name);
        const char *dt;
        double *want = NULL, *got = NULL;
        real *gotr = NULL;
        unsigned char *raw = NULL;
        size_t j, bad = 0;
        int k;
        dt = expected_dtype(&ex, x->name, key, sizeof key);
        if (!e) { harness_failf(file, "tensor '%s' is missing", x->name); fails++; continue; }
        if (!dt || strcmp(dt, st_dtype_name(e->dtype))) { harness_failf(file, "'%s': dtype %s, the library says %s", x->name, st_dtype_name(e->dtype), dt ? dt : "?"); fails++; }
        if (e->ndim != x->ndim) { harness_failf(file, "'%s': rank %d, the library says %d", x->name, e->ndim, x->ndim); fails++; continue; }
        for (k = 0; k < e->ndim; k++)
            if (e->shape[k] != x->shape[k]) { harness_failf(file, "'%s': shape[%d] %lu, the library says %lu", x->name, k, (unsigned long)e->shape[k], (unsigned long)x->shape[k]); fails++; }
        if (e->numel != x->numel) continue;
        want = (double *)calloc(x->numel + 1, sizeof(double));
        got = (double *)calloc(x->numel + 1, sizeof(double));
        gotr = (real *)calloc(x->numel + 1, sizeof(real));
        raw = (unsigned char *)calloc(x->numel + 1, st_dtype_size(e->dtype));
        if (!want || !got || !gotr || !raw) { fails++; goto next; }
        if (st_read_f64(&ex, x, want) || ck_read_f64(&f, e, got) || ck_read_into(&f, e, gotr) || ck_read_raw(&f, e, raw)) { harness_failf(file, "%s", mv_error()); fails++; goto next; }
        for (j = 0; j < x->numel; j++) {
            if (!same_double(got[j], want[j]) || !same_real(gotr[j], (real)want[j]) ||
                !same_double(st_decode(raw + j * st_dtype_size(e->dtype), e->dtype), want[j])) {
                if (!bad) harness_failf(file, "'%s'[%lu]: got %.17g (as real %.9g), the library holds %.17g", x->name, (unsigned long)j, got[j], (double)gotr[j], want[j]);
                bad++;
            }
        }
        fails += bad != 0;
    next:
        free(want); free(got); free(gotr); free(raw);
    }
    st_close(&ex);
    ck_close(&f);
    return fails;
}

int test_ckpt_msgpack_fixtures(void) {
    static const char *files[] = {"flax_f32.msgpack", "flax_f16.msgpack", "flax_bf16.msgpack", "flax_mixed.msgpack", "flax_chunked.msgpack"};
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof files / sizeof files[0]; i++) fails += check_fixture(files[i], CK_MSGPACK);
    return fails;
}

// A safetensors file through the same index: names, dtypes, values as st_* reads them.
int test_ckpt_safetensors(void) {
    const char *path = "vectors/checkpoint/flax_mixed.msgpack.expected.safetensors";
    CkFile f;
    StFile s;
    size_t i;
    int fails = 0;
    if (ck_open(&f, path)) { harness_failf(__func__, "%s", mv_error()); return 1; }
    if (st_open(&s, path)) { harness_failf(__func__, "%s", mv_error()); ck_close(&f); return 1; }
    fails += EXPECT(f.format == CK_SAFETENSORS && f.count == s.count && f.count > 0, "%s: format or count", path);
    for (i = 0; i < s.count && !fails; i++) {
        const CkEntry *e = ck_find(&f, s.entries[i].name);
        double a[64], b[64];
        size_t j;
        if (EXPECT(e && e->numel == s.entries[i].numel && e->numel <= 64, "'%s' missing or resized", s.entries[i].name)) { fails++; break; }
        if (st_read_f64(&s, &s.entries[i], a) || ck_read_f64(&f, e, b)) { harness_failf(__func__, "%s", mv_error()); fails++; break; }
        for (j = 0; j < e->numel; j++) fails += EXPECT(same_double(a[j], b[j]), "'%s'[%lu] differs", e->name, (unsigned long)j);
    }
    fails += EXPECT(ck_find(&f, "no such tensor") == NULL, "ck_find found a missing name");
    st_close(&s);
    ck_close(&f);
    return fails;
}

int test_ckpt_torch_fixtures(void) {
    static const char *files[] = {"torch_f32.pt", "torch_f16.pt", "torch_bf16.pt", "torch_views.pt", "torch_nested.pt"};
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof files / sizeof files[0]; i++) fails += check_fixture(files[i], CK_TORCH_ZIP);
    return fails;
}

// Pickles that name a global a state dict never needs (written by Python's pickle, see
// tools/ckpt_fixtures.py): refused by name, and nothing they ask for happens.
int test_ckpt_pickle_refusals(void) {
    static const struct { const char *file, *global; } cases[] = {
        {"evil_os_system.pt", "the global os.system,"},
        {"evil_posix_system.pt", "the global posix.system,"},
        {"evil_builtins_eval.pt", "the global builtins.eval,"},
        {"evil_builtins_getattr.pt", "the global builtins.getattr,"},
        {"evil_subprocess_popen.pt", "the global subprocess.Popen,"},
        {"evil_builtins_exec_p4.pt", "the global builtins.exec,"},
        {"torch_legacy.pt", "legacy torch.save format"},
    };
    size_t i;
    int fails = 0;
    FILE *fp;
    remove("build/ckpt-PWNED");
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        CkFile f;
        snprintf(path, sizeof path, FIXTURES "%s", cases[i].file);
        mv_clear_error();
        if (ck_open(&f, path) == MV_OK) { harness_failf(cases[i].file, "opened"); ck_close(&f); fails++; continue; }
        fails += EXPECT(strstr(mv_error(), path) && strstr(mv_error(), cases[i].global), "%s: message lacks the file or '%s': %s", cases[i].file, cases[i].global, mv_error());
    }
    fp = fopen("build/ckpt-PWNED", "rb");
    fails += EXPECT(fp == NULL, "a refused pickle's command ran (build/ckpt-PWNED exists)");
    if (fp) fclose(fp);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Hostile files: every one must fail at ck_open with a message naming the file and the
// problem; nothing may crash (these run under `make sanitize` too).

#define STR2(x) #x
#define STR(x) STR2(x)
#define TMP(name) "build/ckpt-f" STR(MAVREF_PRECISION) "-" name

static int write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    int ok;
    if (!fp) return MV_ERR;
    ok = n == 0 || fwrite(data, 1, n, fp) == n;
    ok = (fclose(fp) == 0) && ok;
    return ok ? MV_OK : MV_ERR;
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    unsigned char *b;
    long len;
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, fp) != (size_t)len) { free(b); b = NULL; }
    fclose(fp);
    *n = (size_t)len;
    return b;
}

// ck_open(bytes) must fail naming the file and containing `needle`.
static int expect_refused(const char *where, const void *bytes, size_t n, const char *needle) {
    const char *p = TMP("hostile.bin");
    CkFile f;
    if (write_file(p, bytes, n)) { harness_failf(where, "cannot write %s", p); return 1; }
    mv_clear_error();
    if (ck_open(&f, p) == MV_OK) { harness_failf(where, "opened a hostile file (expected '%s')", needle); ck_close(&f); return 1; }
    if (!strstr(mv_error(), p) || !strstr(mv_error(), needle)) { harness_failf(where, "message lacks the file or '%s': %s", needle, mv_error()); return 1; }
    return 0;
}

// After a successful open, every tensor must read both ways or fail with a message.
static int read_all(const CkFile *f, const char *where) {
    size_t i;
    int fails = 0;
    for (i = 0; i < f->count; i++) {
        const CkEntry *e = &f->entries[i];
        double *d = (double *)malloc((e->numel + 1) * sizeof *d);
        real *r = (real *)malloc((e->numel + 1) * sizeof *r);
        mv_clear_error();
        if (d && r && ck_read_f64(f, e, d) != MV_OK && !mv_error()[0]) { harness_failf(where, "a read failed without a message"); fails++; }
        mv_clear_error();
        if (d && r && ck_read_into(f, e, r) != MV_OK && !mv_error()[0]) { harness_failf(where, "a read failed without a message"); fails++; }
        free(d);
        free(r);
    }
    return fails;
}

// Every prefix of every fixture is refused; every single-byte corruption either is refused
// with a message or opens and reads (or fails to read) cleanly.
int test_bad_ckpt_truncated_corrupt(void) {
    static const char *files[] = {"flax_mixed.msgpack", "flax_chunked.msgpack", "torch_views.pt", "torch_f16.pt", "torch_nested.pt"};
    const char *p = TMP("mutant.bin");
    size_t i, k;
    int fails = 0;
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        size_t n;
        unsigned char *b;
        snprintf(path, sizeof path, FIXTURES "%s", files[i]);
        b = read_file(path, &n);
        if (!b) { harness_failf(__func__, "cannot read %s", path); fails++; continue; }
        for (k = 0; k < n && fails < 5; k += k < 256 || n - k < 256 ? 1 : 7) { // truncated at k bytes (every 7th in the middle of large files)
            CkFile f;
            if (write_file(p, b, k)) { fails++; break; }
            mv_clear_error();
            if (ck_open(&f, p) == MV_OK) { harness_failf(files[i], "a %lu-byte prefix opened", (unsigned long)k); ck_close(&f); fails++; }
            else if (!strstr(mv_error(), p)) { harness_failf(files[i], "prefix %lu: message lacks the file: %s", (unsigned long)k, mv_error()); fails++; }
        }
        for (k = 0; k < n && fails < 5; k++) { // byte k inverted
            CkFile f;
            b[k] ^= 0xFF;
            if (write_file(p, b, n)) { fails++; break; }
            b[k] ^= 0xFF;
            mv_clear_error();
            if (ck_open(&f, p) == MV_OK) {
                fails += read_all(&f, files[i]);
                ck_close(&f);
            } else if (!strstr(mv_error(), p)) { harness_failf(files[i], "byte %lu inverted: message lacks the file: %s", (unsigned long)k, mv_error()); fails++; }
        }
        free(b);
    }
    return fails;
}

// Lying and absurd msgpack files, written byte by byte.
int test_bad_ckpt_msgpack(void) {
    static const struct { const char *bytes; size_t n; const char *needle; } cases[] = {
#define C(s, needle) {s, sizeof s - 1, needle}
        // {"a": ext1 [[2], "float32", 4 bytes]}: data shorter than dtype x shape
        C("\x81\xa1" "a" "\xc7\x11\x01\x93\x91\x02\xa7" "float32" "\xc4\x04\0\0\0\0", "4 data bytes, but dtype float32"),
        // the ext payload claims 255 bytes; the file ends first
        C("\x81\xa1" "a" "\xc7\xff\x01\x93\x91\x01\xa7" "float32" "\xc4\x04\0\0\0\0", "truncated"),
        // bin32 length far past the end of the file
        C("\x81\xa1" "a" "\xc9\0\0\0\x20\x01\x93\x91\x01\xa7" "float32" "\xc6\x7f\xff\xff\xff", "truncated"),
        // shape whose element count overflows 64 bits
        C("\x81\xa1" "a" "\xc7\x27\x01\x93\x93\xcf\0\0\0\x01\0\0\0\0\xcf\0\0\0\x01\0\0\0\0\xcf\0\0\0\x01\0\0\0\0\xa7" "float32" "\xc4\0", "element count overflows"),
        // numel x 4 bytes overflows
        C("\x81\xa1" "a" "\xc7\x15\x01\x93\x91\xcf\x40\0\0\0\0\0\0\0\xa7" "float32" "\xc4\0", "byte size overflows"),
        // absurd shape that fits (even a 32-bit size_t): 2^28 elements, no bytes
        C("\x81\xa1" "a" "\xc7\x15\x01\x93\x91\xcf\0\0\0\0\x10\0\0\0\xa7" "float32" "\xc4\0", "0 data bytes, but dtype float32 and its shape need 1073741824"),
        C("\x81\xa1" "a" "\xc7\x0f\x01\x93\x91\x01\xa9" "complex64" "\xc4\0", "dtype 'complex64' is not one mavref reads"),
        C("\x81\xa1" "a" "\xc7\x13\x01\x93\x97\1\1\1\1\1\1\1\xa7" "float32" "\xc4\0", "rank 7 exceeds 6"),
        C("\x81\xa1" "a" "\xc7\x0a\x01\x93\x91\x01\x05\xc4\x04\0\0\0\0", "expected a string"),
        C("\x81\xa1" "a" "\xc7\x0b\x01\x92\x91\x01\xa7" "float32", "not [shape, dtype, bytes]"),
        C("\x81\xa1" "a" "\xc7\x10\x01\x93\x91\x01\xa7" "float32" "\xc4\x04\0\0\0\0", "disagrees with its contents"),
        C("\x81\xa1" "a" "\xd7\x02\0\0\0\0\0\0\0\0", "complex number"),
        C("\x81\xa1" "a" "\xd4\x05\0", "extension type 5"),
        C("\x81\xa1" "a" "\xa3" "abc", "is a msgpack string"),
        C("\x81\xa1" "a" "\xc1", "byte 0xc1"),
        C("\x81\xa1" "a" "\xc0\x00", "1 bytes follow the msgpack map"),
        C("\x82\xa1" "a" "\x01\xa1" "a" "\x02", "two tensors are named 'a'"),
        C("\x81\xa3" "a/b" "\x01", "holds '/'"),
        C("\x81\xdb\xff\xff\xff\xff", "longer than"),
        C("\x81\xa1" "a" "\x82\xa1" "b" "\x01\xb9" "__msgpack_chunked_array__" "\xc3", "is not its map's first key"),
        // chunked: shape (3,), one chunk of 2 elements
        C("\x81\xa1" "a" "\x83\xb9" "__msgpack_chunked_array__" "\xc3\xa5" "shape" "\x81\xa1" "0" "\x03\xa6" "chunks" "\x81\xa1" "0"
          "\xc7\x15\x01\x93\x91\x02\xa7" "float32" "\xc4\x08\0\0\0\0\0\0\0\0", "chunks hold 2 elements, the shape needs 3"),
        C("\x81\xa1" "a" "\x83\xb9" "__msgpack_chunked_array__" "\xc3\xa5" "shape" "\x81\xa1" "1" "\x03\xa6" "chunks" "\x80", "has key '1' where '0' belongs"),
        C("\x81\xa1" "a" "\x81\xb9" "__msgpack_chunked_array__" "\xc2", "is not true"),
        C("\x91\x01", "unrecognised first bytes"),
#undef C
    };
    unsigned char deep[3 * 80 + 1];
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char where[64];
        snprintf(where, sizeof where, "%s case %lu", __func__, (unsigned long)i);
        fails += expect_refused(where, cases[i].bytes, cases[i].n, cases[i].needle);
    }
    for (i = 0; i < 80; i++) { deep[3 * i] = 0x81; deep[3 * i + 1] = 0xa1; deep[3 * i + 2] = 'a'; }
    deep[240] = 0x01;
    fails += expect_refused("msgpack deep nesting", deep, sizeof deep, "nested deeper than 64 levels");
    fails += expect_refused("empty file", "", 0, "empty, or not a regular file");
    {   // a directory (which may report any size) is refused at once
        CkFile f;
        mv_clear_error();
        if (ck_open(&f, "build") == MV_OK) { ck_close(&f); harness_failf(__func__, "opened the directory build/"); fails++; }
        else fails += EXPECT(strstr(mv_error(), "build") != NULL, "directory: %s", mv_error());
    }
    return fails;
}

// Integers are widened only when exact: -2^63 is a power of two (exact in float and double),
// 2^53 + 1 needs 54 significant bits, 2^24 + 1 needs 25 (exact in double, not in float).
int test_ckpt_int_exactness(void) {
    static const unsigned char file[] = {0x83, 0xa1, 'a', 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xa1, 'b', 0xcf, 0, 0x20, 0, 0, 0, 0, 0, 1,
                                         0xa1, 'c', 0xce, 1, 0, 0, 1};
    const char *p = TMP("ints.msgpack");
    CkFile f;
    double d = 0;
    real r = 0;
    int fails = 0;
    if (write_file(p, file, sizeof file) || ck_open(&f, p)) { harness_failf(__func__, "%s", mv_error()); return 1; }
    fails += EXPECT(ck_read_f64(&f, ck_find(&f, "a"), &d) == MV_OK && d == -9223372036854775808.0, "-2^63 as double: %s", mv_error());
    fails += EXPECT(ck_read_into(&f, ck_find(&f, "a"), &r) == MV_OK && r == (real)-9223372036854775808.0, "-2^63 as real: %s", mv_error());
    mv_clear_error();
    fails += EXPECT(ck_read_f64(&f, ck_find(&f, "b"), &d) == MV_ERR && strstr(mv_error(), "9007199254740993") && strstr(mv_error(), "not exact"), "2^53+1: %s", mv_error());
    mv_clear_error();
#if MAVREF_PRECISION == 32
    fails += EXPECT(ck_read_into(&f, ck_find(&f, "c"), &r) == MV_ERR && strstr(mv_error(), "16777217"), "2^24+1 in float: %s", mv_error());
#else
    fails += EXPECT(ck_read_into(&f, ck_find(&f, "c"), &r) == MV_OK && r == 16777217.0, "2^24+1 in double: %s", mv_error());
#endif
    ck_close(&f);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Lying torch archives: a small zip writer (stored members) and a pickle builder, so each
// case changes one thing in an otherwise well-formed archive.

typedef struct { unsigned char b[8192]; size_t n; } Bytes;

static void put(Bytes *o, const void *p, size_t n) {
    if (o->n + n <= sizeof o->b) memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put_u16(Bytes *o, unsigned v) { unsigned char b[2]; b[0] = (unsigned char)v; b[1] = (unsigned char)(v >> 8); put(o, b, 2); }
static void put_u32(Bytes *o, uint32_t v) { put_u16(o, v & 0xFFFF); put_u16(o, v >> 16); }
static void put_op(Bytes *o, const char *ops) { put(o, ops, strlen(ops)); }
static void pk_str(Bytes *o, const char *s) { put_op(o, "X"); put_u32(o, (uint32_t)strlen(s)); put_op(o, s); }
static void pk_int(Bytes *o, uint64_t v) { // LONG1 with 8 bytes: any value
    unsigned char b[10];
    int k;
    b[0] = 0x8a; b[1] = 8;
    for (k = 0; k < 8; k++) b[2 + k] = (unsigned char)(v >> (8 * k));
    put(o, b, 10);
}
static void pk_global(Bytes *o, const char *mod, const char *name) { put_op(o, "c"); put_op(o, mod); put_op(o, "\n"); put_op(o, name); put_op(o, "\n"); }

// _rebuild_tensor_v2(('storage', torch.<stype>, key, 'cpu', numel), offset, size, stride, False, {})
static void pk_tensor(Bytes *o, const char *stype, const char *key, uint64_t numel, uint64_t offset, int ndim, const uint64_t *size, const uint64_t *stride) {
    int k;
    pk_global(o, "torch._utils", "_rebuild_tensor_v2");
    put_op(o, "((");
    pk_str(o, "storage"); pk_global(o, "torch", stype); pk_str(o, key); pk_str(o, "cpu"); pk_int(o, numel);
    put_op(o, "tQ");
    pk_int(o, offset);
    put_op(o, "(");
    for (k = 0; k < ndim; k++) pk_int(o, size[k]);
    put_op(o, "t(");
    for (k = 0; k < ndim; k++) pk_int(o, stride[k]);
    put_op(o, "t\x89}tR");
}


// A zip of n stored members (member 0 with method `method`; `bad_crc` breaks its checksum).
static void make_zip_n(Bytes *z, int n, const char *const *names, const unsigned char *const *data, const size_t *len, int method,
                       int bad_crc) {
    size_t off[4], cd, cd_size;
    int i;
    z->n = 0;
    for (i = 0; i < n; i++) {
        off[i] = z->n;
        put_op(z, "PK\3\4"); put_u16(z, 20); put_u16(z, 0); put_u16(z, i ? 0 : (unsigned)method); put_u32(z, 0);
        put_u32(z, ck_crc32(data[i], len[i]) ^ (uint32_t)(i ? 0 : bad_crc)); put_u32(z, (uint32_t)len[i]); put_u32(z, (uint32_t)len[i]);
        put_u16(z, (unsigned)strlen(names[i])); put_u16(z, 0); put_op(z, names[i]); put(z, data[i], len[i]);
    }
    cd = z->n;
    for (i = 0; i < n; i++) {
        put_op(z, "PK\1\2"); put_u16(z, 20); put_u16(z, 20); put_u16(z, 0); put_u16(z, i ? 0 : (unsigned)method); put_u32(z, 0);
        put_u32(z, ck_crc32(data[i], len[i]) ^ (uint32_t)(i ? 0 : bad_crc)); put_u32(z, (uint32_t)len[i]); put_u32(z, (uint32_t)len[i]);
        put_u16(z, (unsigned)strlen(names[i])); put_u16(z, 0); put_u16(z, 0); put_u16(z, 0); put_u16(z, 0); put_u32(z, 0);
        put_u32(z, (uint32_t)off[i]); put_op(z, names[i]);
    }
    cd_size = z->n - cd;
    put_op(z, "PK\5\6"); put_u16(z, 0); put_u16(z, 0); put_u16(z, (unsigned)n); put_u16(z, (unsigned)n);
    put_u32(z, (uint32_t)cd_size); put_u32(z, (uint32_t)cd); put_u16(z, 0);
}

// A zip of stored members: "archive/data.pkl" = pkl, "archive/data/0" = 64 bytes (method
// `method` for data.pkl; `bad_crc` breaks its checksum).
static void make_zip(Bytes *z, const Bytes *pkl, int method, int bad_crc) {
    static const unsigned char storage[64] = {0, 0, 128, 63};
    static const char *const names[2] = {"archive/data.pkl", "archive/data/0"};
    const unsigned char *data[2];
    size_t len[2];
    data[0] = pkl->b; len[0] = pkl->n;
    data[1] = storage; len[1] = sizeof storage;
    make_zip_n(z, 2, names, data, len, method, bad_crc);
}

// An archive written on a big-endian host (its 'byteorder' member says "big"): values and the
// raw little-endian bytes of a contiguous tensor and of a strided view of the same storage.
int test_ckpt_torch_big_endian(void) {
    static const char *const names[3] = {"archive/data.pkl", "archive/data/0", "archive/byteorder"};
    static const uint64_t s2[2] = {2, 4}, c2[2] = {4, 1}, tst[2] = {1, 4};
    unsigned char storage[64], raw[32];
    const unsigned char *data[3];
    size_t len[3];
    Bytes pkl, z;
    CkFile f;
    double w[8], t[8];
    int k, i, j, fails = 0;
    for (k = 0; k < 16; k++) { // big-endian float32 k + 1
        float v = (float)(k + 1);
        uint32_t u;
        memcpy(&u, &v, 4);
        storage[4 * k] = (unsigned char)(u >> 24); storage[4 * k + 1] = (unsigned char)(u >> 16);
        storage[4 * k + 2] = (unsigned char)(u >> 8); storage[4 * k + 3] = (unsigned char)u;
    }
    pkl.n = 0;
    put_op(&pkl, "\x80\x02}(");
    pk_str(&pkl, "w"); pk_tensor(&pkl, "FloatStorage", "0", 16, 0, 2, s2, c2);
    pk_str(&pkl, "t"); pk_tensor(&pkl, "FloatStorage", "0", 16, 1, 2, s2, tst);
    put_op(&pkl, "u.");
    data[0] = pkl.b; len[0] = pkl.n;
    data[1] = storage; len[1] = sizeof storage;
    data[2] = (const unsigned char *)"big"; len[2] = 3;
    make_zip_n(&z, 3, names, data, len, 0, 0);
    if (write_file(TMP("big-endian.pt"), z.b, z.n) || ck_open(&f, TMP("big-endian.pt"))) return EXPECT(0, "%s", mv_error());
    fails += EXPECT(f.count == 2 && ck_read_f64(&f, ck_find(&f, "w"), w) == MV_OK && ck_read_f64(&f, ck_find(&f, "t"), t) == MV_OK,
                    "big-endian archive: %s", mv_error());
    for (i = 0; i < 2 && !fails; i++)
        for (j = 0; j < 4; j++) {
            fails += EXPECT(w[i * 4 + j] == 1 + i * 4 + j, "w[%d][%d] = %g", i, j, w[i * 4 + j]);
            fails += EXPECT(t[i * 4 + j] == 2 + i + 4 * j, "t[%d][%d] = %g", i, j, t[i * 4 + j]);
        }
    for (k = 0; k < 2 && !fails; k++) { // raw: little-endian, C order, whatever the archive's byte order
        const CkEntry *e = ck_find(&f, k ? "t" : "w");
        const double *want = k ? t : w;
        fails += EXPECT(ck_read_raw(&f, e, raw) == MV_OK, "ck_read_raw: %s", mv_error());
        for (i = 0; i < 8 && !fails; i++) fails += EXPECT(st_decode(raw + 4 * i, ST_F32) == want[i], "%s raw[%d]", e->name, i);
    }
    ck_close(&f);
    remove(TMP("big-endian.pt"));
    return fails;
}

int test_bad_ckpt_torch(void) {
    enum { OK, OS_SYSTEM, NEWOBJ, MEMO, MEMO_HUGE, NO_STOP, NUMEL_WRONG, NUMEL_OVERFLOW, OUTSIDE, EXTENT, RANK7, INTKEY, ROOT_LIST,
           DEEP, NO_MEMBER, EXPANDED, COMPRESSED, BADCRC, BIGINT, SHORT_PID, COMPLEX, NCASES };
    static const char *needles[NCASES] = {
        NULL, "names the global os.system, which a state dict never needs", "opcode 0x81", "memo entry 7, which was never stored",
        "memo index 4294967295 is out of range", "without a STOP", "storage 'archive/data/0' holds 64 bytes, but 15 elements",
        "elements of F32 need 0", "reaches element 21 of storage '0', which holds 16", "extent overflows", "rank 7", "dict key is a int",
        "holds a list, not a state dict", "nested deeper than 32", "has no member 'archive/data/9'", "an expanded view",
        "is compressed (method 8)", "CRC-32", "integer of 9 bytes", "not ('storage', type, key, location, numel)",
        "tensors of torch.ComplexFloatStorage, a type mavref does not read"};
    static const uint64_t s2[2] = {2, 4}, c2[2] = {4, 1}, t2[2] = {4, 2}, tst[2] = {1, 4};
    static const uint64_t big[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40}, r7[7] = {1, 1, 1, 1, 1, 1, 1}, e2[2] = {100, 16}, e2s[2] = {0, 1};
    int c, fails = 0, k;
    for (c = 0; c < NCASES; c++) {
        Bytes pkl, z;
        char where[64];
        snprintf(where, sizeof where, "%s case %d", __func__, c);
        pkl.n = 0;
        put_op(&pkl, "\x80\x02");
        if (c == ROOT_LIST) put_op(&pkl, "](");
        else put_op(&pkl, "}(");
        if (c == DEEP) for (k = 0; k < 40; k++) { pk_str(&pkl, "d"); put_op(&pkl, "}("); }
        if (c == INTKEY) put_op(&pkl, "K\x05"); else pk_str(&pkl, "w");
        switch (c) {
        case OS_SYSTEM: pk_global(&pkl, "os", "system"); pk_str(&pkl, "touch build/ckpt-PWNED"); put_op(&pkl, "\x85R"); break;
        case NEWOBJ: pk_global(&pkl, "collections", "OrderedDict"); put_op(&pkl, ")\x81"); break;
        case MEMO: put_op(&pkl, "h\x07"); break;
        case MEMO_HUGE: pk_str(&pkl, "x"); put_op(&pkl, "r\xff\xff\xff\xff"); break;
        case NUMEL_WRONG: pk_tensor(&pkl, "FloatStorage", "0", 15, 0, 2, s2, c2); break;
        case NUMEL_OVERFLOW: pk_tensor(&pkl, "FloatStorage", "0", (uint64_t)1 << 62, 0, 2, s2, c2); break;
        case OUTSIDE: pk_tensor(&pkl, "FloatStorage", "0", 16, 1, 2, t2, c2); put_op(&pkl, "0"); pk_tensor(&pkl, "FloatStorage", "0", 16, 8, 2, t2, c2); break;
        case EXTENT: pk_tensor(&pkl, "FloatStorage", "0", 16, 0, 2, big, big); break;
        case RANK7: pk_tensor(&pkl, "FloatStorage", "0", 16, 0, 7, r7, r7); break;
        case NO_MEMBER: pk_tensor(&pkl, "FloatStorage", "9", 16, 0, 2, s2, c2); break;
        case EXPANDED: pk_tensor(&pkl, "FloatStorage", "0", 16, 0, 2, e2, e2s); break;
        case COMPLEX: pk_tensor(&pkl, "ComplexFloatStorage", "0", 8, 0, 2, s2, c2); break;
        case BIGINT: put_op(&pkl, "\x8a\x09" "123456789"); break;
        case SHORT_PID: put_op(&pkl, "("); pk_str(&pkl, "storage"); put_op(&pkl, "tQ"); break;
        default: pk_tensor(&pkl, "FloatStorage", "0", 16, 0, 2, s2, c2); pk_str(&pkl, "t"); pk_tensor(&pkl, "FloatStorage", "0", 16, 1, 2, s2, tst); break;
        }
        if (c == DEEP) for (k = 0; k < 40; k++) put_op(&pkl, "u");
        put_op(&pkl, c == ROOT_LIST ? "e" : "u");
        if (c != NO_STOP) put_op(&pkl, ".");
        make_zip(&z, &pkl, c == COMPRESSED ? 8 : 0, c == BADCRC);
        if (z.n > sizeof z.b) { harness_failf(where, "test archive too large"); fails++; continue; }
        if (c == OK) { // the builder's baseline opens: w (2,4) and its transpose-like view t
            CkFile f;
            double w[8], t[8];
            if (write_file(TMP("ok.pt"), z.b, z.n) || ck_open(&f, TMP("ok.pt"))) { harness_failf(where, "%s", mv_error()); fails++; continue; }
            fails += EXPECT(f.count == 2 && ck_read_f64(&f, ck_find(&f, "w"), w) == MV_OK && ck_read_f64(&f, ck_find(&f, "t"), t) == MV_OK, "baseline: %s", mv_error());
            fails += EXPECT(w[0] == 1.0 && w[1] == 0.0 && t[0] == 0.0 && t[1] == 0.0, "baseline values %g %g %g", w[0], w[1], t[0]);
            ck_close(&f);
            continue;
        }
        fails += expect_refused(where, z.b, z.n, needles[c]);
    }
    {   // zip structure: central directory offset past the end, no end record, no data.pkl
        Bytes pkl, z;
        pkl.n = 0;
        put_op(&pkl, "\x80\x02}.");
        make_zip(&z, &pkl, 0, 0);
        z.b[z.n - 6] = 0xFF; // central directory offset
        fails += expect_refused("zip cd offset", z.b, z.n, "lies outside the file");
        make_zip(&z, &pkl, 0, 0);
        fails += expect_refused("zip no end record", z.b, z.n - 1, "no end-of-central-directory record");
        make_zip(&z, &pkl, 0, 0);
        for (k = 0; k + 8 <= (int)z.n; k++) // rename data.pkl in both headers
            if (!memcmp(z.b + k, "data.pkl", 8)) z.b[k + 7] = 'x';
        fails += expect_refused("zip no data.pkl", z.b, z.n, "no PREFIX/data.pkl");
        make_zip(&z, &pkl, 0, 0);
        z.b[z.n - 22 + 10] = 0xFF; z.b[z.n - 22 + 11] = 0xFF; // zip64 count without a locator
        fails += expect_refused("zip64 without locator", z.b, z.n, "zip64 sizes without a zip64 locator");
    }
    return fails;
}

// ---------------------------------------------------------------------------------------
// Offsets beyond 4 GiB (the real UNet: 4.4 GB of msgpack, or a zip64 torch archive) in
// sparse files: the gap is a hole, so the files cost no disk on file systems with holes
// (ext4, xfs, btrfs, tmpfs, APFS). The tensors after the gap hold known values.

#define BIG_GAP (((uint64_t)1 << 32) + 4096) // bytes of zeros before the tail

// Write `n` bytes at the current end, or move `gap` bytes forward (leaving a hole).
static int skip_forward(FILE *fp, uint64_t gap) {
    while (gap > 0) {
        long step = gap > (1u << 30) ? (long)(1u << 30) : (long)gap;
        if (fseek(fp, step, SEEK_CUR)) return MV_ERR;
        gap -= (uint64_t)step;
    }
    return MV_OK;
}

int test_ckpt_beyond_4gb(void) {
    const char *pm = TMP("big.msgpack"), *pz = TMP("big.pt");
    static const float tail[4] = {1.5f, -2.25f, 3.0f, 1e-3f};
    unsigned char tailb[16];
    uint64_t gap_numel = BIG_GAP / 4;
    Bytes h, pkl, z;
    FILE *fp;
    CkFile f;
    double got[4] = {0, 0, 0, 0};
    int fails = 0, bad = 0, k;
    for (k = 0; k < 4; k++) { uint32_t u; memcpy(&u, &tail[k], 4); tailb[4 * k] = (unsigned char)u; tailb[4 * k + 1] = (unsigned char)(u >> 8); tailb[4 * k + 2] = (unsigned char)(u >> 16); tailb[4 * k + 3] = (unsigned char)(u >> 24); }
    // msgpack: {"gap": four 1 GiB arrays + one of 4096 bytes, then "tail": (4,) f32}, as flax chunks big arrays
    fp = fopen(pm, "wb");
    if (!fp) { harness_failf(__func__, "cannot write %s", pm); return 1; }
    h.n = 0;
    put_op(&h, "\x82\xa3" "gap" "\x85");
    for (k = 0; k < 5; k++) {
        uint32_t bytes = k < 4 ? (1u << 30) : 4096u, numel = bytes / 4;
        unsigned char hdr[32];
        size_t m = 0;
        char key[2];
        key[0] = (char)('0' + k); key[1] = 0;
        put_op(&h, "\xa1"); put_op(&h, key);
        // ext32 type 1: [ [numel], "float32", bin32 ]
        hdr[m++] = 0x93; hdr[m++] = 0x91; hdr[m++] = 0xce;
        hdr[m++] = (unsigned char)(numel >> 24); hdr[m++] = (unsigned char)(numel >> 16); hdr[m++] = (unsigned char)(numel >> 8); hdr[m++] = (unsigned char)numel;
        hdr[m++] = 0xa7; memcpy(hdr + m, "float32", 7); m += 7;
        hdr[m++] = 0xc6; hdr[m++] = (unsigned char)(bytes >> 24); hdr[m++] = (unsigned char)(bytes >> 16); hdr[m++] = (unsigned char)(bytes >> 8); hdr[m++] = (unsigned char)bytes;
        {
            uint32_t len = (uint32_t)m + bytes;
            unsigned char e[6] = {0xc9, 0, 0, 0, 0, 1};
            e[1] = (unsigned char)(len >> 24); e[2] = (unsigned char)(len >> 16); e[3] = (unsigned char)(len >> 8); e[4] = (unsigned char)len;
            put(&h, e, 6);
        }
        put(&h, hdr, m);
        if (fwrite(h.b, 1, h.n, fp) != h.n || skip_forward(fp, k < 4 ? (1u << 30) : 4096u)) { fails++; break; }
        h.n = 0;
    }
    put_op(&h, "\xa4" "tail" "\xc7\x1d\x01\x93\x91\x04\xa7" "float32" "\xc4\x10");
    put(&h, tailb, 16);
    if (fails || fwrite(h.b, 1, h.n, fp) != h.n) fails++;
    if (fclose(fp) != 0) fails++;
    if (fails) { harness_failf(__func__, "cannot write %s", pm); remove(pm); return 1; }
    if (ck_open(&f, pm)) { harness_failf(__func__, "%s", mv_error()); fails++; }
    else {
        const CkEntry *e = ck_find(&f, "tail");
        fails += EXPECT(f.count == 6 && e && e->offset > ((uint64_t)1 << 32), "msgpack: %lu tensors, tail at %llu", (unsigned long)f.count, e ? (unsigned long long)e->offset : 0ull);
        fails += EXPECT(e && ck_read_f64(&f, e, got) == MV_OK && got[0] == 1.5 && got[1] == -2.25 && got[3] == (double)tail[3], "msgpack tail: got %g %g %g %g %s", got[0], got[1], got[2], got[3], mv_error());
        ck_close(&f);
    }
    remove(pm);

    // torch zip64: archive/data/0 holds BIG_GAP + 16 bytes (the tail last), then data.pkl
    // beyond 4 GiB; a (4,) tensor views the storage's last 16 bytes.
    pkl.n = 0;
    put_op(&pkl, "\x80\x02}(");
    pk_str(&pkl, "tail");
    {
        uint64_t sz = 4, st = 1;
        pk_tensor(&pkl, "FloatStorage", "0", gap_numel + 4, gap_numel, 1, &sz, &st);
    }
    put_op(&pkl, "u.");
    fp = fopen(pz, "wb");
    if (!fp) { harness_failf(__func__, "cannot write %s", pz); return fails + 1; }
    {
        const char *n0 = "archive/data/0", *n1 = "archive/data.pkl";
        uint64_t size0 = BIG_GAP + 16, off1, cd, cd_size, z64;
        z.n = 0;
        put_op(&z, "PK\3\4"); put_u16(&z, 45); put_u16(&z, 0); put_u16(&z, 0); put_u32(&z, 0); put_u32(&z, 0);
        put_u32(&z, 0xFFFFFFFFu); put_u32(&z, 0xFFFFFFFFu); put_u16(&z, (unsigned)strlen(n0)); put_u16(&z, 20);
        put_op(&z, n0); put_u16(&z, 1); put_u16(&z, 16); put_u32(&z, (uint32_t)size0); put_u32(&z, (uint32_t)(size0 >> 32));
        put_u32(&z, (uint32_t)size0); put_u32(&z, (uint32_t)(size0 >> 32));
        if (fwrite(z.b, 1, z.n, fp) != z.n || skip_forward(fp, BIG_GAP) || fwrite(tailb, 1, 16, fp) != 16) bad = 1;
        off1 = z.n + size0;
        z.n = 0;
        put_op(&z, "PK\3\4"); put_u16(&z, 20); put_u16(&z, 0); put_u16(&z, 0); put_u32(&z, 0); put_u32(&z, ck_crc32(pkl.b, pkl.n));
        put_u32(&z, (uint32_t)pkl.n); put_u32(&z, (uint32_t)pkl.n); put_u16(&z, (unsigned)strlen(n1)); put_u16(&z, 0);
        put_op(&z, n1); put(&z, pkl.b, pkl.n);
        cd = off1 + z.n;
        // central directory: data/0 (sizes in zip64), data.pkl (offset in zip64)
        put_op(&z, "PK\1\2"); put_u16(&z, 45); put_u16(&z, 45); put_u16(&z, 0); put_u16(&z, 0); put_u32(&z, 0); put_u32(&z, 0);
        put_u32(&z, 0xFFFFFFFFu); put_u32(&z, 0xFFFFFFFFu); put_u16(&z, (unsigned)strlen(n0)); put_u16(&z, 20); put_u16(&z, 0);
        put_u16(&z, 0); put_u16(&z, 0); put_u32(&z, 0); put_u32(&z, 0); put_op(&z, n0);
        put_u16(&z, 1); put_u16(&z, 16); put_u32(&z, (uint32_t)size0); put_u32(&z, (uint32_t)(size0 >> 32)); put_u32(&z, (uint32_t)size0); put_u32(&z, (uint32_t)(size0 >> 32));
        put_op(&z, "PK\1\2"); put_u16(&z, 45); put_u16(&z, 45); put_u16(&z, 0); put_u16(&z, 0); put_u32(&z, 0); put_u32(&z, ck_crc32(pkl.b, pkl.n));
        put_u32(&z, (uint32_t)pkl.n); put_u32(&z, (uint32_t)pkl.n); put_u16(&z, (unsigned)strlen(n1)); put_u16(&z, 12); put_u16(&z, 0);
        put_u16(&z, 0); put_u16(&z, 0); put_u32(&z, 0); put_u32(&z, 0xFFFFFFFFu); put_op(&z, n1);
        put_u16(&z, 1); put_u16(&z, 8); put_u32(&z, (uint32_t)off1); put_u32(&z, (uint32_t)(off1 >> 32));
        cd_size = off1 + z.n - cd;
        z64 = off1 + z.n;
        put_op(&z, "PK\6\6"); put_u32(&z, 44); put_u32(&z, 0); put_u16(&z, 45); put_u16(&z, 45); put_u32(&z, 0); put_u32(&z, 0);
        put_u32(&z, 2); put_u32(&z, 0); put_u32(&z, 2); put_u32(&z, 0);
        put_u32(&z, (uint32_t)cd_size); put_u32(&z, (uint32_t)(cd_size >> 32)); put_u32(&z, (uint32_t)cd); put_u32(&z, (uint32_t)(cd >> 32));
        put_op(&z, "PK\6\7"); put_u32(&z, 0); put_u32(&z, (uint32_t)z64); put_u32(&z, (uint32_t)(z64 >> 32)); put_u32(&z, 1);
        put_op(&z, "PK\5\6"); put_u16(&z, 0); put_u16(&z, 0); put_u16(&z, 0xFFFF); put_u16(&z, 0xFFFF);
        put_u32(&z, 0xFFFFFFFFu); put_u32(&z, 0xFFFFFFFFu); put_u16(&z, 0);
        if (!bad && fwrite(z.b, 1, z.n, fp) != z.n) bad = 1;
    }
    if (fclose(fp) != 0) bad = 1;
    if (bad) { harness_failf(__func__, "cannot write %s", pz); remove(pz); return fails + 1; }
    if (ck_open(&f, pz)) { harness_failf(__func__, "%s", mv_error()); fails++; }
    else {
        const CkEntry *e = ck_find(&f, "tail");
        fails += EXPECT(f.count == 1 && e && e->offset > ((uint64_t)1 << 32), "zip64: tail at %llu", e ? (unsigned long long)e->offset : 0ull);
        fails += EXPECT(e && ck_read_f64(&f, e, got) == MV_OK && got[0] == 1.5 && got[1] == -2.25 && got[3] == (double)tail[3], "zip64 tail: got %g %g %g %g %s", got[0], got[1], got[2], got[3], mv_error());
        ck_close(&f);
    }
    remove(pz);
    return fails;
}
