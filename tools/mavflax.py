"""mavref's own flax.linen model of makeavid's pseudo-3D UNet (UNetPseudo3DConditionModel).

Written from the architecture description (SPEC.md section 5.7, /work/shared/reference/
upstream-notes.md section 2): the parameter names, shapes and layouts equal upstream's
(makeavid_sd/flax_impl at 945e154), so a checkpoint of the original loads into it, and the
arithmetic is the same sequence of flax/diffusers operations. The attention is diffusers'
FlaxAttention and the time embedding diffusers' FlaxTimesteps/FlaxTimestepEmbedding, as
upstream uses them.

Layouts: the model takes (B,C,F,H,W) video (or (B,C,H,W) images: "2-D mode", temporal layers
absent, which is then exactly diffusers' FlaxUNet2DConditionModel up to the `spatial_conv`
nesting of conv names) and works channels-last, (B,F,H,W,C). Where frames are folded into the
batch the order is batch-major: row b*F+f.

Also here: the procedural weight rule of the test corpus (procedural_params) and helpers
to flatten parameter trees to the dotted names that mavref's C side loads.
"""
import json
import math
from dataclasses import dataclass, asdict
from typing import Optional, Tuple, Union

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
from flax import traverse_util
from diffusers.models.attention_flax import FlaxAttention
from diffusers.models.embeddings_flax import FlaxTimestepEmbedding, FlaxTimesteps

import procgen

GROUPS = 32      # GroupNorm groups everywhere in the UNet
GN_EPS = 1e-5    # GroupNorm epsilon
LN_EPS = 1e-5    # LayerNorm epsilon (transformer blocks)

CROSS_DOWN = ('CrossAttnDownBlockPseudo3D', 'CrossAttnDownBlock2D')
PLAIN_DOWN = ('DownBlockPseudo3D', 'DownBlock2D')
CROSS_UP = ('CrossAttnUpBlockPseudo3D', 'CrossAttnUpBlock2D')
PLAIN_UP = ('UpBlockPseudo3D', 'UpBlock2D')


# --- layout helpers ------------------------------------------------------------------------

def fold_frames(x):
    """(B,F,H,W,C) -> (B*F,H,W,C), row b*F+f."""
    b, f = x.shape[:2]
    return x.reshape((b * f,) + x.shape[2:])


def unfold_frames(x, b):
    """(B*F,H,W,C) -> (B,F,H,W,C)."""
    return x.reshape((b, x.shape[0] // b) + x.shape[1:])


def frames_to_sequences(x):
    """(B,F,H,W,C) -> (B*H*W, F, C): one frame sequence per pixel, row (b*H+h)*W+w."""
    b, f, h, w, c = x.shape
    return jnp.transpose(x, (0, 2, 3, 1, 4)).reshape(b * h * w, f, c)


def sequences_to_frames(x, b, h, w):
    """(B*H*W, F, C) -> (B,F,H,W,C)."""
    f, c = x.shape[1:]
    return jnp.transpose(x.reshape(b, h, w, f, c), (0, 3, 1, 2, 4))


# --- convolutions and resampling -----------------------------------------------------------

class ConvPseudo3D(nn.Module):
    """2-D conv on every frame ('spatial_conv', kernel (k,k,Ci,Co)), then, on video only, a
    kernel-3 zero-padded conv along frames ('temporal_conv', kernel (3,Co,Co))."""
    features: int
    kernel: int = 3
    stride: int = 1
    pad: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        video = x.ndim == 5
        b = x.shape[0]
        if video:
            x = fold_frames(x)
        p = self.pad
        x = nn.Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride),
                    padding=((p, p), (p, p)) if p else 'VALID', dtype=self.dtype,
                    name='spatial_conv')(x)
        if not video:
            return x
        h, w = x.shape[1:3]
        s = frames_to_sequences(unfold_frames(x, b))
        s = nn.Conv(self.features, (3,), padding='SAME', dtype=self.dtype, name='temporal_conv')(s)
        return sequences_to_frames(s, b, h, w)


