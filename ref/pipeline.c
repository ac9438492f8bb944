// pipeline.c: `mavref generate`, step by step as upstream's _generate:
//   1. tokenize prompt and negative prompt (77 ids each), encode both with CLIP
//   2. hint = x/255*2-1 with masked pixels zeroed (mask = m/255*2-1 >= 0.5), hint latent =
//      VAE posterior mean x 0.18215, repeated over frames; mask resized to the latent size
//      with jax's nearest rule, repeated over frames
//   3. latents = noise (1, 4, F, h, w) x init_noise_sigma (1 for DDIM and DPM-Solver++)
//   4. for each timestep t: inp = [latents, mask, hint] (9 channels);
//      eps_c = unet(inp, t, text), eps_u = unet(inp, t, neg)    (two passes, as upstream)
//      eps = eps_u + guidance * (eps_c - eps_u);  latents = scheduler.step(eps, t, latents)
//   5. latents / 0.18215, each frame decoded by the VAE, round((x/2+0.5)*255) clipped to bytes
#include "pipeline.h"
#include "model_dir.h"
#include "noise.h"
#include "flops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCALING_FACTOR 0.18215

// The schedule both sampling loops use (Models.sched).
static void models_sched(SchedConfig *c, const Models *m) {
    if (m->have_sched) *c = m->sched;
    else sched_config_sd(c);
}

int pipeline_encode_prompt(Tensor *emb, int64_t ids[77], const char *text, Models *m) {
    int32_t ids32[CLIP_CONTEXT];
    int k;
    if (tokenize(&m->tok, text, strlen(text), ids32) < 0) return mv_fail_prefix("prompt \"%.40s\"", text);
    for (k = 0; k < CLIP_CONTEXT; k++) ids[k] = ids32[k];
    return clip_text_forward(emb, ids, 1, CLIP_CONTEXT, &m->clip_p, &m->clip);
}

int pipeline_hint_latents(Tensor *hint_lat, Tensor *mask_lat, const Image *hint, const Image *mask,
                          size_t height, size_t width, size_t h, size_t w, Models *m) {
    Tensor x, mk, logvar;
    size_t i, c, n = height * width;
    int rc = MV_ERR;
    memset(&x, 0, sizeof x); memset(&mk, 0, sizeof mk);
    memset(hint_lat, 0, sizeof *hint_lat); memset(mask_lat, 0, sizeof *mask_lat);
    if (hint && (hint->channels != 3 || hint->height != height || hint->width != width))
        return mv_fail("hint image is %lux%lu with %lu channels, the video is %lux%lu RGB", (unsigned long)hint->width,
                       (unsigned long)hint->height, (unsigned long)hint->channels, (unsigned long)width, (unsigned long)height);
    if (mask && (mask->channels != 1 || mask->height != height || mask->width != width))
        return mv_fail("mask is %lux%lu with %lu channels, it must be a %lux%lu grayscale image", (unsigned long)mask->width,
                       (unsigned long)mask->height, (unsigned long)mask->channels, (unsigned long)width, (unsigned long)height);
    // mask: m/255*2-1, binarized at 0.5 (a pixel of 192 or more is masked)
    if (tensor_alloc_v(&mk, 3, (size_t)1, height, width)) goto done;
    for (i = 0; mask && i < n; i++) {
        real v = (real)mask->data[i] / (real)255 * (real)2 - (real)1;
        mk.data[i] = v < (real)0.5 ? (real)0 : (real)1;
    }
    if (tensor_alloc_v(mask_lat, 4, (size_t)1, (size_t)1, h, w)) goto done;
    image_resize_nearest(mask_lat->data, mk.data, 1, height, width, h, w);
    // hint: x/255*2-1, zero where masked, then the VAE posterior mean x 0.18215
    if (tensor_alloc_v(&x, 4, (size_t)1, (size_t)3, height, width)) goto done;
    for (c = 0; c < 3; c++)
        for (i = 0; i < n; i++) {
            real v = hint ? (real)hint->data[i * 3 + c] / (real)255 * (real)2 - (real)1 : (real)-1;
            x.data[c * n + i] = v * (mk.data[i] < (real)0.5 ? (real)1 : (real)0);
        }
    if (vae_encode(hint_lat, &logvar, &x, &m->vae_p, &m->vae)) goto done;
    tensor_free(&logvar);
    for (i = 0; i < hint_lat->numel; i++) hint_lat->data[i] *= (real)SCALING_FACTOR;
    rc = MV_OK;
done:
    tensor_free(&x);
    tensor_free(&mk);
    if (rc) { tensor_free(hint_lat); tensor_free(mask_lat); }
    return rc;
}

