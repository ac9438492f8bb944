"""The Flax half of the checkpoint fixtures (run by `make fixtures` in tools/.venv).

    fixtures_flax.py unet       the makeavid UNet (tools/mavflax.py, upstream's Flax tree) at a
                                small size: unet/config.json and unet/diffusion_flax_model.msgpack
                                as FlaxModelMixin.save_pretrained writes it (flax.serialization
                                .to_bytes), and its params as numpy for fixtures_torch.py
    fixtures_flax.py expected   (after fixtures_torch.py) the parameters each file gives when the
                                Flax libraries load it, as vectors/model/expected/*.safetensors
                                (Flax names joined with '.', float32: the fp16/bf16 values widen
                                exactly), plus the SD 1.5 Flax folder in bf16, the tokenizer files
                                and the remaining config files.

Expected values come from the libraries' own loaders:
  - msgpack: flax.serialization.msgpack_restore, which FlaxModelMixin.from_pretrained and
    FlaxPreTrainedModel.from_pretrained call;
  - PyTorch files: diffusers' convert_pytorch_state_dict_to_flax (UNet, VAE) and transformers'
    convert_pytorch_state_dict_to_flax (CLIP), what from_pretrained(from_pt=True) runs. This
    venv has no torch, so fixtures_torch.py loads each file with torch.load / safetensors and
    hands the state dict over as numpy arrays (tools/.cache/fixtures/*.npz); diffusers' function
    calls .numpy() on each value, so the arrays are wrapped in a shim with that one method.
    from_pretrained then drops keys the model does not have (the position_ids buffer): so here.
  - LDM single file: diffusers' convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint
    (run in fixtures_torch.py), then the same PyTorch-to-Flax conversion.
"""
import json
import os
import sys

import numpy as np
import jax
import jax.numpy as jnp
from flax import serialization
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mavflax  # noqa: E402

OUT = 'vectors/model'
CACHE = 'tools/.cache/fixtures'

MAVID = mavflax.UNetConfig(in_channels=9, out_channels=4, block_out_channels=(32, 32), layers_per_block=1,
                           attention_head_dim=2, cross_attention_dim=8,
                           down_block_types=('CrossAttnDownBlockPseudo3D', 'DownBlockPseudo3D'),
                           up_block_types=('UpBlockPseudo3D', 'CrossAttnUpBlockPseudo3D'))


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write('\n')


def unet():
    shapes = mavflax.unet_param_shapes(MAVID, video=True)
    r = np.random.default_rng(14)
    flat = {k: (r.integers(-7, 8, s) / 64).astype(np.float32) for k, s in shapes.items()}  # as fixtures_torch.randomize
    d = os.path.join(OUT, 'makeavid', 'unet')
    os.makedirs(d, exist_ok=True)
    params = unflatten_dict({tuple(k.split('.')): v for k, v in flat.items()})
    with open(os.path.join(d, 'diffusion_flax_model.msgpack'), 'wb') as f:
        f.write(serialization.to_bytes(params))
    cfg = dict(json.loads(MAVID.to_json()), _class_name='UNetPseudo3DConditionModel', _diffusers_version='0.16.1',
               sample_size=8)
    write_json(os.path.join(d, 'config.json'), cfg)
    os.makedirs(CACHE, exist_ok=True)
    np.savez(os.path.join(CACHE, 'makeavid_unet_flax.npz'), **flat)


class Shim:
    """A numpy array with the one method diffusers' conversion calls on a torch tensor."""
    def __init__(self, a):
        self.a = a

    def numpy(self):
        return self.a


def load_npz(name):
    z = np.load(os.path.join(CACHE, name + '.npz'))
    return {k: z[k] for k in z.files}


class InitShim:
    """diffusers' convert_pytorch_state_dict_to_flax asks the model for init_weights(rng)."""
    def __init__(self, params):
        self.params = params

    def init_weights(self, rng):
        return self.params


