// test_train_batch.c: a batch is the mean of its clips. train_step on B = 4 clips gives the
// mean of the four single-clip losses and gradients (to rounding), as upstream's mean loss
// over the batch implies; the step itself is checked against optax by the corpus case
// train_batch4_all_cosine (tools/cases_train_batch.py).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/procedural.h"
#include "../ref/train.h"

#define NB 4

// x_in (B,9,F,H,W), noise (B,4,F,H,W), t (B), ctx (B,T,C) of clip b as a batch of one.
static int slice(Tensor *out, const Tensor *in, size_t b) {
    size_t shape[MV_MAXDIM], per = in->numel / in->shape[0];
    memcpy(shape, in->shape, sizeof shape);
    shape[0] = 1;
    if (tensor_alloc(out, in->ndim, shape)) return MV_ERR;
    memcpy(out->data, in->data + b * per, per * sizeof(real));
    return MV_OK;
}

// train_step with a zero learning rate and no weight decay: gt gets the gradient, pt stays.
static int grad_of(double *loss, ParamTable *gt, ParamTable *pt, const UNetConfig *c, const TrainConfig *tc,
                   const Tensor *x, const Tensor *t, const Tensor *noise, const Tensor *ctx) {
    AdamState opt;
    double l2;
    int rc;
    if (adam_init(&opt, pt, tc)) return MV_ERR;
    rc = train_step(pt, gt, &opt, tc, c, x, t, noise, ctx, loss, &l2, NULL);
    adam_free(&opt);
    return rc;
}

int test_train_batch(void) {
    UNetConfig c;
    TrainConfig tc;
    ParamTable pt, gt, gs;
    Tensor x, t, noise, ctx, xb, tb, nb, cb;
    real *sum = NULL;
    double loss, lb, lsum = 0.0, err = 0.0, gmax = 0.0;
    size_t b, i, worst = 0, F = 2, H = 4, W = 4;
    int fails = 0;
    unet_config_default(&c);
    c.in_channels = 9; c.out_channels = 4; c.n_blocks = 2;
    c.block_out_channels[0] = 32; c.block_out_channels[1] = 64; // small: the emulated cross tests run it too
    c.layers_per_block = 1; c.heads[0] = 1; c.heads[1] = 2; c.cross_attention_dim = 8;
    c.down_cross[0] = 1; c.down_cross[1] = 0; c.up_cross[0] = 0; c.up_cross[1] = 1;
    train_config_default(&tc);
    tc.only_temporal = 0;
    tc.kind = LR_CONSTANT;
    tc.lr = 0.0;
    tc.weight_decay = 0.0;
    params_init(&pt); params_init(&gt); params_init(&gs);
    memset(&x, 0, sizeof x); memset(&t, 0, sizeof t); memset(&noise, 0, sizeof noise); memset(&ctx, 0, sizeof ctx);
    memset(&xb, 0, sizeof xb); memset(&tb, 0, sizeof tb); memset(&nb, 0, sizeof nb); memset(&cb, 0, sizeof cb);
    if (unet_declare_params(&pt, &c) || params_alloc(&pt) || params_procedural(&pt, 21) || unet_grads_alloc(&gt, &pt) ||
        unet_grads_alloc(&gs, &pt) || tensor_alloc_v(&x, 5, (size_t)NB, (size_t)9, F, H, W) ||
        tensor_alloc_v(&noise, 5, (size_t)NB, (size_t)4, F, H, W) || tensor_alloc_v(&t, 1, (size_t)NB) ||
        tensor_alloc_v(&ctx, 3, (size_t)NB, (size_t)5, (size_t)8) || !(sum = (real *)calloc(pt.numel, sizeof(real)))) {
        harness_failf("train_batch", "setup: %s", mv_error());
        fails = 1;
        goto out;
    }
    proc_fill(x.data, x.numel, 1, "x", 1.0, 0.0);
    proc_fill(noise.data, noise.numel, 2, "noise", 1.0, 0.0);
    proc_fill(ctx.data, ctx.numel, 3, "ctx", 1.0, 0.0);
    for (b = 0; b < NB; b++) t.data[b] = (real)(100 + 250 * b);
    if (grad_of(&loss, &gt, &pt, &c, &tc, &x, &t, &noise, &ctx)) { harness_failf("train_batch", "batch: %s", mv_error()); fails = 1; goto out; }
    for (b = 0; b < NB; b++) {
        tensor_free(&xb); tensor_free(&tb); tensor_free(&nb); tensor_free(&cb);
        if (slice(&xb, &x, b) || slice(&tb, &t, b) || slice(&nb, &noise, b) || slice(&cb, &ctx, b) ||
            grad_of(&lb, &gs, &pt, &c, &tc, &xb, &tb, &nb, &cb)) {
            harness_failf("train_batch", "clip %lu: %s", (unsigned long)b, mv_error());
            fails = 1;
            goto out;
        }
        lsum += lb;
        for (i = 0; i < pt.numel; i++) sum[i] += gs.arena[i];
    }
    for (i = 0; i < pt.numel; i++) {
        double d = fabs((double)gt.arena[i] - (double)sum[i] / NB);
        if (fabs((double)gt.arena[i]) > gmax) gmax = fabs((double)gt.arena[i]);
        if (d > err) { err = d; worst = i; }
    }
    err /= gmax;
    printf("  train_batch: loss %.9g, mean of the 4 single-clip losses %.9g; gradient vs mean of the 4 single-clip "
           "gradients: max|diff|/max|g| = %.3e at element %lu of %lu\n", loss, lsum / NB, err, (unsigned long)worst,
           (unsigned long)pt.numel);
    // the same sums in another order: measured 3.0e-7 (float32) and 3.8e-16 (float64) of the largest
    fails += EXPECT(err <= (MAVREF_PRECISION == 64 ? 1e-13 : 2e-6), "batch gradient vs the mean of single-clip gradients: %.3e",
                    err);
    fails += EXPECT(fabs(loss - lsum / NB) <= (MAVREF_PRECISION == 64 ? 1e-13 : 1e-6) * fabs(loss), "batch loss %.9g vs mean %.9g",
                    loss, lsum / NB);
out:
    free(sum);
    tensor_free(&x); tensor_free(&t); tensor_free(&noise); tensor_free(&ctx);
    tensor_free(&xb); tensor_free(&tb); tensor_free(&nb); tensor_free(&cb);
    free_params(&gs); free_params(&gt); free_params(&pt);
    return fails;
}
