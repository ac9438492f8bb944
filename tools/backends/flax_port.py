"""The FLAX model itself as a `mavref check` adapter for the whole-UNet cases: a faithful port,
and the same port with one deliberate difference, to show what the taps comparison reports.

    tools/.venv/bin/python tools/backends/flax_port.py [--sinusoid model|f32|f64] [--gelu tanh|erf]
                                                       [--own-sinusoid] [--real] CASE OUT
    bin/mavref check --ops unet --backend 'tools/.venv/bin/python tools/backends/flax_port.py --gelu erf {case} {out}'

It runs UNetPseudo3DConditionModel exactly as the exporter builds it (tools/mavflax.py, the
code that made the corpus; upstream is not vendored) on the case's inputs and procedural
weights, in the case's precision (float64 cases under jax_enable_x64, as the exporter runs
them), and writes `out` and every tap the case lists (tap.time_proj, tap.time_embedding,
tap.conv_in, tap.down_blocks_<i>, ...) under the case's names, channels-last as the contract says.

Switches (each one changes only what it names):
  --sinusoid model  the exporter's choice (default): float32 in float32 runs; in float64 runs
                    the sinusoid computed in float64 (mavflax.sinusoid), the corpus' definition
  --sinusoid f32    diffusers' FlaxTimesteps in float32 whatever the dtype: upstream's
                    unmodified x64 forward (in float32 runs the same as `model`)
  --sinusoid f64    computed in the run's dtype (float64 runs: the same as `model`)
  --gelu erf        exact-erf GELU in every feed-forward's GEGLU (PyTorch's F.gelu), in place
                    of the Flax model's tanh form (flax.linen.gelu); --gelu tanh is the model
  --own-sinusoid    ignore a case's input `time_proj` (the float32-sinusoid cases, meta
                    sinusoid=float32, feed the Flax model's own sinusoid; by default the port
                    runs the network from it, as the contract allows, SPEC.md section 13.4)
  --real            run the real-size configuration's cases too (`*_real_*`: 1.1e9 parameters
                    generated in numpy, minutes and ~9 GB in float64); by default exit 3

Ops other than `unet` exit with status 3 (not covered). Needs the exporter's environment
(make tools-env): jax, flax, diffusers, numpy, safetensors.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
sys.path.insert(0, TOOLS)
import mavcase  # noqa: E402  (numpy + safetensors; jax is configured after reading the case)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sinusoid', choices=('model', 'f32', 'f64'), default='model')
    ap.add_argument('--gelu', choices=('tanh', 'erf'), default='tanh')
    ap.add_argument('--own-sinusoid', action='store_true')
    ap.add_argument('--real', action='store_true')
    ap.add_argument('case')
    ap.add_argument('out')
    return ap.parse_args(argv)


def erf_geglu(mavflax):
    """mavflax.GEGLU with exact-erf GELU: same parameters (proj), same split, erf in place of tanh."""
    import jax
    import jax.numpy as jnp
    import flax.linen as nn

    class ErfGEGLU(mavflax.GEGLU):
        @nn.compact
        def __call__(self, x):
            y = nn.Dense(8 * self.dim, dtype=self.dtype, name='proj')(x)
            a, g = jnp.split(y, 2, axis=-1)
            return a * jax.nn.gelu(g, approximate=False)
    return ErfGEGLU


def run(args):
    case = mavcase.load(args.case)
    if case.op != 'unet':
        print(f'flax_port: unsupported op {case.op} (the whole UNet only)', file=sys.stderr)
        return 3
    if '_real_' in case.name and not args.real:
        print('flax_port: real-size case left out (--real runs it)', file=sys.stderr)
        return 3
    from export_vectors import setup_jax  # the exporter's JAX settings (x64, highest matmul precision, CPU)
    setup_jax(case.precision)
    import jax.numpy as jnp
    import numpy as np
    import mavflax
    from mavflax import UNetConfig

    if args.gelu == 'erf':
        mavflax.GEGLU = erf_geglu(mavflax)  # FeedForward builds GEGLU by this global name
    dt = case.dtype
    f32_sinusoid = {'model': None, 'f32': True, 'f64': False}[args.sinusoid]
    if dt == np.float32:
        f32_sinusoid = None  # float32 runs: the sinusoid is float32 either way (diffusers' FlaxTimesteps)
    config = UNetConfig.from_json(case.attrs['config'])
    params = mavflax.unflatten({k: jnp.asarray(v) for k, v in case.params.items()})
    fed = None
    if 'time_proj' in case.inputs and not args.own_sinusoid:
        fed = jnp.asarray(case.inputs['time_proj'])
    y, inter = mavflax.apply_unet(config, params, jnp.asarray(case.inputs['sample']),
                                  jnp.asarray(case.inputs['timesteps']), jnp.asarray(case.inputs['context']), dt,
                                  f32_sinusoid=f32_sinusoid, time_proj=fed)
    outs = {}
    for o in case.outputs:
        name = o['name']
        if name == 'out':
            outs[name] = np.asarray(y)
        elif name.startswith('tap.') and name[4:] in inter:
            outs[name] = np.asarray(inter[name[4:]])
    case.write(args.out, outs)
    return 0


if __name__ == '__main__':
    sys.exit(run(parse(sys.argv[1:])))
