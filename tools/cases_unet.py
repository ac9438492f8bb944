"""The whole UNetPseudo3DConditionModel (tools/mavflax.py, = upstream's Flax model) with
procedural weights: small configurations with every activation tap, the small configuration
in 2-D mode (checked here against diffusers' FlaxUNet2DConditionModel), and the real makeavid
configuration (1.1e9 parameters) at 8x8 latents.

File contents (op 'unet'):
  sample (B,Cin,F,H,W) or (B,Cin,H,W)    stored
  timesteps (B,)                         stored, case precision
  context (B,T,Cctx)                     procedural (gen.context)
  time_proj (B,c0)                       float32-sinusoid cases only (cases_unet_f32sin.py):
                                         the sinusoid the network runs from
  tap.NAME                               activations, channels-last (see TAPS below)
  out (B,Cout,F,H,W) or (B,Cout,H,W)
  meta: config (JSON of mavflax.UNetConfig), weights_seed, params (comma-separated dotted
        names), gen.NAME for every parameter (mavflax.proc_rule), taps (comma-separated tap
        names present, without the 'tap.' prefix), video ('1' 5-D input, '0' 2-D mode);
        float32-sinusoid cases also sinusoid ('float32') and tol.tap.time_proj
"""
import dataclasses
import gc

import jax.numpy as jnp
import numpy as np

import mavflax
from mavflax import UNetConfig
from vecspec import Case, normal, rng, tol, out, np_dtype, proc

# Whole-UNet tolerances. float64: 1e-9 (about 60 sequential GEMM/norm stages). float32:
# JAX float32 against JAX float64 on these cases measures 1.2e-6..2.4e-6 on `out` and the taps
# of the small configurations and 5.3e-6 on the real one; on top of that the float32 sinusoid
# cannot be reproduced by other float32 code closer than ~6e-5 (XLA's float32 exp differs from
# glibc's by 1 ulp in 21 of the 160 frequencies, and t*inv reaches 999 rad), which
# moves tap.time_embedding by up to 1.0e-5 (real config) and `out` by ~7e-7 (measured as the
# effect of the float32 vs float64 sinusoid in float64 runs). 5e-5 is ~5x the largest of these
# (tap.time_proj is therefore not stored in float32 files).
TOL_UNET_F64 = 1e-9
TOL_UNET_F32 = 5e-5

SMALL = mavflax.SMALL   # (32,64,128,128), 2 layers, 8 heads, cross-attention dim 32, in 9
MIXED = UNetConfig(in_channels=9, out_channels=4, block_out_channels=(32, 64, 96), layers_per_block=1,
                   attention_head_dim=(1, 2, 4), cross_attention_dim=48,
                   down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D', 'CrossAttnDownBlockPseudo3D'),
                   up_block_types=('CrossAttnUpBlock2D', 'UpBlockPseudo3D', 'CrossAttnUpBlock2D'))
REAL = mavflax.MAKEAVID
# taps kept for the real configuration (the others would exceed ~1 MB in float64)
REAL_TAPS = ['time_proj', 'time_embedding', 'down_blocks_0', 'down_blocks_1', 'down_blocks_2',
             'down_blocks_3', 'mid_block', 'up_blocks_0']


