"""mavref's portable Gaussian noise generator (ref/noise.c), in numpy. See SPEC.md section 8.7.

Every step is one IEEE-754 binary64 operation (+, -, *, /, sqrt, floor, frexp), evaluated in
the same order as the C code, so both give the same bits on any platform.
"""
import numpy as np

from procgen import _splitmix64, fnv1a64, M64

LN2 = float.fromhex('0x1.62e42fefa39efp-1')
SQRT_HALF = float.fromhex('0x1.6a09e667f3bcdp-1')
HALF_PI = float.fromhex('0x1.921fb54442d18p+0')
TWO_M53 = 1.0 / 9007199254740992.0
LOG_TERMS = 12   # atanh series: s * (c0 + c1 z + ... + c11 z^11), c_j = 1/(2j+1)
TRIG_TERMS = 11  # sin: a * sum_j (-1)^j a^2j / (2j+1)!,  cos: sum_j (-1)^j a^2j / (2j)!


def _log_coefs():
    return [1.0 / float(2 * j + 1) for j in range(LOG_TERMS)]


def _trig_coefs():
    # fact[n] = n! (exact in double for n <= 22); coefficient = (+-1) / n!
    fact = [1.0]
    for k in range(1, 2 * TRIG_TERMS + 1):
        fact.append(fact[-1] * float(k))
    sin_c = [(-1.0 if j % 2 else 1.0) / fact[2 * j + 1] for j in range(TRIG_TERMS)]
    cos_c = [(-1.0 if j % 2 else 1.0) / fact[2 * j] for j in range(TRIG_TERMS)]
    return sin_c, cos_c


def log01(x):
    """ln x for x in (0, 1], float64 array."""
    m, e = np.frexp(x)                       # x = m 2^e, m in [0.5, 1)
    e = e.astype(np.float64)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)            # m in [sqrt(1/2), sqrt(2))
    e = np.where(low, e - 1.0, e)
    f = m - 1.0
    d = m + 1.0
    s = f / d
    z = s * s
    c = _log_coefs()
    p = np.full_like(x, c[-1])
    for j in range(LOG_TERMS - 2, -1, -1):
        p = p * z
        p = p + c[j]
    t = s * p
    lnm = t + t                              # ln m = 2 atanh(s)
    el = e * LN2
    return el + lnm


def sincos_turn(u):
    """(cos 2 pi u, sin 2 pi u) for u in [0, 1), float64 arrays."""
    v = u * 4.0                              # quarter turns, exact
    k = np.floor(v + 0.5)
    w = v - k                                # in [-1/2, 1/2]
    a = w * HALF_PI
    a2 = a * a
    sin_c, cos_c = _trig_coefs()
    ps = np.full_like(u, sin_c[-1])
    pc = np.full_like(u, cos_c[-1])
    for j in range(TRIG_TERMS - 2, -1, -1):
        ps = ps * a2
        ps = ps + sin_c[j]
        pc = pc * a2
        pc = pc + cos_c[j]
    sa = a * ps
    ca = pc
    q = k.astype(np.int64) % 4
    cos_t = np.select([q == 0, q == 1, q == 2, q == 3], [ca, -sa, -ca, sa])
    sin_t = np.select([q == 0, q == 1, q == 2, q == 3], [sa, ca, -sa, -ca])
    return cos_t, sin_t


def normal(n, seed, stream):
    """n standard normal float64 values, element i of the generator's stream."""
    pairs = (n + 1) // 2
    with np.errstate(over='ignore'):
        key = _splitmix64(np.array([(seed ^ fnv1a64(stream)) & M64], dtype=np.uint64))[0]
        idx = np.arange(pairs, dtype=np.uint64) * np.uint64(2)
        a = _splitmix64(key + idx)
        b = _splitmix64(key + idx + np.uint64(1))
    u1 = ((a >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * TWO_M53   # (0, 1]
    u2 = (b >> np.uint64(11)).astype(np.float64) * TWO_M53                    # [0, 1)
    L = log01(u1)
    r = np.sqrt(L * -2.0)
    c, s = sincos_turn(u2)
    z = np.empty(2 * pairs)
    z[0::2] = r * c
    z[1::2] = r * s
    return z[:n]
