// test_convert.c: `mavref convert` (ref/convert.h) on every fixture format and component.
// A converted file must hold exactly the network's declared parameters (names, shapes, in the
// table's order), in the stored dtype (or float32 with --dtype f32), and load by Flax names
// (params_load, i.e. --weights) to the very values the folder loader (md_load_*) gives and
// the Flax libraries gave (vectors/model/expected), bit for bit. Bad input: exit 2, nothing
// written; a failed write: exit 1, nothing left.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/checkpoint.h"
#include "../ref/model_dir.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define OUT "build/convert-f" STR(MAVREF_PRECISION) ".safetensors"
#define MD "vectors/model"

typedef struct {
    const char *what;
    const char *in, *component, *config, *dtype; // the command's arguments (NULL: not given)
    char table;             // 'u' pseudo-3D UNet, '2' 2-D UNet, 'v' VAE, 'c' CLIP text
    const char *table_cfg;  // the config.json the table is declared from
    int ldm;                // the source is the single-file checkpoint
    StDtype dtype_out;      // every tensor of the output
    const char *expected;   // the Flax libraries' loaded values
} ConvertCase;

static const ConvertCase cases[] = {
    {"makeavid unet .bin", MD "/makeavid/unet/diffusion_pytorch_model.bin", NULL, NULL, NULL, 'u', MD "/makeavid/unet/config.json", 0,
     ST_F32, MD "/expected/makeavid_unet.safetensors"},
    {"makeavid unet msgpack", MD "/makeavid/unet/diffusion_flax_model.msgpack", NULL, NULL, NULL, 'u', MD "/makeavid/unet/config.json",
     0, ST_F32, MD "/expected/makeavid_unet.safetensors"},
    {"makeavid unet PyTorch safetensors", MD "/makeavid/unet/diffusion_pytorch_model.safetensors", "unet", NULL, NULL, 'u',
     MD "/makeavid/unet/config.json", 0, ST_F32, MD "/expected/makeavid_unet.safetensors"},
    {"makeavid vae .bin fp16", MD "/makeavid/vae/diffusion_pytorch_model.bin", NULL, NULL, NULL, 'v', MD "/makeavid/vae/config.json", 0,
     ST_F16, MD "/expected/makeavid_vae.safetensors"},
    {"makeavid text_encoder .bin fp16", MD "/makeavid/text_encoder/pytorch_model.bin", NULL, NULL, NULL, 'c',
     MD "/makeavid/text_encoder/config.json", 0, ST_F16, MD "/expected/makeavid_clip.safetensors"},
    {"makeavid folder vae --dtype f32", MD "/makeavid", "vae", NULL, "f32", 'v', MD "/makeavid/vae/config.json", 0, ST_F32,
     MD "/expected/makeavid_vae.safetensors"},
    {"makeavid folder text_encoder", MD "/makeavid", "text_encoder", NULL, NULL, 'c', MD "/makeavid/text_encoder/config.json", 0,
     ST_F16, MD "/expected/makeavid_clip.safetensors"},
    {"sd15 single-file unet", MD "/sd15.safetensors", "unet", MD "/sd15/unet/config.json", NULL, '2', MD "/sd15/unet/config.json", 1,
     ST_F16, MD "/expected/sd15_unet.safetensors"},
    {"sd15 single-file vae", MD "/sd15.safetensors", "vae", MD "/sd15/vae/config.json", NULL, 'v', MD "/sd15/vae/config.json", 1, ST_F16,
     MD "/expected/sd15_vae.safetensors"},
    {"sd15 single-file text_encoder", MD "/sd15.safetensors", "text_encoder", MD "/sd15/text_encoder/config.json", "f32", 'c',
     MD "/sd15/text_encoder/config.json", 1, ST_F32, MD "/expected/sd15_clip.safetensors"},
    {"sd15 folder unet fp16", MD "/sd15", "unet", NULL, NULL, '2', MD "/sd15/unet/config.json", 0, ST_F16,
     MD "/expected/sd15_unet.safetensors"},
    {"sd15 flax unet bf16", MD "/sd15-flax/unet/diffusion_flax_model.msgpack", NULL, NULL, NULL, '2', MD "/sd15-flax/unet/config.json",
     0, ST_BF16, MD "/expected/sd15_unet.safetensors"},
    {"sd15 flax vae bf16 --dtype f32", MD "/sd15-flax/vae/diffusion_flax_model.msgpack", NULL, NULL, "f32", 'v',
     MD "/sd15-flax/vae/config.json", 0, ST_F32, MD "/expected/sd15_vae.safetensors"},
};

