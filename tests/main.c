// main.c: runs the unit tests and every corpus case of this build's precision.
//
//   tests/run_tests [--vectors DIR] [--level quick|full] [--filter TEXT] [--list]
//   tests/run_tests --run-case CASE.safetensors OUT.safetensors
//
// --run-case is mavref as a backend adapter for `mavref check` (ref/check.c): it runs the
// runner of the case's op with every case_check() capturing the computed tensor under the
// expected tensor's name instead of comparing it, and writes those tensors to OUT. With
// MAVREF_PERTURB=OP:KIND:ARG it computes one op wrongly on purpose (tests/test_check.c):
//   OP:neg:TENSOR        negate input TENSOR                 (a sign error)
//   OP:transpose:TENSOR  swap the first two axes of TENSOR   (a transposed kernel)
//   OP:meta:KEY=VALUE    read metadata KEY as VALUE          (e.g. geglu:meta:gelu=erf; for
//                        unet, which has no such keys: unet:meta:gelu=erf, the feed-forward's
//                        GELU, and unet:meta:sinusoid=float32, the float32 sinusoid)
// (TENSOR may be a network parameter of a model case, e.g. unet:neg:down_blocks_0.resnets_0.
// time_emb_proj.kernel, a wrong time-embedding add.)
//
// The corpus is vectors/manifest.txt: after '#' comment lines, one case a line,
//   NAME OP PRECISION LEVEL FILE SHA256 TOL SEED
// PRECISION is f32 or f64; LEVEL is quick or full (quick cases also run at level full).
// A missing file, a hash mismatch, an unknown op, or fewer cases of an op than its runner's
// min_cases fails the run, naming the case.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../ref/procedural.h"

static int g_checks_failed;
const char *harness_argv0;

// --run-case: the tensors computed so far (NULL in a normal run) and the perturbation
static StWriter *g_capture;
static char g_captured[512][128];
static size_t g_ncaptured;
static char g_perturb_op[64], g_perturb_kind[16], g_perturb_arg[192];

int harness_capturing(void) { return g_capture != NULL; }

static int perturbs(const Case *c, const char *kind, const char *arg) {
    size_t n = strlen(arg);
    if (!g_capture || strcmp(c->op, g_perturb_op) || strcmp(kind, g_perturb_kind)) return 0;
    if (!strcmp(kind, "meta")) return !strncmp(g_perturb_arg, arg, n) && g_perturb_arg[n] == '=';
    return !strcmp(g_perturb_arg, arg);
}

// The deliberate mistakes of MAVREF_PERTURB, applied to an input as it is read.
static void perturb_input(const Case *c, const char *tensor, Tensor *t) {
    size_t i, j, k, a, b, inner;
    if (perturbs(c, "neg", tensor))
        for (i = 0; i < t->numel; i++) t->data[i] = -t->data[i];
    if (perturbs(c, "transpose", tensor) && t->ndim >= 2) {
        real *tmp = (real *)malloc(t->numel * sizeof(real));
        if (!tmp) return;
        a = t->shape[0]; b = t->shape[1]; inner = t->numel / (a * b);
        for (i = 0; i < a; i++)
            for (j = 0; j < b; j++)
                for (k = 0; k < inner; k++) tmp[(j * a + i) * inner + k] = t->data[(i * b + j) * inner + k];
        memcpy(t->data, tmp, t->numel * sizeof(real));
        free(tmp);
        t->shape[0] = b; t->shape[1] = a;
    }
}

void harness_failf(const char *where, const char *fmt, ...) {
    va_list ap;
    printf("FAIL %s: ", where);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    g_checks_failed++;
}

int case_error(Case *c, const char *what) {
    harness_failf(c->name, "%s: %s", what, mv_error());
    c->failed++;
    return MV_ERR;
}

int case_read(Case *c, const char *tensor, Tensor *t) {
    if (st_read(&c->vec, tensor, t)) return case_error(c, "reading input");
    perturb_input(c, tensor, t);
    return MV_OK;
}

