"""Training: the gradient of the whole UNet (jax.grad of tools/mavflax.py's model, memory-
efficient attention as upstream trains) and upstream's training step (flax_trainer.py: MSE
epsilon loss, optax.multi_transform of clip_by_global_norm(1.0) + adamw for the trainable
partition and set_to_zero for the frozen one; dataset.py's collate).

The parameters are procedural (gen.NAME, mavflax.proc_rule); a full gradient of the small
configuration (millions of values) would not fit the corpus, so each case stores, for every
parameter tensor i (in the order of meta 'params'):
  gnorm[i] = ||g_i||_2           gdot[i] = <g_i, u_i>,  u_i = procgen.fill(shape, DIR_SEED, name, 1.0)
(u_i uniform in [-1, 1): a fixed random direction the C runner regenerates), and the full
gradient 'g.NAME' of the tensors listed in meta 'full' (every tensor of at most FULL_MAX
values: the norm gains and biases, the small kernels). The C runner checks gnorm per tensor
relative to gnorm[i], gdot relative to gnorm[i]*||u_i|| (Cauchy-Schwarz), and g.NAME as usual.

The unet_grad cases also store, for every tensor, gmax[i] = max|g_i| and gsample[i, j] =
g_i[idx_j] for SAMPLES elements at indices the C runner regenerates (sample_indices: a
splitmix64 stream of the name, as procgen's), checked relative to gmax[i]: every tensor of
the real configuration then gets element-wise checks too (meta 'samples', 'sample_seed').

op 'unet_grad': inputs sample, timesteps, context (procedural), w (the output's shape);
  L = sum(out * w); expected: out, d_sample, gnorm, gdot, gmax, gsample, g.NAME.
op 'train_step': inputs clip (Fc,4,h,w) raw latents, noise_k (1,4,F,h,w), meta t_k, start_k
  for k = 0..STEPS-1, context (procedural); meta lr, warmup_steps, decay_steps, end_lr
  (schedule 'warmup_cosine' or 'constant'), weight_decay, only_temporal;
  expected per step k: loss (STEPS,), l2_grads (STEPS,) (the full gradient's norm, upstream's
  metric), and the parameter change after step k, delta = p_k - p_0: dnorm_k, ddot_k (as
  gnorm/gdot), and after the last step d_k.NAME for the 'full' tensors.
"""
import gc
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mavflax
import procgen
from cases_sched import make as make_sched
from cases_unet import MIXED
from vecspec import Case, normal, rng, np_dtype, proc

DIR_SEED = 777
FULL_MAX = 256
SAMPLE_SEED = 778
SAMPLES = 8
# the real configuration's gradient is taken in groups of at most this many parameters
# (0.96 GB in float64): see unet_grad_case
GROUP_MAX = 120_000_000
SMALL = mavflax.SMALL
LATENT_SCALE = 0.18215

# Gradients that are zero in exact arithmetic: a per-channel bias feeding a GroupNorm whose
# groups hold ONE channel (32 channels, 32 groups: the first level of SMALL and MIXED) cancels
# in the normalization, and so do the time_emb_proj kernel and bias and a temporal conv bias
# there. What remains is rounding noise (~1e-6 of the global norm in float32 against >= 2e-5
# for every genuine one in these cases): such tensors (norm below ZERO_REL of the global
# norm) are listed in meta 'zero_grads' and the C runner requires its own value to be below
# min(ZERO_REL, tol) times the global norm instead of comparing noise with noise.
ZERO_REL = 1e-6

# float64: 1e-8 relative (the bound for whole-model gradients). float32, measured
# mavref f32 against JAX f32: out 2.1e-6, d_sample 4.3e-6, per-tensor gradient norms 4.5e-6,
# dots 3.6e-6, full small tensors 1.3e-5 (mid-block GroupNorm bias); TOL_GRAD_F32 is ~8x that.
# Training steps: the parameter changes delta = p_k - p_0 are differences of float32
# parameters of size ~1, so each carries an absolute error of ~1 ulp(1) = 6e-8 (AdamW makes
# |delta| ~ lr = 1e-3 at most, 3e-4 in the worst tensor: 2e-4 relative, measured 2.4e-4);
# TOL_TRAIN_F32 is ~4x that. Loss and l2_grads measure 8e-7 and 2.4e-6.
TOL_GRAD_F64 = 1e-8
TOL_GRAD_F32 = 1e-4
TOL_TRAIN_F32 = 1e-3
# The real configuration at 8x8 latents, float32, measured mavref f32 against JAX f32: out
# 4.1e-6, d_sample 6.6e-6, norms 2.7e-6, dots 9.0e-7, max|g| 9.1e-6 and samples 8.3e-6 (both
# relative to the tensor's max|g|; up_blocks_{0,1} temporal conv biases); ~8x the worst.
TOL_GRAD_REAL_F32 = 7e-5


