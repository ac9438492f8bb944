// unet_tape.c: the UNet's backward (SPEC.md section 5.5). The forward's stage list
// (ref/unet.c) is walked once keeping each stage's input (the activations at block
// granularity, the skips included); the backward walks the list in reverse, each block
// recomputing its internals from its stored input (ref/blocks.c). With recomputation only
// checkpoints are kept, and each segment is re-run from its checkpoint before it is walked back.
#include "unet_stages.h"
#include "activations.h"
#include "embeddings.h"
#include "groupnorm.h"
#include "upsample.h"

#include <stdlib.h>
#include <string.h>

int unet_grads_alloc(ParamTable *g, const ParamTable *p) {
    size_t i;
    params_init(g);
    for (i = 0; i < p->count; i++)
        if (params_add(g, p->p[i].t.ndim, p->p[i].t.shape, "%s", p->p[i].name)) { free_params(g); return MV_ERR; }
    if (params_alloc(g)) { free_params(g); return MV_ERR; }
    return MV_OK;
}

// The gradient slot of parameter data `w` in gt; NULL without gt or a slot for it.
static real *gslot_unet(const ParamTable *pt, ParamTable *gt, const real *w) { return params_grad_slot(pt, gt, w); }

// A subset gradient table that lends buffers (gt->sq): give each parameter of block `prefix`
// (names "prefix.*") that has no gradient slot a zeroed buffer for the block's backward
// (lend = 1), or take their squared norms and free the buffers (lend = 0). The sums run in
// the order adamw_update's do, so the full gradient's norm is the one a full table gives.
static int lend_block(const ParamTable *pt, ParamTable *gt, const char *prefix, int lend) {
    size_t k, i, n = strlen(prefix);
    if (!gt || !gt->sq || n == 0) return MV_OK;
    for (k = 0; k < pt->count; k++) {
        const Param *p = &pt->p[k];
        if (strncmp(p->name, prefix, n) != 0 || p->name[n] != '.') continue;
        if (lend) {
            if (gt->slot[k]) continue; // kept
            if (!(gt->slot[k] = (real *)mv_calloc(p->t.numel, sizeof(real), "lent gradient"))) return MV_ERR;
            gt->sq[k] = -1.0; // marks a lent slot
        } else if (gt->sq[k] < 0.0) {
            double s = 0.0;
            for (i = 0; i < p->t.numel; i++) s += (double)gt->slot[k][i] * (double)gt->slot[k][i];
            gt->sq[k] = s;
            free(gt->slot[k]);
            gt->slot[k] = NULL;
        }
    }
    return MV_OK;
}

size_t unet_tape_peak_bytes(const UNetTape *tp) { return tp->peak; }

int unet_tape_forward(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps, const Tensor *context,
                      ParamTable *pt, const UNetConfig *c) {
    return unet_tape_forward_mode(tape, out, sample, timesteps, context, pt, c, 0);
}

int unet_tape_forward_mode(UNetTape **tape, Tensor *out, const Tensor *sample, const Tensor *timesteps,
                           const Tensor *context, ParamTable *pt, const UNetConfig *c, int recompute) {
    return unet_run(tape, out, sample, timesteps, context, pt, c, NULL, recompute ? KEEP_CHECKPOINTS : KEEP_ALL, NULL, NULL);
}

// Recompute mode: give stage k (which reads its input) its input again by re-running the
// forward from the nearest checkpoint before it; every input on the way is kept, so the
// backward walks the segment down to the checkpoint without another re-run.
static int tape_rerun(UNetTape *tp, int k) {
    Tensor h;
    int c = k - 1;
    while (c >= 0 && !(unet_stage_needs_input(&tp->st[c]) && tp->st[c].in.data)) c--;
    if (c < 0) return mv_fail("internal: UNet tape: no checkpoint before stage %d", k);
    memset(&h, 0, sizeof h);
    if (unet_stage_forward(tp, &tp->st[c], &tp->st[c].in, &h) || unet_walk(tp, c + 1, k, &h, 1)) {
        tensor_free(&h);
        return mv_fail_prefix("recomputing %s", tp->st[c].name);
    }
    unet_tape_keep(tp, &tp->st[k].in, &h);
    return MV_OK;
}