class DownsamplePseudo3D(nn.Module):
    """ConvPseudo3D 3x3, stride 2, symmetric padding 1 ('conv')."""
    out_channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        return ConvPseudo3D(self.out_channels, 3, 2, 1, self.dtype, name='conv')(x)


class UpsamplePseudo3D(nn.Module):
    """Nearest-neighbour 2x per frame (jax.image.resize 'nearest'), then ConvPseudo3D 3x3 ('conv')."""
    out_channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        video = x.ndim == 5
        b = x.shape[0]
        y = fold_frames(x) if video else x
        n, h, w, c = y.shape
        y = jax.image.resize(y, (n, 2 * h, 2 * w, c), method='nearest')
        if video:
            y = unfold_frames(y, b)
        return ConvPseudo3D(self.out_channels, 3, 1, 1, self.dtype, name='conv')(y)


class ResnetBlockPseudo3D(nn.Module):
    """h = conv1(silu(norm1 x)) + time_emb_proj(silu temb); h = conv2(silu(norm2 h));
    out = h + (conv_shortcut(x) if Cin != Cout else x). GroupNorm statistics span all frames."""
    in_channels: int
    out_channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, temb):
        co = self.out_channels
        h = nn.GroupNorm(num_groups=GROUPS, epsilon=GN_EPS, name='norm1')(x)
        h = ConvPseudo3D(co, 3, 1, 1, self.dtype, name='conv1')(nn.silu(h))
        t = nn.Dense(co, dtype=self.dtype, name='time_emb_proj')(nn.silu(temb))  # (B,Cout)
        t = t.reshape((t.shape[0],) + (1,) * (h.ndim - 2) + (co,))               # every frame, pixel
        h = h + t
        h = nn.GroupNorm(num_groups=GROUPS, epsilon=GN_EPS, name='norm2')(h)
        h = ConvPseudo3D(co, 3, 1, 1, self.dtype, name='conv2')(nn.silu(h))
        if self.in_channels != co:
            x = ConvPseudo3D(co, 1, 1, 0, self.dtype, name='conv_shortcut')(x)
        return h + x


# --- transformer ---------------------------------------------------------------------------

class GEGLU(nn.Module):
    """proj: Dense C -> 8C, split [a | g], a * gelu_tanh(g)."""
    dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(8 * self.dim, dtype=self.dtype, name='proj')(x)
        a, g = jnp.split(y, 2, axis=-1)
        return a * nn.gelu(g)  # flax gelu = jax.nn.gelu(approximate=True): tanh form


class FeedForward(nn.Module):
    """net_0 = GEGLU(C -> 4C), net_2 = Dense 4C -> C."""
    dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = GEGLU(self.dim, self.dtype, name='net_0')(x)
        return nn.Dense(self.dim, dtype=self.dtype, name='net_2')(x)


class BasicTransformerBlockPseudo3D(nn.Module):
    """Pre-LN residual sub-blocks: self-attention over H*W, cross-attention to the context,
    (video only) self-attention over the F frames of each pixel, GEGLU feed-forward."""
    dim: int
    heads: int
    use_memory_efficient_attention: bool = True
    dtype: jnp.dtype = jnp.float32

    def attention(self, name):
        return FlaxAttention(query_dim=self.dim, heads=self.heads, dim_head=self.dim // self.heads,
                             use_memory_efficient_attention=self.use_memory_efficient_attention,
                             dtype=self.dtype, name=name)

    def norm(self, name):
        return nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name=name)

    @nn.compact
    def __call__(self, x, context, frames=None, height=None, width=None):
        # x: (N, H*W, C) with N = B*F (video) or B; context: (B, T, Cctx)
        if frames is not None and context is not None:
            context = jnp.repeat(context, frames, axis=0)  # row b*F+f gets prompt b
        x = self.attention('attn1')(self.norm('norm1')(x)) + x
        x = self.attention('attn2')(self.norm('norm2')(x), context) + x
        if frames is not None:
            n, hw, c = x.shape
            b = n // frames
            s = jnp.transpose(x.reshape(b, frames, hw, c), (0, 2, 1, 3)).reshape(b * hw, frames, c)
            s = self.attention('attn_temporal')(self.norm('norm_temporal')(s)) + s
            x = jnp.transpose(s.reshape(b, hw, frames, c), (0, 2, 1, 3)).reshape(n, hw, c)
        return FeedForward(self.dim, self.dtype, name='ff')(self.norm('norm3')(x)) + x