class Summary:
    """Per-tensor summaries of a gradient (or a parameter change), gathered one tensor at a
    time: the real model's float64 gradient is 8.8 GB and is never held twice. The direction
    u_i is generated when its tensor arrives, for the same reason."""

    def __init__(self, shapes, samples=False):
        self.shapes = shapes
        self.samples = samples
        self.stats = {}   # name -> [norm, dot] (+ [max, samples...])
        self.small = {}   # name -> float64 values of the tensors of at most FULL_MAX values

    def add(self, name, g):
        g64 = np.asarray(g, np.float64)
        u = procgen.fill(self.shapes[name], DIR_SEED, name, 1.0, 0.0)
        st = [np.sqrt(np.sum(g64 ** 2)), np.sum(g64 * u)]
        del u
        if self.samples:
            st += [np.max(np.abs(g64))] + list(g64.reshape(-1)[sample_indices(name, g64.size)])
        self.stats[name] = st
        if g64.size <= FULL_MAX:
            self.small[name] = np.array(g64)

    def tensors(self, prec, prefix, with_full=True):
        """(tensors, full, zero): gnorm/gdot (gmax/gsample) vectors in the order of `shapes`
        and the full small tensors, less those that are zero in exact arithmetic."""
        names = list(self.shapes)
        gnorm = np.array([self.stats[k][0] for k in names])
        gdot = np.array([self.stats[k][1] for k in names])
        total = np.sqrt(np.sum(gnorm ** 2))
        zero = [k for k, n in zip(names, gnorm) if n < ZERO_REL * total]
        full = [k for k in names if int(np.prod(self.shapes[k])) <= FULL_MAX and k not in zero]
        dt = np_dtype(prec)
        tensors = [(prefix + 'norm', gnorm.astype(dt)), (prefix + 'dot', gdot.astype(dt))]
        if self.samples:
            tensors += [(prefix + 'max', np.array([self.stats[k][2] for k in names]).astype(dt)),
                        (prefix + 'sample', np.array([self.stats[k][3:] for k in names]).astype(dt))]
        if with_full:
            tensors += [(prefix + '.' + k, self.small[k].astype(dt)) for k in full]
        return tensors, full, zero


def sample_indices(name, numel):
    """Indices of the SAMPLES checked elements of tensor `name` (numel values): with
    key = splitmix64(SAMPLE_SEED ^ fnv1a64(name)), idx_j = splitmix64(key + j) mod numel
    (tests/ops_train.c sample_index)."""
    with np.errstate(over='ignore'):
        key = procgen._splitmix64(np.array([(SAMPLE_SEED ^ procgen.fnv1a64(name)) & procgen.M64], dtype=np.uint64))[0]
        bits = procgen._splitmix64(key + np.arange(SAMPLES, dtype=np.uint64))
    return (bits % np.uint64(numel)).astype(np.int64)


def summarize(flat, shapes, prec, prefix, with_full=True):
    """gnorm/gdot vectors and the full tensors of the small parameters of a whole tree."""
    sm = Summary(shapes)
    for k in shapes:
        sm.add(k, flat[k])
    return sm.tensors(prec, prefix, with_full)


def param_groups(shapes, limit):
    """The parameter names split, in order, into groups of at most `limit` values each."""
    groups, size = [], limit + 1
    for k, s in shapes.items():
        n = int(np.prod(s))
        if size + n > limit:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += n
    return groups


