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


# ------------------------------------------------------------------ propagation twin

BN_EPS = 1e-5  # batch and layer norm alike (PyTorch's default)
NORM_AXIS = {"batch": 0, "layer": 1}  # batch norm: a unit over the batch; layer norm: an example over its units


def normalize(x, norm):
    """``norm`` ("batch" or "layer") of ``x`` in float64: gamma 1, beta 0, biased variance, eps BN_EPS."""
    axis = NORM_AXIS[norm]
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(axis, keepdims=True)) / np.sqrt(x.var(axis, keepdims=True) + BN_EPS)


def normalize_backward(x, grad_u, norm):
    """dL/dx from dL/du for ``u = normalize(x, norm)``, in float64 (the textbook formula)."""
    axis = NORM_AXIS[norm]
    x, g = np.asarray(x, dtype=np.float64), np.asarray(grad_u, dtype=np.float64)
    std = np.sqrt(x.var(axis, keepdims=True) + BN_EPS)
    xhat = (x - x.mean(axis, keepdims=True)) / std
    return (g - g.mean(axis, keepdims=True) - xhat * (g * xhat).mean(axis, keepdims=True)) / std


def _known(x, statistic):
    """``statistic`` of ``x`` in float64, or NaN if ``x`` has a non-finite entry (not known)."""
    x = np.asarray(x, dtype=np.float64)
    return statistic(x) if np.isfinite(x).all() else np.nan


def propagate(plan, h0, grad_top, *, in_dtype=False):
    """Twin of ``fastinit.propagate`` in true units (no rescaling), same weights.

    In float64 by default; with ``in_dtype`` every matrix of the net (z, h, phi', the
    gradients) is held in the plan's dtype, as the hardware would (``numerics="raw"``),
    so that float32 overflow and underflow happen where they would.  Statistics are
    float64 and NaN where their matrix has a non-finite entry.

    Weights and biases are drawn from the same streams as the kernel (the samplers are
    tested on their own); everything else is plain NumPy, written from the definitions.
    Returns a dict of per-layer arrays named as the DataFrame columns.
    """
    with np.errstate(all="ignore"):  # inf and NaN are data here
        return _propagate(plan, h0, grad_top, np.dtype(plan.dtype) if in_dtype else np.dtype(np.float64))


def _propagate(plan, h0, grad_top, work):
    from fastinit.activations import ACTIVATIONS, USER_ACTIVATIONS
    from fastinit._kernels import draw as K
    from fastinit.initializers import fill as fill_weights
    from fastinit.rng import fill as fill_stream

    # A registered activation is known by its kernel's address (its param), not its shared code.
    act = next(a for a in (*ACTIVATIONS.values(), *USER_ACTIVATIONS.values())
               if a.code == plan.code and (a.module is None or a.default_param == plan.param))
    phi = lambda x: np.asarray(act.phi_np(x, plan.param), dtype=np.float64)  # noqa: E731
    dphi = lambda x: np.asarray(act.dphi_np(x, plan.param), dtype=np.float64)  # noqa: E731
    widths, depth = plan.widths, plan.depth
    alpha = plan.residual
    branch = alpha if alpha is not None else 1.0
    norm, norm_at = plan.norm, plan.norm_at
    at = norm_at if norm is not None else None  # where a norm sits, None without one
    h = h0.astype(work)
    cols = {k: [] for k in ("fwd_mean", "fwd_var", "act_second_moment", "dead_frac", "saturated_frac", "corr",
                            "fwd_nonfinite")}
    saved = []
    for layer in range(1, depth + 1):
        w = np.empty((widths[layer], widths[layer - 1]), dtype=plan.dtype)
        fill_weights(w, plan.draws[layer - 1], seed=plan.seed, stream=plan.stream, substream=K.weight_substream(layer))
        w = w.astype(work)
        x = normalize(h, norm).astype(work) if at == "branch" else h  # pre-norm: the branch sees Norm(h)
        z = x @ w.T
        if plan.bias_std > 0:
            b = np.empty(widths[layer], dtype=plan.dtype)
            fill_stream(b, 0, plan.bias_std, 0.0, plan.seed, plan.stream, K.weight_substream(layer) + 1)
            z = z + b.astype(work)
        a = normalize(z, norm).astype(work) if at == "preact" else z
        h_new = (branch * phi(a) + (h if alpha is not None else 0.0)).astype(work)
        s = h_new  # post-norm: the residual sum, normalised into the layer's output
        if at == "output":
            h_new = normalize(s, norm).astype(work)
        d = dphi(a).astype(work)
        z_known = np.isfinite(z).all()
        cols["fwd_mean"].append(_known(z, np.mean))
        cols["fwd_var"].append(_known(z, np.var))
        cols["act_second_moment"].append(_known(h_new, lambda x: np.mean(x**2)))
        cols["dead_frac"].append(np.mean(np.all(d == 0.0, axis=0)) if z_known else np.nan)
        cols["saturated_frac"].append((np.mean(np.abs(d) < 1e-3) if act.bounded else 0.0) if z_known else np.nan)
        h64 = h_new.astype(np.float64)
        pairs = h64[0 : 2 * (len(h64) // 2)].reshape(-1, 2, h64.shape[1])
        cos = np.sum(pairs[:, 0] * pairs[:, 1], 1) / np.sqrt(np.sum(pairs[:, 0] ** 2, 1) * np.sum(pairs[:, 1] ** 2, 1))
        cols["corr"].append(cos.mean() if np.isfinite(h64).all() and cos.size else np.nan)  # one example: no pair
        cols["fwd_nonfinite"].append(np.count_nonzero(~np.isfinite(z)))
        saved.append((h, x, w, z, a, d, s))
        h = h_new
    grad = grad_top.astype(work)
    grad_var, wgrad_var, grad_nonfinite = np.empty(depth), np.empty(depth), np.empty(depth)
    for layer in range(depth, 0, -1):
        h_in, x, w, z, a, d, s = saved[layer - 1]
        g_s = normalize_backward(s, grad, norm).astype(work) if at == "output" else grad  # dL/d(residual sum)
        g_a = g_s * work.type(branch) * d
        g_z = normalize_backward(z, g_a, norm).astype(work) if at == "preact" else g_a
        grad_var[layer - 1] = _known(g_z, np.var)
        wgrad_var[layer - 1] = _known(g_z.T @ x, np.var)
        grad_nonfinite[layer - 1] = np.count_nonzero(~np.isfinite(g_z))
        g_x = g_z @ w
        g_h = normalize_backward(h_in, g_x, norm).astype(work) if at == "branch" else g_x
        grad = g_h + (g_s if alpha is not None else 0.0)
    out = {k: np.array(v, dtype=np.float64) for k, v in cols.items()}
    out["grad_var"], out["wgrad_var"], out["grad_nonfinite"] = grad_var, wgrad_var, grad_nonfinite
    out["nonfinite"] = out["fwd_nonfinite"] + grad_nonfinite
    return out
