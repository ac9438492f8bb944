"""FlaxCLIPTextModel cases (transformers 4.57.6): token ids -> last_hidden_state.

NOT in export_vectors.CASE_MODULES yet: it has no C runner. Whoever registers the runner
(op 'clip_text', tests/ ... with ref/clip.c) adds 'cases_clip' to CASE_MODULES in the same
change. Until then it is checked with
    JAX_PLATFORMS=cpu tools/.venv/bin/python tools/cases_clip.py          (float32)
    JAX_PLATFORMS=cpu tools/.venv/bin/python tools/cases_clip.py --x64    (float64)
which runs every case and prints shapes and value ranges.

A case file holds
  ids      I64 (B, T): token ids from ref/tokenizer's Python twin (transformers'
           CLIPTokenizer on tools/gen_clip_vocab.py's vocabulary), T <= 77
  y        (B, T, width): last_hidden_state (after final_layer_norm), what SD conditions on
  pooled   (B, width): pooler_output: y at argmax(ids) per row (SD 1.5's config has the
           legacy eos_token_id 2, so transformers takes the first position of the largest
           id, i.e. the first 49407)
metadata:
  vocab, width, layers, heads, mlp, max_pos, eps: the CLIPTextConfig (hidden_act quick_gelu)
  params_seed: the seed of every parameter's procedural values
  gen.<name> for every parameter, in vecspec.proc's format "seed scale offset shape":
    text_model.embeddings.token_embedding.embedding     (vocab, width)   scale 1, offset 0
    text_model.embeddings.position_embedding.embedding  (max_pos, width) scale 1, offset 0
    text_model.encoder.layers.<i>.self_attn.{q,k,v,out}_proj.{kernel,bias}   kernel (in, out)
    text_model.encoder.layers.<i>.layer_norm{1,2}.{scale,bias}
    text_model.encoder.layers.<i>.mlp.fc1.{kernel,bias}  (width, mlp)
    text_model.encoder.layers.<i>.mlp.fc2.{kernel,bias}  (mlp, width)
    text_model.final_layer_norm.{scale,bias}
  (names = the Flax parameter paths joined with '.', as ref/clip.h declares them; kernels
  scale sqrt(3/fan_in), biases 0.1, LayerNorm scales 1 +- 0.1: mavflax.proc_rule, plus
  embeddings with scale 1). The token embedding is described for the whole table; the
  exporter only fills the rows the ids use (the others cannot change the result).
"""
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import procgen  # noqa: E402
from vecspec import Case, np_dtype, out, tol  # noqa: E402

PARAMS_SEED = 4711
VIT_L = dict(vocab=49408, width=768, layers=12, heads=12, mlp=3072, max_pos=77)
SMALL = dict(vocab=49408, width=32, layers=2, heads=4, mlp=128, max_pos=77)

# f32 tolerances (relative to max|y|; the output is LayerNorm-ed, so O(1)). Measured: the
# Flax model in float32 differs from itself in float64 by 2.8e-7 (SMALL) and 8.5e-7 (ViT-L,
# reductions of 3072 terms, 12 layers). A C float32 encoder summing in another order has an
# error of the same size, so |C - Flax32| stays within about twice that: a few eps32 *
# sqrt(reduction length) (1.2e-7 * sqrt(3072) = 6.6e-6). f64 must meet vecspec.TOL_F64.
TOL_SMALL = 5e-6
TOL_VIT_L = 1e-5


def param_shapes(c):
    W, M = c['width'], c['mlp']
    shapes = {'text_model.embeddings.token_embedding.embedding': (c['vocab'], W),
              'text_model.embeddings.position_embedding.embedding': (c['max_pos'], W)}
    for i in range(c['layers']):
        p = f'text_model.encoder.layers.{i}.'
        for proj in ('k_proj', 'v_proj', 'q_proj', 'out_proj'):
            shapes[p + f'self_attn.{proj}.kernel'] = (W, W)
            shapes[p + f'self_attn.{proj}.bias'] = (W,)
        shapes[p + 'layer_norm1.scale'] = (W,)
        shapes[p + 'layer_norm1.bias'] = (W,)
        shapes[p + 'mlp.fc1.kernel'] = (W, M)
        shapes[p + 'mlp.fc1.bias'] = (M,)
        shapes[p + 'mlp.fc2.kernel'] = (M, W)
        shapes[p + 'mlp.fc2.bias'] = (W,)
        shapes[p + 'layer_norm2.scale'] = (W,)
        shapes[p + 'layer_norm2.bias'] = (W,)
    shapes['text_model.final_layer_norm.scale'] = (W,)
    shapes['text_model.final_layer_norm.bias'] = (W,)
    return shapes


def rule(name, shape):
    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'embedding':
        return 1.0, 0.0
    if leaf == 'kernel':
        return math.sqrt(3.0 / int(np.prod(shape[:-1]))), 0.0
    if leaf == 'bias':
        return 0.1, 0.0
    if leaf == 'scale':
        return 0.1, 1.0
    raise ValueError(name)