def unet_case(prec, name, config, seed, B, F, H, W, T, timesteps, taps=None, level='quick', video=True,
              check_2d=False, f32_sinusoid=None):
    """f32_sinusoid=True (float64 only): upstream's unmodified x64 forward, whose sinusoid is
    diffusers' float32 FlaxTimesteps (cases_unet_f32sin.py): meta sinusoid=float32, the sinusoid
    stored as input `time_proj` too, tap.time_proj held to its own tolerance tol.tap.time_proj."""
    dt = np_dtype(prec)
    r = rng(seed)
    meta = {'config': config.to_json(), 'weights_seed': str(seed), 'video': '1' if video else '0'}
    shape = (B, config.in_channels, F, H, W) if video else (B, config.in_channels, H, W)
    sample = normal(r, shape, prec)
    t = np.array(timesteps, dtype=dt)
    context = proc(meta, 'context', (B, T, config.cross_attention_dim), prec, seed, 1.0)
    shapes = mavflax.unet_param_shapes(config, video)
    meta['params'] = ','.join(shapes)
    params = mavflax.procedural_tree(shapes, seed, dt, meta)
    y, inter = mavflax.apply_unet(config, params, jnp.asarray(sample), jnp.asarray(t), jnp.asarray(context), dt,
                                  f32_sinusoid=f32_sinusoid)
    if check_2d:
        check_against_diffusers(prec, config, params, sample, t, context, y)
    del params
    gc.collect()
    taps = mavflax.tap_names(config) if taps is None else taps
    if prec == 'f32':
        # float32 time_proj cannot be matched closer than ~6e-5 by any other float32 code; op
        # timestep_embedding (cases_ops.py) checks it with its own tolerance (tol.sinusoid).
        taps = [k for k in taps if k != 'time_proj']
    meta['taps'] = ','.join(taps)
    tensors = [('sample', sample), ('timesteps', t)]
    if f32_sinusoid:
        assert prec == 'f64' and 'time_proj' in taps
        from cases_ops import TOL_SINUSOID
        meta['sinusoid'] = 'float32'
        meta['tol.tap.time_proj'] = repr(TOL_SINUSOID)
        assert np.asarray(inter['time_proj']).dtype == np.float32
        tensors.append(('time_proj', out(inter['time_proj'], prec)))
    tensors += [('tap.' + k, out(inter[k], prec)) for k in taps]
    tensors.append(('out', out(y, prec)))
    for k, a in tensors:
        assert np.all(np.isfinite(a)), k
    tl = TOL_UNET_F64 if prec == 'f64' else TOL_UNET_F32
    return Case(name=name, op='unet', seed=seed, tol=tl, tensors=tensors, meta=meta, level=level)


def check_against_diffusers(prec, config, params, sample, t, context, y):
    """2-D mode equals diffusers' FlaxUNet2DConditionModel on the same weights (names without
    the spatial_conv level). diffusers computes the sinusoid in float32, so the float64 check
    runs our model with the same float32 sinusoid; in float32 the two are the same program."""
    from diffusers import FlaxUNet2DConditionModel
    dt = np_dtype(prec)
    dparams = mavflax.unflatten({mavflax.to_diffusers_2d_name(k): v for k, v in mavflax.flatten(params).items()})
    dm = FlaxUNet2DConditionModel(**mavflax.diffusers_2d_config(config), dtype=dt, use_memory_efficient_attention=True)
    t32 = jnp.asarray(t, jnp.float32)
    ref = np.asarray(dm.apply({'params': dparams}, jnp.asarray(sample), t32, jnp.asarray(context)).sample)
    ours = y
    if prec == 'f64':
        ours, _ = mavflax.apply_unet(config, params, jnp.asarray(sample), t32, jnp.asarray(context), dt,
                                     taps=False, f32_sinusoid=True)
    err = np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref))
    limit = 1e-12 if prec == 'f64' else 0.0
    assert err <= limit, f'2-D mode differs from diffusers FlaxUNet2DConditionModel: {err:.3e}'


def cases(prec):
    # Latents of 16 pixels keep >= 16 values in every GroupNorm group of the small
    # configurations down to the deepest level (2x1 or 2x2 pixels, 4 channels per group): with
    # 1x1 pixels and 2 channels per group the statistics of 2 values amplify rounding ~100x.
    yield unet_case(prec, 'unet_small_b1f3h16w8', SMALL, 4000, 1, 3, 16, 8, 77, [999.0])
    yield unet_case(prec, 'unet_mixed_b1f2h8w12', MIXED, 4001, 1, 2, 8, 12, 7, [250.0])
    yield unet_case(prec, 'unet_small_b1f1h16w16', SMALL, 4002, 1, 1, 16, 16, 77, [500.0], level='full')
    small2d = dataclasses.replace(SMALL, in_channels=4)
    yield unet_case(prec, 'unet_small_2d_b2h16w8', small2d, 4003, 2, 1, 16, 8, 77, [1.0, 981.0], video=False,
                    check_2d=True)
    gc.collect()
    yield unet_case(prec, 'unet_real_b2f2h8w8', REAL, 4004, 2, 2, 8, 8, 77, [999.0, 250.0], taps=REAL_TAPS,
                    level='full')
    gc.collect()
