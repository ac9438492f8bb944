// unet.c: the UNet's forward (upstream flax_unet_pseudo3d_condition.py __call__), written as
// one list of stages that the forward walks here and the backward's tape walks again
// (ref/unet_tape.c). The configuration is read in ref/unet_config.c, the parameters declared
// in ref/unet_params.c, the blocks computed in ref/blocks.c.
//
//   temb = time_embedding(sinusoid(t))                          (B,4*c0)
//   h = conv_in(sample)                                         push h
//   down block i: h = resnet(h, temb), h = transformer(h, ctx)   push h, after each layer
//                 h = downsampler(h) (all but the last block)     push h
//   mid: h = resnet(h), h = transformer(h), h = resnet(h)
//   up block i, each of L+1 layers: h = resnet([h | pop()]), h = transformer(h)
//                 h = upsampler_conv(upsample2x(h)) (all but the last block)
//   out = conv_out(silu(GroupNorm(h)))
#include "unet_stages.h"
#include "activations.h"
#include "embeddings.h"
#include "groupnorm.h"
#include "threads.h"
#include "upsample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SKIPS 64

// ---------------------------------------------------------------------------------------
// The stage list: the network's order, written once.

static const Conv2dGeom CONV3 = {3, 3, 1, 1, 1, 1, 1}, DOWN3 = {3, 3, 2, 1, 1, 1, 1};

