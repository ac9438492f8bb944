"""Shared glue of the PyTorch adapters (torch_diffusers.py, torch_transformers.py,
torch_makeavid.py): read a case with tools/mavcase.py, build a library module, fill its
parameters from the case (stored, or procedural by the corpus rule under their Flax names),
run an op function, write the outputs. Needs the environment of `make conformance-env`.

An adapter is `python ADAPTER.py CASE.safetensors OUT.safetensors`. Exit status:
  0  outputs written
  3  the library has no counterpart for the case's op ("unsupported op X"): `mavref check`
     and `make conformance` show it as unsupported, not as a failure
  other: the adapter failed (a traceback on stderr)

Parameter naming. The corpus names parameters by their Flax paths ("down_blocks_0.resnets_1.
conv1.spatial_conv.kernel", "text_model.encoder.layers.0.mlp.fc1.kernel"); a PyTorch module
names them "down_blocks.0.resnets.1.conv1.weight". `flax_names` gives the candidates of a
torch name; `load_params` fills every parameter of a module and fails when one has no
counterpart or a shape differs. Layouts: conv OIHW <- HWIO, Linear (out, in) <- (in, out),
norms and embeddings unchanged.
"""
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import mavcase  # noqa: E402
import procgen  # noqa: E402

import torch  # noqa: E402

UNSUPPORTED = 3

torch.set_num_threads(int(os.environ.get('MAVREF_THREADS', '2')))


class Unsupported(Exception):
    pass


def unsupported(op, why=''):
    raise Unsupported(f'unsupported op {op}' + (f': {why}' if why else ''))


def tdtype(case):
    return torch.float64 if case.precision == 'f64' else torch.float32


def T(a, case, grad=False):
    """numpy -> torch in the case's float precision (integers kept)."""
    a = np.asarray(a)
    if a.dtype.kind == 'f':
        t = torch.from_numpy(np.ascontiguousarray(a)).to(tdtype(case))
        return t.requires_grad_(grad)
    return torch.from_numpy(np.ascontiguousarray(a))


def N(t):
    return t.detach().cpu().numpy()


def proc_rule(name, shape):
    """(scale, offset) of a procedural parameter: tools/mavflax.proc_rule and ref/params.c
    (params_proc_rule), with CLIP's embedding tables (scale 1)."""
    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'kernel':
        return math.sqrt(3.0 / int(np.prod(shape[:-1]))), 0.0
    if leaf == 'bias':
        return 0.1, 0.0
    if leaf == 'scale':
        return 0.1, 1.0
    if leaf == 'embedding':
        return 1.0, 0.0
    raise ValueError(f'no procedural rule for {name}')


def flax_names(tname, ndim, numbered='underscore', kind=None):
    """Candidate Flax names of a torch parameter name (first that exists wins).
    numbered: 'underscore' (diffusers' Flax modules: down_blocks_0) or 'dot' (transformers'
    Flax CLIP: layers.0). kind: 'embedding' for nn.Embedding weights."""
    # diffusers' Downsample2D registers its conv twice (Conv2d_0 and conv): Flax names it conv
    parts = ['conv' if p == 'Conv2d_0' else p for p in tname.split('.')]
    if numbered == 'underscore':
        out = []
        for p in parts:
            if p.isdigit() and out:
                out[-1] += '_' + p
            else:
                out.append(p)
        parts = out
    leaf = parts[-1]
    if leaf == 'weight':
        leaf = 'embedding' if kind == 'embedding' else 'kernel' if ndim >= 2 else 'scale'
    stem = '.'.join(parts[:-1])
    base = f'{stem}.{leaf}' if stem else leaf
    # mavflax's ConvPseudo3D keeps the spatial conv as `X.spatial_conv` even in 2-D mode
    return [base, f'{stem}.spatial_conv.{leaf}']


def to_torch_layout(a, ndim_kind):
    if ndim_kind == 'conv':
        return np.ascontiguousarray(a.transpose(3, 2, 0, 1))
    if ndim_kind == 'linear':
        return np.ascontiguousarray(a.T)
    if ndim_kind == 'conv1d':
        return np.ascontiguousarray(a.transpose(2, 1, 0))
    return a


