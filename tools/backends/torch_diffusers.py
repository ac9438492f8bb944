"""diffusers' PyTorch modules (and torch.nn under them) as a `mavref check` adapter.

    make conformance-env
    bin/mavref check --backend 'tools/.torch-venv/bin/python tools/backends/torch_diffusers.py {case} {out}'

Every op runs the library's own module or function, its parameters taken from the case
(stored, or procedural under their Flax names: tools/backends/torchcase.py), in the case's
precision (torch.float64 modules for f64 cases). Backward ops (*_grad) run the same forward
under torch.autograd with the case's `dout`.

    op                      implementation
    activation              torch.nn.functional.silu, gelu (approximate='tanh' or exact erf)
    dense, layernorm        torch.nn.Linear, torch.nn.LayerNorm
    groupnorm               torch.nn.GroupNorm (per-frame cases on (B*F)CHW)
    conv2d                  torch.nn.functional.pad + torch.nn.Conv2d
    upsample_nearest        torch.nn.functional.interpolate(mode='nearest')
    geglu                   diffusers.models.attention.GEGLU (exact-erf GELU, whatever the case says)
    attention_self/cross    diffusers.models.attention_processor.Attention (AttnProcessor)
    attention_temporal      the same Attention over each pixel's frames ((b h w) f c)
    timestep_embedding      diffusers Timesteps + TimestepEmbedding (as UNet2DConditionModel:
                            the sinusoid in float32, cast to the model's dtype)
    resnet (2-D cases)      diffusers.models.resnet.ResnetBlock2D
    transformer (2-D)       diffusers.models.transformer_2d.Transformer2DModel
    downsample, upsample    diffusers.models.resnet.Downsample2D, Upsample2D (2-D cases)
    unet (2-D mode)         diffusers.UNet2DConditionModel, taps from forward hooks
    vae                     diffusers.AutoencoderKL (encode: posterior mean/logvar; decode)
    sched_schedule          DPMSolverMultistepScheduler's betas, alphas_cumprod, alpha_t, sigma_t, lambda_t
    sched_step              DDIMScheduler / DPMSolverMultistepScheduler .step loop (their own timesteps)
    sched_add_noise         DDPMScheduler.add_noise

Unsupported (exit 3): the pseudo-3D parts (temporal_conv, conv_pseudo3d, and resnet,
transformer, downsample, upsample, unet cases with frames), CLIP (torch_transformers.py),
the pipeline, training and the mavref-specific ops.
"""
import json

import numpy as np
import torch
import torch.nn.functional as F

from torchcase import T, N, unsupported, load_params, tdtype, main
import diffusers  # noqa: F401  (the version is reported by make conformance)
from diffusers import AutoencoderKL, UNet2DConditionModel, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.models.attention import GEGLU
from diffusers.models.attention_processor import Attention, AttnProcessor
from diffusers.models.embeddings import Timesteps, TimestepEmbedding
from diffusers.models.resnet import ResnetBlock2D, Downsample2D, Upsample2D
from diffusers.models.transformer_2d import Transformer2DModel

SD_SCHED = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear')


def _mod(m, case):
    return m.to(tdtype(case)).eval()


def _load_state(m, case, state):
    """Load {torch name: numpy (torch layout)}; every parameter must be given."""
    have = dict(m.named_parameters())
    missing = set(have) - set(state)
    if missing:
        raise SystemExit(f'torch_diffusers: parameters not provided: {sorted(missing)}')
    with torch.no_grad():
        for k, p in have.items():
            p.copy_(torch.from_numpy(np.ascontiguousarray(state[k])).to(p.dtype))
    return m


# ---- forward ops: fn(case, grad) -> (outputs {name: torch tensor in torch layout},
#      inputs {name: leaf}, params {name: leaf}) so that *_grad can differentiate them.

def activation(case, grad=False):
    x = T(case.inputs['x'], case, grad)
    kind = case.attrs['kind']
    if kind == 'silu':
        y = F.silu(x)
    elif kind == 'gelu_tanh':
        y = F.gelu(x, approximate='tanh')
    elif kind == 'gelu_erf':
        y = F.gelu(x)
    else:
        unsupported(f'activation {kind}', 'not a diffusers activation (torch_transformers.py has quick_gelu)')
    return {'y': y}, {'x': x}, {}


