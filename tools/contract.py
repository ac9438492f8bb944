"""The case contract of the golden corpus: what every case computes, from what, into what.

    python3 tools/contract.py [--vectors vectors] [--check]

Writes vectors/contract.json (or, with --check, verifies that the committed file is what this
tool writes now). Needs the Python standard library only: it reads the manifest and each case
file's safetensors header, never the tensor data, so it runs in a second and leaves the frozen
corpus untouched.

For every manifest case the contract gives its op, precision, level, file, tolerance, its
attributes (the file's metadata minus the exporter's bookkeeping: `op`, `seed`, `gen.*`,
`tol.*`, `params`) and every tensor with its role:

  input    data the op consumes                 (x, context, t, dout, ...)
  param    a learned weight                     (kernel, bias, scale, ...)
  output   what a backend must produce          (y, d_x, tap.*, ...)
  aux      recorded for the harness only        (scheduler timesteps, tokenizer offsets, ...)

with its shape, dtype, layout (see LAYOUTS) and source: `stored` (in the file), `gen` (a
procedural tensor regenerated from the `gen` string, ref/procedural.c or tools/procgen.py) or
`zero` (an output that is exactly zero in exact arithmetic; it has no stored tensor and the
backend's value must be all zeros). Each output has its own `tol` (the manifest's, unless
the file's `tol.NAME` metadata says otherwise) and `compare` (`rel`: max|got-exp| <= tol *
max|exp|; `exact`: integers equal).

The roles are the case modules' convention (tools/cases_*.py), written down per op in ROLES
below; an op whose every tensor is not covered by its rule is an error, so a new op or a new
tensor name in the exporter fails this tool until its contract is stated.

`pluggable` is false for the ops whose harness checks are more than tensor comparisons
(tokenize: byte strings; pipeline: frame bytes by a rule; unet_grad, vae_*_grad and
train_step: gradient summaries against per-run random directions; toyworld: a generator
checked by run_tests): `mavref check` lists them as not pluggable.
"""
import argparse
import fnmatch
import json
import os
import struct
import sys

# Layout names (row-major, last axis fastest). PyTorch's equivalents are in tools/mavcase.py.
LAYOUTS = {
    'BFHWC': 'video activation (batch, frames, height, width, channels)',
    'NHWC': 'image activation (batch or batch*frames, height, width, channels)',
    'BCFHW': "the UNet's external video layout (batch, channels, frames, height, width)",
    'BCHW': "the UNet's external 2-D layout / VAE image (batch, channels, height, width)",
    'HWIO': '2-D conv kernel (KH, KW, Cin, Cout)',
    'KIO': 'temporal conv kernel (3, Cin, Cout)',
    'IO': 'dense kernel (in, out)',
    'C': 'per-channel vector',
    '...C': 'any leading axes, channels last',
    'BSC': 'sequence (batch, tokens, channels)',
    'B': 'one value per batch item',
    'any': 'no axis meaning (elementwise op, scheduler state, ids)',
}

_GRAD_OPS = ('conv2d_grad', 'temporal_conv_grad', 'conv_pseudo3d_grad', 'groupnorm_grad', 'layernorm_grad',
             'dense_grad', 'activation_grad', 'geglu_grad', 'attention_self_grad', 'attention_cross_grad',
             'attention_temporal_grad', 'upsample_nearest_grad', 'timestep_embedding_grad')
_PARAM_PATTERNS = ('*kernel', '*bias', '*scale', 'linear_*', 'w.*')

