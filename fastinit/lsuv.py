"""LSUV, layer-sequential unit-variance initialization (Mishkin & Matas 2016).

The initializer ``"lsuv"`` starts from orthogonal weights (gain 1) and, layer by layer on the
batch the net is run on, divides each layer's weights by the standard deviation of its
pre-activations until their variance is within ``tol`` of 1 (at most ``max_iter``
rescalings).  The result is a per-layer gain ``g_l``: layer ``l``'s weights are exactly
``orthogonal(gain=g_l)`` from the layer's own stream, so the kernels, which draw every
layer's weights again for the backward pass, draw the calibrated weights and nothing needs
storing.  Without data (:func:`fastinit.sample`), ``"lsuv"`` is its orthogonal base.

The calibration pass runs here in float64 NumPy with the kernels' forward rule (bias, batch
or layer norm wherever it sits, activation through :func:`fastinit.activations.apply`, residual branch); the kernel's
own pass then measures the variances it reached (``fwd_var``), which differ from the
calibration's by the net's dtype rounding only.  A layer that cannot reach unit variance (an
input that is exactly zero, a non-finite variance, a bias whose variance alone exceeds
``1 + tol``) is an :class:`LSUVError`, never a silent result.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from fastinit import rng
from fastinit._kernels.draw import draw_weights, weight_substream
from fastinit._kernels.norm import BATCHNORM_EPS
from fastinit._kernels.products import one_blas_thread
from fastinit.activations import apply
from fastinit.initializers import ORTHOGONAL, Draw

__all__ = ["LSUVError", "Calibration", "calibrate", "unit_variance_gain", "gemm_input", "layer_output"]


class LSUVError(ValueError):
    """LSUV could not bring a layer's pre-activation variance within ``tol`` of 1."""


class Calibration(NamedTuple):
    """What LSUV did, per layer (index 0 is layer 1)."""

    scales: tuple  # the gain g_l of layer l's orthogonal weights
    iterations: tuple  # rescalings layer l needed (0: the orthogonal base was already within tol)
    variances: tuple  # Var(z_l) on the batch after the last rescaling (float64 calibration pass)


def calibrate(plan):
    """``plan`` with LSUV's per-layer gains in its draws, and the :class:`Calibration` it made.

    Parameters
    ----------
    plan : fastinit.propagate.Plan
        A plan whose initializer is ``"lsuv"`` (``init_params`` hold ``tol`` and ``max_iter``).

    Returns
    -------
    fastinit.propagate.Plan
        The same plan with ``draws``/``draw_ab`` replaced by ``orthogonal(gain=g_l)`` and
        ``lsuv`` set to the :class:`Calibration`.

    Raises
    ------
    LSUVError
        If a layer does not converge; the message names the layer, the variance reached and
        the fix.
    """
    with one_blas_thread():  # the gains' bits must not depend on the machine's core count
        return _calibrated(plan)


def _calibrated(plan):
    tol, max_iter = plan.init_params["tol"], plan.init_params["max_iter"]
    h0, _ = plan.inputs()
    h = h0.astype(np.float64)
    seed, stream = np.uint64(plan.seed), np.uint64(plan.stream)
    scales, iterations, variances = [], [], []
    for layer in range(1, plan.depth + 1):
        n_in, n_out = int(plan.widths[layer - 1]), int(plan.widths[layer])
        base = np.empty((n_out, n_in))
        draw_weights(base, ORTHOGONAL, 1.0, 0.0, seed, stream, np.int64(weight_substream(layer)))
        product = gemm_input(h, norm=plan.norm, norm_at=plan.norm_at) @ base.T
        bias = np.zeros(n_out)
        if plan.bias_std > 0.0:  # the kernels' bias stream (weight_substream + 1)
            drawn = np.empty(n_out, dtype=plan.dtype)
            rng.fill(drawn, rng.KIND_NORMAL, plan.bias_std, 0.0, plan.seed, plan.stream, weight_substream(layer) + 1)
            bias = drawn.astype(np.float64)
        gain, count, variance = unit_variance_gain(product, bias, tol, max_iter, layer)
        z = gain * product + bias
        scales.append(gain)
        iterations.append(count)
        variances.append(variance)
        h = layer_output(plan.code, plan.param, h, z, alpha=plan.residual, norm=plan.norm, norm_at=plan.norm_at)
    draws = tuple(Draw(ORTHOGONAL, g) for g in scales)
    return dataclasses.replace(plan, draws=draws, draw_ab=np.array([(d.a, d.b) for d in draws], dtype=np.float64),
                               lsuv=Calibration(tuple(scales), tuple(iterations), tuple(variances)))


