"""Normalisation (gamma 1, beta 0, biased variance, as PyTorch), forward and backward: batch norm by
columns (a unit over the batch), layer norm by rows (an example over its units)."""

from __future__ import annotations

import math

import numba
from numba.core import types

from fastinit._jit import jit

BATCHNORM_EPS = 1e-5  # PyTorch's default (BatchNorm1d and LayerNorm alike)


@jit(inner=True)
def _row_standardizer(x, i, eps):
    """Mean of row ``i`` of ``x`` and ``1 / sqrt(var + eps)`` (biased var, as PyTorch)."""
    cols = x.shape[1]
    mean = 0.0
    for j in range(cols):
        mean += x[i, j]
    mean /= cols
    var = 0.0
    for j in range(cols):
        d = x[i, j] - mean
        var += d * d
    return mean, 1.0 / math.sqrt(var / cols + eps)


def standardizer_signatures(dtype):
    """:func:`_row_standardizer` with the argument types both norms compile it for: layer norm's rows (a
    C-contiguous matrix) and batch norm's columns, the rows of a transpose (Fortran order).

    Both the forward and the backward pass of either norm call it, so a cold compile in two processes
    (:mod:`fastinit._compile_ahead`) compiles it on one side before either pass.

    Parameters
    ----------
    dtype : numpy.dtype
        The matrices' element type (float32 or float64).

    Returns
    -------
    list of (dispatcher, tuple)
    """
    element = numba.from_dtype(dtype)
    return [(_row_standardizer, (types.Array(element, 2, layout), types.int64, types.float64)) for layout in "CF"]


@jit(inner=True)
def batchnorm_forward_columns(z, out, eps, first, stop):
    """Per-unit batch normalisation (gamma 1, beta 0) of columns ``[first, stop)`` into ``out``.

    A unit's column of ``z`` is a row of ``z.T``: layer norm's row kernel, on the transposes.
    """
    layernorm_forward_rows(z.T, out.T, eps, first, stop)


@jit(inner=True)
def batchnorm_forward(z, out, eps):
    """Per-unit batch normalisation (gamma 1, beta 0); returns nothing, fills ``out``."""
    batchnorm_forward_columns(z, out, eps, 0, z.shape[1])


@jit(inner=True)
def batchnorm_backward_columns(z, grad_u, grad_z, eps, first, stop):
    """Gradient through batch normalisation for columns ``[first, stop)`` (``u = BN(z)``), as
    :func:`batchnorm_forward_columns`: layer norm's row kernel on the transposes."""
    layernorm_backward_rows(z.T, grad_u.T, grad_z.T, eps, first, stop)


@jit(inner=True)
def batchnorm_backward(z, grad_u, grad_z, eps):
    """Gradient through batch normalisation: ``grad_z`` from ``grad_u`` (``u = BN(z)``)."""
    batchnorm_backward_columns(z, grad_u, grad_z, eps, 0, z.shape[1])


@jit(inner=True)
def layernorm_forward_rows(x, out, eps, start, stop):
    """Per-example layer normalisation (gamma 1, beta 0) of rows ``[start, stop)`` of ``x`` into ``out``.

    Rows are independent, so a lane normalises its own rows without meeting the other workers.
    """
    cols = x.shape[1]
    for i in range(start, stop):
        mean, inv = _row_standardizer(x, i, eps)
        for j in range(cols):
            out[i, j] = (x[i, j] - mean) * inv


@jit(inner=True)
def layernorm_backward_rows(x, grad_u, grad_x, eps, start, stop):
    """Gradient through layer normalisation for rows ``[start, stop)`` (``u = LN(x)``): ``grad_x`` from ``grad_u``."""
    cols = x.shape[1]
    for i in range(start, stop):
        mean, inv = _row_standardizer(x, i, eps)
        g_mean = 0.0
        gu_mean = 0.0
        for j in range(cols):
            g_mean += grad_u[i, j]
            gu_mean += grad_u[i, j] * (x[i, j] - mean) * inv
        g_mean /= cols
        gu_mean /= cols
        for j in range(cols):
            grad_x[i, j] = inv * (grad_u[i, j] - g_mean - (x[i, j] - mean) * inv * gu_mean)


@jit(inner=True)
def layernorm_forward(x, out, eps):
    """Per-example layer normalisation (gamma 1, beta 0) of every row of ``x``; returns nothing, fills ``out``."""
    layernorm_forward_rows(x, out, eps, 0, x.shape[0])


@jit(inner=True)
def layernorm_backward(x, grad_u, grad_x, eps):
    """Gradient through layer normalisation: ``grad_x`` from ``grad_u`` (``u = LN(x)``), every row."""
    layernorm_backward_rows(x, grad_u, grad_x, eps, 0, x.shape[0])