// The network's parameter table, declared from its config.json (allocated if `alloc`).
static int declare(ParamTable *pt, const ConvertCase *c, int alloc, int *layers, int *blocks) {
    int rc;
    params_init(pt);
    *layers = *blocks = 0;
    if (c->table == 'u' || c->table == '2') {
        UNetConfig u;
        unet_config_default(&u);
        u.temporal = c->table == 'u';
        rc = unet_config_load(&u, c->table_cfg) || unet_declare_params(pt, &u);
        *layers = u.layers_per_block;
        *blocks = u.n_blocks;
    } else if (c->table == 'v') {
        VAEConfig v;
        vae_config_default(&v);
        rc = vae_config_load(&v, c->table_cfg) || vae_declare_params(pt, &v);
        *layers = v.layers_per_block;
        *blocks = v.n_blocks;
    } else {
        ClipConfig k;
        clip_config_default(&k);
        rc = clip_config_load(&k, c->table_cfg) || clip_declare_params(pt, &k);
    }
    if (!rc && alloc) rc = params_alloc(pt);
    return rc ? MV_ERR : MV_OK;
}

// Every value of pt equals the expected file's tensor of the same name (as doubles: exact).
static int equals_expected(const char *what, const ParamTable *pt, const char *expected) {
    StFile f;
    size_t i, k, bad = 0;
    double *buf = NULL;
    if (st_open(&f, expected)) return EXPECT(0, "%s: %s", what, mv_error());
    for (i = 0; i < pt->count && !bad; i++) {
        const StEntry *e = st_find(&f, pt->p[i].name);
        if (!e || e->numel != pt->p[i].t.numel) { bad += EXPECT(0, "%s: '%s' not in %s", what, pt->p[i].name, expected); break; }
        buf = (double *)realloc(buf, (e->numel ? e->numel : 1) * sizeof *buf);
        if (!buf || st_read_f64(&f, e, buf)) { bad += EXPECT(0, "%s: %s", what, mv_error()); break; }
        for (k = 0; k < e->numel; k++)
            if ((double)pt->p[i].t.data[k] != buf[k]) { bad += EXPECT(0, "%s: '%s'[%lu] differs from the Flax library's", what, e->name, (unsigned long)k); break; }
    }
    free(buf);
    st_close(&f);
    return bad ? 1 : 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int one_case(const ConvertCase *c) {
    const char *argv[12];
    CliRun r;
    ParamTable want, got, direct;
    StFile f;
    int n = 0, fails = 0, layers, blocks;
    size_t i;
    char w[512];
    argv[n++] = "convert"; argv[n++] = c->in; argv[n++] = OUT;
    if (c->component) { argv[n++] = "--component"; argv[n++] = c->component; }
    if (c->config) { argv[n++] = "--config"; argv[n++] = c->config; }
    if (c->dtype) { argv[n++] = "--dtype"; argv[n++] = c->dtype; }
    while (n < 12) argv[n++] = NULL;
    remove(OUT);
    cli_run(&r, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], argv[7], argv[8], argv[9], argv[10], argv[11]);
    if (r.rc != 0 || strncmp(r.out, "wrote " OUT, strlen("wrote " OUT))) return EXPECT(0, "%s: exit %d: %s%s", c->what, r.rc, r.err, r.out);
    // names, shapes and dtypes: exactly the declared table, in its order
    if (declare(&want, c, 0, &layers, &blocks)) { free_params(&want); return EXPECT(0, "%s: %s", c->what, mv_error()); }
    if (st_open(&f, OUT)) { free_params(&want); return EXPECT(0, "%s: %s", c->what, mv_error()); }
    fails += EXPECT(f.count == want.count, "%s: %lu tensors written, the table has %lu", c->what, (unsigned long)f.count, (unsigned long)want.count);
    for (i = 0; i < f.count && i < want.count && !fails; i++) {
        const StEntry *e = &f.entries[i];
        const Param *p = &want.p[i];
        int d, same = e->ndim == p->t.ndim && !strcmp(e->name, p->name);
        for (d = 0; same && d < e->ndim; d++) same = e->shape[d] == p->t.shape[d];
        fails += EXPECT(same, "%s: tensor %lu is '%s', the table's is '%s' (or the shapes differ)", c->what, (unsigned long)i, e->name, p->name);
        fails += EXPECT(e->dtype == c->dtype_out, "%s: '%s' written as %s, expected %s", c->what, e->name, st_dtype_name(e->dtype),
                        st_dtype_name(c->dtype_out));
    }
    st_close(&f);
    free_params(&want);
    if (fails) return fails;
    // values: loaded by Flax names, they are the loader's and the Flax libraries', bit for bit
    // (a folder: the weight file --model picks)
    if (ends_with(c->in, ".bin") || ends_with(c->in, ".safetensors") || ends_with(c->in, ".msgpack")) {
        if ((size_t)snprintf(w, sizeof w, "%s", c->in) >= sizeof w) return EXPECT(0, "%s: path too long", c->what);
    } else if (md_weights_path(w, sizeof w, c->in, c->table == 'c' ? "text_encoder" : c->table == 'v' ? "vae" : "unet")) return EXPECT(0, "%s", mv_error());
    params_init(&direct);
    if (declare(&got, c, 1, &layers, &blocks) || params_load(&got, OUT, 0)) {
        fails += EXPECT(0, "%s: the converted file does not load by Flax names: %s", c->what, mv_error());
    } else if (declare(&direct, c, 1, &layers, &blocks) ||
               (c->ldm ? md_load_ldm(&direct, w, c->table == 'c' ? 'c' : c->table == 'v' ? 'v' : 'u', layers, blocks)
                       : md_load_weights(&direct, w, c->table == 'c'))) {
        fails += EXPECT(0, "%s: %s", c->what, mv_error());
    } else {
        fails += EXPECT(got.numel == direct.numel && memcmp(got.arena, direct.arena, got.numel * sizeof(real)) == 0,
                        "%s: the converted values differ from the loader's (%s)", c->what, w);
    }
    free_params(&direct);
    if (!fails) fails += equals_expected(c->what, &got, c->expected);
    free_params(&got);
    remove(OUT);
    return fails;
}