int case_input(Case *c, const char *tensor, Tensor *t) {
    char key[256];
    const char *desc;
    uint64_t seed;
    double scale, offset;
    size_t shape[MV_MAXDIM];
    int ndim;
    snprintf(key, sizeof key, "gen.%s", tensor);
    desc = st_meta(&c->vec, key);
    if (!desc) return case_read(c, tensor, t);
    if (proc_parse(desc, &seed, &scale, &offset, &ndim, shape) || tensor_alloc(t, ndim, shape))
        return case_error(c, key);
    proc_fill(t->data, t->numel, seed, tensor, scale, offset);
    perturb_input(c, tensor, t);
    return MV_OK;
}

const char *case_meta_str(Case *c, const char *key) {
    const char *v = st_meta(&c->vec, key);
    if (perturbs(c, "meta", key)) return g_perturb_arg + strlen(key) + 1;
    if (!v) { harness_failf(c->name, "%s: metadata key '%s' is missing", c->path, key); c->failed++; }
    return v;
}

const char *case_meta_opt(Case *c, const char *key) {
    if (perturbs(c, "meta", key)) return g_perturb_arg + strlen(key) + 1;
    return st_meta(&c->vec, key);
}

void case_perturb_param(Case *c, const char *name, Tensor *t) { perturb_input(c, name, t); }

int case_meta_long(Case *c, const char *key, long *out) {
    const char *v = case_meta_str(c, key);
    char *end;
    if (!v) return MV_ERR;
    *out = strtol(v, &end, 10);
    if (end == v || *end) { harness_failf(c->name, "metadata '%s'='%s' is not an integer", key, v); c->failed++; return MV_ERR; }
    return MV_OK;
}

int case_meta_double(Case *c, const char *key, double *out) {
    const char *v = case_meta_str(c, key);
    char *end;
    if (!v) return MV_ERR;
    *out = strtod(v, &end);
    if (end == v || *end) { harness_failf(c->name, "metadata '%s'='%s' is not a number", key, v); c->failed++; return MV_ERR; }
    return MV_OK;
}

int case_check(Case *c, const char *expected_name, const Tensor *got) {
    Tensor exp;
    Metrics m;
    char idx[128], line[512], a[128], b[128];
    size_t i;
    c->checks++;
    if (g_capture) { // --run-case: keep the first tensor computed under each name
        for (i = 0; i < g_ncaptured; i++)
            if (!strcmp(g_captured[i], expected_name)) return 0;
        if (g_ncaptured == sizeof g_captured / sizeof g_captured[0] || strlen(expected_name) >= sizeof g_captured[0] ||
            st_writer_add(g_capture, expected_name, got, ST_REAL))
            return case_error(c, "capturing an output"), 1;
        strcpy(g_captured[g_ncaptured++], expected_name);
        return 0;
    }
    if (st_read(&c->vec, expected_name, &exp)) { case_error(c, "reading expected output"); return 1; }
    if (!tensor_same_shape(&exp, got)) {
        harness_failf(c->name, "%s: shape %s, expected %s", expected_name, shape_str(a, sizeof a, got->ndim, got->shape),
                      shape_str(b, sizeof b, exp.ndim, exp.shape));
        tensor_free(&exp);
        c->failed++;
        return 1;
    }
    metrics_compute_real(&m, got->data, exp.data, exp.numel);
    metrics_format(line, sizeof line, &m, index_str(idx, sizeof idx, m.worst, exp.ndim, exp.shape));
    tensor_free(&exp);
    if (!metrics_pass(&m, c->tol)) {
        harness_failf(c->name, "%s: %s (tol %.1e)", expected_name, line, c->tol);
        c->failed++;
        return 1;
    }
    printf("  ok %s %s: %s\n", c->name, expected_name, line);
    return 0;
}

Tensor *bag_input(Case *c, Bag *b, const char *name) {
    Tensor *t;
    if (b->n >= BAG_MAX) { harness_failf(c->name, "more than %d tensors", BAG_MAX); c->failed++; return NULL; }
    t = &b->t[b->n];
    memset(t, 0, sizeof *t);
    if (case_input(c, name, t)) return NULL;
    b->n++;
    return t;
}

Tensor *bag_alloc(Case *c, Bag *b, int ndim, const size_t *shape) {
    Tensor *t;
    if (b->n >= BAG_MAX) { harness_failf(c->name, "more than %d tensors", BAG_MAX); c->failed++; return NULL; }
    t = &b->t[b->n];
    if (tensor_alloc(t, ndim, shape)) { case_error(c, "allocating a tensor"); return NULL; }
    b->n++;
    return t;
}

