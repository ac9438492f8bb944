"""The toy world of ref/toyworld.c in Python: the same clips, byte for byte.

Clips of one simple shape moving in a straight line on a plain background, with a caption
("a red circle moving left"). The rules are in ref/toyworld.h; everything is integer
arithmetic on the splitmix64 stream of tools/procgen.py.

The corpus cases of op `toyworld` (tools/cases_toy.py) are clips made here; the C runner
renders the same clips and compares every byte.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procgen import M64, fnv1a64  # noqa: E402

COLOR_NAMES = ['red', 'green', 'blue', 'yellow']
SHAPE_NAMES = ['circle', 'bar', 'triangle']
DIR_NAMES = ['left', 'right', 'up', 'down']
COLORS = [(220, 50, 47), (60, 170, 60), (40, 90, 220), (235, 200, 30)]
BACKGROUND = (24, 24, 32)
LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3
CIRCLE, BAR, TRIANGLE = 0, 1, 2
HELD = [(0, CIRCLE, DOWN), (0, TRIANGLE, RIGHT), (1, BAR, UP), (1, TRIANGLE, LEFT),
        (2, CIRCLE, RIGHT), (2, BAR, LEFT), (3, CIRCLE, UP), (3, BAR, DOWN)]
NCOMBOS = len(COLOR_NAMES) * len(SHAPE_NAMES) * len(DIR_NAMES)


def splitmix64(z):
    z = (z + 0x9e3779b97f4a7c15) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def draw(seed, index, j):
    key = splitmix64((seed ^ fnv1a64('toyworld')) & M64)
    return splitmix64((splitmix64((key + index) & M64) + j) & M64)


def held_out(color, shape, direction):
    return (color, shape, direction) in HELD


def combo(k):
    return k // 12, k // 4 % 3, k % 4


def geometry(clip, seed, index, S, F):
    side = 8 * S
    clip['r'] = S * (56 + draw(seed, index, 1) % 32) // 64
    travel = side * (40 + draw(seed, index, 2) % 16) // 100
    v = max(travel // (F - 1), 1)
    travel = v * (F - 1)
    margin = clip['r'] + 8
    room = max(side - 2 * margin - travel, 0)
    along = margin + draw(seed, index, 3) % (room + 1)
    across_room = max(side - 2 * margin, 0)
    across = margin + draw(seed, index, 4) % (across_room + 1)
    if clip['dir'] in (LEFT, UP):
        along += travel
    if clip['dir'] in (LEFT, RIGHT):
        clip['x0'], clip['y0'] = along, across
    else:
        clip['x0'], clip['y0'] = across, along
    clip['v'] = v
    return clip


def clip_at(seed, index, held, S, F):
    """held: 0 training combinations, 1 held-out ones, -1 all."""
    allowed = [k for k in range(NCOMBOS) if held < 0 or int(held_out(*combo(k))) == held]
    k = allowed[draw(seed, index, 0) % len(allowed)]
    c, s, d = combo(k)
    return geometry({'color': c, 'shape': s, 'dir': d}, seed, index, S, F)


def clip_for(color, shape, direction, seed, index, S, F):
    return geometry({'color': color, 'shape': shape, 'dir': direction}, seed, index, S, F)


def render(clip, S, F):
    """(F, S, S, 3) uint8."""
    r = clip['r']
    ux = {LEFT: -1, RIGHT: 1}.get(clip['dir'], 0)
    uy = {UP: -1, DOWN: 1}.get(clip['dir'], 0)
    pts = 2 * np.arange(4) + 1
    px = (8 * np.arange(S)[:, None] + pts[None, :]).reshape(-1)  # (S*4,) sample x coordinates
    fg = np.array(COLORS[clip['color']], np.int64)
    bg = np.array(BACKGROUND, np.int64)
    out = np.empty((F, S, S, 3), np.uint8)
    for f in range(F):
        cx = clip['x0'] + ux * clip['v'] * f
        cy = clip['y0'] + uy * clip['v'] * f
        dx = (px - cx)[None, :]          # (1, S*4)
        dy = (px - cy)[:, None]          # (S*4, 1)
        if clip['shape'] == CIRCLE:
            ins = dx * dx + dy * dy <= r * r
        elif clip['shape'] == BAR:
            ins = (np.abs(dx) <= r) & (2 * np.abs(dy) <= r)
        else:
            ins = (dy <= r) & (8 * np.abs(dx) <= 5 * (dy + r))
        n = ins.reshape(S, 4, S, 4).sum(axis=(1, 3)).astype(np.int64)  # (y, x)
        out[f] = ((bg * (16 - n[..., None]) + fg * n[..., None] + 8) // 16).astype(np.uint8)
    return out


def caption(clip):
    return f"a {COLOR_NAMES[clip['color']]} {SHAPE_NAMES[clip['shape']]} moving {DIR_NAMES[clip['dir']]}"