def diffusers_convert(sd, model, init_params=None):
    from diffusers.models.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax
    target = InitShim(init_params) if init_params is not None else model
    flax = convert_pytorch_state_dict_to_flax({k: Shim(v) for k, v in sd.items()}, target)
    return keep_known(flax, init_params if init_params is not None else model.init_weights(jax.random.PRNGKey(0)))


def keep_known(params, reference):
    """from_pretrained's handling of unexpected keys: dropped (with a warning); missing: an error."""
    ref = flatten_dict(reference)
    got = flatten_dict(params)
    missing = [k for k in ref if k not in got]
    assert not missing, f'missing after conversion: {missing[:5]}'
    for k in ref:
        assert got[k].shape == ref[k].shape, (k, got[k].shape, ref[k].shape)
    return unflatten_dict({k: got[k] for k in ref})


def save_expected(name, params, rename=None):
    flat = {'.'.join(k): np.asarray(v) for k, v in flatten_dict(params).items()}
    out = {}
    for k, v in flat.items():
        assert v.dtype in (np.float32, np.float16) or str(v.dtype) == 'bfloat16', (k, v.dtype)
        out[rename(k) if rename else k] = np.ascontiguousarray(v if v.dtype == np.float16 else v.astype(np.float32))  # bf16: exact widening
    d = os.path.join(OUT, 'expected')
    os.makedirs(d, exist_ok=True)
    save_file(out, os.path.join(d, name + '.safetensors'))
    return flat


def same(a, b):
    fa, fb = flatten_dict(a), flatten_dict(b)
    assert fa.keys() == fb.keys(), set(fa) ^ set(fb)
    for k in fa:
        x, y = np.asarray(fa[k]), np.asarray(fb[k])
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x.view(np.uint8), y.view(np.uint8)), k


def sd_unet_model():
    from diffusers import FlaxUNet2DConditionModel
    with open(os.path.join(OUT, 'sd15', 'unet', 'config.json')) as f:
        cfg = json.load(f)
    return FlaxUNet2DConditionModel.from_config(cfg)


def vae_model(folder):
    from diffusers import FlaxAutoencoderKL
    with open(os.path.join(folder, 'vae', 'config.json')) as f:
        return FlaxAutoencoderKL.from_config(json.load(f))


def clip_model(folder):
    from transformers import CLIPTextConfig, FlaxCLIPTextModel
    return FlaxCLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(folder, 'text_encoder')))


def transformers_convert(sd, model):
    from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax
    return keep_known(convert_pytorch_state_dict_to_flax(dict(sd), model), model.params)


def mavref_2d_name(shapes2d):
    """diffusers' FlaxUNet2DConditionModel name -> mavref's (every 2-D conv nested as spatial_conv)."""
    back = {mavflax.to_diffusers_2d_name(k): k for k in shapes2d}
    return lambda k: back[k]


def tokenizer_files(folder):
    """vocab.json and merges.txt as transformers' CLIPTokenizer.save_pretrained writes them, from
    the committed merges (vectors/clip/clip_merges.txt, derived from OpenAI's BPE file)."""
    from transformers import CLIPTokenizer
    import gen_clip_vocab
    b2u = gen_clip_vocab.bytes_to_unicode()
    syms = list(b2u.values())
    syms = syms + [s + '</w>' for s in syms]
    merges = []
    with open('vectors/clip/clip_merges.txt') as f:
        next(f)
        for line in f:
            a, b = map(int, line.split())
            merges.append((syms[a], syms[b]))
            syms.append(syms[a] + syms[b])
    syms += ['<|startoftext|>', '<|endoftext|>']
    tmp = os.path.join(CACHE, 'tok')
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump({s: i for i, s in enumerate(syms)}, f, ensure_ascii=False)
    with open(os.path.join(tmp, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges))
    tok = CLIPTokenizer(os.path.join(tmp, 'vocab.json'), os.path.join(tmp, 'merges.txt'), pad_token='<|endoftext|>')
    assert tok('a photo of a cat').input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    tok.save_pretrained(os.path.join(folder, 'tokenizer'))