# op -> (inputs, outputs, aux) as lists of fnmatch patterns; any other tensor must match a
# param pattern. Output order is the order the check reports them in.
ROLES = {
    'groupnorm': (['x'], ['y'], []),
    'conv2d': (['x'], ['y'], []),
    'temporal_conv': (['x'], ['y'], []),
    'conv_pseudo3d': (['x'], ['y'], []),
    'layernorm': (['x'], ['y'], []),
    'dense': (['x'], ['y'], []),
    'activation': (['x'], ['y'], []),
    'geglu': (['x'], ['y'], []),
    'attention_self': (['x'], ['y', 'y_memeff'], []),
    'attention_cross': (['x', 'context'], ['y', 'y_memeff'], []),
    'attention_temporal': (['x'], ['y', 'y_memeff'], []),
    'attention_clip': (['x'], ['y'], []),
    'upsample_nearest': (['x'], ['y'], []),
    # the sinusoid is an output and, as stored, the input of the two linears (so that temb is
    # compared without the float32 sinusoid's legitimate spread, SPEC.md)
    'timestep_embedding': (['t'], ['sinusoid', 'temb'], []),
    'resnet': (['x', 'temb'], ['y'], []),
    'transformer': (['x', 'context'], ['y'], []),
    'downsample': (['x'], ['y'], []),
    'upsample': (['x'], ['y'], []),
    # time_proj: the float32-sinusoid cases' fed sinusoid (meta sinusoid=float32, SPEC.md 13.4)
    'unet': (['sample', 'timesteps', 'context', 'time_proj'], ['tap.*', 'out'], []),
    'vae': (['image', 'latents'], ['mean', 'logvar', 'decoded'], []),
    'clip_text': (['ids'], ['hidden'], []),
    'sched_schedule': ([], ['betas', 'alphas_cumprod', 'alpha_t', 'sigma_t', 'lambda_t'], []),
    'sched_step': (['x', 'eps'], ['latents'], ['timesteps']),
    'sched_add_noise': (['x0', 'noise', 't'], ['noisy', 'velocity'], []),  # velocity: v_prediction's target
    'noise_normal': ([], ['z'], []),
    'image_quantize': (['x'], ['q'], []),
    'image_resize_nearest': (['x'], ['y'], []),
    'tokenize': (['text', 'text_offsets'], ['ids'], ['ids_offsets', 'mojibake']),
    'pipeline': (['hint', 'mask', 'noise', 'hint_noise'],
                 ['ids', 'neg_ids', 'text_emb', 'neg_emb', 'hint_latent', 'mask_latent', 'timesteps',
                  'latents_steps', 'frames_float', 'frames'], []),
    'unet_grad': (['sample', 'timesteps', 'context', 'w', 'sample.*', 'timesteps.*', 'w.*', 'context.*'],
                  ['out', 'd_sample', 'out.*', 'd_sample.*'], ['g*']),
    'train_step': (['clip', 'clip.*', 'clip_*', 'noise_*', 'context'], ['x_in_*', 'loss*', 'l2_grads*'], ['d*']),
    'vae_encode_grad': (['image', 'w_mean', 'w_logvar'], ['mean', 'logvar', 'd_image'], ['g*']),
    'vae_decode_grad': (['latents', 'w'], ['decoded', 'd_latents'], ['g*']),
    'toyworld': ([], ['frames'], []),
}
for _op in _GRAD_OPS:
    _fwd = _op[:-len('_grad')]
    _ins = ['x', 'dout'] + (['context'] if _op == 'attention_cross_grad' else []) + \
        (['t', 'sinusoid'] if _op == 'timestep_embedding_grad' else [])
    ROLES[_op] = (_ins, ['d_*'], [])

NOT_PLUGGABLE = {'tokenize', 'pipeline', 'unet_grad', 'train_step', 'vae_encode_grad', 'vae_decode_grad', 'toyworld'}
EXACT_OUTPUTS = {('noise_normal', 'z'): False, ('tokenize', 'ids'): True, ('pipeline', 'ids'): True,
                 ('pipeline', 'neg_ids'): True, ('pipeline', 'timesteps'): True, ('pipeline', 'frames'): True}
BOOKKEEPING = ('op', 'seed', 'params')


