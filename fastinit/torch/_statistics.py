"""One traced layer's statistics, in float64, with ``fastinit.propagate``'s meanings.

Arrays are ``(batch, units)``: the first axis of a layer's output is the batch, the rest
(features, or channels by positions for a convolution) are its units.  A statistic of a
matrix that holds an inf/NaN entry, or of a matrix that was not observed, is NaN (not
known), never 0; an exact zero is 0 with log10 ``-inf``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SATURATION", "layer_statistics"]

# |phi'(z)| below which an entry of a bounded activation counts as saturated (propagate's).
SATURATION = 1e-3


def _finite(x):
    return x is not None and bool(np.isfinite(x).all())


def _variance_pair(x):
    """``(variance, log10 variance)`` over every entry, NaN where not known."""
    if not _finite(x):
        return np.nan, np.nan
    var = float(np.var(x))
    with np.errstate(divide="ignore"):
        return var, float(np.log10(var))


def _second_moment_pair(x):
    if not _finite(x):
        return np.nan, np.nan
    moment = float(np.mean(np.square(x)))
    with np.errstate(divide="ignore"):
        return moment, float(np.log10(moment))


def _pair_cosine(h):
    """Mean cosine of the row pairs (0, 1), (2, 3), ...; NaN without a pair or where a row is 0."""
    if not _finite(h) or h.shape[0] < 2:
        return np.nan
    pairs = h[: 2 * (h.shape[0] // 2)].reshape(-1, 2, h.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.sum(pairs[:, 0] * pairs[:, 1], 1) / np.sqrt(np.sum(pairs[:, 0] ** 2, 1) * np.sum(pairs[:, 1] ** 2, 1))
    return float(cosine.mean())


def _count_nonfinite(x):
    return np.nan if x is None else int(np.count_nonzero(~np.isfinite(x)))


def layer_statistics(z, h, dphi, bounded, grad, wgrad) -> dict:
    """The per-layer columns of ``propagate`` for one traced layer.

    Parameters
    ----------
    z : numpy.ndarray
        float64 ``(batch, units)``: the layer's output (pre-activation, bias included).
    h : numpy.ndarray or None
        ``phi(z)``, the activation module's output; None where no activation is known.
    dphi : numpy.ndarray or None
        ``phi'(z)``; None where no activation is known.
    bounded : bool
        Whether the activation is bounded (only then are entries counted as saturated).
    grad : numpy.ndarray or None
        dL/dz, same shape as ``z``; None where the loss does not reach the layer.
    wgrad : numpy.ndarray or None
        dL/dW of the layer's weight.

    Returns
    -------
    dict
        ``fwd_mean, fwd_var, log10_fwd_var`` (of z over batch and units),
        ``act_second_moment`` and its log10 (E[h^2]), ``grad_var`` and its log10 (of dL/dz),
        ``wgrad_var`` and its log10 (of dL/dW), ``dead_frac`` (units with phi'(z) = 0 for every
        example), ``saturated_frac`` (entries with |phi'(z)| < 1e-3, bounded activations; 0
        otherwise), ``corr`` (mean cosine of the pairs of rows of h), ``fwd_nonfinite``,
        ``grad_nonfinite`` and ``nonfinite`` (their sum: inf/NaN entries of z and dL/dz).
    """
    fwd_var, log10_fwd_var = _variance_pair(z)
    z_known = _finite(z)
    act, log10_act = _second_moment_pair(h)
    grad_var, log10_grad_var = _variance_pair(grad)
    wgrad_var, log10_wgrad_var = _variance_pair(wgrad)
    # phi' of a non-finite z is a limit or NaN, not a measurement (as propagate).
    slopes_known = z_known and dphi is not None
    fwd_nonfinite, grad_nonfinite = _count_nonfinite(z), _count_nonfinite(grad)
    return {
        "fwd_mean": float(np.mean(z)) if z_known else np.nan,
        "fwd_var": fwd_var,
        "log10_fwd_var": log10_fwd_var,
        "act_second_moment": act,
        "log10_act_second_moment": log10_act,
        "grad_var": grad_var,
        "log10_grad_var": log10_grad_var,
        "wgrad_var": wgrad_var,
        "log10_wgrad_var": log10_wgrad_var,
        "dead_frac": float(np.mean(np.all(dphi == 0.0, axis=0))) if slopes_known else np.nan,
        "saturated_frac": (float(np.mean(np.abs(dphi) < SATURATION)) if bounded else 0.0) if slopes_known else np.nan,
        "nonfinite": fwd_nonfinite + grad_nonfinite,
        "corr": _pair_cosine(h),
        "fwd_nonfinite": fwd_nonfinite,
        "grad_nonfinite": grad_nonfinite,
    }