int test_convert_fixtures(void) {
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) fails += one_case(&cases[i]);
    return fails;
}

static int exists(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp) fclose(fp);
    return fp != NULL;
}

static int write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    int ok = fp && fputs(text, fp) >= 0;
    if (fp && fclose(fp) != 0) ok = 0;
    return ok ? 0 : 1;
}

static int unchanged(const char *path) {
    char buf[64];
    FILE *fp = fopen(path, "rb");
    size_t n;
    if (!fp) return 0;
    n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strcmp(buf, "previous contents\n") == 0;
}

// Exit 2 (or `rc`), a message naming `name`, OUT as it was and no OUT.tmp.
static int refused(const char *what, const CliRun *r, int rc, const char *name) {
    int fails = EXPECT(r->rc == rc && strstr(r->err, name) && !r->out[0], "%s: expected exit %d naming '%s', got %d: %s%s", what, rc,
                       name, r->rc, r->err, r->out);
    fails += EXPECT(unchanged(OUT), "%s: the existing %s was changed", what, OUT);
    fails += EXPECT(!exists(OUT ".tmp"), "%s: %s.tmp left behind", what, OUT);
    return fails;
}

int test_convert_refusals(void) {
    const char *cut = "build/convert-f" STR(MAVREF_PRECISION) "-cut.bin";
    CliRun r;
    CkFile src, out;
    int fails = 0;
    if (write_text(OUT, "previous contents\n")) return EXPECT(0, "cannot write %s", OUT);
    cli_run(&r, "convert", MD "/makeavid", OUT, (char *)NULL);
    fails += refused("a folder without --component", &r, 2, "--component");
    cli_run(&r, "convert", MD "/sd15.safetensors", OUT, (char *)NULL);
    fails += refused("the single file without --component", &r, 2, "single-file");
    cli_run(&r, "convert", MD "/sd15.safetensors", OUT, "--component", "unet", (char *)NULL);
    fails += refused("the single file with SD 1.5's full-size config", &r, 2, "sd15.safetensors");
    cli_run(&r, "convert", MD "/makeavid/vae/diffusion_pytorch_model.bin", OUT, "--component", "text_encoder", (char *)NULL);
    fails += refused("the VAE as a text encoder", &r, 2, "diffusion_pytorch_model.bin");
    cli_run(&r, "convert", MD "/makeavid/vae/diffusion_pytorch_model.bin", OUT, "--config", MD "/makeavid/unet/config.json", (char *)NULL);
    fails += refused("the VAE with the UNet's config", &r, 2, "unet/config.json");
    cli_run(&r, "convert", MD "/makeavid/vae/diffusion_pytorch_model.bin", OUT, "--component", "decoder", (char *)NULL);
    fails += refused("an unknown component", &r, 2, "--component");
    cli_run(&r, "convert", MD "/makeavid/vae/diffusion_pytorch_model.bin", OUT, "--dtype", "f64", (char *)NULL);
    fails += refused("--dtype f64", &r, 2, "--dtype");
    cli_run(&r, "convert", MD "/makeavid/vae/diffusion_pytorch_model.bin", OUT, "--names", "pytorch", (char *)NULL);
    fails += refused("--names pytorch", &r, 2, "--names");
    cli_run(&r, "convert", MD "/no-such-file.bin", OUT, (char *)NULL);
    fails += refused("a missing input", &r, 2, "no-such-file.bin");
    {   // a truncated .bin: the zip's directory is gone
        FILE *in = fopen(MD "/makeavid/vae/diffusion_pytorch_model.bin", "rb"), *o = fopen(cut, "wb");
        int ch, k = 0;
        while (in && o && (ch = fgetc(in)) != EOF && k++ < 300000) fputc(ch, o);
        if (in) fclose(in);
        if (o) fclose(o);
    }
    cli_run(&r, "convert", cut, OUT, (char *)NULL);
    fails += refused("a truncated .bin", &r, 2, cut);
    remove(cut);
    // a write that fails (no such directory): exit 1, nothing left
    cli_run(&r, "convert", MD "/makeavid/vae/diffusion_pytorch_model.bin", "build/no-such-dir-convert/out.safetensors", (char *)NULL);
    fails += EXPECT(r.rc == 1 && strstr(r.err, "no-such-dir-convert/out.safetensors.tmp"), "write failure: exit %d: %s", r.rc, r.err);
    fails += EXPECT(!exists("build/no-such-dir-convert/out.safetensors"), "write failure: output appeared");
    // --names stored: every tensor as stored (position_ids too), the same bytes
    cli_run(&r, "convert", MD "/makeavid/text_encoder/pytorch_model.bin", OUT, "--names", "stored", (char *)NULL);
    fails += EXPECT(r.rc == 0, "--names stored: exit %d: %s", r.rc, r.err);
    if (r.rc == 0 && ck_open(&src, MD "/makeavid/text_encoder/pytorch_model.bin") == 0) {
        if (ck_open(&out, OUT) == 0) {
            size_t i;
            fails += EXPECT(out.count == src.count, "--names stored: %lu tensors of %lu", (unsigned long)out.count, (unsigned long)src.count);
            for (i = 0; i < src.count && i < out.count && !fails; i++) {
                const CkEntry *a = &src.entries[i], *b = ck_find(&out, a->name);
                double *x = (double *)calloc(a->numel + 1, sizeof(double)), *y = (double *)calloc(a->numel + 1, sizeof(double));
                fails += EXPECT(b && b->dtype == a->dtype && b->numel == a->numel && x && y && ck_read_f64(&src, a, x) == 0 &&
                                    ck_read_f64(&out, b, y) == 0 && memcmp(x, y, a->numel * sizeof(double)) == 0,
                                "--names stored: '%s' differs", a->name);
                free(x);
                free(y);
            }
            fails += EXPECT(ck_find(&out, "text_model.embeddings.position_ids") != NULL, "--names stored: position_ids left out");
            ck_close(&out);
        } else fails += EXPECT(0, "%s", mv_error());
        ck_close(&src);
    }
    remove(OUT);
    return fails;
}

