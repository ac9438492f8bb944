"""The PyTorch half of the checkpoint fixtures (run by `make fixtures`, in tools/.venv-torch:
Debian's torch 1.13 + diffusers 0.16.1 + transformers 4.30.2, see `make torch-env`).

Writes, with the real libraries' own classes and writers, small configurations of the files a
user downloads (vectors/model/):
  makeavid/unet/diffusion_pytorch_model.{bin,safetensors}  the pseudo-3D UNet in the PyTorch
      names of upstream's torch_impl (they mirror the Flax tree: ConvPseudo3D's spatial_conv /
      temporal_conv (a Conv1d), attn_temporal, norm_temporal), fp32, from the Flax params that
      fixtures_flax.py made (tools/.cache/fixtures/makeavid_unet_flax.npz)
  makeavid/vae/diffusion_pytorch_model.bin   diffusers AutoencoderKL, fp16 (as published)
  makeavid/text_encoder/pytorch_model.bin    transformers CLIPTextModel, fp16 + int64 position_ids
  sd15/{unet,vae,text_encoder}/...fp16.safetensors  SD 1.5's diffusers folder, fp16 variant (the
      VAE attention in the newer to_q/to_k/to_v/to_out.0 spelling mirrors carry)
  sd15.safetensors   the same SD 1.5 as one LDM single-file checkpoint (model.diffusion_model.*,
      first_stage_model.*, cond_stage_model.transformer.*)
and, for the Flax side (which has no torch), every state dict as numpy arrays in
tools/.cache/fixtures/<name>.npz, plus the LDM file converted back to diffusers names by
diffusers' own converter (convert_from_ckpt.convert_ldm_unet_checkpoint / _vae_checkpoint).
"""
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from safetensors.torch import save_file
from diffusers import UNet2DConditionModel, AutoencoderKL
from diffusers.pipelines.stable_diffusion import convert_from_ckpt as cfc
from transformers import CLIPTextModel, CLIPTextConfig

OUT = 'vectors/model'
CACHE = 'tools/.cache/fixtures'

# SD 1.5's layout at a small size (GroupNorm's 32 groups need multiples of 32)
SD_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32),
               down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'),
               cross_attention_dim=8, attention_head_dim=2, norm_num_groups=32)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32), layers_per_block=1,
           down_block_types=('DownEncoderBlock2D',) * 2, up_block_types=('UpDecoderBlock2D',) * 2,
           norm_num_groups=32, sample_size=16, scaling_factor=0.18215)
CLIP = dict(vocab_size=300, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=77, hidden_act='quick_gelu', layer_norm_eps=1e-5, projection_dim=16)
# makeavid's text encoder: the whole CLIP vocabulary (the tokenizer's ids reach 49407), its width
# the UNets' cross-attention dim, so the folder runs end to end (fixtures_flax.py pipeline)
CLIP_FULL = dict(CLIP, vocab_size=49408, hidden_size=8, intermediate_size=16, projection_dim=8,
                 bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)


