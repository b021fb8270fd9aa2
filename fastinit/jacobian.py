"""The input-output Jacobian of a deep net at one input, and its singular values.

``J = dh_L / dh_0 = prod_l J_l`` with ``J_l = D_l W_l`` (``D_l = diag(phi'(z_l))``), or
``I + alpha D_l W_l`` with a residual branch of scale ``alpha``: the matrix whose
spectrum dynamical isometry is about (Saxe et al. 2014; Pennington et al. 2017).  The
net is ``propagate``'s: the same validation, the same input (substream 0 of the cell's
stream) and the same weights and biases, drawn from the same streams.

The product is formed layer by layer in float64 with BLAS, rescaled to a largest entry
of 1 after each layer and the scale carried in a float64 log, so it neither overflows
nor underflows on the way; only the returned singular values are rounded to float64's
range (``inf`` above 1.8e308, 0 below its smallest subnormal: data, not errors).
"""

from __future__ import annotations

import math

import numpy as np

from fastinit import rng
from fastinit._kernels.draw import weight_substream
from fastinit._kernels.products import one_blas_thread
from fastinit.activations import apply
from fastinit.initializers import fill
from fastinit.propagate import Plan

__all__ = ["jacobian_singular_values"]


def jacobian_singular_values(init: str, activation: str, *, depth: int, width, seed: int = 0, dtype="float64",
                             **options) -> np.ndarray:
    """Singular values of ``dh_L / dh_0`` at one N(0, 1) input, largest first.

    Parameters
    ----------
    init, activation : str
        Names of :data:`fastinit.INITIALIZERS` and :data:`fastinit.ACTIVATIONS`.
    depth : int
        Number of layers, >= 1.
    width : int or list of int
        Units per layer, as :func:`fastinit.propagate`.
    seed : int, default 0
        Root seed; with ``stream`` it fixes the input and every weight, so the net is the
        one ``propagate(..., batch=1, seed=seed)`` runs.
    dtype : {"float64", "float32"}, default "float64"
        The net's dtype for the forward pass (weights, z_l, h_l); the Jacobian itself is
        accumulated in float64.
    **options
        ``propagate``'s options that shape the net: ``bias_std``, ``residual``,
        ``input_std``, ``init_params``, ``activation_params``, ``stream``.  Batch norm is
        refused (it normalises over a batch, and this is one input), and so is layer norm
        (not modelled here).

    Returns
    -------
    numpy.ndarray
        ``min(width[0], width[-1])`` float64 singular values, in decreasing order.

    Raises
    ------
    ValueError, TypeError
        As :func:`fastinit.propagate` for invalid arguments; ``batchnorm=True`` raises
        ValueError naming ``batchnorm``, ``norm="layer"`` one naming ``norm``.

    Examples
    --------
    >>> s = jacobian_singular_values("orthogonal", "linear", depth=50, width=64)
    >>> bool(np.allclose(s, 1.0))  # an orthogonal linear net is an isometry
    True
    """
    plan = Plan.build(init, activation, depth=depth, width=width, batch=1, seed=seed, dtype=dtype, **options)
    if plan.norm is not None:  # batch norm was refused above (batch=1)
        raise ValueError(f"jacobian_singular_values does not model norm={plan.norm!r} (its Jacobian is not "
                         "I + alpha D W); drop norm")
    with one_blas_thread():  # the same bits on any machine; an oversubscribed BLAS is also slower here
        return _singular_values(plan)


def _singular_values(plan):
    h = plan.inputs()[0][0]  # the input propagate(..., batch=1) draws
    widths, alpha = plan.widths, plan.residual
    jacobian = np.eye(int(widths[0]))
    log_scale = 0.0  # the true Jacobian is exp(log_scale) * jacobian
    for layer in range(1, plan.depth + 1):
        w = np.empty((int(widths[layer]), int(widths[layer - 1])), dtype=plan.dtype)
        fill(w, plan.draws[layer - 1], seed=plan.seed, stream=plan.stream, substream=weight_substream(layer))
        z = w @ h
        if plan.bias_std > 0.0:
            bias = np.empty(int(widths[layer]), dtype=plan.dtype)
            rng.fill(bias, rng.KIND_NORMAL, plan.bias_std, 0.0, plan.seed, plan.stream, weight_substream(layer) + 1)
            z = z + bias
        phi, dphi = np.empty_like(z), np.empty(z.shape)
        apply(plan.code, z, plan.param, phi, dphi)  # the kernels' activation, NaN rule included
        branch = (dphi[:, None] * w) @ jacobian  # D_l W_l J
        if alpha is None:
            jacobian, h = branch, phi
        else:  # h_l = h_{l-1} + alpha phi(z_l): J_l = I + alpha D_l W_l
            jacobian = jacobian + alpha * branch
            h = (h.astype(np.float64) + alpha * phi.astype(np.float64)).astype(plan.dtype)  # rounded once, as the kernel
        largest = float(np.max(np.abs(jacobian)))
        if largest > 0.0 and math.isfinite(largest):
            jacobian /= largest
            log_scale += math.log(largest)
    values = np.linalg.svd(jacobian, compute_uv=False)
    with np.errstate(over="ignore", under="ignore"):
        return values * np.exp(log_scale)
