// check.c: `mavref check` (see check.h): run another backend's adapter on every selected
// corpus case and compare what it wrote with the expected tensors.
//
// It starts processes, which C99 can do only through system(): POSIX provides the rest
// (mkdtemp for the work directory, <sys/wait.h> to tell an adapter that exited from one that
// was killed) behind CHECK_POSIX; elsewhere `mavref check` says it needs a POSIX system.
// Timeouts come from coreutils `timeout`. Nothing else in the library starts a process.
#if defined(__unix__) || defined(__unix) || (defined(__APPLE__) && defined(__MACH__))
#define CHECK_POSIX 1
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef CHECK_POSIX
#include <sys/wait.h>
#endif

#include "check.h"
#include "compare.h"
#include "json.h"
#include "safetensors.h"

// One op's row of the summary table.
typedef struct {
    char op[64];
    int pass, fail, skip, uncovered; // skip: not pluggable; uncovered: the adapter's status 3
    double worst_ratio;      // largest rel/tol over its passing and failing comparisons
    char first_fail[128];    // the first failing case
} OpRow;

// ---------------------------------------------------------------------------------------
// small helpers

// Shell glob match of * and ? (enough for op names; no character classes).
static int glob_match(const char *pat, const char *s) {
    if (!*pat) return !*s;
    if (*pat == '*') return glob_match(pat + 1, s) || (*s && glob_match(pat, s + 1));
    if (*s && (*pat == '?' || *pat == *s)) return glob_match(pat + 1, s + 1);
    return 0;
}

// Any of the comma-separated globs.
static int ops_match(const char *globs, const char *op) {
    char one[128];
    while (globs && *globs) {
        size_t n;
        while (*globs == ' ') globs++; // "a, b" as well as "a,b"
        n = strcspn(globs, ", ");
        if (n < sizeof one) {
            memcpy(one, globs, n);
            one[n] = '\0';
            if (glob_match(one, op)) return 1;
        }
        globs += n;
        while (*globs == ' ' || *globs == ',') globs++;
    }
    return 0;
}

// Append s to buf[*len..cap) in single quotes for sh; 0 on success, -1 if it does not fit.
static int append_quoted(char *buf, size_t *len, size_t cap, const char *s) {
    if (*len + 1 >= cap) return -1;
    buf[(*len)++] = '\'';
    for (; *s; s++) {
        const char *piece = *s == '\'' ? "'\\''" : NULL;
        size_t n = piece ? strlen(piece) : 1;
        if (*len + n + 2 >= cap) return -1;
        if (piece) memcpy(buf + *len, piece, n);
        else buf[*len] = *s;
        *len += n;
    }
    buf[(*len)++] = '\'';
    buf[*len] = '\0';
    return 0;
}

// The adapter's command: `backend` with {case} and {out} replaced by quoted paths.
static int expand_backend(char *buf, size_t cap, const char *backend, const char *casep, const char *outp) {
    size_t len = 0;
    const char *p = backend;
    buf[0] = '\0';
    while (*p) {
        if (!strncmp(p, "{case}", 6) || !strncmp(p, "{out}", 5)) {
            int is_case = p[1] == 'c';
            if (append_quoted(buf, &len, cap, is_case ? casep : outp)) return -1;
            p += is_case ? 6 : 5;
        } else {
            if (len + 2 >= cap) return -1;
            buf[len++] = *p++;
            buf[len] = '\0';
        }
    }
    return 0;
}

// The last non-empty line of a log file (the adapter's own words on a failure), or "".
static void last_line(char *out, size_t cap, const char *path) {
    char line[512];
    FILE *fp = fopen(path, "r");
    out[0] = '\0';
    if (!fp) return;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] && snprintf(out, cap, "%s", line) >= (int)cap) out[cap - 1] = '\0';
    }
    fclose(fp);
}

static const char *jstr(const JsonValue *obj, const char *key) {
    const JsonValue *v = json_get(obj, key);
    return v && v->type == JSON_STRING ? v->text : NULL;
}

static int read_file(const char *path, char **text, size_t *len) {
    FILE *fp = fopen(path, "rb");
    long n;
    *text = NULL;
    if (!fp) return -1;
    if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) ||
        !(*text = (char *)malloc((size_t)n + 1)) || fread(*text, 1, (size_t)n, fp) != (size_t)n) {
        free(*text);
        *text = NULL;
        fclose(fp);
        return -1;
    }
    fclose(fp);
    (*text)[n] = '\0';
    *len = (size_t)n;
    return 0;
}

// ---------------------------------------------------------------------------------------
// one case