Tensor *bag_alloc_like(Case *c, Bag *b, const Tensor *like) { return bag_alloc(c, b, like->ndim, like->shape); }

void bag_free(Bag *b) {
    int i;
    for (i = 0; i < b->n; i++) tensor_free(&b->t[i]);
    b->n = 0;
}

int in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    while (*list) {
        size_t m = strcspn(list, ",");
        if (m == n && !strncmp(list, name, n)) return 1;
        list += m + (list[m] == ',');
    }
    return 0;
}

int case_expect_rank(Case *c, const Tensor *t, const char *what, int ndim) {
    if (t->ndim == ndim) return 0;
    harness_failf(c->name, "%s has rank %d, expected %d", what, t->ndim, ndim);
    c->failed++;
    return 1;
}

// ---------------------------------------------------------------------------------------

typedef struct {
    char name[128], op[64], prec[8], level[16], file[256], sha[80], tol[32], seed[32];
} ManifestLine;

static const CaseRunner *find_runner(const char *op) {
    size_t i;
    for (i = 0; i < n_case_runners; i++)
        if (strcmp(case_runners[i].op, op) == 0) return &case_runners[i];
    return NULL;
}

static int run_corpus(const char *dir, const char *level, const char *filter, int *passed, int *failed) {
    char path[1024], line[2048];
    const char *prec = MAVREF_PRECISION == 64 ? "f64" : "f32";
    int *seen = (int *)calloc(n_case_runners + 1, sizeof(int)), listed = 0, ran = 0;
    size_t i;
    FILE *fp;
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    fp = fopen(path, "r");
    if (!fp || !seen) {
        printf("FAIL corpus: %s is missing: the golden corpus must be present\n", path);
        free(seen);
        if (fp) fclose(fp);
        (*failed)++;
        return 1;
    }
    while (fgets(line, sizeof line, fp)) {
        ManifestLine m;
        Case c;
        const CaseRunner *r;
        char hex[65], *end;
        int nf;
        if (line[0] == '#' || line[0] == '\n') continue;
        nf = sscanf(line, "%127s %63s %7s %15s %255s %79s %31s %31s", m.name, m.op, m.prec, m.level, m.file, m.sha, m.tol, m.seed);
        if (nf != 8) { printf("FAIL corpus: malformed manifest line: %s", line); (*failed)++; continue; }
        if (strcmp(m.prec, prec) != 0) continue;
        r = find_runner(m.op);
        if (r) seen[r - case_runners]++;
        if (strcmp(level, "quick") == 0 && strcmp(m.level, "quick") != 0) continue;
        if (filter && !strstr(m.name, filter) && !strstr(m.op, filter)) continue;
        listed++;
        memset(&c, 0, sizeof c);
        c.name = m.name;
        c.op = m.op;
        snprintf(path, sizeof path, "%s/%s", dir, m.file);
        c.path = path;
        c.tol = strtod(m.tol, &end);
        if (*end || !(c.tol > 0)) { printf("FAIL %s: bad tolerance '%s'\n", m.name, m.tol); (*failed)++; continue; }
        if (!r) { printf("FAIL %s: no runner for operator '%s'\n", m.name, m.op); (*failed)++; continue; }
        if (sha256_file(path, hex)) { printf("FAIL %s: vector file %s is missing\n", m.name, path); (*failed)++; continue; }
        if (strcmp(hex, m.sha) != 0) {
            printf("FAIL %s: vector file %s has sha256 %s, the manifest says %s\n", m.name, path, hex, m.sha);
            (*failed)++;
            continue;
        }
        if (st_open(&c.vec, path)) { printf("FAIL %s: %s\n", m.name, mv_error()); (*failed)++; continue; }
        ran++;
        g_checks_failed = 0;
        if (r->fn(&c) != 0 || c.failed || g_checks_failed) {
            if (!c.failed && !g_checks_failed) printf("FAIL %s: runner reported failure\n", m.name);
            (*failed)++;
        } else if (c.checks == 0) {
            printf("FAIL %s: the runner checked nothing\n", m.name);
            (*failed)++;
        } else {
            (*passed)++;
        }
        st_close(&c.vec);
    }
    fclose(fp);
    if (ran != listed) { printf("FAIL corpus: %d cases listed for this run, only %d ran\n", listed, ran); (*failed)++; }
    if (!filter && strcmp(level, "full") == 0)
        for (i = 0; i < n_case_runners; i++)
            if (seen[i] < case_runners[i].min_cases) {
                printf("FAIL corpus: operator '%s' has %d %s cases, at least %d are required (shrunken corpus?)\n",
                       case_runners[i].op, seen[i], prec, case_runners[i].min_cases);
                (*failed)++;
            }
    printf("corpus: %d %s cases ran from %s/manifest.txt\n", ran, prec, dir);
    free(seen);
    return 0;
}

