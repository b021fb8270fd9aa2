"""Mean-field curves of nets with a norm (``fastinit.propagate``'s ``norm`` / ``norm_at``): the theory
twin :func:`analysis.theory.predict` calls when ``norm`` is given.

A norm's output has mean square 1 (up to eps, a relative 1e-5 / Var of its input): layer norm per
example over its units, batch norm per unit over the batch.  What follows is the
infinite-width limit with fresh Gaussian weights each layer, ``Var(W_l)`` at the layer's fans,
``G_l = n_{l-1} Var(W_l)`` forward and ``B_l = n_l Var(W_l)`` backward, ``E_q[f] = E[f(sqrt(q) Z)]``,
``Z ~ N(0, 1)``.

Forward (``q_l = Var z_l``, ``m_l = E[h_l^2]``, ``mu_l = E[h_l]`` per unit, ``m_0 = input_std^2``,
``mu_0 = 0``):

* ``preact``: ``q_l = G_l m_{l-1} + bias_std^2``; phi sees ``Norm(z_l) ~ N(0, 1)``, so
  ``m_l = E_1[phi^2]`` (residual: ``m_l = m_{l-1} + 2 alpha mu_{l-1} E_1[phi] + alpha^2 E_1[phi^2]``).
* ``branch`` (pre-norm residual, ``h_l = h_{l-1} + alpha phi(W_l Norm(h_{l-1}) + b_l)``): the GEMM
  sees mean square 1 whatever the stream's scale, so ``q_l = G_l + bias_std^2`` at every layer, and
  since z_l is independent of any one unit of ``h_{l-1}`` at infinite width,
  ``mu_l = mu_{l-1} + alpha E_q[phi]``, ``m_l = m_{l-1} + 2 alpha mu_{l-1} E_q[phi] + alpha^2 E_q[phi^2]``.
  For a zero-mean phi (odd: tanh, erf, linear) ``mu = 0`` and ``m_l = m_0 + l alpha^2 E_q[phi^2]``:
  linear growth with depth.  For relu-like phi the mean drifts, ``mu_l = l alpha E_q[phi]``,
  and ``m_l`` grows quadratically (``m_l ~ l^2 alpha^2 E_q[phi]^2``).
* ``output`` (post-norm residual, ``h_l = Norm(h_{l-1} + alpha phi(z_l))``): ``m_l = 1``, ``mu_l = 0``,
  ``q_l = G_l m_{l-1} + bias_std^2`` (``m_0`` at layer 1, 1 above).

Backward (``g_l = Var dL/dh_l``, ``g_L = 1``; gradient independence), layer norm only: its
Jacobian is ``(I - 11^T/n - u u^T/n) / sigma`` with ``sigma^2`` the variance over units of its input,
a projection that removes two of n directions, so at infinite width it divides the variance by
``sigma^2``:

* ``preact``: ``Var dL/dz_l = alpha^2 E_1[phi'^2] g_l / q_l`` (``alpha`` 1 without residual),
  ``g_{l-1} = B_l Var dL/dz_l`` (+ ``g_l`` with a residual);
* ``branch``: ``Var dL/dz_l = alpha^2 E_q[phi'^2] g_l``, ``g_{l-1} = g_l (1 + B_l alpha^2 E_q[phi'^2] / v_{l-1})``
  with ``v = m - mu^2`` the stream's variance over units: a product of ``1 + c / l`` terms, so the
  gradient changes polynomially with depth, never exponentially;
* ``output``: ``Var dL/dr_l = g_l / v_r`` with ``v_r = m_{l-1} + alpha^2 (E_q[phi^2] - E_q[phi]^2)``,
  ``Var dL/dz_l = alpha^2 E_q[phi'^2] Var dL/dr_l``, ``g_{l-1} = Var dL/dr_l + B_l Var dL/dz_l``.

Tested against ``fastinit.propagate`` (tests/test_propagate_theory.py): the forward curves at every
site and the pre-norm backward.  The preact and post-norm backward recursions are the
infinite-width limit only: at width 256 the measured gradient drifts from them by about 0.003 to
0.006 log10 per layer (a decade over 300 layers), a finite-width effect not modelled here.

Batch norm's backward depends on each unit's variance over the batch, which the examples'
covariance (the correlation map) sets, not modelled here: its ``log10_grad_var`` is NaN.
"""

from __future__ import annotations

import math

import numpy as np

from analysis._moments import Act, moments

__all__ = ["normed_curves"]


def _expectations(a: Act, q: float) -> tuple[float, float, float]:
    """``(E[phi], E[phi^2], E[phi'^2])`` of ``sqrt(q) Z``."""
    mean, second, slope2 = moments(a, np.array(q), ("phi", "phi2", "dphi2"))
    return float(mean), float(second), float(slope2)


def normed_curves(a: Act, fwd_gain, bwd_gain, bias_std, input_std, residual, norm, norm_at):
    """``(ln q_l, ln m_l, ln Var dL/dz_l)`` per layer, by the recursions of this module's docstring.

    ``fwd_gain`` and ``bwd_gain`` are the per-layer ``G_l`` and ``B_l`` (arrays); ``residual`` is
    ``alpha`` or None; ``norm`` ``"batch"`` or ``"layer"``; ``norm_at`` ``"preact"``, ``"branch"``
    or ``"output"`` (the caller has checked them).
    """
    depth = len(fwd_gain)
    alpha = residual if residual is not None else 1.0
    bias2 = bias_std**2
    q, m_out, mean_phi, second, slope2 = (np.empty(depth) for _ in range(5))
    m_in, mu_in = np.empty(depth), np.empty(depth)  # E[h_{l-1}^2] and E[h_{l-1}] per unit
    m, mu = input_std**2, 0.0
    for k in range(depth):
        m_in[k], mu_in[k] = m, mu
        q[k] = (fwd_gain[k] if norm_at == "branch" else fwd_gain[k] * m) + bias2
        # phi's argument: Norm(z) ~ N(0, 1) at preact, z itself elsewhere.
        mean_phi[k], second[k], slope2[k] = _expectations(a, 1.0 if norm_at == "preact" else q[k])
        if norm_at == "output":
            m, mu = 1.0, 0.0
        elif residual is not None:
            m = m + 2.0 * alpha * mu * mean_phi[k] + alpha**2 * second[k]
            mu = mu + alpha * mean_phi[k]
        else:
            m, mu = second[k], mean_phi[k]
        m_out[k] = m
    log_grad = np.full(depth, math.nan)
    if norm == "layer":
        log_g = 0.0  # ln Var dL/dh_L
        for k in range(depth - 1, -1, -1):
            if norm_at == "preact":
                log_gz = math.log(alpha**2 * slope2[k] / q[k]) + log_g
                log_up = math.log(bwd_gain[k]) + log_gz
                log_g = np.logaddexp(log_g, log_up) if residual is not None else log_up
            elif norm_at == "branch":
                log_gz = math.log(alpha**2 * slope2[k]) + log_g
                log_g = log_g + math.log1p(bwd_gain[k] * alpha**2 * slope2[k] / (m_in[k] - mu_in[k] ** 2))
            else:
                log_gr = log_g - math.log(m_in[k] + alpha**2 * (second[k] - mean_phi[k] ** 2))
                log_gz = math.log(alpha**2 * slope2[k]) + log_gr
                log_g = np.logaddexp(log_gr, math.log(bwd_gain[k]) + log_gz)
            log_grad[k] = log_gz
    with np.errstate(divide="ignore"):
        return np.log(q), np.log(m_out), log_grad
