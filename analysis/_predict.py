"""Mean-field variance curves of a given net: the theory twin of ``fastinit.propagate``.

Re-exported by :mod:`analysis.theory`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from analysis._moments import Act, act as _act, moments
from analysis._predict_norm import normed_curves
from analysis._rules import rule_variance, weight_rule
from fastinit._validation import NORM_SITES, NORMS, check_choice, check_int, check_real

__all__ = ["predict"]

_LN10 = math.log(10.0)


def _log(x: float) -> float:
    return math.log(x) if x > 0.0 else -math.inf


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


# Inside [1e-200, 1e200] the moments come from quadrature; outside, from power laws
# E ~ q^p fitted at the edge, where the asymptotic regime holds to ~1e-100.
_LOG_Q_EDGES = (math.log(1e-200), math.log(1e200))


@functools.cache
def _tails(a: Act):
    """(ln q_edge, ln E[phi^2], p, ln E[phi'^2], p') at the low and the high edge."""
    out = []
    for log_edge, inward in zip(_LOG_Q_EDGES, (2.0, -2.0)):
        q = np.exp([log_edge, log_edge + inward])
        second, slope2 = np.log(moments(a, q, ("phi2", "dphi2")))
        out.append((log_edge, second[0], (second[0] - second[1]) / -inward,
                    slope2[0], (slope2[0] - slope2[1]) / -inward))
    return tuple(out)


def _log_second(a: Act, log_q: float) -> float:
    """ln E[phi(sqrt(q) z)^2] at q = exp(log_q), for any log_q including -inf (q = 0)."""
    if log_q == -math.inf:
        return _log(a.point("phi2"))
    if a.homogeneous:
        return math.log(a.unit_moments[0]) + log_q
    (lo_edge, lo_v, lo_p, _, _), (hi_edge, hi_v, hi_p, _, _) = _tails(a)
    if log_q < lo_edge:
        return lo_v + lo_p * (log_q - lo_edge)
    if log_q > hi_edge:
        return hi_v + hi_p * (log_q - hi_edge)
    return _log(float(moments(a, np.array(math.exp(log_q)), ("phi2",))[0]))


def _log_slope2(a: Act, log_q: np.ndarray) -> np.ndarray:
    """ln E[phi'(sqrt(q) z)^2] for an array of ln q (vectorised; -inf means q = 0)."""
    if a.homogeneous:
        out = np.full(log_q.shape, math.log(a.unit_moments[1]))
    else:
        (lo_edge, _, _, lo_d, lo_p), (hi_edge, _, _, hi_d, hi_p) = _tails(a)
        inside = (log_q >= lo_edge) & (log_q <= hi_edge)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(log_q < lo_edge, lo_d + lo_p * (log_q - lo_edge), hi_d + hi_p * (log_q - hi_edge))
            out[inside] = np.log(moments(a, np.exp(log_q[inside]), ("dphi2",))[0])
    return np.where(log_q == -math.inf, _log(a.point("dphi2")), out)


def _widths(depth, width) -> np.ndarray:
    if isinstance(width, (list, tuple, np.ndarray)):
        if len(width) != depth:
            raise ValueError(f"width must be an int or a list of depth={depth} widths, got a list of {len(width)}")
        widths = [check_int("width", int(w) if isinstance(w, np.integer) else w, minimum=1) for w in width]
    else:
        widths = [check_int("width", width, minimum=1)] * depth
    return np.array([widths[0], *widths], dtype=np.int64)  # the input has width[0] units


def predict(init, activation, depth, width, *, batch=256, bias_std=0.0, input_std=1.0, init_params=None,
            activation_params=None, residual=None, norm=None, norm_at="preact") -> pd.DataFrame:
    """Mean-field forward and backward variance curves of the net ``fastinit.propagate`` runs.

    Layer ``l`` computes ``z_l = h_{l-1} W_l^T + b_l`` and ``h_l = phi(z_l)`` (or
    ``h_l = h_{l-1} + alpha phi(z_l)`` with ``residual=alpha``); ``h_0 ~ N(0, input_std^2)``;
    the backward pass starts from ``dL/dh_L ~ N(0, 1)``.  With ``Var(W_l)`` from the
    initializer's registered variance rule at layer l's fans ``(n_{l-1}, n_l)``:

    * forward: ``q_l = n_{l-1} Var(W_l) m_{l-1} + bias_std^2`` with ``m_0 = input_std^2`` and
      ``m_l = E[phi(sqrt(q_l) z)^2]`` (residual: ``m_l = m_{l-1} + alpha^2 E[phi^2]``);
    * backward: ``g_L = 1``, ``Var(dL/dz_l) = E[phi'^2](q_l) g_l`` (times ``alpha^2``),
      ``g_{l-1} = n_l Var(W_l) Var(dL/dz_l)`` (residual: ``g_l (1 + alpha^2 n_l Var(W_l) E[phi'^2])``),

    the infinite-width limit, with the usual gradient-independence assumption backward.
    Everything is carried in log space, so curves stay exact at any depth (relu + Xavier
    at depth 10,000 is 10^-3010): homogeneous activations use their closed forms, the others
    quadrature at each layer (power-law tails beyond 1e+-200, exact there to ~1e-100).

    Parameters
    ----------
    init : str or float
        A name of ``fastinit.INITIALIZERS`` (parameters in ``init_params``), one of
        :data:`RULES`, or Var(W) itself.
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    depth : int
        Number of layers (>= 1).
    width : int or list of int
        Units per layer, or ``depth`` widths (layer ``l`` maps ``width[l-2]`` to
        ``width[l-1]`` units; the input has ``width[0]`` units), as ``fastinit.propagate``.
    batch : int, default 256
        Accepted so a cell's parameters pass straight through; the infinite-width,
        infinite-batch prediction does not depend on it.
    bias_std, input_std : float
        Bias std (>= 0) and input std (> 0).
    init_params, activation_params : dict, optional
        Parameters of the initializer and activation.
    residual : float, optional
        Branch scale ``alpha`` (> 0); needs equal widths.
    norm : {None, "batch", "layer"}, optional
    norm_at : {"preact", "branch", "output"}, default "preact"
        As ``fastinit.propagate``'s (``"branch"``, ``"output"`` need ``residual``); the
        recursions are derived in :mod:`analysis._predict_norm`: the pre-norm stream's
        ``E[h_l^2]`` grows linearly with depth for a zero-mean phi (quadratically for relu,
        whose mean drifts), post-norm holds it at 1.  Batch norm's backward is not modelled
        (``log10_grad_var`` NaN).

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer``, ``width``, ``log10_fwd_var`` (Var z_l),
        ``log10_act_second_moment`` (E[h_l^2]), ``log10_grad_var`` (Var dL/dz_l).
        Zero-variance initializers (``zeros``, and ``constant``, whose registered variance is
        0) give ``-inf`` where no variance survives: mean field describes random weights,
        while a constant weight makes every unit of a layer identical, not zero.

    Examples
    --------
    >>> df = predict("he_normal", "relu", 1000, 256, init_params={"nonlinearity": "relu"})
    >>> df.log10_fwd_var.round(9).unique().tolist()   # flat at Var(z) = 2: h_0 ~ N(0, 1) has no relu
    [0.301029996]
    >>> round(float(predict("xavier_normal", "relu", 10_000, 64).log10_fwd_var.iloc[-1]), 3)
    -3009.999
    """
    rule = weight_rule(init, init_params, "init")
    act = _act(activation, activation_params)
    depth = check_int("depth", depth, minimum=1)
    widths = _widths(depth, width)
    check_int("batch", batch, minimum=1)
    bias_std = check_real("bias_std", bias_std, minimum=0.0)
    input_std = check_real("input_std", input_std, minimum=0.0, exclusive_minimum=True)
    if residual is not None:
        residual = check_real("residual", residual, minimum=0.0, exclusive_minimum=True)
        if len(set(widths.tolist())) != 1:
            raise ValueError("residual connections need equal widths; got a width list with different values "
                             "(use an int width or drop residual)")
    fan_in, fan_out = widths[:-1].astype(np.float64), widths[1:].astype(np.float64)
    variance = rule_variance(rule, fan_in, fan_out)
    if norm is not None or norm_at != "preact":
        norm, norm_at = _check_norm(norm, norm_at, residual)
        log_q, log_m, log_grad = normed_curves(act, fan_in * variance, fan_out * variance, bias_std, input_std,
                                               residual, norm, norm_at)
        return _frame(depth, widths, log_q, log_m, log_grad)
    with np.errstate(divide="ignore"):
        log_fwd_gain = np.log(fan_in * variance)
        log_bwd_gain = np.log(fan_out * variance)
        log_bias = math.log(bias_std**2) if bias_std > 0 else -math.inf
    log_alpha2 = 2.0 * math.log(residual) if residual is not None else 0.0
    log_q, log_m = np.empty(depth), np.empty(depth)
    gains = log_fwd_gain.tolist()
    same_layers = len(set(gains)) == 1 and residual is None
    m = 2.0 * math.log(input_std)  # ln E[h_0^2]
    previous = math.nan
    for layer, gain in enumerate(gains):
        q = _logaddexp(gain + m, log_bias)
        if same_layers and q == previous:
            # Converged: with equal layers every later layer repeats this one exactly.
            log_q[layer:], log_m[layer:] = q, m
            break
        log_v = _log_second(act, q)
        m = _logaddexp(m, log_alpha2 + log_v) if residual is not None else log_v
        log_q[layer], log_m[layer], previous = q, m, q
    log_d = _log_slope2(act, log_q)
    # Backward from the top: ln Var(dL/dz_l) = ln g_l + ln E[phi'^2] (+ ln alpha^2).
    if residual is None:
        step = log_bwd_gain + log_d  # ln(g_{l-1} / g_l)
    else:
        step = np.logaddexp(0.0, log_alpha2 + log_bwd_gain + log_d)
    log_g = np.concatenate([np.cumsum(step[:0:-1])[::-1], [0.0]])  # ln g_l, l = 1..L
    with np.errstate(invalid="ignore"):
        log_grad = log_g + log_d + log_alpha2
    return _frame(depth, widths, log_q, log_m, log_grad)


def _check_norm(norm, norm_at, residual):
    """``(norm, norm_at)`` checked as ``fastinit.propagate`` checks them."""
    if norm is None:
        raise ValueError(f"norm_at={norm_at!r} needs a norm; give norm='layer' or norm='batch'")
    norm = check_choice("norm", norm, NORMS)
    norm_at = check_choice("norm_at", norm_at, NORM_SITES)
    if norm_at != "preact" and residual is None:
        raise ValueError(f"norm_at={norm_at!r} is a residual stream's norm and needs residual=alpha; give "
                         "residual (e.g. residual=1.0) or norm_at='preact'")
    return norm, norm_at


def _frame(depth, widths, log_q, log_m, log_grad) -> pd.DataFrame:
    return pd.DataFrame({
        "layer": np.arange(1, depth + 1),
        "width": widths[1:],
        "log10_fwd_var": log_q / _LN10,
        "log10_act_second_moment": log_m / _LN10,
        "log10_grad_var": log_grad / _LN10,
    })
