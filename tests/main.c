// main.c: runs the unit tests and every corpus case of this build's precision.
//
//   tests/run_tests [--vectors DIR] [--level quick|full] [--filter TEXT] [--list]
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
    return MV_OK;
}

const char *case_meta_str(Case *c, const char *key) {
    const char *v = st_meta(&c->vec, key);
    if (!v) { harness_failf(c->name, "%s: metadata key '%s' is missing", c->path, key); c->failed++; }
    return v;
}

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
    c->checks++;
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

int main(int argc, char **argv) {
    const char *dir = "vectors", *level = "full", *filter = NULL;
    int passed = 0, failed = 0, list = 0, i;
    size_t u;
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