// Read a tensor as doubles; NULL (and a message in why) on failure.
static double *read_doubles(const StFile *f, const StEntry *e, char *why, size_t cap) {
    double *v = (double *)malloc((e->numel ? e->numel : 1) * sizeof(double));
    if (!v || st_read_f64(f, e, v)) {
        snprintf(why, cap, "%s", v ? mv_error() : "out of memory");
        free(v);
        return NULL;
    }
    return v;
}

// Compare every output of the case. Returns 1 on pass, 0 on failure, with the line's text.
static int compare_outputs(const JsonValue *cs, const char *casep, const char *outp, char *msg, size_t cap,
                           double *worst_ratio) {
    const JsonValue *ts = json_get(cs, "tensors");
    StFile exp, got;
    char shp[2][128], idx[128], line[512], why[512];
    char best[768] = "";
    double best_ratio = -1.0;
    size_t i, k;
    int ok = 1;
    if (st_open(&got, outp)) {
        FILE *fp = fopen(outp, "rb");
        if (fp) { fclose(fp); snprintf(msg, cap, "FAIL unreadable output: %.900s", mv_error()); }
        else snprintf(msg, cap, "FAIL the adapter wrote nothing (no %.900s)", outp);
        return 0;
    }
    if (st_open(&exp, casep)) {
        snprintf(msg, cap, "FAIL %s", mv_error());
        st_close(&got);
        return 0;
    }
    for (i = 0; ts && i < ts->count && ok; i++) {
        const JsonValue *t = &ts->items[i], *tolv = json_get(t, "tol"), *shape = json_get(t, "shape");
        const char *name = jstr(t, "name"), *role = jstr(t, "role"), *source = jstr(t, "source"), *cmp = jstr(t, "compare");
        const StEntry *ge, *ee;
        double *g = NULL, *x = NULL, tol = tolv && tolv->type == JSON_NUMBER ? tolv->number : 0;
        size_t numel = 1, want[MV_MAXDIM];
        int nd;
        Metrics m;
        if (!name || !role || strcmp(role, "output")) continue;
        if (!shape || shape->type != JSON_ARRAY || shape->count > MV_MAXDIM || !source) {
            snprintf(msg, cap, "FAIL the contract's entry for %s is malformed", name);
            ok = 0;
            break;
        }
        nd = (int)shape->count;
        for (k = 0; k < shape->count; k++) { want[k] = (size_t)shape->items[k].number; numel *= want[k]; }
        ge = st_find(&got, name);
        if (!ge && !strcmp(name, "y_memeff")) ge = st_find(&got, "y"); // one attention result serves both
        if (!ge) { snprintf(msg, cap, "FAIL output %.200s is missing from %.700s", name, outp); ok = 0; break; }
        if (ge->ndim != nd || memcmp(ge->shape, want, (size_t)nd * sizeof(size_t))) {
            snprintf(msg, cap, "FAIL %s: wrong shape %s, expected %s", name, shape_str(shp[0], sizeof shp[0], ge->ndim, ge->shape),
                     shape_str(shp[1], sizeof shp[1], nd, want));
            ok = 0;
            break;
        }
        if (!(g = read_doubles(&got, ge, why, sizeof why))) { snprintf(msg, cap, "FAIL %s: %s", name, why); ok = 0; break; }
        if (!strcmp(source, "zero")) { // zero in exact arithmetic: nothing stored, all zeros expected
            x = (double *)calloc(numel ? numel : 1, sizeof(double));
            tol = 0;
        } else if ((ee = st_find(&exp, name)) != NULL) {
            x = read_doubles(&exp, ee, why, sizeof why);
        } else {
            snprintf(why, sizeof why, "expected tensor %.100s is missing from %.300s", name, casep);
        }
        if (!x) { snprintf(msg, cap, "FAIL %s: %s", name, why); free(g); ok = 0; break; }
        metrics_compute(&m, g, x, numel);
        free(g);
        free(x);
        metrics_format(line, sizeof line, &m, index_str(idx, sizeof idx, m.worst, nd, want));
        if ((cmp && !strcmp(cmp, "exact")) || tol == 0 ? !(m.max_abs == 0 && m.nonfinite == 0) : !metrics_pass(&m, tol)) {
            snprintf(msg, cap, "FAIL %s (tol %.1e): %s", name, tol, line);
            if (worst_ratio && tol > 0 && m.rel / tol > *worst_ratio) *worst_ratio = m.rel / tol;
            ok = 0;
            break;
        }
        // the line shows the output closest to its tolerance
        if (tol > 0 ? m.rel / tol > best_ratio : best_ratio < 0) {
            best_ratio = tol > 0 ? m.rel / tol : 0;
            snprintf(best, sizeof best, "%s rel=%.3e (tol %.1e) worst %s: got %.9g expected %.9g", name, m.rel, tol, idx,
                     m.worst_got, m.worst_exp);
        }
    }
    st_close(&exp);
    st_close(&got);
    if (ok && best_ratio < 0) { snprintf(msg, cap, "FAIL the contract lists no output"); ok = 0; }
    if (ok) {
        snprintf(msg, cap, "PASS %s", best);
        if (worst_ratio && best_ratio > *worst_ratio) *worst_ratio = best_ratio;
    }
    return ok;
}