static Stage *stage_add(UNetTape *tp, StageKind kind, const char *fmt, int i, int j) {
    Stage *s = &tp->st[tp->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    if (fmt) snprintf(s->name, sizeof s->name, fmt, i, j);
    return s;
}

static void stage_conv(UNetTape *tp, const char *fmt, int i, const Conv2dGeom *g) { stage_add(tp, ST_CONV, fmt, i, 0)->g = g; }

static void stage_transformer(UNetTape *tp, const char *fmt, int i, int j, int heads) {
    stage_add(tp, ST_TRANSFORMER, fmt, i, j)->heads = (size_t)heads;
}

// The forward hands the hidden state after the newest stage to the tap callback as `fmt`.
static void stage_tap(UNetTape *tp, const char *fmt, int i) { snprintf(tp->st[tp->n - 1].tap, sizeof tp->st[0].tap, fmt, i); }

// The stages of configuration tp->c, in the order of upstream's __call__; each skip is pushed
// on a stack as it is made, and each up-block layer pops the newest.
int unet_stages_build(UNetTape *tp) {
    const UNetConfig *c = &tp->c;
    int nb = c->n_blocks, L = c->layers_per_block, i, j, stack[MAX_SKIPS], ns = 0;
    int cap = 8 + nb * (4 * L + 4) + nb * (3 * (L + 1) + 2);
    if (nb * (L + 1) + 1 > MAX_SKIPS) return mv_fail("too many skip connections");
    tp->st = (Stage *)mv_calloc((size_t)cap, sizeof(Stage), "UNet stages");
    if (!tp->st) return MV_ERR;
    tp->n = 0;
#define PUSH() (stack[ns++] = tp->n, stage_add(tp, ST_PUSH, NULL, 0, 0))
    stage_conv(tp, "conv_in", 0, &CONV3);
    stage_tap(tp, "tap.conv_in", 0);
    PUSH();
    for (i = 0; i < nb; i++) {
        for (j = 0; j < L; j++) {
            stage_add(tp, ST_RESNET, "down_blocks_%d.resnets_%d", i, j);
            if (c->down_cross[i]) stage_transformer(tp, "down_blocks_%d.attentions_%d", i, j, c->heads[i]);
            PUSH();
        }
        if (i < nb - 1) {
            stage_conv(tp, "down_blocks_%d.downsamplers_0.conv", i, &DOWN3);
            PUSH();
        }
        stage_tap(tp, "tap.down_blocks_%d", i);
    }
    stage_add(tp, ST_RESNET, "mid_block.resnets_0", 0, 0);
    stage_transformer(tp, "mid_block.attentions_0", 0, 0, c->heads[nb - 1]);
    stage_add(tp, ST_RESNET, "mid_block.resnets_1", 0, 0);
    stage_tap(tp, "tap.mid_block", 0);
    for (i = 0; i < nb; i++) { // each resnet takes [hidden, skip] (hidden first), skips popped last-first
        for (j = 0; j < L + 1; j++) {
            stage_add(tp, ST_CONCAT, NULL, 0, 0)->skip = stack[--ns];
            stage_add(tp, ST_RESNET, "up_blocks_%d.resnets_%d", i, j);
            if (c->up_cross[i]) stage_transformer(tp, "up_blocks_%d.attentions_%d", i, j, c->heads[nb - 1 - i]);
        }
        if (i < nb - 1) {
            stage_add(tp, ST_UPSAMPLE, NULL, 0, 0);
            stage_conv(tp, "up_blocks_%d.upsamplers_0.conv", i, &CONV3);
        }
        stage_tap(tp, "tap.up_blocks_%d", i);
    }
#undef PUSH
    stage_add(tp, ST_OUTNORM, "conv_norm_out", 0, 0);
    stage_conv(tp, "conv_out", 0, &CONV3);
    stage_tap(tp, "tap.conv_out", 0);
    return ns == 0 && tp->n <= cap ? MV_OK : mv_fail("internal: UNet stage list inconsistent");
}

// ---------------------------------------------------------------------------------------
// The parameters outside the blocks (each fetched here only).

int unet_temb_params(ParamTable *pt, size_t c0, Tensor **w) {
    static const char *nm[4] = {"time_embedding.linear_1.kernel", "time_embedding.linear_1.bias",
                                "time_embedding.linear_2.kernel", "time_embedding.linear_2.bias"};
    int i;
    for (i = 0; i < 4; i++)
        if (!(w[i] = params_get(pt, nm[i]))) return MV_ERR;
    if (tensor_expect_shape(w[0], nm[0], 2, c0, 4 * c0) || tensor_expect_shape(w[1], nm[1], 1, 4 * c0) ||
        tensor_expect_shape(w[2], nm[2], 2, 4 * c0, 4 * c0) || tensor_expect_shape(w[3], nm[3], 1, 4 * c0))
        return MV_ERR;
    return MV_OK;
}

int unet_outnorm_params(ParamTable *pt, size_t c0, const real **gs, const real **gb) {
    Tensor *ts = params_get(pt, "conv_norm_out.scale"), *tb = ts ? params_get(pt, "conv_norm_out.bias") : NULL;
    if (!ts || !tb) return MV_ERR;
    if (tensor_expect_shape(ts, "conv_norm_out.scale", 1, c0) || tensor_expect_shape(tb, "conv_norm_out.bias", 1, c0)) return MV_ERR;
    *gs = ts->data;
    *gb = tb->data;
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// One stage.

// (B,C,S) <-> (B,S,C).
void unet_transpose_bc(real *dst, const real *src, size_t B, size_t C, size_t S, int to_channels_last) {
    size_t b, c, s;
    for (b = 0; b < B; b++)
        for (c = 0; c < C; c++)
            for (s = 0; s < S; s++) {
                size_t cf = (b * C + c) * S + s, cl = (b * S + s) * C + c; // channels-first / -last index
                if (to_channels_last) dst[cl] = src[cf];
                else dst[cf] = src[cl];
            }
}

// Rows [begin, end) of a channel concatenation (blocks of rows run in parallel: copies).
typedef struct {
    real *out;           // (n,Ca+Cb)
    const real *a, *b;   // (n,Ca) (n,Cb)
    size_t Ca, Cb;
} ConcatJob;
static void concat_rows(void *ctx, size_t begin, size_t end) {
    const ConcatJob *j = (const ConcatJob *)ctx;
    size_t i;
    for (i = begin; i < end; i++) {
        memcpy(j->out + i * (j->Ca + j->Cb), j->a + i * j->Ca, j->Ca * sizeof(real));
        memcpy(j->out + i * (j->Ca + j->Cb) + j->Ca, j->b + i * j->Cb, j->Cb * sizeof(real));
    }
}

// Concatenate along channels: out[..., :Ca] = a, out[..., Ca:] = b (upstream: [hidden, skip]).
static int concat_channels(Tensor *out, const Tensor *a, const Tensor *b) {
    size_t n = a->numel / a->shape[4], Ca = a->shape[4], Cb = b->shape[4];
    ConcatJob j;
    if (b->numel / Cb != n) return mv_fail("skip connection of shape mismatching the hidden state");
    if (tensor_alloc_v(out, 5, a->shape[0], a->shape[1], a->shape[2], a->shape[3], Ca + Cb)) return MV_ERR;
    j.out = out->data; j.a = a->data; j.b = b->data; j.Ca = Ca; j.Cb = Cb;
    parallel_range(n, 16384 / (Ca + Cb + 1) + 1, concat_rows, &j);
    return MV_OK;
}

int unet_stage_forward(UNetTape *tp, const Stage *s, const Tensor *in, Tensor *out) {
    const BlockDims *d = &tp->d;
    ParamTable *pt = tp->pt;
    size_t c0 = (size_t)tp->c.block_out_channels[0];
    switch (s->kind) {
    case ST_CONV: return conv_block_forward(out, in, pt, s->name, d, s->g);
    case ST_RESNET: return resnet_forward(out, in, tp->temb.data, pt, s->name, d);
    case ST_TRANSFORMER: return transformer_forward(out, in, tp->ctx.data, pt, s->name, s->heads, d);
    case ST_UPSAMPLE:
        if (tensor_alloc_v(out, 5, d->B, d->F, 2 * in->shape[2], 2 * in->shape[3], in->shape[4])) return MV_ERR;
        upsample_nearest2x_forward(out->data, in->data, d->B * d->F, in->shape[2], in->shape[3], in->shape[4]);
        return MV_OK;
    case ST_OUTNORM: { // silu(GroupNorm(h)), statistics over all frames
        const real *gs, *gb;
        if (unet_outnorm_params(pt, c0, &gs, &gb) || tensor_alloc(out, 5, in->shape)) return MV_ERR;
        groupnorm_forward(out->data, NULL, NULL, in->data, gs, gb, d->B, d->F * in->shape[2] * in->shape[3], c0, 32, 1e-5);
        silu_forward(out->data, out->data, out->numel);
        return MV_OK;
    }
    default: return mv_fail("internal: UNet stage %s reads no input", s->name);
    }
}

// ---------------------------------------------------------------------------------------
// The walk.

// Hand a tap to the caller; in 2-D mode (F = 1, no temporal layers) as (B,H,W,C), the layout
// of the 2-D model, instead of (B,1,H,W,C).
static int emit(const UNetTape *tp, const char *name, const Tensor *t) {
    Tensor v;
    if (!tp->tap) return MV_OK;
    if (tp->c.temporal || t->ndim != 5) return tp->tap(tp->user, name, t);
    v = *t;
    v.owned = 0;
    v.ndim = 4;
    v.shape[1] = t->shape[2]; v.shape[2] = t->shape[3]; v.shape[3] = t->shape[4];
    return tp->tap(tp->user, name, &v);
}

int unet_stage_needs_input(const Stage *s) { return s->kind != ST_PUSH && s->kind != ST_CONCAT; }

// Which stage inputs the first walk keeps: none (the forward), all, or with KEEP_CHECKPOINTS
// the input of every k-th stage that reads one (k = ceil(sqrt(count)), the first stage
// included). The skips are kept either way until the CONCAT that takes them has run for the
// last time, so a segment between two checkpoints can be re-run on its own.
static void stages_plan(UNetTape *tp, StageKeep keep) {
    int i, m = 0, k = 1, count = 0;
    tp->keep = keep;
    for (i = 0; i < tp->n; i++) count += unet_stage_needs_input(&tp->st[i]);
    while (keep == KEEP_CHECKPOINTS && k * k < count) k++;
    for (i = 0; i < tp->n; i++) {
        Stage *s = &tp->st[i];
        s->ckpt = keep == KEEP_ALL;
        if (keep == KEEP_CHECKPOINTS && unet_stage_needs_input(s)) s->ckpt = m++ % k == 0;
    }
}

void unet_tape_keep(UNetTape *tp, Tensor *slot, Tensor *t) {
    *slot = *t;
    memset(t, 0, sizeof *t);
    tp->held += slot->numel * sizeof(real);
    if (tp->held > tp->peak) tp->peak = tp->held;
}

void unet_tape_drop(UNetTape *tp, Tensor *slot) {
    if (slot->data) tp->held -= slot->numel * sizeof(real);
    tensor_free(slot);
}

void unet_tape_free(UNetTape *tp) {
    int i;
    if (!tp) return;
    for (i = 0; tp->st && i < tp->n; i++) tensor_free(&tp->st[i].in);
    free(tp->st);
    tensor_free(&tp->sinus); tensor_free(&tp->temb); tensor_free(&tp->ctx);
    free(tp);
}

// ST_PUSH: skip = h. The forward hands h itself to the skip and carries on with a view of it;
// the tape stores a copy, since the next stage may keep h as its input.
static int push_skip(UNetTape *tp, Stage *s, Tensor *h) {
    Tensor copy;
    if (tp->keep == KEEP_NOTHING) {
        unet_tape_keep(tp, &s->in, h);
        *h = s->in;
        h->owned = 0;
        return MV_OK;
    }
    if (tensor_alloc(&copy, 5, h->shape)) return MV_ERR;
    memcpy(copy.data, h->data, h->numel * sizeof(real));
    unet_tape_keep(tp, &s->in, &copy);
    return MV_OK;
}

// ST_CONCAT: out = [h | skip]. The skip is released unless a re-run of this segment may still
// need it (KEEP_CHECKPOINTS: the backward releases it when it passes this CONCAT).
static int pop_skip(UNetTape *tp, Stage *s, const Tensor *h, Tensor *out, int rerun) {
    Stage *p = &tp->st[s->skip];
    if (!p->in.data) return mv_fail("internal: UNet tape: skip %d already released", s->skip);
    s->Ca = h->shape[4];
    if (concat_channels(out, h, &p->in)) return MV_ERR;
    if (rerun || tp->keep != KEEP_CHECKPOINTS) unet_tape_drop(tp, &p->in);
    return MV_OK;
}

int unet_walk(UNetTape *tp, int from, int to, Tensor *h, int rerun) {
    Tensor next;
    int k;
    memset(&next, 0, sizeof next);
    for (k = from; k < to; k++) {
        Stage *s = &tp->st[k];
        if (s->kind == ST_PUSH) {
            // a re-run finds the skip of the first walk still held, or already used up
            if (!rerun && push_skip(tp, s, h)) return MV_ERR;
        } else {
            if (s->kind == ST_CONCAT) {
                if (pop_skip(tp, s, h, &next, rerun)) return MV_ERR;
            } else {
                if (unet_stage_forward(tp, s, h, &next)) return MV_ERR;
                if (rerun || s->ckpt) unet_tape_keep(tp, &s->in, h);
            }
            tensor_free(h);
            *h = next;
            memset(&next, 0, sizeof next);
        }
        if (!rerun && s->tap[0] && emit(tp, s->tap, h)) return MV_ERR;
    }
    return MV_OK;
}

int unet_check_inputs(const Tensor *sample, const Tensor *timesteps, const Tensor *context, const UNetConfig *c) {
    size_t B, F, H, W, Cin = (size_t)c->in_channels, mult;
    if (unet_config_check(c)) return MV_ERR;
    if (sample->ndim != (c->temporal ? 5 : 4))
        return mv_fail("sample must be (B, C, %sH, W), got rank %d", c->temporal ? "F, " : "", sample->ndim);
    B = sample->shape[0];
    F = c->temporal ? sample->shape[2] : 1;
    H = sample->shape[sample->ndim - 2];
    W = sample->shape[sample->ndim - 1];
    if (sample->shape[1] != Cin) return mv_fail("sample has %lu channels, the model takes %lu", (unsigned long)sample->shape[1], (unsigned long)Cin);
    mult = (size_t)1 << (c->n_blocks - 1);
    if (B == 0 || F == 0 || H == 0 || W == 0 || H % mult || W % mult)
        return mv_fail("sample size %lux%lu must be non-empty and divisible by %lu (one halving per down block)",
                       (unsigned long)H, (unsigned long)W, (unsigned long)mult);
    if (tensor_expect_shape(timesteps, "timesteps", 1, B)) return MV_ERR;
    if (context->ndim != 3 || context->shape[0] != B || context->shape[2] != (size_t)c->cross_attention_dim)
        return mv_fail("context must be (B=%lu, T, %d)", (unsigned long)B, c->cross_attention_dim);
    return MV_OK;
}

int unet_run(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
             ParamTable *pt, const UNetConfig *c, const UNetVariant *v, StageKeep keep, UNetTapFn tap, void *user) {
    UNetTape *tp;
    Tensor h;
    Tensor *tw[4];
    size_t B, F, H, W, Cin = (size_t)c->in_channels, c0 = (size_t)c->block_out_channels[0], Co;
    int rc = MV_ERR;
    *tape = NULL;
    memset(out, 0, sizeof *out); memset(&h, 0, sizeof h);
    if (unet_check_inputs(sample, timesteps, context, c)) return MV_ERR;
    B = sample->shape[0];
    F = c->temporal ? sample->shape[2] : 1;
    H = sample->shape[sample->ndim - 2];
    W = sample->shape[sample->ndim - 1];
    if (v && v->sinusoid && tensor_expect_shape(v->sinusoid, "the given sinusoid", 2, B, c0)) return MV_ERR;
    if (unet_temb_params(pt, c0, tw)) return MV_ERR;
    if (!(tp = (UNetTape *)mv_calloc(1, sizeof *tp, "UNet tape"))) return MV_ERR;
    tp->c = *c;
    tp->pt = pt;
    tp->tap = tap; tp->user = user;
    tp->d.B = B; tp->d.F = F; tp->d.temporal = c->temporal; tp->d.Tctx = context->shape[1]; tp->d.Cctx = context->shape[2];
    tp->d.Ct = 4 * c0; tp->d.gn_eps = 1e-5; tp->d.plain_names = 0; tp->d.ff_gelu = v && v->ff_gelu_erf ? GELU_ERF : GELU_TANH;
    tp->H = H; tp->W = W;
    if (unet_stages_build(tp)) goto done;
    stages_plan(tp, keep);
    if (tensor_alloc(&tp->ctx, 3, context->shape)) goto done;
    memcpy(tp->ctx.data, context->data, context->numel * sizeof(real));
    // the time embedding: (B) -> (B,c0) sinusoid -> (B,4*c0)
    if (tensor_alloc_v(&tp->sinus, 2, B, c0) || tensor_alloc_v(&tp->temb, 2, B, 4 * c0)) goto done;
    if (v && v->sinusoid) memcpy(tp->sinus.data, v->sinusoid->data, B * c0 * sizeof(real));
    else timestep_sinusoid_forward(tp->sinus.data, timesteps->data, B, c0, c->flip_sin_to_cos, (double)c->freq_shift);
    if (timestep_embedding_forward(tp->temb.data, tp->sinus.data, tw[0]->data, tw[1]->data, tw[2]->data, tw[3]->data, B, c0, 4 * c0))
        goto done;
    if (emit(tp, "tap.time_proj", &tp->sinus) || emit(tp, "tap.time_embedding", &tp->temb)) goto done;
    // (B,C,F,H,W) -> (B,F,H,W,C), every stage, then back to (B,Cout,F,H,W)
    if (tensor_alloc_v(&h, 5, B, F, H, W, Cin)) goto done;
    unet_transpose_bc(h.data, sample->data, B, Cin, F * H * W, 1);
    if (unet_walk(tp, 0, tp->n, &h, 0)) goto done;
    Co = h.shape[4];
    if (c->temporal ? tensor_alloc_v(out, 5, B, Co, F, H, W) : tensor_alloc_v(out, 4, B, Co, H, W)) goto done;
    unet_transpose_bc(out->data, h.data, B, Co, F * H * W, 0);
    rc = MV_OK;
done:
    tensor_free(&h);
    if (rc) { unet_tape_free(tp); return MV_ERR; }
    *tape = tp;
    return MV_OK;
}

// The forward: the stage list walked keeping nothing.
int unet_forward(Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                 ParamTable *pt, const UNetConfig *c, UNetTapFn tap, void *user) {
    UNetTape *tp;
    int rc = unet_run(&tp, out, sample, timesteps, context, pt, c, NULL, KEEP_NOTHING, tap, user);
    unet_tape_free(tp);
    return rc;
}

int unet_forward_variant(Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                         ParamTable *pt, const UNetConfig *c, const UNetVariant *v, UNetTapFn tap, void *user) {
    UNetTape *tp;
    int rc = unet_run(&tp, out, sample, timesteps, context, pt, c, v, KEEP_NOTHING, tap, user);
    unet_tape_free(tp);
    return rc;
}
