"""Backward passes of the UNet's elementary operators: jax.vjp of the same Flax/diffusers
modules as tools/cases_ops.py (flax.linen Conv/GroupNorm/LayerNorm/Dense, the activations,
GEGLU, diffusers FlaxAttention, jax.image.resize, diffusers FlaxTimestepEmbedding).

Each case stores the inputs, the weights, a fixed cotangent `dout` drawn from the case's seed,
and the VJP with respect to every input and parameter, named 'd_' + the input's name
('d_x', 'd_kernel', 'd_spatial_conv.kernel', 'd_context', ...). Sizes are small (each file
well under 500 KB in float64); the whole module runs in a few seconds in C.

A gradient that is exactly zero in exact arithmetic (attention with a single key: the softmax
is constant, so q and k get no gradient) is not stored: its name is listed in the meta key
`zero_grads` and the C runner requires an exact zero there (the exporter checks that JAX's
value is zero up to rounding).

float32 tolerances (relative to max|expected| of each tensor, one bound per case written next
to it): every reduction of K terms may differ by about eps32*sqrt(K) between XLA and mavref's
summation orders (tol_reduction, factor 3); a backward chains the forward's reductions (which
it recomputes) with its own, so the bounds add up the reductions on the longest chain.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from diffusers.models.attention_flax import FlaxAttention
from diffusers.models.embeddings_flax import FlaxTimestepEmbedding, FlaxTimesteps

from vecspec import Case, normal, rng, tol, np_dtype
from cases_ops import ConvPseudo3DRef, GEGLURef, tol_reduction, EPS32, _activation_input

# GroupNorm/LayerNorm: the forward's float32 statistics (XLA) against double (mavref), as in
# cases_basic/cases_ops, plus the backward's own reductions.
TOL_NORM_FWD = 2e-6
# Activation derivatives: mavref evaluates f'(x) in double; XLA differentiates the float32
# formula, whose own absolute error is the larger one: 1 - tanh(u)^2 (tanh GELU) is formed from
# a float32 tanh (a few ulps of 1) and amplified by x*sqrt(2/pi)*(1 + 3*0.044715 x^2)/2 (about
# 12 near |x| = 5, where 1 - tanh^2 is still above that error); 1 - sigmoid for SiLU likewise,
# amplified by |x|. Measured on a dense grid of [-12, 12] against the float64 derivative: tanh
# GELU 31.5, SiLU 6.2, erf GELU 1.3 eps32 absolute (|f'| <= 1.13). The bounds, in eps32:
GRAD_ERR_EPS = {'silu': 8, 'gelu_tanh': 40, 'gelu_erf': 2}


def tol_activation_grad(kind, dout, dx):
    """d_x = dout * f'(x): XLA's absolute error of f' (plus one rounding of the product),
    scaled by max|dout|, relative to max|d_x|."""
    return (GRAD_ERR_EPS[kind] + 1) * EPS32 * float(np.max(np.abs(dout))) / float(np.max(np.abs(dx)))


# A sum of at most 4 terms (nearest 2x: each input pixel collects 4 outputs) in another order.
TOL_SUM4 = tol_reduction(4)


def _f(prec):
    return np_dtype(prec)


def _np(x, prec):
    return np.asarray(x).astype(_f(prec))


def _flat(tree, prefix=''):
    """A nested param dict as [(dotted name, array)], in sorted key order."""
    items = []
    for k in sorted(tree):
        v = tree[k]
        name = prefix + k
        if isinstance(v, dict):
            items += _flat(v, name + '.')
        else:
            items.append((name, v))
    return items


def _vjp(fn, primals, dout):
    """VJP of fn at primals (a tuple) with cotangent dout: the tuple of gradients."""
    _, pullback = jax.vjp(fn, *primals)
    return pullback(jnp.asarray(dout))


def _grad_tensors(prec, inputs, params, grads_in, grads_params):
    """[(name, array)] for inputs (dict name -> array), params (nested dict), their grads."""
    t = []
    for name, g in zip(inputs, grads_in):
        t.append(('d_' + name, _np(g, prec)))
    for (name, _), (_, g) in zip(_flat(params), _flat(grads_params)):
        t.append(('d_' + name, _np(g, prec)))
    return t


def _case(name, op, seed, prec, t32, inputs, params, dout, grads, meta=None, level='full'):
    """Assemble a Case: inputs, params (flattened names), dout, then the gradients."""
    tensors = [(n, a) for n, a in inputs.items()]
    tensors += [(n, np.asarray(a)) for n, a in _flat(params)]
    tensors.append(('dout', dout))
    tensors += grads
    return Case(name=name, op=op, seed=seed, tol=tol(prec, t32), tensors=tensors, meta=meta or {}, level=level)


def _jparams(params):
    return jax.tree_util.tree_map(jnp.asarray, params)


# ---------------------------------------------------------------------------------------
# Convolutions

def conv2d_grad_cases(prec):
    p1 = ((1, 1), (1, 1))
    p0 = ((0, 0), (0, 0))
    # (N, H, W, Ci, Co, k, stride, pads)
    shapes = [
        (1, 1, 1, 4, 4, 3, 1, p1),          # one pixel: only the centre tap sees data
        (2, 5, 7, 9, 16, 3, 1, p1),         # conv_in's 9 channels, odd sizes
        (1, 4, 4, 32, 32, 3, 1, p1),
        (2, 4, 5, 24, 16, 1, 1, p0),        # 1x1 (shortcut, proj_in/out)
        (1, 8, 8, 8, 8, 3, 2, p1),          # downsampler: stride 2, symmetric pad
        (1, 7, 5, 8, 12, 3, 2, p1),         # stride 2, odd sizes (the last row/column unused)
        (1, 8, 6, 4, 4, 3, 2, ((0, 1), (0, 1))),  # VAE downsampler's asymmetric pad
        (3, 2, 2, 32, 4, 3, 1, p1),         # conv_out
    ]
    for i, (N, H, W, Ci, Co, k, s, pads) in enumerate(shapes):
        seed = 5000 + i
        r = rng(seed)
        x = normal(r, (N, H, W, Ci), prec)
        params = {'kernel': normal(r, (k, k, Ci, Co), prec, math.sqrt(3.0 / (k * k * Ci))),
                  'bias': normal(r, (Co,), prec, 0.1)}
        mod = nn.Conv(Co, (k, k), (s, s), pads, dtype=_f(prec), param_dtype=_f(prec))
        fn = lambda x_, p_: mod.apply({'params': p_}, x_)
        Ho = (H + pads[0][0] + pads[0][1] - k) // s + 1
        Wo = (W + pads[1][0] + pads[1][1] - k) // s + 1
        dout = normal(r, (N, Ho, Wo, Co), prec)
        gx, gp = _vjp(fn, (jnp.asarray(x), _jparams(params)), dout)
        (pt, pb), (pl, pr) = pads
        # dx: k*k*Co terms; dkernel, dbias: N*Ho*Wo terms
        t32 = tol_reduction(max(k * k * Co, N * Ho * Wo))
        yield _case(f'conv2d_grad_n{N}h{H}w{W}_{Ci}to{Co}_k{k}s{s}_p{pt}{pb}{pl}{pr}', 'conv2d_grad', seed, prec, t32,
                    {'x': x}, params, dout, _grad_tensors(prec, ['x'], params, [gx], gp),
                    meta={'stride': str(s), 'pad': f'{pt},{pb},{pl},{pr}'}, level='quick' if i == 1 else 'full')


def temporal_conv_grad_cases(prec):
    # (B, F, H, W, Ci, Co)
    shapes = [
        (1, 1, 1, 1, 4, 4),       # one frame: only the centre tap gets a gradient
        (1, 2, 2, 3, 8, 8),
        (2, 3, 2, 2, 16, 16),
        (1, 8, 3, 1, 16, 16),
        (2, 5, 1, 3, 24, 16),     # Ci != Co, odd sizes
    ]
    for i, (B, F, H, W, Ci, Co) in enumerate(shapes):
        seed = 5100 + i
        r = rng(seed)
        x = normal(r, (B, F, H, W, Ci), prec)
        params = {'kernel': normal(r, (3, Ci, Co), prec, math.sqrt(3.0 / (3 * Ci))),
                  'bias': normal(r, (Co,), prec, 0.1)}
        mod = nn.Conv(Co, (3,), padding='SAME', dtype=_f(prec), param_dtype=_f(prec))

        def fn(x_, p_):
            xs = x_.transpose(0, 2, 3, 1, 4).reshape(B * H * W, F, Ci)  # (b h w) f c
            y = mod.apply({'params': p_}, xs)
            return y.reshape(B, H, W, F, Co).transpose(0, 3, 1, 2, 4)
        dout = normal(r, (B, F, H, W, Co), prec)
        gx, gp = _vjp(fn, (jnp.asarray(x), _jparams(params)), dout)
        t32 = tol_reduction(max(3 * Co, B * F * H * W))
        yield _case(f'temporal_conv_grad_b{B}f{F}h{H}w{W}_{Ci}to{Co}', 'temporal_conv_grad', seed, prec, t32,
                    {'x': x}, params, dout, _grad_tensors(prec, ['x'], params, [gx], gp),
                    level='quick' if i == 2 else 'full')


def conv_pseudo3d_grad_cases(prec):
    p1 = ((1, 1), (1, 1))
    # (B, F, H, W, Ci, Co, k, stride, padding)
    shapes = [
        (1, 1, 1, 1, 4, 4, 3, 1, p1),          # one pixel, one frame
        (1, 3, 5, 4, 8, 16, 3, 1, p1),         # odd sizes, Ci != Co
        (2, 2, 3, 3, 16, 8, 1, 1, 'VALID'),    # 1x1 shortcut (+ the kernel-3 temporal conv)
        (1, 2, 6, 6, 8, 8, 3, 2, p1),          # downsampler
        (1, 3, 5, 7, 8, 8, 3, 2, p1),          # stride 2, odd sizes
        (1, 8, 2, 2, 8, 8, 3, 1, p1),          # 8 frames
    ]
    for i, (B, F, H, W, Ci, Co, k, s, pad) in enumerate(shapes):
        seed = 5200 + i
        r = rng(seed)
        x = normal(r, (B, F, H, W, Ci), prec)
        params = {'spatial_conv': {'kernel': normal(r, (k, k, Ci, Co), prec, math.sqrt(3.0 / (k * k * Ci))),
                                   'bias': normal(r, (Co,), prec, 0.1)},
                  'temporal_conv': {'kernel': normal(r, (3, Co, Co), prec, math.sqrt(3.0 / (3 * Co))),
                                    'bias': normal(r, (Co,), prec, 0.1)}}
        mod = ConvPseudo3DRef(features=Co, kernel_size=(k, k), strides=(s, s), padding=pad, dtype=_f(prec))
        fn = lambda x_, p_: mod.apply({'params': p_}, x_)
        pads = (0, 0, 0, 0) if pad == 'VALID' else (pad[0][0], pad[0][1], pad[1][0], pad[1][1])
        Ho = (H + pads[0] + pads[1] - k) // s + 1
        Wo = (W + pads[2] + pads[3] - k) // s + 1
        dout = normal(r, (B, F, Ho, Wo, Co), prec)
        gx, gp = _vjp(fn, (jnp.asarray(x), _jparams(params)), dout)
        P = B * F * Ho * Wo
        # the recomputed spatial output (k*k*Ci terms), the temporal backward (3*Co or P terms),
        # then the spatial backward (k*k*Co or P terms) on its result
        t32 = tol_reduction(k * k * Ci) + tol_reduction(max(3 * Co, P)) + tol_reduction(max(k * k * Co, P))
        yield _case(f'conv_pseudo3d_grad_b{B}f{F}h{H}w{W}_{Ci}to{Co}_k{k}s{s}', 'conv_pseudo3d_grad', seed, prec, t32,
                    {'x': x}, params, dout, _grad_tensors(prec, ['x'], params, [gx], gp),
                    meta={'stride': str(s), 'pad': ','.join(str(p) for p in pads)}, level='quick' if i == 1 else 'full')


# ---------------------------------------------------------------------------------------
# Norms, Dense, activations, GEGLU

def groupnorm_grad_cases(prec):
    # (B, F, H, W, C, eps, per_frame); C/32 >= 4 channels per group except where noted, so
    # that no group is degenerate (with 1 or 2 values, dx is 0 or a cancellation)
    shapes = [
        (1, 1, 1, 1, 128, 1e-5, False),   # one pixel, one frame: groups of 4 values
        (1, 3, 5, 7, 64, 1e-5, False),    # odd sizes, joint statistics over frames (resnet)
        (2, 2, 4, 4, 96, 1e-5, False),
        (1, 3, 5, 7, 64, 1e-5, True),     # per-frame statistics (transformer norm)
        (2, 2, 3, 3, 128, 1e-5, True),
        (1, 2, 4, 4, 64, 1e-6, False),    # VAE epsilon
        (2, 4, 2, 2, 96, 1e-5, True),     # 3 channels per group
    ]
    for i, (B, F, H, W, C, eps, per_frame) in enumerate(shapes):
        seed = 5300 + i
        r = rng(seed)
        x = normal(r, (B, F, H, W, C), prec, 1.5) + _f(prec)(0.5)
        params = {'scale': normal(r, (C,), prec, 0.5) + _f(prec)(1.0), 'bias': normal(r, (C,), prec, 0.5)}
        mod = nn.GroupNorm(num_groups=32, epsilon=eps, dtype=_f(prec), param_dtype=_f(prec))

        def fn(x_, p_):
            xin = x_.reshape(B * F, H, W, C) if per_frame else x_
            return mod.apply({'params': p_}, xin).reshape(B, F, H, W, C)
        dout = normal(r, (B, F, H, W, C), prec)
        gx, gp = _vjp(fn, (jnp.asarray(x), _jparams(params)), dout)
        N, S = (B * F, H * W) if per_frame else (B, F * H * W)
        # group sums (S*C/32 terms), channel sums for dscale/dbias (N*S terms)
        t32 = TOL_NORM_FWD + tol_reduction(max(S * C // 32, N * S))
        kind = 'frame' if per_frame else 'joint'
        yield _case(f'groupnorm_grad_{kind}_b{B}f{F}h{H}w{W}c{C}_eps{eps:g}', 'groupnorm_grad', seed, prec, t32,
                    {'x': x}, params, dout, _grad_tensors(prec, ['x'], params, [gx], gp),
                    meta={'groups': '32', 'eps': repr(eps), 'per_frame': '1' if per_frame else '0'},
                    level='quick' if i in (1, 3) else 'full')


def layernorm_grad_cases(prec):
    shapes = [
        (1, 4),
        (3, 7, 32),
        (2, 5, 64),
        (2, 77, 8),      # many rows: dscale/dbias sum 154 rows
        (1, 3, 128),
        (5, 24),
    ]
    for i, shape in enumerate(shapes):
        seed = 5400 + i
        r = rng(seed)
        C = shape[-1]
        x = normal(r, shape, prec, 1.5) + _f(prec)(0.5)
        params = {'scale': normal(r, (C,), prec, 0.5) + _f(prec)(1.0), 'bias': normal(r, (C,), prec, 0.5)}
        mod = nn.LayerNorm(epsilon=1e-5, dtype=_f(prec), param_dtype=_f(prec))
        fn = lambda x_, p_: mod.apply({'params': p_}, x_)
        dout = normal(r, shape, prec)
        gx, gp = _vjp(fn, (jnp.asarray(x), _jparams(params)), dout)
        rows = int(np.prod(shape[:-1]))
        t32 = TOL_NORM_FWD + tol_reduction(max(C, rows))
        yield _case('layernorm_grad_' + 'x'.join(str(d) for d in shape), 'layernorm_grad', seed, prec, t32,
                    {'x': x}, params, dout, _grad_tensors(prec, ['x'], params, [gx], gp),
                    meta={'eps': repr(1e-5)}, level='quick' if i == 1 else 'full')


def dense_grad_cases(prec):
    # (leading shape, I, O)
    shapes = [
        ((1,), 1, 1),
        ((3, 7), 7, 5),
        ((4,), 64, 48),
        ((2, 3), 64, 40),
        ((5,), 96, 32),
        ((33,), 16, 8),       # many rows: dkernel sums 33 terms
    ]
    for i, (lead, I, O) in enumerate(shapes):
        seed = 5500 + i
        r = rng(seed)
        x = normal(r, lead + (I,), prec)
        params = {'kernel': normal(r, (I, O), prec, math.sqrt(3.0 / I)), 'bias': normal(r, (O,), prec, 0.1)}
        mod = nn.Dense(O, dtype=_f(prec), param_dtype=_f(prec))
        fn = lambda x_, p_: mod.apply({'params': p_}, x_)
        dout = normal(r, lead + (O,), prec)
        gx, gp = _vjp(fn, (jnp.asarray(x), _jparams(params)), dout)
        t32 = tol_reduction(max(O, int(np.prod(lead))))
        yield _case(f'dense_grad_{"x".join(str(d) for d in lead)}_{I}to{O}', 'dense_grad', seed, prec, t32,
                    {'x': x}, params, dout, _grad_tensors(prec, ['x'], params, [gx], gp),
                    level='quick' if i == 1 else 'full')


def activation_grad_cases(prec):
    fns = [
        ('silu', nn.silu),
        ('gelu_tanh', nn.gelu),                                      # Flax nn.gelu: approximate=True
        ('gelu_erf', lambda x: jax.nn.gelu(x, approximate=False)),   # the torch port's GELU
    ]
    for i, (kind, fn) in enumerate(fns):
        seed = 5600 + i
        r = rng(seed)
        x = _activation_input(r, prec)  # special values, normal(0,3), uniform(-12,12)
        dout = normal(r, x.shape, prec)
        (gx,) = _vjp(fn, (jnp.asarray(x),), dout)
        yield _case(f'activation_grad_{kind}', 'activation_grad', seed, prec, tol_activation_grad(kind, dout, gx),
                    {'x': x}, {}, dout, [('d_x', _np(gx, prec))], meta={'kind': kind}, level='quick')


def geglu_grad_cases(prec):
    # (N, C, H, approximate)
    shapes = [
        (1, 1, 1, True),
        (3, 5, 7, True),
        (2, 32, 64, True),
        (4, 16, 24, False),      # erf GELU (torch port)
        (2, 64, 8, True),
        (9, 8, 32, True),
    ]
    for i, (N, C, H, approx) in enumerate(shapes):
        seed = 5700 + i
        r = rng(seed)
        x = normal(r, (N, C), prec)
        params = {'proj': {'kernel': normal(r, (C, 2 * H), prec, math.sqrt(3.0 / C) * 1.5),
                           'bias': normal(r, (2 * H,), prec, 0.1)}}
        mod = GEGLURef(H, approx, _f(prec))
        fn = lambda x_, p_: mod.apply({'params': p_}, x_)
        dout = normal(r, (N, H), prec)
        gx, gp = _vjp(fn, (jnp.asarray(x), _jparams(params)), dout)
        # the recomputed projection (C terms), the gate's derivative, then dx (2H terms) or dkernel (N terms)
        gelu = 'tanh' if approx else 'erf'
        t32 = tol_reduction(C) + GRAD_ERR_EPS['gelu_' + gelu] * EPS32 + tol_reduction(max(2 * H, N))
        yield _case(f'geglu_grad_n{N}_{C}to{H}_{gelu}', 'geglu_grad', seed, prec, t32,
                    {'x': x}, params, dout, _grad_tensors(prec, ['x'], params, [gx], gp),
                    meta={'gelu': gelu}, level='quick' if i == 1 else 'full')


# ---------------------------------------------------------------------------------------
# Attention (diffusers FlaxAttention). The model runs the memory-efficient path: its VJP is
# what the files hold; the standard path's VJP is checked against it here.

def _attention_params(r, prec, C, Ckv, heads, d):
    D = heads * d
    return {'to_q': {'kernel': normal(r, (C, D), prec, 2.0 * math.sqrt(3.0 / C))},
            'to_k': {'kernel': normal(r, (Ckv, D), prec, 2.0 * math.sqrt(3.0 / Ckv))},
            'to_v': {'kernel': normal(r, (Ckv, D), prec, math.sqrt(3.0 / Ckv))},
            'to_out_0': {'kernel': normal(r, (D, C), prec, math.sqrt(3.0 / D)), 'bias': normal(r, (C,), prec, 0.1)}}


def _attention_vjp(prec, C, heads, d, make_fn, primals, dout, t32):
    """VJP of the memory-efficient path, checked against the standard path."""
    res = []
    for memeff in (False, True):
        mod = FlaxAttention(query_dim=C, heads=heads, dim_head=d, use_memory_efficient_attention=memeff, dtype=_f(prec))
        res.append(_vjp(make_fn(mod), primals, dout))
    leaves = [(np.asarray(a, np.float64), np.asarray(b, np.float64))
              for a, b in zip(jax.tree_util.tree_leaves(res[0]), jax.tree_util.tree_leaves(res[1]))]
    top = max(float(np.max(np.abs(b))) for _, b in leaves)
    for a, b in leaves:
        m = float(np.max(np.abs(b)))
        if m <= 1e-5 * top:
            continue  # a gradient that is zero in exact arithmetic (single key): rounding noise
        assert np.max(np.abs(a - b)) <= max(t32, 1e-12) * m, 'standard and memory-efficient VJPs differ'
    return res[1]


def _attention_tol(C, Ckv, D, d, Tq, Tk, rows):
    # recomputed forward (projections C/Ckv terms, q.k d terms, p.v Tk terms) then backward:
    # do (Cq terms), dP (d terms), ds k and ds^T q (Tk / Tq terms), the weight gradients
    # (rows terms) and the input gradients (D terms)
    fwd = tol_reduction(max(C, Ckv)) + tol_reduction(d) + tol_reduction(Tk)
    return fwd + tol_reduction(C) + tol_reduction(d) + tol_reduction(max(Tk, Tq)) + tol_reduction(max(rows, D))


def _zero_grads(grads, names):
    """Drop gradients that are zero in exact arithmetic (single-key softmax), after checking
    that JAX's value is zero up to rounding; return (kept, meta value)."""
    kept, zero = [], []
    ref = max(float(np.max(np.abs(g))) for n, g in grads if n not in names)
    for n, g in grads:
        if n in names:
            assert float(np.max(np.abs(g))) <= 1e-5 * ref, f'{n} should be zero'
            zero.append(n)
        else:
            kept.append((n, g))
    return kept, ','.join(zero)


