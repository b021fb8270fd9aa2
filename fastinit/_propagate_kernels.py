"""Jitted kernels of :func:`fastinit.propagate`: pure functions over preallocated arrays.

Scales.  Arrays hold *scaled* values; the true value is ``exp(log_scale) * stored``
with the log scale kept in float64 beside them.  Forward (for positively homogeneous
activations): after each layer the activations are divided by their RMS and the RMS
goes into the log scale -- exact because ``phi(c z) = c phi(z)`` for ``c > 0``; bias
is divided by the same scale.  Backward: the gradient is linear in the readout
gradient, so it is always rescaled the same way.  Batch norm is scale-invariant, so
the forward scale resets to 1 after it.

Statistics accumulate in float64 in the same pass that applies the activation; each
parallel row writes its own partial sums (``partial[row]``), reduced serially.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastinit import rng
from fastinit._jit import jit
from fastinit.activations import phi_and_dphi
from fastinit.initializers import CONSTANT, ORTHOGONAL

# Columns of the per-layer raw statistics array (``stats[layer - 1, column]``).
FWD_SUM, FWD_SUMSQ, FWD_LOG_SCALE = 0, 1, 2
ACT_SUMSQ, ACT_LOG_SCALE = 3, 4
GRAD_SUM, GRAD_SUMSQ, GRAD_LOG_SCALE = 5, 6, 7
WGRAD_SUM, WGRAD_SUMSQ, WGRAD_LOG_SCALE = 8, 9, 10
DEAD_UNITS, SATURATED, NONFINITE, CORR_SUM = 11, 12, 13, 14
N_STATS = 15

# |phi'(z)| below this counts as saturated (bounded activations only).
SATURATION = 1e-3
BATCHNORM_EPS = 1e-5  # PyTorch's default

# Substreams of a cell's stream: inputs and readout first, then two per layer.
SUB_INPUT, SUB_READOUT, SUB_INPUT_PAIR = 0, 1, 2


@jit
def weight_substream(layer):
    """Substream of layer ``layer``'s weights (its bias uses the next one)."""
    return 2 * layer + 2


@jit
def draw_weights(w, kind, a, b, wide, seed, stream, substream):
    """Draw one weight matrix ``w`` (fan_out, fan_in) in place, as ``initializers.fill``."""
    if kind == CONSTANT:
        w[:, :] = a
        return
    if kind == ORTHOGONAL:
        rows, cols = w.shape
        gaussian = np.empty(rows * cols, dtype=np.float64)
        rng.fill_kernel(gaussian, True, rng.KIND_NORMAL, 1.0, 0.0, seed, stream, substream)
        matrix = gaussian.reshape((rows, cols))
        tall = np.ascontiguousarray(matrix.T) if rows < cols else matrix
        q, r = np.linalg.qr(tall)
        signs = np.sign(np.diag(r))
        q = q * signs
        if rows < cols:
            q = q.T
        for i in range(rows):
            for j in range(cols):
                w[i, j] = a * q[i, j]
        return
    rng.fill_kernel(w.reshape(-1), wide, kind, a, b, seed, stream, substream)


def _activate(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, partial):
    """``h_out = branch_scale * phi(z)`` (plus ``h_in`` when ``residual``), ``dphi = phi'(z)``.

    Fills ``partial[row] = (sum z, sum z^2, sum h^2, saturated, nonfinite)``; the
    column flags of dead units are reduced from ``dphi`` by the caller.
    """
    rows, cols = z.shape
    for i in numba.prange(rows):
        s = 0.0
        s2 = 0.0
        h2 = 0.0
        saturated = 0.0
        nonfinite = 0.0
        for j in range(cols):
            x = np.float64(z[i, j])
            value, slope = phi_and_dphi(code, x, param)
            value *= branch_scale
            if residual:
                value += np.float64(h_in[i, j])
            h_out[i, j] = value
            dphi[i, j] = slope
            if math.isfinite(x):
                s += x
                s2 += x * x
            else:
                nonfinite += 1.0
            h2 += value * value
            if bounded and abs(slope) < SATURATION:
                saturated += 1.0
        partial[i, 0] = s
        partial[i, 1] = s2
        partial[i, 2] = h2
        partial[i, 3] = saturated
        partial[i, 4] = nonfinite


_activate_parallel = jit(_activate, parallel=True)
_activate_serial = jit(_activate)
PARALLEL_MIN_ENTRIES = 1 << 16


@jit
def activate(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, partial):
    """:func:`_activate`, on the thread pool only when the layer is large enough to pay for it."""
    if z.size >= PARALLEL_MIN_ENTRIES:
        _activate_parallel(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, partial)
    else:
        _activate_serial(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, partial)


