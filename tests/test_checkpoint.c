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

// One fixture: every expected tensor read both ways (ck_read_f64 exactly, ck_read_into as the
// build's reals), and the same count of tensors in the file.
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
        if (!want || !got || !gotr) { fails++; goto next; }
        if (st_read_f64(&ex, x, want) || ck_read_f64(&f, e, got) || ck_read_into(&f, e, gotr)) { harness_failf(file, "%s", mv_error()); fails++; goto next; }
        for (j = 0; j < x->numel; j++) {
            if (!same_double(got[j], want[j]) || !same_real(gotr[j], (real)want[j])) {
                if (!bad) harness_failf(file, "'%s'[%lu]: got %.17g (as real %.9g), the library holds %.17g", x->name, (unsigned long)j, got[j], (double)gotr[j], want[j]);
                bad++;
            }
        }
        fails += bad != 0;
    next:
        free(want); free(got); free(gotr);
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
        C("\x81\xa1" "a" "\xc7\x15\x01\x93\x91\xcf\x40\0\0\0\0\0\0\0\xa7" "float32" "\xc4\0", "overflows"),
        // absurd shape that fits: 2^40 elements, no bytes
        C("\x81\xa1" "a" "\xc7\x15\x01\x93\x91\xcf\0\0\x01\0\0\0\0\0\xa7" "float32" "\xc4\0", "0 data bytes, but dtype float32"),
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
