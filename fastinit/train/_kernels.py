"""Jitted kernels of :func:`fastinit.train.run`: forward, backward, SGD, the epoch loop.

Layout.  A net of ``L`` linear layers (``depth`` hidden + the readout) keeps all its
weights in one flat array ``W`` (layer ``k`` -- 0-based -- is the C-contiguous
``(widths[k+1], widths[k])`` block at ``w_off[k]``, PyTorch layout) and all biases in
``B`` (at ``b_off[k]``); gradients and momentum buffers share the layout, so global-norm
clipping and the SGD update are single passes over flat arrays.

Per step: 3 GEMMs per layer (``z = h W^T``, ``dW = dz^T h``, ``dh = dz W``) through
numba's ``np.dot`` (scipy's BLAS); everything else is fused element-wise passes over
preallocated buffers.  Losses and norms accumulate in float64 whatever the dtype.
"""

from __future__ import annotations

import math

import numpy as np

from fastinit import rng
from fastinit._jit import jit
from fastinit._kernels.blocks import view as _view
from fastinit._kernels.norm import BATCHNORM_EPS, batchnorm_backward, batchnorm_forward
from fastinit.activations import apply

MSE, CROSS_ENTROPY = 0, 1
# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing.
CLIP_EPS = 1e-6

# Columns of the per-epoch record ``epoch_rec[epoch, column]``.
LOSS, ACCURACY, R2, BATCH_LOSS, CLIPPED_STEPS, GLOBAL_GRAD_NORM, N_EPOCH_COLS = 0, 1, 2, 3, 4, 5, 6
# Columns of the per-layer record ``layer_rec[epoch, layer, column]``.
GRAD_NORM, GRAD_NORM_MEAN, BIAS_GRAD_NORM, WEIGHT_NORM, BIAS_NORM, UPDATE_NORM, DISTINCT, N_LAYER_COLS = range(8)


# ------------------------------------------------------------------ element-wise


@jit
def activate(z, h_in, h_out, d, code, param, alpha):
    """``h_out = phi(z)`` (``h_in + alpha phi(z)`` when ``alpha != 0``), ``d = phi'(z)``.

    phi and phi' come from the registry's one array pass, :func:`fastinit.activations.apply`
    (the same values and NaN rule as :func:`fastinit.propagate`); the residual sum is in
    the net's dtype.  The matrices are C-contiguous views.
    """
    rows, cols = z.shape
    apply(code, z.reshape(-1), param, h_out.reshape(-1), d.reshape(-1))
    if alpha != 0.0:
        branch = z.dtype.type(alpha)
        for i in range(rows):
            in_row, out_row = h_in[i], h_out[i]
            for j in range(cols):
                out_row[j] = in_row[j] + branch * out_row[j]


@jit
def add_bias(z, b):
    """``z += b`` row by row, in place."""
    rows, cols = z.shape
    for i in range(rows):
        for j in range(cols):
            z[i, j] += b[j]


@jit
def column_sums(x, out):
    """``out[j] = sum_i x[i, j]`` accumulated in float64."""
    rows, cols = x.shape
    acc = np.zeros(cols)
    for i in range(rows):
        for j in range(cols):
            acc[j] += x[i, j]
    for j in range(cols):
        out[j] = acc[j]


@jit
def sumsq(x):
    """Float64 sum of squares of the 1-D array ``x``; inf and NaN propagate (they are data)."""
    n = x.size
    q0 = q1 = q2 = q3 = 0.0
    quads = n // 4
    for k in range(quads):
        a = np.float64(x[4 * k])
        b = np.float64(x[4 * k + 1])
        c = np.float64(x[4 * k + 2])
        e = np.float64(x[4 * k + 3])
        q0 += a * a
        q1 += b * b
        q2 += c * c
        q3 += e * e
    for k in range(4 * quads, n):
        v = np.float64(x[k])
        q0 += v * v
    return (q0 + q1) + (q2 + q3)


