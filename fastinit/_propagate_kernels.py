"""Jitted kernels of :func:`fastinit.propagate`: pure functions over preallocated arrays.

Scales.  Arrays hold *scaled* values; the true value is ``exp(log_scale) * stored``
with the log scale kept in float64 beside them.  Forward (for positively homogeneous
activations): after each layer the activations are divided by their RMS and the RMS
goes into the log scale -- exact because ``phi(c z) = c phi(z)`` for ``c > 0``; bias
is divided by the same scale.  Backward: the gradient is linear in the readout
gradient, so it is always rescaled the same way.  Batch norm is scale-invariant, so
the forward scale resets to 1 after it.

Statistics accumulate in float64 in the same pass that applies the activation (or
the derivative, backward).  The batch is cut into ``N_BLOCKS`` fixed row blocks, each
with its own float64 accumulator per *column* (``acc[block, quantity, column]``): the
inner loop over columns then carries no dependency from one element to the next, so
LLVM vectorises it without reassociating anything, and parallel blocks never share an
accumulator.  Blocks are reduced serially in a fixed order, so the sums do not depend
on the thread count.  Non-finite entries make a total non-finite; only then a scalar
pass recounts them and sums the finite ones.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastinit import rng
from fastinit._jit import jit
from fastinit.activations import apply
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

# Row blocks and the per-column accumulators of each (``acc[block, quantity, column]``).
N_BLOCKS = 8
ACC_SUM, ACC_SUMSQ, ACC_ACT_SUMSQ, ACC_ALIVE, ACC_SATURATED = 0, 1, 2, 3, 4
N_ACC = 5
# Below this many entries a parallel region (waking the pool's sleeping threads) costs
# more than the vectorised pass it would split.
PARALLEL_MIN_ENTRIES = 1 << 17


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


@jit
def draw_layer_weights(layer, w, spec, draw_ab, wide, seed, stream):
    """Draw layer ``layer``'s weights into ``w`` from their substream (see :func:`draw_weights`)."""
    draw_weights(w, int(spec[0]), draw_ab[layer - 1, 0], draw_ab[layer - 1, 1], wide, seed, stream,
                 weight_substream(layer))


