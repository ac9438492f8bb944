"""The FLAX pipeline on the toy text-to-video model (issue 15; `make toy-cases`, in tools/.venv).

    toy_flax.py f32|f64     writes vectors/toy/pipeline_{imagegen,hint}_<prec>.safetensors

The toy model's folders, as mavref trained them (`make toy-model`): vectors/toy/makeavid/
(diffusers-style: unet/, vae/, text_encoder/, tokenizer/, scheduler/) and vectors/toy/hint/
(unet/: the 2-D UNet that draws the first frame). Every weight file is safetensors with mavref's
(= Flax) parameter names, the text encoder's values float16. They load here into the Flax
models without renaming; every file must hold exactly the model's parameters, of its shapes:
  - the pseudo-3D UNet: upstream's UNetPseudo3DConditionModel as the exporter builds it
    (tools/mavflax.py, checked against upstream's parameter tree), config from unet/config.json
  - the 2-D UNet: as tools/fixtures_flax.py runs SD 1.5's hint UNet (mavflax's 2-D mode); the
    float64 run first checks that on these weights it equals diffusers' FlaxUNet2DConditionModel
    (mavflax.check_2d_against_diffusers, rel < 1e-12)
  - the VAE: diffusers' FlaxAutoencoderKL.from_config(vae/config.json)
  - the text encoder: transformers' FlaxCLIPTextModel(CLIPTextConfig.from_pretrained(...)),
    its float16 values widened exactly
  - the tokenizer: transformers' CLIPTokenizer.from_pretrained(tokenizer/)
then upstream's pipeline (tools/cases_pipeline.generate, the steps of jax_inference.py) runs
in the case's precision (float32 at jax_default_matmul_precision 'highest', as the exporter)
and tools/fixtures_flax.pipeline_file writes the case in the layout of
vectors/model/pipeline_*.safetensors, plus meta "model" and "hint_model" (the folders, from
the repository root), "weights_sha256" (the four weight files the case was made with) and, in
float32, "tol_basis" (f32_tolerance: the f64 cases are written first).

The two cases, same settings (DPM-Solver++, 12 steps, guidance 5 for both UNets, 12 frames,
64x64, fixed noise):
  imagegen   text only, "a red triangle moving right": the 2-D UNet makes the hint latent
  hint       a given first frame, "a blue bar moving up": the first frame of a toy-world clip
             of that caption (tools/toyworld.py = ref/toyworld.c byte for byte), no mask
"""
import hashlib
import json
import os
import sys

import numpy as np
import jax
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fixtures_flax  # noqa: E402
import mavflax  # noqa: E402
import toyworld  # noqa: E402

TOY = 'vectors/toy'
MODEL, HINT = TOY + '/makeavid', TOY + '/hint'
WEIGHTS = ('makeavid/unet/diffusion_pytorch_model.safetensors', 'makeavid/vae/diffusion_pytorch_model.safetensors',
           'makeavid/text_encoder/model.safetensors', 'hint/unet/diffusion_pytorch_model.safetensors')
SCHED, STEPS, GUIDANCE, FRAMES, SIZE = 'dpm', 12, 5.0, 12, 64
# name, prompt, neg_prompt, hint clip (colour, shape, direction) or None, noise seed
CASES = [
    ('imagegen', 'a red triangle moving right', '', None, 15001),
    ('hint', 'a blue bar moving up', '', (2, toyworld.BAR, toyworld.UP), 15002),
]
HINT_CLIP_SEED, HINT_CLIP_INDEX = 15, 0


