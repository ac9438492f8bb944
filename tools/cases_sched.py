"""Schedulers (diffusers 0.35.2 Flax DDIM / DPM-Solver++ / DDPM add_noise with SD's config),
mavref's noise generator (against tools/noisegen.py), the pixel quantization and the
'nearest' mask resize of the pipeline (jax)."""
import jax
import jax.numpy as jnp
import numpy as np
from diffusers import FlaxDDIMScheduler, FlaxDDPMScheduler, FlaxDPMSolverMultistepScheduler

import noisegen
from vecspec import Case, normal, np_dtype, proc, rng, tol

# SD 1.x scheduler_config.json. clip_sample False: diffusers' Flax DDIM of 2023 (v0.16.1,
# what upstream ran) had no clipping, and SD's config disables it anyway.
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear')
# The toy model's schedule (vectors/toy/makeavid/scheduler, SPEC.md section 10.5): the model
# predicts v, and beta_end 0.02 leaves the last timesteps (almost) no signal.
TOY = dict(SD, beta_end=0.02, prediction_type='v_prediction')
STEPS = [1, 2, 3, 5, 10, 14, 15, 20, 25, 50, 1000]
SHAPE = (1, 4, 2, 4, 4)   # (B, C, F, h, w) latent, small so that 1000 steps stay small
STRIDE_1000 = 50          # 1000-step cases keep the latents after every 50th step

# f32 tolerances (relative to the largest expected value).
# - schedule arrays: computed with XLA's exact operation order (fma, blocked cumprod), so
#   bit-identical: the tolerance is below one float32 ulp of the smallest entry.
TOL_SCHEDULE = 1e-10
# - lambda_t = log(alpha) - log(sigma): XLA's float32 log is not correctly rounded (164 of
#   1000 entries differ by 1 ulp from log rounded once); |lambda| <= 10, an ulp is ~5e-7.
TOL_LAMBDA = 2e-7
# - DDIM steps: mavref uses fma() exactly where XLA's CPU code fuses (x - sqrt(1-abar) eps,
#   and the final sum), so every step is bit-identical (measured rel 0 up to 1000 steps);
#   the tolerance stays below one float32 ulp of the largest value.
TOL_DDIM = 1e-7
# - DPM-Solver++: exact for 1-3 steps; beyond, XLA's float32 exp and log (lambda_t) differ
#   from the correctly rounded values by an ulp now and then, and the differences accumulate
#   through the multistep history: measured <= 7.3e-7 up to 50 steps, 4.1e-6 at 1000 steps.
TOL_DPM = 2e-6
TOL_DPM_1000 = 1e-5
TOL_ADD_NOISE = 3e-7


def make(kind, prec, cfg=None):
    """cfg: the schedule's keys (num_train_timesteps, beta_start, beta_end, beta_schedule, and
    optionally prediction_type); default SD's. The toy model has its own (SPEC.md section 10.5)."""
    dt = jnp.float64 if prec == 'f64' else jnp.float32
    sd = dict(cfg or SD)
    pred = sd.pop('prediction_type', 'epsilon')
    if kind == 'ddim':
        return FlaxDDIMScheduler(**sd, set_alpha_to_one=False, steps_offset=1, clip_sample=False,
                                 prediction_type=pred, dtype=dt)
    if kind == 'dpm':
        return FlaxDPMSolverMultistepScheduler(**sd, solver_order=2, prediction_type=pred,
                                               algorithm_type='dpmsolver++', solver_type='midpoint',
                                               lower_order_final=True, dtype=dt)
    return FlaxDDPMScheduler(**sd, clip_sample=False, prediction_type=pred, dtype=dt)


def timesteps_f32(kind, n, cfg=None):
    """The timesteps as the upstream pipeline computes them (float32, x64 off)."""
    with jax.enable_x64(False):
        s = make(kind, 'f32', cfg)
        st = s.set_timesteps(s.create_state(), n, SHAPE)
        return np.asarray(st.timesteps).astype(np.int64)


def trajectory(sched, state, x, eps):
    """The sampling loop as upstream runs it (jitted loop over scheduler.step)."""
    def body(carry, i):
        x, st = carry
        t = st.timesteps[i]
        x, st = sched.step(st, eps[i], t, x, return_dict=False)
        return (x, st), x
    (_, _), xs = jax.lax.scan(body, (x, state), jnp.arange(eps.shape[0]))
    return xs