def expected():
    from diffusers import FlaxDDIMScheduler, FlaxPNDMScheduler
    mk = os.path.join(OUT, 'makeavid')
    sd = os.path.join(OUT, 'sd15')
    # makeavid UNet: msgpack as from_pretrained reads it; .bin/.safetensors through diffusers' rules
    with open(os.path.join(mk, 'unet', 'diffusion_flax_model.msgpack'), 'rb') as f:
        umsg = serialization.msgpack_restore(f.read())
    init = unflatten_dict({tuple(k.split('.')): jnp.zeros(s, jnp.float32)
                           for k, s in mavflax.unet_param_shapes(MAVID, video=True).items()})
    ubin = diffusers_convert(load_npz('makeavid_unet_bin'), None, init)
    same(umsg, ubin)
    save_expected('makeavid_unet', umsg)
    save_expected('makeavid_vae', diffusers_convert(load_npz('makeavid_vae_bin'), vae_model(mk)))
    save_expected('makeavid_clip', transformers_convert(load_npz('makeavid_clip_bin'), clip_model(mk)))
    # SD 1.5: the fp16 safetensors folder
    um = sd_unet_model()
    shapes2d = mavflax.unet_param_shapes(mavflax.UNetConfig(
        in_channels=4, out_channels=4, block_out_channels=(32, 32), layers_per_block=1, attention_head_dim=2,
        cross_attention_dim=8, down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
        up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D')), video=False)
    ren = mavref_2d_name(shapes2d)
    su = diffusers_convert(load_npz('sd15_unet'), um)
    sv = diffusers_convert(load_npz('sd15_vae'), vae_model(sd))
    sc = transformers_convert(load_npz('sd15_clip'), clip_model(sd))
    save_expected('sd15_unet', su, ren)
    save_expected('sd15_vae', sv)
    save_expected('sd15_clip', sc)
    # the LDM single file through diffusers' converter gives the same parameters
    ldm_v = load_npz('sd15_ldm_vae')
    for k in list(ldm_v):  # diffusers 0.16.1's conv_attn_to_linear leaves proj_attn (C,C,1)
        if k.endswith('proj_attn.weight') and ldm_v[k].ndim == 3:
            ldm_v[k] = ldm_v[k][:, :, 0]
    same(su, diffusers_convert(load_npz('sd15_ldm_unet'), um))
    same(sv, diffusers_convert(ldm_v, vae_model(sd)))
    same(sc, transformers_convert(load_npz('sd15_ldm_clip'), clip_model(sd)))
    # SD 1.5 as an old Flax folder in bf16, written by the libraries' save_pretrained
    fl = os.path.join(OUT, 'sd15-flax')
    bf = lambda p: jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.bfloat16), p)
    um.save_pretrained(os.path.join(fl, 'unet'), params=bf(su))
    vm = vae_model(sd)
    vm.save_pretrained(os.path.join(fl, 'vae'), params=bf(sv))
    cm = clip_model(sd)
    cm.params = bf(sc)
    cm.save_pretrained(os.path.join(fl, 'text_encoder'))
    from diffusers import FlaxUNet2DConditionModel, FlaxAutoencoderKL
    from transformers import FlaxCLIPTextModel
    _, fu = FlaxUNet2DConditionModel.from_pretrained(os.path.join(fl, 'unet'), dtype=jnp.bfloat16)
    _, fv = FlaxAutoencoderKL.from_pretrained(os.path.join(fl, 'vae'), dtype=jnp.bfloat16)
    fc = FlaxCLIPTextModel.from_pretrained(os.path.join(fl, 'text_encoder')).params
    # the bf16 folder loads to the same values (k/64 is exact in bf16): its test reads
    # expected/sd15_*.safetensors, checked here value for value
    widen = lambda p: jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), p)
    same(widen(fu), widen(su))
    same(widen(fv), widen(sv))
    same(widen(fc), widen(sc))
    assert all(np.asarray(x).dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves((fu, fv, fc)))
    # tokenizer and scheduler, as the libraries write them
    for folder in (mk, sd, fl):
        tokenizer_files(folder)
    FlaxDDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', clip_sample=False,
                      set_alpha_to_one=False, steps_offset=1).save_config(os.path.join(mk, 'scheduler'))
    for folder in (sd, fl):
        FlaxPNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', skip_prk_steps=True,
                          steps_offset=1).save_config(os.path.join(folder, 'scheduler'))
    write_json(os.path.join(mk, 'model_index.json'), {
        '_class_name': 'StableDiffusionPseudo3DPipeline', '_diffusers_version': '0.16.1',
        'scheduler': ['diffusers', 'DDIMScheduler'], 'text_encoder': ['transformers', 'CLIPTextModel'],
        'tokenizer': ['transformers', 'CLIPTokenizer'], 'unet': ['diffusers', 'UNetPseudo3DConditionModel'],
        'vae': ['diffusers', 'AutoencoderKL']})
    write_json(os.path.join(fl, 'model_index.json'), {
        '_class_name': 'FlaxStableDiffusionPipeline', '_diffusers_version': '0.16.1',
        'scheduler': ['diffusers', 'FlaxPNDMScheduler'], 'text_encoder': ['transformers', 'FlaxCLIPTextModel'],
        'tokenizer': ['transformers', 'CLIPTokenizer'], 'unet': ['diffusers', 'FlaxUNet2DConditionModel'],
        'vae': ['diffusers', 'FlaxAutoencoderKL']})
    print('expected parameters written to', os.path.join(OUT, 'expected'))


