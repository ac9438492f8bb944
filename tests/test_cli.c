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

#define CAPTURE CLI_CAPTURE

// The capture files: named files under build/, not tmpfile(), which WASI lacks and msvcrt
// creates in the root of the drive (often not writable on Windows).
#define STR2(x) #x
#define STR(x) STR2(x)
static const char *const capture_path[2] = {"build/cli-capture-f" STR(MAVREF_PRECISION) "-out",
                                            "build/cli-capture-f" STR(MAVREF_PRECISION) "-err"};

static void read_back(FILE *fp, char *text, const char *path) {
    size_t n;
    rewind(fp);
    n = fread(text, 1, CAPTURE - 1, fp);
    text[n] = '\0';
    fclose(fp);
    remove(path);
}

// Run `mavref ARGS...` (NULL-terminated); returns 0, or 1 if the capture files cannot be made.
int cli_run(CliRun *r, const char *arg0, ...) {
    char *argv[32];
    int argc = 0;
    const char *s;
    FILE *out = fopen(capture_path[0], "w+b"), *err = fopen(capture_path[1], "w+b");
    va_list ap;
    if (!out || !err) {
        if (out) fclose(out);
        if (err) fclose(err);
        harness_failf("cli", "cannot create a temporary file");
        return 1;
    }
    argv[argc++] = (char *)"mavref";
    va_start(ap, arg0);
    for (s = arg0; s && argc < 31; s = va_arg(ap, const char *)) argv[argc++] = (char *)s;
    va_end(ap);
    argv[argc] = NULL;
    r->rc = mavref_main(argc, argv, out, err);
    read_back(out, r->out, capture_path[0]);
    read_back(err, r->err, capture_path[1]);
    return 0;
}

#define run_cli cli_run

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

// --model DIR: tokenize reads tokenizer/vocab.json + merges.txt (the same ids as the merges
// file); unet reads unet/config.json and the msgpack upstream loads, and computes what the same
// parameters give from the Flax library's loaded values (vectors/model/expected).
int test_cli_model(void) {
    CliRun a, b;
    StWriter w;
    Tensor sample, t, ctx;
    size_t ss[5] = {1, 9, 2, 8, 8}, ts[1] = {1}, cs[3] = {1, 5, 8}, i;
    const char *in = "build/test_cli_model_inputs.safetensors", *o1 = "build/test_cli_model_a.safetensors",
               *o2 = "build/test_cli_model_b.safetensors";
    int fails = 0;
    run_cli(&a, "tokenize", "--model", "vectors/model/makeavid", "--", "a photo of a cat, 4k", NULL);
    run_cli(&b, "tokenize", "--merges", "vectors/clip/clip_merges.txt", "--", "a photo of a cat, 4k", NULL);
    fails += EXPECT(a.rc == 0 && b.rc == 0 && strcmp(a.out, b.out) == 0 && strncmp(a.out, "49406 320 1125 539 320 2368 ", 28) == 0,
                    "tokenize --model: rc %d/%d, '%s' vs '%s'", a.rc, b.rc, a.out, b.out);
    // UNet inputs at the fixture's size: sample (1,9,2,8,8), t (1), context (1,5,8)
    memset(&sample, 0, sizeof sample); memset(&t, 0, sizeof t); memset(&ctx, 0, sizeof ctx);
    st_writer_init(&w);
    if (tensor_alloc(&sample, 5, ss) || tensor_alloc(&t, 1, ts) || tensor_alloc(&ctx, 3, cs)) { fails += EXPECT(0, "%s", mv_error()); goto out; }
    for (i = 0; i < sample.numel; i++) sample.data[i] = (real)((double)(i % 17) / 17.0 - 0.5);
    for (i = 0; i < ctx.numel; i++) ctx.data[i] = (real)((double)(i % 7) / 7.0 - 0.5);
    t.data[0] = 501;
    if (st_writer_add(&w, "sample", &sample, ST_REAL) || st_writer_add(&w, "timesteps", &t, ST_REAL) ||
        st_writer_add(&w, "context", &ctx, ST_REAL) || st_writer_save(&w, in)) { fails += EXPECT(0, "%s", mv_error()); goto out; }
    run_cli(&a, "unet", "--model", "vectors/model/makeavid", "--inputs", in, "--out", o1, NULL);
    run_cli(&b, "unet", "--weights", "vectors/model/expected/makeavid_unet.safetensors", "--config",
            "vectors/model/makeavid/unet/config.json", "--inputs", in, "--out", o2, NULL);
    fails += EXPECT(a.rc == 0 && b.rc == 0, "unet --model rc %d (%s), --weights rc %d (%s)", a.rc, a.err, b.rc, b.err);
    if (a.rc == 0 && b.rc == 0) {
        StFile f1, f2;
        Tensor y1, y2;
        memset(&y1, 0, sizeof y1); memset(&y2, 0, sizeof y2);
        if (st_open(&f1, o1) == 0) {
            if (st_open(&f2, o2) == 0) {
                fails += EXPECT(st_read(&f1, "out", &y1) == 0 && st_read(&f2, "out", &y2) == 0 && y1.numel == y2.numel &&
                                    memcmp(y1.data, y2.data, y1.numel * sizeof(real)) == 0,
                                "unet --model differs from the same weights loaded by Flax names");
                st_close(&f2);
            }
            st_close(&f1);
        }
        tensor_free(&y1); tensor_free(&y2);
    }
    // a wrong combination and a folder without the file are usage / input errors
    run_cli(&a, "unet", "--model", "vectors/model/makeavid", "--config", "x.json", "--inputs", in, "--out", o1, NULL);
    fails += EXPECT(a.rc == 2, "--model with --config: rc %d", a.rc);
    run_cli(&a, "unet", "--model", "vectors/model/nonexistent", "--inputs", in, "--out", o1, NULL);
    fails += EXPECT(a.rc == 2 && strstr(a.err, "vectors/model/nonexistent/unet/config.json"), "missing folder: rc %d '%s'", a.rc, a.err);
out:
    tensor_free(&sample); tensor_free(&t); tensor_free(&ctx);
    st_writer_free(&w);
    remove(in); remove(o1); remove(o2);
    return fails;
}