// ST_OUTNORM backward. forward was: y = silu(a), a = GN(h)   (statistics over all frames)
static int outnorm_backward(UNetTape *tp, ParamTable *gt, real *dprev, const real *dh, const Tensor *in) {
    const BlockDims *d = &tp->d;
    size_t B = d->B, c0 = (size_t)tp->c.block_out_channels[0], Sx = d->F * in->shape[2] * in->shape[3];
    const real *gs, *gb;
    real *stat;
    Tensor a, da;
    if (unet_outnorm_params(tp->pt, c0, &gs, &gb)) return MV_ERR;
    if (!(stat = (real *)mv_calloc(2 * B * 32, sizeof(real), "norm statistics"))) return MV_ERR; // mean (B,32), rstd (B,32)
    if (tensor_alloc(&a, 5, in->shape)) { free(stat); return MV_ERR; }
    if (tensor_alloc(&da, 5, in->shape)) { free(stat); tensor_free(&a); return MV_ERR; }
    groupnorm_forward(a.data, stat, stat + B * 32, in->data, gs, gb, B, Sx, c0, 32, 1e-5);
    silu_backward(da.data, dh, a.data, a.numel);
    groupnorm_backward(dprev, gslot_unet(tp->pt, gt, gs), gslot_unet(tp->pt, gt, gb), da.data, in->data, gs, stat,
                       stat + B * 32, B, Sx, c0, 32);
    free(stat); tensor_free(&a); tensor_free(&da);
    return MV_OK;
}

// dprev (the shape of s->in) += the gradient of stage s's input given dh, its output's; the
// resnets' time-embedding gradients accumulate into dtemb (B,4c0).
static int stage_backward(UNetTape *tp, ParamTable *gt, const Stage *s, real *dprev, real *dtemb, const real *dh) {
    const BlockDims *d = &tp->d;
    ParamTable *pt = tp->pt;
    switch (s->kind) {
    case ST_CONV: return conv_block_backward(dprev, dh, &s->in, pt, gt, s->name, d, s->g);
    case ST_RESNET: return resnet_backward(dprev, dtemb, dh, &s->in, tp->temb.data, pt, gt, s->name, d);
    case ST_TRANSFORMER: return transformer_backward(dprev, NULL, dh, &s->in, tp->ctx.data, pt, gt, s->name, s->heads, d);
    case ST_UPSAMPLE:
        upsample_nearest2x_backward(dprev, dh, d->B * d->F, s->in.shape[2], s->in.shape[3], s->in.shape[4]);
        return MV_OK;
    case ST_OUTNORM: return outnorm_backward(tp, gt, dprev, dh, &s->in);
    default: return mv_fail("internal: UNet stage %s reads no input", s->name);
    }
}

// ST_CONCAT backward. forward was: h = [h | skip] along channels: dprev gets the first Ca
// channels of dh, dskip (allocated here) the rest.
static int concat_backward(Tensor *dprev, Tensor *dskip, const Tensor *dh, size_t Ca) {
    size_t Cab = dh->shape[4], Cb = Cab - Ca, n = dh->numel / Cab, i;
    if (tensor_alloc_v(dprev, 5, dh->shape[0], dh->shape[1], dh->shape[2], dh->shape[3], Ca) ||
        tensor_alloc_v(dskip, 5, dh->shape[0], dh->shape[1], dh->shape[2], dh->shape[3], Cb))
        return MV_ERR;
    for (i = 0; i < n; i++) {
        memcpy(dprev->data + i * Ca, dh->data + i * Cab, Ca * sizeof(real));
        memcpy(dskip->data + i * Cb, dh->data + i * Cab + Ca, Cb * sizeof(real));
    }
    return MV_OK;
}