def schedule(folder):
    """The model folder's schedule (scheduler/scheduler_config.json: betas and prediction type),
    as cases_sched.make takes it; the other settings must be SD's, as mavref's pipeline reads them."""
    with open(os.path.join(folder, 'scheduler', 'scheduler_config.json')) as f:
        c = json.load(f)
    assert c.get('steps_offset', 1) == 1 and not c.get('set_alpha_to_one', False), c
    assert c.get('beta_schedule') == 'scaled_linear', c
    return {k: c[k] for k in ('num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'prediction_type')}


def unet_config(folder):
    with open(os.path.join(folder, 'unet', 'config.json')) as f:
        c = json.load(f)
    return mavflax.UNetConfig.from_json({k: c[k] for k in mavflax.UNetConfig.__dataclass_fields__ if k in c})


def load_tree(path, shapes, dt):
    """The safetensors file as the model's parameter tree: exactly the names and shapes of
    shapes ({dotted name: shape}), every value widened exactly (float16/float32 -> dt)."""
    flat = load_file(path)
    extra, missing = sorted(set(flat) - set(shapes)), sorted(set(shapes) - set(flat))
    assert not extra and not missing, f'{path}: not parameters of the model: {extra[:5]}; missing: {missing[:5]}'
    for k, s in shapes.items():
        assert tuple(flat[k].shape) == tuple(s), (path, k, flat[k].shape, s)
        assert flat[k].dtype in (np.float16, np.float32), (path, k, flat[k].dtype)
    return unflatten_dict({tuple(k.split('.')): jnp.asarray(v.astype(np.float32).astype(dt)) for k, v in flat.items()})


def shapes_of(tree):
    return {'.'.join(k): tuple(v.shape) for k, v in flatten_dict(tree).items()}


def networks(prec):
    from diffusers import FlaxAutoencoderKL
    from transformers import CLIPTextConfig, FlaxCLIPTextModel
    from vecspec import np_dtype
    dt = np_dtype(prec)
    ucfg, u2cfg = unet_config(MODEL), unet_config(HINT)
    unet_p = load_tree(os.path.join(TOY, WEIGHTS[0]), mavflax.unet_param_shapes(ucfg, video=True), dt)
    with open(os.path.join(MODEL, 'vae', 'config.json')) as f:
        vae = FlaxAutoencoderKL.from_config(json.load(f), dtype=dt)
    vae_p = load_tree(os.path.join(TOY, WEIGHTS[1]), shapes_of(jax.eval_shape(vae.init_weights, jax.random.PRNGKey(0))), dt)
    clip = FlaxCLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(MODEL, 'text_encoder')), dtype=dt, _do_init=False)
    T = clip.config.max_position_embeddings
    cshapes = jax.eval_shape(lambda x: clip.module.init(jax.random.PRNGKey(0), x, jnp.ones_like(x), jnp.arange(T)[None]),
                             jax.ShapeDtypeStruct((1, T), jnp.int32))
    clip_p = load_tree(os.path.join(TOY, WEIGHTS[2]), shapes_of(cshapes['params']), dt)
    u2_p = load_tree(os.path.join(TOY, WEIGHTS[3]), mavflax.unet_param_shapes(u2cfg, video=False), dt)
    assert not u2cfg.down_block_types[0].endswith('Pseudo3D') and u2cfg.in_channels == 4, 'the hint UNet is 2-D'
    return dict(clip=clip, clip_p=clip_p, vae=vae, vae_p=vae_p, unet_config=ucfg, unet_p=unet_p,
                unet2d_config=u2cfg, unet2d_p=u2_p)


def weights_sha256():
    out = []
    for w in WEIGHTS:
        with open(os.path.join(TOY, w), 'rb') as f:
            out.append(f'{w}={hashlib.sha256(f.read()).hexdigest()}')
    return ','.join(out)


def hint_frame(color, shape, direction):
    """The first frame (SIZE, SIZE, 3) of the toy world's clip of that caption."""
    clip = toyworld.clip_for(color, shape, direction, HINT_CLIP_SEED, HINT_CLIP_INDEX, SIZE, FRAMES)
    return toyworld.render(clip, SIZE, FRAMES)[0], toyworld.caption(clip)