// Whole-file bytes (at most cap), or -1 if unreadable.
static long slurp(const char *path, unsigned char *buf, size_t cap) {
    FILE *fp = fopen(path, "rb");
    size_t n;
    if (!fp) return -1;
    n = fread(buf, 1, cap, fp);
    fclose(fp);
    return (long)n;
}

// generate --preview P (the web page's per-step clips): P_step001.gif .. one per step, GIFs of the
// video's size; the video itself is the same bytes with and without it; an unwritable prefix
// stops the run with a message naming the file.
int test_cli_preview(void) {
    static unsigned char a_gif[1 << 16], b_gif[1 << 16], step[1 << 16];
    const char *common[] = {"generate", "--model", "vectors/model/makeavid", "--hint-model", "vectors/model/sd15", "--frames",
                            "2", "--width", "8", "--height", "8", "--steps", "2", "--quiet", "--prompt", "a red circle"};
    CliRun r;
    long na, nb, ns;
    int fails = 0, k;
    char path[128];
#define GEN_ARGS common[0], common[1], common[2], common[3], common[4], common[5], common[6], common[7], common[8], \
                 common[9], common[10], common[11], common[12], common[13], common[14], common[15]
    run_cli(&r, GEN_ARGS, "--out", "build/test_cli_preview_a", (char *)NULL);
    fails += EXPECT(r.rc == 0, "generate without --preview: rc %d (%s)", r.rc, r.err);
    run_cli(&r, GEN_ARGS, "--out", "build/test_cli_preview_b", "--preview", "build/test_cli_preview_p", (char *)NULL);
    fails += EXPECT(r.rc == 0, "generate --preview: rc %d (%s)", r.rc, r.err);
    na = slurp("build/test_cli_preview_a.gif", a_gif, sizeof a_gif);
    nb = slurp("build/test_cli_preview_b.gif", b_gif, sizeof b_gif);
    fails += EXPECT(na > 0 && na == nb && memcmp(a_gif, b_gif, (size_t)na) == 0, "the video differs with --preview (%ld, %ld bytes)", na, nb);
    for (k = 1; k <= 3; k++) {
        sprintf(path, "build/test_cli_preview_p_step%03d.gif", k);
        ns = slurp(path, step, sizeof step);
        if (k <= 2)
            fails += EXPECT(ns > 13 && memcmp(step, "GIF89a", 6) == 0 && na > 13 && memcmp(step + 6, a_gif + 6, 4) == 0,
                            "%s: not a GIF of the video's size (%ld bytes)", path, ns);
        else fails += EXPECT(ns < 0, "%s written for a 2-step run", path);
        remove(path);
    }
    run_cli(&r, GEN_ARGS, "--out", "build/test_cli_preview_b", "--preview", "build/no-such-dir/p", (char *)NULL);
    fails += EXPECT(r.rc != 0 && strstr(r.err, "build/no-such-dir/p_step001.gif"), "unwritable --preview: rc %d '%s'", r.rc, r.err);
#undef GEN_ARGS
    remove("build/test_cli_preview_a.gif"); remove("build/test_cli_preview_a.y4m"); remove("build/test_cli_preview_a_latents.safetensors");
    remove("build/test_cli_preview_b.gif"); remove("build/test_cli_preview_b.y4m"); remove("build/test_cli_preview_b_latents.safetensors");
    return fails;
}
