"""Gaussian moments of the registry's activations: closed forms where they exist, quadrature otherwise.

Shared by :mod:`analysis.theory` and :mod:`analysis._finite_width`, with the boundary
validation they both use.  The closed forms (piecewise-linear family and erf) are carried by
the registry's records (``Activation.closed_forms``, :mod:`fastinit._closed_forms`); an
activation without them is integrated by quadrature.  Tests hold every closed form against
quadrature and against formulas written independently in the tests.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from analysis import _gauss
from fastinit._validation import check_choice, check_params
from fastinit.activations import Activation, get_activation

METHODS = ("auto", "quadrature", "closed_form")
# Mean-field quantities at q* = 0 or q* = inf are the limits q -> 0+ and q -> inf; the
# quadrature takes them at these q (one-sided slopes of kinked activations at 0+; the
# asymptotic regime is reached to ~1e-100 at 1e200).
Q_TINY = 1e-280
Q_HUGE = 1e200


# ----------------------------------------------------------------------------- validation
def as_array(name, value, *, minimum=None, exclusive=False, maximum=None) -> np.ndarray:
    """Convert ``value`` to a float64 array, checking every entry is finite and in range.

    Raises
    ------
    TypeError
        If ``value`` is not numeric.
    ValueError
        Naming ``name``, the rule and the first offending entry.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or an array of them, got {value!r}") from None
    bad = ~np.isfinite(arr)
    parts = ["finite"]
    if minimum is not None:
        bad |= (arr <= minimum) if exclusive else (arr < minimum)
        parts.append(f"{'>' if exclusive else '>='} {minimum:g}")
    if maximum is not None:
        bad |= arr > maximum
        parts.append(f"<= {maximum:g}")
    if bad.any():
        first = float(arr[bad].flat[0])
        where = f" (at index {tuple(np.argwhere(bad)[0].tolist())})" if arr.ndim else ""
        raise ValueError(f"{name} must be {' and '.join(parts)}, got {first!r}{where}")
    return arr


def check_method(method) -> str:
    """Validate ``method`` against :data:`METHODS`."""
    return check_choice("method", method, METHODS)


@functools.cache
def _bound(name: str, param: float) -> "Act":
    return Act(get_activation(name), param)


def act(activation, activation_params=None) -> "Act":
    """The validated activation with its parameter bound (cached, so limits are computed once)."""
    spec = get_activation(activation)
    param = spec.resolve_param(**check_params("activation_params", activation_params))
    return _bound(spec.name, param)


# ----------------------------------------------------------------------------- activations
_INTEGRANDS = ("phi", "phi2", "dphi2", "phi4", "dphi4")


class Act:
    """An activation with its parameter bound, its closed forms and its limits."""

    def __init__(self, spec: Activation, param: float):
        self.spec = spec
        self.name = spec.name
        self.param = param
        self.homogeneous = spec.homogeneous
        self._arg = param if spec.param_name else None
        self._closed = spec.closed_forms
        self._points: dict[str, float] = {}
        self._limits: dict[tuple[str, bool], float] = {}

    def phi(self, u):
        return self.spec.phi_np(u, self._arg)

    def dphi(self, u):
        return self.spec.dphi_np(u, self._arg)

    def point(self, which: str) -> float:
        """The moment at q = 0, ``f(0)``, with the kernels' subgradients (relu'(0) = 0)."""
        if which not in self._points:
            zero = np.zeros(1)
            value = {"phi": self.phi, "phi2": lambda u: self.phi(u) ** 2, "dphi2": lambda u: self.dphi(u) ** 2,
                     "phi4": lambda u: self.phi(u) ** 4, "dphi4": lambda u: self.dphi(u) ** 4}[which](zero)
            self._points[which] = float(value[0])
        return self._points[which]

    def closed(self, which: str, q):
        """The moment in closed form for q > 0, or None where there is none."""
        return None if self._closed is None else self._closed.moment(which, q, self.param)

    def closed2(self, which: str, q, c):
        """E[phi(u1) phi(u2)] ("phi") or E[phi'(u1) phi'(u2)] ("dphi") in closed form, or None."""
        return None if self._closed is None else self._closed.cross(which, q, c, self.param)

    @functools.cached_property
    def unit_moments(self) -> tuple[float, float]:
        """E[phi(z)^2] and E[phi'(z)^2] at q = 1: the whole story for homogeneous activations."""
        second, slope2 = moments(self, np.array(1.0), ("phi2", "dphi2"))
        return float(second), float(slope2)

    def limit(self, which: str, infinite: bool) -> float:
        """The moment in the limit q -> inf (``infinite``) or q -> 0+, computed once."""
        key = (which, infinite)
        if key not in self._limits:
            q = np.array(Q_HUGE if infinite else Q_TINY)
            self._limits[key] = float(moments(self, q, (which,))[0])
        return self._limits[key]

    @functools.cached_property
    def second_moment_ratio_limit(self) -> float:
        """lim E[phi(sqrt(q) z)^2] / q as q -> inf (0 for bounded activations)."""
        return self.limit("phi2", True) / Q_HUGE