// --names torch, the other direction: the network by its PyTorch names and layouts equals the
// published PyTorch file tensor for tensor (names, dtypes, shapes, values), whatever format it
// was converted from; only buffers (position_ids) are left out.
int test_convert_torch_names(void) {
    static const struct { const char *what, *in, *component, *config, *reference; } t[] = {
        {"makeavid unet msgpack -> PyTorch", MD "/makeavid/unet/diffusion_flax_model.msgpack", NULL, NULL,
         MD "/makeavid/unet/diffusion_pytorch_model.bin"},
        {"makeavid vae .bin -> PyTorch", MD "/makeavid/vae/diffusion_pytorch_model.bin", NULL, NULL, MD "/makeavid/vae/diffusion_pytorch_model.bin"},
        {"makeavid text_encoder .bin -> PyTorch", MD "/makeavid", "text_encoder", NULL, MD "/makeavid/text_encoder/pytorch_model.bin"},
        {"sd15 flax unet bf16 -> PyTorch", MD "/sd15-flax", "unet", NULL, MD "/sd15-flax/unet/diffusion_flax_model.msgpack"},
        {"sd15 single-file unet -> PyTorch", MD "/sd15.safetensors", "unet", MD "/sd15/unet/config.json",
         MD "/sd15/unet/diffusion_pytorch_model.fp16.safetensors"},
        {"sd15 single-file text_encoder -> PyTorch", MD "/sd15.safetensors", "text_encoder", MD "/sd15/text_encoder/config.json",
         MD "/sd15/text_encoder/model.fp16.safetensors"},
    };
    size_t i, k;
    int fails = 0;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        CliRun r;
        CkFile got, ref;
        size_t buffers = 0;
        remove(OUT);
        if (t[i].config) cli_run(&r, "convert", t[i].in, OUT, "--names", "torch", "--component", t[i].component, "--config", t[i].config, (char *)NULL);
        else if (t[i].component) cli_run(&r, "convert", t[i].in, OUT, "--names", "torch", "--component", t[i].component, (char *)NULL);
        else cli_run(&r, "convert", t[i].in, OUT, "--names", "torch", (char *)NULL);
        if (r.rc != 0) { fails += EXPECT(0, "%s: exit %d: %s", t[i].what, r.rc, r.err); continue; }
        if (ck_open(&got, OUT)) { fails += EXPECT(0, "%s: %s", t[i].what, mv_error()); continue; }
        if (ck_open(&ref, t[i].reference)) { fails += EXPECT(0, "%s: %s", t[i].what, mv_error()); ck_close(&got); continue; }
        if (ends_with(t[i].reference, ".msgpack")) { // the Flax folder: compare with its PyTorch sibling instead
            ck_close(&ref);
            if (ck_open(&ref, MD "/sd15/unet/diffusion_pytorch_model.fp16.safetensors")) { fails += EXPECT(0, "%s", mv_error()); ck_close(&got); continue; }
        }
        for (k = 0; k < ref.count; k++) {
            const CkEntry *a = &ref.entries[k], *b = ck_find(&got, a->name);
            double *x, *y;
            int d, same;
            if (ends_with(a->name, "position_ids")) { buffers++; continue; }
            same = b && b->ndim == a->ndim && b->numel == a->numel;
            for (d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
            if (!same) { fails += EXPECT(0, "%s: '%s' missing or of another shape", t[i].what, a->name); break; }
            // the bf16 Flax folder's values are not the fp16 file's: names and shapes only
            if (ends_with(t[i].reference, ".msgpack")) continue;
            fails += EXPECT(b->dtype == a->dtype, "%s: '%s' is %s, the PyTorch file's %s", t[i].what, a->name, st_dtype_name(b->dtype),
                            st_dtype_name(a->dtype));
            x = (double *)calloc(a->numel + 1, sizeof(double));
            y = (double *)calloc(a->numel + 1, sizeof(double));
            fails += EXPECT(x && y && ck_read_f64(&ref, a, x) == 0 && ck_read_f64(&got, b, y) == 0 && memcmp(x, y, a->numel * sizeof(double)) == 0,
                            "%s: '%s' differs from the PyTorch file's", t[i].what, a->name);
            free(x);
            free(y);
            if (fails) break;
        }
        fails += EXPECT(got.count + buffers == ref.count, "%s: %lu tensors, the PyTorch file has %lu (%lu buffers)", t[i].what,
                        (unsigned long)got.count, (unsigned long)ref.count, (unsigned long)buffers);
        ck_close(&ref);
        ck_close(&got);
    }
    remove(OUT);
    return fails;
}