class TransformerPseudo3DModel(nn.Module):
    """x + proj_out(block(proj_in(norm x))) on every frame; GroupNorm statistics per frame."""
    in_channels: int
    heads: int
    use_memory_efficient_attention: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, context):
        video = x.ndim == 5
        b = x.shape[0]
        frames = x.shape[1] if video else None
        if video:
            x = fold_frames(x)
        n, h, w, c = x.shape
        y = nn.GroupNorm(num_groups=GROUPS, epsilon=GN_EPS, name='norm')(x)
        y = nn.Conv(c, (1, 1), padding='VALID', dtype=self.dtype, name='proj_in')(y)
        y = BasicTransformerBlockPseudo3D(c, self.heads, self.use_memory_efficient_attention,
                                          self.dtype, name='transformer_blocks_0')(
            y.reshape(n, h * w, c), context, frames, h, w)
        y = nn.Conv(c, (1, 1), padding='VALID', dtype=self.dtype, name='proj_out')(y.reshape(n, h, w, c))
        y = y + x
        return unfold_frames(y, b) if video else y


# --- UNet blocks ---------------------------------------------------------------------------

class DownBlock(nn.Module):
    """layers x (resnet [+ transformer]) [+ downsampler]; returns (h, skips)."""
    in_channels: int
    out_channels: int
    layers: int
    heads: Optional[int]   # None: no transformers (DownBlockPseudo3D)
    downsample: bool
    use_memory_efficient_attention: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, temb, context):
        skips = []
        for i in range(self.layers):
            ci = self.in_channels if i == 0 else self.out_channels
            x = ResnetBlockPseudo3D(ci, self.out_channels, self.dtype, name=f'resnets_{i}')(x, temb)
            if self.heads is not None:
                x = TransformerPseudo3DModel(self.out_channels, self.heads, self.use_memory_efficient_attention,
                                             self.dtype, name=f'attentions_{i}')(x, context)
            skips.append(x)
        if self.downsample:
            x = DownsamplePseudo3D(self.out_channels, self.dtype, name='downsamplers_0')(x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """layers x (concat [h, skip] -> resnet [+ transformer]) [+ upsampler]. Skips are used
    last-first. Resnet j input channels: (prev_out if j == 0 else out) + (skip_in if j is the
    last layer else out)."""
    in_channels: int         # channels of the deepest skip this block takes (its last layer's)
    out_channels: int
    prev_out_channels: int
    layers: int
    heads: Optional[int]
    upsample: bool
    use_memory_efficient_attention: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, skips, temb, context):
        skips = list(skips)
        for i in range(self.layers):
            s = skips.pop()
            x = jnp.concatenate([x, s], axis=-1)
            ci = (self.prev_out_channels if i == 0 else self.out_channels) + \
                 (self.in_channels if i == self.layers - 1 else self.out_channels)
            assert x.shape[-1] == ci, (x.shape, ci)
            x = ResnetBlockPseudo3D(ci, self.out_channels, self.dtype, name=f'resnets_{i}')(x, temb)
            if self.heads is not None:
                x = TransformerPseudo3DModel(self.out_channels, self.heads, self.use_memory_efficient_attention,
                                             self.dtype, name=f'attentions_{i}')(x, context)
        if self.upsample:
            x = UpsamplePseudo3D(self.out_channels, self.dtype, name='upsamplers_0')(x)
        return x


