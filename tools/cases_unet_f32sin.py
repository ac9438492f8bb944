"""Whole-UNet cases of upstream's unmodified float64 (x64) forward, whose timestep sinusoid is
float32 (issue 16; SPEC.md sections 4.11 and 13.4).

The float64 `unet` cases of cases_unet.py define the sinusoid in float64 (mavflax.sinusoid,
as mavref's float64 build). Upstream's Flax model under jax_enable_x64 computes it with
diffusers' FlaxTimesteps, in float32 whatever the dtype, and only the layers after it in
float64. These cases are that forward (mavflax f32_sinusoid=True), on the same inputs and
weights as their float64-sinusoid namesakes, so that a faithful float64 port which keeps
upstream's float32 sinusoid has a corpus to pass:

  meta sinusoid=float32          the case is the float32-sinusoid forward
  input time_proj (B, c0)        the float32 sinusoid the Flax model computed (as float64):
                                 the network after tap.time_proj runs from it
  tap.time_proj                  compared at tol.tap.time_proj = 2*1000*2^-24 (a float32
                                 implementation's legitimate spread, cases_ops.TOL_SINUSOID)
  every other tap and out        at the float64 unet tolerance, 1e-9

float64 only (in float32 the sinusoid is float32 anyway: cases_unet.py). A separate module so
that exporting it leaves every existing file untouched:
    tools/.venv/bin/python tools/export_vectors.py --out vectors --modules cases_unet_f32sin
"""
from cases_unet import unet_case, SMALL
from cases_unet_strength import STRONG_MIXED


def cases(prec):
    if prec != 'f64':
        return
    yield unet_case(prec, 'unet_f32sin_small_b1f3h16w8', SMALL, 4000, 1, 3, 16, 8, 77, [999.0], f32_sinusoid=True)
    yield unet_case(prec, 'unet_f32sin_strong_mixed_b2f2h8w8', STRONG_MIXED, 4101, 2, 2, 8, 8, 5, [999.0, 17.0],
                    level='full', f32_sinusoid=True)
