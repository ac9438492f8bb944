"""Corpus cases of the toy world (ref/toyworld.c = tools/toyworld.py): clips defined bit for bit.

Each case is one clip: its draw (seed, index, selection, size, frames) in the metadata and
its frames (F, S, S, 3) as bytes; the C runner draws and renders the same clip and every
byte must be equal, and so must the clip's geometry and caption."""
import numpy as np

import toyworld as T
from vecspec import Case

# (seed, index, held: 0 training / 1 held out / -1 all / 'c,s,d' a given combination, S, F)
SPECS = [(1, 0, 0, 64, 12), (1, 1, 1, 32, 8), (7, 3, -1, 48, 12), (123456789, 99, '2,2,3', 32, 16),
         (2**63 + 5, 2**40, 0, 32, 8), (0, 0, '3,1,2', 32, 2)]


def cases(prec):
    for i, (seed, index, held, S, F) in enumerate(SPECS):
        if isinstance(held, str):
            c = T.clip_for(*[int(v) for v in held.split(',')], seed, index, S, F)
        else:
            c = T.clip_at(seed, index, held, S, F)
        frames = T.render(c, S, F)
        yield Case(name=f'toyworld_{i}', op='toyworld', seed=i, tol=1e-300,  # exact: every byte is compared
                   tensors=[('frames', frames.astype(np.uint8))],
                   meta={'clip_seed': str(seed), 'index': str(index), 'held': str(held),
                         'size': str(S), 'frames': str(F), 'caption': T.caption(c),
                         'geometry': f"{c['color']} {c['shape']} {c['dir']} {c['r']} {c['x0']} {c['y0']} {c['v']}"},
                   level='quick' if i == 0 else 'full')
