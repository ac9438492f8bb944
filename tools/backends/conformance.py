"""make conformance: run the PyTorch adapters over the golden corpus with `mavref check`, in
float32 and float64, and write the conformance table (Markdown).

    tools/.torch-venv/bin/python tools/backends/conformance.py [--level full|quick] [--out out/conformance.md]

Each adapter runs as a server (tools/backends/serve.py: torch is imported once), `mavref check`
runs it on every case of the selected ops, and the per-case lines are summarised per op:
pass (the largest rel/tol over the cases), diverges (the worst case's rel against its
tolerance, and the first failing output), or unsupported (the adapter's exit status 3).
Real-size cases (names with `_real`) are left out (MAVREF_SKIP_REAL=1: several GB each).
The tokenizer cases are not pluggable into `mavref check` (ids, not tensors): they are
compared here, string by string, for CLIPTokenizer and CLIPTokenizerFast.
With MAVREF_MAKEAVID_TORCH_IMPL=/path/to/makeavid-sd-tpu, the upstream PyTorch port is run too.
"""
import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable

ADAPTERS = [
    # (label, module, ops)
    ('diffusers', 'torch_diffusers', None),
    ('transformers', 'torch_transformers', 'activation,attention_clip,clip_text'),
]
if os.environ.get('MAVREF_MAKEAVID_TORCH_IMPL'):
    ADAPTERS.append(('makeavid torch_impl', 'torch_makeavid', None))

LINE = re.compile(r'^(\S+)\s+(\S+)\s+(PASS|FAIL|SKIP)\s?(.*)$')
REL = re.compile(r'^(\S+) rel=(\S+) \(tol (\S+)\)')
FAILREL = re.compile(r'^(\S+) \(tol (\S+)\): rel=(\S+)')


