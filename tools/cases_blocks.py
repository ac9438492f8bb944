"""The UNet's building blocks (tools/mavflax.py, = upstream's flax_impl modules):
ResnetBlockPseudo3D, TransformerPseudo3DModel, Downsample/UpsamplePseudo3D, at real widths and
tiny spatial sizes. (ConvPseudo3D, attention, the time embedding: op cases in cases_ops.py.)

Every parameter is procedural: named by its dotted Flax path inside the block ('norm1.scale',
'conv1.spatial_conv.kernel', ...), listed in meta 'params' (comma-separated, sorted) and
described by a gen.NAME entry (tools/mavflax.proc_rule with seed = meta 'weights_seed'), so the
C runner gets each with case_input(c, name). Large inputs (the text context) are procedural too.
Activations use the internal channels-last layout: x (B,F,H,W,C) for video, (B,H,W,C) in 2-D mode.
"""
import jax
import jax.numpy as jnp
import numpy as np

import mavflax
from vecspec import Case, normal, rng, tol, out, np_dtype, proc

# f32 tolerances (relative, max|err|/max|y|). Measured on these very cases: JAX float32
# against JAX float64 (inputs drawn in float64; the f32 file holds them rounded) gives
# 2e-7..6e-7 for the resamplers and resnets (sums of up to ~17000 terms after GroupNorm) and
# up to 1.4e-6 for the transformers (LayerNorms, five GEMMs of up to 5120 terms, softmax, a
# one-token case with outputs of magnitude 8). A float32 C implementation errs by the same
# order with other rounding, so the two can differ by about the sum: each tolerance is ~4x
# the worst JAX error measured for its op.
TOL_RESNET = 2e-6
TOL_TRANSFORMER = 5e-6
TOL_RESAMPLE = 2e-6

TEMB_DIM = 1280


def sds(shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def block_params(module, inputs, seed, prec, meta):
    """Procedural parameters of `module` for `inputs` (arrays), recorded in meta."""
    shapes = mavflax.param_shapes(module, *[sds(a.shape) for a in inputs])
    meta['weights_seed'] = str(seed)
    meta['params'] = ','.join(shapes)
    return mavflax.procedural_tree(shapes, seed, np_dtype(prec), meta)


def run(module, params, *inputs):
    return module.apply({'params': params}, *[jnp.asarray(a) for a in inputs])


def shape_tag(shape):
    return 'x'.join(str(d) for d in shape)


def resnet_cases(prec):
    # (x shape, Cout)
    shapes = [
        ((1, 2, 3, 5, 320), 320),     # no shortcut, odd sizes
        ((2, 3, 3, 2, 320), 640),     # shortcut 320 -> 640
        ((1, 1, 2, 2, 1280), 1280),   # one frame, real deepest width
        ((1, 2, 2, 3, 1920), 640),    # up-block concat width, shortcut
        ((2, 3, 4, 4, 32), 64),       # small widths, 3 frames
        ((2, 3, 3, 64), 32),          # 2-D mode (no temporal convs)
    ]
    for i, (xs, co) in enumerate(shapes):
        seed = 3100 + i
        r = rng(seed)
        ci = xs[-1]
        meta = {'in_channels': str(ci), 'out_channels': str(co)}
        x = normal(r, xs, prec)
        temb = normal(r, (xs[0], TEMB_DIM), prec)
        mod = mavflax.ResnetBlockPseudo3D(ci, co, np_dtype(prec))
        params = block_params(mod, [x, temb], seed, prec, meta)
        y = out(run(mod, params, x, temb), prec)
        yield Case(name=f'resnet_{shape_tag(xs)}_to{co}', op='resnet', seed=seed,
                   tol=tol(prec, TOL_RESNET), tensors=[('x', x), ('temb', temb), ('y', y)], meta=meta,
                   level='quick' if i in (1, 4) else 'full')


def transformer_cases(prec):
    # (x shape, heads, context (T, Cctx))
    shapes = [
        ((1, 2, 3, 5, 320), 8, (77, 768)),    # real width, odd H/W
        ((2, 3, 2, 3, 640), 8, (77, 768)),    # batch 2: context repeated per frame b*F+f
        ((2, 1, 2, 2, 320), 8, (77, 768)),    # one frame: temporal attention over 1 key
        ((1, 3, 3, 3, 64), 1, (77, 32)),      # single head
        ((1, 2, 8, 8, 64), 8, (5, 48)),       # 64 tokens per frame: mem-eff query chunks
        ((1, 1, 1, 1, 1280), 8, (77, 768)),   # deepest level at 8x8 latents: one token
        ((2, 3, 4, 64), 4, (7, 48)),          # 2-D mode: no temporal attention
    ]
    for i, (xs, heads, ctx) in enumerate(shapes):
        seed = 3300 + i
        r = rng(seed)
        C = xs[-1]
        meta = {'heads': str(heads)}
        x = normal(r, xs, prec)
        context = proc(meta, 'context', (xs[0],) + ctx, prec, seed, 1.0)
        mod = mavflax.TransformerPseudo3DModel(C, heads, True, np_dtype(prec))
        params = block_params(mod, [x, context], seed, prec, meta)
        y = out(run(mod, params, x, context), prec)
        yield Case(name=f'transformer_{shape_tag(xs)}_h{heads}_ctx{ctx[0]}x{ctx[1]}', op='transformer', seed=seed,
                   tol=tol(prec, TOL_TRANSFORMER), tensors=[('x', x), ('y', y)], meta=meta,
                   level='quick' if i in (1, 3) else 'full')


def resample_cases(prec):
    down = [(1, 2, 5, 4, 320), (2, 3, 4, 4, 64), (1, 2, 2, 2, 1280), (2, 3, 3, 32)]
    up = [(1, 2, 2, 2, 1280), (2, 3, 3, 5, 64), (1, 1, 3, 2, 320), (2, 2, 3, 32)]
    for op, shapes, cls, base in (('downsample', down, mavflax.DownsamplePseudo3D, 3400),
                                  ('upsample', up, mavflax.UpsamplePseudo3D, 3500)):
        for i, xs in enumerate(shapes):
            seed = base + i
            r = rng(seed)
            meta = {'channels': str(xs[-1])}
            x = normal(r, xs, prec)
            mod = cls(xs[-1], np_dtype(prec))
            params = block_params(mod, [x], seed, prec, meta)
            y = out(run(mod, params, x), prec)
            yield Case(name=f'{op}_{shape_tag(xs)}', op=op, seed=seed, tol=tol(prec, TOL_RESAMPLE),
                       tensors=[('x', x), ('y', y)], meta=meta, level='quick' if i == 1 else 'full')


def cases(prec):
    yield from resnet_cases(prec)
    yield from transformer_cases(prec)
    yield from resample_cases(prec)
