"""SD 1.5's 2-D UNet forward in PyTorch on CPU, for `make bench`'s comparison (unet2d_vs_torch).

    tools/.torch-venv/bin/python tools/bench_torch.py B H W [NAME]

diffusers' UNet2DConditionModel with SD 1.5's configuration (channels 320/640/1280/1280, two
layers per block, 8 heads, context 768, 4 input channels), its own random float32 weights (the
values do not change the work), sample (B,4,H,W), context (B,77,768), under torch.no_grad, on
MAVREF_THREADS threads (default: the cores), as Debian's torch runs it (oneDNN); prints the time
of the second call as torch_NAME_s = SECONDS (NAME: unet2d_forward by default)."""
import os
import sys
import time

import torch
from diffusers import UNet2DConditionModel


def main():
    B, H, W = (int(v) for v in sys.argv[1:4])
    name = sys.argv[4] if len(sys.argv) > 4 else 'unet2d_forward'
    torch.set_num_threads(int(os.environ.get('MAVREF_THREADS', os.cpu_count())))
    torch.manual_seed(0)
    m = UNet2DConditionModel(sample_size=H, in_channels=4, out_channels=4, layers_per_block=2,
                             block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
                             down_block_types=('CrossAttnDownBlock2D',) * 3 + ('DownBlock2D',),
                             up_block_types=('UpBlock2D',) + ('CrossAttnUpBlock2D',) * 3).eval()
    x = torch.randn(B, 4, H, W)
    t = torch.tensor([999.0 - 250 * i for i in range(B)])
    ctx = torch.randn(B, 77, 768)
    with torch.no_grad():
        m(x, t, ctx)
        t0 = time.time()
        m(x, t, ctx)
        dt = time.time() - t0
    print(f'PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads), diffusers UNet2DConditionModel (SD 1.5), '
          f'sample ({B},4,{H},{W}): {dt:.2f} s')
    print(f'torch_{name}_s = {dt:.2f}')


if __name__ == '__main__':
    main()
