// ops_clip.c: corpus runner for the CLIP text transformer (vectors from FlaxCLIPTextModel).
#include <stdlib.h>

#include "harness.h"
#include "tests.h"
#include "../ref/clip.h"

int run_clip_text(Case *c) {
    ClipConfig cfg;
    ParamTable pt;
    Tensor y;
    int64_t *ids = NULL;
    size_t n;
    long v[7], count;
    static const char *keys[7] = {"vocab", "width", "layers", "heads", "mlp", "max_pos", "weights_seed"};
    const StEntry *e;
    int i, rc = 1;
    for (i = 0; i < 7; i++)
        if (case_meta_long(c, keys[i], &v[i])) return 1;
    if (case_meta_long(c, "params", &count)) return 1;
    cfg.vocab = (int)v[0]; cfg.width = (int)v[1]; cfg.layers = (int)v[2]; cfg.heads = (int)v[3];
    cfg.mlp = (int)v[4]; cfg.max_pos = (int)v[5]; cfg.eps = 1e-5;
    if (!(e = st_find(&c->vec, "ids")) || e->ndim != 2) { harness_failf(c->name, "ids must be (B,T)"); return 1; }
    if (st_read_i64(&c->vec, "ids", &ids, &n)) return case_error(c, "ids"), 1;
    params_init(&pt);
    if (clip_declare_params(&pt, &cfg) || params_alloc(&pt) || params_procedural(&pt, (uint64_t)v[6])) {
        case_error(c, "CLIP parameters");
    } else if ((long)pt.count != count) {
        harness_failf(c->name, "mavref declares %lu CLIP parameters, FlaxCLIPTextModel has %ld", (unsigned long)pt.count, count);
    } else if (clip_text_forward(&y, ids, e->shape[0], e->shape[1], &pt, &cfg)) {
        case_error(c, "clip_text_forward");
    } else {
        rc = case_check(c, "hidden", &y);
        tensor_free(&y);
    }
    free(ids);
    free_params(&pt);
    return rc;
}
