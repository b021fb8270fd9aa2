"""Measured Jacobian spectra at criticality against free-probability theory (Pennington et al. 2017).

For tanh near its critical line (small bias, so the fixed point q* is small) and for ReLU at
He's scale, the squared singular values of the input-output Jacobian ``dh_L/dh_0`` of one net
(:func:`fastinit.jacobian_singular_values`, one input at the fixed point) with Gaussian and with
orthogonal weights, beside the mean and variance :func:`analysis.theory.jacobian_spectrum`
predicts for each.  Orthogonal tanh nets approach dynamical isometry (every singular value near
1) as q* -> 0; ReLU cannot (its phi' is 0 or 1, so the spectrum's variance grows like depth with
either ensemble).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

import fastinit
from analysis import theory

__all__ = ["SpectrumCase", "CASES", "critical_spectra"]


class SpectrumCase(NamedTuple):
    """One activation at one point of the (sigma_w^2, sigma_b^2) plane."""

    label: str
    activation: str
    sigma_w2: float
    sigma_b2: float


def _tanh_near_criticality(sigma_b2: float = 1e-3) -> SpectrumCase:
    sigma_w2 = float(theory.critical_sigma_w2("tanh", sigma_b2))
    return SpectrumCase(f"tanh, critical (sigma_w^2 = {sigma_w2:.3f}, sigma_b^2 = {sigma_b2:g})", "tanh",
                        sigma_w2, sigma_b2)


CASES = (_tanh_near_criticality(), SpectrumCase("relu, He (sigma_w^2 = 2)", "relu", 2.0, 0.0))


def _weights(ensemble: str, sigma_w2: float) -> tuple[str, dict]:
    """The initializer with ``fan_in Var(W) = sigma_w2`` in the ensemble."""
    if ensemble == "gaussian":
        return "variance_scaling", {"scale": sigma_w2, "mode": "fan_in", "distribution": "normal"}
    return "orthogonal", {"gain": math.sqrt(sigma_w2)}


def critical_spectra(*, depth: int = 32, width: int = 256, seed: int = 0, cases=CASES):
    """Squared singular values of one net per (case, ensemble), and theory's moments.

    The input starts at the fixed point: ``h_0 ~ N(0, (q* - sigma_b^2) / sigma_w^2)`` per unit,
    so that every layer's pre-activations have variance q* (ReLU at He's scale has no finite
    q*: any input variance is kept, and 1 is used).

    Parameters
    ----------
    depth, width : int, optional
        The nets' shape (square layers).
    seed : int, optional
        Root seed of the weights and the input.
    cases : sequence of SpectrumCase, optional
        Which activations and scales.

    Returns
    -------
    measured : pandas.DataFrame
        Long format: ``case``, ``weights`` ("gaussian" or "orthogonal"), ``lambda`` (one squared
        singular value per row).
    predicted : pandas.DataFrame
        One row per (case, weights): ``q_star``, ``mean`` and ``variance`` of the spectrum
        (theory) and the measured ``sample_mean``, ``sample_variance``.
    """
    measured, predicted = [], []
    for case in cases:
        q_star = float(theory.fixed_point(case.activation, case.sigma_w2, case.sigma_b2))
        input_variance = (q_star - case.sigma_b2) / case.sigma_w2 if math.isfinite(q_star) else 1.0
        for ensemble in ("gaussian", "orthogonal"):
            init, params = _weights(ensemble, case.sigma_w2)
            singular = fastinit.jacobian_singular_values(
                init, case.activation, depth=depth, width=width, seed=seed, init_params=params,
                bias_std=math.sqrt(case.sigma_b2), input_std=math.sqrt(input_variance))
            squared = singular.astype(np.float64) ** 2
            moments = theory.jacobian_spectrum(case.activation, depth, case.sigma_w2, case.sigma_b2, weights=ensemble)
            measured.append(pd.DataFrame({"case": case.label, "weights": ensemble, "lambda": squared}))
            predicted.append({"case": case.label, "weights": ensemble, "q_star": q_star,
                              "mean": float(moments.mean), "variance": float(moments.variance),
                              "sample_mean": float(squared.mean()), "sample_variance": float(squared.var())})
    return pd.concat(measured, ignore_index=True), pd.DataFrame(predicted)
