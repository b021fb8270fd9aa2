"""Finite-width fluctuations (Hanin & Rolnick 2018) and Jacobian spectra (Pennington et al. 2017).

Re-exported by :mod:`analysis.theory`; kept apart because they are about fluctuations
around the mean field, not the mean field itself.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis._moments import act as _act, as_array, moments, moments_at
from analysis._solvers import solve_fixed_point
from fastinit._validation import check_choice, check_int
from fastinit.activations import ACTIVATIONS

__all__ = ["log_variance_spread", "finite_width_drift", "jacobian_spectrum", "SpectrumMoments"]


def _homogeneous(activation, activation_params):
    a = _act(activation, activation_params)
    if not a.homogeneous:
        homogeneous = ", ".join(name for name, record in ACTIVATIONS.items() if record.homogeneous)
        raise ValueError(f"activation must be positively homogeneous ({homogeneous}) for finite-width "
                         f"fluctuations: only then is each layer an independent factor; got {a.name!r}")
    return a


def _excess_kurtosis(a) -> float:
    """c = E[phi(z)^4] / E[phi(z)^2]^2 - 1: each layer's factor has variance c / n (relu 5, linear 2)."""
    second, fourth = moments(a, np.array(1.0), ("phi2", "phi4"))
    return float(fourth / second**2) - 1.0


def finite_width_drift(width, activation="relu", *, activation_params=None) -> np.ndarray:
    """Expected change per layer of ln(second moment) at finite width: ``-c / (2 width)``.

    For one input and Gaussian weights, a layer of a positively homogeneous net multiplies
    ``M = ||h||^2 / n`` by its mean-field factor times an independent average of ``n``
    i.i.d. terms with mean 1 and variance ``c = E[phi^4] / E[phi^2]^2 - 1``; by the delta
    method its logarithm has mean ``-c / (2 n)`` (to O(1/n^2)) and variance ``c / n``.
    relu (He): c = 5, drift -2.5/width; linear: c = 2, drift -1/width; leaky_relu with
    slope s: c = 6 (1 + s^4) / (1 + s^2)^2 - 1.  Divide by ln 10 for log10 units.

    Parameters
    ----------
    width : array_like
        Units of the layer (>= 1).
    activation : str, default "relu"
        A positively homogeneous activation of ``fastinit.ACTIVATIONS``.
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    numpy.ndarray
        Natural-log drift per layer, of ``width``'s shape.

    Examples
    --------
    >>> float(finite_width_drift(250))
    -0.01
    """
    a = _homogeneous(activation, activation_params)
    width = as_array("width", width, minimum=1.0)
    return -_excess_kurtosis(a) / (2.0 * width)


def log_variance_spread(depth, width, *, activation="relu", activation_params=None) -> pd.DataFrame:
    """Mean and variance of ln M_l, the finite-width log second moment, layer by layer.

    Indexing: layer ``l`` has ``n_l`` units; ``M_l = ||h_l||^2 / n_l`` for one input, divided
    by its mean-field value (which it equals in expectation, exactly).  Each layer
    ``k = 1 .. l`` contributes an independent factor averaged over its own ``n_k`` units
    (see :func:`finite_width_drift`), so with ``beta_l = sum_{k=1..l} 1 / n_k``::

        ln M_l ~ Normal(-(c/2) beta_l, c beta_l)        (relu: -(5/2) beta_l, 5 beta_l)

    docs/theory.md section 4's "sum over hidden layers": every layer whose output is averaged
    is hidden here.  For the pre-activation ``z_{l+1}`` (``fastinit.propagate``'s
    ``fwd_var``) use row ``l``: its own spread over the ``n_{l+1}`` units adds a
    ``chi^2_n / n`` factor (mean -1/n, variance 2/n) for one input.  A batch of inputs
    shares the weights, so its statistics fluctuate less, but by less than 1/batch.

    Parameters
    ----------
    depth : int
        Number of layers (>= 1).
    width : int or list of int
        Units per layer, or ``depth`` widths.
    activation : str, default "relu"
        A positively homogeneous activation.
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``width``, ``beta``, ``mean_ln`` and ``var_ln``.
    """
    a = _homogeneous(activation, activation_params)
    depth = check_int("depth", depth, minimum=1)
    if isinstance(width, (list, tuple, np.ndarray)):
        if len(width) != depth:
            raise ValueError(f"width must be an int or a list of depth={depth} widths, got a list of {len(width)}")
        widths = np.array([check_int("width", int(w) if isinstance(w, np.integer) else w, minimum=1)
                           for w in width], dtype=np.int64)
    else:
        widths = np.full(depth, check_int("width", width, minimum=1), dtype=np.int64)
    c = _excess_kurtosis(a)
    beta = np.cumsum(1.0 / widths)
    return pd.DataFrame({"layer": np.arange(1, depth + 1), "width": widths, "beta": beta,
                         "mean_ln": -0.5 * c * beta, "var_ln": c * beta})


