"""Write a makeavid UNet folder the way the published one is laid out, at the real size, for
`make bench`'s load figures (issue 14): DIR/unet/config.json and DIR/unet/diffusion_flax_model.msgpack
written by flax.serialization.to_bytes (what diffusers' FlaxModelMixin.save_pretrained writes),
float32, 930 tensors, 1,100,578,616 values. The values are procedural (tools/procgen.py with the
corpus rule): what is measured is reading, not the numbers. Needs ~13 GB while writing
(measured: 13.2 GB peak, 66 s on a loaded 2-core machine); mavref reads it in 4.30 GB (1.001x).

    python tools/bench_msgpack.py DIR [--small]     (--small: the corpus' small configuration)
"""
import gc
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mavflax  # noqa: E402
import procgen  # noqa: E402


def main():
    out = sys.argv[1]
    config = mavflax.SMALL if '--small' in sys.argv[2:] else mavflax.MAKEAVID
    from flax import serialization
    shapes = mavflax.unet_param_shapes(config)
    tree = {}
    for name, shape in shapes.items():
        scale, offset = mavflax.proc_rule(name, shape)
        node = tree
        parts = name.split('.')
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = procgen.fill(shape, 1, name, scale, offset).astype(np.float32)
    os.makedirs(os.path.join(out, 'unet'), exist_ok=True)
    with open(os.path.join(out, 'unet', 'config.json'), 'w') as f:
        cfg = json.loads(config.to_json())
        cfg['_class_name'] = 'UNetPseudo3DConditionModel'
        json.dump(cfg, f)
    data = serialization.to_bytes(tree)
    del tree
    gc.collect()
    path = os.path.join(out, 'unet', 'diffusion_flax_model.msgpack')
    with open(path + '.tmp', 'wb') as f:
        f.write(data)
    os.replace(path + '.tmp', path)
    print(f'wrote {path}: {len(data)} bytes, {sum(int(np.prod(s)) for s in shapes.values())} values')


if __name__ == '__main__':
    main()
