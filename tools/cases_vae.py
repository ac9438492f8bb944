"""The SD VAE from diffusers' FlaxAutoencoderKL: encode (posterior mean, logvar) and decode.

Weights are procedural by the corpus rule (mavflax.proc_rule), regenerated on the C side from
the same rule; the files carry the image, the latents and the outputs."""
import numpy as np
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict
from diffusers import FlaxAutoencoderKL

import procgen
from mavflax import proc_rule
from vecspec import Case, normal, rng, tol, out, np_dtype, uniform

# f32: the encoder chains ~20 convolutions (reductions of up to 4608 terms), GroupNorms and a
# 4096-key softmax: a few hundred float32 ulps of the output's scale.
TOL_VAE_F32 = 2e-5

CONFIGS = {
    # name: (block_out_channels, layers_per_block, image H, W, batch)
    'small': ((32, 64), 1, 8, 12, 2),
    'sd': ((128, 256, 512, 512), 2, 16, 16, 1),
}


def vae_params(model, image_shape, seed, prec):
    import jax
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), jax.ShapeDtypeStruct(image_shape, jnp.float32))
    flat = {'.'.join(k): v.shape for k, v in flatten_dict(shapes['params']).items()}
    params = {}
    for name, shape in flat.items():
        scale, offset = proc_rule(name, shape)
        params[tuple(name.split('.'))] = jnp.asarray(procgen.fill(shape, seed, name, scale, offset).astype(np_dtype(prec)))
    return unflatten_dict(params), len(flat)


def cases(prec):
    for i, (cname, (boc, L, H, W, B)) in enumerate(CONFIGS.items()):
        seed = 7000 + i
        r = rng(seed)
        n = len(boc)
        model = FlaxAutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                                  down_block_types=('DownEncoderBlock2D',) * n,
                                  up_block_types=('UpDecoderBlock2D',) * n,
                                  block_out_channels=boc, layers_per_block=L, norm_num_groups=32,
                                  dtype=np_dtype(prec))
        params, count = vae_params(model, (B, 3, H, W), seed, prec)
        image = uniform(r, (B, 3, H, W), prec)
        post = model.apply({'params': params}, jnp.asarray(image), method=model.encode).latent_dist
        f = 2 ** (n - 1)
        latents = normal(r, (B, 4, H // f, W // f), prec)
        # decode is given NHWC latents: FlaxAutoencoderKL.decode only transposes NCHW input
        # whose last axis is not 4, which would misread a width-4 latent
        dec = model.apply({'params': params}, jnp.asarray(latents.transpose(0, 2, 3, 1)), method=model.decode).sample
        meta = {'block_out_channels': ','.join(map(str, boc)), 'layers_per_block': str(L),
                'weights_seed': str(seed), 'params': str(count)}
        yield Case(name=f'vae_{cname}_b{B}h{H}w{W}', op='vae', seed=seed, tol=tol(prec, TOL_VAE_F32),
                   tensors=[('image', image), ('mean', out(post.mean.transpose(0, 3, 1, 2), prec)),
                            ('logvar', out(post.logvar.transpose(0, 3, 1, 2), prec)),
                            ('latents', latents), ('decoded', out(dec, prec))],
                   meta=meta, level='quick' if cname == 'small' else 'full')