@jit
def matmul_loops(a, b, c):
    """``c = a @ b`` by plain loops, every entry summed in the same k order with the same ops.

    Slow next to BLAS, but *position-uniform*: equal inputs give bitwise-equal outputs in
    every row and column.  OpenBLAS's sgemm is not (its micro-kernel rounds columns 8-15
    of each 16-column tile differently, 1 ulp), which breaks the exact symmetry of
    constant-initialised units in float32; see ``gemm="loops"`` in ``run``.
    """
    rows, inner = a.shape
    cols = b.shape[1]
    for i in range(rows):
        for j in range(cols):
            c[i, j] = 0.0
        for k in range(inner):
            x = a[i, k]
            for j in range(cols):
                c[i, j] += x * b[k, j]


@jit
def gemm(a, b, c, loops):
    """``c = a @ b`` through BLAS, or :func:`matmul_loops` when ``loops``."""
    if loops:
        matmul_loops(a, b, c)
    else:
        np.dot(a, b, c)


# ------------------------------------------------------------------ loss


@jit
def loss_and_grad(out, labels, targets, loss_kind, grad, want_grad):
    """Summed loss over the rows of ``out`` and, when ``want_grad``, dL/dout of the *mean* loss.

    Cross-entropy: ``logsumexp(out_i) - out_i[label_i]`` per example, mean over the batch
    (torch ``cross_entropy``).  MSE: ``(out - target)^2`` mean over batch and outputs
    (torch ``mse_loss``).  Returns ``(loss_sum, correct, sse)``: ``correct`` counts rows
    whose argmax (first maximum, as torch) is the label; ``sse`` is the MSE numerator.
    """
    m, n_out = out.shape
    total = 0.0
    correct = 0
    sse = 0.0
    if loss_kind == CROSS_ENTROPY:
        inv_m = 1.0 / m
        for i in range(m):
            top = -np.inf
            arg = -1
            finite = True
            for j in range(n_out):
                v = np.float64(out[i, j])
                if not math.isfinite(v):
                    finite = False
                if v > top:
                    top = v
                    arg = j
            y = labels[i]
            if finite:
                s = 0.0
                for j in range(n_out):
                    s += math.exp(np.float64(out[i, j]) - top)
                lse = top + math.log(s)
                if arg == y:
                    correct += 1
            else:
                lse = math.nan
            total += lse - np.float64(out[i, y])
            if want_grad:
                for j in range(n_out):
                    p = math.exp(np.float64(out[i, j]) - lse)
                    grad[i, j] = (p - (1.0 if j == y else 0.0)) * inv_m
    else:
        scale = 2.0 / (m * n_out)
        for i in range(m):
            for j in range(n_out):
                r = np.float64(out[i, j]) - np.float64(targets[i, j])
                sse += r * r
                if want_grad:
                    grad[i, j] = scale * r
        total = sse / n_out
    return total, correct, sse


# ------------------------------------------------------------------ forward / backward


@jit
def forward(m, W, B, w_off, b_off, widths, alpha, code, param, batchnorm, loops, Z, U, D, H):
    """Forward ``m`` examples from ``H[0]``: fills ``Z`` (pre-activations, bias added),
    ``U`` (batch-normalised), ``D`` (phi') and ``H[k + 1]``; the readout's output
    (logits) is ``H[L]``.
    """
    n_layers = widths.size - 1
    for k in range(n_layers):
        n_in, n_out = widths[k], widths[k + 1]
        h_in = _view(H[k], m, n_in)
        w = _view(W[w_off[k]:], n_out, n_in)
        b = B[b_off[k]: b_off[k] + n_out]
        z = _view(Z[k], m, n_out)
        gemm(h_in, w.T, z, loops)
        add_bias(z, b)
        if k == n_layers - 1:
            _view(H[k + 1], m, n_out)[:, :] = z
        elif batchnorm:
            u = _view(U[k], m, n_out)
            batchnorm_forward(z, u, BATCHNORM_EPS)
            activate(u, h_in, _view(H[k + 1], m, n_out), _view(D[k], m, n_out), code, param, alpha[k])
        else:
            activate(z, h_in, _view(H[k + 1], m, n_out), _view(D[k], m, n_out), code, param, alpha[k])