def sched_meta(cfg):
    """A case's schedule, where it is not SD's (tests/ops_sched.c case_sched_config)."""
    if cfg is None:
        return {}
    return {'beta_start': repr(cfg['beta_start']), 'beta_end': repr(cfg['beta_end']),
            'prediction_type': cfg.get('prediction_type', 'epsilon')}


def step_cases(prec, cfg=None, steps=STEPS, suffix=''):
    for kind in ('ddim', 'dpm'):
        sched = make(kind, prec, cfg)
        for n in steps:
            seed = (3000 if kind == 'ddim' else 3100) + n + (500 if cfg else 0)
            meta = {'kind': kind, 'steps': str(n), **sched_meta(cfg)}
            x = proc(meta, 'x', SHAPE, prec, seed, 1.7)
            eps = proc(meta, 'eps', (n,) + SHAPE, prec, seed + 1, 1.7)
            state = sched.set_timesteps(sched.create_state(), n, SHAPE)
            ts = timesteps_f32(kind, n, cfg)
            native = np.asarray(state.timesteps).astype(np.int64)
            if prec == 'f64' and not np.array_equal(native, ts):
                # x64's float64 linspace rounds differently for some n (14 among ours):
                # mavref, like the upstream pipeline, always uses the float32 timesteps.
                meta['x64_timesteps_differ'] = '1'
            # int64 under x64: the Flax DPM step's lax.select(.., 0, timesteps[..]) needs the
            # default integer type there
            state = state.replace(timesteps=jnp.asarray(ts, dtype=jnp.int64 if prec == 'f64' else jnp.int32))
            if kind == 'dpm' and prec == 'f64':  # the step returns an int64 prev_timestep under x64
                state = state.replace(prev_timestep=jnp.int64(-1))
            xs = jax.jit(lambda st, x, e: trajectory(sched, st, x, e))(state, jnp.asarray(x), jnp.asarray(eps))
            xs = np.asarray(xs).astype(np_dtype(prec))
            stride = STRIDE_1000 if n == 1000 else 1
            xs = xs[stride - 1::stride]
            meta['stride'] = str(stride)
            yield Case(
                name=f'sched_{kind}_n{n}{suffix}', op='sched_step', seed=seed,
                tol=tol(prec, TOL_DDIM if kind == 'ddim' else TOL_DPM_1000 if n == 1000 else TOL_DPM),
                tensors=[('timesteps', ts), ('latents', xs)], meta=meta,
                level='quick' if n in (10, 20) else 'full')


def schedule_cases(prec, cfg=None, suffix=''):
    dpm = make('dpm', prec, cfg)
    st = dpm.create_state()
    c = st.common
    f = np_dtype(prec)
    yield Case(name='sched_schedule' + suffix, op='sched_schedule', seed=0, tol=tol(prec, TOL_SCHEDULE), meta=sched_meta(cfg),
               tensors=[('betas', np.asarray(c.betas).astype(f)),
                        ('alphas_cumprod', np.asarray(c.alphas_cumprod).astype(f)),
                        ('alpha_t', np.asarray(st.alpha_t).astype(f)),
                        ('sigma_t', np.asarray(st.sigma_t).astype(f))],
               level='quick')
    yield Case(name='sched_lambda' + suffix, op='sched_schedule', seed=0, tol=tol(prec, TOL_LAMBDA), meta=sched_meta(cfg),
               tensors=[('lambda_t', np.asarray(st.lambda_t).astype(f))])


def add_noise_cases(prec, cfg=None, suffix=''):
    ddpm = make('ddpm', prec, cfg)
    state = ddpm.create_state()
    tsets = [[0, 1, 500, 999], [999, 998, 37, 250], [123, 456, 789, 321]]
    for i, ts in enumerate(tsets):
        if cfg and i:
            continue
        seed = 3300 + i + (500 if cfg else 0)
        r = rng(seed)
        B = len(ts)
        x0 = normal(r, (B,) + SHAPE[1:], prec)
        noise = normal(r, (B,) + SHAPE[1:], prec)
        t = np.asarray(ts, dtype=np.int64)
        # eager, as the training collate calls it (outside any jit)
        y = ddpm.add_noise(state, jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t))
        extra = []
        if cfg and cfg.get('prediction_type') == 'v_prediction':  # the training target (eager, as add_noise)
            v = ddpm.get_velocity(state, jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t))
            extra = [('velocity', np.asarray(v).astype(np_dtype(prec)))]
        yield Case(name=f'sched_add_noise_{i}{suffix}', op='sched_add_noise', seed=seed, tol=tol(prec, TOL_ADD_NOISE),
                   meta=sched_meta(cfg),
                   tensors=[('x0', x0), ('noise', noise), ('t', t), ('noisy', np.asarray(y).astype(np_dtype(prec)))] + extra,
                   level='quick' if i == 0 else 'full')


