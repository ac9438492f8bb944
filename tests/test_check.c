// test_check.c: the case contract (vectors/contract.json) and `mavref check`.
//
// test_contract: every manifest case has exactly one contract entry that agrees with the
// manifest (op, level, file, tolerance) and with its file: every stored tensor it lists is in
// the file with that shape and dtype, every tensor of the file is listed, every procedural
// tensor's shape is its gen.NAME metadata's, and the case has an output.
//
// The check tests run the built `mavref` next to run_tests, with run_tests --run-case (the
// corpus runners computing instead of comparing) as the backend's adapter:
//   - the quick level passes whole;
//   - a perturbed op (MAVREF_PERTURB: a sign, a transposed kernel, the wrong GELU) fails its
//     own cases and no other;
//   - an adapter that crashes, writes nothing, writes a wrong shape or hangs is reported as
//     such, and the run goes on to the next case.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/json.h"

#define VECTORS "vectors"

// `mavref check` runs adapters through a POSIX shell (ref/check.c's CHECK_POSIX); elsewhere
// (Windows, WebAssembly) the tests that run it say so and pass.
#if defined(__unix__) || defined(__unix) || (defined(__APPLE__) && defined(__MACH__))
#define CHECK_TESTS 1
#else
#define CHECK_TESTS 0
#endif
#define SKIP_WITHOUT_POSIX()                                                               \
    do {                                                                                   \
        if (!CHECK_TESTS) { printf("  %s: skipped, `mavref check` needs a POSIX system\n", __func__); return 0; } \
    } while (0)

static const char *prec_name(void) { return MAVREF_PRECISION == 64 ? "f64" : "f32"; }

static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!fp) return NULL;
    if (!fseek(fp, 0, SEEK_END) && (n = ftell(fp)) >= 0 && !fseek(fp, 0, SEEK_SET) && (buf = (char *)malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, fp) != (size_t)n) { free(buf); buf = NULL; }
        else { buf[n] = '\0'; if (len) *len = (size_t)n; }
    }
    fclose(fp);
    return buf;
}

static const char *jstr(const JsonValue *o, const char *k) {
    const JsonValue *v = json_get(o, k);
    return v && v->type == JSON_STRING ? v->text : "";
}

// The contract's entry for (name, precision), or NULL; *dups counts extra entries.
static const JsonValue *find_case(const JsonValue *cases, const char *name, const char *prec, int *dups) {
    const JsonValue *hit = NULL;
    size_t i;
    for (i = 0; i < cases->count; i++)
        if (!strcmp(jstr(&cases->items[i], "name"), name) && !strcmp(jstr(&cases->items[i], "precision"), prec)) {
            if (hit) (*dups)++;
            hit = &cases->items[i];
        }
    return hit;
}

static int same_shape(const JsonValue *shape, int ndim, const size_t *dims) {
    size_t k;
    if (!shape || shape->type != JSON_ARRAY || (int)shape->count != ndim) return 0;
    for (k = 0; k < shape->count; k++)
        if (shape->items[k].type != JSON_NUMBER || (size_t)shape->items[k].number != dims[k]) return 0;
    return 1;
}