def attention_self_grad_cases(prec):
    # (N, T, C, heads, dim_head)
    shapes = [
        (1, 1, 8, 1, 8),       # one token: softmax constant, q and k get no gradient
        (2, 7, 16, 2, 8),
        (2, 5, 32, 4, 8),
        (1, 67, 16, 2, 8),     # two query blocks (ATTN_QUERY_BLOCK = 64)
        (1, 9, 24, 1, 24),     # single head
        (2, 4, 64, 8, 8),      # 8 heads
    ]
    for i, (N, T, C, heads, d) in enumerate(shapes):
        seed = 5800 + i
        r = rng(seed)
        x = normal(r, (N, T, C), prec)
        params = _attention_params(r, prec, C, C, heads, d)
        dout = normal(r, (N, T, C), prec)
        t32 = _attention_tol(C, C, heads * d, d, T, T, N * T)
        gx, gp = _attention_vjp(prec, C, heads, d, lambda mod: (lambda x_, p_: mod.apply({'params': p_}, x_)),
                                (jnp.asarray(x), _jparams(params)), dout, t32)
        grads = _grad_tensors(prec, ['x'], params, [gx], gp)
        meta = {'heads': str(heads), 'dim_head': str(d)}
        if T == 1:
            grads, meta['zero_grads'] = _zero_grads(grads, ('d_to_q.kernel', 'd_to_k.kernel'))
        yield _case(f'attention_self_grad_n{N}t{T}c{C}h{heads}', 'attention_self_grad', seed, prec, t32,
                    {'x': x}, params, dout, grads, meta=meta, level='quick' if i == 1 else 'full')