class MidBlock(nn.Module):
    """resnets_0, attentions_0, resnets_1 (UNetMidBlockPseudo3DCrossAttn, one layer)."""
    channels: int
    heads: int
    use_memory_efficient_attention: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, temb, context):
        c = self.channels
        x = ResnetBlockPseudo3D(c, c, self.dtype, name='resnets_0')(x, temb)
        x = TransformerPseudo3DModel(c, self.heads, self.use_memory_efficient_attention, self.dtype,
                                     name='attentions_0')(x, context)
        return ResnetBlockPseudo3D(c, c, self.dtype, name='resnets_1')(x, temb)


# --- configuration -------------------------------------------------------------------------

@dataclass(frozen=True)
class UNetConfig:
    """The fields of upstream's config that shape the network (unet/config.json names)."""
    in_channels: int = 9   # makeavid: 4 noisy latent + 1 mask + 4 hint latent
    out_channels: int = 4
    down_block_types: Tuple[str, ...] = ('CrossAttnDownBlockPseudo3D',) * 3 + ('DownBlockPseudo3D',)
    up_block_types: Tuple[str, ...] = ('UpBlockPseudo3D',) + ('CrossAttnUpBlockPseudo3D',) * 3
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: Union[int, Tuple[int, ...]] = 8  # legacy name: the NUMBER of heads
    cross_attention_dim: int = 768
    flip_sin_to_cos: bool = True
    freq_shift: int = 0

    def heads(self):
        h = self.attention_head_dim
        return (h,) * len(self.down_block_types) if isinstance(h, int) else tuple(h)

    def to_json(self):
        return json.dumps(asdict(self), separators=(',', ':'))

    @staticmethod
    def from_json(s):
        d = json.loads(s) if isinstance(s, str) else dict(s)
        for k in ('down_block_types', 'up_block_types', 'block_out_channels'):
            d[k] = tuple(d[k])
        if isinstance(d.get('attention_head_dim'), list):
            d['attention_head_dim'] = tuple(d['attention_head_dim'])
        return UNetConfig(**d)


MAKEAVID = UNetConfig()


def sinusoid(t, dim, flip_sin_to_cos, freq_shift, dtype):
    """diffusers' get_sinusoidal_embeddings computed entirely in `dtype` (float64 cases):
    inv[k] = exp(-k * ln(1e4) / (dim/2 - freq_shift)), e = t inv, [cos e | sin e] if flipped."""
    half = dim // 2
    inv = jnp.exp(jnp.arange(half, dtype=dtype) * -(math.log(1e4) / (half - freq_shift)))
    e = t.astype(dtype)[:, None] * inv[None, :]
    parts = [jnp.cos(e), jnp.sin(e)] if flip_sin_to_cos else [jnp.sin(e), jnp.cos(e)]
    return jnp.concatenate(parts, axis=1)


