"""The UNet forward in JAX on CPU, for `make bench`'s comparison (unet_vs_jax).

    tools/.venv/bin/python tools/bench_jax.py B F H W

The same real makeavid configuration (tools/mavflax.py, procedural float32 weights), the same
sample shape, jitted; prints the time of the second call (the first compiles) as
jax_unet_forward_s = SECONDS."""
import os
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np

import mavflax


def main():
    B, F, H, W = (int(a) for a in sys.argv[1:5])
    jax.config.update('jax_default_matmul_precision', 'highest')
    cfg = mavflax.MAKEAVID
    params = mavflax.procedural_params(cfg, 1, np.float32, video=True)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, 9, F, H, W)), jnp.float32)
    t = jnp.asarray([999.0 - 250 * i for i in range(B)], jnp.float32)
    ctx = jnp.asarray(np.random.default_rng(1).standard_normal((B, 77, 768)), jnp.float32)
    m = mavflax.UNetPseudo3DConditionModel(cfg, True, jnp.float32)
    f = jax.jit(lambda p, a, b, c: m.apply({'params': p}, a, b, c))
    f(params, x, t, ctx).block_until_ready()
    t0 = time.time()
    f(params, x, t, ctx).block_until_ready()
    dt = time.time() - t0
    print(f'JAX {jax.__version__} CPU, UNet forward, sample ({B},9,{F},{H},{W}): {dt:.1f} s')
    print(f'jax_unet_forward_s = {dt:.1f}')


if __name__ == '__main__':
    main()