@jit
def backward(m, W, w_off, b_off, widths, alpha, batchnorm, loops, Z, D, H, gW, gB, g_top, G_h, G_a, G_z, G_in):
    """Backward from ``g_top`` = dL/d(logits) (m, n_out); fills ``gW`` and ``gB``.

    ``G_h, G_a, G_z, G_in`` are flat scratch buffers of ``m * max(widths)`` entries.
    """
    n_layers = widths.size - 1
    for k in range(n_layers - 1, -1, -1):
        n_in, n_out = widths[k], widths[k + 1]
        if k == n_layers - 1:
            gz = g_top
        else:
            gh = _view(G_h, m, n_out)
            ga = _view(G_a, m, n_out)
            d = _view(D[k], m, n_out)
            branch = alpha[k] if alpha[k] != 0.0 else 1.0
            for i in range(m):
                for j in range(n_out):
                    ga[i, j] = gh[i, j] * (branch * d[i, j])
            if batchnorm:
                gz = _view(G_z, m, n_out)
                batchnorm_backward(_view(Z[k], m, n_out), ga, gz, BATCHNORM_EPS)
            else:
                gz = ga
        h_in = _view(H[k], m, n_in)
        gemm(gz.T, h_in, _view(gW[w_off[k]:], n_out, n_in), loops)
        column_sums(gz, gB[b_off[k]: b_off[k] + n_out])
        if k > 0:
            g_in = _view(G_in, m, n_in)
            gemm(gz, _view(W[w_off[k]:], n_out, n_in), g_in, loops)
            if k < n_layers - 1 and alpha[k] != 0.0:
                g_in += _view(G_h, m, n_out)
            _view(G_h, m, n_in)[:, :] = g_in


@jit
def gather(X, labels, targets, perm, start, m, H0, lab_b, tgt_b):
    """Copy examples ``perm[start:start + m]`` into the batch buffers."""
    n_in = X.shape[1]
    h0 = _view(H0, m, n_in)
    for i in range(m):
        src = perm[start + i]
        for j in range(n_in):
            h0[i, j] = X[src, j]
        lab_b[i] = labels[src]
        for j in range(targets.shape[1]):
            tgt_b[i, j] = targets[src, j]


@jit
def forward_backward(m, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, lab_b, tgt_b, bufs):
    """Loss (summed over the batch) and gradients of the mean loss for the batch in ``H[0]``."""
    Z, U, D, H, G_top, G_h, G_a, G_z, G_in = bufs
    code, param, batchnorm, loss_kind, loops = int(cfg[0]), cfg[1], cfg[2] > 0.0, int(cfg[3]), cfg[4] > 0.0
    forward(m, W, B, w_off, b_off, widths, alpha, code, param, batchnorm, loops, Z, U, D, H)
    n_layers = widths.size - 1
    n_out = widths[n_layers]
    g_top = _view(G_top, m, n_out)
    loss, _, _ = loss_and_grad(_view(H[n_layers], m, n_out), lab_b, tgt_b, loss_kind, g_top, True)
    backward(m, W, w_off, b_off, widths, alpha, batchnorm, loops, Z, D, H, gW, gB, g_top, G_h, G_a, G_z, G_in)
    return loss


@jit
def make_buffers(widths, batch, dtype_probe):
    """Preallocate every per-step buffer for batches of up to ``batch`` examples."""
    n_layers = widths.size - 1
    size = batch * widths.max()
    dt = dtype_probe.dtype
    return (
        np.empty((n_layers, size), dtype=dt), np.empty((n_layers, size), dtype=dt), np.empty((n_layers, size), dtype=dt),
        np.empty((n_layers + 1, size), dtype=dt), np.empty(size, dtype=dt), np.empty(size, dtype=dt),
        np.empty(size, dtype=dt), np.empty(size, dtype=dt), np.empty(size, dtype=dt),
    )