def unet_grad_case(prec, name, config, seed, B, F, H, W, T, timesteps, level='quick', group_max=None,
                   tol_f32=TOL_GRAD_F32):
    """group_max: None differentiates every parameter in one jitted jax.grad. Else (the real
    configuration) the gradient is taken w.r.t. one group of parameters at a time
    (param_groups), the others passed as non-differentiated arguments (not closed over: XLA
    would embed them), and op by op, not jitted: XLA's whole-program schedule keeps a
    transposed copy of every kernel alive (temporaries of ~1.1x the parameters). JAX then holds
    the parameters once plus one group's gradient and residuals."""
    dt = np_dtype(prec)
    r = rng(seed)
    meta = {'config': config.to_json(), 'weights_seed': str(seed), 'video': '1', 'dir_seed': str(DIR_SEED),
            'samples': str(SAMPLES), 'sample_seed': str(SAMPLE_SEED)}
    sample = normal(r, (B, config.in_channels, F, H, W), prec)
    w = normal(r, (B, config.out_channels, F, H, W), prec)
    t = np.array(timesteps, dtype=dt)
    context = proc(meta, 'context', (B, T, config.cross_attention_dim), prec, seed, 1.0)
    shapes = mavflax.unet_param_shapes(config)
    meta['params'] = ','.join(shapes)
    sm = Summary(shapes, samples=True)
    tj, cj, wj, xj = jnp.asarray(t), jnp.asarray(context), jnp.asarray(w), jnp.asarray(sample)
    if group_max is None:
        params = mavflax.procedural_tree(shapes, seed, dt, meta)

        def loss(p, x):
            y, _ = mavflax.apply_unet(config, p, x, tj, cj, dt, taps=False)
            return jnp.sum(y * wj), y

        (_, y), (gp, gx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, xj)
        del params
        flat = mavflax.flatten(gp)
        del gp
        for k in shapes:
            sm.add(k, flat.pop(k))
    else:
        flatp = mavflax.flatten(mavflax.procedural_tree(shapes, seed, dt, meta))

        def loss(pd, pr, x):
            y, _ = mavflax.apply_unet(config, mavflax.unflatten({**pd, **pr}), x, tj, cj, dt, taps=False)
            return jnp.sum(y * wj), y

        grad = jax.value_and_grad(loss, argnums=(0, 2), has_aux=True)
        y = gx = None
        for group in param_groups(shapes, group_max):
            pd = {k: flatp[k] for k in group}
            pr = {k: v for k, v in flatp.items() if k not in pd}
            (_, yg), (gp, gxg) = grad(pd, pr, xj)
            del pd, pr
            if y is None:
                y, gx = yg, gxg
            else:   # every group's pass computes out and d_sample again: the same numbers
                for a, b in ((yg, y), (gxg, gx)):
                    e = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                    assert e <= (1e-12 if prec == 'f64' else 1e-5), (name, e)
            for k in group:
                sm.add(k, gp.pop(k))
            del gp, yg, gxg
            # each op-by-op pass compiles its executables anew (thousands, each with its own
            # memory mappings, ~10000 per group): drop them before vm.max_map_count is reached
            jax.clear_caches()
            gc.collect()
        del flatp
    gc.collect()
    tensors, full, zero = sm.tensors(prec, 'g')
    meta['full'] = ','.join(full)
    meta['zero_grads'] = ','.join(zero)
    tensors = [('sample', sample), ('timesteps', t), ('w', w), ('out', np.asarray(y).astype(dt)),
               ('d_sample', np.asarray(gx).astype(dt))] + tensors
    tl = TOL_GRAD_F64 if prec == 'f64' else tol_f32
    return Case(name=name, op='unet_grad', seed=seed, tol=tl, tensors=tensors, meta=meta, level=level)


# --- the training step ---------------------------------------------------------------------

def lr_schedule(lr, warmup_steps, decay_steps, end_lr, kind):
    """As flax_trainer.py L424-449 builds it (warmup_steps/decay_steps already counted)."""
    if kind == 'constant':
        return optax.constant_schedule(lr)
    return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=lr, warmup_steps=warmup_steps,
                                              decay_steps=decay_steps, end_value=end_lr)


def schedule_f64(lr, warmup_steps, decay_steps, end_lr):
    """optax.warmup_cosine_decay_schedule's formula evaluated in float64 (ref/train.c
    train_lr). optax evaluates it in float32 even under x64 (mixed with float64 when
    warmup_steps is 0): the float64 cases use this exact evaluation instead, after checking
    that it agrees with optax's to float32 rounding."""
    W, D = warmup_steps, decay_steps - warmup_steps
    alpha = end_lr / lr if lr != 0.0 else 0.0

    def f(count):
        c = jnp.asarray(count).astype(jnp.float64)
        lin = (0.0 - lr) * (1.0 - c / max(W, 1)) + lr
        cc = jnp.minimum(c - W, D)
        cos = lr * ((1.0 - alpha) * (0.5 * (1.0 + jnp.cos(math.pi * cc / D))) + alpha)
        return jnp.where(c < W, lin, cos)
    return f


