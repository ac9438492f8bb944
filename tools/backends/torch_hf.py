"""PyTorch implementations from diffusers and transformers as a `mavref check` adapter.

    make backends-env      # tools/backends/.venv: Debian's torch + diffusers 0.16.1, transformers 4.30.2
    mavref check --backend 'tools/backends/.venv/bin/python tools/backends/torch_hf.py {case} {out}'

Every op is computed by the library's own module or function, loaded with the case's weights
(converted to PyTorch layouts by tools/mavcase.py), in the case's precision (float64 modules
for f64 cases). Backward ops run the same forward under torch.autograd with the case's `dout`.

    op                       implementation
    activation               torch.nn.functional.silu / gelu (approximate 'tanh' or exact),
                             transformers QuickGELUActivation
    dense, layernorm         torch.nn.Linear, torch.nn.LayerNorm
    groupnorm                torch.nn.GroupNorm on NCFHW (per-frame: on (B*F)CHW)
    conv2d                   torch.nn.functional.pad + conv2d
    temporal_conv            torch.nn.Conv1d over each pixel's frames (padding 1)
    geglu                    diffusers.models.attention.GEGLU (exact-erf GELU)
    attention_self/cross     diffusers.models.attention_processor.Attention
    attention_temporal       the same Attention over each pixel's frames
    attention_clip           transformers CLIPAttention with its causal mask
    upsample_nearest         torch.nn.functional.interpolate(mode='nearest')
    timestep_embedding       diffusers Timesteps + TimestepEmbedding
    resnet, downsample,      diffusers ResnetBlock2D, Downsample2D, Upsample2D, Transformer2DModel
    upsample, transformer    (the 2-D cases; the pseudo-3D ones are not in diffusers: status 3)
    sched_add_noise          diffusers DDIMScheduler(SD 1.5's schedule).add_noise
    *_grad                   torch.autograd.grad of the above

Ops it does not cover exit with status 3 ("not covered"), which `mavref check` reports.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import mavcase  # noqa: E402

torch = F = None  # imported in main() once the case is known to be covered (torch takes seconds)


class _Bound:
    """A library module called with the case's tensors as its parameters
    (torch.nn.utils.stateless.functional_call), so that autograd reaches them."""

    def __init__(self, module, params):
        self.module, self.params = module, params

    def __call__(self, *args, **kwargs):
        from torch.nn.utils.stateless import functional_call
        return functional_call(self.module, self.params, args, kwargs)


def _load(module, params, dtype):
    """The module with {torch name: tensor} as its parameters, every one of them."""
    module = module.to(dtype)
    names = {n for n, _ in module.named_parameters()}
    missing = names - set(params)
    if missing:
        raise SystemExit(f'torch_hf: parameters not provided: {sorted(missing)}')
    return _Bound(module, {k: params[k] for k in names})


# Each forward takes (case, T, dtype) with T the case's tensors as torch tensors (layout
# 'torch'), and returns {output name: tensor}. Backward ops reuse them.

def activation(case, T, dt):
    x, kind = T['x'], case.attrs['kind']
    if kind == 'silu':
        return {'y': F.silu(x)}
    if kind == 'quick_gelu':
        from transformers.activations import QuickGELUActivation
        return {'y': QuickGELUActivation()(x)}
    return {'y': F.gelu(x, approximate='tanh' if kind == 'gelu_tanh' else 'none')}


def dense(case, T, dt):
    w = T['kernel']
    return {'y': _load(torch.nn.Linear(w.shape[1], w.shape[0]), {'weight': w, 'bias': T['bias']}, dt)(T['x'])}


def layernorm(case, T, dt):
    C = T['x'].shape[-1]
    m = _load(torch.nn.LayerNorm(C, eps=case.attr('eps', float)), {'weight': T['scale'], 'bias': T['bias']}, dt)
    return {'y': m(T['x'])}


def groupnorm(case, T, dt):
    x = T['x']  # (B,C,F,H,W)
    G, eps = case.attr('groups', int), case.attr('eps', float)
    if case.attr('per_frame', int):
        B, C, Fr, H, W = x.shape
        xf = x.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, H, W)
        y = F.group_norm(xf, G, T['scale'], T['bias'], eps)
        return {'y': y.reshape(B, Fr, C, H, W).permute(0, 2, 1, 3, 4)}
    return {'y': F.group_norm(x, G, T['scale'], T['bias'], eps)}


def conv2d(case, T, dt):
    pt, pb, pl, pr = (int(v) for v in case.attrs['pad'].split(','))
    x = F.pad(T['x'], (pl, pr, pt, pb))
    return {'y': F.conv2d(x, T['kernel'], T['bias'], stride=case.attr('stride', int))}


def temporal_conv(case, T, dt):
    x = T['x']  # (B,C,F,H,W)
    B, C, Fr, H, W = x.shape
    xs = x.permute(0, 3, 4, 1, 2).reshape(B * H * W, C, Fr)
    y = F.conv1d(xs, T['kernel'], T['bias'], padding=1)
    Co = y.shape[1]
    return {'y': y.reshape(B, H, W, Co, Fr).permute(0, 3, 4, 1, 2)}


def geglu(case, T, dt):
    from diffusers.models.attention import GEGLU
    Cin, two_h = T['proj.kernel'].shape[1], T['proj.kernel'].shape[0]
    m = _load(GEGLU(Cin, two_h // 2), {'proj.weight': T['proj.kernel'], 'proj.bias': T['proj.bias']}, dt)
    return {'y': m(T['x'])}


def _attention(case, T, dt, query_dim, cross_dim=None):
    from diffusers.models.attention_processor import Attention
    m = Attention(query_dim, cross_attention_dim=cross_dim, heads=case.attr('heads', int),
                  dim_head=case.attr('dim_head', int), bias=False, out_bias=True)
    return _load(m, {'to_q.weight': T['to_q.kernel'], 'to_k.weight': T['to_k.kernel'], 'to_v.weight': T['to_v.kernel'],
                     'to_out.0.weight': T['to_out_0.kernel'], 'to_out.0.bias': T['to_out_0.bias']}, dt)


def attention_self(case, T, dt):
    x = T['x']
    return {'y': _attention(case, T, dt, x.shape[-1])(x)}


def attention_cross(case, T, dt):
    x, ctx = T['x'], T['context']
    ctx = ctx.repeat_interleave(case.attr('frames', int), dim=0)  # each frame sees its clip's context
    return {'y': _attention(case, T, dt, x.shape[-1], ctx.shape[-1])(x, encoder_hidden_states=ctx)}


def attention_temporal(case, T, dt):
    x = T['x']  # (B,C,F,H,W): attention over each pixel's frames
    B, C, Fr, H, W = x.shape
    xs = x.permute(0, 3, 4, 2, 1).reshape(B * H * W, Fr, C)
    y = _attention(case, T, dt, C)(xs)
    return {'y': y.reshape(B, H, W, Fr, C).permute(0, 4, 3, 1, 2)}


def attention_clip(case, T, dt):
    from transformers import CLIPTextConfig
    from transformers.models.clip.modeling_clip import CLIPAttention
    x = T['x']
    B, S, C = x.shape
    cfg = CLIPTextConfig(hidden_size=C, num_attention_heads=case.attr('heads', int), attention_dropout=0.0)
    m = CLIPAttention(cfg)
    p = {}
    for n in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
        p[n + '.weight'], p[n + '.bias'] = T[n + '.kernel'], T[n + '.bias']
    m = _load(m, p, dt)
    mask = None
    if case.attr('causal', int):
        mask = torch.full((S, S), torch.finfo(dt).min, dtype=dt).triu(1)[None, None].expand(B, 1, S, S)
    return {'y': m(x, causal_attention_mask=mask)[0]}


def upsample_nearest(case, T, dt):
    return {'y': F.interpolate(T['x'], size=(case.attr('Ho', int), case.attr('Wo', int)), mode='nearest')}


def _temb_mlp(T, dt):
    from diffusers.models.embeddings import TimestepEmbedding
    w1 = T['linear_1.kernel']
    m = TimestepEmbedding(w1.shape[1], w1.shape[0])
    return _load(m, {'linear_1.weight': w1, 'linear_1.bias': T['linear_1.bias'],
                     'linear_2.weight': T['linear_2.kernel'], 'linear_2.bias': T['linear_2.bias']}, dt)


def timestep_embedding(case, T, dt):
    from diffusers.models.embeddings import Timesteps
    ts = Timesteps(case.attr('dim', int), bool(case.attr('flip_sin_to_cos', int)), case.attr('freq_shift', float))
    # the contract: temb is the MLP of the stored sinusoid (SPEC.md), the sinusoid from t
    return {'sinusoid': ts(T['t']), 'temb': _temb_mlp(T, dt)(T['sinusoid'])}


def sched_add_noise(case, T, dt):
    from diffusers import DDIMScheduler
    lo, hi = (float(case.attrs['beta_start']), float(case.attrs['beta_end'])) if 'beta_end' in case.attrs else (0.00085, 0.012)
    s = DDIMScheduler(num_train_timesteps=1000, beta_start=lo, beta_end=hi, beta_schedule='scaled_linear')
    s.alphas_cumprod = s.alphas_cumprod.to(dt)
    out = {'noisy': s.add_noise(T['x0'], T['noise'], T['t'].long())}
    if case.attrs.get('prediction_type') == 'v_prediction':  # the training target
        out['velocity'] = s.get_velocity(T['x0'], T['noise'], T['t'].long())
    return out


# The 2-D blocks (the cases with NHWC x: SD 1.5's own blocks, no temporal layers), with the
# Flax parameter names mapped to diffusers' PyTorch names.
def _torch_names(T):
    out = {}
    for n, v in T.items():
        if not n.endswith(('.kernel', '.bias', '.scale')):
            continue
        t = n.replace('.spatial_conv', '').replace('to_out_0', 'to_out.0').replace('net_0', 'net.0')
        t = t.replace('net_2', 'net.2').replace('transformer_blocks_0', 'transformer_blocks.0')
        out[t.rsplit('.', 1)[0] + ('.bias' if n.endswith('.bias') else '.weight')] = v
    return out


def _two_d(case, T):
    if T['x'].ndim != 4:
        print(f'torch_hf: {case.op} with video input (pseudo-3D) is not in diffusers', file=sys.stderr)
        sys.exit(3)


def resnet(case, T, dt):
    from diffusers.models.resnet import ResnetBlock2D
    _two_d(case, T)
    m = ResnetBlock2D(in_channels=case.attr('in_channels', int), out_channels=case.attr('out_channels', int),
                      temb_channels=T['temb'].shape[-1], groups=32, eps=1e-5)
    return {'y': _load(m, _torch_names(T), dt)(T['x'], T['temb'])}


def downsample(case, T, dt):
    from diffusers.models.resnet import Downsample2D
    _two_d(case, T)
    C = case.attr('channels', int)
    p = _torch_names(T)
    p.update({'Conv2d_0.' + k[5:]: v for k, v in p.items() if k.startswith('conv.')})  # 0.16's alias of conv
    return {'y': _load(Downsample2D(C, use_conv=True, out_channels=C, padding=1), p, dt)(T['x'])}


def upsample(case, T, dt):
    from diffusers.models.resnet import Upsample2D
    _two_d(case, T)
    C = case.attr('channels', int)
    return {'y': _load(Upsample2D(C, use_conv=True, out_channels=C), _torch_names(T), dt)(T['x'])}


def transformer(case, T, dt):
    from diffusers.models.transformer_2d import Transformer2DModel
    _two_d(case, T)
    x, ctx, heads = T['x'], T['context'], case.attr('heads', int)
    C = x.shape[1]
    m = Transformer2DModel(num_attention_heads=heads, attention_head_dim=C // heads, in_channels=C,
                           cross_attention_dim=ctx.shape[-1], norm_num_groups=32,
                           use_linear_projection=T['proj_in.kernel'].ndim == 2)
    return {'y': _load(m, _torch_names(T), dt)(x, encoder_hidden_states=ctx).sample}


FORWARD = {f.__name__: f for f in (activation, dense, layernorm, groupnorm, conv2d, temporal_conv, geglu, attention_self,
                                   attention_cross, attention_temporal, attention_clip, upsample_nearest,
                                   timestep_embedding, sched_add_noise, resnet, downsample, upsample, transformer)}


def backward(case, T, dt):
    """d_NAME = gradient of sum(dout * forward) with respect to NAME, by torch.autograd."""
    op = case.op[:-len('_grad')]
    wrt = [t['name'][2:] for t in case.outputs]
    for n in wrt:
        T[n] = T[n].clone().requires_grad_(True)
    if op == 'timestep_embedding':  # the MLP from the sinusoid
        y = _temb_mlp(T, dt)(T['sinusoid'])
    else:
        y = FORWARD[op](case, T, dt)['y']
    grads = torch.autograd.grad(y, [T[n] for n in wrt], T['dout'], allow_unused=True)
    return {'d_' + n: (g if g is not None else torch.zeros_like(T[n])) for n, g in zip(wrt, grads)}


BLOCKS_2D = ('resnet', 'downsample', 'upsample', 'transformer')


def main():
    global torch, F
    case = mavcase.load(sys.argv[1], layout='torch')
    if case.op not in FORWARD and not (case.op.endswith('_grad') and case.op[:-5] in FORWARD):
        print(f'torch_hf: {case.op} is not covered by diffusers/transformers here', file=sys.stderr)
        sys.exit(3)
    if case.op in BLOCKS_2D and len(case.tensors['x']['shape']) != 4:
        print(f'torch_hf: {case.op} with video input (pseudo-3D) is not in diffusers', file=sys.stderr)
        sys.exit(3)
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(int(os.environ.get('MAVREF_THREADS', '1')))
    dt = torch.float32 if case.precision == 'f32' else torch.float64
    T = {}
    for bag in (case.inputs, case.params, case.aux):
        for n, a in bag.items():
            T[n] = torch.from_numpy(np.ascontiguousarray(a))
            if T[n].is_floating_point():
                T[n] = T[n].to(dt)
    if 'sinusoid' in case.expected:  # an input of the MLP stage as well (the contract)
        T['sinusoid'] = torch.from_numpy(case.expected['sinusoid']).to(dt)
    with torch.enable_grad():
        out = backward(case, T, dt) if case.op.endswith('_grad') else FORWARD[case.op](case, T, dt)
    case.write(sys.argv[2], {n: v.detach().numpy() for n, v in out.items()})


if __name__ == '__main__':
    main()
