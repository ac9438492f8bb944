"""UNet forwards in JAX on CPU, for `make bench`'s comparisons.

    tools/.venv/bin/python tools/bench_jax.py B F H W [NAME]   the makeavid UNet (unet_vs_jax,
                                                                unet_full_vs_jax)
    tools/.venv/bin/python tools/bench_jax.py 2d B H W [NAME]  SD 1.5's 2-D UNet (unet2d_vs_jax)

The makeavid UNet: the real configuration (tools/mavflax.py, upstream's module tree), sample
(B,9,F,H,W). The 2-D UNet: diffusers' FlaxUNet2DConditionModel with SD 1.5's configuration (the
same channels, heads and context as makeavid, 4 input channels; its default attention), sample
(B,4,H,W). Both with procedural float32 weights, context (B,77,768), jitted; prints the time of
the second call (the first compiles) as jax_NAME_s = SECONDS (NAME: unet_forward, unet2d_forward
by default)."""
import os
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np

import mavflax


def timed(f, *args):
    f(*args).block_until_ready()
    t0 = time.time()
    f(*args).block_until_ready()
    return time.time() - t0


def main():
    jax.config.update('jax_default_matmul_precision', 'highest')
    a = sys.argv[1:]
    two_d = bool(a) and a[0] == '2d'
    if two_d:
        from dataclasses import asdict
        from diffusers import FlaxUNet2DConditionModel
        B, H, W = (int(v) for v in a[1:4])
        name = a[4] if len(a) > 4 else 'unet2d_forward'
        cfg = mavflax.UNetConfig(**dict(asdict(mavflax.MAKEAVID), in_channels=4))
        params = mavflax.procedural_params(cfg, 1, np.float32, video=False)
        params = mavflax.unflatten({mavflax.to_diffusers_2d_name(k): v for k, v in mavflax.flatten(params).items()})
        m = FlaxUNet2DConditionModel(**mavflax.diffusers_2d_config(cfg), dtype=jnp.float32)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((B, 4, H, W)), jnp.float32)
        what = f'diffusers FlaxUNet2DConditionModel (SD 1.5), sample ({B},4,{H},{W})'
        call = jax.jit(lambda p, s, t, c: m.apply({'params': p}, s, t, c).sample)
    else:
        B, F, H, W = (int(v) for v in a[0:4])
        name = a[4] if len(a) > 4 else 'unet_forward'
        cfg = mavflax.MAKEAVID
        params = mavflax.procedural_params(cfg, 1, np.float32, video=True)
        m = mavflax.UNetPseudo3DConditionModel(cfg, True, jnp.float32)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((B, 9, F, H, W)), jnp.float32)
        what = f'makeavid UNet forward, sample ({B},9,{F},{H},{W})'
        call = jax.jit(lambda p, s, t, c: m.apply({'params': p}, s, t, c))
    t = jnp.asarray([999.0 - 250 * i for i in range(B)], jnp.float32)
    ctx = jnp.asarray(np.random.default_rng(1).standard_normal((B, 77, 768)), jnp.float32)
    dt = timed(call, params, x, t, ctx)
    print(f'JAX {jax.__version__} CPU, {what}: {dt:.2f} s')
    print(f'jax_{name}_s = {dt:.2f}')


if __name__ == '__main__':
    main()
