"""Generate ref/unicode_tables.c: the Unicode and ftfy data that ref/tokenizer.c needs.

    tools/.venv/bin/python tools/gen_unicode.py

Every table is computed from the very code the Python tokenizer runs, by probing each code
point, so that the C tables agree with it by construction:
  - the character classes of the pre-tokenizer and of whitespace_clean come from the `regex`
    module (it carries its own Unicode database, newer than Python's), probed with the exact
    patterns and flags transformers' CLIPTokenizer uses;
  - lower-casing, Final_Sigma context classes, isspace, re's \\d \\w \\s and NFC come from
    CPython 3.11 (str.lower, unicodedata 14.0.0);
  - ftfy 6.3.1's tables (HTML entities, ligatures, width map, control characters, the
    BADNESS_RE mojibake heuristic) come from ftfy's own modules; html.unescape's numeric
    character reference tables from the html module.
The versions used are written at the top of the generated file.
"""
import html
import os
import re
import sys
import unicodedata

import regex

import ftfy
import ftfy.badness
import ftfy.chardata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_C = os.path.join(ROOT, 'ref', 'unicode_tables.c')
OUT_H = os.path.join(ROOT, 'ref', 'unicode_tables.h')

MAXCP = 0x110000
ALL = [c for c in range(MAXCP) if not 0xD800 <= c <= 0xDFFF]
ALL_STR = ''.join(map(chr, ALL))


def probe(pattern, flags=0, module=regex):
    """The set of code points c for which `pattern` matches the one-character string c."""
    rx = module.compile(pattern, flags)
    # every match must be exactly one character long for this to be a per-character probe
    out = set()
    for m in rx.finditer(ALL_STR):
        assert m.end() - m.start() == 1, pattern
        out.add(ord(m.group()))
    return out


def ranges(cps):
    cps = sorted(cps)
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


class Writer:
    def __init__(self):
        self.c = []
        self.h = []

    def range_table(self, name, cps, doc):
        rs = ranges(cps)
        self.h.append(f'// {doc}\nextern const uint32_t {name}[][2];\nextern const size_t {name}_n;')
        body = ','.join(f'{{0x{a:X},0x{b:X}}}' for a, b in rs)
        self.c.append(f'const uint32_t {name}[][2] = {{{wrap(body)}}};\nconst size_t {name}_n = {len(rs)};')

    def u32_table(self, name, vals, doc, per=1):
        self.h.append(f'// {doc}\nextern const uint32_t {name}[];\nextern const size_t {name}_n;')
        body = ','.join(f'0x{v:X}' for v in vals)
        self.c.append(f'const uint32_t {name}[] = {{{wrap(body)}}};\nconst size_t {name}_n = {len(vals) // per};')

    def define(self, name, value, doc):
        self.h.append(f'// {doc}\n#define {name} {value}')


def wrap(body, width=100):
    """Break a long comma-separated list into lines."""
    out, line = [], ''
    for item in body.split(','):
        if line and len(line) + len(item) + 1 > width:
            out.append(line)
            line = ''
        line += item + ','
    if line:
        out.append(line)
    return '\n' + '\n'.join(out) + '\n'


def c_string(s):
    b = s.encode('utf-8')
    return '"' + ''.join(chr(x) if 32 <= x < 127 and chr(x) not in '"\\?' else f'\\{x:03o}' for x in b) + '"'


