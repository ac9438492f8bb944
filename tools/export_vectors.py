"""Export mavref's golden vectors from the FLAX model.

    tools/.venv/bin/python tools/export_vectors.py --out vectors

Runs itself once per precision in a fresh process (float32, then float64 with jax_enable_x64
set before any array exists), collects the cases of every module in CASE_MODULES, writes
vectors/<prec>/<name>.safetensors and vectors/manifest.txt.

A case module defines `cases(prec)` yielding vecspec.Case objects. Inputs and weights are
drawn with numpy from the case's fixed seed in float64 and cast to the precision, so the
float32 and float64 cases of a name hold the same numbers up to rounding.
"""
import argparse
import fcntl
import importlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CASE_MODULES = [
    'cases_basic',
    'cases_ops',
    'cases_vae',
    'cases_clip_text',
    'cases_tokenizer',
    'cases_blocks',
    'cases_unet',
    'cases_unet_strength',
    'cases_unet_f32sin',
    'cases_grad',
    'cases_sched',
    'cases_train',
    'cases_pipeline',
    'cases_toy',
    'cases_train_batch',
]

PRECS = ('f32', 'f64')


def setup_jax(prec):
    import jax
    if prec == 'f64':
        jax.config.update('jax_enable_x64', True)
    jax.config.update('jax_default_matmul_precision', 'highest')
    jax.config.update('jax_platforms', 'cpu')


def versions():
    import importlib.metadata as md
    pkgs = ['jax', 'jaxlib', 'flax', 'numpy', 'diffusers', 'transformers', 'optax', 'ftfy', 'regex']
    out = []
    for p in pkgs:
        try:
            out.append(f'{p}={md.version(p)}')
        except md.PackageNotFoundError:
            pass
    return ' '.join(out) + f' python={sys.version.split()[0]}'


def run_one(prec, out, modules, only):
    setup_jax(prec)
    from vecio import write_safetensors, sha256
    os.makedirs(os.path.join(out, prec), exist_ok=True)
    lines = []
    for modname in modules:
        mod = importlib.import_module(modname)
        for case in mod.cases(prec):
            if only and only not in case.name:
                continue
            rel = f'{prec}/{case.name}.safetensors'
            path = os.path.join(out, rel)
            meta = dict(case.meta)
            meta['op'] = case.op
            meta['seed'] = str(case.seed)
            write_safetensors(path, case.tensors, meta)
            lines.append([modname, case.name, case.op, prec, case.level, rel, sha256(path),
                          f'{case.tol:.1e}', str(case.seed)])
            print(f'  {prec} {case.name}', flush=True)
    return lines


def read_sections(path):
    """The manifest's case lines grouped by '# module NAME' headers."""
    sections = {}
    cur = None
    if os.path.exists(path):
        for l in open(path):
            if l.startswith('# module '):
                cur = l.split()[2]
                sections[cur] = []
            elif cur and l.strip() and not l.startswith('#'):
                sections[cur].append(l.split())
    return sections


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='vectors')
    ap.add_argument('--modules', default=None,
                    help='comma-separated case modules to regenerate (default: all); '
                         'the other modules keep their manifest lines and files')
    ap.add_argument('--only', default=None, help='write only cases whose name contains this; manifest untouched')
    ap.add_argument('--prec', choices=PRECS, help='internal: run one precision and print JSON')
    args = ap.parse_args()
    modules = args.modules.split(',') if args.modules else CASE_MODULES
    for m in modules:
        if m not in CASE_MODULES:
            sys.exit(f'unknown case module {m}; known: {CASE_MODULES}')
    if args.prec:
        lines = run_one(args.prec, args.out, modules, args.only)
        print('@@LINES@@' + json.dumps(lines))
        return
    new = []
    for prec in PRECS:
        cmd = [sys.executable, os.path.abspath(__file__), '--out', args.out, '--prec', prec,
               '--modules', ','.join(modules)]
        if args.only:
            cmd += ['--only', args.only]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        for l in res.stdout.splitlines():
            if l.startswith('@@LINES@@'):
                new += json.loads(l[len('@@LINES@@'):])
            else:
                print(l)
    if args.only:
        print('--only given: manifest not rewritten')
        return
    mpath = os.path.join(args.out, 'manifest.txt')
    with open(mpath + '.lock', 'w') as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # helpers may export different modules at once
        sections = read_sections(mpath)
        for m in modules:
            sections[m] = []
        for l in new:
            sections[l[0]].append(l[1:])
        keep = {l[4] for m in CASE_MODULES for l in sections.get(m, [])}
        total = 0
        with open(mpath + '.tmp', 'w') as f:
            f.write('# mavref golden corpus, written by tools/export_vectors.py (make vectors). Do not edit.\n')
            f.write(f'# versions: {versions()}\n')
            f.write('# tol: relative, max|got-expected| / max|expected| per output tensor\n')
            f.write('# name op precision level file sha256 tol seed\n')
            for m in CASE_MODULES:
                if m not in sections:
                    continue
                f.write(f'# module {m}\n')
                for l in sections[m]:
                    f.write(' '.join(l) + '\n')
                    total += 1
        os.replace(mpath + '.tmp', mpath)
        if not args.modules:
            for prec in PRECS:  # a full run removes files no case produced
                d = os.path.join(args.out, prec)
                for fn in sorted(os.listdir(d)):
                    if f'{prec}/{fn}' not in keep:
                        os.remove(os.path.join(d, fn))
    os.remove(mpath + '.lock') if os.path.exists(mpath + '.lock') else None
    print(f'{len(new)} cases written; the manifest lists {total}')


if __name__ == '__main__':
    main()