@jit
def dead_units(dphi):
    """Number of units (columns) whose derivative is 0 for every example of the batch."""
    rows, cols = dphi.shape
    dead = 0
    for j in range(cols):
        alive = False
        for i in range(rows):
            if dphi[i, j] != 0.0:
                alive = True
                break
        if not alive:
            dead += 1
    return dead


@jit
def _column_standardizer(z, j, eps):
    """Mean of column ``j`` of ``z`` over the batch and ``1 / sqrt(var + eps)`` (biased var, as PyTorch)."""
    rows = z.shape[0]
    mean = 0.0
    for i in range(rows):
        mean += z[i, j]
    mean /= rows
    var = 0.0
    for i in range(rows):
        d = z[i, j] - mean
        var += d * d
    return mean, 1.0 / math.sqrt(var / rows + eps)


@jit
def batchnorm_forward(z, out, eps):
    """Per-unit batch normalisation (gamma 1, beta 0); returns nothing, fills ``out``."""
    rows, cols = z.shape
    for j in range(cols):
        mean, inv = _column_standardizer(z, j, eps)
        for i in range(rows):
            out[i, j] = (z[i, j] - mean) * inv


@jit
def batchnorm_backward(z, grad_u, grad_z, eps):
    """Gradient through batch normalisation: ``grad_z`` from ``grad_u`` (``u = BN(z)``)."""
    rows, cols = z.shape
    for j in range(cols):
        mean, inv = _column_standardizer(z, j, eps)
        g_mean = 0.0
        gu_mean = 0.0
        for i in range(rows):
            g_mean += grad_u[i, j]
            gu_mean += grad_u[i, j] * (z[i, j] - mean) * inv
        g_mean /= rows
        gu_mean /= rows
        for i in range(rows):
            grad_z[i, j] = inv * (grad_u[i, j] - g_mean - (z[i, j] - mean) * inv * gu_mean)


@jit
def sum_and_sumsq(x):
    """Float64 sum and sum of squares of the finite entries of ``x``, and the non-finite count.

    Four independent accumulators let the CPU overlap additions (strict IEEE order
    forbids SIMD reductions without fastmath); the branchy pass that skips non-finite
    entries runs only when the fast one meets one.
    """
    flat = x.reshape(-1)
    n = flat.size
    s0 = s1 = s2 = s3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    quads = n // 4
    for k in range(quads):
        a = np.float64(flat[4 * k])
        b = np.float64(flat[4 * k + 1])
        c = np.float64(flat[4 * k + 2])
        d = np.float64(flat[4 * k + 3])
        s0 += a
        s1 += b
        s2 += c
        s3 += d
        q0 += a * a
        q1 += b * b
        q2 += c * c
        q3 += d * d
    for k in range(4 * quads, n):
        v = np.float64(flat[k])
        s0 += v
        q0 += v * v
    total = (s0 + s1) + (s2 + s3)
    total_sq = (q0 + q1) + (q2 + q3)
    if math.isfinite(total) and math.isfinite(total_sq):
        return total, total_sq, 0
    total = 0.0
    total_sq = 0.0
    bad = 0
    for k in range(n):
        v = np.float64(flat[k])
        if math.isfinite(v):
            total += v
            total_sq += v * v
        else:
            bad += 1
    return total, total_sq, bad


@jit
def rescale(x):
    """Divide ``x`` by its RMS in place and return ``log(RMS)`` (0 if the RMS is 0 or not finite)."""
    _, s2, _ = sum_and_sumsq(x)
    rms = math.sqrt(s2 / x.size)
    if rms > 0.0 and math.isfinite(rms):
        flat = x.reshape(-1)
        inv = 1.0 / rms
        for k in range(flat.size):
            flat[k] = flat[k] * inv
        return math.log(rms)
    return 0.0


@jit
def pair_cosine(h):
    """Mean cosine similarity of the row pairs (0, 1), (2, 3), ... of ``h``."""
    rows, cols = h.shape
    total = 0.0
    pairs = rows // 2
    for p in range(pairs):
        dot = 0.0
        n1 = 0.0
        n2 = 0.0
        for j in range(cols):
            a = np.float64(h[2 * p, j])
            b = np.float64(h[2 * p + 1, j])
            dot += a * b
            n1 += a * a
            n2 += b * b
        total += dot / math.sqrt(n1 * n2) if n1 > 0.0 and n2 > 0.0 else math.nan
    return total / pairs if pairs > 0 else math.nan


@jit
def _view(flat, rows, cols):
    """The contiguous ``(rows, cols)`` matrix at the start of the 1-D buffer ``flat``."""
    return flat[: rows * cols].reshape((rows, cols))


