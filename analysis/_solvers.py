"""Vectorised root searches of the mean field: the length map's fixed point q*.

Each entry of a grid has its own root; all are searched at once, and entries drop out of
the working set as they finish, so a Python loop runs over iterations, never over entries.
"""

from __future__ import annotations

import math

import numpy as np

from analysis._moments import Q_TINY, Act, log_second_moment, moments

__all__ = ["solve_fixed_point"]

# The march: steps of 4^1, 4^3, 4^6, ... in q away from q0 (q0 * 4^(k(k+1)/2) passes 1e280
# within 30 steps from any q0 in range), then q* = 0 or inf once q leaves [Q_TINY, _Q_MAX].
_LN4 = math.log(4.0)
_MAX_MARCH = 40
_Q_MAX = 1e280
# E[phi^2]/q is within ~1e-6 of its limit beyond here for gelu, silu, softplus, elu, selu:
# if sigma_w2 times that limit is >= 1 the map grows for ever from here (h -> ln of it
# >= 0), whatever the sign of h in rounding on marginal maps (softplus at sigma_w2 = 2).
_Q_TRUST = 1e12
_TOL = 1e-13
_MAX_NEWTON = 200
_POLISH_OK = 1e-7  # a polish step larger than this means the surrogate misled: redo exactly
# sigma_w2 * lim E[phi^2]/q within this of 1 counts as 1 (relu-like tails at sigma_w2 = 2
# would otherwise be decided by the last bit of the limit).
_MARGINAL = 1e-12