class UNetPseudo3DConditionModel(nn.Module):
    """sample (B,Cin,F,H,W) or (B,Cin,H,W), timesteps (B,) or (), context (B,T,Cctx)
    -> (B,Cout,F,H,W) or (B,Cout,H,W). Taps are sown into 'intermediates' (SPEC.md section 5.7.7)."""
    config: UNetConfig = MAKEAVID
    use_memory_efficient_attention: bool = True
    dtype: jnp.dtype = jnp.float32
    # Time embedding sinusoid: None = diffusers' FlaxTimesteps (float32, as upstream) when
    # dtype is float32, else computed in dtype; True forces diffusers' float32 version.
    f32_sinusoid: Optional[bool] = None

    @nn.compact
    def __call__(self, sample, timesteps, context, time_proj=None):
        """time_proj: optional (B, c0) sinusoid the network runs from in place of its own; the
        model's own is still sown as tap.time_proj (the corpus contract's fed sinusoid, SPEC.md
        section 13.4: cases with attribute sinusoid=float32 give it as input `time_proj`)."""
        cfg = self.config
        heads = cfg.heads()
        chans = cfg.block_out_channels
        nb = len(chans)
        me = self.use_memory_efficient_attention
        video = sample.ndim == 5
        timesteps = jnp.asarray(timesteps)
        if timesteps.ndim == 0:
            timesteps = timesteps[None]
        f32 = (self.dtype == jnp.float32) if self.f32_sinusoid is None else self.f32_sinusoid
        if f32:
            temb = FlaxTimesteps(chans[0], cfg.flip_sin_to_cos, cfg.freq_shift, name='time_proj')(
                timesteps.astype(jnp.float32))
        else:
            temb = sinusoid(timesteps, chans[0], cfg.flip_sin_to_cos, cfg.freq_shift, self.dtype)
        self.sow('intermediates', 'tap.time_proj', temb)
        if time_proj is not None:
            temb = jnp.asarray(time_proj)
        temb = FlaxTimestepEmbedding(4 * chans[0], dtype=self.dtype, name='time_embedding')(temb)
        self.sow('intermediates', 'tap.time_embedding', temb)

        x = jnp.transpose(sample, (0, 2, 3, 4, 1) if video else (0, 2, 3, 1))  # channels last
        x = ConvPseudo3D(chans[0], 3, 1, 1, self.dtype, name='conv_in')(x)
        self.sow('intermediates', 'tap.conv_in', x)
        skips = [x]
        for i, kind in enumerate(cfg.down_block_types):
            if kind not in CROSS_DOWN + PLAIN_DOWN:
                raise NotImplementedError(f'down block type {kind}')
            blk = DownBlock(chans[max(i - 1, 0)], chans[i], cfg.layers_per_block,
                            heads[i] if kind in CROSS_DOWN else None, i < nb - 1, me, self.dtype,
                            name=f'down_blocks_{i}')
            x, s = blk(x, temb, context)
            skips += s
            self.sow('intermediates', f'tap.down_blocks_{i}', x)
        x = MidBlock(chans[-1], heads[-1], me, self.dtype, name='mid_block')(x, temb, context)
        self.sow('intermediates', 'tap.mid_block', x)
        rchans = chans[::-1]
        rheads = heads[::-1]
        n = cfg.layers_per_block + 1
        for i, kind in enumerate(cfg.up_block_types):
            if kind not in CROSS_UP + PLAIN_UP:
                raise NotImplementedError(f'up block type {kind}')
            blk = UpBlock(rchans[min(i + 1, nb - 1)], rchans[i], rchans[max(i - 1, 0)], n,
                          rheads[i] if kind in CROSS_UP else None, i < nb - 1, me, self.dtype,
                          name=f'up_blocks_{i}')
            x = blk(x, skips[-n:], temb, context)
            skips = skips[:-n]
            self.sow('intermediates', f'tap.up_blocks_{i}', x)
        x = nn.GroupNorm(num_groups=GROUPS, epsilon=GN_EPS, name='conv_norm_out')(x)
        x = ConvPseudo3D(cfg.out_channels, 3, 1, 1, self.dtype, name='conv_out')(nn.silu(x))
        return jnp.transpose(x, (0, 4, 1, 2, 3) if video else (0, 3, 1, 2))


TAPS = ['time_proj', 'time_embedding', 'conv_in']  # + down_blocks_i, mid_block, up_blocks_i


def tap_names(config):
    n = len(config.block_out_channels)
    return (TAPS + [f'down_blocks_{i}' for i in range(n)] + ['mid_block']
            + [f'up_blocks_{i}' for i in range(n)])


# --- parameter trees -----------------------------------------------------------------------

def flatten(params):
    """Nested param dict -> {dotted name: array} (flax.traverse_util.flatten_dict, sep '.')."""
    return traverse_util.flatten_dict(params, sep='.')


def unflatten(flat):
    return traverse_util.unflatten_dict(flat, sep='.')


def param_shapes(module, *inputs):
    """{dotted name: shape} of `module` initialised on `inputs` (ShapeDtypeStructs are fine);
    jax.eval_shape, so nothing is allocated."""
    tree = jax.eval_shape(lambda *a: module.init(jax.random.PRNGKey(0), *a), *inputs)
    return {k: tuple(v.shape) for k, v in flatten(tree['params']).items()}