def layout(op, name, ndim):
    """The layout of tensor `name` of `op` with `ndim` axes."""
    base = name[2:] if name.startswith('d_') and op.endswith('_grad') else name
    if ndim <= 0:
        return 'any'
    if base.endswith('kernel'):
        if 'spatial_conv' in base or op in ('conv2d', 'conv2d_grad'):
            return 'HWIO'
        if 'temporal_conv' in base or op in ('temporal_conv', 'temporal_conv_grad'):
            return 'KIO'
        return 'IO'
    if base.endswith(('bias', 'scale')):
        return 'C'
    if op in ('unet', 'unet_grad') and name in ('sample', 'out', 'w', 'd_sample'):
        return 'BCFHW' if ndim == 5 else 'BCHW'
    if op in ('activation', 'activation_grad', 'sched_schedule', 'sched_step', 'noise_normal', 'tokenize',
              'image_quantize', 'clip_text', 'pipeline', 'train_step', 'sched_add_noise', 'toyworld',
              'vae_encode_grad', 'vae_decode_grad') or \
            (op == 'unet_grad' and name not in ('context', 'timesteps')):
        return 'any' if not (op == 'clip_text' and name == 'hidden') else 'BSC'
    if op == 'vae':
        return 'BCHW'
    if name in ('t', 'timesteps'):
        return 'B'
    if op.startswith(('timestep_embedding', 'dense', 'layernorm', 'geglu')):
        return '...C'
    if op.startswith(('attention', 'transformer')) or name == 'context':
        return 'BSC' if ndim == 3 else 'BFHWC' if ndim == 5 else \
            'NHWC' if ndim == 4 and op.startswith('transformer') else '...C'
    if name == 'temb':
        return '...C'
    if ndim == 5:
        return 'BFHWC'
    if ndim == 4:
        return 'NHWC'
    return 'any'


def read_header(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n))
    return h.pop('__metadata__', {}), h


def role_of(op, name):
    ins, outs, aux = ROLES[op]
    for role, pats in (('output', outs), ('input', ins), ('aux', aux)):
        if any(fnmatch.fnmatchcase(name, p) for p in pats):
            return role
    if any(fnmatch.fnmatchcase(name, p) for p in _PARAM_PATTERNS) or '.' in name:
        return 'param'
    return None


def gen_shape(desc):
    dims = desc.split()[3]
    return [int(d) for d in dims.split('x')] if dims else []


def case_entry(vdir, fields):
    name, op, prec, level, rel, _sha, tol, _seed = fields
    if op not in ROLES:
        raise SystemExit(f'contract.py: op {op!r} of case {name} has no contract (add it to ROLES)')
    meta, header = read_header(os.path.join(vdir, rel))
    attrs = {k: v for k, v in meta.items()
             if k not in BOOKKEEPING and not k.startswith(('gen.', 'tol.'))}
    # model ops name their procedural parameters in meta `params`; `params` is a count for the
    # VAE and CLIP, whose parameters come from weights_seed alone (SPEC.md, procedural weights)
    if 'params' in meta and not meta['params'].isdigit():
        param_names = meta['params'].split(',')
    else:
        param_names = []
        if 'params' in meta:
            attrs['param_count'] = meta['params']
    tensors = []
    seen = set()

    def add(tname, source, shape, dtype, extra=None):
        role = role_of(op, tname)
        if tname in param_names:
            role = 'param'
        if role is None:
            raise SystemExit(f'contract.py: {rel}: tensor {tname!r} has no role in the contract of op {op}')
        t = {'name': tname, 'role': role, 'shape': shape, 'dtype': dtype,
             'layout': layout(op, tname, len(shape)), 'source': source}
        if role == 'output':
            t['tol'] = float(meta.get('tol.' + tname, tol))
            exact = EXACT_OUTPUTS.get((op, tname), dtype.startswith(('I', 'U')))
            t['compare'] = 'exact' if exact else 'rel'
        if extra:
            t.update(extra)
        tensors.append(t)
        seen.add(tname)

    for tname, e in header.items():
        add(tname, 'stored', e['shape'], e['dtype'])
    dt = 'F32' if prec == 'f32' else 'F64'
    for key, desc in meta.items():
        if key.startswith('gen.') and key[4:] not in seen and key[4:] not in param_names:
            add(key[4:], 'gen', gen_shape(desc), dt, {'gen': desc})
    if param_names:
        # a whole network's procedural weights: named in meta `params`, each generated from its
        # `gen.NAME` metadata; listed once here instead of a line per tensor
        attrs['param_count'] = str(len(param_names))
    # gradients that are zero in exact arithmetic are listed, not stored (tests/ops_grad.c)
    for zname in filter(None, meta.get('zero_grads', '').split(',')):
        if op in _GRAD_OPS and zname not in seen:
            src = next((t for t in tensors if t['name'] == zname[2:]), None)
            if src is None:
                raise SystemExit(f'contract.py: {rel}: zero gradient {zname} names no tensor')
            add(zname, 'zero', src['shape'], dt)
    roles = {t['role'] for t in tensors}
    if 'output' not in roles:
        raise SystemExit(f'contract.py: {rel}: case {name} has no output')
    return {'name': name, 'op': op, 'precision': prec, 'level': level, 'file': rel, 'tol': float(tol),
            'pluggable': op not in NOT_PLUGGABLE, 'attrs': attrs, 'tensors': tensors}