// One case: its entry against the manifest line and the file. Returns the number of faults.
static int check_entry(const JsonValue *e, const char *op, const char *level, const char *file, double tol) {
    const JsonValue *ts = json_get(e, "tensors"), *tv = json_get(e, "tol");
    char path[1024];
    StFile f;
    size_t i, k, listed_stored = 0;
    int faults = 0, outputs = 0;
    faults += EXPECT(!strcmp(jstr(e, "op"), op) && !strcmp(jstr(e, "level"), level) && !strcmp(jstr(e, "file"), file),
                     "contract: %s: op/level/file differ from the manifest", jstr(e, "name"));
    faults += EXPECT(tv && tv->type == JSON_NUMBER && tv->number == tol, "contract: %s: tol differs from the manifest's %g",
                     jstr(e, "name"), tol);
    if (EXPECT(ts && ts->type == JSON_ARRAY, "contract: %s: no tensors", jstr(e, "name"))) return faults + 1;
    snprintf(path, sizeof path, VECTORS "/%s", file);
    if (st_open(&f, path)) { harness_failf("contract", "%s", mv_error()); return faults + 1; }
    for (i = 0; i < ts->count; i++) {
        const JsonValue *t = &ts->items[i];
        const char *name = jstr(t, "name"), *src = jstr(t, "source"), *role = jstr(t, "role");
        const StEntry *se = st_find(&f, name);
        outputs += !strcmp(role, "output");
        faults += EXPECT(!strcmp(role, "input") || !strcmp(role, "param") || !strcmp(role, "output") || !strcmp(role, "aux"),
                         "contract: %s: %s has role '%s'", file, name, role);
        if (!strcmp(src, "stored")) {
            listed_stored++;
            if (EXPECT(se != NULL, "contract: %s: stored tensor %s is not in the file", file, name)) { faults++; continue; }
            faults += EXPECT(same_shape(json_get(t, "shape"), se->ndim, se->shape) && !strcmp(jstr(t, "dtype"), st_dtype_name(se->dtype)),
                             "contract: %s: %s: shape or dtype differs from the file's", file, name);
        } else if (!strcmp(src, "gen")) {
            char key[300];
            const char *desc;
            size_t dims[MV_MAXDIM];
            int nd = 0;
            snprintf(key, sizeof key, "gen.%s", name);
            desc = st_meta(&f, key);
            if (EXPECT(desc && !strcmp(desc, jstr(t, "gen")), "contract: %s: %s: gen string differs from the file's", file, name)) { faults++; continue; }
            // "SEED SCALE OFFSET AxBxC"
            desc = strrchr(desc, ' ');
            for (desc = desc ? desc + 1 : ""; *desc && nd < MV_MAXDIM; nd++) {
                dims[nd] = (size_t)strtoul(desc, (char **)&desc, 10);
                if (*desc == 'x') desc++;
            }
            faults += EXPECT(same_shape(json_get(t, "shape"), nd, dims), "contract: %s: %s: shape differs from its gen metadata", file, name);
        } else {
            faults += EXPECT(!strcmp(src, "zero") && !strcmp(role, "output") && !se, "contract: %s: %s: bad source '%s'", file, name, src);
        }
    }
    // nothing in the file is left out of the contract
    for (k = 0; k < f.count; k++) {
        int found = 0;
        for (i = 0; i < ts->count && !found; i++) found = !strcmp(jstr(&ts->items[i], "name"), f.entries[k].name);
        faults += EXPECT(found, "contract: %s: tensor %s of the file is not in the contract", file, f.entries[k].name);
    }
    faults += EXPECT(listed_stored == f.count, "contract: %s lists %lu stored tensors, the file holds %lu", file,
                     (unsigned long)listed_stored, (unsigned long)f.count);
    faults += EXPECT(outputs > 0, "contract: %s: no output", file);
    st_close(&f);
    return faults;
}

int test_contract(void) {
    char *text, line[2048];
    size_t len;
    JsonValue root;
    const JsonValue *cases;
    FILE *fp;
    int faults = 0, n = 0;
    if (!(text = slurp(VECTORS "/contract.json", &len))) { harness_failf(__func__, VECTORS "/contract.json is missing (python3 tools/contract.py)"); return 1; }
    if (json_parse(&root, text, len)) { free(text); harness_failf(__func__, "%s", mv_error()); return 1; }
    free(text);
    cases = json_get(&root, "cases");
    if (EXPECT(cases && cases->type == JSON_ARRAY, "contract.json has no cases") || !(fp = fopen(VECTORS "/manifest.txt", "r"))) {
        json_free(&root);
        return 1;
    }
    while (fgets(line, sizeof line, fp)) {
        char name[128], op[64], prec[8], level[16], file[256], sha[80], tol[32], seed[32];
        const JsonValue *e;
        int dups = 0;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "%127s %63s %7s %15s %255s %79s %31s %31s", name, op, prec, level, file, sha, tol, seed) != 8) continue;
        n++;
        e = find_case(cases, name, prec, &dups);
        if (EXPECT(e && !dups, "contract: case %s (%s) has %d entries", name, prec, e ? dups + 1 : 0)) { faults++; continue; }
        faults += check_entry(e, op, level, file, strtod(tol, NULL));
    }
    fclose(fp);
    faults += EXPECT((size_t)n == cases->count, "contract: %lu entries for %d manifest cases", (unsigned long)cases->count, n);
    json_free(&root);
    if (!faults) printf("  contract: %d cases agree with the manifest and their files\n", n);
    return faults ? 1 : 0;
}

// ---------------------------------------------------------------------------------------

// The directory of run_tests (where `make` puts mavref too), with a trailing '/', preceded
// by $MAVREF_EXEC_PREFIX when the binaries need an emulator to run (make cross-test sets it to
// qemu-ARCH: the tests spawn mavref and run_tests, which the host cannot execute directly).
static void bin_dir(char *out, size_t cap) {
    const char *slash = harness_argv0 ? strrchr(harness_argv0, '/') : NULL;
    const char *emu = getenv("MAVREF_EXEC_PREFIX");
    char sep[2] = {0, 0};
    if (emu && *emu) sep[0] = ' ';
    else emu = "";
    if (!slash) snprintf(out, cap, "%s%s./", emu, sep);
    else snprintf(out, cap, "%s%s%.*s/", emu, sep, (int)(slash - harness_argv0), harness_argv0);
}

