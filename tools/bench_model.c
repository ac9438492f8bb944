// bench_model.c: model-level figures for `make bench` (printed as NAME = NUMBER lines).
//
//   bench_model tokenize FILE...      tokenizer rate over the corpus strings of the given
//                                     tokenize_*.safetensors files
//   bench_model unet B F H W          wall time of one UNet forward of the real makeavid
//                                     configuration with procedural weights (threads: all)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../ref/procedural.h"
#include "../ref/safetensors.h"
#include "../ref/threads.h"
#include "../ref/tokenizer.h"
#include "../ref/unet.h"

// Wall-clock seconds: C99 has only time() (1 s) and clock() (CPU time of all threads), so the
// benchmark measures with time() over enough repetitions, and reports clock() as well.
static double wall(void) { return (double)time(NULL); }

static int bench_tokenize(int argc, char **argv) {
    Tokenizer tok;
    size_t nstr = 0, nbytes = 0, k;
    int i, rep, reps = 0;
    int32_t ids[CLIP_CONTEXT];
    clock_t c0;
    double cpu, w0;
    unsigned char **texts = NULL;
    size_t *lens = NULL, cap = 0;
    if (build_tokenizer(&tok, "vectors/clip/clip_merges.txt")) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    for (i = 0; i < argc; i++) {
        StFile f;
        int64_t *txt = NULL, *off = NULL;
        size_t nt, no;
        if (st_open(&f, argv[i]) || st_read_i64(&f, "text", &txt, &nt) || st_read_i64(&f, "text_offsets", &off, &no)) {
            fprintf(stderr, "%s\n", mv_error());
            return 1;
        }
        for (k = 0; k + 1 < no; k++) {
            size_t n = (size_t)(off[k + 1] - off[k]), j;
            if (nstr == cap) {
                cap = cap ? 2 * cap : 1024;
                texts = (unsigned char **)realloc(texts, cap * sizeof *texts);
                lens = (size_t *)realloc(lens, cap * sizeof *lens);
                if (!texts || !lens) return 1;
            }
            texts[nstr] = (unsigned char *)malloc(n + 1);
            if (!texts[nstr]) return 1;
            for (j = 0; j < n; j++) texts[nstr][j] = (unsigned char)txt[off[k] + j];
            lens[nstr++] = n;
            nbytes += n;
        }
        free(txt);
        free(off);
        st_close(&f);
    }
    c0 = clock();
    w0 = wall();
    for (rep = 0; rep < 1000 && (reps < 3 || wall() - w0 < 3.0); rep++, reps++)
        for (k = 0; k < nstr; k++) (void)tokenize(&tok, (const char *)texts[k], lens[k], ids);
    cpu = (double)(clock() - c0) / CLOCKS_PER_SEC / reps;
    printf("tokenizer: %lu strings (%lu bytes) in %.3f s per pass (CPU time, %d passes)\n", (unsigned long)nstr,
           (unsigned long)nbytes, cpu, reps);
    printf("tokenize_corpus_s = %.4f\n", cpu);
    printf("tokenize_strings_per_s = %.0f\n", (double)nstr / cpu);
    for (k = 0; k < nstr; k++) free(texts[k]);
    free(texts);
    free(lens);
    free_tokenizer(&tok);
    return 0;
}

static int bench_unet(size_t B, size_t F, size_t H, size_t W) {
    UNetConfig c;
    ParamTable pt;
    Tensor x, t, ctx, out;
    double w0, w1;
    clock_t c0;
    size_t i;
    unet_config_default(&c);
    params_init(&pt);
    if (unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 1) ||
        tensor_alloc_v(&x, 5, B, (size_t)9, F, H, W) || tensor_alloc_v(&t, 1, B) || tensor_alloc_v(&ctx, 3, B, (size_t)77, (size_t)768)) {
        fprintf(stderr, "%s\n", mv_error());
        return 1;
    }
    proc_fill(x.data, x.numel, 2, "sample", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 2, "context", 1.0, 0.0);
    for (i = 0; i < B; i++) t.data[i] = (real)(999 - 250 * i);
    c0 = clock();
    w0 = wall();
    if (unet_forward(&out, &x, &t, &ctx, &pt, &c, NULL, NULL)) { fprintf(stderr, "%s\n", mv_error()); return 1; }
    w1 = wall();
    printf("UNet forward, makeavid configuration, sample (%lu,9,%lu,%lu,%lu), %d threads: %.0f s wall, %.1f s CPU\n",
           (unsigned long)B, (unsigned long)F, (unsigned long)H, (unsigned long)W, threads_count(), w1 - w0,
           (double)(clock() - c0) / CLOCKS_PER_SEC);
    printf("unet_forward_s = %.0f\n", w1 - w0);
    tensor_free(&out); tensor_free(&x); tensor_free(&t); tensor_free(&ctx);
    free_params(&pt);
    return 0;
}

// Bytes of the weights `mavref generate` holds: UNet, VAE and CLIP text encoder (defaults).
#include "../ref/clip.h"
#include "../ref/vae.h"
static int bench_weights(void) {
    UNetConfig u;
    VAEConfig v;
    ClipConfig c;
    ParamTable a, b, d;
    unet_config_default(&u); vae_config_default(&v); clip_config_default(&c);
    params_init(&a); params_init(&b); params_init(&d);
    if (unet_declare_params(&a, &u) || vae_declare_params(&b, &v) || clip_declare_params(&d, &c)) return 1;
    printf("weights: UNet %lu, VAE %lu, CLIP %lu parameters\n", (unsigned long)a.numel, (unsigned long)b.numel, (unsigned long)d.numel);
    printf("generate_weights_bytes = %.0f\n", (double)(a.numel + b.numel + d.numel) * sizeof(real));
    free_params(&a); free_params(&b); free_params(&d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "weights")) return bench_weights();
    if (argc >= 3 && !strcmp(argv[1], "tokenize")) return bench_tokenize(argc - 2, argv + 2);
    if (argc == 6 && !strcmp(argv[1], "unet"))
        return bench_unet((size_t)atol(argv[2]), (size_t)atol(argv[3]), (size_t)atol(argv[4]), (size_t)atol(argv[5]));
    fprintf(stderr, "usage: bench_model tokenize FILE... | bench_model unet B F H W\n");
    return 2;
}