@jit
def batch_gradients(X, labels, targets, W, B, gW, gB, w_off, b_off, widths, alpha, cfg):
    """Gradients of the mean loss over all of ``X`` taken as one batch (a test hook); returns the mean loss."""
    m = X.shape[0]
    bufs = make_buffers(widths, m, W)
    perm = np.arange(m)
    lab_b = np.empty(m, dtype=np.int64)
    tgt_b = np.empty((m, targets.shape[1]), dtype=targets.dtype)
    gather(X, labels, targets, perm, np.int64(0), m, bufs[3][0], lab_b, tgt_b)
    return forward_backward(m, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, lab_b, tgt_b, bufs) / m


# ------------------------------------------------------------------ update


@jit
def clip_coefficient(gW, gB, max_norm):
    """torch ``clip_grad_norm_``: global L2 norm over all gradients and the factor to apply.

    Returns ``(norm, coef)`` with ``coef = min(1, max_norm / (norm + 1e-6))`` (1 when
    ``max_norm`` is 0, meaning no clipping).  A non-finite norm gives coef 0 or NaN, as torch.
    """
    norm = math.sqrt(sumsq(gW) + sumsq(gB))
    if max_norm <= 0.0:
        return norm, 1.0
    return norm, min(1.0, max_norm / (norm + CLIP_EPS))


@jit
def sgd(P, G, V, lr, momentum, coef, clip):
    """torch.optim.SGD after clipping: ``g *= coef``; ``v = momentum v + g``; ``p -= lr v``."""
    c = P.dtype.type(coef)
    mu = P.dtype.type(momentum)
    step = P.dtype.type(lr)
    for i in range(P.size):
        g = G[i] * c if clip else G[i]
        G[i] = g
        v = mu * V[i] + g if momentum != 0.0 else g
        V[i] = v
        P[i] -= step * v


@jit
def sgd_step(W, B, gW, gB, VW, VB, lr, momentum, max_norm):
    """Clip the gradients by global norm (when ``max_norm > 0``) and take one SGD step.

    Returns ``(norm before clipping, coefficient applied)``.
    """
    norm, coef = clip_coefficient(gW, gB, max_norm)
    clip = max_norm > 0.0
    sgd(W, gW, VW, lr, momentum, coef, clip)
    sgd(B, gB, VB, lr, momentum, coef, clip)
    return norm, coef


# ------------------------------------------------------------------ measures


@jit
def distinct_rows(w, b, rtol):
    """Number of distinct rows of ``[w | b]``: rows within ``rtol * max|entry|`` (max-norm) are one.

    Rows are sorted by a fixed projection and each is compared only with the
    representatives whose projection is close enough to possibly match, so the count
    costs O(rows log rows + rows * cols) for distinct rows.  Greedy in projection
    order (closeness is not transitive).  NaN if any entry is not finite.
    """
    rows, cols = w.shape
    scale = 0.0
    for i in range(rows):
        for j in range(cols):
            a = abs(np.float64(w[i, j]))
            if not math.isfinite(a):
                return math.nan
            scale = max(scale, a)
        a = abs(np.float64(b[i]))
        if not math.isfinite(a):
            return math.nan
        scale = max(scale, a)
    if scale == 0.0:
        return 1.0
    tol = rtol * scale
    weights = np.empty(cols + 1)
    for j in range(cols + 1):
        weights[j] = 1.0 + ((j + 1) * 0.6180339887498949) % 1.0  # in [1, 2): no cancellation
    proj = np.empty(rows)
    for i in range(rows):
        s = np.float64(b[i]) * weights[cols]
        for j in range(cols):
            s += np.float64(w[i, j]) * weights[j]
        proj[i] = s
    # |proj_i - proj_j| <= sum(weights) * maxdiff, plus float64 rounding of the sums.
    window = weights.sum() * (tol + 1e-12 * scale)
    order = np.argsort(proj, kind="mergesort")
    reps = np.empty(rows, dtype=np.int64)
    n_reps = 0
    for t in range(rows):
        i = order[t]
        found = False
        r = n_reps - 1
        while r >= 0 and proj[i] - proj[reps[r]] <= window:
            k = reps[r]
            close = abs(np.float64(b[i]) - np.float64(b[k])) <= tol
            j = 0
            while close and j < cols:
                close = abs(np.float64(w[i, j]) - np.float64(w[k, j])) <= tol
                j += 1
            if close:
                found = True
                break
            r -= 1
        if not found:
            reps[n_reps] = i
            n_reps += 1
    return np.float64(n_reps)


