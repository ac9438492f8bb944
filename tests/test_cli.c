// test_cli.c: the `mavref` command line, run in-process through mavref_main (ref/cli.h)
// with its output captured in temporary files: every command's --help (exit 0, its usage
// line and every option of the table that it takes), unknown and incomplete options (exit
// 2, one line naming the option), and `--` before a TEXT that begins with '-'.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tests.h"
#include "../ref/cli.h"
#include "../ref/tokenizer.h"

#define CAPTURE 65536

typedef struct {
    int rc;
    char out[CAPTURE], err[CAPTURE]; // what the command printed on each stream (truncated)
} CliRun;

static void read_back(FILE *fp, char *text) {
    size_t n;
    rewind(fp);
    n = fread(text, 1, CAPTURE - 1, fp);
    text[n] = '\0';
    fclose(fp);
}

// Run `mavref ARGS...` (NULL-terminated); returns 0, or 1 if the capture files cannot be made.
static int run_cli(CliRun *r, const char *arg0, ...) {
    char *argv[16];
    int argc = 0;
    const char *s;
    FILE *out = tmpfile(), *err = tmpfile();
    va_list ap;
    if (!out || !err) {
        if (out) fclose(out);
        if (err) fclose(err);
        harness_failf("cli", "cannot create a temporary file");
        return 1;
    }
    argv[argc++] = (char *)"mavref";
    va_start(ap, arg0);
    for (s = arg0; s && argc < 15; s = va_arg(ap, const char *)) argv[argc++] = (char *)s;
    va_end(ap);
    argv[argc] = NULL;
    r->rc = mavref_main(argc, argv, out, err);
    read_back(out, r->out);
    read_back(err, r->err);
    return 0;
}

// One line on err, beginning "mavref CMD: " and naming `what`; nothing on out; exit 2.
static int expect_usage_error(const char *where, const CliRun *r, const char *cmd, const char *what) {
    char head[64];
    const char *nl = strchr(r->err, '\n');
    snprintf(head, sizeof head, "mavref %s: ", cmd);
    if (r->rc != 2 || strncmp(r->err, head, strlen(head)) || !strstr(r->err, what) || !nl || nl[1] || r->out[0]) {
        harness_failf(where, "expected exit 2 and one line '%s... %s ...', got exit %d, err '%s', out '%.80s'", head, what, r->rc,
                      r->err, r->out);
        return 1;
    }
    return 0;
}