// Wall-clock seconds since `t0` (C99's time(): whole seconds, enough for runs of minutes).
static double wall_since(time_t t0) { return difftime(time(NULL), t0); }

int pipeline_work(GenWork *wk, const GenOptions *o, const Models *m) {
    size_t fac = (size_t)1 << (m->vae.n_blocks - 1), h = o->height / fac, w = o->width / fac;
    Flops f;
    memset(wk, 0, sizeof *wk);
    if (clip_flops(&f, &m->clip, 2, 77)) return MV_ERR;
    wk->clip = flops_total(&f);
    if (o->hint) {
        if (vae_flops(&f, &m->vae, 0, 1, o->height, o->width)) return MV_ERR;
        wk->hint = flops_total(&f);
    } else if (m->have_unet2d) {
        if (unet_flops(&f, &m->unet2d, 1, 1, h, w, 77)) return MV_ERR;
        wk->hint = 2.0 * (double)o->steps * flops_total(&f);
    }
    if (unet_flops(&f, &m->unet, 1, o->frames, h, w, 77)) return MV_ERR;
    wk->step = 2.0 * flops_total(&f);
    if (vae_flops(&f, &m->vae, 1, o->frames, o->height, o->width)) return MV_ERR;
    wk->decode = flops_total(&f);
    wk->total = wk->clip + wk->hint + (double)o->steps * wk->step + wk->decode;
    return MV_OK;
}

int pipeline_imagegen_hint(Tensor *hint_lat, const Tensor *text, const Tensor *neg, size_t h, size_t w,
                           const GenOptions *o, Models *m) {
    Scheduler s;
    SchedConfig scfg;
    Tensor tt, eps_c, eps_u;
    double g = o->guidance_image != 0 ? o->guidance_image : o->guidance;
    size_t i;
    int k, rc = MV_ERR;
    memset(&s, 0, sizeof s); memset(&tt, 0, sizeof tt); memset(&eps_c, 0, sizeof eps_c); memset(&eps_u, 0, sizeof eps_u);
    memset(hint_lat, 0, sizeof *hint_lat);
    if (!m->have_unet2d)
        return mv_fail("no hint image: upstream then generates the hint latent with SD 1.5's 2-D UNet; give --hint IMAGE.ppm, "
                       "or that UNet's weights (--hint-unet W or --hint-unet-seed S)");
    if (m->unet2d.temporal || m->unet2d.in_channels != 4 || m->unet2d.out_channels != 4)
        return mv_fail("the hint UNet must be a 2-D UNet with 4 input and 4 output channels");
    if (tensor_alloc_v(hint_lat, 4, (size_t)1, (size_t)4, h, w) || tensor_alloc_v(&tt, 1, (size_t)1)) goto done;
    if (o->hint_noise) {
        if (!tensor_same_shape(o->hint_noise, hint_lat)) { mv_fail("the hint noise must be (1, 4, %lu, %lu)", (unsigned long)h, (unsigned long)w); goto done; }
        memcpy(hint_lat->data, o->hint_noise->data, hint_lat->numel * sizeof(real));
    } else if (noise_normal(hint_lat->data, hint_lat->numel, o->seed, "hint")) goto done;
    models_sched(&scfg, m);
    if (sched_init(&s, o->scheduler, &scfg, o->steps, hint_lat->numel)) goto done;
    for (k = 0; k < o->steps; k++) { // upstream's image_sample_loop
        tt.data[0] = (real)s.timesteps[k];
        if (unet_forward(&eps_c, hint_lat, &tt, text, &m->unet2d_p, &m->unet2d, NULL, NULL) ||
            unet_forward(&eps_u, hint_lat, &tt, neg, &m->unet2d_p, &m->unet2d, NULL, NULL))
            goto done;
        for (i = 0; i < eps_c.numel; i++) eps_c.data[i] = eps_u.data[i] + (real)g * (eps_c.data[i] - eps_u.data[i]);
        if (sched_step(&s, hint_lat->data, eps_c.data, hint_lat->data, k)) goto done;
        tensor_free(&eps_c);
        tensor_free(&eps_u);
    }
    rc = MV_OK;
done:
    sched_free(&s);
    tensor_free(&tt); tensor_free(&eps_c); tensor_free(&eps_u);
    if (rc) { tensor_free(hint_lat); mv_fail_prefix("hint image generation"); }
    return rc;
}