def tokenizer_classes(w):
    f = regex.IGNORECASE
    L = probe(r'[\p{L}]', f)
    N = probe(r'[\p{N}]', f)
    O = probe(r'[^\s\p{L}\p{N}]', f)
    w.range_table('uc_rx_letter', L, r"regex [\p{L}] with IGNORECASE (pre-tokenizer letters)")
    w.range_table('uc_rx_number', N, r"regex [\p{N}] with IGNORECASE (pre-tokenizer numbers)")
    w.range_table('uc_rx_other', O, r"regex [^\s\p{L}\p{N}] with IGNORECASE (pre-tokenizer other)")
    w.range_table('uc_rx_space', probe(r'\s'), r"regex \s (whitespace_clean's \s+)")
    w.range_table('uc_py_space', {c for c in ALL if chr(c).isspace()}, 'Python str.isspace (str.strip)')
    # the case-insensitive literal alternatives: which code points match each ASCII letter
    lits = ["<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
    chars = sorted(set(''.join(lits)))
    rows = []
    for ch in chars:
        m = sorted(probe(regex.escape(ch), f))
        assert ord(ch) in m and len(m) <= 4, (ch, m)
        rows.append([ord(ch)] + m + [0] * (4 - len(m)))
    w.h.append('// regex IGNORECASE equivalents of the pre-tokenizer literal characters:\n'
               '// rows {ch, match1..match4 (0 = none)}\n'
               'extern const uint32_t uc_rx_literal[][5];\nextern const size_t uc_rx_literal_n;')
    w.c.append('const uint32_t uc_rx_literal[][5] = {' +
               wrap(','.join('{' + ','.join(f'0x{v:X}' for v in r) + '}' for r in rows)) +
               f'}};\nconst size_t uc_rx_literal_n = {len(rows)};')


def lowercase(w):
    single, multi = [], []
    for c in ALL:
        if c == 0x3A3:
            continue  # context dependent (Final_Sigma), handled in C
        lo = chr(c).lower()
        if lo != chr(c):
            if len(lo) == 1:
                single += [c, ord(lo)]
            else:
                assert len(lo) <= 3
                multi.append((c, lo))
    w.u32_table('uc_lower', single, 'Python str.lower: pairs {cp, lowercase} sorted by cp '
                '(one-character results; U+03A3 excluded)', per=2)
    rows = [[c] + [ord(x) for x in lo] + [0] * (3 - len(lo)) for c, lo in multi]
    w.u32_table('uc_lower_multi', [v for r in rows for v in r],
                'Python str.lower with several characters: rows {cp, c1, c2, c3 (0 = none)}', per=4)
    # Final_Sigma: CPython's _PyUnicode_IsCased / _PyUnicode_IsCaseIgnorable, probed through
    # str.lower: (c + Σ) ends in ς iff c is cased and not case-ignorable; ('a' + c + Σ) ends
    # in ς iff c is case-ignorable or cased.
    cased, ign = set(), set()
    for c in ALL:
        a = (chr(c) + 'Σ').lower()[-1] == 'ς'
        b = ('a' + chr(c) + 'Σ').lower()[-1] == 'ς'
        if a:
            cased.add(c)
        elif b:
            ign.add(c)
    w.range_table('uc_cased', cased, 'CPython: cased and not case-ignorable (Final_Sigma context)')
    w.range_table('uc_case_ignorable', ign, 'CPython: case-ignorable (Final_Sigma context)')


def nfc(w):
    ccc = [(c, unicodedata.combining(chr(c))) for c in ALL if unicodedata.combining(chr(c))]
    w.u32_table('uc_ccc', [v for p in ccc for v in p], 'canonical combining class: pairs {cp, ccc} '
                'for ccc != 0, sorted', per=2)
    # full canonical decompositions (Hangul syllables are algorithmic in C)
    dec = []
    pool = []
    for c in ALL:
        if 0xAC00 <= c <= 0xD7A3:
            continue
        d = unicodedata.normalize('NFD', chr(c))
        if d != chr(c):
            assert len(d) <= 4
            dec.append((c, len(pool), len(d)))
            pool += [ord(x) for x in d]
    w.u32_table('uc_decomp', [v for t in dec for v in t], 'full canonical decompositions: rows '
                '{cp, start in uc_decomp_pool, length}, sorted by cp (no Hangul)', per=3)
    w.u32_table('uc_decomp_pool', pool, 'code points of the decompositions')
    # primary composites: the pairs that canonical composition joins (not Hangul)
    comp = []
    for c in ALL:
        if 0xAC00 <= c <= 0xD7A3:
            continue
        d = unicodedata.decomposition(chr(c))
        if not d or d.startswith('<'):
            continue
        parts = [int(x, 16) for x in d.split()]
        if len(parts) != 2:
            continue
        if unicodedata.normalize('NFC', chr(parts[0]) + chr(parts[1])) == chr(c):
            comp.append((parts[0], parts[1], c))
    comp.sort()
    w.u32_table('uc_compose', [v for t in comp for v in t], 'canonical composition: rows '
                '{first, second, composite}, sorted by (first, second) (no Hangul)', per=3)
    # below this code point every character is NFC-stable and never combines with a neighbour
    limit = min([c for c, _ in ccc] + [b for _, b, _ in comp] + [c for c, _, _ in dec
                if unicodedata.normalize('NFC', chr(c)) != chr(c)] + [0x1100])
    w.define('UC_NFC_SAFE_BELOW', f'0x{limit:X}', 'text with only code points below this is NFC')


def python_re(w):
    w.range_table('uc_re_digit', probe(r'\d', 0, re), r"Python re \d (ftfy ANSI_RE)")
    w.range_table('uc_re_word', probe(r'\w', 0, re), r"Python re \w (ftfy BADNESS_RE)")
    w.range_table('uc_re_space', probe(r'\s', 0, re), r"Python re \s (ftfy BADNESS_RE)")


def ftfy_tables(w):
    C = ftfy.chardata
    ents = sorted(C.HTML_ENTITIES.items(), key=lambda kv: kv[0].encode())
    w.h.append('// ftfy HTML_ENTITIES (named entities with ";", incl. ftfy\'s all-caps ones), sorted\n'
               '// by name bytes: {"&name;", UTF-8 replacement}\n'
               'typedef struct { const char *name; const char *value; } UcEntity;\n'
               'extern const UcEntity uc_html_entities[];\nextern const size_t uc_html_entities_n;')
    w.c.append('const UcEntity uc_html_entities[] = {\n' +
               ',\n'.join(f'{{{c_string(k)},{c_string(v)}}}' for k, v in ents) +
               f'}};\nconst size_t uc_html_entities_n = {len(ents)};')
    inv = sorted(html._invalid_charrefs.items())
    w.u32_table('uc_html_invalid_charrefs', [v for k, s in inv for v in (k, ord(s) if s else 0)],
                'html.unescape: numeric references replaced: pairs {num, cp}', per=2)
    assert all(len(s) == 1 for _, s in inv)
    w.range_table('uc_html_invalid_codepoints', set(html._invalid_codepoints),
                  'html.unescape: numeric references that become empty')
    lig = sorted(C.LIGATURES.items())
    w.u32_table('uc_ligatures', [v for k, s in lig for v in [k] + [ord(x) for x in s] + [0] * (3 - len(s))],
                'ftfy fix_latin_ligatures: rows {cp, c1, c2, c3 (0 = none)}', per=4)
    wid = sorted(C.WIDTH_MAP.items())
    assert all(len(s) <= 2 for _, s in wid)
    w.u32_table('uc_width', [v for k, s in wid for v in [k] + [ord(x) for x in s] + [0] * (2 - len(s))],
                'ftfy fix_character_width: rows {cp, c1, c2 (0 = none)}', per=3)
    w.range_table('uc_control_chars', set(C.CONTROL_CHARS), 'ftfy remove_control_chars')
    w.range_table('uc_single_quotes', probe(C.SINGLE_QUOTE_RE.pattern, 0, re), 'ftfy uncurl_quotes: to \'')
    w.range_table('uc_double_quotes', probe(C.DOUBLE_QUOTE_RE.pattern, 0, re), 'ftfy uncurl_quotes: to "')
    enc = C.CHARMAP_ENCODINGS
    w.h.append('// ftfy CHARMAP_ENCODINGS in order: byte 0x80+i decodes to uc_charmap[e][i]\n'
               f'#define UC_N_CHARMAPS {len(enc)}\nextern const char *const uc_charmap_names[];\n'
               'extern const uint32_t uc_charmap[][128];')
    rows = []
    for e in enc:
        s = bytes(range(0x80, 0x100)).decode(e)
        rows.append('{' + ','.join(f'0x{ord(x):X}' for x in s) + '}')
    w.c.append('const char *const uc_charmap_names[] = {' + ','.join(c_string(e) for e in enc) + '};\n'
               'const uint32_t uc_charmap[][128] = {' + wrap(','.join(rows)) + '};')
    for e in enc:  # the encoders are the inverse of the decoders: no character twice
        s = bytes(range(0x80, 0x100)).decode(e) + bytes([0x1A]).decode(e)
        assert len(set(s)) == len(s), e
    w.u32_table('uc_charmap_1a', [ord(bytes([0x1A]).decode(e)) for e in enc],
                'ftfy CHARMAP_ENCODINGS: the character that byte 0x1A decodes to')
    cp = []
    for b in range(0x80, 0xA0):
        try:
            cp.append(ord(bytes([b]).decode('windows-1252')))
        except UnicodeDecodeError:
            cp.append(0)
    w.u32_table('uc_cp1252_c1', cp, "Python's strict windows-1252: bytes 0x80-0x9F (0 = undefined)")
    for name in ('utf8_first_of_2', 'utf8_first_of_3', 'utf8_first_of_4', 'utf8_continuation',
                 'utf8_continuation_strict'):
        w.range_table('uc_' + name, probe('[' + C.UTF8_CLUES[name] + ']', 0, re), f'ftfy UTF8_CLUES {name}')
    check_utf8_detector()
    byte_regex(w, 'uc_altered', C.ALTERED_UTF8_RE)
    byte_regex(w, 'uc_lossy', C.LOSSY_UTF8_RE)
    badness(w)


def check_utf8_detector():
    """UTF8_DETECTOR_RE must find what ref/tokenizer.c's utf8_detector finds: a match starts
    where the previous character is not a strict continuation, then repeats greedily
    first_of_2 cont | first_of_3 cont cont | first_of_4 cont cont cont (first that fits)."""
    import random
    C = ftfy.chardata
    sets = {k: set(map(ord, re.findall('[' + v + ']', ALL_STR[:0x3000]))) for k, v in C.UTF8_CLUES.items()}
    pool = sorted(set().union(*sets.values())) + [ord(x) for x in 'a \n']
    r = random.Random(3)

    def step(s, p):
        for first, n in (('utf8_first_of_2', 1), ('utf8_first_of_3', 2), ('utf8_first_of_4', 3)):
            if p + n < len(s) + 0 and ord(s[p]) in sets[first] and \
                    all(ord(s[p + 1 + k]) in sets['utf8_continuation'] for k in range(n)):
                return n + 1
        return 0

    def mine(s):
        out, p = [], 0
        while p < len(s):
            if (p == 0 or ord(s[p - 1]) not in sets['utf8_continuation_strict']) and step(s, p):
                q = p
                while q < len(s) and step(s, q):
                    q += step(s, q)
                out.append((p, q))
                p = q
            else:
                p += 1
        return out

    assert max(max(v) for v in sets.values()) < 0x3000
    f2, f3, f4 = sets['utf8_first_of_2'], sets['utf8_first_of_3'], sets['utf8_first_of_4']
    assert not (f2 & f3 or f2 & f4 or f3 & f4), 'the C code assumes disjoint first-character classes'
    for _ in range(20000):
        s = ''.join(chr(r.choice(pool)) for _ in range(r.randint(1, 10)))
        assert mine(s) == [m.span() for m in C.UTF8_DETECTOR_RE.finditer(s)], repr(s)


def byte_regex(w, name, rx):
    """A bytes regex made of alternatives of fixed-length byte classes -> 256-bit masks."""
    pat = rx.pattern
    alts, cur, i = [], [], 0
    while i < len(pat):
        b = pat[i]
        if b == ord('|'):
            alts.append(cur)
            cur = []
            i += 1
        elif b == ord('['):
            j = pat.index(b']', i + 2)
            cur.append(pat[i:j + 1])
            i = j + 1
        elif bytes([b]) in b'()*+?{}$^.\\':
            raise ValueError(f'{name}: unsupported syntax at {pat[i:i + 8]!r}')
        else:
            cur.append(re.escape(bytes([b])))
            i += 1
    alts.append(cur)
    masks, aidx = [], []
    for alt in alts:
        aidx += [len(masks) // 8, len(alt)]
        for cls in alt:
            cr = re.compile(cls)
            bits = [0] * 8
            for v in range(256):
                if cr.fullmatch(bytes([v])):
                    bits[v >> 5] |= 1 << (v & 31)
            masks += bits
    w.u32_table(name + '_masks', masks, f'ftfy {name[3:].upper()} regex: byte classes as 256-bit masks', per=8)
    w.u32_table(name + '_alts', aidx, f'ftfy {name[3:].upper()} regex: alternatives {{first class, count}}', per=2)
    # check: the parsed alternatives find the same leftmost matches as the regex
    import random
    r = random.Random(7)
    pool = list(range(0x80, 0x100)) + [0x20, 0x1A, 0x3F, 0x41]

    def at(bs, p):
        for a in range(0, len(aidx), 2):
            f, n = aidx[a], aidx[a + 1]
            if p + n <= len(bs) and all(masks[(f + k) * 8 + (bs[p + k] >> 5)] >> (bs[p + k] & 31) & 1
                                        for k in range(n)):
                return n
        return 0

    for _ in range(20000):
        bs = bytes(r.choice(pool) for _ in range(r.randint(1, 8)))
        m = rx.search(bs)
        mine = next(((p, at(bs, p)) for p in range(len(bs)) if at(bs, p)), None)
        assert (m is None and mine is None) or (m and mine == (m.start(), m.end() - m.start())), (name, bs)


def parse_badness(pattern):
    """BADNESS_RE (verbose) -> list of alternatives, each a list of (kind, arg, optional):
    kind 'cls' (arg: the class text), 'any' ('.'), 'start' ('^')."""
    alts, cur = [], []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch in ' \t\n\r\v\f':
            i += 1
        elif ch == '#':
            i = pattern.index('\n', i)
        elif ch == '|':
            alts.append(cur)
            cur = []
            i += 1
        elif ch == '[':
            j = i + 1
            if pattern[j] == '^':
                j += 1
            if pattern[j] == ']':
                j += 1
            while pattern[j] != ']':
                j += 2 if pattern[j] == '\\' else 1
            cur.append(['cls', pattern[i:j + 1], False])
            i = j + 1
        elif ch == '\\':
            nx = pattern[i + 1]
            if nx in 'sw':
                cur.append(['cls', '\\' + nx, False])
                i += 2
            elif nx == 'x':
                cur.append(['cls', pattern[i:i + 4], False])
                i += 4
            else:
                raise ValueError(pattern[i:i + 10])
        elif ch == '?':
            cur[-1][2] = True
            i += 1
        elif ch == '.':
            cur.append(['any', None, False])
            i += 1
        elif ch == '^':
            cur.append(['start', None, False])
            i += 1
        elif ch in '()*+{}$':
            raise ValueError(f'unsupported regex syntax {ch!r} in BADNESS_RE')
        else:
            cur.append(['cls', re.escape(ch), False])
            i += 1
    alts.append(cur)
    return alts


def badness(w):
    alts = parse_badness(ftfy.badness.BADNESS_RE.pattern)
    classes = {}
    for alt in alts:
        for atom in alt:
            if atom[0] == 'cls' and atom[1] not in classes:
                classes[atom[1]] = probe(atom[1], 0, re)
    names = list(classes)
    # store each class as ranges in one pool
    pool, index = [], []
    for n in names:
        rs = ranges(classes[n])
        index += [len(pool) // 2, len(rs)]
        pool += [v for r in rs for v in r]
    w.u32_table('uc_bad_class_ranges', pool, 'ftfy BADNESS_RE classes: ranges {lo, hi}', per=2)
    w.u32_table('uc_bad_class_index', index, 'ftfy BADNESS_RE classes: {first range, count}', per=2)
    # atoms: class id, or UC_BAD_ANY / UC_BAD_START; + UC_BAD_OPT if optional
    atoms, aidx = [], []
    for alt in alts:
        aidx += [len(atoms), len(alt)]
        for kind, arg, opt in alt:
            code = names.index(arg) if kind == 'cls' else (0x1000 if kind == 'any' else 0x2000)
            atoms.append(code | (0x4000 if opt else 0))
    w.define('UC_BAD_ANY', '0x1000', "BADNESS_RE atom '.': any character but \\n")
    w.define('UC_BAD_START', '0x2000', "BADNESS_RE atom '^': start of the text")
    w.define('UC_BAD_OPT', '0x4000', "BADNESS_RE atom flag: optional ('?')")
    w.u32_table('uc_bad_atoms', atoms, 'ftfy BADNESS_RE atoms')
    w.u32_table('uc_bad_alts', aidx, 'ftfy BADNESS_RE alternatives: {first atom, count}', per=2)
    check_badness(alts, classes)


def check_badness(alts, classes):
    """The parsed alternatives must decide is_bad exactly like BADNESS_RE on random text."""
    import random
    pool = sorted(set().union(*[c for c in classes.values() if len(c) < 5000]))
    pool += [ord(x) for x in 'aZ .,!?\n\t0_é']
    r = random.Random(5)

    def match_at(alt, s, i, k=0):
        if k == len(alt):
            return True
        kind, arg, opt = alt[k]
        if opt and match_at(alt, s, i, k + 1):
            return True
        if kind == 'start':
            return i == 0 and match_at(alt, s, i, k + 1)
        if i >= len(s):
            return False
        ok = s[i] != '\n' if kind == 'any' else ord(s[i]) in classes[arg]
        return ok and match_at(alt, s, i + 1, k + 1)

    for n in range(20000):
        s = ''.join(chr(r.choice(pool)) for _ in range(r.randint(1, 6)))
        mine = any(match_at(a, s, i) for i in range(len(s)) for a in alts)
        assert mine == ftfy.badness.is_bad(s), repr(s)


def main():
    w = Writer()
    tokenizer_classes(w)
    lowercase(w)
    nfc(w)
    python_re(w)
    ftfy_tables(w)
    versions = (f'python {sys.version.split()[0]}, unicodedata {unicodedata.unidata_version}, '
                f'regex {regex.__version__}, ftfy {ftfy.__version__}')
    head = ('// Generated by tools/gen_unicode.py. Do not edit.\n'
            f'// Source: {versions}\n')
    with open(OUT_H + '.tmp', 'w') as f:
        f.write(head + '// The Unicode and ftfy tables of the CLIP tokenizer (ref/tokenizer.c).\n'
                '#ifndef MAVREF_UNICODE_TABLES_H\n#define MAVREF_UNICODE_TABLES_H\n\n'
                '#include <stddef.h>\n#include <stdint.h>\n\n'
                f'#define UC_SOURCE "{versions}"\n\n' + '\n\n'.join(w.h) + '\n\n#endif\n')
    with open(OUT_C + '.tmp', 'w') as f:
        f.write(head + '#include "unicode_tables.h"\n\n' + '\n\n'.join(w.c) + '\n')
    os.replace(OUT_H + '.tmp', OUT_H)
    os.replace(OUT_C + '.tmp', OUT_C)
    print(f'wrote {OUT_C} ({os.path.getsize(OUT_C)} bytes) and {OUT_H}')


if __name__ == '__main__':
    main()
