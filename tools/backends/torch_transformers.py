"""transformers' PyTorch CLIP as a `mavref check` adapter.

    make conformance-env
    bin/mavref check --backend 'tools/.torch-venv/bin/python tools/backends/torch_transformers.py {case} {out}'

    op              implementation
    clip_text       transformers.CLIPTextModel (last_hidden_state), procedural weights under
                    their Flax names (text_model.encoder.layers.0.mlp.fc1.kernel, ...)
    attention_clip  transformers' CLIPAttention with the causal mask CLIPTextTransformer builds
    activation      quick_gelu: transformers.activations.QuickGELUActivation
    tokenize        CLIPTokenizer (slow, ftfy) or, with MAVREF_CLIP_TOKENIZER=fast,
                    CLIPTokenizerFast, built from vectors/clip/clip_merges.txt (no model hub);
                    called as Stable Diffusion calls it (max_length 77, padding, truncation).
                    `mavref check` does not plug tokenize cases; `make conformance` compares
                    them itself (tools/backends/conformance.py).

Every other op exits with status 3 (unsupported).
"""
import json
import os

import numpy as np
import torch

from torchcase import T, N, unsupported, load_params, tdtype, main, HERE
import transformers  # noqa: F401
from transformers import CLIPTextConfig, CLIPTextModel
from transformers.activations import QuickGELUActivation
from transformers.models.clip.modeling_clip import CLIPAttention

ROOT = os.path.dirname(os.path.dirname(HERE))
PAD = 49407


def activation(case):
    if case.attrs['kind'] != 'quick_gelu':
        unsupported(f'activation {case.attrs["kind"]}', 'CLIP uses quick_gelu only (torch_diffusers.py has the others)')
    with torch.no_grad():
        return {'y': N(QuickGELUActivation()(T(case.inputs['x'], case)))}


def _causal(B, Tn, dtype):
    m = torch.full((Tn, Tn), torch.finfo(dtype).min, dtype=dtype).triu(1)
    return m[None, None].expand(B, 1, Tn, Tn)


def attention_clip(case):
    x = T(case.inputs['x'], case)
    heads, d = case.attr('heads', int), case.attr('dim_head', int)
    C = x.shape[-1]
    cfg = CLIPTextConfig(hidden_size=C, num_attention_heads=heads, intermediate_size=4 * C)
    assert heads * d == C
    m = CLIPAttention(cfg).to(tdtype(case)).eval()
    with torch.no_grad():
        for k, p in m.named_parameters():
            layer, w = k.split('.')
            p.copy_(T(case.params[f'{layer}.{"kernel" if w == "weight" else "bias"}'], case))
        mask = _causal(x.shape[0], x.shape[1], x.dtype) if case.attr('causal', int) else None
        y = m(x, attention_mask=None, causal_attention_mask=mask)[0]
    return {'y': N(y)}


def clip_text(case):
    a = case.attrs
    V = int(a['vocab'])
    cfg = CLIPTextConfig(vocab_size=V, hidden_size=int(a['width']), num_hidden_layers=int(a['layers']),
                         num_attention_heads=int(a['heads']), intermediate_size=int(a['mlp']),
                         max_position_embeddings=int(a['max_pos']), hidden_act='quick_gelu', layer_norm_eps=1e-5,
                         bos_token_id=V - 2, eos_token_id=V - 1, pad_token_id=V - 1)
    m = CLIPTextModel(cfg).to(tdtype(case)).eval()
    load_params(m, case, seed=int(a['weights_seed']), numbered='dot')
    ids = torch.from_numpy(np.asarray(case.inputs['ids']).astype(np.int64))
    with torch.no_grad():
        h = m(input_ids=ids).last_hidden_state
    return {'hidden': N(h)}


# ---- the tokenizer, from the committed merges

def _bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def vocab_files():
    """vocab.json and merges.txt (transformers' format) derived from vectors/clip/clip_merges.txt
    (ids 0-255 byte symbols, 256-511 with </w>, then one symbol per merge, then the two
    specials), written once under tools/.torch-venv/clip/."""
    d = os.path.join(HERE, '..', '.torch-venv', 'clip')
    vj, mt = os.path.join(d, 'vocab.json'), os.path.join(d, 'merges.txt')
    if os.path.exists(vj) and os.path.exists(mt):
        return vj, mt
    with open(os.path.join(ROOT, 'vectors', 'clip', 'clip_merges.txt')) as f:
        lines = f.read().split('\n')
    syms = _bytes_to_unicode()
    syms += [s + '</w>' for s in syms]
    merges = []
    for line in lines[1:]:
        if line:
            a, b = (int(v) for v in line.split())
            merges.append((syms[a], syms[b]))
            syms.append(syms[a] + syms[b])
    syms += ['<|startoftext|>', '<|endoftext|>']
    assert len(syms) == 49408
    os.makedirs(d, exist_ok=True)
    with open(vj + '.tmp', 'w', encoding='utf-8') as f:
        json.dump({s: i for i, s in enumerate(syms)}, f, ensure_ascii=False)
    with open(mt + '.tmp', 'w', encoding='utf-8', newline='\n') as f:
        f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges))
    os.replace(vj + '.tmp', vj)
    os.replace(mt + '.tmp', mt)
    return vj, mt


def tokenizer(kind=None):
    kind = kind or os.environ.get('MAVREF_CLIP_TOKENIZER', 'slow')
    vj, mt = vocab_files()
    if kind == 'fast':
        from transformers import CLIPTokenizerFast
        return CLIPTokenizerFast(vocab_file=vj, merges_file=mt, model_max_length=77)
    from transformers import CLIPTokenizer
    return CLIPTokenizer(vj, mt, model_max_length=77)


def tokenize_strings(texts, kind=None):
    """Each string's 77 ids with the trailing 49407s removed (the corpus' form)."""
    tok = tokenizer(kind)
    out = []
    for t in texts:
        ids = tok(t, padding='max_length', max_length=77, truncation=True).input_ids
        while ids and ids[-1] == PAD:
            ids.pop()
        out.append(ids)
    return out


def case_strings(case):
    text = np.asarray(case.inputs['text']).tobytes()
    off = np.asarray(case.inputs['text_offsets'])
    return [text[off[i]:off[i + 1]].decode('utf-8') for i in range(len(off) - 1)]


def expected_ids(case):
    ids, off = np.asarray(case.expected['ids']), np.asarray(case.aux['ids_offsets'])
    return [list(ids[off[i]:off[i + 1]]) for i in range(len(off) - 1)]


def tokenize(case):
    got = tokenize_strings(case_strings(case))
    flat = [i for ids in got for i in ids]
    want = case.tensors['ids']['shape'][0]
    if len(flat) != want:  # the contract fixes the length; say how many strings differ
        exp = expected_ids(case)
        bad = sum(1 for a, b in zip(got, exp) if list(a) != list(b))
        raise SystemExit(f'torch_transformers: {len(flat)} ids where the case has {want}: {bad} strings differ')
    return {'ids': np.asarray(flat, np.int32)}


OPS = {'activation': activation, 'attention_clip': attention_clip, 'clip_text': clip_text, 'tokenize': tokenize}


def _pre_act(meta, head):
    if meta.get('kind') != 'quick_gelu':
        unsupported(f'activation {meta.get("kind")}', 'CLIP uses quick_gelu only')


PRECHECK = {'activation': _pre_act, 'activation_grad': _pre_act}

if __name__ == '__main__':
    main(OPS, precheck=PRECHECK)
