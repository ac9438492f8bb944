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