# --- the FLAX pipeline on the folders --------------------------------------------------------
# fixtures_flax.py pipeline f32|f64: upstream's pipeline (tools/cases_pipeline.generate, the same
# steps as jax_inference.py) run with the networks as the libraries load vectors/model/makeavid
# (and SD 1.5's UNet from vectors/model/sd15 for the hint latent), the tokenizer read from the
# folder by transformers' CLIPTokenizer. Writes vectors/model/pipeline_<kind>_<prec>.safetensors.

PIPE = [  # name, scheduler, steps, guidance, prompt, neg_prompt, mask kind, seed
    ('hint', 'dpm', 2, 7.5, 'a person dancing on the beach, 4k', 'blurry', 'rect', 14001),
    ('imagegen', 'ddim', 2, 9.0, 'a red car in the rain', '', 'imagegen', 14002),
]
PIPE_FRAMES, PIPE_LAT = 2, (8, 6)


def tokenizer_ids(folder):
    """The 77 ids of a text as upstream's prepare_inputs asks transformers' CLIPTokenizer (read
    from the folder's tokenizer/) for them: truncation, padding 'max_length'."""
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(os.path.join(folder, 'tokenizer'))
    return lambda t: tok([t], truncation=True, max_length=77, padding='max_length', return_tensors='np').input_ids.astype(np.int64)


def pipeline_file(path, prec, nets, ids_of, kind, steps, guidance, prompt, neg, hint_u8, mask_u8, noise, hint_noise,
                  tol, meta=None, res=None):
    """One run of upstream's pipeline (tools/cases_pipeline.generate) with the networks nets, as a
    case file: inputs hint (H,W,3) u8, mask (H,W) u8, noise (1,4,F,h,w), hint_noise (1,4,h,w)
    when there is no hint image (hint_noise given: upstream's use_imagegen, the hint and mask
    images are then unused); expected ids, neg_ids, text_emb and the final latents; meta prompt,
    neg_prompt, scheduler, steps, guidance, frames, height, width, imagegen, tol, plus meta.
    res: generate's result for these inputs when the caller has run it already. Returns it."""
    import cases_pipeline as cp
    from vecspec import np_dtype
    dt = np_dtype(prec)
    imagegen = hint_noise is not None
    ids, neg_ids = ids_of(prompt), ids_of(neg)
    if res is None:
        res = cp.generate(prec, kind, steps, guidance, ids, neg_ids, hint_u8, mask_u8, noise, hint_noise, nets=nets)
    t = {'hint': hint_u8, 'mask': mask_u8, 'noise': np.asarray(noise, dt), 'ids': ids, 'neg_ids': neg_ids,
         'text_emb': np.asarray(res['text_emb'], dt), 'latents': np.asarray(res['latents_steps'][-1], dt)}
    if imagegen:
        t['hint_noise'] = np.asarray(hint_noise, dt)
    for k, a in t.items():
        assert np.all(np.isfinite(a)), k
    H, W = mask_u8.shape
    m = {'prompt': prompt, 'neg_prompt': neg, 'scheduler': kind, 'steps': str(steps), 'guidance': repr(guidance),
         'frames': str(noise.shape[2]), 'height': str(H), 'width': str(W), 'imagegen': '1' if imagegen else '0',
         'tol': repr(tol)}
    m.update(meta or {})
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, path, metadata=m)
    return res


