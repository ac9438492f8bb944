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


def make_vae(boc, L, image_shape, seed, prec):
    """diffusers' FlaxAutoencoderKL with SD's block types at these channels, and its procedural
    parameters: (model, params, count)."""
    n = len(boc)
    model = FlaxAutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                              down_block_types=('DownEncoderBlock2D',) * n,
                              up_block_types=('UpDecoderBlock2D',) * n,
                              block_out_channels=boc, layers_per_block=L, norm_num_groups=32,
                              dtype=np_dtype(prec))
    params, count = vae_params(model, image_shape, seed, prec)
    return model, params, count


def cases(prec):
    yield from forward_cases(prec)
    yield from grad_cases(prec)


def forward_cases(prec):
    for i, (cname, (boc, L, H, W, B)) in enumerate(CONFIGS.items()):
        seed = 7000 + i
        r = rng(seed)
        n = len(boc)
        model, params, count = make_vae(boc, L, (B, 3, H, W), seed, prec)
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


# ---------------------------------------------------------------------------------------
# Backward: jax.vjp of FlaxAutoencoderKL's encode (posterior mean and logvar) and decode, with
# random cotangents; the gradient of every parameter is stored as in the UNet's gradient cases
# (cases_train.Summary: per-tensor norm, dot with a fixed direction, max|g| and sampled
# elements; the small tensors in full).
#
# op 'vae_encode_grad': inputs image (B,3,H,W), w_mean, w_logvar (B,4,h,w);
#   L = sum(mean * w_mean) + sum(logvar * w_logvar); expected mean, logvar, d_image, g*.
# op 'vae_decode_grad': inputs latents (B,4,h,w), w (B,3,H,W); L = sum(decoded * w);
#   expected decoded, d_latents, g*.
GRAD_CONFIGS = {
    # name: (block_out_channels, layers_per_block, image H, W, batch)
    'small': ((32, 64), 1, 8, 12, 2),
    'two': ((64, 96), 1, 8, 8, 1),   # two channels per GroupNorm group at every level
}
# float32, measured mavref f32 against JAX f32: worst 4.3e-6 (the encoder mid-block attention
# GroupNorm scale); ~9x that. float64 measured 9.8e-15.
TOL_VAE_GRAD_F32 = 4e-5


def grad_cases(prec):
    import jax
    from cases_train import Summary
    import cases_train
    for i, (cname, (boc, L, H, W, B)) in enumerate(GRAD_CONFIGS.items()):
        seed = 7100 + i
        r = rng(seed)
        n = len(boc)
        model, params, count = make_vae(boc, L, (B, 3, H, W), seed, prec)
        f = 2 ** (n - 1)
        image = uniform(r, (B, 3, H, W), prec)
        w_mean = normal(r, (B, 4, H // f, W // f), prec)
        w_logvar = normal(r, (B, 4, H // f, W // f), prec)
        latents = normal(r, (B, 4, H // f, W // f), prec)
        w_dec = normal(r, (B, 3, H, W), prec)

        def encode(p, x):
            post = model.apply({'params': p}, x, method=model.encode).latent_dist
            return post.mean.transpose(0, 3, 1, 2), post.logvar.transpose(0, 3, 1, 2)

        def decode(p, z):  # NHWC latents, as in cases(): decode's NCHW guess misreads width 4
            return model.apply({'params': p}, z.transpose(0, 2, 3, 1), method=model.decode).sample

        flat_shapes = {'.'.join(k): v.shape for k, v in flatten_dict(params).items()}
        base = {'block_out_channels': ','.join(map(str, boc)), 'layers_per_block': str(L),
                'weights_seed': str(seed), 'params': ','.join(flat_shapes), 'dir_seed': str(cases_train.DIR_SEED),
                'samples': str(cases_train.SAMPLES), 'sample_seed': str(cases_train.SAMPLE_SEED),
                'param_count': str(count)}
        for kind in ('encode', 'decode'):
            if kind == 'encode':
                outs, vjp = jax.vjp(encode, params, jnp.asarray(image))
                gp, gx = vjp((jnp.asarray(w_mean), jnp.asarray(w_logvar)))
                tensors = [('image', image), ('w_mean', w_mean), ('w_logvar', w_logvar),
                           ('mean', out(outs[0], prec)), ('logvar', out(outs[1], prec)), ('d_image', out(gx, prec))]
            else:
                outs, vjp = jax.vjp(decode, params, jnp.asarray(latents))
                gp, gx = vjp(jnp.asarray(w_dec))
                tensors = [('latents', latents), ('w', w_dec), ('decoded', out(outs, prec)), ('d_latents', out(gx, prec))]
            sm = Summary(flat_shapes, samples=True)
            flat = {'.'.join(k): v for k, v in flatten_dict(gp).items()}
            for k in flat_shapes:
                sm.add(k, flat[k])
            gt, full, zero = sm.tensors(prec, 'g')
            meta = dict(base, full=','.join(full), zero_grads=','.join(zero))
            yield Case(name=f'vae_{kind}_grad_{cname}_b{B}h{H}w{W}', op=f'vae_{kind}_grad', seed=seed,
                       tol=tol(prec, TOL_VAE_GRAD_F32), tensors=tensors + gt, meta=meta,
                       level='quick' if cname == 'small' else 'full')