def solve_fixed_point(a: Act, sw: np.ndarray, sb: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """q* reached by iterating ``q <- sw E[phi(sqrt(q) z)^2] + sb`` from q0 (flat, validated arrays).

    Positively homogeneous activations use the closed form.  Otherwise the search runs on
    ``h(x) = ln(sw E[phi^2] + sb) - x``, ``x = ln q``: a march from q0 in the direction
    the map moves brackets the first root the iteration meets (the map is non-decreasing
    for the registry's activations), then safeguarded Newton converges inside the
    bracket.  Both run on the interpolated ``ln E[phi^2]`` of
    :func:`analysis._moments.log_second_moment` (quadrature outside its table); a final
    Newton step with the exact quadrature value and the interpolated slope brings the
    ~1e-9 error of the table down to rounding.  Entries where that step is not tiny are
    solved again with quadrature throughout.
    """
    if a.homogeneous:
        gain = sw * a.unit_moments[0]  # E[phi^2] = a q exactly: q' = gain q + sb
        # gain within rounding of 1 is the marginal map: with no bias every q is fixed and
        # the iteration stays at q0; with a bias q grows for ever.
        marginal = np.abs(gain - 1.0) <= _MARGINAL
        with np.errstate(divide="ignore", invalid="ignore"):
            q_star = np.where((gain < 1.0) & ~marginal, sb / (1.0 - gain), np.inf)
        return np.where(marginal & (sb == 0.0), q0, q_star)
    q_star = np.where(sw == 0.0, sb, np.nan)  # no weights: q' = sb whatever q
    todo = np.flatnonzero(sw != 0.0)
    if todo.size == 0:
        return q_star
    sw, sb, x0 = sw[todo], sb[todo], np.log(q0[todo])
    fast = _Residual(a, sw, sb, surrogate=True)
    x, decided = _search(fast, x0)
    # Polish: one Newton step with the exact E[phi^2] and the interpolated slope.
    open_ = np.flatnonzero(np.isnan(decided))
    if open_.size:
        exact = _Residual(a, sw, sb, surrogate=False)
        h_exact = exact.value(x[open_], open_)
        _, dh = fast(x[open_], open_)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = h_exact / dh
        good = np.isfinite(step) & (np.abs(step) <= _POLISH_OK * np.maximum(1.0, np.abs(x[open_])))
        x[open_[good]] -= step[good]
        redo = open_[~good]
        if redo.size:
            x_redo, decided_redo = _search(_Residual(a, sw[redo], sb[redo], surrogate=False), x0[redo])
            x[redo], decided[redo] = x_redo, decided_redo
    q_star[todo] = np.where(np.isnan(decided), np.exp(x), decided)
    return q_star


class _Residual:
    """h(x) = ln(sw E[phi^2](e^x) + sb) - x and dh/dx, for a subset of the entries."""

    def __init__(self, a: Act, sw, sb, *, surrogate: bool):
        self.a, self.sw, self.sb, self.surrogate = a, sw, sb, surrogate

    def _log_second(self, x):
        """ln E[phi^2] and its x-derivative: interpolated where possible, else quadrature."""
        if self.surrogate:
            y, dy = log_second_moment(self.a, x)
        else:
            y = dy = np.full_like(x, np.nan)
        outside = np.isnan(y)
        if outside.any():
            second, slope = moments(self.a, np.exp(x[outside]), ("phi2", "slope"))
            with np.errstate(divide="ignore", invalid="ignore"):
                y[outside], dy[outside] = np.log(second), slope / second
        return y, dy

    def __call__(self, x, idx):
        y, dy = self._log_second(x)
        # ln(sw e^y + sb) in a form that neither overflows nor loses a tiny sb.
        term = np.log(self.sw[idx]) + y
        with np.errstate(divide="ignore"):
            log_f = np.logaddexp(term, np.log(self.sb[idx]))
        return log_f - x, dy * np.exp(term - log_f) - 1.0

    def value(self, x, idx):
        """h(x) with the exact quadrature value of E[phi^2] (phi only, no derivative)."""
        second = moments(self.a, np.exp(x), ("phi2",))[0]
        with np.errstate(divide="ignore"):
            return np.logaddexp(np.log(self.sw[idx]) + np.log(second), np.log(self.sb[idx])) - x


def _search(h, x0):
    """March from x0 to a sign change of h, then safeguarded Newton.  Returns (x, decided).

    ``decided`` is 0 or inf where the march ran out of range (q* = 0 or no finite q*), NaN
    where ``x`` holds the root.
    """
    n = x0.size
    everyone = np.arange(n)
    h0, _ = h(x0, everyone)
    decided = np.full(n, np.nan)
    # Bracket [x_lo, x_hi] with h(x_lo) > 0 > h(x_hi); strict signs, because h == 0 at a
    # march point happens only by rounding on marginal maps (tanh at sigma_w2 = 1).
    x_lo = np.where(h0 > 0.0, x0, -np.inf)
    x_hi = np.where(h0 < 0.0, x0, np.inf)
    x = x0.copy()
    up, down = np.flatnonzero(h0 > 0.0), np.flatnonzero(h0 < 0.0)
    limit = h.a.second_moment_ratio_limit
    for k in range(1, _MAX_MARCH + 1):
        shift = _LN4 * k * (k + 1) / 2.0
        if up.size:
            xs = x0[up] + shift
            hx, _ = h(xs, up)
            q = np.exp(xs)
            scale = np.maximum(1.0, np.maximum(h.sb[up], np.exp(x0[up])))
            gone = ((q > _Q_TRUST * scale) & (h.sw[up] * limit >= 1.0 - _MARGINAL)) | (q > _Q_MAX)
            found = (hx < 0.0) & ~gone
            x_hi[up[found]] = xs[found]
            x_lo[up[~found]] = xs[~found]
            decided[up[gone]] = np.inf
            up = up[~found & ~gone]
        if down.size:
            xs = x0[down] - shift
            hx, _ = h(xs, down)
            found = hx > 0.0
            x_lo[down[found]] = xs[found]
            x_hi[down[~found]] = xs[~found]
            gone = ~found & (np.exp(xs) < Q_TINY)  # the map shrinks every q > 0 towards 0
            decided[down[gone]] = 0.0
            down = down[~found & ~gone]
        if not (up.size or down.size):
            break
    # Newton inside the bracket; a step that leaves it is replaced by bisection.
    active = np.flatnonzero(np.isnan(decided) & (h0 != 0.0))
    x[active] = np.where(np.isfinite(x_lo[active]) & np.isfinite(x_hi[active]),
                         0.5 * (x_lo[active] + x_hi[active]), x0[active])
    for _ in range(_MAX_NEWTON):
        if active.size == 0:
            break
        hx, dh = h(x[active], active)
        pos = hx > 0.0
        x_lo[active[pos]] = x[active[pos]]
        x_hi[active[hx < 0.0]] = x[active[hx < 0.0]]
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = x[active] - hx / dh
        lo, hi = x_lo[active], x_hi[active]
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        new = np.where(inside, newton, 0.5 * (lo + hi))
        moved = np.abs(new - x[active])
        x[active] = new
        done = (hx == 0.0) | (moved <= _TOL * np.maximum(1.0, np.abs(new))) | (hi - lo <= _TOL)
        active = active[~done]
    return x, decided
