#!/usr/bin/env python3
"""Check that SPEC.md can be navigated: every name it cites leads somewhere.

    python3 tools/check_spec.py [--root DIR]

Checks, printing one line per problem and exiting 1 if there is any:
  1. numbering: `## N.` chapters run 1, 2, ...; `### N.M` and `#### N.M.K` headings run from 1
     under their parent; no heading but the index is unnumbered;
  2. section references: every `§N`, `§N.M`, `§N.M.K` (and each end of `§A-B`) in SPEC.md, and
     every `SPEC.md section N.M` / `SPEC.md sections A-B` in ref/, tests/ and tools/, names an
     existing heading; every `[text](#anchor)`
     link in SPEC.md names a heading's GitHub anchor; `SPEC.md "Title"` quotes name a heading;
  3. files: every `ref/...`, `tests/...`, `tools/...`, `vectors/...` path SPEC.md cites exists
     (globs and `<placeholders>` aside), and no `spec/*.md` file is cited anywhere;
  4. names: every identifier SPEC.md writes in backticks that begins like mavref's C API (the
     prefixes of the functions declared in ref/*.h) exists in the code of ref/, tests/ or
     tools/ (comments stripped; string contents count, since parameter names are strings),
     the manifest's op and case names, or the unit-test registry;
  5. the index table: each row's header exists, its forward and backward functions exist in
     ref/, its manifest ops are ops of vectors/manifest.txt, and each `run_X (file.c)` runner
     or unit test exists where the row says;
  6. no machine-specific paths (/work/, /tmp/, /home/) in SPEC.md.
Standard library only; nothing is built or run.
"""
import argparse
import glob
import os
import re
import sys

# Names that concurrent work (issue 13 parts A and B) adds to ref/; reported as notes, not
# errors, until they exist. Remove an entry once it is in the code.
PENDING = {'attention_forward_ref', 'attention_backward_ref', 'unet_stages_build'}

# Names SPEC.md cites that look like mavref's C API but are not identifiers in the code:
# `make bench` output keys that tools/bench_model.c composes with a "%s" suffix, and a diffusers
# scheduler option.
NOT_CODE = {'unet_backward_s', 'unet_backward_recompute_s', 'unet_train_peak_rss_kb',
            'unet_train_recompute_peak_rss_kb', 'timestep_spacing'}

problems = []
notes = []


def problem(msg):
    problems.append(msg)