def make_tx(prec, shapes, lr, warmup_steps, decay_steps, end_lr, kind, weight_decay, only_temporal, steps):
    sched = lr_schedule(lr, warmup_steps, decay_steps, end_lr, kind)
    if prec == 'f64' and kind != 'constant':
        exact = schedule_f64(lr, warmup_steps, decay_steps, end_lr)
        for k in range(steps + 2):
            a, b = float(sched(jnp.asarray(k, jnp.int32))), float(exact(k))
            assert abs(a - b) <= 1e-6 * lr, (k, a, b)
        sched = exact
    optim = optax.chain(optax.clip_by_global_norm(1.0),
                        optax.adamw(learning_rate=sched, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay))
    part = {k: ('trainable' if (not only_temporal or 'temporal' in k) else 'frozen') for k in shapes}
    return optax.multi_transform({'trainable': optim, 'frozen': optax.set_to_zero()}, mavflax.unflatten(part))


def collate(clip, start, F, noise, t, state, sched, dt):
    """dataset.py's collate for one clip: window, x 0.18215, hint = first frame repeated,
    mask zeros, [noisy, mask, hint]. clip (Fc,4,h,w) -> (1,9,F,h,w)."""
    lat = np.transpose(clip[start:start + F], (1, 0, 2, 3))[None] * dt(LATENT_SCALE)   # (1,4,F,h,w)
    lat = lat.astype(dt)
    hint = np.repeat(lat[:, :, :1], F, axis=2)
    noisy = np.asarray(sched.add_noise(state, jnp.asarray(lat), jnp.asarray(noise), jnp.asarray([t])))
    mask = np.zeros((1, 1) + lat.shape[2:], dt)
    return np.concatenate([noisy, mask, hint], axis=1).astype(dt)


def train_setup(prec, meta, config, seed, F, steps, lr, warmup, decay, total_steps, weight_decay, only_temporal):
    """What a training case needs before its steps: the schedule as flax_trainer.py L424-449
    builds it (recorded in meta), the procedural parameters, the optax transform and its state,
    the DDPM scheduler. Returns (shapes, params, p0, tx, opt, sched, sstate)."""
    dt = np_dtype(prec)
    warmup_steps = math.ceil(warmup * total_steps) if warmup > 0 else 0
    decay_steps = math.ceil(decay * total_steps) + warmup_steps if decay > 0 else warmup_steps + 1
    if warmup > 0 or decay > 0:
        kind, end_lr = 'warmup_cosine', (lr if not decay > 0 else 1e-8)
    else:
        kind, end_lr = 'constant', lr
    meta.update({'steps': str(steps), 'lr': repr(lr), 'schedule': kind, 'warmup_steps': str(warmup_steps),
                 'decay_steps': str(decay_steps), 'end_lr': repr(end_lr), 'weight_decay': repr(weight_decay),
                 'only_temporal': '1' if only_temporal else '0', 'frames': str(F)})
    shapes = mavflax.unet_param_shapes(config)
    meta['params'] = ','.join(shapes)
    params = mavflax.procedural_tree(shapes, seed, dt, meta)
    p0 = {k: np.asarray(v) for k, v in mavflax.flatten(params).items()}
    tx = make_tx(prec, shapes, lr, warmup_steps, decay_steps, end_lr, kind, weight_decay, only_temporal, steps)
    opt = tx.init(params)
    sched = make_sched('ddpm', prec)
    sstate = sched.create_state()
    return shapes, params, p0, tx, opt, sched, sstate