def _linear_like(case, grad, names):
    return {n: T(case.params[n], case, grad) for n in names}


def dense(case, grad=False):
    x = T(case.inputs['x'], case, grad)
    p = _linear_like(case, grad, ['kernel', 'bias'])
    return {'y': F.linear(x, p['kernel'], p['bias'])}, {'x': x}, p


def layernorm(case, grad=False):
    x = T(case.inputs['x'], case, grad)
    p = _linear_like(case, grad, ['scale', 'bias'])
    y = F.layer_norm(x, (x.shape[-1],), p['scale'], p['bias'], case.attr('eps', float))
    return {'y': y}, {'x': x}, p


def groupnorm(case, grad=False):
    x = T(case.inputs['x'], case, grad)  # NCFHW
    p = _linear_like(case, grad, ['scale', 'bias'])
    G, eps = case.attr('groups', int), case.attr('eps', float)
    if case.attr('per_frame', int):
        B, C, Fr, H, W = x.shape
        xf = x.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, H, W)
        y = F.group_norm(xf, G, p['scale'], p['bias'], eps).reshape(B, Fr, C, H, W).permute(0, 2, 1, 3, 4)
    else:
        y = F.group_norm(x, G, p['scale'], p['bias'], eps)
    return {'y': y}, {'x': x}, p


def conv2d(case, grad=False):
    x = T(case.inputs['x'], case, grad)  # NCHW
    p = _linear_like(case, grad, ['kernel', 'bias'])
    pt, pb, pl, pr = (int(v) for v in case.attrs['pad'].split(','))
    y = F.conv2d(F.pad(x, (pl, pr, pt, pb)), p['kernel'], p['bias'], stride=case.attr('stride', int))
    return {'y': y}, {'x': x}, p


def upsample_nearest(case, grad=False):
    x = T(case.inputs['x'], case, grad)
    y = F.interpolate(x, size=(case.attr('Ho', int), case.attr('Wo', int)), mode='nearest')
    return {'y': y}, {'x': x}, {}