def randomize(model, seed):
    """Every parameter k/64 with k uniform in [-7, 7] (the default inits leave zeros and ones
    that would hide a swapped or untransposed tensor; such values are exact in fp16 and bf16
    and keep the committed files small)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-7, 8, p.shape, generator=g).float() / 64)
    return model


def dump(name, sd):
    """A state dict as numpy for the Flax side (keys and dtypes as stored)."""
    os.makedirs(CACHE, exist_ok=True)
    np.savez(os.path.join(CACHE, name + '.npz'), **{k: v.numpy() for k, v in sd.items()})


def bin_state_dict(path):
    return torch.load(path, map_location='cpu')


def makeavid_unet():
    """upstream's torch_impl names from the Flax tree: a_N -> a.N, kernel -> weight (HWIO ->
    OIHW, other kernels reversed), scale -> weight."""
    flax = np.load(os.path.join(CACHE, 'makeavid_unet_flax.npz'))
    index_words = ('down_blocks', 'up_blocks', 'resnets', 'attentions', 'transformer_blocks', 'upsamplers',
                   'downsamplers', 'to_out', 'net')
    sd = OrderedDict()
    for name in flax.files:
        parts = []
        for comp in name.split('.'):
            w, _, n = comp.rpartition('_')
            parts.append(f'{w}.{n}' if w in index_words and n.isdigit() else comp)
        a = flax[name]
        leaf = parts[-1]
        if leaf == 'kernel':
            parts[-1] = 'weight'
            a = a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.transpose(tuple(range(a.ndim))[::-1])
        elif leaf == 'scale':
            parts[-1] = 'weight'
        sd['.'.join(parts)] = torch.from_numpy(np.ascontiguousarray(a))
    d = os.path.join(OUT, 'makeavid', 'unet')
    os.makedirs(d, exist_ok=True)
    torch.save(sd, os.path.join(d, 'diffusion_pytorch_model.bin'))
    save_file(sd, os.path.join(d, 'diffusion_pytorch_model.safetensors'))
    dump('makeavid_unet_bin', bin_state_dict(os.path.join(d, 'diffusion_pytorch_model.bin')))


def makeavid_vae_clip():
    d = os.path.join(OUT, 'makeavid')
    vae = randomize(AutoencoderKL(**VAE), 11).half()
    vae.save_pretrained(os.path.join(d, 'vae'))  # diffusion_pytorch_model.bin, fp16
    dump('makeavid_vae_bin', bin_state_dict(os.path.join(d, 'vae', 'diffusion_pytorch_model.bin')))
    clip = randomize(CLIPTextModel(CLIPTextConfig(**CLIP_FULL)), 12).half()
    clip.save_pretrained(os.path.join(d, 'text_encoder'), safe_serialization=False)  # pytorch_model.bin
    sd = bin_state_dict(os.path.join(d, 'text_encoder', 'pytorch_model.bin'))
    assert sd['text_model.embeddings.position_ids'].dtype == torch.int64
    dump('makeavid_clip_bin', sd)


def to_new_attention_names(sd):
    """diffusers >= 0.17 writes the VAE attention as to_q/to_k/to_v/to_out.0 (and group_norm)."""
    ren = {'query': 'to_q', 'key': 'to_k', 'value': 'to_v', 'proj_attn': 'to_out.0'}
    out = OrderedDict()
    for k, v in sd.items():
        p = k.split('.')
        if len(p) > 2 and p[-2] in ren and 'attentions' in p:
            k = '.'.join(p[:-2] + [ren[p[-2]], p[-1]])
        out[k] = v
    return out


def sd15():
    d = os.path.join(OUT, 'sd15')
    unet = randomize(UNet2DConditionModel(**SD_UNET), 21).half()
    unet.save_pretrained(os.path.join(d, 'unet'), safe_serialization=True, variant='fp16')
    vae = randomize(AutoencoderKL(**VAE), 22).half()
    vae.save_pretrained(os.path.join(d, 'vae'), safe_serialization=True, variant='fp16')
    # rewrite the VAE file in the newer attention spelling, as the mirrors hold it
    vpath = os.path.join(d, 'vae', 'diffusion_pytorch_model.fp16.safetensors')
    vsd = to_new_attention_names(vae.state_dict())
    save_file(OrderedDict((k, v.contiguous()) for k, v in vsd.items()), vpath)
    clip = randomize(CLIPTextModel(CLIPTextConfig(**CLIP)), 23).half()
    clip.save_pretrained(os.path.join(d, 'text_encoder'), safe_serialization=True)  # model.safetensors
    os.rename(os.path.join(d, 'text_encoder', 'model.safetensors'), os.path.join(d, 'text_encoder', 'model.fp16.safetensors'))
    usd, csd = unet.state_dict(), clip.state_dict()
    dump('sd15_unet', usd)
    dump('sd15_vae', vsd)
    dump('sd15_clip', csd)
    return usd, vae.state_dict(), csd


# --- LDM single file ------------------------------------------------------------------------
# Written by inverting the names diffusers' converter reads (convert_from_ckpt.py); the
# Flax side's expected values come from running that converter forward on this file.

RES_LDM = {'norm1': 'in_layers.0', 'conv1': 'in_layers.2', 'norm2': 'out_layers.0', 'conv2': 'out_layers.3',
           'time_emb_proj': 'emb_layers.1', 'conv_shortcut': 'skip_connection'}


def ldm_unet_name(k, L):
    p = k.split('.')
    if p[0] == 'time_embedding':
        return 'time_embed.%d.%s' % (0 if p[1] == 'linear_1' else 2, p[2])
    if p[0] == 'conv_in':
        return 'input_blocks.0.0.' + p[1]
    if p[0] == 'conv_norm_out':
        return 'out.0.' + p[1]
    if p[0] == 'conv_out':
        return 'out.2.' + p[1]
    if p[0] == 'down_blocks':
        b = int(p[1])
        if p[2] == 'downsamplers':
            return 'input_blocks.%d.0.op.%s' % (1 + b * (L + 1) + L, p[-1])
        i = 1 + b * (L + 1) + int(p[3])
        if p[2] == 'resnets':
            return 'input_blocks.%d.0.%s.%s' % (i, RES_LDM[p[4]], p[5])
        return 'input_blocks.%d.1.%s' % (i, '.'.join(p[4:]))
    if p[0] == 'mid_block':
        if p[1] == 'resnets':
            return 'middle_block.%d.%s.%s' % (2 * int(p[2]), RES_LDM[p[3]], p[4])
        return 'middle_block.1.' + '.'.join(p[3:])
    if p[0] == 'up_blocks':
        b = int(p[1])
        if p[2] == 'upsamplers':
            return None  # placed below: its index depends on the block having attentions
        i = b * (L + 1) + int(p[3])
        if p[2] == 'resnets':
            return 'output_blocks.%d.0.%s.%s' % (i, RES_LDM[p[4]], p[5])
        return 'output_blocks.%d.1.%s' % (i, '.'.join(p[4:]))
    raise KeyError(k)


VAE_RES = {'conv_shortcut': 'nin_shortcut'}
VAE_ATT = {'group_norm': 'norm', 'query': 'q', 'key': 'k', 'value': 'v', 'proj_attn': 'proj_out'}


def ldm_vae_name(k, nb):
    p = k.split('.')
    if p[0] in ('quant_conv', 'post_quant_conv'):
        return k
    side, rest = p[0], p[1:]
    if rest[0] in ('conv_in', 'conv_out'):
        return k
    if rest[0] == 'conv_norm_out':
        return '%s.norm_out.%s' % (side, rest[1])
    if rest[0] == 'mid_block':
        if rest[1] == 'resnets':
            return '%s.mid.block_%d.%s' % (side, int(rest[2]) + 1, '.'.join([VAE_RES.get(rest[3], rest[3])] + rest[4:]))
        return '%s.mid.attn_1.%s.%s' % (side, VAE_ATT[rest[3]], rest[4])
    b = int(rest[1])
    if rest[0] == 'down_blocks':
        if rest[2] == 'downsamplers':
            return '%s.down.%d.downsample.conv.%s' % (side, b, rest[-1])
        return '%s.down.%d.block.%s.%s' % (side, b, rest[3], '.'.join([VAE_RES.get(rest[4], rest[4])] + rest[5:]))
    lb = nb - 1 - b
    if rest[2] == 'upsamplers':
        return '%s.up.%d.upsample.conv.%s' % (side, lb, rest[-1])
    return '%s.up.%d.block.%s.%s' % (side, lb, rest[3], '.'.join([VAE_RES.get(rest[4], rest[4])] + rest[5:]))


def ldm_single_file(usd, vsd, csd):
    L, nb = SD_UNET['layers_per_block'], len(SD_UNET['block_out_channels'])
    out = OrderedDict()
    for k, v in usd.items():
        n = ldm_unet_name(k, L)
        if n is None:  # up_blocks.b.upsamplers.0.conv.*: after the resnet and (if any) the attention
            b = int(k.split('.')[1])
            has_attn = SD_UNET['up_block_types'][b].startswith('CrossAttn')
            n = 'output_blocks.%d.%d.conv.%s' % (b * (L + 1) + L, 2 if has_attn else 1, k.split('.')[-1])
        out['model.diffusion_model.' + n] = v
    for k, v in vsd.items():
        n = ldm_vae_name(k, len(VAE['block_out_channels']))
        # the LDM VAE attention is a 1x1 conv
        if '.attn_1.' in n and n.endswith('.weight') and v.ndim == 2 and '.norm.' not in n:
            v = v[:, :, None, None]
        out['first_stage_model.' + n] = v
    for k, v in csd.items():
        out['cond_stage_model.transformer.' + k] = v
    # what else a pruned original checkpoint carries: the schedule buffers
    out['betas'] = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64).pow(2).float()
    save_file(OrderedDict((k, v.contiguous()) for k, v in out.items()), os.path.join(OUT, 'sd15.safetensors'))
    # diffusers' own converter, forward, on what was written
    from safetensors.torch import load_file
    ck = load_file(os.path.join(OUT, 'sd15.safetensors'))
    ucfg = dict(SD_UNET, class_embed_type=None)
    conv_u = cfc.convert_ldm_unet_checkpoint(ck, ucfg)
    conv_v = cfc.convert_ldm_vae_checkpoint(ck, dict(VAE))
    # convert_ldm_clip_checkpoint strips "cond_stage_model.transformer." into a CLIPTextModel it
    # downloads; offline, the same key rule without the download:
    conv_c = OrderedDict((k[len('cond_stage_model.transformer.'):], v) for k, v in ck.items()
                         if k.startswith('cond_stage_model.transformer.'))
    dump('sd15_ldm_unet', conv_u)
    dump('sd15_ldm_vae', conv_v)
    dump('sd15_ldm_clip', conv_c)


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write('\n')


def main():
    torch.manual_seed(0)
    makeavid_unet()
    makeavid_vae_clip()
    usd, vsd, csd = sd15()
    ldm_single_file(usd, vsd, csd)
    write_json(os.path.join(OUT, 'sd15', 'model_index.json'), {
        '_class_name': 'StableDiffusionPipeline', '_diffusers_version': '0.16.1',
        'scheduler': ['diffusers', 'PNDMScheduler'], 'text_encoder': ['transformers', 'CLIPTextModel'],
        'tokenizer': ['transformers', 'CLIPTokenizer'], 'unet': ['diffusers', 'UNet2DConditionModel'],
        'vae': ['diffusers', 'AutoencoderKL']})
    print('torch fixtures written to', OUT)


if __name__ == '__main__':
    sys.exit(main())
