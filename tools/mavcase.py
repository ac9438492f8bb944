"""Read a mavref corpus case and write a backend's outputs: the adapter author's module.

Needs numpy and safetensors only. An adapter is any command that `mavref check` runs as
`CMD CASE.safetensors OUT.safetensors`; with this module it is a few lines:

    import sys, mavcase
    case = mavcase.load(sys.argv[1], layout='torch')   # arrays converted to NCHW / NCFHW / OIHW
    x, w, b = case.inputs['x'], case.params['kernel'], case.params['bias']
    y = my_conv2d(x, w, b, stride=int(case.attrs['stride']))
    case.write(sys.argv[2], {'y': y})                  # converted back, shapes checked

What a case holds is its contract (vectors/contract.json, tools/contract.py, SPEC.md): the
op, its attributes (strings, as the file's metadata has them), and every tensor with a role:
`inputs`, `params`, `expected` (the outputs, for the adapter's own debugging; `mavref check`
compares against the file, not against what the adapter claims) and `aux`. Procedural
tensors (`gen.NAME` metadata) are regenerated here exactly as mavref does (tools/procgen.py).

Layouts. mavref's tensors are channels-last (SPEC.md section 1.2). With layout='torch' the
arrays are converted to PyTorch's conventions and `write` converts outputs back:

    contract layout     mavref                 PyTorch
    BFHWC               (B, F, H, W, C)        (B, C, F, H, W)   NCFHW
    NHWC                (N, H, W, C)           (N, C, H, W)      NCHW
    HWIO  conv kernel   (KH, KW, Cin, Cout)    (Cout, Cin, KH, KW)   nn.Conv2d.weight
    KIO   temporal      (3, Cin, Cout)         (Cout, Cin, 3)        nn.Conv1d.weight
    IO    dense kernel  (in, out)              (out, in)             nn.Linear.weight
    others (C, BSC, ...C, BCFHW, BCHW, B, any) unchanged

    python tools/mavcase.py CASE.safetensors     prints the case's contract
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procgen  # noqa: E402  (numpy only)

# layout -> axis permutation from mavref's order to PyTorch's
TORCH_PERM = {
    'BFHWC': (0, 4, 1, 2, 3),
    'NHWC': (0, 3, 1, 2),
    'HWIO': (3, 2, 0, 1),
    'KIO': (2, 1, 0),
    'IO': (1, 0),
}

_CONTRACTS = {}


def _contract(vectors):
    path = os.path.join(vectors, 'contract.json')
    if path not in _CONTRACTS:
        with open(path) as f:
            doc = json.load(f)
        _CONTRACTS[path] = {c['file']: c for c in doc['cases']}
    return _CONTRACTS[path]


def to_torch(arr, layout):
    perm = TORCH_PERM.get(layout)
    return np.ascontiguousarray(arr.transpose(perm)) if perm and arr.ndim == len(perm) else arr


def from_torch(arr, layout):
    perm = TORCH_PERM.get(layout)
    if not perm or arr.ndim != len(perm):
        return arr
    return np.ascontiguousarray(arr.transpose(np.argsort(perm)))


def procedural_param(name, shape, seed, dtype=np.float64):
    """A network parameter as mavref's params_procedural makes it (SPEC.md, procedural
    weights): for cases whose contract gives only `param_count` and `weights_seed` (VAE, CLIP),
    call this for each parameter of your module, by its Flax path name."""
    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'kernel':
        scale, offset = float(np.sqrt(3.0 / int(np.prod(shape[:-1])))), 0.0
    elif leaf == 'scale':
        scale, offset = 0.1, 1.0
    elif leaf == 'embedding':   # CLIP's token and position tables (ref/params.c)
        scale, offset = 1.0, 0.0
    elif leaf == 'bias':
        scale, offset = 0.1, 0.0
    else:
        raise ValueError(f'mavcase: no procedural rule for parameter {name} (ref/params.c)')
    return procgen.fill(tuple(shape), int(seed), name, scale, offset).astype(dtype)


class Case:
    """One corpus case: op, attrs, inputs, params, expected, aux, and the output contract."""

    def __init__(self, path, layout=None, vectors=None):
        path = os.path.abspath(path)
        vectors = vectors or os.path.dirname(os.path.dirname(path))
        rel = os.path.relpath(path, vectors)
        entry = _contract(vectors).get(rel)
        if entry is None:
            raise SystemExit(f'mavcase: {path}: no contract entry for {rel} in {vectors}/contract.json')
        if layout not in (None, 'torch'):
            raise ValueError("layout must be None (mavref's) or 'torch'")
        self.path, self.layout, self.entry = path, layout, entry
        self.name, self.op, self.precision = entry['name'], entry['op'], entry['precision']
        self.attrs = dict(entry['attrs'])
        self.tol = entry['tol']
        self.dtype = np.float32 if self.precision == 'f32' else np.float64
        self.tensors = {t['name']: t for t in entry['tensors']}
        self.outputs = [t for t in entry['tensors'] if t['role'] == 'output']
        stored = load_file(path)
        self.inputs, self.params, self.expected, self.aux = {}, {}, {}, {}
        bag = {'input': self.inputs, 'param': self.params, 'output': self.expected, 'aux': self.aux}
        for t in entry['tensors']:
            if t['source'] == 'stored':
                a = stored[t['name']]
            elif t['source'] == 'gen':
                seed, scale, offset, _ = t['gen'].split()
                a = procgen.fill(tuple(t['shape']), int(seed), t['name'], float(scale), float(offset)).astype(self.dtype)
            else:  # 'zero': an output that is exactly zero
                a = np.zeros(t['shape'], self.dtype)
            bag[t['role']][t['name']] = self._out(a, t['layout'])
        # a network's procedural weights, named in the `params` metadata (model ops)
        if 'param_count' in self.attrs and 'weights_seed' in self.attrs:
            meta = _metadata(path)
            for name in filter(None, meta.get('params', '').split(',')):
                if name.isdigit() or ('gen.' + name) not in meta:
                    continue
                seed, scale, offset, dims = meta['gen.' + name].split()
                shape = tuple(int(d) for d in dims.split('x')) if dims else ()
                a = procgen.fill(shape, int(seed), name, float(scale), float(offset)).astype(self.dtype)
                self.params[name] = self._out(a, _param_layout(name, len(shape)))

    def _out(self, a, layout):
        return to_torch(a, layout) if self.layout == 'torch' else a

    def attr(self, key, kind=str):
        """An attribute converted: attr('stride', int), attr('eps', float)."""
        return kind(self.attrs[key])

    def write(self, out, outputs):
        """Write {name: array} to OUT (safetensors, the case's precision), converting from
        PyTorch layouts when the case was loaded with layout='torch'. Every array must have
        the contract's shape; outputs left out are simply missing (the check reports them)."""
        tensors = {}
        for name, arr in outputs.items():
            t = self.tensors.get(name)
            if t is None or t['role'] != 'output':
                raise SystemExit(f'mavcase: {name} is not an output of {self.op}')
            a = np.asarray(arr)
            if self.layout == 'torch':
                a = from_torch(a, t['layout'])
            if list(a.shape) != list(t['shape']):
                raise SystemExit(f'mavcase: output {name} has shape {tuple(a.shape)}, the contract says {tuple(t["shape"])}')
            want = np.int64 if t['dtype'] == 'I64' else np.int32 if t['dtype'] == 'I32' else \
                np.uint8 if t['dtype'] == 'U8' else self.dtype
            tensors[name] = np.ascontiguousarray(a.astype(want))
        tmp = out + '.tmp'
        save_file(tensors, tmp, metadata={'op': self.op, 'case': self.name})
        os.replace(tmp, out)

    def describe(self):
        lines = [f'{self.name}: op {self.op}, {self.precision}, level {self.entry["level"]}, tol {self.tol:g}',
                 '  attrs ' + json.dumps(self.attrs)]
        for t in self.entry['tensors']:
            lines.append(f'  {t["role"]:6s} {t["name"]:40s} {str(tuple(t["shape"])):24s} {t["layout"]:6s} {t["source"]}'
                         + (f'  tol {t["tol"]:g} ({t["compare"]})' if t['role'] == 'output' else ''))
        n = len(self.params) - sum(1 for t in self.entry['tensors'] if t['role'] == 'param')
        if n > 0:
            lines.append(f'  param  ... {n} procedural network parameters (meta `params`)')
        return '\n'.join(lines)


def _metadata(path):
    with open(path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        return json.loads(f.read(n)).get('__metadata__', {})


def _param_layout(name, ndim):
    if name.endswith('kernel'):
        return 'HWIO' if ndim == 4 else 'KIO' if ndim == 3 and 'temporal_conv' in name else 'IO'
    return 'C'


def load(path, layout=None, vectors=None):
    """The case at `path`; vectors/contract.json is found two directories up unless given."""
    return Case(path, layout, vectors)


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: python tools/mavcase.py CASE.safetensors')
    print(load(sys.argv[1]).describe())