def unit_variance_gain(product, bias, tol, max_iter, layer):
    """LSUV's loop for one layer: the gain ``g`` with ``|Var(g product + bias) - 1| < tol``.

    Parameters
    ----------
    product : numpy.ndarray
        ``h W^T`` of the layer's base weights on the batch (float64).
    bias : numpy.ndarray or float
        The layer's bias (0 for none).
    tol : float
        Accepted ``|Var(z) - 1|``.
    max_iter : int
        Rescalings allowed.
    layer : int
        The layer's number, for the error message.

    Returns
    -------
    tuple
        ``(gain, rescalings, variance reached)``.

    Raises
    ------
    LSUVError
        If the variance is zero or not finite, or still off after ``max_iter`` rescalings.
    """
    gain, count = 1.0, 0
    while True:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowed input is reported below
            variance = float((gain * product + bias).var())
        if not math.isfinite(variance) or variance == 0.0:
            raise LSUVError(_not_converged(layer, variance, count, tol, max_iter))
        if abs(variance - 1.0) < tol:
            return gain, count, variance
        if count == max_iter:
            raise LSUVError(_not_converged(layer, variance, count, tol, max_iter))
        gain /= math.sqrt(variance)
        count += 1


def gemm_input(h, *, norm=None, norm_at="preact"):
    """What a layer's GEMM multiplies, in float64: ``Norm(h)`` under a pre-norm residual, else ``h``.

    Parameters
    ----------
    h : numpy.ndarray
        The layer's input, ``(batch, units)``.
    norm : {None, "batch", "layer"}, optional
        The layer's norm (None: none).
    norm_at : {"preact", "branch", "output"}, optional
        Where it sits; only ``"branch"`` normalises the GEMM's input, and that is what LSUV
        scales.

    Returns
    -------
    numpy.ndarray
    """
    return _normalize(h, norm) if norm is not None and norm_at == "branch" else h


def layer_output(code, param, h, z, *, batchnorm=False, alpha=None, norm=None, norm_at="preact"):
    """A layer's output from its pre-activation by the kernels' rule, in float64.

    Parameters
    ----------
    code, param : int, float
        The activation's kernel code and parameter.
    h, z : numpy.ndarray
        The layer's input and pre-activation, ``(batch, units)``.
    batchnorm : bool, optional
        Normalise ``z`` over the batch first (eps as the kernels'): ``norm="batch"``.
    alpha : float, optional
        Residual branch scale: ``h + alpha phi``.
    norm : {None, "batch", "layer"}, optional
        The net's norm, as :func:`fastinit.propagate`'s.
    norm_at : {"preact", "branch", "output"}, optional
        Where it sits: before phi, on the branch's input (``z`` was computed from
        ``Norm(h)``; nothing to do here) or on the residual sum.

    Returns
    -------
    numpy.ndarray
    """
    norm = "batch" if batchnorm else norm
    if norm is not None and norm_at == "preact":
        z = _normalize(z, norm)
    flat = np.ascontiguousarray(z, dtype=np.float64).reshape(-1)
    phi, slope = np.empty_like(flat), np.empty_like(flat)
    apply(code, flat, param, phi, slope)
    phi = phi.reshape(z.shape)
    out = h + alpha * phi if alpha else phi
    return _normalize(out, norm) if norm is not None and norm_at == "output" else out


def _normalize(x, norm):
    """Batch norm (each unit over the batch) or layer norm (each example over its units), eps as the kernels'."""
    axis = 0 if norm == "batch" else 1
    return (x - x.mean(axis=axis, keepdims=True)) / np.sqrt(x.var(axis=axis, keepdims=True) + BATCHNORM_EPS)


def _not_converged(layer, variance, count, tol, max_iter) -> str:
    if variance == 0.0:
        why = "its input is exactly zero (every unit of the layer below is dead or zero); LSUV cannot scale it"
    elif not math.isfinite(variance):
        why = "the variance is not finite (the input overflowed)"
    else:
        why = ("the bias's share of Var(z) stays away from 1 whatever the weights' scale: raise tol or max_iter, "
               "or lower bias_std")
    return (f"lsuv did not converge at layer {layer}: Var(z_{layer}) = {variance:.6g} after {count} rescalings "
            f"(tol={tol:g}, max_iter={max_iter}); {why}")