def attention_cross_grad_cases(prec):
    # (B, F, T, Tk, C, Ckv, heads, dim_head)
    shapes = [
        (1, 1, 1, 1, 8, 12, 1, 8),        # one token, one key
        (2, 3, 5, 7, 16, 24, 2, 8),       # two prompts x three frames: batch-major repeat
        (1, 2, 4, 77, 32, 48, 4, 8),      # 77 text tokens
        (1, 6, 2, 9, 16, 12, 2, 8),       # 6 frames share one prompt: d_context sums them
        (2, 1, 3, 5, 24, 16, 1, 24),      # single head, one frame
    ]
    for i, (B, F, T, Tk, C, Ckv, heads, d) in enumerate(shapes):
        seed = 5900 + i
        r = rng(seed)
        x = normal(r, (B * F, T, C), prec)
        ctx = normal(r, (B, Tk, Ckv), prec)
        params = _attention_params(r, prec, C, Ckv, heads, d)
        dout = normal(r, (B * F, T, C), prec)
        t32 = _attention_tol(C, Ckv, heads * d, d, T, Tk, B * F * T) + tol_reduction(F)  # + the frames' sum

        def make_fn(mod):
            # the transformer block repeats the context per frame (jnp.repeat, axis 0) inside
            # the differentiated function, so d_context sums over the frames
            return lambda x_, c_, p_: mod.apply({'params': p_}, x_, jnp.repeat(c_, F, axis=0))
        gx, gc, gp = _attention_vjp(prec, C, heads, d, make_fn, (jnp.asarray(x), jnp.asarray(ctx), _jparams(params)),
                                    dout, t32)
        grads = _grad_tensors(prec, ['x', 'context'], params, [gx, gc], gp)
        meta = {'heads': str(heads), 'dim_head': str(d), 'frames': str(F)}
        if Tk == 1:
            grads, meta['zero_grads'] = _zero_grads(grads, ('d_to_q.kernel', 'd_to_k.kernel'))
        yield _case(f'attention_cross_grad_b{B}f{F}t{T}k{Tk}c{C}h{heads}', 'attention_cross_grad', seed, prec, t32,
                    {'x': x, 'context': ctx}, params, dout, grads, meta=meta, level='quick' if i == 1 else 'full')