// Step 5: every frame of the latents lat (1,4,F,h,w) decoded by the VAE into out (F,H,W,3)
// bytes (allocated) and, when frames_float is given, the decoder's float output (F,3,H,W).
static int decode_frames(unsigned char **out, Tensor *frames_float, const Tensor *lat, size_t F, size_t H, size_t W, Models *m) {
    size_t h = lat->shape[3], w = lat->shape[4], hw = h * w, f, c, i;
    Tensor one, img;
    int rc = MV_ERR;
    memset(&one, 0, sizeof one); memset(&img, 0, sizeof img);
    *out = (unsigned char *)mv_calloc(F * H * W * 3, 1, "frames");
    if (!*out || tensor_alloc_v(&one, 4, (size_t)1, (size_t)4, h, w)) goto done;
    if (frames_float && tensor_alloc_v(frames_float, 4, F, (size_t)3, H, W)) goto done;
    for (f = 0; f < F; f++) {
        for (c = 0; c < 4; c++)
            for (i = 0; i < hw; i++) // upstream: latents = 1 / scaling_factor * latents
                one.data[c * hw + i] = lat->data[(c * F + f) * hw + i] * (real)(1.0 / SCALING_FACTOR);
        if (vae_decode(&img, &one, &m->vae_p, &m->vae)) goto done;
        if (frames_float) memcpy(frames_float->data + f * 3 * H * W, img.data, 3 * H * W * sizeof(real));
        for (c = 0; c < 3; c++) { // (3,H,W) -> (H,W,3) bytes
            unsigned char row[1];
            for (i = 0; i < H * W; i++) {
                image_quantize(row, img.data + c * H * W + i, 1);
                (*out)[(f * H * W + i) * 3 + c] = row[0];
            }
        }
        tensor_free(&img);
    }
    rc = MV_OK;
done:
    tensor_free(&one); tensor_free(&img);
    return rc;
}

// The clip predicted at step k (GenOptions.preview): x0 from the current latents x_t (1,4,F,h,w)
// and the guided eps at timestep t, decoded.
static int preview_step(const GenOptions *o, const Tensor *lat, const Tensor *eps, const Scheduler *s, int64_t t, int k,
                        Models *m) {
    Tensor x0;
    unsigned char *px = NULL;
    int rc;
    memset(&x0, 0, sizeof x0);
    if (tensor_alloc(&x0, lat->ndim, lat->shape)) return MV_ERR;
    rc = sched_x0(x0.data, eps->data, lat->data, t, x0.numel, s) ||
         decode_frames(&px, NULL, &x0, o->frames, o->height, o->width, m);
    tensor_free(&x0);
    if (!rc && o->preview(o->preview_user, k, o->steps, px)) rc = mv_fail_prefix("the preview of step %d", k + 1);
    free(px);
    return rc;
}