@jit
def forward_layer(layer, h_in, log_s_in, w, z, u, h_out, dphi, bias, partial, spec, draw_ab, wide, seed, stream, stats_row):
    """One layer forward from scaled ``h_in`` (true = exp(log_s_in) h_in); returns log scale of ``h_out``.

    ``spec`` = (kind, unused, unused, bias_std, code, param, residual, alpha, batchnorm,
    rescale_forward, bounded) as float64; ``draw_ab[layer - 1]`` holds the layer's
    draw parameters (they depend on its fans).  Draws the layer's weights and bias, fills
    ``z``, ``h_out``, ``dphi`` (and ``u = BN(z)`` with batch norm), and the forward
    columns of ``stats_row``.
    """
    kind, bias_std = int(spec[0]), spec[3]
    a, b = draw_ab[layer - 1, 0], draw_ab[layer - 1, 1]
    code, param, residual, alpha = int(spec[4]), spec[5], spec[6] > 0.0, spec[7]
    batchnorm, rescale_forward, bounded = spec[8] > 0.0, spec[9] > 0.0, spec[10] > 0.0
    substream = weight_substream(layer)
    draw_weights(w, kind, a, b, wide, seed, stream, substream)
    np.dot(h_in, w.T, z)
    if bias_std > 0.0:
        rng.fill_kernel(bias, wide, rng.KIND_NORMAL, bias_std * math.exp(-log_s_in), 0.0, seed, stream, substream + 1)
        z += bias
    branch = alpha if residual else 1.0
    log_s_out = log_s_in
    if batchnorm:
        # BN output is scale-free: with eps scaled to these units it is exact; a plain
        # layer then restarts at scale 1, a residual one adds the branch in h_in's units.
        batchnorm_forward(z, u, BATCHNORM_EPS * math.exp(-2.0 * log_s_in))
        if residual:
            branch *= math.exp(-log_s_in)
        else:
            log_s_out = 0.0
        activate(u, h_in, h_out, dphi, code, param, residual, branch, bounded, partial)
        fwd_sum, fwd_sumsq, nonfinite = sum_and_sumsq(z)
    else:
        activate(z, h_in, h_out, dphi, code, param, residual, branch, bounded, partial)
        fwd_sum, fwd_sumsq, nonfinite = partial[:, 0].sum(), partial[:, 1].sum(), partial[:, 4].sum()
    stats_row[FWD_SUM] = fwd_sum
    stats_row[FWD_SUMSQ] = fwd_sumsq
    stats_row[FWD_LOG_SCALE] = log_s_in
    stats_row[ACT_SUMSQ] = partial[:, 2].sum()
    stats_row[ACT_LOG_SCALE] = log_s_out
    stats_row[SATURATED] = partial[:, 3].sum()
    stats_row[NONFINITE] = nonfinite
    stats_row[DEAD_UNITS] = dead_units(dphi)
    stats_row[CORR_SUM] = pair_cosine(h_out)
    if rescale_forward:
        log_s_out += rescale(h_out)
    return log_s_out


@jit
def backward_layer(grad_out, log_g, h_in, log_s_in, w, z, dphi, grad_act, grad_z, wgrad, grad_in, spec, stats_row):
    """One layer backward; fills ``grad_in`` (scaled) and returns its log scale.

    ``grad_out`` is dL/dh_out / exp(log_g).  Gradient statistics go to ``stats_row``.
    """
    residual, alpha, batchnorm = spec[6] > 0.0, spec[7], spec[8] > 0.0
    branch = alpha if residual else 1.0
    rows, cols = grad_out.shape
    for i in range(rows):
        for j in range(cols):
            grad_act[i, j] = grad_out[i, j] * (branch * dphi[i, j])
    log_gz = log_g
    if batchnorm:
        # z is stored in h_in's units: dL/dz_true = BN'(z_scaled) dL/du / exp(log_s_in).
        batchnorm_backward(z, grad_act, grad_z, BATCHNORM_EPS * math.exp(-2.0 * log_s_in))
        log_gz = log_g - log_s_in
    else:
        grad_z[:, :] = grad_act
    s, s2, bad = sum_and_sumsq(grad_z)
    stats_row[GRAD_SUM] = s
    stats_row[GRAD_SUMSQ] = s2
    stats_row[GRAD_LOG_SCALE] = log_gz
    stats_row[NONFINITE] += bad
    np.dot(grad_z.T, h_in, wgrad)
    s, s2, _ = sum_and_sumsq(wgrad)
    stats_row[WGRAD_SUM] = s
    stats_row[WGRAD_SUMSQ] = s2
    stats_row[WGRAD_LOG_SCALE] = log_gz + log_s_in
    np.dot(grad_z, w, grad_in)
    log_g_in = log_gz
    if residual:
        factor = math.exp(log_gz - log_g)
        grad_in *= factor
        grad_in += grad_out
        log_g_in = log_g
    return log_g_in + rescale(grad_in)