def flax_shape(tshape, kind):
    if kind == 'conv':
        o, i, kh, kw = tshape
        return (kh, kw, i, o)
    if kind == 'linear':
        return (tshape[1], tshape[0])
    if kind == 'conv1d':  # nn.Conv1d (out, in, k) <- Flax temporal (k, in, out)
        return (tshape[2], tshape[1], tshape[0])
    return tuple(tshape)


def load_params(module, case, seed=None, numbered='underscore', meta=None, stored=None, prefix='', optional=None):
    """Fill every parameter of `module`. Sources, in order: `stored` ({flax name: array},
    e.g. case.params), the case's `gen.NAME` metadata, else the corpus rule with `seed`.
    optional(torch name): parameters the case may lack (left as the module has them)."""
    meta = meta if meta is not None else mavcase._metadata(case.path)
    stored = stored or {}
    emb = {n + '.weight' for n, m in module.named_modules() if isinstance(m, torch.nn.Embedding)}
    state = {}
    used = set()
    for tname, p in module.named_parameters():
        shape = tuple(p.shape)
        kind = 'embedding' if tname in emb else 'conv' if len(shape) == 4 else 'linear' if len(shape) == 2 \
            else 'conv1d' if len(shape) == 3 else 'vec'
        cands = [prefix + c for c in flax_names(tname, len(shape), numbered, 'embedding' if kind == 'embedding' else None)]
        fshape = flax_shape(shape, kind)
        a = None
        for c in cands:
            if c in stored:
                a = np.asarray(stored[c])
            elif 'gen.' + c in meta:
                s, scale, offset, dims = meta['gen.' + c].split()
                a = procgen.fill(tuple(int(d) for d in dims.split('x')) if dims else (), int(s), c,
                                 float(scale), float(offset))
            if a is not None:
                used.add(c)
                break
        if a is None and optional is not None and optional(tname):
            continue
        if a is None:
            if seed is None:
                raise SystemExit(f'torchcase: no value for {tname} (tried {cands})')
            c = cands[0]
            scale, offset = proc_rule(c, fshape)
            a = procgen.fill(fshape, int(seed), c, scale, offset)
            used.add(c)
        if tuple(a.shape) != fshape:
            raise SystemExit(f'torchcase: {tname}: the case has {c} of shape {a.shape}, the module wants {fshape}')
        state[tname] = torch.from_numpy(to_torch_layout(a.astype(np.float64), kind))
    with torch.no_grad():
        for tname, p in module.named_parameters():
            if tname in state:
                p.copy_(state[tname].to(p.dtype))
    return used


def header(path):
    import json
    with open(path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        return json.loads(f.read(n))


def main(ops, argv=None, precheck=None):
    """Run the op function of the case at argv[1] and write argv[2]. ops: {op: fn(case)}
    with fn returning {output name: numpy array in the case's mavref layout}."""
    argv = argv if argv is not None else sys.argv
    if len(argv) != 3:
        sys.exit(f'usage: {argv[0]} CASE.safetensors OUT.safetensors')
    try:
        # decide from the file's header first: loading a case regenerates its procedural
        # network (the real UNet: minutes and gigabytes) before any op code runs
        head = header(argv[1])
        meta = head.get('__metadata__', {})
        op = meta.get('op', '?')
        if op not in ops:
            unsupported(op)
        if os.environ.get('MAVREF_SKIP_REAL') == '1' and '_real' in os.path.basename(argv[1]):
            unsupported(op, 'skipped: a real-size case (MAVREF_SKIP_REAL=1)')
        if precheck and op in precheck:
            precheck[op](meta, head)
        case = mavcase.load(argv[1], layout='torch')
        fn = ops[case.op]
        with torch.inference_mode(False):
            outs = fn(case)
    except Unsupported as e:
        print(f'{os.path.basename(argv[0])}: {e}', file=sys.stderr)
        sys.exit(UNSUPPORTED)
    case.write(argv[2], outs)
