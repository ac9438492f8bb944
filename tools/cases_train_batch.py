"""Training with a batch of clips (upstream's effective batch is 4): the training step of
tools/cases_train.py on B clips at once, as dataset.py's collate stacks them (each clip with
its own window, timestep and noise) and flax_trainer.py takes the mean loss over the batch.

op 'train_step' with meta 'batch' = B > 1: inputs clip_b (Fc,4,h,w) for b < B, context
(B,T,C), noise_k (B,4,F,h,w), meta start_k_b and t_k_b; expected as the batch-1 cases
(loss, l2_grads, the parameter change after every step, x_in_0 (B,9,F,h,w))."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mavflax
from cases_train import (DIR_SEED, TOL_GRAD_F64, TOL_TRAIN_F32, TRAIN_MIXED, collate, summarize, train_setup)
from vecspec import Case, normal, rng, np_dtype, proc


def train_batch_case(prec, name, config, seed, B, F, H, W, T, steps, lr, warmup, decay, total_steps, weight_decay,
                     only_temporal, level='quick'):
    dt = np_dtype(prec)
    r = rng(seed)
    Fc = F + 2
    meta = {'config': config.to_json(), 'weights_seed': str(seed), 'video': '1', 'dir_seed': str(DIR_SEED),
            'batch': str(B)}
    clips = [normal(r, (Fc, 4, H, W), prec, 5.0) for _ in range(B)]   # raw VAE latents
    context = proc(meta, 'context', (B, T, config.cross_attention_dim), prec, seed, 1.0)
    shapes, params, p0, tx, opt, sched, sstate = train_setup(prec, meta, config, seed, F, steps, lr, warmup, decay,
                                                             total_steps, weight_decay, only_temporal)
    ctx = jnp.asarray(context)

    def loss_fn(p, x, tt, noise):   # flax_trainer.py: the mean over the whole batch
        y, _ = mavflax.apply_unet(config, p, x, tt, ctx, dt, taps=False)
        return jnp.mean((noise - y) ** 2)

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    tensors = [(f'clip_{b}', clips[b]) for b in range(B)]
    losses, norms, full = [], [], None
    for k in range(steps):
        xs, ts = [], []
        noise = normal(r, (B, 4, F, H, W), prec)
        for b in range(B):
            start = int(r.integers(0, Fc - F))
            t = int(r.integers(0, 1000))
            meta[f'start_{k}_{b}'] = str(start)
            meta[f't_{k}_{b}'] = str(t)
            xs.append(collate(clips[b], start, F, noise[b:b + 1], t, sstate, sched, dt))
            ts.append(t)
        x = np.concatenate(xs, axis=0)
        tensors.append((f'noise_{k}', noise))
        if k == 0:
            tensors.append(('x_in_0', x))
        loss, g = grad_fn(params, jnp.asarray(x), jnp.asarray(ts, dt), jnp.asarray(noise))
        l2 = jnp.sqrt(sum(jnp.vdot(v, v) for v in jax.tree_util.tree_leaves(g)))
        upd, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, upd)
        losses.append(float(loss))
        norms.append(float(l2))
        flat = mavflax.flatten(params)
        delta = {n: np.asarray(flat[n], np.float64) - np.asarray(p0[n], np.float64) for n in shapes}
        ts_, full, zero = summarize(delta, shapes, prec, f'd{k}', with_full=k == steps - 1)
        assert not [z for z in zero if not only_temporal or 'temporal' in z], zero
        tensors += ts_
    meta['full'] = ','.join(full)
    meta['zero_grads'] = ''
    tensors += [('loss', np.array(losses, dt)), ('l2_grads', np.array(norms, dt))]
    tl = TOL_GRAD_F64 if prec == 'f64' else TOL_TRAIN_F32
    return Case(name=name, op='train_step', seed=seed, tol=tl, tensors=tensors, meta=meta, level=level)


def cases(prec):
    # batch 4 (upstream's effective batch), everything trainable, warmup + cosine
    yield train_batch_case(prec, 'train_batch4_all_cosine', TRAIN_MIXED, 5010, 4, 2, 8, 8, 7, 2, 1e-3, 0.25, 0.5, 4,
                           2e-2, False, level='full')