def rows(shape, seed, name, scale, offset, which):
    """procgen.fill(shape, ...)[which] for a 2-D table, without making the whole table."""
    n_col = shape[1]
    idx = (np.asarray(which, dtype=np.uint64)[:, None] * np.uint64(n_col) +
           np.arange(n_col, dtype=np.uint64)[None, :]).reshape(-1)
    with np.errstate(over='ignore'):
        key = procgen._splitmix64(np.array([(seed ^ procgen.fnv1a64(name)) & procgen.M64], dtype=np.uint64))[0]
        bits = procgen._splitmix64(key + idx)
    u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return (offset + scale * (2.0 * u - 1.0)).reshape(len(which), n_col)


def make_params(c, ids, prec, meta):
    flat = {}
    for name, shape in param_shapes(c).items():
        scale, offset = rule(name, shape)
        meta['gen.' + name] = procgen.describe(shape, PARAMS_SEED, scale, offset)
        if name.endswith('token_embedding.embedding'):
            used = np.unique(ids)
            table = np.zeros(shape, dtype=np_dtype(prec))
            table[used] = rows(shape, PARAMS_SEED, name, scale, offset, used).astype(np_dtype(prec))
            flat[name] = table
        else:
            flat[name] = procgen.fill(shape, PARAMS_SEED, name, scale, offset).astype(np_dtype(prec))
    tree = {}
    for name, v in flat.items():
        d = tree
        parts = name.split('.')
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return tree


def tokenize(texts):
    import cases_tokenizer
    tok = cases_tokenizer.tokenizer()
    return np.array(tok(texts, padding='max_length', max_length=77, truncation=True).input_ids, dtype=np.int64)


def run(c, ids, prec):
    import jax.numpy as jnp
    from transformers import CLIPTextConfig
    from transformers.models.clip.modeling_flax_clip import FlaxCLIPTextModule
    cfg = CLIPTextConfig(vocab_size=c['vocab'], hidden_size=c['width'], num_hidden_layers=c['layers'],
                         num_attention_heads=c['heads'], intermediate_size=c['mlp'],
                         max_position_embeddings=c['max_pos'], hidden_act='quick_gelu', layer_norm_eps=1e-5,
                         bos_token_id=0, eos_token_id=2, pad_token_id=1)  # SD 1.5's text_encoder config
    meta = {k: str(v) for k, v in c.items()}
    meta['eps'] = '1e-05'
    meta['params_seed'] = str(PARAMS_SEED)
    params = make_params(c, ids, prec, meta)
    B, T = ids.shape
    mod = FlaxCLIPTextModule(cfg, dtype=np_dtype(prec))
    res = mod.apply({'params': params}, jnp.asarray(ids), jnp.ones((B, T), dtype=jnp.int32),
                    jnp.broadcast_to(jnp.arange(T), (B, T)), deterministic=True)
    return out(res.last_hidden_state, prec), out(res.pooler_output, prec), meta


def cases(prec):
    prompts = ['a dog running on the beach at sunset, 4k',
               '',  # SD's unconditional prompt
               'An astronaut riding a horse on the moon, highly detailed, trending on artstation',
               'Ζ café 東京 🐱 &amp; don\u2019t']
    full = tokenize(prompts)
    r = np.random.default_rng(4700)
    rand = r.integers(0, 49408, size=(2, 77)).astype(np.int64)
    rand[:, 0] = 49406
    specs = [
        # name, config, ids, tolerance, level
        ('small_b1_t77', SMALL, full[:1], TOL_SMALL, 'quick'),
        ('small_b4_t77', SMALL, full, TOL_SMALL, 'full'),
        ('small_b2_t9', SMALL, full[2:4, :9], TOL_SMALL, 'full'),     # a shorter sequence
        ('small_b2_t77_random', SMALL, rand, TOL_SMALL, 'full'),     # any ids, no EOS
        ('vitl14_b1_t77', VIT_L, full[:1], TOL_VIT_L, 'full'),       # the real text encoder (f64 y: 473 KB)
    ]
    for i, (name, c, ids, t, level) in enumerate(specs):
        y, pooled, meta = run(c, ids, prec)
        yield Case(name=f'clip_text_{name}', op='clip_text', seed=PARAMS_SEED + i, tol=tol(prec, t),
                   tensors=[('ids', ids), ('y', y), ('pooled', pooled)], meta=meta, level=level)


if __name__ == '__main__':
    import jax
    if '--x64' in sys.argv:
        jax.config.update('jax_enable_x64', True)
    jax.config.update('jax_default_matmul_precision', 'highest')
    prec = 'f64' if '--x64' in sys.argv else 'f32'
    for case in cases(prec):
        y = dict(case.tensors)['y']
        print(case.name, dict(case.tensors)['ids'].shape, y.shape, y.dtype, f'max|y| {np.max(np.abs(y)):.3f}',
              f'tol {case.tol:.1e}', f'{len(case.meta)} meta keys')
