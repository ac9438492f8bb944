// ops_pipeline.c: the whole text-to-video pipeline against the FLAX pipeline's vectors
// (tools/cases_pipeline.py): token ids, text embeddings, hint and mask latents, the latents
// after every step, the decoded frames before quantization, and the uint8 frames.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"
#include "../ref/pipeline.h"

// Read a U8 tensor of exactly n elements.
static unsigned char *read_u8(Case *c, const char *name, size_t n) {
    int64_t *v = NULL;
    size_t got, i;
    unsigned char *out;
    if (st_read_i64(&c->vec, name, &v, &got) || got != n) {
        harness_failf(c->name, "%s: %s", name, got != n && v ? "unexpected size" : mv_error());
        c->failed++;
        free(v);
        return NULL;
    }
    out = (unsigned char *)malloc(n);
    for (i = 0; out && i < n; i++) out[i] = (unsigned char)v[i];
    free(v);
    return out;
}

typedef struct {
    Case *c;
    Tensor steps; // (n,1,4,F,h,w) expected
    int failed;
} StepCheck;

static int check_step(void *user, int k, int64_t t, const Tensor *lat) {
    StepCheck *sc = (StepCheck *)user;
    Tensor exp;
    Metrics m;
    char line[512], idx[128], name[64];
    (void)t;
    exp = *lat;
    exp.owned = 0;
    exp.data = sc->steps.data + (size_t)k * lat->numel;
    metrics_compute_real(&m, lat->data, exp.data, lat->numel);
    metrics_format(line, sizeof line, &m, index_str(idx, sizeof idx, m.worst, lat->ndim, lat->shape));
    snprintf(name, sizeof name, "latents_steps[%d]", k);
    sc->c->checks++;
    if (!metrics_pass(&m, sc->c->tol)) {
        harness_failf(sc->c->name, "%s: %s (tol %.1e)", name, line, sc->c->tol);
        sc->failed = 1;
    } else {
        printf("  ok %s %s: %s\n", sc->c->name, name, line);
    }
    return MV_OK;
}

int run_pipeline(Case *c) {
    Models m;
    GenOptions o;
    Replay r;
    Tensor emb, hl, ml, fl;
    StepCheck sc;
    const char *rule;
    long lh, lw;
    int64_t ids[77], *want = NULL;
    unsigned char *frames = NULL, *want_frames = NULL;
    double frac;
    unsigned maxdiff;
    size_t i, n, ndiff = 0, bigdiff = 0;
    int rc = 1, k;
    memset(&m, 0, sizeof m); memset(&sc, 0, sizeof sc); memset(&fl, 0, sizeof fl);
    if (!(rule = case_meta_str(c, "frames_rule")) || case_meta_long(c, "latent_height", &lh) ||
        case_meta_long(c, "latent_width", &lw))
        return 1;
    if (sscanf(rule, "maxdiff=%u frac=%lf", &maxdiff, &frac) != 2) { harness_failf(c->name, "bad frames_rule '%s'", rule); return 1; }
    // the recorded run: prompts, sizes, networks with procedural weights, hint, mask, noise
    if (pipeline_replay_load(&r, &o, &m, &sc.steps, c->path)) return case_error(c, "replay"), 1;
    if (build_tokenizer(&m.tok, "vectors/clip/clip_merges.txt")) { case_error(c, "tokenizer"); goto out; }
    // the pieces: ids and embeddings of both prompts, hint and mask latents
    for (k = 0; k < 2; k++) {
        const char *idn = k ? "neg_ids" : "ids", *en = k ? "neg_emb" : "text_emb";
        if (pipeline_encode_prompt(&emb, ids, k ? o.neg_prompt : o.prompt, &m)) { case_error(c, en); goto out; }
        if (st_read_i64(&c->vec, idn, &want, &n) || n != 77) { case_error(c, idn); tensor_free(&emb); goto out; }
        c->checks++;
        for (i = 0; i < 77; i++)
            if (ids[i] != want[i]) { harness_failf(c->name, "%s[%lu]: got %lld expected %lld", idn, (unsigned long)i, (long long)ids[i], (long long)want[i]); c->failed++; break; }
        free(want);
        want = NULL;
        case_check(c, en, &emb);
        tensor_free(&emb);
    }
    if (!o.hint) { // no hint image: the 2-D UNet's sampling loop makes the hint latent
        Tensor t1, t2;
        int64_t id2[77];
        if (pipeline_encode_prompt(&t1, id2, o.prompt, &m)) { case_error(c, "text"); goto out; }
        if (pipeline_encode_prompt(&t2, id2, o.neg_prompt, &m)) { tensor_free(&t1); case_error(c, "text"); goto out; }
        k = pipeline_imagegen_hint(&hl, &t1, &t2, (size_t)lh, (size_t)lw, &o, &m);
        tensor_free(&t1);
        tensor_free(&t2);
        if (k || tensor_alloc_v(&ml, 4, (size_t)1, (size_t)1, (size_t)lh, (size_t)lw)) { case_error(c, "imagegen hint"); goto out; }
    } else if (pipeline_hint_latents(&hl, &ml, o.hint, o.mask, o.height, o.width, (size_t)lh, (size_t)lw, &m)) {
        case_error(c, "hint latents");
        goto out;
    }
    case_check(c, "hint_latent", &hl);
    case_check(c, "mask_latent", &ml);
    tensor_free(&hl);
    tensor_free(&ml);
    // the whole run, every step checked as it happens
    sc.c = c;
    if (pipeline_generate(&frames, NULL, &fl, &o, &m, check_step, &sc)) { case_error(c, "pipeline_generate"); goto out; }
    if (sc.failed) c->failed++;
    case_check(c, "frames_float", &fl);
    n = o.frames * o.height * o.width * 3;
    if (!(want_frames = read_u8(c, "frames", n))) goto out;
    for (i = 0; i < n; i++) {
        int d = (int)frames[i] - (int)want_frames[i];
        if (d) ndiff++;
        if (d > (int)maxdiff || -d > (int)maxdiff) bigdiff++;
    }
    c->checks++;
    if (bigdiff || (double)ndiff > frac * (double)n) {
        harness_failf(c->name, "frames: %lu of %lu bytes differ, %lu by more than %u (rule %s)", (unsigned long)ndiff,
                      (unsigned long)n, (unsigned long)bigdiff, maxdiff, rule);
        c->failed++;
    } else {
        printf("  ok %s frames: %lu of %lu bytes differ by one level (rule %s)\n", c->name, (unsigned long)ndiff, (unsigned long)n, rule);
    }
    rc = c->failed ? 1 : 0;
out:
    free(frames); free(want_frames); free(want);
    tensor_free(&sc.steps); tensor_free(&fl);
    free_models(&m);
    pipeline_replay_free(&r);
    return rc;
}