// --run-case CASE OUT: compute the case's outputs with mavref and write them to OUT.
// Exit 0 on success, 1 when the runner fails, 2 on unreadable input or a bad option.
static int run_case(const char *path, const char *out) {
    StFile vec;
    StWriter w;
    Case c;
    const CaseRunner *r;
    const char *op, *env = getenv("MAVREF_PERTURB"), *base;
    char name[128];
    int rc;
    if (st_open(&vec, path)) { fprintf(stderr, "run_tests: %s\n", mv_error()); return 2; }
    if (!(op = st_meta(&vec, "op")) || !(r = find_runner(op))) {
        fprintf(stderr, "run_tests: %s: %s\n", path, op ? "no runner for this op" : "metadata key 'op' is missing");
        st_close(&vec);
        return 2;
    }
    if (env && sscanf(env, "%63[^:]:%15[^:]:%191s", g_perturb_op, g_perturb_kind, g_perturb_arg) != 3) {
        fprintf(stderr, "run_tests: MAVREF_PERTURB must be OP:KIND:ARG, not '%s'\n", env);
        st_close(&vec);
        return 2;
    }
    base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    memset(&c, 0, sizeof c);
    c.name = name; c.op = op; c.path = path; c.tol = 1.0; c.vec = vec;
    st_writer_init(&w);
    g_capture = &w;
    rc = r->fn(&c);
    g_capture = NULL;
    if (rc || c.failed || g_checks_failed || w.count == 0) {
        fprintf(stderr, "run_tests: %s: the %s runner failed%s\n", path, op, w.count ? "" : " or computed nothing");
        rc = 1;
    } else if (st_writer_meta(&w, "op", op) || st_writer_save(&w, out)) {
        fprintf(stderr, "run_tests: %s\n", mv_error());
        rc = 2;
    }
    st_writer_free(&w);
    st_close(&c.vec);
    return rc;
}

static int full_level_only(const char *name) {
    size_t k;
    for (k = 0; k < n_full_level_tests; k++)
        if (!strcmp(full_level_tests[k], name)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = "vectors", *level = "full", *filter = NULL;
    int passed = 0, failed = 0, list = 0, i;
    size_t u;
    harness_argv0 = argv[0];
    if (argc == 4 && !strcmp(argv[1], "--run-case")) return run_case(argv[2], argv[3]);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vectors") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--level") && i + 1 < argc) level = argv[++i];
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
        else if (!strcmp(argv[i], "--list")) list = 1;
        else {
            fprintf(stderr, "run_tests: unknown option '%s'\nusage: run_tests [--vectors DIR] [--level quick|full] [--filter TEXT] [--list]\n", argv[i]);
            return 2;
        }
    }
    if (strcmp(level, "quick") && strcmp(level, "full")) { fprintf(stderr, "run_tests: --level must be quick or full\n"); return 2; }
    if (list) {
        for (u = 0; u < n_unit_tests; u++) printf("unit %s\n", unit_tests[u].name);
        for (u = 0; u < n_case_runners; u++) printf("op %s (min %d cases)\n", case_runners[u].op, case_runners[u].min_cases);
        return 0;
    }
    printf("mavref tests, %s build\n", REAL_NAME);
    for (u = 0; u < n_unit_tests; u++) {
        if (filter && !strstr(unit_tests[u].name, filter)) continue;
        if (strcmp(level, "full") != 0 && full_level_only(unit_tests[u].name)) continue;
        g_checks_failed = 0;
        mv_clear_error();
        if (unit_tests[u].fn() != 0 || g_checks_failed) {
            if (!g_checks_failed) printf("FAIL %s\n", unit_tests[u].name);
            failed++;
        } else {
            printf("  ok %s\n", unit_tests[u].name);
            passed++;
        }
    }
    run_corpus(dir, level, filter, &passed, &failed);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