// The same directory without the emulator: where files go.
static void file_dir(char *out, size_t cap) {
    const char *slash = harness_argv0 ? strrchr(harness_argv0, '/') : NULL;
    if (!slash) snprintf(out, cap, "./");
    else snprintf(out, cap, "%.*s/", (int)(slash - harness_argv0), harness_argv0);
}

// Run `mavref check` with this adapter (and environment prefix); returns its exit status and
// its output in *log (malloc'd).
static int run_check(const char *env, const char *adapter, const char *extra, char **log) {
    char dir[512], fdir[512], cmd[4096], logp[600];
    int st;
    bin_dir(dir, sizeof dir);
    file_dir(fdir, sizeof fdir);
    snprintf(logp, sizeof logp, "%scheck-test.log", fdir);
    snprintf(cmd, sizeof cmd, "mkdir -p %scheck-test && %s %smavref check --vectors " VECTORS " --precision %d --workdir %scheck-test --backend \"%s\" %s > %s 2>&1",
             fdir, env, dir, MAVREF_PRECISION, fdir, adapter, extra, logp);
    st = system(cmd);
    *log = slurp(logp, NULL);
    if (!*log) *log = (char *)calloc(1, 1);
    return st == -1 ? -1 : (st >> 8) & 0xff; // the shell's exit status (POSIX encoding)
}

// The quick cases of `op` in the manifest for this precision (whose name contains `part`, if set).
static int quick_cases_named(const char *op, const char *part) {
    char line[2048], name[128], o[64], prec[8], level[16];
    int n = 0;
    FILE *fp = fopen(VECTORS "/manifest.txt", "r");
    if (!fp) return -1;
    while (fgets(line, sizeof line, fp))
        if (line[0] != '#' && sscanf(line, "%127s %63s %7s %15s", name, o, prec, level) == 4 && !strcmp(o, op) &&
            !strcmp(prec, prec_name()) && !strcmp(level, "quick") && (!part || strstr(name, part)))
            n++;
    fclose(fp);
    return n;
}
static int quick_cases(const char *op) { return quick_cases_named(op, NULL); }

// Lines of `log` that contain `what`; with `op` set, also counts those whose op column differs.
static int count_lines(const char *log, const char *what, const char *op, int *other_op) {
    int n = 0;
    const char *p = log;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[2048];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), p);
        if (strstr(line, what)) {
            n++;
            if (op && other_op && (strncmp(line, op, strlen(op)) || line[strlen(op)] != ' ')) (*other_op)++;
        }
        p = e ? e + 1 : NULL;
    }
    return n;
}

static char g_adapter[1024];

static const char *self_adapter(void) {
    char dir[512];
    bin_dir(dir, sizeof dir);
    snprintf(g_adapter, sizeof g_adapter, "%srun_tests --run-case {case} {out}", dir);
    return g_adapter;
}

// Under an emulator (make cross-test: every spawned binary runs under qemu, several times
// slower), the check tests keep to a few ops: the machinery is the same, and the native run
// covers every op.
#define EMULATED_OPS "dense,conv2d,geglu,attention_self_grad"
static int emulated(void) {
    const char *e = getenv("MAVREF_EXEC_PREFIX");
    return e && *e;
}

int test_check_self(void) {
    SKIP_WITHOUT_POSIX();
    char *log, want[64];
    int rc = run_check("", self_adapter(), emulated() ? "--level quick --ops " EMULATED_OPS : "--level quick", &log), fails = 0,
        npass = 0, nfail = -1;
    int least = emulated() ? quick_cases("dense") + quick_cases("conv2d") + quick_cases("geglu") + quick_cases("attention_self_grad") : 50;
    const char *s = strstr(log, "\ncheck: ");
    if (s) sscanf(s, "\ncheck: %d passed, %d failed", &npass, &nfail);
    fails += EXPECT(rc == 0 && nfail == 0 && npass >= least, "mavref as its own backend: exit %d, %d passed, %d failed:\n%s", rc, npass,
                    nfail, log);
    snprintf(want, sizeof want, "%s cases, level quick", prec_name());
    fails += EXPECT(strstr(log, want) != NULL, "check did not say which cases it ran");
    if (!fails) printf("  check, mavref as the backend: %d quick cases pass\n", npass);
    free(log);
    return fails;
}