// Run the adapter on one case and judge it. Returns 1 on pass, 0 on failure, 2 when the
// adapter exits with status 3: the backend does not cover the case.
static int run_one(const CheckOpts *o, const JsonValue *cs, const char *casep, const char *dir, char *msg, size_t cap,
                   double *worst_ratio) {
    static char cmd[8192], full[16384];
    char outp[1024], logp[1024], tail[300];
    const char *name = jstr(cs, "name");
    int st, code;
    size_t len;
    if (snprintf(outp, sizeof outp, "%s/%s.out.safetensors", dir, name) >= (int)sizeof outp ||
        snprintf(logp, sizeof logp, "%s/%s.log", dir, name) >= (int)sizeof logp) {
        snprintf(msg, cap, "FAIL the work directory's path is too long");
        return 0;
    }
    remove(outp);
    if (expand_backend(cmd, sizeof cmd, o->backend, casep, outp)) { snprintf(msg, cap, "FAIL the command is too long"); return 0; }
    // timeout -k: an adapter that ignores TERM is killed 5 s later
    len = (size_t)snprintf(full, sizeof full, "timeout -k 5 %g sh -c ", o->timeout);
    if (append_quoted(full, &len, sizeof full, cmd) || len + strlen(logp) + 32 >= sizeof full) {
        snprintf(msg, cap, "FAIL the command is too long");
        return 0;
    }
    strcat(full, " </dev/null >");
    len = strlen(full);
    if (append_quoted(full, &len, sizeof full, logp)) { snprintf(msg, cap, "FAIL the command is too long"); return 0; }
    strcat(full, " 2>&1");
    fflush(NULL); // our lines before the adapter's
    st = system(full);
    last_line(tail, sizeof tail, logp);
    if (st == -1) { snprintf(msg, cap, "FAIL could not start the shell"); return 0; }
    code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (code == 124) { snprintf(msg, cap, "FAIL the adapter timed out after %g s", o->timeout); return 0; }
    if (code == 128 + 9) { snprintf(msg, cap, "FAIL the adapter was killed (SIGKILL: ignored the timeout's TERM, or out of memory)"); return 0; }
    if (code > 128) { snprintf(msg, cap, "FAIL the adapter crashed (signal %d)%s%s", code - 128, tail[0] ? ": " : "", tail); return 0; }
    if (code == 127) { snprintf(msg, cap, "FAIL the adapter could not be run (status 127)%s%s", tail[0] ? ": " : "", tail); return 0; }
    // status 3: the backend says it does not implement this case (a partial backend)
    if (code == 3) { snprintf(msg, cap, "SKIP not covered by the backend%s%s", tail[0] ? ": " : "", tail); return 2; }
    if (code != 0) { snprintf(msg, cap, "FAIL the adapter exited with status %d%s%s", code, tail[0] ? ": " : "", tail); return 0; }
    code = compare_outputs(cs, casep, outp, msg, cap, worst_ratio);
    if (code) { remove(outp); remove(logp); } // kept on failure, to look at
    return code;
}

// ---------------------------------------------------------------------------------------

static OpRow *row_for(OpRow *rows, size_t *nrows, size_t cap, const char *op) {
    size_t i;
    for (i = 0; i < *nrows; i++)
        if (!strcmp(rows[i].op, op)) return &rows[i];
    if (*nrows == cap) return NULL;
    memset(&rows[*nrows], 0, sizeof rows[0]);
    snprintf(rows[*nrows].op, sizeof rows[0].op, "%s", op);
    return &rows[(*nrows)++];
}

