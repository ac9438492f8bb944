"""The README's conformance table from `mavref check` outputs (standard library only).

    python3 tools/conformance_table.py 'PyTorch f32=out1.txt' 'PyTorch f64=out2.txt' ...

Each argument is COLUMN=FILE[,FILE...] (several files of one column are merged). A cell is
`passed/run` and the largest rel/tol of the passing cases; a failing op shows its first
failure's output and rel against the tolerance; `-` an op the backend does not cover.
"""
import re
import sys

LINE = re.compile(r'^(\S+)\s+(\S+)\s+(PASS|FAIL|SKIP) ?(.*)$')


def parse(paths):
    """{op: {case: (verdict, rest)}}; a case in several files counts once (the last)."""
    ops = {}
    for path in paths:
        for line in open(path):
            m = LINE.match(line.rstrip('\n'))
            if not m or m.group(1) in ('op', 'check:', 'mavref'):
                continue
            op, case, verdict, rest = m.groups()
            ops.setdefault(op, {})[case] = (verdict, rest)
    out = {}
    for op, cases in ops.items():
        o = out[op] = {'pass': 0, 'fail': 0, 'ratio': 0.0, 'first': None}
        for case, (verdict, rest) in cases.items():
            r = re.search(r'rel=([0-9.e+-]+).*?tol ([0-9.e+-]+)', rest)
            if verdict == 'PASS':
                o['pass'] += 1
                if r and float(r.group(2)) > 0:
                    o['ratio'] = max(o['ratio'], float(r.group(1)) / float(r.group(2)))
            elif verdict == 'FAIL':
                o['fail'] += 1
                if o['first'] is None:
                    f = re.search(r'^(\S+) \(tol ([0-9.e+-]+)\): rel=([0-9.e+-]+)', rest)
                    o['first'] = (f'{f.group(1)} rel {float(f.group(3)):.1e} > {float(f.group(2)):.1e}' if f
                                  else rest[:60]) + f' ({case})'
    return out


def cell(o):
    if o is None or o['pass'] + o['fail'] == 0:
        return '-'
    n = o['pass'] + o['fail']
    if o['fail']:
        return f'**{o["pass"]}/{n}**: {o["first"]}'
    return f'{o["pass"]}/{n} ({o["ratio"]:.2g})'


def main():
    cols = []
    for arg in sys.argv[1:]:
        name, files = arg.split('=', 1)
        cols.append((name, parse(files.split(','))))
    order = []
    for _, ops in cols:
        for op in ops:
            if op not in order:
                order.append(op)
    print('| op | ' + ' | '.join(n for n, _ in cols) + ' |')
    print('|---|' + '---|' * len(cols))
    for op in order:
        cells = [cell(ops.get(op)) for _, ops in cols]
        if all(c == '-' for c in cells):
            continue
        print(f'| `{op}` | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