def train_case(prec, name, config, seed, F, H, W, T, steps, lr, warmup, decay, total_steps, weight_decay,
               only_temporal, level='quick'):
    dt = np_dtype(prec)
    r = rng(seed)
    Fc = F + 2
    meta = {'config': config.to_json(), 'weights_seed': str(seed), 'video': '1', 'dir_seed': str(DIR_SEED)}
    clip = normal(r, (Fc, 4, H, W), prec, 5.0)   # raw VAE latents (x 0.18215 in the collate)
    context = proc(meta, 'context', (1, T, config.cross_attention_dim), prec, seed, 1.0)
    # flax_trainer.py L424-426
    shapes, params, p0, tx, opt, sched, sstate = train_setup(prec, meta, config, seed, F, steps, lr, warmup, decay,
                                                             total_steps, weight_decay, only_temporal)
    ctx = jnp.asarray(context)

    def loss_fn(p, x, tt, noise):
        y, _ = mavflax.apply_unet(config, p, x, tt, ctx, dt, taps=False)
        return jnp.mean((noise - y) ** 2)

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    tensors = [('clip', clip)]
    losses, norms, full = [], [], None
    for k in range(steps):
        start = int(r.integers(0, Fc - F))
        t = int(r.integers(0, 1000))
        noise = normal(r, (1, 4, F, H, W), prec)
        meta[f'start_{k}'] = str(start)
        meta[f't_{k}'] = str(t)
        tensors.append((f'noise_{k}', noise))
        x = collate(clip, start, F, noise, t, sstate, sched, dt)
        if k == 0:
            tensors.append(('x_in_0', x))
        loss, g = grad_fn(params, jnp.asarray(x), jnp.asarray([t], dt), jnp.asarray(noise))
        l2 = jnp.sqrt(sum(jnp.vdot(v, v) for v in jax.tree_util.tree_leaves(g)))  # flax_trainer.py L511-514
        upd, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, upd)
        losses.append(float(loss))
        norms.append(float(l2))
        flat = mavflax.flatten(params)
        delta = {n: np.asarray(flat[n], np.float64) - np.asarray(p0[n], np.float64) for n in shapes}
        if only_temporal:
            for n in shapes:
                if 'temporal' not in n:
                    assert np.all(np.asarray(flat[n]) == p0[n]), n
        ts, full, zero = summarize(delta, shapes, prec, f'd{k}', with_full=k == steps - 1)
        # AdamW turns a rounding-noise gradient into an O(lr) step: the training cases use
        # configurations without exactly-zero gradients (>= 2 channels per GroupNorm group)
        assert not [z for z in zero if not only_temporal or 'temporal' in z], zero
        _, _, gz = summarize(mavflax.flatten(g), shapes, prec, 'g')
        assert not gz, gz
        tensors += ts
    meta['full'] = ','.join(full)
    meta['zero_grads'] = ''
    tensors += [('loss', np.array(losses, dt)), ('l2_grads', np.array(norms, dt))]
    tl = TOL_GRAD_F64 if prec == 'f64' else TOL_TRAIN_F32
    return Case(name=name, op='train_step', seed=seed, tol=tl, tensors=tensors, meta=meta, level=level)


# Training configurations: 64 channels at the first level (2 per GroupNorm group; see ZERO_REL).
TRAIN_SMALL = mavflax.UNetConfig(in_channels=9, out_channels=4, block_out_channels=(64, 64, 128), layers_per_block=1,
                                 attention_head_dim=4, cross_attention_dim=32,
                                 down_block_types=('CrossAttnDownBlockPseudo3D',) * 2 + ('DownBlockPseudo3D',),
                                 up_block_types=('UpBlockPseudo3D',) + ('CrossAttnUpBlockPseudo3D',) * 2)
TRAIN_MIXED = mavflax.UNetConfig(in_channels=9, out_channels=4, block_out_channels=(64, 96), layers_per_block=1,
                                 attention_head_dim=(2, 4), cross_attention_dim=48,
                                 down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
                                 up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'))


def cases(prec):
    yield unet_grad_case(prec, 'unet_grad_small_b1f2h16w8', SMALL, 5000, 1, 2, 16, 8, 7, [999.0])
    yield unet_grad_case(prec, 'unet_grad_mixed_b1f2h8w12', MIXED, 5001, 1, 2, 8, 12, 7, [250.0])
    # upstream's settings: temporal layers only, warmup then constant (decay 0); lr large
    # enough that the steps move the weights measurably
    yield train_case(prec, 'train_temporal_warmup', TRAIN_SMALL, 5002, 2, 16, 8, 7, 3, 1e-3, 0.5, 0.0, 4, 1e-2, True)
    # everything trainable, warmup + cosine decay, the model card's weight decay
    yield train_case(prec, 'train_all_cosine', TRAIN_MIXED, 5003, 2, 8, 12, 7, 3, 1e-3, 0.25, 0.5, 4, 2e-2, False)
    # constant schedule
    yield train_case(prec, 'train_temporal_constant', TRAIN_MIXED, 5004, 2, 8, 12, 7, 3, 1e-3, 0.0, 0.0, 4, 1e-2, True,
                     level='full')
    # the real makeavid configuration (930 tensors, 1.1e9 parameters) at 8x8 latents, last: it
    # runs op by op, thousands of small executables each with its own memory mappings, which
    # with the jitted programs of the other cases would approach vm.max_map_count (65530)
    jax.clear_caches()
    gc.collect()
    yield unet_grad_case(prec, 'unet_grad_real_b1f2h8w8', mavflax.MAKEAVID, 5005, 1, 2, 8, 8, 77, [500.0],
                         level='full', group_max=GROUP_MAX, tol_f32=TOL_GRAD_REAL_F32)
    jax.clear_caches()
    gc.collect()