int pipeline_check(const GenOptions *o, const Models *m) {
    size_t F = o->frames, H = o->height, W = o->width, fac, mult, mult2, h, w;
    if (m->vae.n_blocks < 1 || m->unet.n_blocks < 1) return mv_fail("the VAE and the UNet need at least one block");
    fac = (size_t)1 << (m->vae.n_blocks - 1);
    mult = (size_t)1 << (m->unet.n_blocks - 1);
    if (F == 0 || o->steps < 1 || H == 0 || W == 0) return mv_fail("frames, steps, width and height must be positive");
    if (H % (fac * mult) || W % (fac * mult))
        return mv_fail("width and height must be multiples of %lu pixels (%lu per latent pixel x %lu for the UNet's "
                       "%d levels); got %lux%lu", (unsigned long)(fac * mult), (unsigned long)fac, (unsigned long)mult,
                       m->unet.n_blocks, (unsigned long)W, (unsigned long)H);
    if (m->unet.in_channels != 9 || m->unet.out_channels != 4 || !m->unet.temporal)
        return mv_fail("generate needs the makeavid UNet (9 input channels, 4 output, temporal layers); this one has %d in, %d out%s",
                       m->unet.in_channels, m->unet.out_channels, m->unet.temporal ? "" : ", no temporal layers");
    if (m->vae.latent_channels != 4)
        return mv_fail("the VAE has %d latent channels; the UNet's input is 4 latent + 4 hint + 1 mask channels", m->vae.latent_channels);
    if (m->unet.cross_attention_dim != m->clip.width)
        return mv_fail("the UNet's cross_attention_dim %d differs from the text encoder's width %d",
                       m->unet.cross_attention_dim, m->clip.width);
    h = H / fac;
    w = W / fac;
    if (o->noise && (o->noise->ndim != 5 || o->noise->shape[0] != 1 || o->noise->shape[1] != 4 || o->noise->shape[2] != F ||
                     o->noise->shape[3] != h || o->noise->shape[4] != w))
        return mv_fail("the noise tensor must be (1, 4, %lu, %lu, %lu)", (unsigned long)F, (unsigned long)h, (unsigned long)w);
    if (o->hint) {
        if (o->hint->channels != 3 || o->hint->height != H || o->hint->width != W)
            return mv_fail("hint image is %lux%lu with %lu channels, the video is %lux%lu RGB", (unsigned long)o->hint->width,
                           (unsigned long)o->hint->height, (unsigned long)o->hint->channels, (unsigned long)W, (unsigned long)H);
        if (o->mask && (o->mask->channels != 1 || o->mask->height != H || o->mask->width != W))
            return mv_fail("mask is %lux%lu with %lu channels, it must be a %lux%lu grayscale image", (unsigned long)o->mask->width,
                           (unsigned long)o->mask->height, (unsigned long)o->mask->channels, (unsigned long)W, (unsigned long)H);
        return MV_OK;
    }
    // no hint image: SD 1.5's 2-D UNet makes the hint latent from the same text features
    if (!m->have_unet2d)
        return mv_fail("no hint image: upstream then generates the hint latent with SD 1.5's 2-D UNet; give --hint IMAGE.ppm, "
                       "or that UNet's weights (--hint-model, --hint-unet W or --hint-unet-seed S)");
    if (m->unet2d.temporal || m->unet2d.in_channels != 4 || m->unet2d.out_channels != 4)
        return mv_fail("the hint UNet must be a 2-D UNet with 4 input and 4 output channels");
    if (m->unet2d.cross_attention_dim != m->clip.width)
        return mv_fail("the hint UNet's cross_attention_dim %d differs from the text encoder's width %d", m->unet2d.cross_attention_dim,
                       m->clip.width);
    mult2 = m->unet2d.n_blocks < 1 ? 0 : (size_t)1 << (m->unet2d.n_blocks - 1);
    if (!mult2 || h % mult2 || w % mult2)
        return mv_fail("width and height must be multiples of %lu pixels for the hint UNet's %d levels", (unsigned long)(fac * mult2),
                       m->unet2d.n_blocks);
    if (o->hint_noise && (o->hint_noise->ndim != 4 || o->hint_noise->shape[0] != 1 || o->hint_noise->shape[1] != 4 ||
                          o->hint_noise->shape[2] != h || o->hint_noise->shape[3] != w))
        return mv_fail("the hint noise must be (1, 4, %lu, %lu)", (unsigned long)h, (unsigned long)w);
    return MV_OK;
}