#ifdef CHECK_POSIX
int check_run(const CheckOpts *opts, FILE *out, FILE *err) {
    CheckOpts o = *opts;
    JsonValue root;
    const JsonValue *cases;
    char path[1024], casep[1024], dir[1024], msg[1024];
    char *text;
    size_t len, i, nrows = 0;
    OpRow rows[128];
    int npass = 0, nfail = 0, nskip = 0, nuncovered = 0, made_dir = 0;
    const char *prec;
    if (!o.vectors) o.vectors = "vectors";
    if (!o.ops) o.ops = "*";
    if (!o.level) o.level = "full";
    if (!o.precision) o.precision = MAVREF_PRECISION;
    if (!(o.timeout > 0)) o.timeout = 600;
    if (!o.backend || !strstr(o.backend, "{case}") || !strstr(o.backend, "{out}")) {
        fprintf(err, "mavref check: --backend must contain {case} and {out}\n");
        return 2;
    }
    if (strcmp(o.level, "quick") && strcmp(o.level, "full")) { fprintf(err, "mavref check: --level must be quick or full\n"); return 2; }
    if (o.precision != 32 && o.precision != 64) { fprintf(err, "mavref check: --precision must be 32 or 64\n"); return 2; }
    prec = o.precision == 64 ? "f64" : "f32";
    snprintf(path, sizeof path, "%s/contract.json", o.vectors);
    if (read_file(path, &text, &len)) { fprintf(err, "mavref check: %s: cannot read the case contract\n", path); return 2; }
    if (json_parse(&root, text, len)) { fprintf(err, "mavref check: %s: %s\n", path, mv_error()); free(text); return 2; }
    free(text);
    if (!(cases = json_get(&root, "cases")) || cases->type != JSON_ARRAY) {
        fprintf(err, "mavref check: %s: no \"cases\" array\n", path);
        json_free(&root);
        return 2;
    }
    if (o.workdir) snprintf(dir, sizeof dir, "%s", o.workdir);
    else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/mavref-check-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) { fprintf(err, "mavref check: cannot make a work directory under %s\n", tmp && *tmp ? tmp : "/tmp"); json_free(&root); return 2; }
        made_dir = 1;
    }
    fprintf(out, "mavref check: backend %s\n  corpus %s, %s cases, level %s, ops %s; adapter outputs and logs in %s\n", o.backend,
           path, prec, o.level, o.ops, dir);
    for (i = 0; i < cases->count; i++) {
        const JsonValue *cs = &cases->items[i], *plug = json_get(cs, "pluggable");
        const char *name = jstr(cs, "name"), *op = jstr(cs, "op"), *cp = jstr(cs, "precision"), *lv = jstr(cs, "level"),
                   *file = jstr(cs, "file");
        OpRow *row;
        double ratio = 0;
        int ok;
        if (!name || !op || !cp || !lv || !file) { fprintf(err, "mavref check: %s: case %lu is malformed\n", path, (unsigned long)i); nfail++; continue; }
        if (strcmp(cp, prec) || (!strcmp(o.level, "quick") && strcmp(lv, "quick")) || !ops_match(o.ops, op) ||
            (o.cases && !strstr(name, o.cases)))
            continue;
        if (!(row = row_for(rows, &nrows, sizeof rows / sizeof rows[0], op))) { fprintf(err, "mavref check: too many ops\n"); break; }
        if (plug && plug->type == JSON_BOOL && !plug->boolean) {
            fprintf(out, "%-24s %-44s SKIP not pluggable: its checks are more than tensor comparisons (run_tests)\n", op, name);
            row->skip++;
            nskip++;
            continue;
        }
        snprintf(casep, sizeof casep, "%s/%s", o.vectors, file);
        ok = run_one(&o, cs, casep, dir, msg, sizeof msg, &ratio);
        fprintf(out, "%-24s %-44s %s\n", op, name, msg);
        if (ratio > row->worst_ratio) row->worst_ratio = ratio;
        if (ok == 2) { row->uncovered++; nuncovered++; }
        else if (ok) { row->pass++; npass++; }
        else {
            if (!row->fail) snprintf(row->first_fail, sizeof row->first_fail, "%s", name);
            row->fail++;
            nfail++;
        }
    }
    fprintf(out, "\n%-24s %5s %5s %7s %9s  %-12s %s\n", "op", "pass", "fail", "not cov", "not plug", "max rel/tol",
            "first failing case");
    for (i = 0; i < nrows; i++)
        fprintf(out, "%-24s %5d %5d %7d %9d  %-12.3g %s\n", rows[i].op, rows[i].pass, rows[i].fail, rows[i].uncovered, rows[i].skip,
                rows[i].worst_ratio,
               rows[i].fail ? rows[i].first_fail : "-");
    fprintf(out, "check: %d passed, %d failed, %d not covered by the backend, %d not pluggable\n", npass, nfail, nuncovered, nskip);
    if (made_dir && !nfail) remove(dir); // empty when everything passed
    json_free(&root);
    if (npass + nfail + nuncovered == 0) { fprintf(err, "mavref check: no case selected\n"); return 2; }
    return nfail ? 1 : 0;
}
#else
int check_run(const CheckOpts *opts, FILE *out, FILE *err) {
    (void)opts;
    (void)out;
    fprintf(err, "mavref check: needs a POSIX system (sh, timeout, mkdtemp)\n");
    return 2;
}
#endif