def moments(a: Act, q, which, method: str = "auto") -> list[np.ndarray]:
    """E over z ~ N(0, 1) of each named integrand at ``u = sqrt(q) z`` (unvalidated).

    ``which`` names entries of ``("phi", "phi2", "dphi2", "phi4", "dphi4")`` plus
    ``"slope"``, ``sqrt(q) E[phi phi' z] = q d/dq E[phi^2]``.  Quadrature integrands share
    one evaluation of phi and phi' at the nodes.  At ``q = 0`` every moment is the point
    value (closed forms, valid for q > 0, are overridden there).
    """
    q = np.asarray(q, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    if method != "quadrature":
        for name in which:
            value = a.closed("phi2" if name == "slope" else name, q)
            if name == "slope" and not a.homogeneous:
                value = None  # q d/dq E[phi^2] = E[phi^2] only for the homogeneous family
            if value is None and method == "closed_form":
                raise ValueError(f"method='closed_form': no closed form of {name} for activation {a.name!r}; "
                                 f"use method='quadrature' or 'auto'")
            if value is not None:
                out[name] = np.where(q > 0.0, value, a.point(name) if name != "slope" else 0.0)
    rest = [name for name in which if name not in out]
    if rest:
        need_phi = any(name in ("phi", "phi2", "phi4", "slope") for name in rest)
        need_dphi = any(name in ("dphi2", "dphi4", "slope") for name in rest)

        def integrands(u, z):
            p = a.phi(u) if need_phi else None
            d = a.dphi(u) if need_dphi else None
            return tuple(_integrand(name, p, d, z) for name in rest)

        for name, value in zip(rest, _gauss.expect(integrands, q)):
            out[name] = value * np.sqrt(q) if name == "slope" else value
    return [out[name] for name in which]


def moments_at(a: Act, q, which) -> list[np.ndarray]:
    """Moments at fixed points q*, where q* = 0 and q* = inf mean the limits q -> 0+ and q -> inf.

    The limits are per-activation constants, computed once (the quadrature at q = 1e200
    needs ~8000 nodes); NaN q gives NaN.
    """
    q = np.asarray(q, dtype=np.float64)
    regular = np.isfinite(q) & (q > 0.0)
    values = moments(a, np.where(regular, q, 1.0), which) if regular.any() else [np.ones(q.shape)] * len(which)
    out = []
    for name, value in zip(which, values):
        value = np.where(q == 0.0, a.limit(name, False), value)
        value = np.where(np.isinf(q), a.limit(name, True), value)
        out.append(np.where(np.isnan(q), np.nan, value))
    return out


def _integrand(name, p, d, z):
    if name == "phi":
        return p
    if name == "phi2":
        return p * p
    if name == "dphi2":
        return d * d
    if name == "phi4":
        return (p * p) ** 2
    if name == "dphi4":
        return (d * d) ** 2
    return p * d * z  # "slope"


def cross(a: Act, q, c, which: str, method: str = "auto") -> np.ndarray:
    """E[phi(u1) phi(u2)] (``which="phi"``) or E[phi'(u1) phi'(u2)] (``"dphi"``), unvalidated."""
    q, c = np.broadcast_arrays(np.asarray(q, dtype=np.float64), np.asarray(c, dtype=np.float64))
    if method != "quadrature":
        value = a.closed2(which, q, c)
        if value is not None:
            return np.where(q > 0.0, value, a.point("phi2" if which == "phi" else "dphi2"))
        if method == "closed_form":
            raise ValueError(f"method='closed_form': no closed form of the correlation map for activation "
                             f"{a.name!r}; use method='quadrature' or 'auto'")
    fn = a.phi if which == "phi" else a.dphi
    return _gauss.gauss_expect2(fn, fn, q, c)


# ----------------------------------------------------------------------------- surrogate
# ln E[phi(sqrt(q) z)^2] against x = ln q, tabulated with its slope for cubic Hermite
# interpolation: step 0.05 in x gives ~1e-8 relative error, which one exact Newton step of
# the callers then squares away.  Root searches run on it instead of on quadrature.
_TABLE_X0, _TABLE_X1, _TABLE_STEP = math.log(1e-12), math.log(1e16), 0.05


@functools.cache
def _log_second_moment_table(a: Act):
    x = np.arange(_TABLE_X0, _TABLE_X1 + 0.5 * _TABLE_STEP, _TABLE_STEP)
    second, slope = moments(a, np.exp(x), ("phi2", "slope"))
    if not (np.all(second > 0.0) and np.all(np.isfinite(slope))):
        return None
    return np.log(second), slope / second


def log_second_moment(a: Act, x):
    """Interpolated ``y = ln E[phi^2]`` and ``dy/dx`` at ``x = ln q``; NaN outside the table."""
    table = _log_second_moment_table(a)
    x = np.asarray(x, dtype=np.float64)
    if table is None:
        return np.full_like(x, np.nan), np.full_like(x, np.nan)
    y, m = table
    pos = (x - _TABLE_X0) / _TABLE_STEP
    inside = (pos >= 0.0) & (pos <= y.size - 1)
    i = np.clip(np.floor(np.where(inside, pos, 0.0)).astype(np.int64), 0, y.size - 2)
    t = np.where(inside, pos, 0.0) - i
    h = _TABLE_STEP
    t2, t3 = t * t, t * t * t
    value = ((2 * t3 - 3 * t2 + 1) * y[i] + (t3 - 2 * t2 + t) * h * m[i] + (3 * t2 - 2 * t3) * y[i + 1]
             + (t3 - t2) * h * m[i + 1])
    deriv = ((6 * t2 - 6 * t) * y[i] / h + (3 * t2 - 4 * t + 1) * m[i] + (6 * t - 6 * t2) * y[i + 1] / h
             + (3 * t2 - 2 * t) * m[i + 1])
    return np.where(inside, value, np.nan), np.where(inside, deriv, np.nan)
