"""The procedural tensor generator of ref/procedural.c, in numpy (see SPEC.md)."""
import numpy as np

M64 = (1 << 64) - 1


def fnv1a64(name):
    h = 0xcbf29ce484222325
    for b in name.encode():
        h ^= b
        h = (h * 0x100000001b3) & M64
    return h


def _splitmix64(z):
    # z: uint64 ndarray; numpy wraps modulo 2^64
    z = z + np.uint64(0x9e3779b97f4a7c15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


def fill(shape, seed, name, scale, offset=0.0):
    """float64 values v_i = offset + scale * (2 u_i - 1), i in row-major order."""
    n = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over='ignore'):
        key = _splitmix64(np.array([(seed ^ fnv1a64(name)) & M64], dtype=np.uint64))[0]
        bits = _splitmix64(key + np.arange(n, dtype=np.uint64))
    u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return (offset + scale * (2.0 * u - 1.0)).reshape(shape)


def describe(shape, seed, scale, offset=0.0):
    """The `gen.NAME` metadata string that ref/procedural.c parses."""
    return f'{seed} {scale!r} {offset!r} ' + 'x'.join(str(d) for d in shape)