def pipeline(prec):
    import cases_pipeline as cp
    from diffusers import FlaxAutoencoderKL
    from transformers import CLIPTextConfig, FlaxCLIPTextModel
    from vecspec import np_dtype, normal, rng
    dt = np_dtype(prec)
    mk, sd = os.path.join(OUT, 'makeavid'), os.path.join(OUT, 'sd15')
    cast = lambda p: jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x).astype(np.float32).astype(dt)), p)
    with open(os.path.join(mk, 'unet', 'diffusion_flax_model.msgpack'), 'rb') as f:
        unet_p = cast(serialization.msgpack_restore(f.read()))
    with open(os.path.join(mk, 'vae', 'config.json')) as f:
        vae = FlaxAutoencoderKL.from_config(json.load(f), dtype=dt)
    vae_p = cast(diffusers_convert(load_npz('makeavid_vae_bin'), vae))
    clip = FlaxCLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(mk, 'text_encoder')), dtype=dt)
    clip_p = cast(transformers_convert(load_npz('makeavid_clip_bin'), clip))
    with open(os.path.join(mk, 'unet', 'config.json')) as f:
        ucfg = mavflax.UNetConfig.from_json({k: v for k, v in json.load(f).items() if k in mavflax.UNetConfig.__dataclass_fields__})
    with open(os.path.join(sd, 'unet', 'config.json')) as f:
        c2 = json.load(f)
    u2cfg = mavflax.UNetConfig.from_json({k: c2[k] for k in mavflax.UNetConfig.__dataclass_fields__ if k in c2})
    su = diffusers_convert(load_npz('sd15_unet'), sd_unet_model())
    ren = mavref_2d_name(mavflax.unet_param_shapes(u2cfg, video=False))
    u2_p = cast(unflatten_dict({tuple(ren('.'.join(k)).split('.')): v for k, v in flatten_dict(su).items()}))
    nets = dict(clip=clip, clip_p=clip_p, vae=vae, vae_p=vae_p, unet_config=ucfg, unet_p=unet_p,
                unet2d_config=u2cfg, unet2d_p=u2_p)
    ids_of = tokenizer_ids(mk)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = PIPE_LAT
    H, W = h * factor, w * factor
    for name, kind, steps, guidance, prompt, neg, mask_kind, seed in PIPE:
        r = rng(seed)
        imagegen = mask_kind == 'imagegen'
        hint_u8, mask_u8 = cp.make_images(r, H, W, 'zero' if imagegen else mask_kind)
        noise = normal(r, (1, 4, PIPE_FRAMES, h, w), prec)
        hint_noise = normal(r, (1, 4, h, w), prec) if imagegen else None
        pipeline_file(os.path.join(OUT, f'pipeline_{name}_{prec}.safetensors'), prec, nets, ids_of, kind, steps, guidance,
                      prompt, neg, hint_u8, mask_u8, noise, hint_noise, cp.TOL_PIPE_F64 if prec == 'f64' else cp.TOL_PIPE_F32)
    print('pipeline cases written', prec)


if __name__ == '__main__':
    jax.config.update('jax_platforms', 'cpu')
    if sys.argv[1] == 'pipeline':
        if sys.argv[2] == 'f64':
            jax.config.update('jax_enable_x64', True)
        jax.config.update('jax_default_matmul_precision', 'highest')
        pipeline(sys.argv[2])
    else:
        {'unet': unet, 'expected': expected}[sys.argv[1]]()
