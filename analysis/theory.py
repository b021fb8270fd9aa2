"""Theory of signal propagation at initialization: rule-of-thumb factors, mean field, predictions.

What this module computes (docs/theory.md, the project's theory notes, sections 2-5), for every
activation of ``fastinit.ACTIVATIONS`` and every initializer of ``fastinit.INITIALIZERS``:

* Gaussian moments E[phi(sqrt(q) z)^k], E[phi'(sqrt(q) z)^k] (:func:`gaussian_moment`), by
  the quadrature of :mod:`analysis._gauss`, or closed forms for the piecewise-linear family
  (linear, relu, leaky_relu) and erf;
* per-layer factors of the seed notes' rules with unequal widths (:func:`layer_factors`);
* the mean field of Poole et al. (2016) and Schoenholz et al. (2017): :func:`length_map`,
  :func:`fixed_point`, :func:`chi1`, :func:`correlation_map`,
  :func:`correlation_fixed_point`, :func:`depth_scales`, :func:`critical_sigma_w2`,
  :func:`critical_line`;
* expected per-layer variance curves of a given net (:func:`predict`), the mean-field twin of
  ``fastinit.propagate``;
* finite-width fluctuations (:func:`log_variance_spread`, :func:`finite_width_drift`) and
  Jacobian spectra (:func:`jacobian_spectrum`).

The public names live here; the work is split by concern into private modules:
:mod:`analysis._gauss` (quadrature), :mod:`analysis._moments` (activation moments, closed
forms, validation), :mod:`analysis._rules` (Var(W) rules), :mod:`analysis._solvers` (root
searches), :mod:`analysis._predict` and :mod:`analysis._finite_width`.

Every numeric argument broadcasts (NumPy rules) and results are float64 arrays of the
broadcast shape (0-d for scalars).  Conventions: weights have ``Var(W) = sigma_w2 / fan_in``,
biases ``Var(b) = sigma_b2``, ``z ~ N(0, 1)``; ``q`` is a pre-activation variance.  This
module reads the registries and never runs the kernels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from analysis._finite_width import SpectrumMoments, finite_width_drift, jacobian_spectrum, log_variance_spread
from analysis._moments import (
    Q_TINY, Act, act as _act, as_array as _array, check_method as _method, cross, moments, moments_at,
)
from analysis._predict import predict
from analysis._rules import RULES, rule_variance, weight_rule
from analysis._solvers import solve_fixed_point
from fastinit._validation import check_choice

__all__ = [
    "MOMENTS", "RULES", "LayerFactors", "DepthScales", "SpectrumMoments", "gaussian_moment", "layer_factors",
    "length_map", "fixed_point", "chi1", "correlation_map", "correlation_fixed_point", "depth_scales",
    "critical_sigma_w2", "critical_line", "predict", "log_variance_spread", "finite_width_drift", "jacobian_spectrum",
]

MOMENTS = ("phi", "phi2", "dphi2", "phi4", "dphi4")
"""Moments :func:`gaussian_moment` computes: E[phi], E[phi^2], E[phi'^2], E[phi^4], E[phi'^4]."""

# d/dq E[phi^2] = E[phi phi' z] / sqrt(q) cancels phi(0) phi'(0) E[z] = 0 in rounding:
# evaluating slopes no closer to 0 than this keeps the error ~1e-16 / sqrt(1e-8).
_Q_SLOPE_MIN = 1e-8
_ROOT_TOL = 1e-13  # relative, in q, for the critical-line solve


def gaussian_moment(activation, q, moment="phi2", *, activation_params=None, method="auto") -> np.ndarray:
    """E[f(sqrt(q) z)], z ~ N(0, 1), for f = phi, phi^2, phi'^2, phi^4 or phi'^4.

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS`` (or an alias).
    q : array_like
        Pre-activation variances, finite and >= 0.
    moment : {"phi", "phi2", "dphi2", "phi4", "dphi4"}, default "phi2"
        Which integrand (see :data:`MOMENTS`).
    activation_params : dict, optional
        The activation's parameter, e.g. ``{"slope": 0.2}``.
    method : {"auto", "quadrature", "closed_form"}, default "auto"
        ``"auto"`` uses a closed form where one exists (linear, relu, leaky_relu; erf except
        phi4), quadrature otherwise; ``"closed_form"`` raises where there is none.

    Returns
    -------
    numpy.ndarray
        Array of ``q``'s shape.  At ``q = 0`` the point value ``f(0)``, with the kernels'
        subgradients (``relu'(0) = 0``), so ``gaussian_moment("relu", 0, "dphi2") == 0``
        while the limit ``q -> 0+`` is 1/2.

    Notes
    -----
    Quadrature: graded Gauss-Legendre split at 0, 72 to 432 evaluations for
    ``1e-4 <= q <= 1e8``, relative error < 1e-14 there (see :mod:`analysis._gauss`).

    Examples
    --------
    >>> float(gaussian_moment("relu", 2.0, "phi2"))
    1.0
    """
    act = _act(activation, activation_params)
    q = _array("q", q, minimum=0.0)
    moment = check_choice("moment", moment, MOMENTS)
    return moments(act, q, (moment,), _method(method))[0]


# ----------------------------------------------------------------------------- rule factors
class LayerFactors(NamedTuple):
    """Per-layer multipliers of the pre-activation variance (forward) and gradient variance (backward)."""

    forward: np.ndarray
    backward: np.ndarray


def _fans(name, value) -> np.ndarray:
    arr = _array(name, value, minimum=1.0)
    if (arr != np.round(arr)).any():
        raise ValueError(f"{name} must be whole numbers >= 1, got {arr[arr != np.round(arr)].flat[0]!r}")
    return arr


def layer_factors(weight_variance, activation, fan_in, fan_out, *, q=1.0, init_params=None,
                  activation_params=None, method="auto") -> LayerFactors:
    """Rule-of-thumb factors of one layer: forward on Var(z), backward on Var(dL/dz).

    For a layer that takes pre-activations ``z`` of variance ``q`` through ``phi`` and a
    weight ``W`` of shape ``(fan_out, fan_in)`` (zero bias), docs/theory.md section 2 gives::

        forward  = fan_in  * Var(W) * E[phi(z)^2] / q      (Var z_next / Var z)
        backward = fan_out * Var(W) * E[phi'(z)^2]         (Var dL/dz / Var dL/dz_next)

    The backward pass reaches ``dL/dh = W^T dL/dz_next``, a sum over the layer's
    ``fan_out`` outputs, hence its fan.  For positively homogeneous activations both factors
    are independent of ``q``; for the others the rule of thumb is the factor *at the layer's
    input variance* ``q`` (they change as ``q`` moves along the net; see :func:`predict`).

    Parameters
    ----------
    weight_variance : str or array_like
        One of :data:`RULES` (``"1/fan_in"``, ``"2/(fan_in+fan_out)"``, ``"2/fan_in"``), a
        name of ``fastinit.INITIALIZERS`` (its registered variance rule, with
        ``init_params``), or Var(W) itself (>= 0, broadcast).
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    fan_in, fan_out : array_like of int
        Input and output units of the layer (>= 1, broadcast).
    q : array_like, default 1.0
        Variance of the layer's input pre-activations (> 0).
    init_params, activation_params : dict, optional
        Parameters of the initializer (e.g. ``{"nonlinearity": "relu"}``) and activation.
    method : {"auto", "quadrature", "closed_form"}
        How the Gaussian moments are computed (see :func:`gaussian_moment`).

    Returns
    -------
    LayerFactors
        ``(forward, backward)`` arrays of the broadcast shape.

    Examples
    --------
    >>> f = layer_factors("2/(fan_in+fan_out)", "linear", 64, 256)
    >>> float(f.forward), float(f.backward)
    (0.4, 1.6)
    """
    rule = weight_rule(weight_variance, init_params)
    act = _act(activation, activation_params)
    fan_in, fan_out = _fans("fan_in", fan_in), _fans("fan_out", fan_out)
    q = _array("q", q, minimum=0.0, exclusive=True)
    variance = rule_variance(rule, fan_in, fan_out)
    second, slope2 = moments(act, q, ("phi2", "dphi2"), _method(method))
    return LayerFactors(fan_in * variance * second / q, fan_out * variance * slope2)


# ----------------------------------------------------------------------------- mean field
def _mean_field_args(activation, sigma_w2, sigma_b2, activation_params):
    act = _act(activation, activation_params)
    sw = _array("sigma_w2", sigma_w2, minimum=0.0)
    sb = _array("sigma_b2", sigma_b2, minimum=0.0)
    return act, sw, sb


def length_map(q, activation, sigma_w2, sigma_b2=0.0, *, activation_params=None, method="auto") -> np.ndarray:
    """One layer of the length map, ``q' = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``.

    Parameters
    ----------
    q : array_like
        Pre-activation variance of the layer below (>= 0).
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    sigma_w2, sigma_b2 : array_like
        ``Var(W) = sigma_w2 / fan_in`` and ``Var(b) = sigma_b2`` (>= 0).
    activation_params : dict, optional
        The activation's parameter.
    method : {"auto", "quadrature", "closed_form"}
        See :func:`gaussian_moment`.

    Returns
    -------
    numpy.ndarray
        ``q'`` of the broadcast shape.

    Examples
    --------
    >>> float(length_map(3.0, "relu", 2.0, 0.5))   # relu: (sigma_w2 / 2) q + sigma_b2
    3.5
    """
    act, sw, sb = _mean_field_args(activation, sigma_w2, sigma_b2, activation_params)
    q = _array("q", q, minimum=0.0)
    return sw * moments(act, q, ("phi2",), _method(method))[0] + sb


def fixed_point(activation, sigma_w2, sigma_b2=0.0, *, q0=1.0, activation_params=None) -> np.ndarray:
    """The fixed point q* of the length map reached from ``q0``.

    Iterating ``q <- sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2`` from ``q0`` converges, for
    the registry's activations (whose map is non-decreasing in q), to the first fixed point
    in the direction the map moves; this function finds that one by bracketing it (steps of
    4, 4^3, 4^6, ... in q) and safeguarded Newton in ``ln q`` (relative accuracy ~1e-13).

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    sigma_w2, sigma_b2 : array_like
        Weight and bias variances (>= 0), broadcast together.
    q0 : array_like, default 1.0
        Starting variance (> 0), e.g. the first layer's ``sigma_w2 * input_var + sigma_b2``.
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    numpy.ndarray
        q* of the broadcast shape.  ``0`` where the map shrinks every q > 0 towards 0 (tanh
        or erf with ``sigma_b2 = 0`` and ``sigma_w2 <= 1``, where the decay is only
        algebraic at ``sigma_w2 = 1``: q_l ~ 1/(2 l) for tanh); ``inf`` where there is no
        finite fixed point above q0 (relu with ``sigma_w2 > 2``; gelu, elu ... when
        ``sigma_w2 * lim E[phi^2]/q >= 1``).  Positively homogeneous activations use the
        closed form ``q* = sigma_b2 / (1 - sigma_w2 E[phi(z)^2])``; at the marginal
        ``sigma_w2 E[phi(z)^2] = 1`` with no bias every q is fixed and q* = q0.

    Examples
    --------
    >>> float(fixed_point("relu", 1.0, 0.5))   # q = q/2 + 0.5
    1.0
    """
    act, sw, sb = _mean_field_args(activation, sigma_w2, sigma_b2, activation_params)
    q0 = _array("q0", q0, minimum=0.0, exclusive=True)
    sw, sb, q0 = np.broadcast_arrays(sw, sb, q0)
    return solve_fixed_point(act, sw.ravel(), sb.ravel(), q0.ravel()).reshape(sw.shape)


def chi1(activation, sigma_w2, sigma_b2=0.0, *, q=None, activation_params=None) -> np.ndarray:
    """chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2], the per-layer gradient-variance factor at q*.

    ``chi1 < 1``: ordered phase, gradients vanish like ``chi1^L``; ``> 1``: chaotic, they
    explode; ``= 1``: the critical line (edge of chaos).

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    sigma_w2, sigma_b2 : array_like
        Weight and bias variances (>= 0).
    q : array_like, optional
        Evaluate at this variance instead of the fixed point (``fixed_point(...)`` from
        ``q0 = 1``).
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    numpy.ndarray
        chi_1 of the broadcast shape; at q* = 0 the limit q -> 0+ (relu: ``sigma_w2 / 2``),
        at q* = inf the limit q -> inf, NaN where q* is undefined.

    Examples
    --------
    >>> float(chi1("relu", 2.0))
    1.0
    """
    act, sw, sb = _mean_field_args(activation, sigma_w2, sigma_b2, activation_params)
    if q is None:
        sw, sb = np.broadcast_arrays(sw, sb)
        q = solve_fixed_point(act, sw.ravel(), sb.ravel(), np.ones(sw.size)).reshape(sw.shape)
    else:
        q = _array("q", q, minimum=0.0)
    slope2 = moments_at(act, q, ("dphi2",))[0]
    return np.where(np.isnan(q), np.nan, sw * slope2)


def correlation_map(c, q, activation, sigma_w2, sigma_b2=0.0, *, activation_params=None,
                    method="auto") -> np.ndarray:
    """One layer of the correlation map of two inputs with equal pre-activation variance q.

    ``c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q'`` with ``u1 = sqrt(q) z1``,
    ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)`` and ``q' = length_map(q)``, the next layer's
    variance (``q' = q`` at the fixed point, Poole et al.'s form).

    Parameters
    ----------
    c : array_like
        Correlation of the two pre-activations, in [-1, 1].
    q : array_like
        Their variance (>= 0).
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    sigma_w2, sigma_b2 : array_like
        Weight and bias variances (>= 0).
    activation_params : dict, optional
        The activation's parameter.
    method : {"auto", "quadrature", "closed_form"}
        Closed forms exist for linear, relu, leaky_relu (arc-cosine kernel) and erf;
        otherwise a 2-D polar Gauss rule (:func:`analysis._gauss.expect2`; ~5000 points per
        entry, relative error < 1e-10 for q <= 3, ~1e-8 at q = 10).

    Returns
    -------
    numpy.ndarray
        ``c'`` of the broadcast shape; NaN where ``q' = 0``.

    Examples
    --------
    >>> round(float(correlation_map(0.0, 1.0, "relu", 2.0)), 12)   # arc-cosine: 1/pi
    0.318309886184
    """
    act, sw, sb = _mean_field_args(activation, sigma_w2, sigma_b2, activation_params)
    c = _array("c", c, minimum=-1.0, maximum=1.0)
    q = _array("q", q, minimum=0.0)
    method = _method(method)
    numerator = sw * cross(act, q, c, "phi", method) + sb
    denominator = sw * moments(act, q, ("phi2",), method)[0] + sb
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0.0, numerator / denominator, np.nan)


def correlation_fixed_point(activation, sigma_w2, sigma_b2=0.0, *, activation_params=None) -> np.ndarray:
    """The stable fixed point c* of the correlation map at q*.

    In the ordered phase (``chi1 <= 1``) every pair of inputs converges, c* = 1.  In the
    chaotic phase c = 1 is unstable and the map, increasing and convex in c with
    ``c'(0) >= 0``, has one more fixed point in [0, 1), found by bisection (45 steps, ~3e-14).
    Each step is a 2-D quadrature (~0.1 ms per entry), so this is meant for curves and
    modest grids.

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    sigma_w2, sigma_b2 : array_like
        Weight and bias variances (>= 0).
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    numpy.ndarray
        c* of the broadcast shape; NaN where q* is infinite or undefined.
    """
    act, sw, sb = _mean_field_args(activation, sigma_w2, sigma_b2, activation_params)
    sw, sb = np.broadcast_arrays(sw, sb)
    _, c_star = _fixed_points(act, sw.ravel(), sb.ravel())
    return c_star.reshape(sw.shape)


def _fixed_points(act: Act, sw, sb):
    """(q*, c*) for flat validated arrays; c* by bisection where the phase is chaotic."""
    q = solve_fixed_point(act, sw, sb, np.ones(sw.size))
    slope2 = moments_at(act, q, ("dphi2",))[0]
    c_star = np.where(np.isfinite(q), 1.0, np.nan)
    chaotic = np.flatnonzero(np.isfinite(q) & (q > 0.0) & (sw * slope2 > 1.0))
    if chaotic.size:
        qc, swc, sbc = q[chaotic], sw[chaotic], sb[chaotic]
        lo, hi = np.zeros(chaotic.size), np.ones(chaotic.size)
        # c'(c) - c is >= 0 at c = 0 and < 0 just below 1 (slope chi1 > 1 there).
        for _ in range(45):
            mid = 0.5 * (lo + hi)
            above = (swc * cross(act, qc, mid, "phi") + sbc) / qc >= mid
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        c_star[chaotic] = 0.5 * (lo + hi)
    return q, c_star


class DepthScales(NamedTuple):
    """Depth scales of Schoenholz et al. (2017): lengths over which q and c forget the input."""

    xi_q: np.ndarray
    xi_c: np.ndarray


def depth_scales(activation, sigma_w2, sigma_b2=0.0, *, activation_params=None) -> DepthScales:
    """Depth scales ``xi_q`` and ``xi_c`` at the fixed point: deviations decay like exp(-l / xi).

    ``xi_q = -1 / ln(d q'/d q at q*)`` with ``dq'/dq = sigma_w2 E[phi phi' z] / sqrt(q)``
    (equal to ``chi1 + sigma_w2 E[phi'' phi]`` by Stein's lemma), and
    ``xi_c = -1 / ln(chi_c)`` with ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at ``(q*, c*)``:
    ``chi_c = chi1`` in the ordered phase (c* = 1), so there ``xi_c = -1 / ln(chi1)``.  Both
    diverge (inf) on the critical line; nets train only to depths of a few ``xi_c``.

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    sigma_w2, sigma_b2 : array_like
        Weight and bias variances (>= 0).
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    DepthScales
        ``(xi_q, xi_c)`` arrays of the broadcast shape; NaN where q* is infinite.
    """
    act, sw, sb = _mean_field_args(activation, sigma_w2, sigma_b2, activation_params)
    sw, sb = np.broadcast_arrays(sw, sb)
    shape = sw.shape
    sw, sb = sw.ravel(), sb.ravel()
    q, c_star = _fixed_points(act, sw, sb)
    finite = np.isfinite(q)
    # dq'/dq = sigma_w2 E[phi phi' z] / sqrt(q); at q* = 0 (so phi(0) = 0) its limit is chi1.
    # With phi(0) != 0 the quotient cancels in rounding near 0, hence the floor.
    floor = _Q_SLOPE_MIN if act.point("phi") != 0.0 else 0.0
    q_eval = np.where(finite & (q > 0.0), np.maximum(q, floor), 1.0)
    d_length = sw * moments(act, q_eval, ("slope",))[0] / q_eval
    chi = sw * moments_at(act, q, ("dphi2",))[0]
    d_length = np.where(q == 0.0, chi, d_length)
    # Ordered phase: c* = 1 and chi_c = chi1 exactly (the 1-D moment, not the 2-D rule).
    ordered = c_star == 1.0
    chi_c = np.where(ordered, chi, sw * cross(act, np.where(finite, q, 1.0), np.where(ordered | ~finite, 0.0, c_star),
                                              "dphi"))
    with np.errstate(divide="ignore"):
        xi_q = np.where(d_length >= 1.0, np.inf, -1.0 / np.log(d_length))
        xi_c = np.where(chi_c >= 1.0, np.inf, -1.0 / np.log(chi_c))
    return DepthScales(np.where(finite, xi_q, np.nan).reshape(shape), np.where(finite, xi_c, np.nan).reshape(shape))


def critical_line(activation, q, *, activation_params=None) -> tuple[np.ndarray, np.ndarray]:
    """The critical line parametrised by its fixed point q*: ``(sigma_w2, sigma_b2)``.

    ``sigma_w2 = 1 / E[phi'(sqrt(q) z)^2]`` makes chi1 = 1 at q, and
    ``sigma_b2 = q - sigma_w2 E[phi(sqrt(q) z)^2]`` makes q the fixed point.  Points with
    ``sigma_b2 < 0`` are not realisable (returned as computed, so the caller can mask them).

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    q : array_like
        Fixed points q* (> 0).
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    tuple of numpy.ndarray
        ``(sigma_w2, sigma_b2)`` of ``q``'s shape.
    """
    act = _act(activation, activation_params)
    q = _array("q", q, minimum=0.0, exclusive=True)
    second, slope2 = moments(act, q, ("phi2", "dphi2"))
    sigma_w2 = 1.0 / slope2
    return sigma_w2, q - sigma_w2 * second


_CRITICAL_SCAN = np.concatenate([[Q_TINY], np.logspace(-12.0, 12.0, 193)])


def critical_sigma_w2(activation, sigma_b2=0.0, *, activation_params=None) -> np.ndarray:
    """The weight variance on the critical line (chi1 = 1 at q*) for a given bias variance.

    Solves ``critical_line(q)[1] = sigma_b2`` for q* (scan over ``1e-12 <= q* <= 1e12``,
    then regula falsi, Illinois variant, to ~1e-13) and returns ``critical_line(q*)[0]``;
    where the parametrised ``sigma_b2(q*)`` crosses the target more than once, the
    smallest q* wins.  Positively homogeneous activations have
    ``sigma_w2 = 1 / E[phi'(z)^2]`` for every ``sigma_b2`` (relu: 2), though their q* is
    infinite when ``sigma_b2 > 0``.

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    sigma_b2 : array_like, default 0.0
        Bias variances (>= 0).
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    numpy.ndarray
        sigma_w2 of ``sigma_b2``'s shape; NaN where no q* in range is critical.

    Examples
    --------
    >>> float(critical_sigma_w2("tanh", 0.0))   # q* -> 0, sigma_w2 = 1 / tanh'(0)^2
    1.0
    """
    act = _act(activation, activation_params)
    target = _array("sigma_b2", sigma_b2, minimum=0.0)
    if act.homogeneous:
        return np.full(target.shape, 1.0 / act.unit_moments[1])
    flat = target.ravel()

    def bias(x):
        second, slope2 = moments(act, np.exp(x), ("phi2", "dphi2"))
        return np.exp(x) - second / slope2

    grid_x = np.log(_CRITICAL_SCAN)
    grid_b = bias(grid_x)
    above = grid_b[None, :] >= flat[:, None]
    first = np.argmax(above, axis=1)
    has = above.any(axis=1)
    q_star = np.full(flat.shape, np.nan)
    q_star[has & (first == 0)] = _CRITICAL_SCAN[0]
    active = np.flatnonzero(has & (first > 0))
    if active.size:
        a, b = grid_x[first[active] - 1], grid_x[first[active]]
        fa, fb = grid_b[first[active] - 1] - flat[active], grid_b[first[active]] - flat[active]
        for _ in range(100):
            x = b - fb * (b - a) / (fb - fa)
            x = np.where(np.isfinite(x), x, 0.5 * (a + b))
            fx = bias(x) - flat[active]
            same = np.sign(fx) == np.sign(fb)
            # Illinois: halve the stale end's value so the bracket shrinks from both sides.
            fa = np.where(same, fa * 0.5, fb)
            a = np.where(same, a, b)
            b, fb = x, fx
            if np.all(np.abs(b - a) <= _ROOT_TOL * np.maximum(1.0, np.abs(b))) or np.all(fb == 0.0):
                break
        q_star[active] = np.exp(b)
    sigma_w2 = np.full(flat.shape, np.nan)
    ok = np.isfinite(q_star)
    sigma_w2[ok] = 1.0 / moments(act, q_star[ok], ("dphi2",))[0]
    return sigma_w2.reshape(target.shape)
