"""Plain-NumPy twins of fastinit.train's kernels: manual backprop, torch's SGD and clipping.

Written from the textbook formulas in float64, never by calling the code under test:
whole-array NumPy where the kernels loop, explicit per-layer lists where they use flat buffers.
"""

from __future__ import annotations

import numpy as np

from fastinit import get_activation

BN_EPS = 1e-5


def normalize(x, norm):
    """``(u, inv)``: batch norm (each column over the rows) or layer norm (each row over its columns) of ``x``,
    gamma 1, beta 0, biased variance; ``inv`` is 1 / sqrt(var + eps) along that axis."""
    axis = 0 if norm == "batch" else 1
    inv = 1.0 / np.sqrt(x.var(axis=axis, keepdims=True) + BN_EPS)
    return (x - x.mean(axis=axis, keepdims=True)) * inv, inv


def normalize_backward(x, g_u, norm):
    """dL/dx from dL/du for ``u = normalize(x, norm)``, through the statistics (Ioffe & Szegedy 2015; along
    the other axis for layer norm, Ba et al. 2016)."""
    axis = 0 if norm == "batch" else 1
    u, inv = normalize(x, norm)
    return inv * (g_u - g_u.mean(axis=axis, keepdims=True) - u * (g_u * u).mean(axis=axis, keepdims=True))


def mlp_forward(weights, biases, x, *, activation, param=None, batchnorm=False, alphas=None, norm=None,
                norm_at="preact"):
    """``(h, cache)``: every layer's output (``h[0]`` the input, ``h[-1]`` the logits) and, per hidden layer,
    ``(site, gemm_in, z, r, dphi)``: where its norm sits (None: none), what its GEMM multiplied, its z,
    its residual sum (its output before a post-norm) and phi'.  Options as :func:`mlp_gradients`."""
    act = get_activation(activation)
    n_layers = len(weights)
    alphas = np.zeros(n_layers) if alphas is None else alphas
    norm = "batch" if batchnorm else norm
    h = [np.asarray(x, dtype=np.float64)]
    cache = []
    for k in range(n_layers):
        h_in = h[-1]
        if k == n_layers - 1:
            h.append(h_in @ weights[k].T + biases[k])
            break
        a = alphas[k]
        site = norm_at if norm is not None and (norm_at == "preact" or a) else None
        gemm_in = normalize(h_in, norm)[0] if site == "branch" else h_in
        z = gemm_in @ weights[k].T + biases[k]
        u = normalize(z, norm)[0] if site == "preact" else z
        phi, dphi = act.phi_np(u, param), act.dphi_np(u, param)
        r = h_in + a * phi if a else phi
        h.append(normalize(r, norm)[0] if site == "output" else r)
        cache.append((site, gemm_in, z, r, dphi))
    return h, cache


def mlp_gradients(weights, biases, x, *, activation, param=None, labels=None, targets=None, batchnorm=False, alphas=None,
                  norm=None, norm_at="preact"):
    """Mean loss and its gradients for an MLP: hidden layers phi(Norm(x W^T + b)) (+ residual), linear readout.

    ``alphas[k]`` is layer ``k``'s residual branch scale (0 for none).  ``batchnorm=True`` is
    ``norm="batch"`` before phi.  ``norm_at="preact"`` normalises z on every hidden layer;
    ``"branch"`` (h + alpha phi(Norm(h) W^T + b)) and ``"output"`` (Norm(h + alpha phi(z))) sit on
    the residual layers only (the others are plain phi(z)).  Cross-entropy when ``labels`` is
    given, else MSE against ``targets`` (means as torch).
    """
    n_layers = len(weights)
    alphas = np.zeros(n_layers) if alphas is None else alphas
    norm = "batch" if batchnorm else norm
    h, cache = mlp_forward(weights, biases, x, activation=activation, param=param, alphas=alphas, norm=norm,
                           norm_at=norm_at)
    out = h[-1]
    m = out.shape[0]
    if labels is not None:
        top = out.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(out - top).sum(axis=1))
        loss = np.mean(lse - out[np.arange(m), labels])
        g = np.exp(out - lse[:, None])
        g[np.arange(m), labels] -= 1.0
        g /= m
    else:
        r = out - targets
        loss = np.mean(r**2)
        g = 2.0 * r / r.size
    grads_w, grads_b = [None] * n_layers, [None] * n_layers
    g_h = None  # dL/dh[k + 1]
    gemm_in = h[n_layers - 1]
    for k in range(n_layers - 1, -1, -1):
        site = None
        if k < n_layers - 1:
            site, gemm_in, z, r, dphi = cache[k]
            g_r = normalize_backward(r, g_h, norm) if site == "output" else g_h  # dL/d(the residual sum)
            g_u = g_r * dphi * (alphas[k] if alphas[k] else 1.0)
            g = normalize_backward(z, g_u, norm) if site == "preact" else g_u
        grads_w[k] = g.T @ gemm_in
        grads_b[k] = g.sum(axis=0)
        if k > 0:
            g_prev = g @ weights[k]
            if site == "branch":
                g_prev = normalize_backward(h[k], g_prev, norm)
            if k < n_layers - 1 and alphas[k]:
                g_prev = g_prev + g_r  # the identity path of the residual block
            g_h = g_prev
    return loss, grads_w, grads_b


def clip_grad_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_: scale every gradient by max_norm / (norm + 1e-6) if that is < 1."""
    norm = np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    coef = min(1.0, max_norm / (norm + 1e-6))
    return [g * coef for g in grads], norm


def sgd_step(params, grads, velocity, *, lr, momentum, clip_norm=None):
    """torch.optim.SGD(momentum, dampening 0, no Nesterov) after optional clipping.

    Returns new params and velocity (lists): v = momentum v + g (v = g on the first step), p - lr v.
    """
    if clip_norm is not None:
        grads, _ = clip_grad_norm(grads, clip_norm)
    velocity = [g.copy() if v is None else momentum * v + g for v, g in zip(velocity, grads)]
    return [p - lr * v for p, v in zip(params, velocity)], velocity


def distinct_units(w, b, rtol):
    """Rows of [w | b] no entry of which is within rtol * max|entry| of an earlier kept row's (O(n^2))."""
    rows = np.column_stack([w, b]).astype(np.float64)
    tol = rtol * np.abs(rows).max()
    kept = []
    for row in rows:
        if not any(np.abs(row - other).max() <= tol for other in kept):
            kept.append(row)
    return len(kept)