@jit
def permutation(n, seed, stream, epoch):
    """Epoch ``epoch``'s order of ``n`` examples: argsort of float64 uniforms on substream ``epoch``."""
    keys = np.empty(n)
    rng.fill_serial(keys, np.bool_(True), rng.KIND_UNIFORM, 0.0, 1.0, seed, stream, np.int64(epoch))
    return np.argsort(keys, kind="mergesort")


@jit
def evaluate(X, labels, targets, W, B, w_off, b_off, widths, alpha, cfg, batch, bufs, sst):
    """Loss, accuracy and R^2 over the whole training set, forward only, in chunks of ``batch``
    in data-set order (batch norm uses each chunk's statistics, training mode)."""
    Z, U, D, H, G_top, _, _, _, _ = bufs
    code, param, batchnorm, loss_kind, loops = int(cfg[0]), cfg[1], cfg[2] > 0.0, int(cfg[3]), cfg[4] > 0.0
    n = X.shape[0]
    n_layers = widths.size - 1
    n_out = widths[n_layers]
    total = 0.0
    correct = 0
    sse = 0.0
    for start in range(0, n, batch):
        m = min(batch, n - start)
        _view(H[0], m, X.shape[1])[:, :] = X[start:start + m]
        forward(m, W, B, w_off, b_off, widths, alpha, code, param, batchnorm, loops, Z, U, D, H)
        t, c, s = loss_and_grad(_view(H[n_layers], m, n_out), labels[start:start + m], targets[start:start + m],
                                loss_kind, _view(G_top, m, n_out), False)
        total += t
        correct += c
        sse += s
    if loss_kind == CROSS_ENTROPY:
        return total / n, correct / n, math.nan
    return total / n, math.nan, 1.0 - sse / sst


@jit
def record_state(epoch, X, labels, targets, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, batch, bufs, sst,
                 rtol, epoch_rec, layer_rec):
    """Fill epoch ``epoch``'s rows: loss/accuracy on the training set, the gradient already
    in ``gW, gB`` (the next epoch's first mini-batch), norms and distinct units per layer."""
    loss, acc, r2 = evaluate(X, labels, targets, W, B, w_off, b_off, widths, alpha, cfg, batch, bufs, sst)
    epoch_rec[epoch, LOSS] = loss
    epoch_rec[epoch, ACCURACY] = acc
    epoch_rec[epoch, R2] = r2
    epoch_rec[epoch, GLOBAL_GRAD_NORM] = math.sqrt(sumsq(gW) + sumsq(gB))
    for k in range(widths.size - 1):
        n_in, n_out = widths[k], widths[k + 1]
        w = W[w_off[k]: w_off[k] + n_out * n_in]
        b = B[b_off[k]: b_off[k] + n_out]
        layer_rec[epoch, k, GRAD_NORM] = math.sqrt(sumsq(gW[w_off[k]: w_off[k] + n_out * n_in]))
        layer_rec[epoch, k, BIAS_GRAD_NORM] = math.sqrt(sumsq(gB[b_off[k]: b_off[k] + n_out]))
        layer_rec[epoch, k, WEIGHT_NORM] = math.sqrt(sumsq(w))
        layer_rec[epoch, k, BIAS_NORM] = math.sqrt(sumsq(b))
        layer_rec[epoch, k, DISTINCT] = distinct_rows(w.reshape((n_out, n_in)), b, rtol)
    return math.isfinite(loss) and math.isfinite(sumsq(W) + sumsq(B))