int pipeline_generate(unsigned char **frames, Tensor *final_latents, Tensor *frames_float, const GenOptions *o,
                      Models *m, StepFn step_fn, void *user) {
    size_t F = o->frames, H = o->height, W = o->width, h, w, fac, hw, i, f, c;
    Tensor text, neg, hint, mask, lat, inp, tt, eps_c, eps_u;
    Scheduler s;
    SchedConfig scfg;
    int64_t ids[77];
    unsigned char *out = NULL;
    GenWork wk;
    time_t w0 = time(NULL);
    double t_text = 0, t_hint = 0, t_steps = 0, t_decode = 0, rate = 0;
    int k, rc = MV_ERR;
    memset(&text, 0, sizeof text); memset(&neg, 0, sizeof neg); memset(&hint, 0, sizeof hint);
    memset(&mask, 0, sizeof mask); memset(&lat, 0, sizeof lat); memset(&inp, 0, sizeof inp);
    memset(&tt, 0, sizeof tt); memset(&eps_c, 0, sizeof eps_c); memset(&eps_u, 0, sizeof eps_u);
    memset(&s, 0, sizeof s);
    *frames = NULL;
    if (final_latents) memset(final_latents, 0, sizeof *final_latents);
    if (frames_float) memset(frames_float, 0, sizeof *frames_float);
    // ---- sizes
    if (pipeline_check(o, m)) return MV_ERR;
    fac = (size_t)1 << (m->vae.n_blocks - 1);
    h = H / fac;
    w = W / fac;
    hw = h * w;
    if (o->progress) { // the work ahead, counted (ref/flops.h)
        if (pipeline_work(&wk, o, m)) return MV_ERR;
        fprintf(stderr, "work: text %.1f GFLOP, hint %.1f GFLOP, %d steps x %.1f GFLOP (2 UNet passes of (1,9,%lu,%lu,%lu)), "
                "decode of %lu frames %.1f GFLOP: %.2f TFLOP in all\n", wk.clip * 1e-9, wk.hint * 1e-9, o->steps,
                wk.step * 1e-9, (unsigned long)F, (unsigned long)h, (unsigned long)w, (unsigned long)F, wk.decode * 1e-9,
                wk.total * 1e-12);
    }
    // ---- 1. text
    if (pipeline_encode_prompt(&text, ids, o->prompt ? o->prompt : "", m) ||
        pipeline_encode_prompt(&neg, ids, o->neg_prompt ? o->neg_prompt : "", m))
        goto done;
    t_text = wall_since(w0);
    // ---- 2. hint and mask latents
    if (!o->hint) { // upstream's use_imagegen: the 2-D UNet makes the hint latent, the mask stays zero
        if (pipeline_imagegen_hint(&hint, &text, &neg, h, w, o, m) || tensor_alloc_v(&mask, 4, (size_t)1, (size_t)1, h, w))
            goto done;
    } else if (pipeline_hint_latents(&hint, &mask, o->hint, o->mask, H, W, h, w, m)) goto done;
    t_hint = wall_since(w0);
    // ---- 3. initial latents (init_noise_sigma = 1 for DDIM and DPM-Solver++)
    if (tensor_alloc_v(&lat, 5, (size_t)1, (size_t)4, F, h, w)) goto done;
    if (o->noise) {
        if (!tensor_same_shape(o->noise, &lat)) { mv_fail("the noise tensor must be (1, 4, %lu, %lu, %lu)", (unsigned long)F, (unsigned long)h, (unsigned long)w); goto done; }
        memcpy(lat.data, o->noise->data, lat.numel * sizeof(real));
    } else if (noise_normal(lat.data, lat.numel, o->seed, "latents")) goto done;
    // ---- 4. denoising
    models_sched(&scfg, m);
    if (sched_init(&s, o->scheduler, &scfg, o->steps, lat.numel)) goto done;
    if (tensor_alloc_v(&inp, 5, (size_t)1, (size_t)9, F, h, w) || tensor_alloc_v(&tt, 1, (size_t)1)) goto done;
    for (c = 0; c < 4; c++) // channels 4 (mask) and 5..8 (hint) are the same every step
        for (f = 0; f < F; f++) {
            memcpy(inp.data + ((5 + c) * F + f) * hw, hint.data + c * hw, hw * sizeof(real));
            if (c == 0) memcpy(inp.data + (4 * F + f) * hw, mask.data, hw * sizeof(real));
        }
    for (k = 0; k < o->steps; k++) {
        int64_t t = s.timesteps[k];
        memcpy(inp.data, lat.data, lat.numel * sizeof(real)); // channels 0..3
        tt.data[0] = (real)t;
        if (unet_forward(&eps_c, &inp, &tt, &text, &m->unet_p, &m->unet, NULL, NULL) ||
            unet_forward(&eps_u, &inp, &tt, &neg, &m->unet_p, &m->unet, NULL, NULL))
            goto done;
        for (i = 0; i < eps_c.numel; i++) // classifier-free guidance
            eps_c.data[i] = eps_u.data[i] + (real)o->guidance * (eps_c.data[i] - eps_u.data[i]);
        if (o->preview && preview_step(o, &lat, &eps_c, &s, t, k, m)) goto done;
        if (sched_step(&s, lat.data, eps_c.data, lat.data, k)) goto done;
        tensor_free(&eps_c);
        tensor_free(&eps_u);
        if (step_fn && step_fn(user, k, t, &lat)) goto done;
        if (o->progress) { // the remaining work at the rate the steps so far ran
            double el = wall_since(w0), ts = el - t_hint, left;
            rate = ts > 0 ? (double)(k + 1) * wk.step / ts : 0.0;
            left = rate > 0 ? ((double)(o->steps - k - 1) * wk.step + wk.decode) / rate : 0.0;
            if (k == 0 && rate > 0)
                fprintf(stderr, "first step: %.0f s wall (%.1f GFLOP/s): estimated total %.0f s (%.1f min)\n", ts, rate * 1e-9,
                        el + left, (el + left) / 60.0);
            else if (k == 0)
                fprintf(stderr, "first step: under 1 s wall (too short to estimate the total)\n");
            fprintf(stderr, "step %d/%d  t=%lld  elapsed %.0fs  remaining ~%.0fs (steps and decode)\n", k + 1, o->steps,
                    (long long)t, el, left);
        }
    }
    t_steps = wall_since(w0) - t_hint;
    // ---- 5. decode every frame
    if (decode_frames(&out, frames_float, &lat, F, H, W, m)) goto done;
    if (o->progress) {
        t_decode = wall_since(w0) - t_hint - t_steps;
        fprintf(stderr, "times: text %.0f s, hint %.0f s, steps %.0f s (%.1f s per step), decode %.0f s, total %.0f s wall\n",
                t_text, t_hint - t_text, t_steps, t_steps / o->steps, t_decode, wall_since(w0));
    }
    *frames = out;
    out = NULL;
    if (final_latents) { *final_latents = lat; memset(&lat, 0, sizeof lat); }
    rc = MV_OK;
done:
    free(out);
    if (rc && frames_float) tensor_free(frames_float);
    tensor_free(&text); tensor_free(&neg); tensor_free(&hint); tensor_free(&mask); tensor_free(&lat);
    tensor_free(&inp); tensor_free(&tt); tensor_free(&eps_c); tensor_free(&eps_u);
    sched_free(&s);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Replaying a recorded FLAX run.

void free_models(Models *m) {
    free_params(&m->unet2d_p);
    free_params(&m->unet_p);
    free_params(&m->vae_p);
    free_params(&m->clip_p);
    free_tokenizer(&m->tok);
}

void pipeline_replay_free(Replay *r) {
    tensor_free(&r->hint_noise);
    st_close(&r->f);
    image_free(&r->hint);
    image_free(&r->mask);
    tensor_free(&r->noise);
}

static int meta_long(const StFile *f, const char *key, long *out) {
    const char *v = st_meta(f, key);
    char *end;
    if (!v) return mv_fail("%s: metadata '%s' is missing (not a pipeline case?)", f->path, key);
    *out = strtol(v, &end, 10);
    if (end == v || *end || *out < 0) return mv_fail("%s: metadata '%s' = '%s' is not a non-negative integer", f->path, key, v);
    return MV_OK;
}

// An integer tensor of exactly n bytes' worth of 0..255 values as an image.
static int read_image(Image *img, const StFile *f, const char *name, size_t H, size_t W, size_t C) {
    int64_t *v = NULL;
    size_t n, i;
    if (st_read_i64(f, name, &v, &n)) return MV_ERR;
    if (n != H * W * C) { free(v); return mv_fail("%s: '%s' has %lu values, expected %lux%lux%lu", f->path, name, (unsigned long)n, (unsigned long)H, (unsigned long)W, (unsigned long)C); }
    img->data = (unsigned char *)mv_malloc(n, name);
    if (!img->data) { free(v); return MV_ERR; }
    for (i = 0; i < n; i++) img->data[i] = (unsigned char)(v[i] < 0 ? 0 : v[i] > 255 ? 255 : v[i]);
    img->height = H; img->width = W; img->channels = C;
    free(v);
    return MV_OK;
}

int pipeline_replay_load_dirs(Replay *r, GenOptions *o, Models *m, Tensor *expected, const char *path,
                              const char *model, const char *hint_model) {
    static const char *keys[] = {"steps", "frames", "height", "width"};
    long v[4];
    const char *sched, *g, *ig;
    char *end;
    size_t i;
    int imagegen;
    memset(r, 0, sizeof *r);
    memset(m, 0, sizeof *m);
    r->from_folders = 1;
    if (st_open(&r->f, path)) return MV_ERR;
    if (!model) model = st_meta(&r->f, "model");
    if (!hint_model) hint_model = st_meta(&r->f, "hint_model");
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (meta_long(&r->f, keys[i], &v[i])) goto fail;
    if (!(sched = st_meta(&r->f, "scheduler")) || !(g = st_meta(&r->f, "guidance")) || !st_meta(&r->f, "prompt") ||
        !st_meta(&r->f, "neg_prompt")) {
        mv_fail("%s: not a pipeline case (metadata missing)", path);
        goto fail;
    }
    imagegen = (ig = st_meta(&r->f, "imagegen")) != NULL && strcmp(ig, "1") == 0;
    memset(o, 0, sizeof *o);
    o->prompt = st_meta(&r->f, "prompt");
    o->neg_prompt = st_meta(&r->f, "neg_prompt");
    o->guidance = strtod(g, &end);
    o->steps = (int)v[0];
    o->frames = (size_t)v[1];
    o->height = (size_t)v[2];
    o->width = (size_t)v[3];
    o->scheduler = strcmp(sched, "ddim") == 0 ? SCHED_DDIM : SCHED_DPM;
    if (o->steps < 1 || o->steps > 1000 || !o->frames || !o->height || !o->width || o->height > IMAGE_MAX_DIM ||
        o->width > IMAGE_MAX_DIM || o->frames > 10000) {
        mv_fail("%s: implausible sizes in the metadata", path);
        goto fail;
    }
    if (!model) { mv_fail("%s: no model folder (metadata 'model')", path); goto fail; }
    if (imagegen && !hint_model) { mv_fail("%s: a case without a hint image needs the 2-D UNet's folder (metadata 'hint_model')", path); goto fail; }
    if (md_load_scheduler(&m->sched, model) || md_load_tokenizer(&m->tok, model) || md_load_unet(&m->unet_p, &m->unet, model, 1) ||
        md_load_vae(&m->vae_p, &m->vae, model) || md_load_clip(&m->clip_p, &m->clip, model) ||
        (imagegen && md_load_hint_unet(&m->unet2d_p, &m->unet2d, hint_model)))
        goto fail;
    m->have_unet2d = imagegen;
    m->have_sched = 1;
    if (read_image(&r->hint, &r->f, "hint", o->height, o->width, 3) || read_image(&r->mask, &r->f, "mask", o->height, o->width, 1) ||
        st_read(&r->f, "noise", &r->noise) || (imagegen && st_read(&r->f, "hint_noise", &r->hint_noise)))
        goto fail;
    o->hint = imagegen ? NULL : &r->hint;
    o->mask = imagegen ? NULL : &r->mask;
    o->noise = &r->noise;
    o->hint_noise = imagegen ? &r->hint_noise : NULL;
    if (expected && st_read(&r->f, "latents", expected)) goto fail;
    return MV_OK;
fail:
    mv_fail_prefix("replay");
    free_models(m);
    pipeline_replay_free(r);
    return MV_ERR;
}

int pipeline_replay_load(Replay *r, GenOptions *o, Models *m, Tensor *expected, const char *path) {
    static const char *keys[] = {"steps", "frames", "height", "width", "unet_seed", "vae_seed", "vae_layers_per_block",
                                 "clip_vocab", "clip_width", "clip_layers", "clip_heads", "clip_mlp", "clip_max_pos", "clip_seed"};
    long v[14];
    const char *ucfg, *vboc, *sched, *g;
    char *end;
    size_t i;
    memset(r, 0, sizeof *r);
    if (st_open(&r->f, path)) return MV_ERR;
    if (st_meta(&r->f, "model")) { // a model folder's case
        st_close(&r->f);
        return pipeline_replay_load_dirs(r, o, m, expected, path, NULL, NULL);
    }
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (meta_long(&r->f, keys[i], &v[i])) goto fail;
    if (!(ucfg = st_meta(&r->f, "unet_config")) || !(vboc = st_meta(&r->f, "vae_block_out_channels")) ||
        !(sched = st_meta(&r->f, "scheduler")) || !(g = st_meta(&r->f, "guidance")) || !st_meta(&r->f, "prompt") ||
        !st_meta(&r->f, "neg_prompt")) {
        mv_fail("%s: not a pipeline case (metadata missing)", path);
        goto fail;
    }
    memset(o, 0, sizeof *o);
    o->prompt = st_meta(&r->f, "prompt");
    o->neg_prompt = st_meta(&r->f, "neg_prompt");
    o->guidance = strtod(g, &end);
    o->steps = (int)v[0];
    o->frames = (size_t)v[1];
    o->height = (size_t)v[2];
    o->width = (size_t)v[3];
    o->scheduler = strcmp(sched, "ddim") == 0 ? SCHED_DDIM : SCHED_DPM;
    if (o->steps < 1 || o->steps > 1000 || !o->frames || !o->height || !o->width || o->height > IMAGE_MAX_DIM ||
        o->width > IMAGE_MAX_DIM || o->frames > 10000) {
        mv_fail("%s: implausible sizes in the metadata", path);
        goto fail;
    }
    unet_config_default(&m->unet);
    vae_config_default(&m->vae);
    clip_config_default(&m->clip);
    if (unet_config_parse(&m->unet, ucfg, strlen(ucfg), path)) goto fail;
    if ((m->vae.n_blocks = mv_parse_int_list(vboc, m->vae.block_out_channels, VAE_MAX_BLOCKS)) < 1) {
        mv_fail("%s: bad vae_block_out_channels '%s'", path, vboc);
        goto fail;
    }
    m->vae.layers_per_block = (int)v[6];
    m->clip.vocab = (int)v[7]; m->clip.width = (int)v[8]; m->clip.layers = (int)v[9]; m->clip.heads = (int)v[10];
    m->clip.mlp = (int)v[11]; m->clip.max_pos = (int)v[12];
    params_init(&m->unet_p); params_init(&m->vae_p); params_init(&m->clip_p);
    if (unet_declare_params(&m->unet_p, &m->unet) || params_alloc(&m->unet_p) || params_procedural(&m->unet_p, (uint64_t)v[4]) ||
        vae_declare_params(&m->vae_p, &m->vae) || params_alloc(&m->vae_p) || params_procedural(&m->vae_p, (uint64_t)v[5]) ||
        clip_declare_params(&m->clip_p, &m->clip) || params_alloc(&m->clip_p) || params_procedural(&m->clip_p, (uint64_t)v[13]))
        goto fail;
    if (read_image(&r->hint, &r->f, "hint", o->height, o->width, 3) || read_image(&r->mask, &r->f, "mask", o->height, o->width, 1) ||
        st_read(&r->f, "noise", &r->noise))
        goto fail;
    o->hint = &r->hint;
    o->mask = &r->mask;
    o->noise = &r->noise;
    if (st_meta(&r->f, "imagegen") && strcmp(st_meta(&r->f, "imagegen"), "1") == 0) { // no hint image
        const char *c2 = st_meta(&r->f, "unet2d_config");
        long s2 = 0;
        if (!c2 || meta_long(&r->f, "unet2d_seed", &s2)) { mv_fail("%s: imagegen case without unet2d_config/unet2d_seed", path); goto fail; }
        unet_config_default(&m->unet2d);
        m->unet2d.temporal = 0;
        params_init(&m->unet2d_p);
        if (unet_config_parse(&m->unet2d, c2, strlen(c2), path) || unet_declare_params(&m->unet2d_p, &m->unet2d) ||
            params_alloc(&m->unet2d_p) || params_procedural(&m->unet2d_p, (uint64_t)s2) || st_read(&r->f, "hint_noise", &r->hint_noise))
            goto fail;
        m->have_unet2d = 1;
        o->hint = NULL;
        o->mask = NULL;
        o->hint_noise = &r->hint_noise;
    }
    if (expected && st_read(&r->f, "latents_steps", expected)) goto fail;
    return MV_OK;
fail:
    mv_fail_prefix("replay");
    free_params(&m->unet_p); free_params(&m->vae_p); free_params(&m->clip_p); free_params(&m->unet2d_p);
    pipeline_replay_free(r);
    return MV_ERR;
}
