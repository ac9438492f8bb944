// ops_toy.c: the toy world's clips (ref/toyworld.c) against tools/toyworld.py, byte for byte.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/toyworld.h"

// A clip from the case's metadata: held is 0, 1, -1 (toy_clip) or "c,s,d" (toy_clip_for).
static int clip_from_meta(Case *c, ToyClip *clip, long *S, long *F) {
    const char *seed_s = case_meta_str(c, "clip_seed"), *index_s = case_meta_str(c, "index");
    const char *held = case_meta_str(c, "held");
    int color, shape, dir;
    if (!seed_s || !index_s || !held || case_meta_long(c, "size", S) || case_meta_long(c, "frames", F)) return 1;
    if (*S < 32 || *S > 512 || *F < 2 || *F > 64) return case_error(c, "size or frames out of range");
    uint64_t seed = strtoull(seed_s, NULL, 10), index = strtoull(index_s, NULL, 10);
    if (sscanf(held, "%d,%d,%d", &color, &shape, &dir) == 3)
        toy_clip_for(clip, color, shape, dir, seed, index, (int)*S, (int)*F);
    else
        toy_clip(clip, seed, index, atoi(held), (int)*S, (int)*F);
    return 0;
}

int run_toyworld(Case *c) {
    ToyClip clip;
    long S, F;
    char geometry[160], caption[96];
    const char *want_geometry, *want_caption;
    Bag b = {0};
    Tensor *exp;
    unsigned char *frames = NULL;
    size_t i, n, diff = 0, first = 0;
    int rc = 1;
    if (clip_from_meta(c, &clip, &S, &F)) return 1;
    want_geometry = case_meta_str(c, "geometry");
    want_caption = case_meta_str(c, "caption");
    if (!want_geometry || !want_caption) return 1;
    snprintf(geometry, sizeof geometry, "%d %d %d %ld %ld %ld %ld", clip.color, clip.shape, clip.dir, clip.r,
             clip.x0, clip.y0, clip.v);
    toy_caption(caption, sizeof caption, &clip);
    c->checks += 2;
    if (strcmp(geometry, want_geometry)) { harness_failf(c->name, "geometry '%s', tools/toyworld.py drew '%s'", geometry, want_geometry); c->failed++; }
    if (strcmp(caption, want_caption)) { harness_failf(c->name, "caption '%s', expected '%s'", caption, want_caption); c->failed++; }
    n = (size_t)F * (size_t)S * (size_t)S * 3;
    if (!(exp = bag_input(c, &b, "frames"))) goto out;
    if (exp->numel != n) { case_error(c, "frames has the wrong size"); goto out; }
    if (!(frames = (unsigned char *)malloc(n))) { case_error(c, "alloc"); goto out; }
    toy_render(frames, &clip, (int)S, (int)F);
    for (i = 0; i < n; i++)
        if ((real)frames[i] != exp->data[i] && diff++ == 0) first = i;
    c->checks++;
    if (diff) {
        harness_failf(c->name, "%lu of %lu bytes differ; first at %lu: %u, expected %g", (unsigned long)diff,
                      (unsigned long)n, (unsigned long)first, frames[first], (double)exp->data[first]);
        c->failed++;
    } else {
        printf("  %s: %s, %lu bytes identical\n", c->name, caption, (unsigned long)n);
    }
    rc = diff != 0;
out:
    free(frames);
    bag_free(&b);
    return rc;
}
