"""End-to-end vectors of the inference pipeline (op 'pipeline'), step by step as upstream's
InferenceUNetPseudo3D.prepare_inputs + _generate (jax_inference.py L184-238, L326-483), on
small procedural networks: transformers' CLIPTokenizer and FlaxCLIPTextModel, mavflax's
UNetPseudo3DConditionModel (= upstream's Flax UNet), diffusers' FlaxAutoencoderKL and the
Flax DPM-Solver++ / DDIM schedulers with SD's configuration. Order of work: SPEC.md section 9.1.

Every weight is procedural (mavflax.proc_rule; CLIP's 'embedding' tables scale 1 offset 0 as
in cases_clip_text.py), regenerated on the C side from the three seeds in the metadata.

File contents (op 'pipeline'); B = 1, T = 77, F frames, latents (h, w), pixels (H, W) =
(h, w) * vae_factor:
  inputs
    hint          U8  (H, W, 3)    RGB hint image
    mask          U8  (H, W)       grayscale mask (all zero in the *_nomask case)
    noise         F   (1,4,F,h,w)  initial noise (numpy, float64 draw cast), x init_noise_sigma=1
  expected
    ids, neg_ids  I64 (1, 77)      tokenizer ids of prompt / neg_prompt (exact)
    text_emb, neg_emb  F (1,77,W)  CLIP last_hidden_state
    hint_latent   F   (1,4,h,w)    VAE posterior mean x 0.18215 (before the repeat over frames)
    mask_latent   F   (1,1,h,w)    binarized mask resized 'nearest' (before the repeat)
    timesteps     I64 (n,)         the scheduler's timesteps (exact)
    latents_steps F   (n,1,4,F,h,w) latents after each scheduler step (the last is the final)
    frames_float  F   (F,3,H,W)    VAE-decoded frames before quantization
    frames        U8  (F,H,W,3)    round((x/2+0.5)*255) clipped, per frames_rule
  meta: prompt, neg_prompt (UTF-8), scheduler ('dpm'|'ddim'), steps, guidance (repr of the
    float), frames, height, width (pixels), latent_height, latent_width, vae_factor,
    scaling_factor, unet_config (JSON of mavflax.UNetConfig), unet_seed, unet_params,
    vae_block_out_channels, vae_layers_per_block, vae_seed, vae_params, clip_vocab,
    clip_width, clip_layers, clip_heads, clip_mlp, clip_max_pos, clip_seed, clip_params
    (the *_params are tensor counts), frames_rule ('maxdiff=D frac=P': the uint8 frames may
    differ by at most D levels on at most a fraction P of the bytes), noise_seed.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from diffusers import FlaxAutoencoderKL
from transformers import CLIPTextConfig, FlaxCLIPTextModel

import cases_sched
import gen_clip_vocab
import mavflax
import procgen
from cases_clip_text import clip_rule
from cases_vae import vae_params
from mavflax import UNetConfig
from vecspec import Case, normal, np_dtype, rng

SCALING = 0.18215          # FlaxAutoencoderKL's config.scaling_factor
FRAMES = 3
LAT_H, LAT_W = 16, 8       # latent size; w != 4 (diffusers' decode would misread NCHW)

CLIP = dict(vocab=49408, width=32, layers=2, heads=2, mlp=64, max_pos=77)
VAE_BOC, VAE_LAYERS = (32, 64, 64), 1   # 3 levels: 4 pixels per latent pixel
VAE_FACTOR = 2 ** (len(VAE_BOC) - 1)
UNET = UNetConfig(in_channels=9, out_channels=4, block_out_channels=(32, 64, 64), layers_per_block=1,
                  attention_head_dim=(2, 4, 4), cross_attention_dim=CLIP['width'],
                  down_block_types=('CrossAttnDownBlockPseudo3D', 'CrossAttnDownBlockPseudo3D', 'DownBlockPseudo3D'),
                  up_block_types=('UpBlockPseudo3D', 'CrossAttnUpBlockPseudo3D', 'CrossAttnUpBlockPseudo3D'))
UNET_SEED, VAE_SEED, CLIP_SEED = 9100, 9101, 9102
# upstream's hint generator when no hint image is given (use_imagegen): SD 1.5's 2-D UNet, here
# the same small network in 2-D mode (mavflax, equal to diffusers' FlaxUNet2DConditionModel)
UNET2D = dataclasses.replace(UNET, in_channels=4)
UNET2D_SEED = 9103

# Tolerances (relative, max|got-exp| / max|exp| per float tensor; ids, timesteps exact).
# float64: the latents pass through 2n UNet evaluations (each ~40 sequential GEMM/norm stages,
# held to 1e-9 alone in cases_unet.py), the guidance and the scheduler: 1e-9 for every tensor.
# The frames are then exact: no float64 value of (x/2+0.5)*255 in these files lies closer than
# 1.0e-5 to a rounding boundary k+1/2, while an error of 1e-9 relative moves it by < 1e-6.
TOL_PIPE_F64 = 1e-9
# float32: measured as JAX float32 against JAX float64 on these cases (a C float32 build differs
# from JAX float32 by errors of the same kind and size): text_emb/neg_emb <= 3.1e-7,
# hint_latent <= 5.3e-6 (the 3-level VAE encoder), latents_steps <= 6.1e-6 (the guidance
# multiplies the UNet's float32 error, ~1e-6 per evaluation, by up to 2g+1 in eps, and DPM/DDIM
# divide it by alpha_t ~ 0.07 near t = 999; later steps do not grow it), frames_float <= 6.5e-6.
# 5e-5 is ~8x the largest. The uint8 frames: JAX float32 vs float64 differ by one level on
# 1..7 of 18432 bytes (<= 0.04%); the rule allows 0.1%.
TOL_PIPE_F32 = 5e-5
FRAMES_RULE_F32 = 'maxdiff=1 frac=0.001'   # at most 1 level on at most 0.1% of the bytes
FRAMES_RULE_F64 = 'maxdiff=0 frac=0'       # exact

# (name, scheduler, steps, guidance, prompt, neg_prompt, mask kind, seed, level)
SPECS = [
    ('pipeline_dpm_s5_hintmask', 'dpm', 5, 15.0, 'a person dancing on the beach, 4k', '', 'rect', 9200, 'quick'),
    ('pipeline_ddim_s3_hintmask', 'ddim', 3, 15.0, 'A cat playing the piano!', '', 'rect', 9201, 'full'),
    ('pipeline_dpm_s3_nomask_neg', 'dpm', 3, 7.5, 'Caf\u00e9 sc\u00e8ne, time-lapse of clouds \u2601',
     'blurry, low quality, watermark', 'zero', 9202, 'full'),
    # no hint image: the hint latent comes from the 2-D UNet's own sampling loop (mask zero)
    ('pipeline_ddim_s3_imagegen', 'ddim', 3, 9.0, 'a red car in the rain', '', 'imagegen', 9203, 'quick'),
]


# --- the networks ---------------------------------------------------------------------------

def clip_model(prec):
    c = CLIP
    cfg = CLIPTextConfig(vocab_size=c['vocab'], hidden_size=c['width'], num_hidden_layers=c['layers'],
                         num_attention_heads=c['heads'], intermediate_size=c['mlp'],
                         max_position_embeddings=c['max_pos'], hidden_act='quick_gelu', layer_norm_eps=1e-5,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    model = FlaxCLIPTextModel(cfg, dtype=np_dtype(prec), _do_init=False)
    T = c['max_pos']
    shapes = jax.eval_shape(lambda x: model.module.init(jax.random.PRNGKey(0), x, jnp.ones_like(x),
                                                        jnp.arange(T)[None]),
                            jax.ShapeDtypeStruct((1, T), jnp.int32))
    flat = {'.'.join(k): v.shape for k, v in flatten_dict(shapes['params']).items()}
    params = {}
    for name, shape in flat.items():
        scale, offset = clip_rule(name, shape)
        params[tuple(name.split('.'))] = jnp.asarray(
            procgen.fill(shape, CLIP_SEED, name, scale, offset).astype(np_dtype(prec)))
    return model, unflatten_dict(params), len(flat)


def vae_model(prec, H, W):
    n = len(VAE_BOC)
    model = FlaxAutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                              down_block_types=('DownEncoderBlock2D',) * n, up_block_types=('UpDecoderBlock2D',) * n,
                              block_out_channels=VAE_BOC, layers_per_block=VAE_LAYERS, norm_num_groups=32,
                              dtype=np_dtype(prec))
    assert model.config.scaling_factor == SCALING
    params, count = vae_params(model, (1, 3, H, W), VAE_SEED, prec)
    return model, params, count


def unet_params(prec):
    shapes = mavflax.unet_param_shapes(UNET, video=True)
    return mavflax.procedural_tree(shapes, UNET_SEED, np_dtype(prec)), len(shapes)


# --- inputs ---------------------------------------------------------------------------------

def make_images(r, H, W, mask_kind):
    """An RGB hint (smooth colour ramps + noise) and a grayscale mask: a masked rectangle,
    rows of 191 (just below the 0.5 threshold: m/255*2-1 = 0.498) and 192 (0.506), and
    random grey levels elsewhere."""
    y, x = np.meshgrid(np.arange(H), np.arange(W), indexing='ij')
    base = np.stack([x * 255.0 / (W - 1), y * 255.0 / (H - 1), (x + y) * 127.0 / (H + W - 2)], axis=-1)
    hint = np.clip(np.round(base * 0.7 + r.integers(0, 77, (H, W, 3))), 0, 255).astype(np.uint8)
    mask = np.zeros((H, W), np.uint8)
    if mask_kind == 'rect':
        mask[:] = r.integers(0, 256, (H, W))
        mask[H // 4: 3 * H // 4, W // 2:] = 255
        mask[0, :] = 191
        mask[1, :] = 192
        mask[H - 1, :W // 2] = 0
    return hint, mask


# --- the pipeline -----------------------------------------------------------------------------

def tokenize(text):
    """prepare_inputs L192-209: truncation, max_length 77, padding 'max_length'."""
    tok = gen_clip_vocab.clip_tokenizer()
    ids = tok([text], truncation=True, return_overflowing_tokens=False, max_length=77, padding='max_length',
              return_tensors='np').input_ids
    assert ids.shape == (1, 77)
    return ids.astype(np.int64)


def prepare_images(hint_u8, mask_u8, dt):
    """prepare_inputs L216-237, eager jnp as upstream (in the case's float type)."""
    hint = jnp.asarray(hint_u8[None]).astype(dt)                  # (1,H,W,3)
    hint = (hint / 255) * 2 - 1
    mask = jnp.asarray(mask_u8[None, :, :, None]).astype(dt)      # (1,H,W,1)
    mask = (mask / 255) * 2 - 1
    mask = mask.at[mask < 0.5].set(0)
    mask = mask.at[mask >= 0.5].set(1)
    hint = hint * (mask < 0.5)
    return hint.transpose((0, 3, 1, 2)), mask.transpose((0, 3, 1, 2))   # NCHW


def make_scheduler(kind, prec, steps, shape, cfg=None):
    """cases_sched's construction (SD config, or cfg's schedule); the float32 timesteps in both
    precisions, int64 under x64 (see cases_sched.step_cases)."""
    sched = cases_sched.make(kind, prec, cfg)
    state = sched.set_timesteps(sched.create_state(), steps, shape)
    ts = cases_sched.timesteps_f32(kind, steps, cfg)
    state = state.replace(timesteps=jnp.asarray(ts, dtype=jnp.int64 if prec == 'f64' else jnp.int32))
    if kind == 'dpm' and prec == 'f64':
        state = state.replace(prev_timestep=jnp.int64(-1))
    return sched, state, ts


def generate(prec, kind, steps, guidance, ids, neg_ids, hint_u8, mask_u8, noise, hint_noise=None, nets=None,
             sched_cfg=None):
    """nets (optional): the networks as loaded from a model folder (tools/fixtures_flax.py):
    dict(clip, clip_p, vae, vae_p, unet_config, unet_p, unet2d_config, unet2d_p); default: the
    procedural networks above. sched_cfg (optional): the folder's schedule (cases_sched.make)."""
    dt = np_dtype(prec)
    F_, h, w = noise.shape[2:]
    H, W = mask_u8.shape
    if nets is None:
        clip, clip_p, n_clip = clip_model(prec)
        vae, vae_p, n_vae = vae_model(prec, H, W)
        unet_p, n_unet = unet_params(prec)
        unet_cfg, unet2d_cfg = UNET, UNET2D
    else:
        clip, clip_p, vae, vae_p, unet_p = nets['clip'], nets['clip_p'], nets['vae'], nets['vae_p'], nets['unet_p']
        unet_cfg, unet2d_cfg = nets['unet_config'], nets.get('unet2d_config')
        n_clip = n_vae = n_unet = 0
    unet = mavflax.UNetPseudo3DConditionModel(unet_cfg, use_memory_efficient_attention=True, dtype=dt)

    # prepare_inputs
    hint, mask = prepare_images(hint_u8, mask_u8, dt)

    # _generate L352-353: text features
    enc = jax.jit(lambda i: clip(i, params=clip_p)[0])
    text = enc(jnp.asarray(ids, jnp.int32))
    neg = enc(jnp.asarray(neg_ids, jnp.int32))

    # L402-413: hint latent (posterior mean x scaling factor), mask resized, both repeated
    @jax.jit
    def hint_mask(hint, mask):
        hl = vae.apply({'params': vae_p}, hint, method=vae.encode).latent_dist.mean * vae.config.scaling_factor
        hl = hl.transpose((0, 3, 1, 2))                                   # (1,4,h,w)
        ml = jax.image.resize(mask, (*mask.shape[:-2], *hl.shape[-2:]), method='nearest')   # (1,1,h,w)
        return hl, ml
    hint_lat, mask_lat = hint_mask(hint, mask)
    if hint_noise is not None:
        # L358-400 (use_imagegen): a 2-D text-to-image run makes the hint latent directly (no VAE
        # round trip), same scheduler type and steps, guidance cfg_image (= cfg), the same
        # text features; the mask stays zero
        u2 = mavflax.UNetPseudo3DConditionModel(unet2d_cfg, use_memory_efficient_attention=True, dtype=dt)
        u2_p = (mavflax.procedural_tree(mavflax.unet_param_shapes(UNET2D, video=False), UNET2D_SEED, dt)
                if nets is None else nets['unet2d_p'])
        sched2, state2, _ = make_scheduler(kind, prec, steps, hint_noise.shape, sched_cfg)
        il = jnp.asarray(hint_noise) * state2.init_noise_sigma

        @jax.jit
        def image_step(i, il, state2):
            t = state2.timesteps[i]
            tt = jnp.broadcast_to(t, il.shape[0])
            inp = sched2.scale_model_input(state2, il, t)
            e_c = u2.apply({'params': u2_p}, inp, tt, text)
            e_u = u2.apply({'params': u2_p}, inp, tt, neg)
            e = e_u + guidance * (e_c - e_u)
            return sched2.step(state2, e.astype(dt), t, il).to_tuple()
        for i in range(steps):
            il, state2 = image_step(i, il, state2)
        hint_lat = il
        mask_lat = jnp.zeros_like(mask_lat)
    hint5 = jnp.expand_dims(hint_lat, axis=2).repeat(F_, axis=2)
    mask5 = jnp.expand_dims(mask_lat, axis=2).repeat(F_, axis=2)

    # L417-426: initial latents and timesteps
    sched, state, ts = make_scheduler(kind, prec, steps, noise.shape, sched_cfg)
    latents = jnp.asarray(noise) * state.init_noise_sigma

    # L428-453: one step of the sampling loop (jitted, as upstream's fori_loop body)
    @jax.jit
    def step(i, latents, state):
        t = state.timesteps[i]
        tt = jnp.broadcast_to(t, latents.shape[0])
        inp = sched.scale_model_input(state, latents, t)
        inp = jnp.concatenate([inp, mask5, hint5], axis=1)
        eps_c = unet.apply({'params': unet_p}, inp, tt, text)
        eps_u = unet.apply({'params': unet_p}, inp, tt, neg)
        eps = eps_u + guidance * (eps_c - eps_u)
        return sched.step(state, eps.astype(dt), t, latents).to_tuple()

    lat_steps = []
    for i in range(steps):
        latents, state = step(i, latents, state)
        lat_steps.append(np.asarray(latents))

    # L460-482: decode every frame, quantize
    @jax.jit
    def decode(latents):
        z = 1 / vae.config.scaling_factor * latents
        z = z.transpose((0, 2, 1, 3, 4)).reshape((-1,) + z.shape[1:2] + z.shape[3:])   # (b f) c h w
        frames = [vae.apply({'params': vae_p}, jnp.expand_dims(z[k], axis=0), method=vae.decode).sample[0]
                  for k in range(z.shape[0])]
        img = jnp.stack(frames)                                           # (F,3,H,W)
        q = ((img / 2 + 0.5) * 255).round().clip(0, 255).astype(jnp.uint8)
        return img, q
    img, q = decode(latents)
    q = np.asarray(q).transpose(0, 2, 3, 1)                               # f c h w -> f h w c

    return dict(text_emb=np.asarray(text), neg_emb=np.asarray(neg), hint_latent=np.asarray(hint_lat),
                mask_latent=np.asarray(mask_lat), timesteps=ts, latents_steps=np.stack(lat_steps),
                frames_float=np.asarray(img), frames=q, counts=(n_unet, n_vae, n_clip))


def pipeline_case(prec, name, kind, steps, guidance, prompt, neg_prompt, mask_kind, seed, level):
    dt = np_dtype(prec)
    H, W = LAT_H * VAE_FACTOR, LAT_W * VAE_FACTOR
    r = rng(seed)
    imagegen = mask_kind == 'imagegen'
    hint_u8, mask_u8 = make_images(r, H, W, 'zero' if imagegen else mask_kind)
    noise = normal(r, (1, 4, FRAMES, LAT_H, LAT_W), prec)
    hint_noise = normal(r, (1, 4, LAT_H, LAT_W), prec) if imagegen else None
    ids, neg_ids = tokenize(prompt), tokenize(neg_prompt)
    res = generate(prec, kind, steps, guidance, ids, neg_ids, hint_u8, mask_u8, noise, hint_noise)
    n_unet, n_vae, n_clip = res['counts']
    meta = {
        'prompt': prompt, 'neg_prompt': neg_prompt, 'scheduler': kind, 'steps': str(steps),
        'guidance': repr(guidance), 'frames': str(FRAMES), 'height': str(H), 'width': str(W),
        'latent_height': str(LAT_H), 'latent_width': str(LAT_W), 'vae_factor': str(VAE_FACTOR),
        'scaling_factor': repr(SCALING), 'noise_seed': str(seed),
        'unet_config': UNET.to_json(), 'unet_seed': str(UNET_SEED), 'unet_params': str(n_unet),
        'vae_block_out_channels': ','.join(map(str, VAE_BOC)), 'vae_layers_per_block': str(VAE_LAYERS),
        'vae_seed': str(VAE_SEED), 'vae_params': str(n_vae),
        'clip_vocab': str(CLIP['vocab']), 'clip_width': str(CLIP['width']), 'clip_layers': str(CLIP['layers']),
        'clip_heads': str(CLIP['heads']), 'clip_mlp': str(CLIP['mlp']), 'clip_max_pos': str(CLIP['max_pos']),
        'clip_seed': str(CLIP_SEED), 'clip_params': str(n_clip),
        'frames_rule': FRAMES_RULE_F64 if prec == 'f64' else FRAMES_RULE_F32,
        'imagegen': '1' if imagegen else '0',
    }
    if imagegen:
        meta['unet2d_config'] = UNET2D.to_json()
        meta['unet2d_seed'] = str(UNET2D_SEED)
    f = lambda a: np.asarray(a).astype(dt)
    tensors = [('hint', hint_u8), ('mask', mask_u8), ('noise', noise),
               ('ids', ids), ('neg_ids', neg_ids),
               ('text_emb', f(res['text_emb'])), ('neg_emb', f(res['neg_emb'])),
               ('hint_latent', f(res['hint_latent'])), ('mask_latent', f(res['mask_latent'])),
               ('timesteps', np.asarray(res['timesteps'], np.int64)),
               ('latents_steps', f(res['latents_steps'])),
               ('frames_float', f(res['frames_float'])), ('frames', res['frames'].astype(np.uint8))]
    if imagegen:
        tensors.append(('hint_noise', hint_noise))
    for k, a in tensors:
        assert np.all(np.isfinite(a)), k
    return Case(name=name, op='pipeline', seed=seed, tol=TOL_PIPE_F64 if prec == 'f64' else TOL_PIPE_F32,
                tensors=tensors, meta=meta, level=level)


def cases(prec):
    for spec in SPECS:
        yield pipeline_case(prec, *spec)