@jit
def run(widths, batch, spec, draw_ab, seed, stream, wide, h0, grad_top, seg_len, stats):
    """Forward and backward through ``len(widths) - 1`` layers; fills ``stats`` (layers x N_STATS).

    Keeps the inputs, pre-activations, derivatives and weights of ``seg_len`` layers
    at a time, with a checkpoint of the input at each segment start; earlier segments
    are recomputed -- weights re-drawn from their streams -- during the backward
    pass, so memory is O(seg_len * width^2 + depth / seg_len * batch * width), never
    O(depth * width^2).  Every buffer is flat; ``_view`` takes a contiguous matrix
    from its start, as BLAS needs.
    """
    depth = widths.size - 1
    widest = widths.max()
    n_segments = (depth + seg_len - 1) // seg_len
    dtype = h0.dtype
    seg_h = np.empty((seg_len, batch * widest), dtype=dtype)
    seg_z = np.empty((seg_len, batch * widest), dtype=dtype)
    seg_dphi = np.empty((seg_len, batch * widest), dtype=dtype)
    seg_w = np.empty((seg_len, widest * widest), dtype=dtype)
    checkpoints = np.empty((n_segments, batch * widest), dtype=dtype)
    log_scales = np.zeros(depth + 1)  # log scale of each layer's input
    u = np.empty(batch * widest, dtype=dtype)
    bias = np.empty(widest, dtype=dtype)
    h_out = np.empty(batch * widest, dtype=dtype)
    partial = np.empty((batch, 5))
    scratch = np.empty(N_STATS)

    # Forward with statistics; segment slots are overwritten, the last segment's survive.
    _view(seg_h[0], batch, widths[0])[:, :] = h0
    for layer in range(1, depth + 1):
        slot = (layer - 1) % seg_len
        n_in, n_out = widths[layer - 1], widths[layer]
        h_in = _view(seg_h[slot], batch, n_in)
        if slot == 0:
            checkpoints[(layer - 1) // seg_len, : batch * n_in] = h_in.reshape(-1)
        log_scales[layer] = forward_layer(
            layer, h_in, log_scales[layer - 1], _view(seg_w[slot], n_out, n_in), _view(seg_z[slot], batch, n_out),
            _view(u, batch, n_out), _view(h_out, batch, n_out), _view(seg_dphi[slot], batch, n_out), bias[:n_out],
            partial, spec, draw_ab, wide, seed, stream, stats[layer - 1],
        )
        if layer < depth:
            _view(seg_h[layer % seg_len], batch, n_out)[:, :] = _view(h_out, batch, n_out)

    grad = np.empty(batch * widest, dtype=dtype)
    grad_in = np.empty(batch * widest, dtype=dtype)
    grad_act = np.empty(batch * widest, dtype=dtype)
    grad_z = np.empty(batch * widest, dtype=dtype)
    wgrad = np.empty(widest * widest, dtype=dtype)
    _view(grad, batch, widths[depth])[:, :] = grad_top
    log_g = 0.0
    for segment in range(n_segments - 1, -1, -1):
        first = segment * seg_len + 1
        last = min(depth, first + seg_len - 1)
        if segment != n_segments - 1:
            # Recompute this segment from its checkpoint: the same calls, so the same bits.
            _view(seg_h[0], batch, widths[first - 1])[:, :] = _view(checkpoints[segment], batch, widths[first - 1])
            for layer in range(first, last + 1):
                slot = layer - first
                n_in, n_out = widths[layer - 1], widths[layer]
                forward_layer(
                    layer, _view(seg_h[slot], batch, n_in), log_scales[layer - 1], _view(seg_w[slot], n_out, n_in),
                    _view(seg_z[slot], batch, n_out), _view(u, batch, n_out), _view(h_out, batch, n_out),
                    _view(seg_dphi[slot], batch, n_out), bias[:n_out], partial, spec, draw_ab, wide, seed, stream, scratch,
                )
                if layer < last:
                    _view(seg_h[slot + 1], batch, n_out)[:, :] = _view(h_out, batch, n_out)
        for layer in range(last, first - 1, -1):
            slot = layer - first
            n_in, n_out = widths[layer - 1], widths[layer]
            log_g = backward_layer(
                _view(grad, batch, n_out), log_g, _view(seg_h[slot], batch, n_in), log_scales[layer - 1],
                _view(seg_w[slot], n_out, n_in), _view(seg_z[slot], batch, n_out), _view(seg_dphi[slot], batch, n_out),
                _view(grad_act, batch, n_out), _view(grad_z, batch, n_out), _view(wgrad, n_out, n_in),
                _view(grad_in, batch, n_in), spec, stats[layer - 1],
            )
            _view(grad, batch, n_in)[:, :] = _view(grad_in, batch, n_in)
