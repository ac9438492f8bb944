"""A second implementation in plain numpy of the elementary operators, as a `mavref check`
adapter: the smallest example of plugging a backend into the corpus.

    mavref check --backend 'tools/.venv/bin/python tools/backends/numpy_ops.py {case} {out}' \
                 --ops 'activation,dense,layernorm,groupnorm,conv2d,geglu,upsample_nearest'

Written from the Flax modules' definitions (flax.linen GroupNorm, LayerNorm, Dense, Conv;
diffusers FlaxGEGLU; jax.image.resize 'nearest'), not from mavref's C. It computes in the
case's precision with numpy's own summation order, so in float32 it differs from mavref and
from XLA by rounding only. An op it does not know is reported by exiting with status 3.
"""
import math
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit('/', 2)[0])
import mavcase  # noqa: E402

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x, kind):
    if kind in ('erf', 'gelu_erf'):
        return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))).astype(x.dtype)
    c = x.dtype.type(math.sqrt(2.0 / math.pi))
    return x.dtype.type(0.5) * x * (1 + np.tanh(c * (x + x.dtype.type(0.044715) * x ** 3)))


def activation(case):
    x, kind = case.inputs['x'], case.attrs['kind']
    if kind == 'silu':
        return {'y': x / (1 + np.exp(-x))}
    if kind == 'quick_gelu':
        return {'y': x / (1 + np.exp(x.dtype.type(-1.702) * x))}
    return {'y': gelu(x, kind)}


def dense(case):
    return {'y': case.inputs['x'] @ case.params['kernel'] + case.params['bias']}


def layernorm(case):
    x, eps = case.inputs['x'], case.attr('eps', float)
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return {'y': (x - m) / np.sqrt(v + x.dtype.type(eps)) * case.params['scale'] + case.params['bias']}


def groupnorm(case):
    x, G, eps = case.inputs['x'], case.attr('groups', int), case.attr('eps', float)
    B, F, H, W, C = x.shape
    per_frame = case.attr('per_frame', int)
    g = x.reshape(B * F if per_frame else B, -1, G, C // G)  # statistics over axes 1 and 3
    m = g.mean((1, 3), keepdims=True)
    v = ((g - m) ** 2).mean((1, 3), keepdims=True)
    y = ((g - m) / np.sqrt(v + x.dtype.type(eps))).reshape(x.shape)
    return {'y': y * case.params['scale'] + case.params['bias']}


def conv2d(case):
    x, k, b = case.inputs['x'], case.params['kernel'], case.params['bias']
    s = case.attr('stride', int)
    pt, pb, pl, pr = (int(v) for v in case.attrs['pad'].split(','))
    N, H, W, Ci = x.shape
    KH, KW, _, Co = k.shape
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    Ho, Wo = (H + pt + pb - KH) // s + 1, (W + pl + pr - KW) // s + 1
    y = np.zeros((N, Ho, Wo, Co), x.dtype)
    for i in range(KH):
        for j in range(KW):
            y += xp[:, i:i + s * Ho:s, j:j + s * Wo:s, :] @ k[i, j]
    return {'y': y + b}


def geglu(case):
    h = case.inputs['x'] @ case.params['proj.kernel'] + case.params['proj.bias']
    a, gate = np.split(h, 2, axis=-1)
    return {'y': a * gelu(gate, case.attrs['gelu'])}


def upsample_nearest(case):
    x = case.inputs['x']
    Ho, Wo = case.attr('Ho', int), case.attr('Wo', int)
    N, H, W, C = x.shape
    # jax.image.resize 'nearest': source index floor((i + 0.5) * in / out)
    ri = np.floor((np.arange(Ho) + 0.5) * H / Ho).astype(int)
    ci = np.floor((np.arange(Wo) + 0.5) * W / Wo).astype(int)
    return {'y': x[:, ri][:, :, ci]}


OPS = {f.__name__: f for f in (activation, dense, layernorm, groupnorm, conv2d, geglu, upsample_nearest)}


def main():
    case = mavcase.load(sys.argv[1])
    if case.op not in OPS:
        print(f'numpy_ops: no {case.op}', file=sys.stderr)
        sys.exit(3)
    case.write(sys.argv[2], OPS[case.op](case))


if __name__ == '__main__':
    main()