@jit
def _block(rows, block):
    """Rows ``[start, stop)`` of block ``block``: a fixed partition with even starts,
    so that the row pairs (0, 1), (2, 3), ... of the cosine never straddle two blocks."""
    pairs = rows // 2
    start = 2 * (pairs * block // N_BLOCKS)
    stop = 2 * (pairs * (block + 1) // N_BLOCKS) if block < N_BLOCKS - 1 else rows
    return start, stop


@jit
def _clear(acc_block, quantities, cols):
    for k in range(quantities):
        row = acc_block[k]
        for j in range(cols):
            row[j] = 0.0


@jit(inline=True)
def _cosine(a, b):
    """Cosine of the 1-D arrays ``a`` and ``b`` in float64 (NaN if either is 0).

    Four interleaved partial sums per quantity give the CPU independent additions to
    overlap (a fixed order: no reassociation needed).  Measured faster than a vectorised
    product pass plus a pairwise (tree) sum, whose fixed cost dominates short rows.
    """
    n = a.shape[0]
    d0 = d1 = d2 = d3 = 0.0
    p0 = p1 = p2 = p3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    quads = n // 4
    for k in range(quads):
        j = 4 * k
        x0, x1, x2, x3 = np.float64(a[j]), np.float64(a[j + 1]), np.float64(a[j + 2]), np.float64(a[j + 3])
        y0, y1, y2, y3 = np.float64(b[j]), np.float64(b[j + 1]), np.float64(b[j + 2]), np.float64(b[j + 3])
        d0 += x0 * y0
        d1 += x1 * y1
        d2 += x2 * y2
        d3 += x3 * y3
        p0 += x0 * x0
        p1 += x1 * x1
        p2 += x2 * x2
        p3 += x3 * x3
        q0 += y0 * y0
        q1 += y1 * y1
        q2 += y2 * y2
        q3 += y3 * y3
    for j in range(4 * quads, n):
        x, y = np.float64(a[j]), np.float64(b[j])
        d0 += x * y
        p0 += x * x
        q0 += y * y
    dot = (d0 + d1) + (d2 + d3)
    n1 = (p0 + p1) + (p2 + p3)
    n2 = (q0 + q1) + (q2 + q3)
    return dot / math.sqrt(n1 * n2) if n1 > 0.0 and n2 > 0.0 else math.nan


def _activate(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, acc, corr):
    """``h_out = branch_scale * phi(z)`` (plus ``h_in`` when ``residual``), ``dphi = phi'(z)``.

    Fills, per block, ``acc[block, ACC_*, column]`` (sum z, sum z^2, sum h^2, count of
    phi' != 0, count of saturated phi') and ``corr[block]``, the sum of the block's row
    pair cosines of ``h_out``.  All sums are of the stored (rounded) values.  The
    matrices are C-contiguous, so a block's rows are one contiguous run.
    """
    rows, cols = z.shape
    combine = residual or branch_scale != 1.0
    z_flat, h_flat, d_flat, in_flat = z.reshape(-1), h_out.reshape(-1), dphi.reshape(-1), h_in.reshape(-1)
    for block in numba.prange(N_BLOCKS):
        start, stop = _block(rows, block)
        first, last = start * cols, stop * cols
        apply(code, z_flat[first:last], param, h_flat[first:last], d_flat[first:last])
        if combine:
            for k in range(first, last):
                value = branch_scale * np.float64(h_flat[k])
                h_flat[k] = value + np.float64(in_flat[k]) if residual else value
        a = acc[block]
        _clear(a, N_ACC, cols)
        s, s2, h2, alive, saturated = a[ACC_SUM], a[ACC_SUMSQ], a[ACC_ACT_SUMSQ], a[ACC_ALIVE], a[ACC_SATURATED]
        for i in range(start, stop):
            z_row, h_row, d_row = z[i], h_out[i], dphi[i]
            # Separate loops: each touches few arrays, so LLVM's alias checks stay cheap
            # and every loop vectorises.
            for j in range(cols):
                x = np.float64(z_row[j])
                s[j] += x
                s2[j] += x * x
            for j in range(cols):
                v = np.float64(h_row[j])
                h2[j] += v * v
                alive[j] += 1.0 if d_row[j] != 0.0 else 0.0
            if bounded:
                for j in range(cols):
                    saturated[j] += 1.0 if abs(np.float64(d_row[j])) < SATURATION else 0.0
        cosines = 0.0
        for i in range(start + 1, stop, 2):
            cosines += _cosine(h_out[i - 1], h_out[i])
        corr[block] = cosines


_activate_parallel = jit(_activate, parallel=True)
_activate_serial = jit(_activate)


@jit
def activate(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, acc, corr):
    """:func:`_activate`, on the thread pool only when the layer is large enough to pay for it."""
    if z.size >= PARALLEL_MIN_ENTRIES:
        _activate_parallel(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, acc, corr)
    else:
        _activate_serial(z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, acc, corr)


def _backprop_activation(grad_out, dphi, branch_scale, grad, acc, with_stats):
    """``grad = grad_out * branch_scale * phi'``; with ``with_stats``, per-block column sums
    of ``grad`` and its square in ``acc[block, ACC_SUM]`` and ``acc[block, ACC_SUMSQ]``."""
    rows, cols = grad.shape
    for block in numba.prange(N_BLOCKS):
        start, stop = _block(rows, block)
        a = acc[block]
        if with_stats:
            _clear(a, 2, cols)
        s, s2 = a[ACC_SUM], a[ACC_SUMSQ]
        for i in range(start, stop):
            g_row, d_row, out_row = grad_out[i], dphi[i], grad[i]
            for j in range(cols):
                out_row[j] = g_row[j] * (branch_scale * d_row[j])
            if with_stats:
                for j in range(cols):
                    v = np.float64(out_row[j])
                    s[j] += v
                    s2[j] += v * v


_backprop_activation_parallel = jit(_backprop_activation, parallel=True)
_backprop_activation_serial = jit(_backprop_activation)


@jit
def backprop_activation(grad_out, dphi, branch_scale, grad, acc, with_stats):
    """:func:`_backprop_activation`, in parallel only for large layers."""
    if grad.size >= PARALLEL_MIN_ENTRIES:
        _backprop_activation_parallel(grad_out, dphi, branch_scale, grad, acc, with_stats)
    else:
        _backprop_activation_serial(grad_out, dphi, branch_scale, grad, acc, with_stats)


def _column_sums(x, acc):
    """Per-block column sums of ``x`` and ``x^2`` into ``acc[block, ACC_SUM / ACC_SUMSQ]``."""
    rows, cols = x.shape
    for block in numba.prange(N_BLOCKS):
        start, stop = _block(rows, block)
        a = acc[block]
        _clear(a, 2, cols)
        s, s2 = a[ACC_SUM], a[ACC_SUMSQ]
        for i in range(start, stop):
            row = x[i]
            for j in range(cols):
                v = np.float64(row[j])
                s[j] += v
                s2[j] += v * v


_column_sums_parallel = jit(_column_sums, parallel=True)
_column_sums_serial = jit(_column_sums)


def _scale(x, factor):
    """``x *= factor`` (in float64, rounded once), block by block."""
    rows, cols = x.shape
    for block in numba.prange(N_BLOCKS):
        start, stop = _block(rows, block)
        for i in range(start, stop):
            row = x[i]
            for j in range(cols):
                row[j] = row[j] * factor


_scale_parallel = jit(_scale, parallel=True)
_scale_serial = jit(_scale)


@jit
def scale(x, factor):
    """Multiply the matrix ``x`` by ``factor`` in place; in parallel only for large ``x``."""
    if x.size >= PARALLEL_MIN_ENTRIES:
        _scale_parallel(x, factor)
    else:
        _scale_serial(x, factor)


@jit
def total(acc, quantity, cols):
    """Sum of ``acc[:, quantity, :cols]`` over blocks, then columns, in a fixed order.

    Folds the blocks into block 0 (clobbering it) first: a vectorised pass.
    """
    first = acc[0, quantity]
    for block in range(1, N_BLOCKS):
        other = acc[block, quantity]
        for j in range(cols):
            first[j] += other[j]
    t = 0.0
    for j in range(cols):
        t += first[j]
    return t


@jit
def zero_columns(acc, quantity, cols):
    """Number of columns whose ``acc[:, quantity, column]`` is 0 in every block."""
    count = 0
    for j in range(cols):
        nonzero = False
        for block in range(N_BLOCKS):
            if acc[block, quantity, j] != 0.0:
                nonzero = True
        if not nonzero:
            count += 1
    return count


@jit
def finite_sums(x):
    """Float64 sum and sum of squares of the finite entries of ``x``, and the non-finite count.

    The slow path, taken only when a fast total came out non-finite.
    """
    flat = x.reshape(-1)
    s = 0.0
    s2 = 0.0
    bad = 0
    for k in range(flat.size):
        v = np.float64(flat[k])
        if math.isfinite(v):
            s += v
            s2 += v * v
        else:
            bad += 1
    return s, s2, bad


@jit
def checked_sums(x, acc):
    """Totals of ``acc``'s ACC_SUM / ACC_SUMSQ for the matrix ``x`` they were summed from,
    as ``(sum, sum of squares, non-finite count)`` over the finite entries of ``x``."""
    cols = x.shape[1]
    s = total(acc, ACC_SUM, cols)
    s2 = total(acc, ACC_SUMSQ, cols)
    if math.isfinite(s) and math.isfinite(s2):
        return s, s2, 0
    return finite_sums(x)


@jit
def sum_and_sumsq(x, acc):
    """Float64 sum and sum of squares of the finite entries of the matrix ``x``, and the non-finite count.

    ``acc`` is workspace of shape ``(N_BLOCKS, >= 2, >= x.shape[1])``.
    """
    if x.size >= PARALLEL_MIN_ENTRIES:
        _column_sums_parallel(x, acc)
    else:
        _column_sums_serial(x, acc)
    return checked_sums(x, acc)


@jit
def rescale_by(x, sumsq):
    """Divide ``x`` by ``sqrt(sumsq / x.size)`` in place and return its log (0, untouched, if
    that RMS is 0 or not finite)."""
    rms = math.sqrt(sumsq / x.size)
    if rms > 0.0 and math.isfinite(rms):
        scale(x, 1.0 / rms)
        return math.log(rms)
    return 0.0


@jit
def rescale(x, acc):
    """Divide ``x`` by the RMS of its finite entries in place and return ``log(RMS)`` (see :func:`rescale_by`)."""
    _, s2, _ = sum_and_sumsq(x, acc)
    return rescale_by(x, s2)


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
def _view(flat, rows, cols):
    """The contiguous ``(rows, cols)`` matrix at the start of the 1-D buffer ``flat``."""
    return flat[: rows * cols].reshape((rows, cols))


@jit
def forward_layer(layer, h_in, log_s_in, w, z, u, h_out, dphi, bias, acc, corr, spec, draw_ab, wide, seed, stream, stats_row):
    """One layer forward from scaled ``h_in`` (true = exp(log_s_in) h_in); returns log scale of ``h_out``.

    ``spec`` = (kind, unused, unused, bias_std, code, param, residual, alpha, batchnorm,
    rescale_forward, bounded) as float64; ``draw_ab[layer - 1]`` holds the layer's
    draw parameters (they depend on its fans).  Draws the layer's weights and bias, fills
    ``z``, ``h_out``, ``dphi`` (and ``u = BN(z)`` with batch norm), and the forward
    columns of ``stats_row``.  ``acc`` and ``corr`` are workspace.
    """
    bias_std = spec[3]
    code, param, residual, alpha = int(spec[4]), spec[5], spec[6] > 0.0, spec[7]
    batchnorm, rescale_forward, bounded = spec[8] > 0.0, spec[9] > 0.0, spec[10] > 0.0
    draw_layer_weights(layer, w, spec, draw_ab, wide, seed, stream)
    np.dot(h_in, w.T, z)
    if bias_std > 0.0:
        rng.fill_kernel(bias, wide, rng.KIND_NORMAL, bias_std * math.exp(-log_s_in), 0.0, seed, stream,
                        weight_substream(layer) + 1)
        z += bias
    rows, cols = z.shape
    branch = alpha if residual else 1.0
    log_s_out = log_s_in
    fwd_sum, fwd_sumsq, nonfinite = 0.0, 0.0, 0
    if batchnorm:
        # BN output is scale-free: with eps scaled to these units it is exact; a plain
        # layer then restarts at scale 1, a residual one adds the branch in h_in's units.
        batchnorm_forward(z, u, BATCHNORM_EPS * math.exp(-2.0 * log_s_in))
        if residual:
            branch *= math.exp(-log_s_in)
        else:
            log_s_out = 0.0
        activate(u, h_in, h_out, dphi, code, param, residual, branch, bounded, acc, corr)
    else:
        activate(z, h_in, h_out, dphi, code, param, residual, branch, bounded, acc, corr)
        fwd_sum, fwd_sumsq, nonfinite = checked_sums(z, acc)
    act_sumsq = total(acc, ACC_ACT_SUMSQ, cols)
    stats_row[ACT_SUMSQ] = act_sumsq
    stats_row[SATURATED] = total(acc, ACC_SATURATED, cols) if bounded else 0.0
    stats_row[DEAD_UNITS] = zero_columns(acc, ACC_ALIVE, cols)
    cosines = 0.0
    for block in range(N_BLOCKS):
        cosines += corr[block]
    stats_row[CORR_SUM] = cosines / (rows // 2)
    if batchnorm:  # z's own statistics: acc is free again
        fwd_sum, fwd_sumsq, nonfinite = sum_and_sumsq(z, acc)
    stats_row[FWD_SUM] = fwd_sum
    stats_row[FWD_SUMSQ] = fwd_sumsq
    stats_row[FWD_LOG_SCALE] = log_s_in
    stats_row[NONFINITE] = nonfinite
    stats_row[ACT_LOG_SCALE] = log_s_out
    if rescale_forward:
        # sum h^2 was taken from the stored values, in the order sum_and_sumsq uses; only
        # a non-finite one needs the pass that skips non-finite entries.
        if math.isfinite(act_sumsq):
            log_s_out += rescale_by(h_out, act_sumsq)
        else:
            log_s_out += rescale(h_out, acc)
    return log_s_out


@jit
def backward_layer(grad_out, log_g, h_in, log_s_in, w, z, dphi, grad_act, grad_z, wgrad, grad_in, spec, acc, stats_row):
    """One layer backward; fills ``grad_in`` (scaled) and returns its log scale.

    ``grad_out`` is dL/dh_out / exp(log_g).  Gradient statistics go to ``stats_row``;
    ``grad_act`` (batch norm only) and ``acc`` are workspace.
    """
    residual, alpha, batchnorm = spec[6] > 0.0, spec[7], spec[8] > 0.0
    branch = alpha if residual else 1.0
    log_gz = log_g
    if batchnorm:
        # z is stored in h_in's units: dL/dz_true = BN'(z_scaled) dL/du / exp(log_s_in).
        backprop_activation(grad_out, dphi, branch, grad_act, acc, False)
        batchnorm_backward(z, grad_act, grad_z, BATCHNORM_EPS * math.exp(-2.0 * log_s_in))
        log_gz = log_g - log_s_in
        s, s2, bad = sum_and_sumsq(grad_z, acc)
    else:
        backprop_activation(grad_out, dphi, branch, grad_z, acc, True)
        s, s2, bad = checked_sums(grad_z, acc)
    stats_row[GRAD_SUM] = s
    stats_row[GRAD_SUMSQ] = s2
    stats_row[GRAD_LOG_SCALE] = log_gz
    stats_row[NONFINITE] += bad
    np.dot(grad_z.T, h_in, wgrad)
    s, s2, _ = sum_and_sumsq(wgrad, acc)
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
    return log_g_in + rescale(grad_in, acc)


@jit
def run(widths, batch, spec, draw_ab, seed, stream, wide, h0, grad_top, seg_h, seg_z, seg_dphi, seg_w, checkpoints, w_slots, stats):
    """Forward and backward through ``len(widths) - 1`` layers; fills ``stats`` (layers x N_STATS).

    Keeps, for ``seg_len`` layers at a time, each layer's input and derivative (and its
    pre-activation, which only batch norm's backward needs), with a checkpoint of the
    input at each segment start; earlier segments are recomputed -- weights re-drawn
    from their streams -- during the backward pass, so memory is
    O(seg_len * width^2 + depth / seg_len * batch * width), never O(depth * width^2).
    Weights are kept for the first ``w_slots`` layers of a segment and drawn again in
    the backward pass for the others (the cheaper way to fit a budget than recomputing:
    a draw, no GEMM).  Every buffer is flat; ``_view`` takes a contiguous matrix from
    its start, as BLAS needs.

    The stored layers come preallocated (see ``propagate._workspace``): ``seg_h`` and
    ``seg_dphi`` with ``seg_len`` rows of ``batch * widest``, ``seg_z`` with ``seg_len``
    rows under batch norm (else 1), ``seg_w`` with ``min(seg_len, w_slots + 1)`` rows of
    ``widest^2`` (slots from ``w_slots`` on share the last row) and ``checkpoints`` with
    one row per segment.
    """
    depth = widths.size - 1
    widest = widths.max()
    seg_len = seg_h.shape[0]
    n_segments = (depth + seg_len - 1) // seg_len
    dtype = h0.dtype
    batchnorm = spec[8] > 0.0
    log_scales = np.zeros(depth + 1)  # log scale of each layer's input
    u = np.empty(batch * widest, dtype=dtype)
    bias = np.empty(widest, dtype=dtype)
    h_last = np.empty(batch * widest, dtype=dtype)  # output that no later layer reads
    acc = np.empty((N_BLOCKS, N_ACC, widest))
    corr = np.empty(N_BLOCKS)
    scratch = np.empty(N_STATS)

    # Forward with statistics; segment slots are overwritten, the last segment's survive.
    # Each layer writes its output straight into the next layer's input slot.
    _view(seg_h[0], batch, widths[0])[:, :] = h0
    for layer in range(1, depth + 1):
        slot = (layer - 1) % seg_len
        n_in, n_out = widths[layer - 1], widths[layer]
        h_in = _view(seg_h[slot], batch, n_in)
        if slot == 0:
            checkpoints[(layer - 1) // seg_len, : batch * n_in] = h_in.reshape(-1)
        into_slot = layer < depth and seg_len > 1
        h_out = _view(seg_h[layer % seg_len] if into_slot else h_last, batch, n_out)
        log_scales[layer] = forward_layer(
            layer, h_in, log_scales[layer - 1], _view(seg_w[min(slot, w_slots)], n_out, n_in),
            _view(seg_z[slot if batchnorm else 0], batch, n_out), _view(u, batch, n_out), h_out,
            _view(seg_dphi[slot], batch, n_out), bias[:n_out], acc, corr, spec, draw_ab, wide, seed, stream,
            stats[layer - 1],
        )
        if layer < depth and not into_slot:
            _view(seg_h[0], batch, n_out)[:, :] = h_out

    grad = np.empty(batch * widest, dtype=dtype)
    grad_in = np.empty(batch * widest, dtype=dtype)
    grad_act = np.empty(batch * widest if batchnorm else 0, dtype=dtype)
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
                h_out = _view(seg_h[slot + 1] if layer < last else h_last, batch, n_out)
                forward_layer(
                    layer, _view(seg_h[slot], batch, n_in), log_scales[layer - 1],
                    _view(seg_w[min(slot, w_slots)], n_out, n_in), _view(seg_z[slot if batchnorm else 0], batch, n_out),
                    _view(u, batch, n_out), h_out, _view(seg_dphi[slot], batch, n_out), bias[:n_out], acc, corr,
                    spec, draw_ab, wide, seed, stream, scratch,
                )
        for layer in range(last, first - 1, -1):
            slot = layer - first
            n_in, n_out = widths[layer - 1], widths[layer]
            w = _view(seg_w[min(slot, w_slots)], n_out, n_in)
            if slot >= w_slots:
                draw_layer_weights(layer, w, spec, draw_ab, wide, seed, stream)
            log_g = backward_layer(
                _view(grad, batch, n_out), log_g, _view(seg_h[slot], batch, n_in), log_scales[layer - 1], w,
                _view(seg_z[slot if batchnorm else 0], batch, n_out), _view(seg_dphi[slot], batch, n_out),
                _view(grad_act, batch, n_out) if batchnorm else _view(grad_z, batch, n_out),
                _view(grad_z, batch, n_out), _view(wgrad, n_out, n_in), _view(grad_in, batch, n_in), spec, acc,
                stats[layer - 1],
            )
            grad, grad_in = grad_in, grad  # this layer's input gradient is the next one's output gradient