int unet_tape_backward(UNetTape *tp, ParamTable *gt, Tensor *d_sample, const Tensor *dout) {
    const UNetConfig *c = &tp->c;
    ParamTable *pt = tp->pt;
    Tensor dh, dprev, dtemb, *dskip = NULL; // dskip[k]: the gradient of the skip pushed by stage k
    Tensor *tw[4];
    size_t B = tp->d.B, F = tp->d.F, c0 = (size_t)c->block_out_channels[0], Co = (size_t)c->out_channels, S, i;
    int k, rc = MV_ERR;
    memset(&dh, 0, sizeof dh); memset(&dprev, 0, sizeof dprev); memset(&dtemb, 0, sizeof dtemb);
    if (d_sample) memset(d_sample, 0, sizeof *d_sample);
    if (gt && !gt->slot && gt->numel != pt->numel) return mv_fail("gradient table of %lu values for %lu parameters", (unsigned long)gt->numel, (unsigned long)pt->numel);
    S = tp->H * tp->W;
    if (dout->numel != B * Co * F * S || dout->ndim != (c->temporal ? 5 : 4))
        return mv_fail("dout must have the output's shape (B, %lu, %sH, W)", (unsigned long)Co, c->temporal ? "F, " : "");
    if (tensor_alloc_v(&dh, 5, B, F, tp->H, tp->W, Co)) return MV_ERR;
    unet_transpose_bc(dh.data, dout->data, B, Co, F * S, 1);
    if (unet_temb_params(pt, c0, tw) || tensor_alloc_v(&dtemb, 2, B, 4 * c0)) goto done;
    if (!(dskip = (Tensor *)mv_calloc((size_t)tp->n, sizeof(Tensor), "skip gradients"))) goto done;
    for (k = tp->n - 1; k >= 0; k--) {
        Stage *s = &tp->st[k];
        if (unet_stage_needs_input(s) && !s->in.data && tape_rerun(tp, k)) goto done; // recompute mode
        if (s->kind == ST_PUSH) { // forward was: skip = h (h also flows on)
            if (dskip[k].data)
                for (i = 0; i < dh.numel; i++) dh.data[i] += dskip[k].data[i];
            tensor_free(&dskip[k]);
            continue;
        }
        if (s->kind == ST_CONCAT) {
            if (concat_backward(&dprev, &dskip[s->skip], &dh, s->Ca)) goto done;
            unet_tape_drop(tp, &tp->st[s->skip].in); // recompute mode: no re-run reaches this CONCAT any more
        } else if (tensor_alloc(&dprev, 5, s->in.shape) || lend_block(pt, gt, s->name, 1) ||
                   stage_backward(tp, gt, s, dprev.data, dtemb.data, dh.data) || lend_block(pt, gt, s->name, 0)) {
            goto done;
        }
        unet_tape_drop(tp, &s->in);
        tensor_free(&dh);
        dh = dprev;
        memset(&dprev, 0, sizeof dprev);
    }
    // the time embedding MLP (the sinusoid of the integer timestep ends the chain)
    if (gt && lend_block(pt, gt, "time_embedding", 1)) goto done;
    if (gt && timestep_embedding_backward(NULL, gslot_unet(pt, gt, tw[0]->data), gslot_unet(pt, gt, tw[1]->data),
                                          gslot_unet(pt, gt, tw[2]->data), gslot_unet(pt, gt, tw[3]->data), dtemb.data,
                                          tp->sinus.data, tw[0]->data, tw[1]->data, tw[2]->data, B, c0, 4 * c0))
        goto done;
    if (gt && lend_block(pt, gt, "time_embedding", 0)) goto done;
    if (d_sample) { // dh is the gradient of the channels-last input (B,F,H,W,Cin)
        size_t Cin = dh.shape[4], H = dh.shape[2], W = dh.shape[3];
        int r = c->temporal ? tensor_alloc_v(d_sample, 5, B, Cin, F, H, W) : tensor_alloc_v(d_sample, 4, B, Cin, H, W);
        if (r) goto done;
        unet_transpose_bc(d_sample->data, dh.data, B, Cin, F * H * W, 0);
    }
    rc = MV_OK;
done:
    for (i = 0; rc && gt && gt->sq && i < pt->count; i++) // an error inside a block: take back its lent buffers
        if (gt->sq[i] < 0.0) { free(gt->slot[i]); gt->slot[i] = NULL; gt->sq[i] = 0.0; }
    for (k = 0; dskip && k < tp->n; k++) tensor_free(&dskip[k]);
    free(dskip);
    tensor_free(&dh); tensor_free(&dprev); tensor_free(&dtemb);
    return rc;
}

int unet_backward(ParamTable *gt, Tensor *d_sample, Tensor *out, const Tensor *dout, const Tensor *sample,
                  const Tensor *timesteps, const Tensor *context, ParamTable *pt, const UNetConfig *c) {
    UNetTape *tp;
    Tensor y;
    int rc;
    if (unet_tape_forward(&tp, &y, sample, timesteps, context, pt, c)) return MV_ERR;
    rc = unet_tape_backward(tp, gt, d_sample, dout);
    unet_tape_free(tp);
    if (out && rc == MV_OK) *out = y;
    else tensor_free(&y);
    return rc;
}