@jit
def train(X, labels, targets, W, B, w_off, b_off, widths, alpha, cfg, lr, momentum, max_norm, batch, epochs,
          seed, order_stream, sst, rtol, epoch_rec, layer_rec):
    """Mini-batch SGD for ``epochs`` epochs; fills the records of epochs ``0 .. last``.

    Returns the last epoch recorded: ``epochs``, or the first epoch whose training loss
    or weights are not finite (the run stops there; later rows stay NaN).
    """
    n = X.shape[0]
    n_layers = widths.size - 1
    steps = (n + batch - 1) // batch
    bufs = make_buffers(widths, batch, W)
    H = bufs[3]
    gW = np.empty_like(W)
    gB = np.empty_like(B)
    VW = np.zeros_like(W)
    VB = np.zeros_like(B)
    w_start = np.empty_like(W)
    lab_b = np.empty(batch, dtype=np.int64)
    tgt_b = np.empty((batch, targets.shape[1]), dtype=targets.dtype)
    norm_sum = np.zeros(n_layers)

    # np.int64 for constants: a literal argument compiles a kernel's own copy (and its callees').
    perm = permutation(n, seed, order_stream, np.int64(1))
    m = min(batch, n)
    gather(X, labels, targets, perm, np.int64(0), m, H[0], lab_b, tgt_b)
    pending = forward_backward(m, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, lab_b, tgt_b, bufs)
    finite = record_state(np.int64(0), X, labels, targets, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, batch, bufs, sst,
                          rtol, epoch_rec, layer_rec)
    if not finite:
        return 0
    for epoch in range(1, epochs + 1):
        w_start[:] = W
        norm_sum[:] = 0.0
        batch_loss = 0.0
        clipped = 0
        for step in range(steps):
            start = step * batch
            m = min(batch, n - start)
            if step > 0:  # the first step's gradient was computed for the previous record
                gather(X, labels, targets, perm, start, m, H[0], lab_b, tgt_b)
                batch_loss += forward_backward(m, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, lab_b, tgt_b, bufs)
            else:
                batch_loss += pending
            for k in range(n_layers):
                norm_sum[k] += math.sqrt(sumsq(gW[w_off[k]: w_off[k] + widths[k + 1] * widths[k]]))
            _, coef = sgd_step(W, B, gW, gB, VW, VB, lr, momentum, max_norm)
            if coef < 1.0:
                clipped += 1
        perm = permutation(n, seed, order_stream, epoch + 1)
        m = min(batch, n)
        gather(X, labels, targets, perm, np.int64(0), m, H[0], lab_b, tgt_b)
        pending = forward_backward(m, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, lab_b, tgt_b, bufs)
        epoch_rec[epoch, BATCH_LOSS] = batch_loss / n
        epoch_rec[epoch, CLIPPED_STEPS] = clipped
        for k in range(n_layers):
            layer_rec[epoch, k, GRAD_NORM_MEAN] = norm_sum[k] / steps
            size = widths[k + 1] * widths[k]
            diff = 0.0
            for i in range(w_off[k], w_off[k] + size):
                r = np.float64(W[i]) - np.float64(w_start[i])
                diff += r * r
            layer_rec[epoch, k, UPDATE_NORM] = math.sqrt(diff)
        finite = record_state(epoch, X, labels, targets, W, B, gW, gB, w_off, b_off, widths, alpha, cfg, batch, bufs,
                              sst, rtol, epoch_rec, layer_rec)
        if not finite:
            return epoch
    return epochs