int test_check_perturbed(void) {
    SKIP_WITHOUT_POSIX();
    // (MAVREF_PERTURB, the op it breaks): a sign, a transposed kernel, the wrong GELU
    static const char *cases[][2] = {
        {"dense:neg:bias", "dense"},
        {"conv2d:transpose:kernel", "conv2d"},
        {"geglu:meta:gelu=erf", "geglu"},
        {"attention_self_grad:neg:dout", "attention_self_grad"},
    };
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char env[128], *log;
        int rc, other = 0, nf, want = quick_cases(cases[i][1]);
        snprintf(env, sizeof env, "MAVREF_PERTURB=%s", cases[i][0]);
        rc = run_check(env, self_adapter(), emulated() ? "--level quick --ops " EMULATED_OPS : "--level quick", &log);
        nf = count_lines(log, " FAIL ", cases[i][1], &other);
        fails += EXPECT(rc == 1 && want > 0 && nf == want && other == 0,
                        "%s: exit %d, %d FAIL lines (%d of another op), expected %d of %s only:\n%s", env, rc, nf, other, want,
                        cases[i][1], log);
        if (!fails) printf("  check names %s's %d quick case(s) and no other under %s\n", cases[i][1], nf, env);
        free(log);
    }
    return fails;
}

// Lines of `log` that contain both `a` and `b`.
static int lines_with(const char *log, const char *a, const char *b) {
    int n = 0;
    const char *p = log;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[2048];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), p);
        n += strstr(line, a) && strstr(line, b);
        p = e ? e + 1 : NULL;
    }
    return n;
}

// The whole-UNet variants a backend author meets (SPEC.md section 13.4), with mavref itself
// standing in for the backend (tools/backends/flax_port_demo.sh shows the same on the FLAX
// model: tools/backends/flax_port_demo.txt):
//   - exact-erf GELU in the feed-forward: every quick unet case is reported first at
//     tap.down_blocks_0, the first block with a feed-forward;
//   - the sinusoid in float32 (upstream's x64 forward): in float64 every float64-sinusoid case
//     is reported first at tap.time_proj and the float32-sinusoid cases (unet_f32sin_*) pass;
//     in float32 it is the build's own sinusoid and every case passes;
//   - a wrong time-embedding add at the first level (down_blocks_0.resnets_0's time_emb_proj
//     kernel negated): only the corpus-strength cases (unet_strong_*, two or more channels per
//     GroupNorm group) see it; at 32 channels in 32 groups GroupNorm erases the add.
int test_check_unet_variants(void) {
    SKIP_WITHOUT_POSIX();
    char *log;
    int rc, fails = 0, n, other = 0, nunet = quick_cases("unet"), nf32sin = quick_cases_named("unet", "unet_f32sin"),
        nstrong = quick_cases_named("unet", "unet_strong");
    const char *ops = "--level quick --ops unet";
    if (emulated()) { printf("  %s: skipped under an emulator (the unet cases)\n", __func__); return 0; }
    rc = run_check("MAVREF_PERTURB=unet:meta:gelu=erf", self_adapter(), ops, &log);
    n = count_lines(log, " FAIL tap.down_blocks_0 ", "unet", &other);
    fails += EXPECT(rc == 1 && nunet >= 4 && n == nunet && other == 0 && count_lines(log, " FAIL ", NULL, NULL) == nunet,
                    "erf GELU: exit %d, %d of %d quick unet cases FAIL at tap.down_blocks_0:\n%s", rc, n, nunet, log);
    if (!fails) printf("  check reports the erf-GELU feed-forward first at tap.down_blocks_0 in all %d quick unet cases\n", n);
    free(log);
    rc = run_check("MAVREF_PERTURB=unet:meta:sinusoid=float32", self_adapter(), ops, &log);
    n = count_lines(log, " FAIL tap.time_proj ", NULL, NULL);
    if (MAVREF_PRECISION == 64) {
        fails += EXPECT(rc == 1 && nf32sin >= 1 && n == nunet - nf32sin && count_lines(log, " FAIL ", NULL, NULL) == n &&
                            count_lines(log, " PASS ", NULL, NULL) == nf32sin && lines_with(log, " PASS ", "unet_f32sin") == nf32sin,
                        "float32 sinusoid: exit %d, %d FAIL at tap.time_proj, expected %d (and the %d f32sin cases passing):\n%s", rc,
                        n, nunet - nf32sin, nf32sin, log);
        if (!fails) printf("  the float32 sinusoid: %d float64-sinusoid cases FAIL at tap.time_proj, %d float32-sinusoid cases pass\n", n, nf32sin);
    } else {
        fails += EXPECT(rc == 0 && count_lines(log, " PASS ", NULL, NULL) == nunet,
                        "float32 sinusoid in the float32 build: exit %d:\n%s", rc, log);
    }
    free(log);
    rc = run_check("MAVREF_PERTURB=unet:neg:down_blocks_0.resnets_0.time_emb_proj.kernel", self_adapter(), ops, &log);
    n = count_lines(log, " FAIL ", NULL, NULL);
    fails += EXPECT(rc == 1 && nstrong >= 1 && n == nstrong && count_lines(log, " PASS ", NULL, NULL) == nunet - nstrong,
                    "wrong time-embedding add: exit %d, %d FAIL lines, expected exactly the %d unet_strong case(s):\n%s", rc, n,
                    nstrong, log);
    fails += EXPECT(lines_with(log, " FAIL ", " unet_strong") == n, "wrong time-embedding add: a case other than unet_strong_* failed:\n%s",
                    log);
    if (!fails) printf("  a wrong first-level time-embedding add fails exactly the %d unet_strong quick case(s)\n", n);
    free(log);
    return fails;
}

