"""Upstream's PyTorch port of the pseudo-3D network (makeavid_sd/torch_impl in
github.com/lopho/makeavid-sd-tpu) as a `mavref check` adapter. The port is never vendored:
point the adapter at a checkout.

    make conformance-env                       # einops, which the port needs, is in the lock
    MAVREF_MAKEAVID_TORCH_IMPL=/path/to/makeavid-sd-tpu \\
    bin/mavref check --backend 'tools/.torch-venv/bin/python tools/backends/torch_makeavid.py {case} {out}'

    op               implementation (makeavid_sd.torch_impl)
    temporal_conv    ConvPseudo3D's temporal_conv (nn.Conv1d, padding 1) over each pixel's frames
    conv_pseudo3d    ConvPseudo3D (symmetric padding only)
    geglu            its GEGLU (exact-erf GELU)
    resnet           ResnetBlockPseudo3D (video and 2-D cases)
    transformer      TransformerPseudo3DModel (video and 2-D cases)
    downsample       DownsamplePseudo3D;  upsample: UpsamplePseudo3D
    unet             UNetPseudo3DConditionModel (video and 2-D mode), taps from forward hooks
                     (in 2-D mode its temporal parameters are unused and left as initialised)

Everything else exits with status 3 (unsupported). The port uses diffusers' Attention,
Timesteps and TimestepEmbedding (diffusers 0.16.1 here) and einops.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch

from torchcase import T, N, unsupported, load_params, tdtype, main


def _impl():
    root = os.environ.get('MAVREF_MAKEAVID_TORCH_IMPL')
    if not root:
        raise SystemExit('torch_makeavid: set MAVREF_MAKEAVID_TORCH_IMPL to a checkout of lopho/makeavid-sd-tpu')
    pkg = os.path.join(root, 'makeavid_sd', 'torch_impl', '__init__.py')
    if not os.path.exists(pkg):
        raise SystemExit(f'torch_makeavid: {pkg} not found')
    # import makeavid_sd.torch_impl alone (makeavid_sd's other parts need jax)
    sys.path.insert(0, root)
    return importlib.import_module('makeavid_sd.torch_impl')


M = _impl()
from makeavid_sd.torch_impl.torch_resnet_pseudo3d import (  # noqa: E402
    ConvPseudo3D, ResnetBlockPseudo3D, DownsamplePseudo3D, UpsamplePseudo3D)
from makeavid_sd.torch_impl.torch_attention_pseudo3d import TransformerPseudo3DModel, GEGLU  # noqa: E402


def _mod(m, case):
    return m.to(tdtype(case)).eval()


def _copy(m, case, pairs):
    named = dict(m.named_parameters())
    with torch.no_grad():
        for tname, cname in pairs.items():
            named[tname].copy_(T(case.params[cname], case))


def temporal_conv(case):
    x = T(case.inputs['x'], case)  # NCFHW
    k = case.params['kernel']
    Cin, Cout = k.shape[1], k.shape[0]
    conv = _mod(ConvPseudo3D(Cout, Cout, 3), case).temporal_conv
    if Cin != Cout:
        unsupported('temporal_conv', 'ConvPseudo3D\'s temporal conv maps out_channels to out_channels')
    _copy(conv, case, {'weight': 'kernel', 'bias': 'bias'})
    B, C, Fr, H, W = x.shape
    with torch.no_grad():
        y = conv(x.permute(0, 3, 4, 1, 2).reshape(B * H * W, C, Fr))
    return {'y': N(y.reshape(B, H, W, C, Fr).permute(0, 3, 4, 1, 2))}


def conv_pseudo3d(case):
    x = T(case.inputs['x'], case)
    pads = [int(v) for v in case.attrs['pad'].split(',')]
    if len(set(pads)) != 1:
        unsupported('conv_pseudo3d', f'asymmetric padding {case.attrs["pad"]}')
    k = case.params['spatial_conv.kernel']
    m = _mod(ConvPseudo3D(k.shape[1], k.shape[0], k.shape[2], stride=case.attr('stride', int), padding=pads[0]), case)
    _copy(m, case, {n: n.replace('weight', 'kernel') for n, _ in m.named_parameters()})
    with torch.no_grad():
        return {'y': N(m(x))}


def geglu(case):
    k = case.params['proj.kernel']
    m = _mod(GEGLU(k.shape[1], k.shape[0] // 2), case)
    _copy(m, case, {'proj.weight': 'proj.kernel', 'proj.bias': 'proj.bias'})
    with torch.no_grad():
        return {'y': N(m(T(case.inputs['x'], case)))}


def _x(case):
    return T(case.inputs['x'], case)


def resnet(case):
    x, temb = _x(case), T(case.inputs['temb'], case)
    m = _mod(ResnetBlockPseudo3D(in_channels=case.attr('in_channels', int), out_channels=case.attr('out_channels', int),
                                 temb_channels=temb.shape[-1]), case)
    load_params(m, case, optional=lambda n: 'temporal' in n and x.ndim == 4)
    with torch.no_grad():
        return {'y': N(m(x, temb))}


def transformer(case):
    x = _x(case)
    two_d = x.ndim == 4
    chlast = two_d and case.tensors['x']['layout'] != 'NHWC'  # contracts that call x '...C'
    if chlast:
        x = x.permute(0, 3, 1, 2)
    ctx = T(case.inputs['context'], case)
    C = x.shape[1]
    heads = case.attr('heads', int)
    m = _mod(TransformerPseudo3DModel(num_attention_heads=heads, attention_head_dim=C // heads, in_channels=C,
                                      cross_attention_dim=ctx.shape[-1]), case)
    load_params(m, case, optional=lambda n: 'temporal' in n and two_d)
    with torch.no_grad():
        y = m(x, encoder_hidden_states=ctx).sample
    return {'y': N(y.permute(0, 2, 3, 1) if chlast else y)}


def downsample(case):
    x = _x(case)
    m = _mod(DownsamplePseudo3D(case.attr('channels', int)), case)
    load_params(m, case, optional=lambda n: 'temporal' in n and x.ndim == 4)
    with torch.no_grad():
        return {'y': N(m(x))}


def upsample(case):
    x = _x(case)
    m = _mod(UpsamplePseudo3D(case.attr('channels', int)), case)
    load_params(m, case, optional=lambda n: 'temporal' in n and x.ndim == 4)
    with torch.no_grad():
        return {'y': N(m(x))}


def unet(case):
    cfg = json.loads(case.attrs['config'])
    video = case.attrs.get('video', '1') != '0'
    m = M.UNetPseudo3DConditionModel(
        in_channels=cfg['in_channels'], out_channels=cfg['out_channels'], flip_sin_to_cos=cfg['flip_sin_to_cos'],
        freq_shift=cfg['freq_shift'], down_block_types=tuple(cfg['down_block_types']),
        up_block_types=tuple(cfg['up_block_types']), block_out_channels=tuple(cfg['block_out_channels']),
        layers_per_block=cfg['layers_per_block'], cross_attention_dim=cfg['cross_attention_dim'],
        attention_head_dim=cfg['attention_head_dim'])
    m = _mod(m, case)
    load_params(m, case, optional=lambda n: 'temporal' in n and not video)
    taps = {}

    def hook(name):
        def f(_m, _i, out):
            taps[name] = out[0] if isinstance(out, tuple) else out
        return f
    m.time_proj.register_forward_hook(hook('tap.time_proj'))  # the sinusoid (f64 cases list it)
    m.time_embedding.register_forward_hook(hook('tap.time_embedding'))
    m.conv_in.register_forward_hook(hook('tap.conv_in'))
    for i, b in enumerate(m.down_blocks):
        b.register_forward_hook(hook(f'tap.down_blocks_{i}'))
    m.mid_block.register_forward_hook(hook('tap.mid_block'))
    for i, b in enumerate(m.up_blocks):
        b.register_forward_hook(hook(f'tap.up_blocks_{i}'))
    x = T(case.inputs['sample'], case)
    t = torch.from_numpy(np.asarray(case.inputs['timesteps']))
    with torch.no_grad():
        out = m(x, t, encoder_hidden_states=T(case.inputs['context'], case)).sample
    want = {o['name'] for o in case.outputs}
    res = {k: N(v) for k, v in taps.items() if k in want}
    res['out'] = N(out)
    return res


OPS = {'temporal_conv': temporal_conv, 'conv_pseudo3d': conv_pseudo3d, 'geglu': geglu, 'resnet': resnet,
       'transformer': transformer, 'downsample': downsample, 'upsample': upsample, 'unet': unet}

if __name__ == '__main__':
    main(OPS)