def noise_cases(prec):
    # (seed, stream, n): odd and even counts, a zero seed, a long stream name
    specs = [(0, 'latents', 4096), (1234567, 'latents', 777), (2**64 - 1, 'hint-image noise', 3),
             (42, 'x', 1)]
    for i, (seed, stream, n) in enumerate(specs):
        z = noisegen.normal(n, seed, stream)
        yield Case(name=f'noise_normal_{i}', op='noise_normal', seed=i,
                   tol=tol(prec, 1e-300),  # exact: the runner also compares bits
                   tensors=[('z', z.astype(np_dtype(prec)))],
                   meta={'noise_seed': str(seed), 'stream': stream, 'n': str(n)},
                   level='quick' if i == 0 else 'full')


def quantize_cases(prec):
    f = np_dtype(prec)
    r = rng(3400)
    x = list(r.uniform(-1.2, 1.2, 3000))
    x += [-1.0, 1.0, 0.0, -0.0, -5.0, 5.0, 1.0000001, -1.0000001, 0.99, -0.99]
    # values whose (x/2+0.5)*255 is exactly k + 1/2 in this precision (round half to even)
    for k in range(0, 255, 3):
        v = f((2.0 * (k + 0.5) / 255.0) - 1.0)
        for d in range(-3, 4):
            w = v
            for _ in range(abs(d)):
                w = np.nextafter(w, f(np.inf) if d > 0 else f(-np.inf))
            x.append(w)
    x = np.asarray(x, dtype=f)
    q = jax.jit(lambda v: ((v / 2 + 0.5) * 255).round().clip(0, 255).astype(jnp.uint8))(jnp.asarray(x))
    q = np.asarray(q)
    v = (x / f(2) + f(0.5)) * f(255)
    halves = int(np.sum(v - np.floor(v) == f(0.5)))
    yield Case(name='image_quantize', op='image_quantize', seed=3400, tol=tol(prec, 1e-12),
               tensors=[('x', x), ('q', q)], meta={'exact_halves': str(halves)}, level='quick')


def resize_cases(prec):
    # (H, W) -> (h, w); the pipeline's mask is 8x; the others show jax's float32 index rule
    pairs = [((64, 48), (8, 6)), ((328, 4), (41, 2)), ((36, 8), (67, 55)), ((1000, 3), (15, 5)),
             ((1312, 2), (164, 1)), ((7, 9), (7, 4))]
    for i, ((H, W), (h, w)) in enumerate(pairs):
        seed = 3500 + i
        x = rng(seed).uniform(-1, 1, (2 if H * W < 4000 else 1, H, W)).astype(np_dtype(prec))
        y = jax.image.resize(jnp.asarray(x), (x.shape[0], h, w), 'nearest')
        yield Case(name=f'image_resize_nearest_{H}x{W}_to_{h}x{w}', op='image_resize_nearest', seed=seed,
                   tol=tol(prec, 1e-12), tensors=[('x', x), ('y', np.asarray(y).astype(np_dtype(prec)))],
                   level='quick' if i == 0 else 'full')


def cases(prec):
    yield from schedule_cases(prec)
    yield from step_cases(prec)
    yield from add_noise_cases(prec)
    # the toy model's schedule: its arrays, its sampling loops (12 steps, the demo's) and add_noise
    yield from schedule_cases(prec, TOY, '_toy')
    yield from step_cases(prec, TOY, [12, 20], '_toy')
    yield from add_noise_cases(prec, TOY, '_toy')
    yield from noise_cases(prec)
    yield from quantize_cases(prec)
    yield from resize_cases(prec)