class SpectrumMoments(NamedTuple):
    """Mean and variance of the squared singular values of the input-output Jacobian."""

    mean: np.ndarray
    variance: np.ndarray


def jacobian_spectrum(activation, depth, sigma_w2, sigma_b2=0.0, *, weights="gaussian",
                      activation_params=None) -> SpectrumMoments:
    """First two moments of the spectrum of J J^T, J the input-output Jacobian at the fixed point.

    Free probability (Pennington et al. 2017, 2018): each layer ``D_l W_l`` with
    ``D_l = diag(phi'(z_l))`` at ``q*`` contributes ``mu_1 = E[phi'^2]`` and ``mu_2 =
    E[phi'^4]``, and for free factors the normalised variances add, so::

        mean     = chi1^L,   chi1 = sigma_w2 mu_1
        variance = mean^2 * L * (mu_2 / mu_1^2 - 1 - s_1)

    with ``s_1 = -1`` for Gaussian weights (a square Wishart factor has normalised
    variance 1) and ``0`` for orthogonal ones.  On the critical line (chi1 = 1) this is
    docs/theory.md's ``L (mu2/mu1^2 - 1 - s1)``: linear Gaussian nets have variance ``L``,
    orthogonal linear nets 0 (isometry), relu ``2 L`` and ``L``; tanh and erf approach
    isometry with orthogonal weights as q* -> 0.  Square layers, infinite width.

    Parameters
    ----------
    activation : str
        A name of ``fastinit.ACTIVATIONS``.
    depth : array_like
        Number of layers L (>= 0).
    sigma_w2, sigma_b2 : array_like
        Weight and bias variances (>= 0), which set q*.
    weights : {"gaussian", "orthogonal"}, default "gaussian"
        The weight ensemble.
    activation_params : dict, optional
        The activation's parameter.

    Returns
    -------
    SpectrumMoments
        ``(mean, variance)`` of the broadcast shape; NaN where q* is infinite.
    """
    a = _act(activation, activation_params)
    weights = check_choice("weights", weights, ("gaussian", "orthogonal"))
    depth = as_array("depth", depth, minimum=0.0)
    sw = as_array("sigma_w2", sigma_w2, minimum=0.0)
    sb = as_array("sigma_b2", sigma_b2, minimum=0.0)
    sw, sb = np.broadcast_arrays(sw, sb)
    q = solve_fixed_point(a, sw.ravel(), sb.ravel(), np.ones(sw.size)).reshape(sw.shape)
    mu1, mu2 = moments_at(a, q, ("dphi2", "dphi4"))  # q* = 0 or inf: the limits
    s1 = -1.0 if weights == "gaussian" else 0.0
    mean = (sw * mu1) ** depth
    variance = mean**2 * depth * (mu2 / mu1**2 - 1.0 - s1)
    nan = np.isinf(q)
    return SpectrumMoments(np.where(nan, np.nan, mean), np.where(nan, np.nan, variance))