int test_cli_help(void) {
    static CliRun r;
    size_t i, j;
    int fails = 0;
    const CliCommand *c;
    char line[128];
    for (i = 0; (c = mavref_command(i)) != NULL; i++) {
        if (run_cli(&r, c->name, "--help", (char *)NULL)) return 1;
        snprintf(line, sizeof line, "usage: mavref %s ", c->name);
        if (r.rc != 0 || strncmp(r.out, line, strlen(line)) || r.err[0]) {
            harness_failf(__func__, "mavref %s --help: exit %d, out '%.60s', err '%s'", c->name, r.rc, r.out, r.err);
            fails++;
            continue;
        }
        for (j = 0; j < n_cli_options; j++) { // the usage lists every option of the command
            const CliOption *o = &cli_options[j];
            if (!(o->commands & c->bit)) continue;
            snprintf(line, sizeof line, "  %s%s%s ", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
            fails += EXPECT(strstr(r.out, line) != NULL, "mavref %s --help does not list '%s'", c->name, line);
        }
        if (run_cli(&r, c->name, "-h", (char *)NULL)) return 1;
        fails += EXPECT(r.rc == 0 && !strncmp(r.out, "usage: mavref ", 14), "mavref %s -h: exit %d", c->name, r.rc);
    }
    fails += EXPECT(i >= 7, "only %lu commands", (unsigned long)i);
    // mavref --help: every command's usage, and what `--` does; mavref alone: exit 2
    if (run_cli(&r, "--help", (char *)NULL)) return 1;
    fails += EXPECT(r.rc == 0 && strstr(r.out, "`--`"), "mavref --help: exit %d, or `--` not explained", r.rc);
    for (i = 0; (c = mavref_command(i)) != NULL; i++) {
        snprintf(line, sizeof line, "usage: mavref %s ", c->name);
        fails += EXPECT(strstr(r.out, line) != NULL, "mavref --help lacks '%s'", line);
    }
    if (run_cli(&r, (char *)NULL)) return 1;
    fails += EXPECT(r.rc == 2 && strstr(r.err, "usage: mavref generate ") && !r.out[0], "mavref alone: exit %d", r.rc);
    return fails;
}

int test_cli_bad_options(void) {
    static CliRun r;
    size_t i;
    int fails = 0;
    const CliCommand *c;
    for (i = 0; (c = mavref_command(i)) != NULL; i++) {
        if (run_cli(&r, c->name, "--no-such-option", "x", (char *)NULL)) return 1;
        fails += expect_usage_error(__func__, &r, c->name, "unknown option '--no-such-option'");
    }
    // an option without its value, a value out of range or not a number, a positional too many
    if (run_cli(&r, "generate", "--prompt", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "generate", "--prompt");
    if (run_cli(&r, "generate", "--steps", "0", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "generate", "--steps needs an integer in 1..1000, got '0'");
    if (run_cli(&r, "generate", "--seed", "-1", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "generate", "--seed needs an integer >= 0, got '-1'");
    if (run_cli(&r, "train", "--lr", "fast", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "train", "--lr needs a number, got 'fast'");
    if (run_cli(&r, "compare", "--rtol", "-1", "a", "b", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "compare", "--rtol needs a non-negative number, got '-1'");
    if (run_cli(&r, "info", "a", "b", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "info", "unexpected argument 'b'");
    if (run_cli(&r, "compare", "a", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "compare", "expected A B");
    // an option of another command is unknown here
    if (run_cli(&r, "tokenize", "--steps", "3", "text", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "tokenize", "unknown option '--steps'");
    if (run_cli(&r, "no-such-command", (char *)NULL)) return 1;
    fails += EXPECT(r.rc == 2 && strstr(r.err, "unknown command 'no-such-command'"), "unknown command: exit %d, '%s'", r.rc, r.err);
    return fails;
}

// A TEXT that begins with '-' is an unknown option, unless `--` comes first; then it is
// the text: the command prints the ids that tokenize() gives for it.
int test_cli_dash_text(void) {
    static CliRun r;
    static const char *merges = "vectors/clip/clip_merges.txt";
    char expected[CLIP_CONTEXT * 8] = "", *p = expected;
    int32_t ids[CLIP_CONTEXT];
    Tokenizer tok;
    int fails = 0, k;
    if (build_tokenizer(&tok, merges)) { harness_failf(__func__, "%s", mv_error()); return 1; }
    k = tokenize(&tok, "-dash", 5, ids);
    free_tokenizer(&tok);
    if (k < 0) { harness_failf(__func__, "%s", mv_error()); return 1; }
    for (k = 0; k < CLIP_CONTEXT; k++) p += sprintf(p, k ? " %d" : "%d", (int)ids[k]);
    strcpy(p, "\n");
    if (run_cli(&r, "tokenize", "-dash", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "tokenize", "unknown option '-dash'");
    if (run_cli(&r, "tokenize", "--merges", merges, "--", "-dash", (char *)NULL)) return 1;
    fails += EXPECT(r.rc == 0 && !strcmp(r.out, expected), "tokenize -- -dash: exit %d, '%.40s', expected '%.40s' %s", r.rc,
                    r.out, expected, r.err);
    if (run_cli(&r, "tokenize", "--", "-dash", "more", (char *)NULL)) return 1;
    fails += expect_usage_error(__func__, &r, "tokenize", "unexpected argument 'more'");
    return fails;
}