def unet_param_shapes(config, video=True):
    """The UNet's parameter names and shapes; video=False gives the 2-D mode tree."""
    sd = jax.ShapeDtypeStruct
    s = (1, config.in_channels, 1, 8, 8) if video else (1, config.in_channels, 8, 8)
    m = UNetPseudo3DConditionModel(config)
    return param_shapes(m, sd(s, jnp.float32), sd((1,), jnp.float32),
                        sd((1, 1, config.cross_attention_dim), jnp.float32))


# --- the procedural weight rule of the test corpus -----------------------------------------

def proc_rule(name, shape):
    """(scale, offset) of parameter `name` (dotted path, last component kernel/bias/scale):
    values are procgen.fill(shape, seed, name, scale, offset) = offset + scale*U(-1,1).
      kernel: scale sqrt(3 / fan_in), fan_in = prod(shape[:-1])  (variance 1/fan_in)
      bias:   scale 0.1 (Dense, Conv and norm biases alike)
      scale:  offset 1, scale 0.1 (GroupNorm / LayerNorm gains)"""
    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'kernel':
        fan_in = int(np.prod(shape[:-1]))
        return math.sqrt(3.0 / fan_in), 0.0
    if leaf == 'bias':
        return 0.1, 0.0
    if leaf == 'scale':
        return 0.1, 1.0
    raise ValueError(f'no procedural rule for parameter {name}')


def procedural_tree(shapes, seed, dtype, meta=None, to_jax=True):
    """Parameters for {name: shape} by the rule, generated one tensor at a time (the real
    model in float64 is 8.8 GB: no second copy is ever held). With `meta`, records gen.NAME
    for every tensor as vecspec.proc does, so that case_input can regenerate it."""
    flat = {}
    for name, shape in shapes.items():
        scale, offset = proc_rule(name, shape)
        if meta is not None:
            meta['gen.' + name] = procgen.describe(shape, seed, scale, offset)
        a = procgen.fill(shape, seed, name, scale, offset).astype(dtype)
        flat[name] = jnp.asarray(a) if to_jax else a
        del a
    return unflatten(flat)


def procedural_params(config, seed, dtype=np.float64, video=True, meta=None):
    """The corpus' procedural weights of the whole UNet (names from the module tree)."""
    return procedural_tree(unet_param_shapes(config, video), seed, dtype, meta)


def apply_unet(config, params, sample, timesteps, context, dtype, taps=True,
               use_memory_efficient_attention=True, f32_sinusoid=None, time_proj=None):
    """Run the model; returns (out, {tap name: array}) with taps in (B,F,H,W,C) layout.
    time_proj: an optional sinusoid the network runs from (UNetPseudo3DConditionModel)."""
    m = UNetPseudo3DConditionModel(config, use_memory_efficient_attention, dtype, f32_sinusoid)
    if not taps:
        return m.apply({'params': params}, sample, timesteps, context, time_proj), {}
    y, st = m.apply({'params': params}, sample, timesteps, context, time_proj, mutable=['intermediates'])
    inter = {k[len('tap.'):]: v[0] for k, v in st['intermediates'].items()}
    return y, inter


# --- 2-D mode against diffusers ------------------------------------------------------------

def to_diffusers_2d_name(name):
    """Our 2-D mode name -> diffusers FlaxUNet2DConditionModel name: drop '.spatial_conv'."""
    return name.replace('.spatial_conv.', '.')


def diffusers_2d_config(config):
    """FlaxUNet2DConditionModel keyword arguments for the same network (2-D block names)."""
    down = tuple('CrossAttnDownBlock2D' if k in CROSS_DOWN else 'DownBlock2D' for k in config.down_block_types)
    up = tuple('CrossAttnUpBlock2D' if k in CROSS_UP else 'UpBlock2D' for k in config.up_block_types)
    return dict(in_channels=config.in_channels, out_channels=config.out_channels,
                down_block_types=down, up_block_types=up,
                block_out_channels=tuple(config.block_out_channels),
                layers_per_block=config.layers_per_block,
                attention_head_dim=config.attention_head_dim,
                cross_attention_dim=config.cross_attention_dim,
                flip_sin_to_cos=config.flip_sin_to_cos, freq_shift=config.freq_shift)


