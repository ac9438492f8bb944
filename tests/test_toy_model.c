// test_toy_model.c: the toy model of `make toy-model` does what its prompts say (issue 15).
//   toy_measure_truth     the measurement (ref/toyworld.h toy_measure) reads the toy world's
//                         own clips of the 24 pairs right: every one passes
//   toy_prompt_adherence  the committed toy model (vectors/toy/), text only: at least 90% of
//                         the 24 (prompt, seed) pairs, 8 of them held-out combinations, move the
//                         asked colour's blob the asked way by a quarter of the frame, with the
//                         asked shape; the table is printed (mavref toy-eval)
#include <stdio.h>
#include <string.h>

#include "../ref/cli.h"
#include "harness.h"
#include "tests.h"

static int toy_eval(const char *where, int truth, const char *expect_line) {
    char *argv[12];
    int argc = 0, rc;
    FILE *out = tmpfile();
    char line[256], last[256] = "";
    argv[argc++] = (char *)"mavref";
    argv[argc++] = (char *)"toy-eval";
    if (truth) {
        argv[argc++] = (char *)"--truth";
    } else {
        argv[argc++] = (char *)"--model";
        argv[argc++] = (char *)"vectors/toy/makeavid";
        argv[argc++] = (char *)"--hint-model";
        argv[argc++] = (char *)"vectors/toy/hint";
    }
    argv[argc] = NULL;
    if (!out) { harness_failf(where, "cannot create a temporary file"); return 1; }
    rc = mavref_main(argc, argv, out, stderr);
    rewind(out);
    while (fgets(line, sizeof line, out)) { // the table, indented like the harness's own lines
        printf("    %s", line);
        if (!strncmp(line, "prompt adherence:", 17)) snprintf(last, sizeof last, "%s", line);
    }
    fclose(out);
    if (rc != 0) { harness_failf(where, "mavref toy-eval exited %d: below the 90%% bar (%s)", rc, last); return 1; }
    if (expect_line && !strstr(last, expect_line)) { harness_failf(where, "expected '%s', got '%s'", expect_line, last); return 1; }
    return 0;
}

int test_toy_measure_truth(void) { return toy_eval("toy_measure_truth", 1, "24 of 24 pairs (100.0%), held-out 8 of 8"); }

int test_toy_prompt_adherence(void) { return toy_eval("toy_prompt_adherence", 0, NULL); }