def geglu(case, grad=False):
    x = T(case.inputs['x'], case, grad)
    C, H2 = case.params['proj.kernel'].shape[1], case.params['proj.kernel'].shape[0]
    m = _mod(GEGLU(C, H2 // 2), case)
    _load_state(m, case, {'proj.weight': case.params['proj.kernel'], 'proj.bias': case.params['proj.bias']})
    params = {}
    if grad:
        params = {'proj.kernel': m.proj.weight, 'proj.bias': m.proj.bias}
    return {'y': m(x)}, {'x': x}, params


def _attention(case, x, context, grad):
    heads, d = case.attr('heads', int), case.attr('dim_head', int)
    C = x.shape[-1]
    Ckv = context.shape[-1] if context is not None else C
    m = _mod(Attention(C, cross_attention_dim=Ckv, heads=heads, dim_head=d, bias=False, out_bias=True,
                       processor=AttnProcessor()), case)
    pmap = {'to_q.weight': 'to_q.kernel', 'to_k.weight': 'to_k.kernel', 'to_v.weight': 'to_v.kernel',
            'to_out.0.weight': 'to_out_0.kernel', 'to_out.0.bias': 'to_out_0.bias'}
    _load_state(m, case, {k: case.params[v] for k, v in pmap.items()})
    y = m(x, encoder_hidden_states=context)
    named = dict(m.named_parameters())
    params = {v: named[k] for k, v in pmap.items()} if grad else {}
    return y, params


def attention_self(case, grad=False):
    x = T(case.inputs['x'], case, grad)
    y, p = _attention(case, x, None, grad)
    return {'y': y, 'y_memeff': y}, {'x': x}, p


def attention_cross(case, grad=False):
    x = T(case.inputs['x'], case, grad)
    ctx = T(case.inputs['context'], case, grad)
    # the transformer block repeats the prompt's context for every frame, batch-major
    y, p = _attention(case, x, torch.repeat_interleave(ctx, case.attr('frames', int), dim=0), grad)
    return {'y': y, 'y_memeff': y}, {'x': x, 'context': ctx}, p


def attention_temporal(case, grad=False):
    x = T(case.inputs['x'], case, grad)  # NCFHW
    B, C, Fr, H, W = x.shape
    xs = x.permute(0, 3, 4, 2, 1).reshape(B * H * W, Fr, C)
    ys, p = _attention(case, xs, None, grad)
    y = ys.reshape(B, H, W, Fr, C).permute(0, 4, 3, 1, 2)
    return {'y': y, 'y_memeff': y}, {'x': x}, p


def _timestep_mlp(case, C, D, grad):
    m = _mod(TimestepEmbedding(C, D), case)
    _load_state(m, case, {f'{l}.{w}': case.params[f'{l}.{n}'] for l in ('linear_1', 'linear_2')
                          for w, n in (('weight', 'kernel'), ('bias', 'bias'))})
    named = dict(m.named_parameters())
    params = {f'{l}.{n}': named[f'{l}.{w}'] for l in ('linear_1', 'linear_2')
              for w, n in (('weight', 'kernel'), ('bias', 'bias'))} if grad else {}
    return m, params


def timestep_embedding(case, grad=False):
    t = torch.from_numpy(np.asarray(case.inputs['t']))
    dim = case.attr('dim', int)
    proj = Timesteps(dim, flip_sin_to_cos=bool(case.attr('flip_sin_to_cos', int)),
                     downscale_freq_shift=case.attr('freq_shift', float))
    sin = proj(t)  # float32, as diffusers computes it in every precision
    D = case.params['linear_1.bias'].shape[0]
    m, params = _timestep_mlp(case, dim, D, grad)
    temb = m(sin.to(tdtype(case)))  # UNet2DConditionModel: t_emb.to(dtype=self.dtype)
    return {'sinusoid': sin.to(tdtype(case)), 'temb': temb}, {}, params


def timestep_embedding_grad_fwd(case, grad=False):
    """timestep_embedding_grad differentiates the MLP with respect to the given sinusoid."""
    sin = T(case.inputs['sinusoid'], case, grad)
    m, params = _timestep_mlp(case, sin.shape[-1], case.params['linear_1.bias'].shape[0], grad)
    return {'temb': m(sin)}, {'sinusoid': sin}, params


def _two_d(case, name='x'):
    if case.inputs[name].ndim != 4:
        unsupported(case.op, 'pseudo-3D block (temporal convolution/attention): no diffusers counterpart')


def resnet(case, grad=False):
    _two_d(case)
    x = T(case.inputs['x'], case, grad)  # NCHW
    temb = T(case.inputs['temb'], case, grad)
    m = _mod(ResnetBlock2D(in_channels=case.attr('in_channels', int), out_channels=case.attr('out_channels', int),
                           temb_channels=temb.shape[-1], groups=32, eps=1e-5), case)
    load_params(m, case)
    return {'y': m(x, temb)}, {'x': x, 'temb': temb}, {}


def transformer(case, grad=False):
    _two_d(case)
    x = T(case.inputs['x'], case, grad)
    chlast = case.tensors['x']['layout'] != 'NHWC'  # contracts that call x '...C' leave it (B,H,W,C)
    if chlast:
        x = x.permute(0, 3, 1, 2)
    ctx = T(case.inputs['context'], case, grad)
    C, heads = x.shape[1], case.attr('heads', int)
    m = _mod(Transformer2DModel(num_attention_heads=heads, attention_head_dim=C // heads, in_channels=C,
                                cross_attention_dim=ctx.shape[-1], norm_num_groups=32), case)
    load_params(m, case)
    y = m(x, encoder_hidden_states=ctx).sample
    y = y.permute(0, 2, 3, 1) if chlast else y
    return {'y': y}, {'x': x, 'context': ctx}, {}


def downsample(case, grad=False):
    _two_d(case)
    x = T(case.inputs['x'], case, grad)
    C = case.attr('channels', int)
    m = _mod(Downsample2D(C, use_conv=True, out_channels=C, padding=1), case)
    load_params(m, case)
    return {'y': m(x)}, {'x': x}, {}


def upsample(case, grad=False):
    _two_d(case)
    x = T(case.inputs['x'], case, grad)
    C = case.attr('channels', int)
    m = _mod(Upsample2D(C, use_conv=True, out_channels=C), case)
    load_params(m, case)
    return {'y': m(x)}, {'x': x}, {}


BLOCK2D = {'CrossAttnDownBlockPseudo3D': 'CrossAttnDownBlock2D', 'DownBlockPseudo3D': 'DownBlock2D',
           'CrossAttnUpBlockPseudo3D': 'CrossAttnUpBlock2D', 'UpBlockPseudo3D': 'UpBlock2D'}


def unet(case, grad=False):
    if case.attrs.get('video', '1') != '0':
        unsupported('unet', 'pseudo-3D UNet (video mode): diffusers has only the 2-D UNet; see torch_makeavid.py')
    cfg = json.loads(case.attrs['config'])
    m = UNet2DConditionModel(
        sample_size=None, in_channels=cfg['in_channels'], out_channels=cfg['out_channels'],
        down_block_types=tuple(BLOCK2D[b] for b in cfg['down_block_types']),
        up_block_types=tuple(BLOCK2D[b] for b in cfg['up_block_types']),
        block_out_channels=tuple(cfg['block_out_channels']), layers_per_block=cfg['layers_per_block'],
        attention_head_dim=cfg['attention_head_dim'], cross_attention_dim=cfg['cross_attention_dim'],
        flip_sin_to_cos=cfg['flip_sin_to_cos'], freq_shift=cfg['freq_shift'], norm_num_groups=32, norm_eps=1e-5)
    m = _mod(m, case)
    load_params(m, case)
    taps = {}

    def hook(name):
        def f(_mod_, _inp, out):
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
    ctx = T(case.inputs['context'], case)
    with torch.no_grad():
        out = m(x, t, encoder_hidden_states=ctx).sample
    want = {t_['name'] for t_ in case.outputs}
    res = {k: v for k, v in taps.items() if k in want}
    res['out'] = out
    return res, {}, {}


def vae(case, grad=False):
    boc = tuple(int(c) for c in case.attrs['block_out_channels'].split(','))
    n = len(boc)
    m = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                      down_block_types=('DownEncoderBlock2D',) * n, up_block_types=('UpDecoderBlock2D',) * n,
                      block_out_channels=boc, layers_per_block=case.attr('layers_per_block', int),
                      norm_num_groups=32)
    m = _mod(m, case)
    load_params(m, case, seed=case.attr('weights_seed', int))
    with torch.no_grad():
        post = m.encode(T(case.inputs['image'], case)).latent_dist
        dec = m.decode(T(case.inputs['latents'], case)).sample
    return {'mean': post.mean, 'logvar': post.logvar, 'decoded': dec}, {}, {}


# ---- schedulers

def _sched(case):
    """SD's schedule, or the case's own (meta beta_start, beta_end, prediction_type: the toy
    model's, the *_toy cases)."""
    cfg, pred = dict(SD_SCHED), 'epsilon'
    if 'beta_end' in case.attrs:
        cfg['beta_start'], cfg['beta_end'] = float(case.attrs['beta_start']), float(case.attrs['beta_end'])
        pred = case.attrs.get('prediction_type', 'epsilon')
    return cfg, pred


def _dpm(case):
    cfg, pred = _sched(case)
    return DPMSolverMultistepScheduler(**cfg, solver_order=2, prediction_type=pred,
                                       algorithm_type='dpmsolver++', solver_type='midpoint', lower_order_final=True)


def sched_schedule(case, grad=False):
    s = _dpm(case)
    allv = {'betas': s.betas, 'alphas_cumprod': s.alphas_cumprod, 'alpha_t': s.alpha_t, 'sigma_t': s.sigma_t,
            'lambda_t': s.lambda_t}
    return {t['name']: allv[t['name']].to(tdtype(case)) for t in case.outputs}, {}, {}


def sched_step(case, grad=False):
    import sys
    kind, n, stride = case.attrs['kind'], case.attr('steps', int), case.attr('stride', int)
    if kind == 'ddim':
        cfg, pred = _sched(case)
        s = DDIMScheduler(**cfg, set_alpha_to_one=False, steps_offset=1, clip_sample=False, prediction_type=pred)
    else:
        s = _dpm(case)
    s.set_timesteps(n)
    ts = s.timesteps.numpy().astype(np.int64)
    want = np.asarray(case.aux['timesteps']).astype(np.int64)
    if not np.array_equal(ts, want):
        bad = np.nonzero(ts != want)[0]
        print(f'torch_diffusers: note: {kind} timesteps differ from the case at {len(bad)} of {n} steps '
              f'(first: step {bad[0]}: {ts[bad[0]]} vs {want[bad[0]]}); the scheduler runs its own', file=sys.stderr)
    x = T(case.inputs['x'], case)
    eps = T(case.inputs['eps'], case)
    xs = []
    for i, t in enumerate(s.timesteps):
        x = s.step(eps[i], t, x).prev_sample
        xs.append(x)
    xs = torch.stack(xs)[stride - 1::stride]
    return {'latents': xs.to(tdtype(case))}, {}, {}


def sched_add_noise(case, grad=False):
    cfg, pred = _sched(case)
    s = DDPMScheduler(**cfg, clip_sample=False, prediction_type=pred)
    x0, noise = T(case.inputs['x0'], case), T(case.inputs['noise'], case)
    t = torch.from_numpy(np.asarray(case.inputs['t']))
    out = {'noisy': s.add_noise(x0, noise, t).to(tdtype(case))}
    if pred == 'v_prediction':  # the training target
        out['velocity'] = s.get_velocity(x0, noise, t).to(tdtype(case))
    return out, {}, {}


FORWARD = {
    'activation': activation, 'dense': dense, 'layernorm': layernorm, 'groupnorm': groupnorm,
    'conv2d': conv2d, 'upsample_nearest': upsample_nearest, 'geglu': geglu,
    'attention_self': attention_self, 'attention_cross': attention_cross,
    'attention_temporal': attention_temporal, 'timestep_embedding': timestep_embedding,
    'resnet': resnet, 'transformer': transformer, 'downsample': downsample, 'upsample': upsample,
    'unet': unet, 'vae': vae, 'sched_schedule': sched_schedule, 'sched_step': sched_step,
    'sched_add_noise': sched_add_noise,
}
GRAD_FORWARD = dict(FORWARD, timestep_embedding=timestep_embedding_grad_fwd)
GRAD_OPS = ('activation', 'dense', 'layernorm', 'groupnorm', 'conv2d', 'upsample_nearest', 'geglu',
            'attention_self', 'attention_cross', 'attention_temporal', 'timestep_embedding')


def forward_op(fn):
    def run(case):
        with torch.no_grad():
            outs, _, _ = fn(case, False)
        return {k: N(v) for k, v in outs.items()}
    return run


def grad_op(fn):
    def run(case):
        outs, inputs, params = fn(case, True)
        (y,) = [v for k, v in outs.items() if k != 'y_memeff' and k != 'sinusoid']
        dout = T(case.inputs['dout'], case)
        leaves = dict(inputs, **params)
        gs = torch.autograd.grad(y, list(leaves.values()), grad_outputs=dout, allow_unused=True)
        res = {}
        want = {t['name'] for t in case.outputs}
        for k, g in zip(leaves, gs):
            if 'd_' + k in want:
                res['d_' + k] = N(torch.zeros_like(leaves[k]) if g is None else g)
        return res
    return run


OPS = {op: forward_op(fn) for op, fn in FORWARD.items()}
OPS.update({op + '_grad': grad_op(GRAD_FORWARD[op]) for op in GRAD_OPS})


def _pre_2d(meta, head):
    x = head.get('x')
    if x is not None and len(x['shape']) == 5:
        unsupported(meta['op'], 'pseudo-3D block (temporal convolution/attention): no diffusers counterpart')


def _pre_unet(meta, head):
    if meta.get('video', '1') != '0':
        unsupported('unet', 'pseudo-3D UNet (video mode): diffusers has only the 2-D UNet')


PRECHECK = {'resnet': _pre_2d, 'transformer': _pre_2d, 'downsample': _pre_2d, 'upsample': _pre_2d, 'unet': _pre_unet}

if __name__ == '__main__':
    main(OPS, precheck=PRECHECK)
