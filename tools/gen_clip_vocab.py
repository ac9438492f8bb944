"""Derive the CLIP BPE vocabulary for mavref's C tokenizer (ref/tokenizer.c).

    tools/.venv/bin/python -m pip download --no-deps open_clip_torch==3.3.0 -d tools/.cache
    tools/.venv/bin/python tools/gen_clip_vocab.py

Source: bpe_simple_vocab_16e6.txt.gz (MIT, OpenAI CLIP) read with zipfile from the
open_clip_torch 3.3.0 wheel (open_clip is never imported). The .gz must have sha256
924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a.

Writes:
  vectors/clip/clip_merges.txt   (committed; read by build_tokenizer)
      line 1: "# mavref CLIP BPE merges v1 source-sha256 <hex> merges 48894"
      then one line per merge rank r = 0..48893: "A B", the ids of the two symbols that
      merge; the merged symbol has id 512 + r.
  tools/.cache/clip/vocab.json, merges.txt  (git-ignored; for transformers' CLIPTokenizer)

The vocabulary (49,408 ids) is: 0-255 the byte symbols of GPT-2's byte-to-unicode map in its
order, 256-511 the same with "</w>", 512-49405 the merges joined, 49406 <|startoftext|>,
49407 <|endoftext|>. transformers reads merges lines 1..48894 (after the header line) of the
same text file, so the ranks agree.
"""
import glob
import gzip
import hashlib
import json
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(HERE, '.cache')
MEMBER = 'open_clip/bpe_simple_vocab_16e6.txt.gz'
SHA256 = '924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a'
N_MERGES = 49152 - 256 - 2  # 48894, as transformers and OpenAI slice them
OUT = os.path.join(ROOT, 'vectors', 'clip', 'clip_merges.txt')


def bytes_to_unicode():
    """GPT-2's map from the 256 bytes to printable characters (same order as transformers)."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + \
        list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_source():
    wheels = sorted(glob.glob(os.path.join(CACHE, 'open_clip_torch-3.3.0-*.whl')))
    if not wheels:
        sys.exit('open_clip_torch 3.3.0 wheel not in tools/.cache; run:\n'
                 '  tools/.venv/bin/python -m pip download --no-deps open_clip_torch==3.3.0 -d tools/.cache')
    with zipfile.ZipFile(wheels[0]) as z:
        gz = z.read(MEMBER)
    h = hashlib.sha256(gz).hexdigest()
    if h != SHA256:
        sys.exit(f'{MEMBER}: sha256 {h}, expected {SHA256}')
    return gzip.decompress(gz).decode('utf-8')


def derive(text):
    """(vocab dict symbol->id, merge list of (a, b) symbol pairs)."""
    lines = text.split('\n')
    merges = [tuple(l.split()) for l in lines[1:1 + N_MERGES]]
    assert len(merges) == N_MERGES and all(len(m) == 2 for m in merges)
    b2u = bytes_to_unicode()
    syms = list(b2u.values())
    syms += [s + '</w>' for s in syms]
    syms += [a + b for a, b in merges]
    syms += ['<|startoftext|>', '<|endoftext|>']
    vocab = {s: i for i, s in enumerate(syms)}
    assert len(vocab) == len(syms) == 49408, 'duplicate symbols in the derived vocabulary'
    return vocab, merges


def main():
    text = read_source()
    vocab, merges = derive(text)
    lines = [f'# mavref CLIP BPE merges v1 source-sha256 {SHA256} merges {len(merges)}']
    for a, b in merges:
        lines.append(f'{vocab[a]} {vocab[b]}')
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT + '.tmp', 'w', newline='\n') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(OUT + '.tmp', OUT)
    d = os.path.join(CACHE, 'clip')
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, 'merges.txt'), 'w', encoding='utf-8', newline='\n') as f:
        f.write('#version: 0.2\n')
        for a, b in merges:
            f.write(f'{a} {b}\n')
    print(f'wrote {OUT} ({os.path.getsize(OUT)} bytes) and {d}/vocab.json, merges.txt')


def clip_tokenizer():
    """transformers' slow CLIPTokenizer on the derived files, configured as SD 1.5's."""
    d = os.path.join(CACHE, 'clip')
    if not os.path.exists(os.path.join(d, 'vocab.json')):
        main()
    from transformers import CLIPTokenizer
    return CLIPTokenizer(os.path.join(d, 'vocab.json'), os.path.join(d, 'merges.txt'),
                         model_max_length=77)


if __name__ == '__main__':
    main()
