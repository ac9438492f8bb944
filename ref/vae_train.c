// vae_train.c: the VAE's variational objective and its training step (see vae_train.h).
#include "vae_train.h"

#include <math.h>
#include <string.h>

int vae_loss_grad(ParamTable *gt, VaeStepStats *st, ParamTable *pt, const VAEConfig *c, const Tensor *images,
                  const Tensor *eps, double kl_weight) {
    Tensor mean, logvar, z, y, dy, dz, dmean, dlogvar;
    size_t i, nx, nz;
    double acc;
    int rc = MV_ERR;
    memset(&mean, 0, sizeof mean); memset(&logvar, 0, sizeof logvar); memset(&z, 0, sizeof z); memset(&y, 0, sizeof y);
    memset(&dy, 0, sizeof dy); memset(&dz, 0, sizeof dz); memset(&dmean, 0, sizeof dmean); memset(&dlogvar, 0, sizeof dlogvar);
    memset(st, 0, sizeof *st);
    if (vae_encode(&mean, &logvar, images, pt, c)) goto done;
    if (!tensor_same_shape(eps, &mean)) { mv_fail("eps must have the latents' shape"); goto done; }
    nz = mean.numel;
    // z = mean + exp(logvar / 2) * eps
    if (tensor_alloc(&z, mean.ndim, mean.shape)) goto done;
    for (i = 0; i < nz; i++) z.data[i] = mean.data[i] + (real)exp(0.5 * (double)logvar.data[i]) * eps->data[i];
    if (vae_decode(&y, &z, pt, c)) goto done;
    if (!tensor_same_shape(&y, images)) { mv_fail("the decoded image has another shape than the input"); goto done; }
    nx = y.numel;
    // recon = mean((y - x)^2);  dy = 2 (y - x) / nx
    if (tensor_alloc(&dy, y.ndim, y.shape)) goto done;
    for (acc = 0.0, i = 0; i < nx; i++) {
        double e = (double)y.data[i] - (double)images->data[i];
        acc += e * e;
        dy.data[i] = (real)(2.0 * e / (double)nx);
    }
    st->recon = acc / (double)nx;
    for (acc = 0.0, i = 0; i < nz; i++) {
        double m = mean.data[i], lv = logvar.data[i];
        acc += 0.5 * (m * m + exp(lv) - 1.0 - lv);
    }
    st->kl = acc / (double)nz;
    st->loss = st->recon + kl_weight * st->kl;
    memset(gt->arena, 0, gt->numel * sizeof(real));
    if (vae_decode_backward(&dz, &dy, &z, pt, gt, c)) goto done;
    // forward was: z = mean + exp(logvar/2) eps, kl = mean((mean^2 + exp(logvar) - 1 - logvar) / 2)
    if (tensor_alloc(&dmean, mean.ndim, mean.shape) || tensor_alloc(&dlogvar, mean.ndim, mean.shape)) goto done;
    for (i = 0; i < nz; i++) {
        double lv = logvar.data[i], sd = exp(0.5 * lv);
        dmean.data[i] = (real)((double)dz.data[i] + kl_weight * (double)mean.data[i] / (double)nz);
        dlogvar.data[i] = (real)((double)dz.data[i] * (double)eps->data[i] * 0.5 * sd + kl_weight * 0.5 * (exp(lv) - 1.0) / (double)nz);
    }
    if (vae_encode_backward(NULL, &dmean, &dlogvar, images, pt, gt, c)) goto done;
    rc = MV_OK;
done:
    tensor_free(&mean); tensor_free(&logvar); tensor_free(&z); tensor_free(&y);
    tensor_free(&dy); tensor_free(&dz); tensor_free(&dmean); tensor_free(&dlogvar);
    return rc ? mv_fail_prefix("VAE training step") : MV_OK;
}

int vae_train_step(ParamTable *pt, ParamTable *gt, AdamState *opt, const TrainConfig *tc, const VAEConfig *c,
                   const Tensor *images, const Tensor *eps, double kl_weight, VaeStepStats *st) {
    if (tc->only_temporal) return mv_fail("VAE training step: the VAE has no temporal layers; train all parameters");
    // moments for the trained parameters only (all of them, or those tc->only names)
    if (gt->numel != pt->numel || (!tc->only && opt->numel != pt->numel) || opt->numel > pt->numel || opt->count != pt->count)
        return mv_fail("VAE training step: gradient or optimizer state of the wrong size");
    if (vae_loss_grad(gt, st, pt, c, images, eps, kl_weight)) return MV_ERR;
    adamw_update(pt, gt, opt, tc, &st->l2_grads, NULL);
    return MV_OK;
}