def attention_temporal_grad_cases(prec):
    # (B, F, H, W, C, heads, dim_head)
    shapes = [
        (1, 1, 2, 2, 16, 2, 8),       # one frame: each pixel attends to itself only
        (2, 2, 1, 3, 16, 2, 8),
        (1, 3, 2, 2, 32, 4, 8),
        (1, 8, 1, 2, 24, 1, 24),      # single head
        (1, 24, 1, 1, 16, 2, 8),      # 24 frames
        (1, 5, 1, 3, 24, 3, 8),       # odd frames, 3 heads
    ]
    for i, (B, F, H, W, C, heads, d) in enumerate(shapes):
        seed = 6000 + i
        r = rng(seed)
        x = normal(r, (B, F, H, W, C), prec)
        params = _attention_params(r, prec, C, C, heads, d)
        dout = normal(r, (B, F, H, W, C), prec)
        t32 = _attention_tol(C, C, heads * d, d, F, F, B * F * H * W)

        def make_fn(mod):
            def fn(x_, p_):
                xs = x_.transpose(0, 2, 3, 1, 4).reshape(B * H * W, F, C)  # (b h w) f c
                y = mod.apply({'params': p_}, xs)
                return y.reshape(B, H, W, F, C).transpose(0, 3, 1, 2, 4)
            return fn
        gx, gp = _attention_vjp(prec, C, heads, d, make_fn, (jnp.asarray(x), _jparams(params)), dout, t32)
        grads = _grad_tensors(prec, ['x'], params, [gx], gp)
        meta = {'heads': str(heads), 'dim_head': str(d)}
        if F == 1:
            grads, meta['zero_grads'] = _zero_grads(grads, ('d_to_q.kernel', 'd_to_k.kernel'))
        yield _case(f'attention_temporal_grad_b{B}f{F}h{H}w{W}c{C}h{heads}', 'attention_temporal_grad', seed, prec,
                    t32, {'x': x}, params, dout, grads, meta=meta, level='quick' if i == 2 else 'full')