int test_check_bad_adapters(void) {
    SKIP_WITHOUT_POSIX();
    char *log, adapter[1024], dir[512], other[256];
    int rc, fails = 0, n;
    const char *two = "--level quick --ops conv2d"; // two cases: the run must go on past the first
    bin_dir(dir, sizeof dir);
    // a crash
    rc = run_check("", "sh -c 'kill -SEGV \\$\\$' {case} {out}", two, &log);
    n = count_lines(log, "FAIL the adapter crashed (signal 11)", NULL, NULL);
    fails += EXPECT(rc == 1 && n == 2, "crashing adapter: exit %d, %d crash lines:\n%s", rc, n, log);
    free(log);
    // an adapter that succeeds and writes nothing
    rc = run_check("", "true {case} {out}", two, &log);
    n = count_lines(log, "FAIL the adapter wrote nothing", NULL, NULL);
    fails += EXPECT(rc == 1 && n == 2, "silent adapter: exit %d, %d lines:\n%s", rc, n, log);
    free(log);
    // an adapter that exits non-zero, with a message
    rc = run_check("", "sh -c 'echo cannot do this >&2; exit 4' {case} {out}", two, &log);
    n = count_lines(log, "FAIL the adapter exited with status 4: cannot do this", NULL, NULL);
    fails += EXPECT(rc == 1 && n == 2, "failing adapter: exit %d, %d lines:\n%s", rc, n, log);
    free(log);
    // status 3: the backend does not cover the case (not a failure)
    rc = run_check("", "sh -c 'echo no conv2d here >&2; exit 3' {case} {out}", two, &log);
    n = count_lines(log, "SKIP not covered by the backend: no conv2d here", NULL, NULL);
    fails += EXPECT(rc == 0 && n == 2 && strstr(log, "0 passed, 0 failed, 2 not covered"), "uncovering adapter: exit %d, %d lines:\n%s", rc, n, log);
    free(log);
    // the outputs of another case: a wrong shape for the first case, right for the second
    snprintf(other, sizeof other, VECTORS "/%s/conv2d_n1h8w8_64to64_k3s2_p1111.safetensors", prec_name());
    snprintf(adapter, sizeof adapter, "%srun_tests --run-case %s {out} || : {case}", dir, other);
    rc = run_check("", adapter, two, &log);
    n = count_lines(log, "FAIL y: wrong shape (1, 4, 4, 64), expected (2, 5, 7, 320)", NULL, NULL);
    fails += EXPECT(rc == 1 && n == 1 && count_lines(log, " PASS y ", NULL, NULL) == 1,
                    "wrong-shape adapter: exit %d, %d wrong-shape lines:\n%s", rc, n, log);
    free(log);
    // a hang
    rc = run_check("", "sh -c 'sleep 30' {case} {out}", "--level quick --ops conv2d --timeout 0.5", &log);
    n = count_lines(log, "FAIL the adapter timed out after 0.5 s", NULL, NULL);
    fails += EXPECT(rc == 1 && n == 2, "hanging adapter: exit %d, %d lines:\n%s", rc, n, log);
    free(log);
    // bad usage: no {out}
    rc = run_check("", "true {case}", two, &log);
    fails += EXPECT(rc == 2 && strstr(log, "--backend must contain {case} and {out}"), "bad --backend: exit %d:\n%s", rc, log);
    free(log);
    if (!fails) printf("  check reports crashing, silent, failing, not-covering, wrong-shape and hanging adapters and goes on\n");
    return fails;
}