def read(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return f.read()


def strip_c_comments(src):
    """C source without comments; string and character literals are kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i)
            i = n if j < 0 else j
        elif src.startswith('/*', i):
            j = src.find('*/', i + 2)
            i = n if j < 0 else j + 2
        elif c in '"\'':
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == '\\' else 1
            out.append(src[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def c_comments(src):
    return [m.group(0) for m in re.finditer(r'//[^\n]*|/\*.*?\*/', src, re.S)]


IDENT = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


def slug(title):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    s = title.strip().lower()
    s = re.sub(r'[^\w\- ]', '', s)
    return s.replace(' ', '-')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--root', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    spec_path = os.path.join(root, 'SPEC.md')
    spec = read(spec_path)
    lines = spec.split('\n')

    # ---- 1. headings and their numbers ------------------------------------------------------
    sections, anchors, titles = set(), set(), []
    in_code = False
    last = [0, 0, 0]
    for ln, line in enumerate(lines, 1):
        if line.startswith('```'):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r'(#{2,4}) (.*)$', line)
        if not m:
            continue
        level, title = len(m.group(1)), m.group(2)
        titles.append(title)
        anchors.add(slug(title))
        if title == 'Index':
            continue
        num = re.match(r'(\d+(?:\.\d+)*)\.? ', title)
        if not num:
            problem(f'SPEC.md:{ln}: heading without a number: {line}')
            continue
        parts = [int(p) for p in num.group(1).split('.')]
        depth = level - 2  # ## -> 0, ### -> 1, #### -> 2
        if len(parts) != depth + 1:
            problem(f'SPEC.md:{ln}: heading level {"#" * level} with number {num.group(1)}')
            continue
        expect = last[:depth] + [last[depth] + 1]
        if parts != expect:
            problem(f'SPEC.md:{ln}: heading {num.group(1)} out of order (expected {".".join(map(str, expect))})')
        last = parts + [0] * (3 - len(parts))
        sections.add(num.group(1))

    # ---- 2. section references ----------------------------------------------------------------
    ref_re = re.compile(r'§(\d+(?:\.\d+)*)(?:-(\d+(?:\.\d+)*))?')

    def check_refs(text, where):
        for m in ref_re.finditer(text):
            for s in (m.group(1), m.group(2)):
                if s and s not in sections:
                    ln = text.count('\n', 0, m.start()) + 1
                    problem(f'{where}:{ln}: §{s} names no section of SPEC.md')

    check_refs(spec, 'SPEC.md')
    code_ref_re = re.compile(r'SPEC(?:\.md)? sections? (\d+(?:\.\d+)*)(?:-(\d+(?:\.\d+)*))?')
    for m in re.finditer(r'\]\(#([^)]+)\)', spec):
        if m.group(1) not in anchors:
            problem(f'SPEC.md:{spec.count(chr(10), 0, m.start()) + 1}: link #{m.group(1)} names no heading')

    code_files = sorted(glob.glob(os.path.join(root, 'ref', '*.[ch]')) + glob.glob(os.path.join(root, 'tests', '*.[ch]')) +
                        glob.glob(os.path.join(root, 'tools', '*.c')) + glob.glob(os.path.join(root, 'tools', 'fuzz', '*.c')))
    py_files = sorted(p for p in glob.glob(os.path.join(root, 'tools', '*.py'))
                      if os.path.basename(p) != 'check_spec.py')
    for path in code_files + py_files + [os.path.join(root, 'README.md'), os.path.join(root, 'Makefile')]:
        if not os.path.exists(path):
            continue
        rel = os.path.relpath(path, root)
        src = read(path)
        text = '\n'.join(c_comments(src)) if path.endswith(('.c', '.h')) else src
        for m in re.finditer(r'\bspec/[A-Za-z0-9_-]+\.md', src):
            problem(f'{rel}:{src.count(chr(10), 0, m.start()) + 1}: cites {m.group(0)}, which does not exist (SPEC.md has one section per topic)')
        # the code cites sections as `SPEC.md section 4.2` / `SPEC.md sections 5.1-5.3` (ASCII)
        for m in code_ref_re.finditer(src):
            for s in (m.group(1), m.group(2)):
                if s and s not in sections:
                    problem(f'{rel}:{src.count(chr(10), 0, m.start()) + 1}: section {s} names no section of SPEC.md')
        if not path.endswith(('.c', '.h')):
            check_refs(text, rel)
        for m in re.finditer(r'SPEC(?:\.md)? "([^"]+)"', src):
            if not any(m.group(1) in t for t in titles):
                problem(f'{rel}:{src.count(chr(10), 0, m.start()) + 1}: SPEC.md has no heading "{m.group(1)}"')

    # ---- 3. files --------------------------------------------------------------------------
    for m in re.finditer(r'(?<![\w/.])((?:ref|tests|tools|vectors)/[A-Za-z0-9_./<>*-]*[A-Za-z0-9_*>])', spec):
        p = m.group(1)
        if any(ch in p for ch in '<>*') or '/.' in p:
            continue  # a glob, a placeholder, or a local untracked directory (tools/.venv)
        if not os.path.exists(os.path.join(root, p)):
            problem(f'SPEC.md:{spec.count(chr(10), 0, m.start()) + 1}: file {p} does not exist')
    for m in re.finditer(r'(?:/work/|/tmp/|/home/)\S*', spec):
        problem(f'SPEC.md:{spec.count(chr(10), 0, m.start()) + 1}: machine-specific path {m.group(0)}')

    # ---- 4. names ----------------------------------------------------------------------------
    known = set()
    declared = set()  # functions declared in ref/*.h
    defined_in = {}   # identifier -> files whose code (comments stripped) holds it
    for path in code_files:
        code = strip_c_comments(read(path))
        rel = os.path.relpath(path, root)
        for w in set(IDENT.findall(code)):
            known.add(w)
            defined_in.setdefault(w, set()).add(rel)
        if path.endswith('.h') and os.path.basename(os.path.dirname(path)) == 'ref':
            for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)\s*\(', code):
                declared.add(m.group(1))
    for path in py_files:
        known.update(IDENT.findall(read(path)))
    manifest = os.path.join(root, 'vectors', 'manifest.txt')
    ops, cases = set(), set()
    if os.path.exists(manifest):
        for line in read(manifest).split('\n'):
            f = line.split()
            if len(f) >= 2 and not line.startswith('#'):
                known.add(f[0])
                cases.add(f[0])
                ops.add(f[1])
    known |= ops
    contract = os.path.join(root, 'vectors', 'contract.json')
    if os.path.exists(contract):  # the tensor names of the corpus cases (the per-op contract table)
        import json
        for case in json.load(open(contract))['cases']:
            known.update(t['name'] for t in case.get('tensors', []))
    registry = read(os.path.join(root, 'tests', 'registry.c'))
    unit_tests = set(re.findall(r'\{"([a-z0-9_]+)", test_', registry))
    known |= unit_tests
    if os.path.exists(os.path.join(root, 'Makefile')):
        known.update(IDENT.findall(read(os.path.join(root, 'Makefile'))))
    keywords = {'if', 'for', 'while', 'return', 'sizeof', 'switch'}
    prefixes = {d.split('_')[0] for d in declared if d not in keywords}
    cited = set()
    # code spans may run over a line break; fenced blocks are blanked first (same offsets)
    unfenced = re.sub(r'```.*?```', lambda m: re.sub(r'[^\n]', ' ', m.group(0)), spec, flags=re.S)
    for span in re.finditer(r'`([^`]+)`', unfenced):
        s = span.group(1)
        for m in IDENT.finditer(s):
            w = m.group(0)
            before = s[m.start() - 1] if m.start() else ''
            after = s[m.end()] if m.end() < len(s) else ''
            if (before and before in '.*<') or (after and after in '.*>') or before.isdigit():
                continue  # a path component, a glob or a placeholder
            if w.split('_')[0] in prefixes and ('_' in w or w in declared):
                cited.add(w)
                if w not in known and w not in NOT_CODE and not any(c.startswith(w) for c in cases):
                    if w in PENDING:
                        notes.append(f'SPEC.md cites {w}: pending (concurrent work), not in ref/ yet')
                    else:
                        problem(f'SPEC.md:{spec.count(chr(10), 0, span.start()) + 1}: `{w}` is not a name in ref/, tests/, tools/ or the manifest')

    # ---- 5. the index table ------------------------------------------------------------------
    idx = re.search(r'^## Index\n(.*?)^## ', spec, re.S | re.M)
    rows = 0
    if not idx:
        problem('SPEC.md: no "## Index" section before chapter 1')
    else:
        for line in idx.group(1).split('\n'):
            cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.startswith('|') else []
            if len(cells) != 7 or cells[0] in ('Operator', '---'):
                continue
            rows += 1
            name, header, fwd, bwd, sec, mops, runner = cells
            for h in re.findall(r'`([^`]+\.h)`', header):
                if not os.path.exists(os.path.join(root, h)):
                    problem(f'index row {name}: header {h} does not exist')
            for cell in (fwd, bwd):
                for f in re.findall(r'`([a-z][a-z0-9_]*)`', cell):
                    if f.startswith('SCHED_'):
                        continue
                    if f not in defined_in or not any(p.startswith('ref/') for p in defined_in[f]):
                        if f in PENDING:
                            notes.append(f'index row {name}: {f} pending (concurrent work)')
                        else:
                            problem(f'index row {name}: function {f} is not in ref/')
            for s in re.findall(r'§(\d+(?:\.\d+)*)', sec):
                if s not in sections:
                    problem(f'index row {name}: §{s} names no section')
            for o in re.findall(r'`([a-z0-9_]+)`', re.sub(r'\(`--filter [^)]*\)', '', mops)):
                if o not in ops:
                    problem(f'index row {name}: {o} is not an op of vectors/manifest.txt')
            for fn, fil in re.findall(r'`(run_[a-z0-9_]+)` \(`([a-z_]+\.c)`\)', runner):
                if fn not in defined_in or f'tests/{fil}' not in defined_in[fn]:
                    problem(f'index row {name}: runner {fn} is not in tests/{fil}')
            unit = re.search(r'unit (.*)$', runner)
            if unit:
                for t in re.findall(r'`([a-z0-9_]+)`', re.sub(r'\(`[a-z_]+\.c`\)', '', unit.group(1))):
                    if t not in unit_tests:
                        problem(f'index row {name}: unit test {t} is not in tests/registry.c')
        if rows == 0:
            problem('SPEC.md: the index has no rows')

    for n in sorted(set(notes)):
        print('note:', n)
    for p in problems:
        print(p)
    print(f'check_spec: {len(sections)} numbered sections, {rows} index rows, {len(cited)} cited C names, '
          f'{len(problems)} problem(s)')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