# ---------------------------------------------------------------------------------------
# Nearest resize and the timestep MLP

def upsample_grad_cases(prec):
    # (N, H, W, C, Ho, Wo)
    shapes = [
        (1, 1, 1, 1, 2, 2),        # one pixel: the sum of all 4 outputs
        (2, 3, 5, 4, 6, 10),       # odd sizes
        (6, 4, 4, 8, 8, 8),        # (B*F) frames
        (1, 2, 3, 16, 4, 6),
        (1, 3, 5, 2, 7, 3),        # a general nearest resize (some inputs get 0, 1 or more)
    ]
    for i, (N, H, W, C, Ho, Wo) in enumerate(shapes):
        seed = 6100 + i
        r = rng(seed)
        x = normal(r, (N, H, W, C), prec)
        dout = normal(r, (N, Ho, Wo, C), prec)
        (gx,) = _vjp(lambda x_: jax.image.resize(x_, (N, Ho, Wo, C), method='nearest'), (jnp.asarray(x),), dout)
        yield _case(f'upsample_nearest_grad_n{N}h{H}w{W}c{C}_to{Ho}x{Wo}', 'upsample_nearest_grad', seed, prec,
                    TOL_SUM4,  # every input pixel here collects at most 4 outputs
                    {'x': x}, {}, dout, [('d_x', _np(gx, prec))], meta={'Ho': str(Ho), 'Wo': str(Wo)},
                    level='quick' if i == 1 else 'full')


