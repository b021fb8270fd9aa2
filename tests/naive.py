"""Plain-NumPy / pure-Python reference twins of fastinit's kernels.

Written from the published algorithms, never by calling the code under test, and
slow on purpose: loops where the kernels vectorise, Python ints where they mask.
"""

from __future__ import annotations

import math

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32(counter, key, rounds=10):
    """Philox4x32 (Salmon et al. 2011) with Python integers: bump the key before rounds 2..R."""
    c0, c1, c2, c3 = (int(c) for c in counter)
    k0, k1 = (int(k) for k in key)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c3 ^ k1) & MASK, p0 & MASK
    return c0, c1, c2, c3


def ziggurat_layers(n_layers=256, r=3.6541528853610088, v=4.92867323399e-3):
    """Layer edges x_0 = 0 < x_1 < ... < x_{N-1} = r by the recursion x_{i-1} = f^-1(f(x_i) + v/x_i)."""
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    edges = [r]
    for _ in range(n_layers - 2):
        x = edges[-1]
        edges.append(math.sqrt(-2.0 * math.log(f(x) + v / x)))
    edges.append(0.0)
    return np.array(edges[::-1])  # ascending, edges[0] = 0


class _Chain:
    """A sample's spill chain: Philox applied repeatedly from (j, substream | 2**31, stream)."""

    def __init__(self, j, substream, stream, key):
        self.block = (j, substream | 2**31, stream & MASK, stream >> 32)
        self.key = key

    def next(self):
        self.block = philox4x32(self.block, self.key)
        return self.block


def _unit(word):
    return (word + 0.5) * 2.0**-32


class Ziggurat:
    """Marsaglia & Tsang's 256-layer ziggurat with a fixed bit layout (as NumPy's)."""

    def __init__(self, mantissa_bits):
        self.bits = mantissa_bits
        self.m1 = 2.0**mantissa_bits
        self.x = ziggurat_layers()  # x[i] = right edge of layer i (i >= 1); layer 0 is the base
        r, v = self.x[-1], 4.92867323399e-3
        self.q = v / math.exp(-0.5 * r * r)  # base strip width including the tail

    def propose(self, word):
        idx = word & 0xFF
        negative = (word >> 8) & 1
        m = word >> (9 if self.bits == 23 else 12)
        # Layer i >= 1 spans [0, x_i] and lies under the curve up to x_{i-1}; the base
        # layer has width q and lies under the curve up to r.  As Marsaglia & Tsang, the
        # fast test compares integers: m < floor(inner / width * 2**bits).
        width, inner = (self.q, self.x[-1]) if idx == 0 else (self.x[idx], self.x[idx - 1])
        x = m * (width / self.m1)
        return idx, negative, x, m < int(inner / width * self.m1)

    def sample(self, word, chain):
        idx, negative, x, accepted = self.propose(word)
        while not accepted:
            b = chain.next()
            r = self.x[-1]
            if idx == 0:
                t = -math.log(_unit(b[2])) / r
                y = -math.log(_unit(b[3]))
                if y + y > t * t:
                    x, accepted = r + t, True
                continue
            f = lambda s: math.exp(-0.5 * s * s)  # noqa: E731
            lo, hi = f(self.x[idx]), f(self.x[idx - 1])
            if lo + _unit(b[2]) * (hi - lo) < f(x):
                accepted = True
                continue
            word = b[0] if self.bits == 23 else (b[1] << 32) | b[0]
            idx, negative, x, accepted = self.propose(word)
        return -x if negative else x


def fill(n, kind, a, b, seed, stream, substream, dtype):
    """Twin of ``fastinit.rng.fill`` on a 1-D array of ``n`` samples.

    kind 0: a * N(0, 1); 1: U[a, b); 2: a * N(0, 1) conditioned on |z| <= b.
    """
    wide = np.dtype(dtype) == np.float64
    key = (seed & MASK, seed >> 32)
    zig = Ziggurat(52 if wide else 23)
    out = np.empty(n, dtype=np.float64)
    per_block = 2 if wide else 4
    for j in range(n):
        block = philox4x32((j // per_block, substream, stream & MASK, stream >> 32), key)
        if wide:
            lo, hi = block[2 * (j % 2)], block[2 * (j % 2) + 1]
            word = (hi << 32) | lo
        else:
            lo, hi = block[j % 4], 0
            word = lo
        if kind == 1:
            u = ((hi >> 5) * 67108864 + (lo >> 6)) * 2.0**-53 if wide else (lo >> 8) * 2.0**-24
            out[j] = a + (b - a) * u
            continue
        chain = _Chain(j, substream, stream, key)
        z = zig.sample(word, chain)
        if kind == 2:
            while abs(z) > b:
                c = chain.next()
                if b < 1.0:
                    x = b * (2.0 * _unit(c[0]) - 1.0)
                    if _unit(c[1]) < math.exp(-0.5 * x * x):
                        z = x
                else:
                    w = c[0] if not wide else (c[1] << 32) | c[0]
                    z = zig.sample(w, chain)
        out[j] = a * z
    return out.astype(dtype)