def run_check(module, ops, prec, level, log):
    sock = f'/tmp/mavref-conformance-{os.getpid()}-{module}.sock'
    env = dict(os.environ, MAVREF_SKIP_REAL='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    srv = subprocess.Popen([PY, os.path.join(HERE, 'serve.py'), module, sock], env=env, cwd=ROOT,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if os.path.exists(sock):
                break
            time.sleep(0.2)
        cmd = [os.path.join(ROOT, 'bin', 'mavref'), 'check', '--backend',
               f'python3 {HERE}/serve.py --client {sock} {{case}} {{out}}',
               '--level', level, '--precision', prec, '--timeout', '900']
        if ops:
            cmd += ['--ops', ops]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        log.write(r.stdout + r.stderr)
        log.flush()
        return r.stdout
    finally:
        if os.path.exists(sock):
            os.remove(sock)
        srv.wait(timeout=30)


def summarise(text):
    """{op: dict(n, pass, fail, unsup, skip, worst=(ratio, rel, tol, case, output), why)}"""
    ops = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or line.startswith('op '):
            continue
        op, case, verdict, rest = m.groups()
        s = ops.setdefault(op, dict(n=0, passed=0, fail=0, unsup=0, skip=0, worst=None, why=''))
        s['n'] += 1
        covered = 'not covered by the backend' not in rest
        if verdict == 'SKIP' and covered:
            s['skip'] += 1
            continue
        if not covered or 'exited with status 3' in rest:
            s['unsup'] += 1
            s['why'] = s['why'] or rest.split(': ', 1)[-1].split(': ', 1)[-1]
            continue
        if verdict == 'PASS':
            s['passed'] += 1
            r = REL.match(rest)
            if r:
                out, rel, tol = r.group(1), float(r.group(2)), float(r.group(3))
                cand = (rel / tol if tol else 0.0, rel, tol, case, out, 'pass')
                if s['worst'] is None or (s['worst'][5] == 'pass' and cand[0] > s['worst'][0]):
                    s['worst'] = cand
            continue
        s['fail'] += 1
        r = FAILREL.match(rest)
        if r:
            out, tol, rel = r.group(1), float(r.group(2)), float(r.group(3))
            cand = (rel / tol if tol else float('inf'), rel, tol, case, out, 'fail')
            if s['worst'] is None or s['worst'][5] == 'pass' or cand[0] > s['worst'][0]:
                s['worst'] = cand
        else:
            s['why'] = s['why'] or rest
    return ops


def cell(s):
    if s is None:
        return ''
    run = s['passed'] + s['fail']
    if run == 0:
        if s['unsup']:
            return 'unsupported'
        return 'not pluggable' if s['skip'] else ''
    w = s['worst']
    extra = f', {s["unsup"]} unsupported' if s['unsup'] else ''
    if s['fail'] == 0:
        return f'pass {s["passed"]}/{run} (rel {w[1]:.1e} <= tol {w[2]:.0e}){extra}' if w else f'pass {s["passed"]}/{run}{extra}'
    if w and w[5] == 'fail':
        return (f'**diverges** {s["fail"]}/{run}: rel {w[1]:.1e} > tol {w[2]:.0e} '
                f'(`{w[3]}` `{w[4]}`){extra}')
    return f'**fails** {s["fail"]}/{run}: {s["why"][:80]}{extra}'


def tokenizer_rows(level):
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    import mavcase
    import torch_transformers as tt
    rows = {}
    man = [l.split() for l in open(os.path.join(ROOT, 'vectors', 'manifest.txt')) if l[0] != '#']
    for name, op, prec, lv, file, *_ in man:
        if op != 'tokenize' or prec != 'f32' or (level == 'quick' and lv != 'quick'):
            continue
        case = mavcase.load(os.path.join(ROOT, 'vectors', file))
        texts, want = tt.case_strings(case), tt.expected_ids(case)
        for kind in ('slow', 'fast'):
            got = tt.tokenize_strings(texts, kind)
            bad = [i for i, (a, b) in enumerate(zip(got, want)) if list(map(int, a)) != list(map(int, b))]
            r = rows.setdefault(kind, [0, 0, []])
            r[0] += len(texts)
            r[1] += len(bad)
            if bad:
                r[2].append((name, len(bad), len(texts), texts[bad[0]][:40]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--level', default='full')
    ap.add_argument('--out', default=os.path.join(ROOT, 'out', 'conformance.md'))
    ap.add_argument('--precisions', default='32,64')
    ap.add_argument('--reuse', action='store_true',
                    help="reuse the saved check output (out/check-MODULE-fPREC-LEVEL.txt) of each run not named in --rerun")
    ap.add_argument('--rerun', default='', help='MODULE:PREC,... to run again with --reuse')
    a = ap.parse_args()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    t0 = time.time()
    results = {}
    with open(a.out.replace('.md', '.log'), 'a' if a.reuse else 'w') as log:
        for label, module, ops in ADAPTERS:
            for prec in a.precisions.split(','):
                t = time.time()
                saved = os.path.join(os.path.dirname(a.out), f'check-{module}-f{prec}-{a.level}.txt')
                if a.reuse and f'{module}:{prec}' not in a.rerun.split(',') and os.path.exists(saved):
                    text = open(saved).read()
                else:
                    text = run_check(module, ops, prec, a.level, log)
                    with open(saved, 'w') as f:
                        f.write(text)
                results[(label, prec)] = summarise(text)
                print(f'conformance: {label} f{prec}: {time.time() - t:.0f} s', file=sys.stderr, flush=True)
    tok = tokenizer_rows(a.level)
    import torch
    import diffusers
    import transformers
    import tokenizers
    lines = [f'Versions: torch {torch.__version__} (Debian python3-torch, CPU), diffusers {diffusers.__version__}, '
             f'transformers {transformers.__version__}, tokenizers {tokenizers.__version__}; corpus level `{a.level}`, '
             'real-size cases left out.', '']
    cols = [(label, prec) for label, _, _ in ADAPTERS for prec in a.precisions.split(',')]
    lines.append('| op | ' + ' | '.join(f'{l} f{p}' for l, p in cols) + ' |')
    lines.append('|---|' + '---|' * len(cols))
    allops = []
    for c in cols:
        for op in results[c]:
            if op not in allops:
                allops.append(op)
    for op in allops:
        cells = [cell(results[c].get(op)) for c in cols]
        if all(x in ('', 'unsupported', 'not pluggable') for x in cells):
            continue
        lines.append(f'| {op} | ' + ' | '.join(cells) + ' |')
    unsup = sorted({op for c in cols for op, s in results[c].items()
                    if s['unsup'] and s['passed'] + s['fail'] == 0 and c[0] == 'diffusers'})
    lines += ['', 'Unsupported by diffusers (exit status 3): ' + ', '.join(f'`{o}`' for o in unsup) + '.', '']
    for kind, (n, bad, ex) in sorted(tok.items()):
        name = 'CLIPTokenizerFast' if kind == 'fast' else 'CLIPTokenizer (slow, ftfy)'
        lines.append(f'- transformers {name}: {n - bad}/{n} strings give the corpus ids'
                     + ('' if not bad else '; differ: ' + ', '.join(f'{c} {b}/{m} (first {s!r})' for c, b, m, s in ex)))
    lines.append('')
    lines.append(f'`make conformance` took {time.time() - t0:.0f} s.')
    text = '\n'.join(lines) + '\n'
    with open(a.out, 'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
