"""The UNet's building blocks (tools/mavflax.py, = upstream's flax_impl modules): ConvPseudo3D,
ResnetBlockPseudo3D, FlaxAttention, TransformerPseudo3DModel, Downsample/UpsamplePseudo3D and
the time embedding, at real widths and tiny spatial sizes.

Every parameter is procedural: named by its dotted Flax path inside the block ('norm1.scale',
'conv1.spatial_conv.kernel', ...), listed in meta 'params' (comma-separated, tree order) and
described by a gen.NAME entry (tools/mavflax.proc_rule with seed = meta 'weights_seed'), so the
C runner gets each with case_input(c, name). Large inputs (the text context) are procedural too.
Activations use the internal channels-last layout: x (B,F,H,W,C) for video, (B,H,W,C) in 2-D mode.
"""
import jax
import jax.numpy as jnp
import numpy as np
from diffusers.models.attention_flax import FlaxAttention
from diffusers.models.embeddings_flax import FlaxTimestepEmbedding, get_sinusoidal_embeddings

import mavflax
from vecspec import Case, normal, rng, tol, out, np_dtype, proc

# f32 tolerances (relative, max|err|/max|y|). Measured on these very cases: JAX float32
# against JAX float64 (inputs drawn in float64; the f32 file holds them rounded) gives
# 2e-7..6e-7 for the convolutions, resamplers, resnets and attentions (sums of up to ~17000
# terms after GroupNorm) and up to 1.4e-6 for the transformers (LayerNorms, five GEMMs of up to
# 5120 terms, softmax, a one-token case with outputs of magnitude 8). A float32 C
# implementation errs by the same order with other rounding, so the two can differ by about
# the sum: each tolerance is ~4x the worst JAX error measured for its op.
TOL_CONVP3D = 2e-6
TOL_RESNET = 2e-6
TOL_ATTENTION = 2e-6
TOL_TRANSFORMER = 5e-6
TOL_RESAMPLE = 2e-6
# The time embedding of float32 cases is diffusers' float32 sinusoid (as upstream): cos/sin of
# float32 arguments t*inv up to 999 rad. XLA's float32 exp differs from glibc expf by 1 ulp
# in 21 of the 160 frequencies, which moves t*inv by up to ulp(999) = 6e-5, so no float32
# implementation can match XLA's time_proj closer than ~6e-5 absolute (measured: libm float32
# route 5.9e-5, double route rounded to float 5.2e-5; outputs are in [-1,1]): 2e-4.
TOL_TIME = 2e-4

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


def convp3d_cases(prec):
    # (x shape (B,F,H,W,Ci) or (B,H,W,Ci), Co, kernel, stride, pad)
    shapes = [
        ((1, 3, 4, 5, 9), 320, 3, 1, 1),     # conv_in
        ((2, 2, 3, 3, 320), 4, 3, 1, 1),     # conv_out
        ((1, 3, 2, 3, 64), 32, 1, 1, 0),     # 1x1 shortcut, temporal still kernel 3
        ((2, 1, 3, 2, 32), 32, 3, 1, 1),     # one frame: temporal taps see zero padding
        ((1, 2, 5, 4, 32), 48, 3, 2, 1),     # stride 2, odd size
        ((2, 4, 3, 32), 64, 3, 1, 1),        # 2-D mode: no temporal conv
    ]
    for i, (xs, co, k, s, p) in enumerate(shapes):
        seed = 3000 + i
        r = rng(seed)
        meta = {'features': str(co), 'kernel': str(k), 'stride': str(s), 'pad': str(p)}
        x = normal(r, xs, prec)
        mod = mavflax.ConvPseudo3D(co, k, s, p, np_dtype(prec))
        params = block_params(mod, [x], seed, prec, meta)
        y = out(run(mod, params, x), prec)
        yield Case(name=f'convp3d_{shape_tag(xs)}_to{co}_k{k}s{s}p{p}', op='convp3d', seed=seed,
                   tol=tol(prec, TOL_CONVP3D), tensors=[('x', x), ('y', y)], meta=meta,
                   level='quick' if i in (0, 3) else 'full')


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


def attention_cases(prec):
    # (N, S, C, heads, context (T, Cctx) or None, memory-efficient)
    shapes = [
        (2, 15, 320, 8, None, True),          # self-attention, odd token count
        (4, 6, 320, 8, (77, 768), True),      # cross-attention to a CLIP-sized context
        (3, 64, 64, 8, None, True),           # 64 tokens: query chunks of 1 in the mem-eff path
        (6, 3, 64, 1, None, True),            # single head, 3 frames (temporal attention shape)
        (2, 5, 48, 4, (7, 32), False),        # plain softmax path (same math)
    ]
    for i, (N, S, C, heads, ctx, me) in enumerate(shapes):
        seed = 3200 + i
        r = rng(seed)
        meta = {'heads': str(heads)}
        x = normal(r, (N, S, C), prec)
        inputs = [x]
        tensors = [('x', x)]
        if ctx is not None:
            context = proc(meta, 'context', (N,) + ctx, prec, seed, 1.0)
            inputs.append(context)
        mod = FlaxAttention(query_dim=C, heads=heads, dim_head=C // heads, use_memory_efficient_attention=me,
                            dtype=np_dtype(prec))
        params = block_params(mod, inputs, seed, prec, meta)
        y = out(run(mod, params, *inputs), prec)
        kind = 'cross' if ctx is not None else 'self'
        yield Case(name=f'attention_{kind}_n{N}s{S}c{C}h{heads}', op='attention', seed=seed,
                   tol=tol(prec, TOL_ATTENTION), tensors=tensors + [('y', y)], meta=meta,
                   level='quick' if i == 1 else 'full')


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


def time_embedding_cases(prec):
    """timesteps (B,) -> time_proj (B,320) sinusoid and temb (B,1280) = linear_2(silu(linear_1 .)).
    float32: diffusers' FlaxTimesteps (float32, as upstream); float64: the same formula in float64."""
    sets = [
        [999.0, 0.0, 1.0, 500.0],
        [981.0, 17.0, 250.0],
    ]
    for i, ts in enumerate(sets):
        seed = 3600 + i
        t = np.array(ts, dtype=np_dtype(prec))
        meta = {'dim': '320', 'flip_sin_to_cos': '1', 'freq_shift': '0'}
        if prec == 'f64':
            proj = mavflax.sinusoid(jnp.asarray(t), 320, True, 0, np.float64)
        else:
            proj = get_sinusoidal_embeddings(jnp.asarray(t), 320, freq_shift=0, flip_sin_to_cos=True)
        mod = FlaxTimestepEmbedding(TEMB_DIM, dtype=np_dtype(prec))
        params = block_params(mod, [np.asarray(proj)], seed, prec, meta)
        temb = out(run(mod, params, proj), prec)
        yield Case(name=f'time_embedding_b{len(ts)}', op='time_embedding', seed=seed, tol=tol(prec, TOL_TIME),
                   tensors=[('timesteps', t), ('time_proj', out(proj, prec)), ('temb', temb)], meta=meta,
                   level='quick' if i == 0 else 'full')


def cases(prec):
    yield from convp3d_cases(prec)
    yield from resnet_cases(prec)
    yield from attention_cases(prec)
    yield from transformer_cases(prec)
    yield from resample_cases(prec)
    yield from time_embedding_cases(prec)
