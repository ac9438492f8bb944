"""Does the toy video UNet use its hint? (SPEC.md section 10.5; tools/.venv or any Python with
numpy and safetensors.)

    toy_hint_probe.py MAVREF UNET_CONFIG WEIGHTS DATA SCHEDULER_CONFIG

For 8 training clips of DATA (encode-clips) and timesteps 50 ... 990, the training loss of the
pseudo-3D UNet (`mavref unet`, the weights by Flax names) with the clip's own hint (its first
frame), another clip's first frame, and a zero hint; then frame 0 alone, whose clean latent is
the hint itself. The target is the noise, or v where the schedule says v_prediction. A network
that ignores its hint scores the three rows alike.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

LATENT_SCALE = 0.18215
CLIPS = [3, 17, 40, 77, 150, 222, 301, 400]
TS = [50, 200, 400, 600, 800, 900, 990]


def main(mavref, config, weights, data, sched_path):
    with open(sched_path) as f:
        sc = json.load(f)
    vpred = sc.get('prediction_type', 'epsilon') == 'v_prediction'
    betas = np.linspace(np.sqrt(sc['beta_start']), np.sqrt(sc['beta_end']), sc['num_train_timesteps']) ** 2
    abar = np.cumprod(1 - betas)
    d = load_file(data)
    rng = np.random.default_rng(0)
    X, T, C, Y, tags = [], [], [], [], []
    for ci, c in enumerate(CLIPS):
        x0 = (d[f'latents.{c}'][:12] * LATENT_SCALE).transpose(1, 0, 2, 3)   # (4,F,h,w)
        other = d[f'latents.{CLIPS[(ci + 1) % len(CLIPS)]}'][0] * LATENT_SCALE
        F = x0.shape[1]
        for t in TS:
            n = rng.standard_normal(x0.shape).astype(np.float32)
            xt = np.sqrt(abar[t]) * x0 + np.sqrt(1 - abar[t]) * n
            target = np.sqrt(abar[t]) * n - np.sqrt(1 - abar[t]) * x0 if vpred else n
            for kind, hint in (('own', x0[:, 0]), ('other', other), ('zero', np.zeros_like(other))):
                X.append(np.concatenate([xt, np.zeros((1,) + x0.shape[1:]), np.repeat(hint[:, None], F, axis=1)], 0))
                T.append(t); C.append(d[f'context.{c}']); Y.append(target); tags.append((kind, t))
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, 'in.safetensors'), os.path.join(tmp, 'out.safetensors')
        save_file({'sample': np.stack(X).astype(np.float32), 'timesteps': np.array(T, np.float32),
                   'context': np.stack(C).astype(np.float32)}, inp)
        subprocess.run([mavref, 'unet', '--config', config, '--weights', weights, '--inputs', inp, '--out', out],
                       check=True, stdout=subprocess.DEVNULL)
        pred = load_file(out)['out']
    err = ((pred - np.stack(Y)) ** 2).mean(axis=(1, 3, 4))   # (B, F)
    print(f'{"v" if vpred else "epsilon"} loss by timestep, {len(CLIPS)} clips')
    print('hint         ' + ' '.join(f'{t:>7d}' for t in TS))
    for frames, sel in (('all frames', slice(None)), ('frame 0', 0)):
        for kind in ('own', 'other', 'zero'):
            row = [err[[i for i, g in enumerate(tags) if g == (kind, t)]][:, sel].mean() for t in TS]
            print(f'{kind:5s} {frames:10s} ' + ' '.join(f'{r:7.4f}' for r in row))


if __name__ == '__main__':
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