# --- self-checks: python tools/mavflax.py ---------------------------------------------------

SMALL = UNetConfig(in_channels=9, out_channels=4, block_out_channels=(32, 64, 128, 128), layers_per_block=2,
                   attention_head_dim=8, cross_attention_dim=32)


def _rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _inputs(config, B, F, H, W, T, dtype, seed=1, video=True):
    r = np.random.default_rng(seed)
    shape = (B, config.in_channels, F, H, W) if video else (B, config.in_channels, H, W)
    x = jnp.asarray(r.standard_normal(shape).astype(dtype))
    t = jnp.asarray(np.array([999, 17, 500, 1][:B], dtype=dtype))
    ctx = jnp.asarray(r.standard_normal((B, T, config.cross_attention_dim)).astype(dtype))
    return x, t, ctx


def check_tree_against_reference(path='/work/shared/reference/upstream-param-tree.txt'):
    lines = open(path).read().splitlines()
    ref = {}
    for l in lines[2:]:
        name, shp = l.split(' ', 1)
        ref[name.replace('/', '.')] = tuple(int(d) for d in shp.strip('(),').split(',') if d.strip())
    got = unet_param_shapes(MAKEAVID)
    n = sum(int(np.prod(s)) for s in got.values())
    assert got == ref, 'parameter tree differs from upstream'
    assert len(got) == 930 and n == 1100578616, (len(got), n)
    print(f'tree: {len(got)} tensors, {n} params, equal to {path}')


def check_2d_against_diffusers(config, params=None):
    """2-D mode vs FlaxUNet2DConditionModel, float64, same (renamed) parameters: params (a float64
    2-D mode tree of config, in_channels 4: tools/toy_flax.py's hint UNet) or procedural ones."""
    from diffusers import FlaxUNet2DConditionModel
    cfg = UNetConfig(**dict(asdict(config), in_channels=4))
    if params is None:
        params = procedural_params(cfg, 7, np.float64, video=False)
    x, t, ctx = _inputs(cfg, 2, 1, 8, 8, 77, np.float64, video=False)
    ours, _ = apply_unet(cfg, params, x, t.astype(jnp.float32), ctx, jnp.float64, taps=False, f32_sinusoid=True)
    dparams = unflatten({to_diffusers_2d_name(k): v for k, v in flatten(params).items()})
    for me in (False, True):
        dm = FlaxUNet2DConditionModel(**diffusers_2d_config(cfg), dtype=jnp.float64,
                                      use_memory_efficient_attention=me)
        dshapes = param_shapes(dm, jax.ShapeDtypeStruct(x.shape, jnp.float32), jax.ShapeDtypeStruct((2,), jnp.float32),
                               jax.ShapeDtypeStruct(ctx.shape, jnp.float32))
        assert dshapes == {k: v.shape for k, v in flatten(dparams).items()}, 'diffusers names differ'
        ref = dm.apply({'params': dparams}, x, t.astype(jnp.float32), ctx).sample
        print(f'2-D mode vs diffusers FlaxUNet2DConditionModel (mem-eff {me}), f64: rel {_rel(ours, ref):.2e}')
        assert _rel(ours, ref) < 1e-12


def check_memory_efficient(config, dtype):
    params = procedural_params(config, 3, dtype)
    x, t, ctx = _inputs(config, 2, 3, 8, 8, 77, dtype)
    a, _ = apply_unet(config, params, x, t, ctx, dtype, taps=False, use_memory_efficient_attention=True)
    b, _ = apply_unet(config, params, x, t, ctx, dtype, taps=False, use_memory_efficient_attention=False)
    print(f'memory-efficient vs plain attention, {np.dtype(dtype).name}: rel {_rel(a, b):.2e}')


if __name__ == '__main__':
    jax.config.update('jax_enable_x64', True)
    jax.config.update('jax_default_matmul_precision', 'highest')
    check_tree_against_reference()
    check_2d_against_diffusers(SMALL)
    check_memory_efficient(SMALL, np.float64)