def timestep_grad_cases(prec):
    # (timesteps, sinusoid width Cs, embedding width Ct)
    sets = [
        ([0.0], 32, 64),
        ([999.0], 32, 48),
        ([0.0, 1.0, 250.0, 499.0, 981.0], 32, 64),
        ([500.0, 10.0], 320, 40),      # the UNet's sinusoid width
    ]
    for i, (ts, Cs, Ct) in enumerate(sets):
        seed = 6200 + i
        r = rng(seed)
        t32_in = np.asarray(ts, np.float32)
        # the MLP's input is the (float32) sinusoid; its gradient d_sinusoid is a check only
        sinus = np.asarray(FlaxTimesteps(dim=Cs, flip_sin_to_cos=True, freq_shift=0).apply({}, jnp.asarray(t32_in)))
        sinus = sinus.astype(_f(prec))
        params = {'linear_1': {'kernel': normal(r, (Cs, Ct), prec, math.sqrt(3.0 / Cs)), 'bias': normal(r, (Ct,), prec, 0.1)},
                  'linear_2': {'kernel': normal(r, (Ct, Ct), prec, math.sqrt(3.0 / Ct)), 'bias': normal(r, (Ct,), prec, 0.1)}}
        mod = FlaxTimestepEmbedding(time_embed_dim=Ct, dtype=_f(prec))
        fn = lambda s_, p_: mod.apply({'params': p_}, s_)
        dout = normal(r, (len(ts), Ct), prec)
        gs, gp = _vjp(fn, (jnp.asarray(sinus), _jparams(params)), dout)
        # recomputed forward (Cs terms), da (Ct terms), silu', then ds (Ct terms) or dw1 (N terms)
        t32 = tol_reduction(Cs) + tol_reduction(Ct) + GRAD_ERR_EPS['silu'] * EPS32 + tol_reduction(max(Ct, len(ts)))
        yield _case(f'timestep_embedding_grad_{len(ts)}_{Cs}to{Ct}', 'timestep_embedding_grad', seed, prec, t32,
                    {'t': t32_in.astype(_f(prec)), 'sinusoid': sinus}, params, dout,
                    _grad_tensors(prec, ['sinusoid'], params, [gs], gp), level='quick' if i == 2 else 'full')


def cases(prec):
    yield from conv2d_grad_cases(prec)
    yield from temporal_conv_grad_cases(prec)
    yield from conv_pseudo3d_grad_cases(prec)
    yield from groupnorm_grad_cases(prec)
    yield from layernorm_grad_cases(prec)
    yield from dense_grad_cases(prec)
    yield from activation_grad_cases(prec)
    yield from geglu_grad_cases(prec)
    yield from attention_self_grad_cases(prec)
    yield from attention_cross_grad_cases(prec)
    yield from attention_temporal_grad_cases(prec)
    yield from upsample_grad_cases(prec)
    yield from timestep_grad_cases(prec)
