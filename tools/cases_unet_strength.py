"""Whole-UNet cases that can see a wrong time-embedding add (issue 16, corpus strength).

In the SMALL and MIXED configurations (cases_unet.py) the first level has 32 channels and
GroupNorm has 32 groups: one channel per group, so the normalisation right after the resnet's
`h + time_emb_proj(temb)` removes that per-channel constant again and a wrong (or missing)
time-embedding add at that level changes nothing. These configurations have at least two
channels per group at every level (64 = 2 x 32 at the first), so each level's add survives
its GroupNorm up to the difference between the channels of a group.

Same file layout, tolerances and exporter path (the FLAX model of tools/mavflax.py) as
cases_unet.py; a separate module so that exporting it leaves every existing file untouched:
    tools/.venv/bin/python tools/export_vectors.py --out vectors --modules cases_unet_strength
"""
from mavflax import UNetConfig
from cases_unet import unet_case

# 2, 4, 4, 4 channels per group; 2-layer pseudo-3D blocks as the real model, small widths
STRONG = UNetConfig(in_channels=9, out_channels=4, block_out_channels=(64, 128, 128, 128), layers_per_block=1,
                    attention_head_dim=4, cross_attention_dim=32)
# 2-D and Pseudo3D block types mixed, 2 channels per group at the first level, 3 at the last
STRONG_MIXED = UNetConfig(in_channels=9, out_channels=4, block_out_channels=(64, 64, 96), layers_per_block=1,
                          attention_head_dim=(2, 2, 4), cross_attention_dim=48,
                          down_block_types=('CrossAttnDownBlockPseudo3D', 'DownBlock2D', 'CrossAttnDownBlockPseudo3D'),
                          up_block_types=('CrossAttnUpBlockPseudo3D', 'UpBlockPseudo3D', 'CrossAttnUpBlock2D'))


def cases(prec):
    yield unet_case(prec, 'unet_strong_b1f2h16w8', STRONG, 4100, 1, 2, 16, 8, 7, [500.0])
    yield unet_case(prec, 'unet_strong_mixed_b2f2h8w8', STRONG_MIXED, 4101, 2, 2, 8, 8, 5, [999.0, 17.0], level='full')
