"""An independent check of mavref's FLOP count (ref/flops.c, SPEC.md section 11.8).

    tools/.venv/bin/python tools/flops_check.py [BENCH_MODEL]

For small corpus configurations of the FLAX model (tools/mavflax.py) this prints, per shape:
  xla    XLA's own count: jax.jit(f).lower(...).compile().cost_analysis()['flops'] (every
         operation: products and elementwise work)
  prod   the products alone, from the jaxpr: 2 x multiply-adds of every dot_general and
         conv_general_dilated, convolution taps on zero padding excluded
  mavref `bench_model flops unet CONFIG B F H W T` (build/cc-f32-t1-n0-s0/bench_model)
  kv     the products of the cross-attention key/value projections that upstream repeats per
         frame (jnp.repeat of the context) and mavref computes once per prompt
mavref must equal prod - kv exactly; xla - prod is the elementwise work mavref does not count."""
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np

import mavflax
from jax.extend import core as jcore
from cases_unet import MIXED

jax.config.update('jax_enable_x64', False)


def conv_pairs(n, nout, k, stride, lo):
    return sum(1 for o in range(nout) for t in range(k) if 0 <= o * stride + t - lo < n)


def jaxpr_products(jaxpr):
    """2 x the multiply-adds of the products in a (closed) jaxpr, sub-jaxprs included."""
    total = 0
    for e in jaxpr.eqns:
        if e.primitive.name == 'dot_general':
            (lc, rc), (lb, rb) = e.params['dimension_numbers']
            k = int(np.prod([e.invars[0].aval.shape[i] for i in lc])) if lc else 1
            total += 2 * int(np.prod(e.outvars[0].aval.shape)) * k
        elif e.primitive.name == 'conv_general_dilated':
            dn = e.params['dimension_numbers']
            lhs, rhs, out = e.invars[0].aval.shape, e.invars[1].aval.shape, e.outvars[0].aval.shape
            assert all(d == 1 for d in e.params['lhs_dilation']) and all(d == 1 for d in e.params['rhs_dilation'])
            pairs = 1
            for i, (lo, _hi) in enumerate(e.params['padding']):
                pairs *= conv_pairs(lhs[dn.lhs_spec[2 + i]], out[dn.out_spec[2 + i]], rhs[dn.rhs_spec[2 + i]],
                                    e.params['window_strides'][i], lo)
            cin = rhs[dn.rhs_spec[1]]
            total += 2 * out[dn.out_spec[0]] * out[dn.out_spec[1]] * pairs * cin
        for p in e.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                if isinstance(sub, jcore.ClosedJaxpr):
                    total += jaxpr_products(sub.jaxpr)
                elif isinstance(sub, jcore.Jaxpr):
                    total += jaxpr_products(sub)
    return total


def cross_kv_repeat(cfg, B, F, T):
    """Products of the cross-attention k/v projections computed per frame instead of per prompt."""
    n = 0
    chans = cfg.block_out_channels
    nb = len(chans)
    for i, t in enumerate(cfg.down_block_types):
        if t.startswith('CrossAttn'):
            n += cfg.layers_per_block * chans[i]
    n += chans[-1]  # mid block
    for i, t in enumerate(cfg.up_block_types):
        if t.startswith('CrossAttn'):
            n += (cfg.layers_per_block + 1) * chans[nb - 1 - i]
    return 2 * 2 * B * (F - 1) * T * cfg.cross_attention_dim * n


def main():
    bench = sys.argv[1] if len(sys.argv) > 1 else 'build/cc-f32-t1-n0-s0/bench_model'
    worst = 0
    for name, cfg in (('SMALL', mavflax.SMALL), ('MIXED', MIXED)):
        params = mavflax.procedural_params(cfg, 1, np.float32, video=True)
        m = mavflax.UNetPseudo3DConditionModel(cfg, False, jnp.float32)
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            f.write(cfg.to_json())
        for B, F, H, W, T in ((1, 3, 8, 8, 7), (2, 4, 16, 16, 5)):
            x = jnp.zeros((B, cfg.in_channels, F, H, W), jnp.float32)
            t = jnp.ones((B,), jnp.float32)
            ctx = jnp.zeros((B, T, cfg.cross_attention_dim), jnp.float32)
            fn = lambda p, a, b, c: m.apply({'params': p}, a, b, c)
            cost = jax.jit(fn).lower(params, x, t, ctx).compile().cost_analysis()
            xla = (cost[0] if isinstance(cost, list) else cost)['flops']
            prod = jaxpr_products(jax.make_jaxpr(fn)(params, x, t, ctx).jaxpr)
            kv = cross_kv_repeat(cfg, B, F, T)
            out = subprocess.run([bench, 'flops', 'unet', f.name, str(B), str(F), str(H), str(W), str(T)],
                                 capture_output=True, text=True, check=True).stdout
            mv = int(dict(l.split(' = ') for l in out.splitlines())['unet_forward_flops'])
            worst = max(worst, abs(mv - (prod - kv)))
            print(f'{name} ({B},{cfg.in_channels},{F},{H},{W}) T={T}: xla {xla:.0f} prod {prod} mavref {mv} kv {kv} '
                  f'mavref/(prod-kv) {mv / (prod - kv):.9f} elementwise share of xla {(xla - prod) / xla:.3f}')
        os.unlink(f.name)
    print('flops_check: ' + ('PASS' if worst == 0 else f'FAIL (largest difference {worst})'))
    return 0 if worst == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