def f32_tolerance(name, sums, lat32):
    """float32 cases: the expected values are JAX float32's, which carry JAX's own float32 error
    (a toy frame is flat: a plain background and one shape, which the VAE encoder's float32
    GroupNorms may resolve less well than mavref's). It is measured against the float64 case of
    the same weights (written first: `make toy-cases`), and the tolerance is the pipeline's 5e-5
    or, if larger, 8x that error rounded up to one digit; meta "tol_basis" says which."""
    import cases_pipeline as cp
    from safetensors import safe_open
    path = os.path.join(TOY, f'pipeline_{name}_f64.safetensors')
    if not os.path.exists(path):
        sys.exit(f'{path} is missing: the float32 cases need the float64 ones first (toy_flax.py f64)')
    with safe_open(path, 'np') as f:
        if f.metadata().get('weights_sha256') != sums:
            sys.exit(f'{path} was made with other weights: run toy_flax.py f64 first')
        lat64 = f.get_tensor('latents')
    rel = float(np.abs(lat32 - lat64).max() / np.abs(lat64).max())
    tol = cp.TOL_PIPE_F32
    if 8 * rel > tol:
        e = 10.0 ** np.floor(np.log10(8 * rel))
        tol = float(np.ceil(8 * rel / e) * e)
    return tol, f'JAX float32 against float64 (pipeline_{name}_f64): rel {rel:.3e}; tol = max({cp.TOL_PIPE_F32:g}, 8x that)'


def main(prec):
    import cases_pipeline as cp
    from vecspec import normal, rng
    nets = networks(prec)
    if prec == 'f64':
        mavflax.check_2d_against_diffusers(nets['unet2d_config'], nets['unet2d_p'])
    ids_of = fixtures_flax.tokenizer_ids(MODEL)
    factor = 2 ** (len(nets['vae'].config.block_out_channels) - 1)
    h = w = SIZE // factor
    sums = weights_sha256()
    for name, prompt, neg, hint_clip, seed in CASES:
        r = rng(seed)
        mask_u8 = np.zeros((SIZE, SIZE), np.uint8)
        meta = {'model': MODEL, 'hint_model': HINT, 'noise_seed': str(seed), 'weights_sha256': sums}
        if hint_clip is None:
            hint_u8 = np.zeros((SIZE, SIZE, 3), np.uint8)
        else:
            hint_u8, cap = hint_frame(*hint_clip)
            assert cap == prompt, (cap, prompt)
            meta['hint_source'] = (f'toyworld clip_for(color={hint_clip[0]}, shape={hint_clip[1]}, direction={hint_clip[2]}, '
                                   f'seed={HINT_CLIP_SEED}, index={HINT_CLIP_INDEX}, size={SIZE}, frames={FRAMES}), frame 0')
        noise = normal(r, (1, 4, FRAMES, h, w), prec)
        hint_noise = normal(r, (1, 4, h, w), prec) if hint_clip is None else None
        ids, neg_ids = ids_of(prompt), ids_of(neg)
        res = cp.generate(prec, SCHED, STEPS, GUIDANCE, ids, neg_ids, hint_u8, mask_u8, noise, hint_noise, nets=nets,
                          sched_cfg=schedule(MODEL))
        lat = np.asarray(res['latents_steps'][-1], np.float64)
        line = ''
        tol = cp.TOL_PIPE_F64
        if prec == 'f32':
            tol, meta['tol_basis'] = f32_tolerance(name, sums, lat)
            line = '; ' + meta['tol_basis'] + f' = {tol:g}'
        path = os.path.join(TOY, f'pipeline_{name}_{prec}.safetensors')
        fixtures_flax.pipeline_file(path, prec, nets, ids_of, SCHED, STEPS, GUIDANCE, prompt, neg, hint_u8, mask_u8,
                                    noise, hint_noise, tol, meta, res=res)
        print(f'{path}: final latents max|x| {np.abs(lat).max():.4g}{line}', flush=True)


if __name__ == '__main__':
    jax.config.update('jax_platforms', 'cpu')
    if sys.argv[1:] not in (['f32'], ['f64']):
        sys.exit('usage: toy_flax.py f32|f64')
    if sys.argv[1] == 'f64':
        jax.config.update('jax_enable_x64', True)
    jax.config.update('jax_default_matmul_precision', 'highest')
    main(sys.argv[1])