def build(vdir):
    cases = []
    with open(os.path.join(vdir, 'manifest.txt')) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            cases.append(case_entry(vdir, line.split()))
    return cases


def render(cases):
    """One case a line, keys in a fixed order: diffs stay readable, reruns are byte-identical."""
    out = ['{"contract": 1,',
           ' "roles": ["input", "param", "output", "aux"],',
           ' "layouts": ' + json.dumps(LAYOUTS, sort_keys=True) + ',',
           ' "cases": [']
    for i, c in enumerate(cases):
        out.append('  ' + json.dumps(c, separators=(',', ':')) + (',' if i + 1 < len(cases) else ''))
    out.append(']}')
    return '\n'.join(out) + '\n'


def spec_table(cases):
    """The per-op contract table of SPEC.md (python3 tools/contract.py --spec)."""
    ops = {}
    for c in cases:
        o = ops.setdefault(c['op'], {'n': {'f32': 0, 'f64': 0}, 'attrs': [], 'roles': {}, 'tol': {}, 'plug': c['pluggable']})
        o['n'][c['precision']] += 1
        for k in c['attrs']:
            if k not in o['attrs']:
                o['attrs'].append(k)
        for t in c['tensors']:
            if t['source'] == 'gen' and t['role'] == 'param' and c['op'] in ('unet', 'unet_grad', 'train_step'):
                continue
            key = t['name'] if t['name'].count('.') < 2 else t['name'].split('.')[0] + '.*'
            if key.startswith(('g.', 'd2.', 'tap.')) or key[:-1].endswith(('sample.', 'timesteps.', 'w.', 'out.')):
                key = key.split('.')[0] + '.*'
            r = o['roles'].setdefault(t['role'], {})
            r.setdefault(key, set()).add(t['layout'])
            if t['role'] == 'output':
                lo, hi = o['tol'].get((key, c['precision']), (t['tol'], t['tol']))
                o['tol'][(key, c['precision'])] = (min(lo, t['tol']), max(hi, t['tol']))
        if 'param_count' in c['attrs']:
            o['roles'].setdefault('param', {}).setdefault('@network', set()).add('')

    def names(o, role):
        items = o['roles'].get(role, {})
        return ', '.join('network (meta `params`, `weights_seed`)' if k == '@network' else
                         f'`{k}` {"/".join(sorted(v))}'.strip() for k, v in items.items()) or '-'

    def tols(o):
        out = []
        for (k, prec), (lo, hi) in sorted(o['tol'].items()):
            if prec == 'f32':
                out.append(f'{k} {lo:.1e}' + (f'..{hi:.1e}' if hi != lo else ''))
        return '; '.join(dict.fromkeys(out))

    lines = ['| op | cases f32/f64 | inputs | params | outputs | attributes | f32 tol (f64: 1e-10 unless stated) |',
             '|---|---|---|---|---|---|---|']
    for op, o in ops.items():
        plug = '' if o['plug'] else ' (not pluggable)'
        lines.append(f'| `{op}`{plug} | {o["n"]["f32"]}/{o["n"]["f64"]} | {names(o, "input")} | {names(o, "param")} | '
                     f'{names(o, "output")} | {", ".join(o["attrs"]) or "-"} | {tols(o)} |')
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--spec', action='store_true', help="print SPEC.md's per-op contract table")
    ap.add_argument('--vectors', default='vectors')
    ap.add_argument('--check', action='store_true', help='fail if vectors/contract.json is not up to date')
    args = ap.parse_args()
    cases = build(args.vectors)
    if args.spec:
        print(spec_table(cases))
        return
    text = render(cases)
    path = os.path.join(args.vectors, 'contract.json')
    if args.check:
        old = open(path).read() if os.path.exists(path) else ''
        if old != text:
            sys.exit(f'{path} is out of date: run python3 tools/contract.py')
        print(f'{path} is up to date')
        return
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
