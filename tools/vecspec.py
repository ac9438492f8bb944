"""Common pieces of the case modules: the Case record, seeded draws, precision helpers."""
from dataclasses import dataclass, field

import numpy as np

# Relative tolerances (max|got-exp| / max|exp|). float64 cases prove the math is the same:
# they are held to 1e-10 unless a case says otherwise.
TOL_F64 = 1e-10


@dataclass
class Case:
    name: str
    op: str
    seed: int
    tol: float
    tensors: list  # [(name, ndarray)]
    meta: dict = field(default_factory=dict)
    level: str = 'full'


def np_dtype(prec):
    return np.float32 if prec == 'f32' else np.float64


def rng(seed):
    return np.random.default_rng(seed)


def normal(r, shape, prec, scale=1.0):
    """Draw in float64, then cast: both precisions see the same numbers."""
    return (r.standard_normal(shape) * scale).astype(np_dtype(prec))


def uniform(r, shape, prec, lo=-1.0, hi=1.0):
    return r.uniform(lo, hi, shape).astype(np_dtype(prec))


def tol(prec, f32_tol):
    return TOL_F64 if prec == 'f64' else f32_tol


def out(x, prec):
    """A JAX result as a numpy array of the case's precision."""
    return np.asarray(x).astype(np_dtype(prec))


def proc(meta, name, shape, prec, seed, scale, offset=0.0):
    """A procedural tensor: returned as an array for JAX, described in `meta` as gen.NAME
    so that the C side regenerates it (ref/procedural.c) and the file need not hold it."""
    import procgen
    meta['gen.' + name] = procgen.describe(shape, seed, scale, offset)
    return procgen.fill(shape, seed, name, scale, offset).astype(np_dtype(prec))
