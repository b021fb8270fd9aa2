"""Jitted kernels of :func:`fastinit.propagate`: pure functions over preallocated arrays.

Scales.  Arrays hold *scaled* values; the true value is ``exp(log_scale) * stored``
with the log scale kept in float64 beside them.  Forward (for positively homogeneous
activations): after each layer the activations are divided by their RMS and the RMS
goes into the log scale -- exact because ``phi(c z) = c phi(z)`` for ``c > 0``; bias
is divided by the same scale.  Backward: the gradient is linear in the readout
gradient, so it can always be rescaled the same way (and is, unless ``numerics="raw"``).
Batch norm is scale-invariant, so the forward scale resets to 1 after it.

Statistics accumulate in float64 in the same pass that applies the activation (or
the derivative, backward).  The batch is cut into ``N_BLOCKS`` fixed row blocks, each
with its own float64 accumulator per *column* (``acc[block, quantity, column]``): the
inner loop over columns then carries no dependency from one element to the next, so
LLVM vectorises it without reassociating anything.  Blocks are reduced serially in a
fixed order.  Non-finite entries make a total non-finite; only then (or when a sum of
squares is 0) a scalar pass counts them (the sums are then NaN: not known) or, if every
entry is finite and only float64's range was left, sums again in a power-of-two unit.

Threads.  :func:`run` starts ``n_workers`` workers once per call (:mod:`fastinit._team`);
they walk the layers together and meet at a spin barrier (:mod:`fastinit._sync`) between
phases, because waking sleeping threads per phase costs ~45 us each on the project
machine, more than a width-256 layer.  Work is cut by the shapes only,
never by the number of workers, so results do not depend on the thread count:

* *lanes*: the batch is cut into ``n_lanes`` row ranges, each a union of row blocks.
  A lane's forward GEMM, activation and statistics, and its backward derivative, GEMM
  and rescaling, run on its rows while they are in cache; every GEMM is a
  single-threaded BLAS call (the caller limits BLAS to one thread).
* *parts*: weight gradients and batch norm are cut by units into ``n_lanes`` parts
  (batch norm needs whole columns; a weight-gradient row sums over the whole batch).
* weight draws are cut into the sampler's chunks (:func:`fastinit.rng.fill_chunk`).

Worker ``k`` always takes lanes and parts ``k, k + n_workers, ...``; worker 0 alone
reduces statistics and writes ``stats``, and hands scalars to the others through a
small shared array.

Boundary.  :func:`run` takes ``n_workers`` and two records, :class:`LayerConfig` (what
the kernels read) and :class:`Workspace` (every array they read or write), built by
``fastinit.propagate.Plan``; the layer functions take the same records.  Compile time
is dominated by LLVM re-optimising every callee at each caller (numba links a callee's
code into each caller's module), so the code under :func:`walk` is kept small: no
slice assignments (numba compiles an error-message formatter into them) and no
literal constant arguments (each literal compiles a kernel's own copy).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fastinit import rng
from fastinit._jit import jit
from fastinit._sync import barrier
from fastinit._team import run_team, team_size
from fastinit.activations import apply, slope_from_output
from fastinit.initializers import CONSTANT, ORTHOGONAL

# Columns of the per-layer raw statistics array (``stats[layer - 1, column]``).  A sum is
# NaN when the matrix it sums has a non-finite entry (its ``*_NONFINITE`` count says how
# many): a sum over the finite entries only would be a statistic of another matrix.
FWD_SUM, FWD_SUMSQ, FWD_LOG_SCALE = 0, 1, 2
ACT_SUMSQ, ACT_LOG_SCALE = 3, 4
GRAD_SUM, GRAD_SUMSQ, GRAD_LOG_SCALE = 5, 6, 7
WGRAD_SUM, WGRAD_SUMSQ, WGRAD_LOG_SCALE = 8, 9, 10
DEAD_UNITS, SATURATED, CORR_SUM = 11, 12, 13
# Non-finite entries of z_l, h_l, dL/dz_l and dL/dW_l.
FWD_NONFINITE, ACT_NONFINITE, GRAD_NONFINITE, WGRAD_NONFINITE = 14, 15, 16, 17
N_STATS = 18

# |phi'(z)| below this counts as saturated (bounded activations only).
SATURATION = 1e-3
BATCHNORM_EPS = 1e-5  # PyTorch's default

# Substreams of a cell's stream: inputs and readout first, then two per layer.
SUB_INPUT, SUB_READOUT, SUB_INPUT_PAIR = 0, 1, 2

# Row blocks and the per-column accumulators of each (``acc[block, quantity, column]``).
N_BLOCKS = 8
ACC_SUM, ACC_SUMSQ, ACC_ACT_SUMSQ, ACC_ALIVE, ACC_SATURATED = 0, 1, 2, 3, 4
N_ACC = 5

# Scalars worker 0 hands to the others (``shared[...]``).
SHARED_FACTOR, SHARED_LOG_SCALE = 0, 1
N_SHARED = 2


@jit
def weight_substream(layer):
    """Substream of layer ``layer``'s weights (its bias uses the next one)."""
    return 2 * layer + 2


@jit
def _orthogonal(w, a, seed, stream, substream):
    """``a`` times a (semi-)orthogonal matrix: QR of a float64 Gaussian, signs fixed by diag(R)."""
    rows, cols = w.shape
    gaussian = np.empty(rows * cols, dtype=np.float64)
    rng.fill_serial(gaussian, np.bool_(True), rng.KIND_NORMAL, 1.0, 0.0, seed, stream, substream)
    matrix = gaussian.reshape((rows, cols))
    # Plain loops rather than ascontiguousarray, diag, sign of an array and broadcasting:
    # the same numbers, and far less code for every kernel above this one to compile.
    wide_w = rows < cols
    tall = np.empty((cols, rows)) if wide_w else matrix
    if wide_w:
        for i in range(rows):
            for j in range(cols):
                tall[j, i] = matrix[i, j]
    q, r = np.linalg.qr(tall)
    for i in range(rows):
        for j in range(cols):
            # Column k of q is signed by diag(R)[k]; a wide w is the signed q transposed.
            k, value = (i, q[j, i]) if wide_w else (j, q[i, j])
            w[i, j] = a * (value * np.sign(r[k, k]))


def draw_weights(w, kind, a, b, wide, seed, stream, substream):
    """Draw one weight matrix ``w`` (fan_out, fan_in) in place, as ``initializers.fill``
    (from Python: large matrices are drawn by a thread team)."""
    n_workers = team_size(rng.chunk_count(w.size, wide)) if w.size >= rng.PARALLEL_MIN_SAMPLES else 1
    run_team(draw_weights_share, n_workers, w, kind, a, b, wide, seed, stream, substream)


@jit
def draw_weights_share(worker, n_workers, w, kind, a, b, wide, seed, stream, substream):
    """Worker ``worker``'s share of :func:`draw_weights`: sampler chunks ``worker, worker +
    n_workers, ...``; constant and orthogonal matrices are drawn whole by worker 0."""
    if kind == CONSTANT or kind == ORTHOGONAL:
        if worker == 0:
            if kind == CONSTANT:
                w[:, :] = a
            else:
                _orthogonal(w, a, seed, stream, substream)
        return
    flat = w.reshape(-1)
    for chunk in range(worker, rng.chunk_count(flat.size, wide), n_workers):
        rng.fill_chunk(flat, chunk, wide, kind, a, b, seed, stream, substream)


@jit
def _block(rows, block):
    """Rows ``[start, stop)`` of block ``block``: a fixed partition with even starts,
    so that the row pairs (0, 1), (2, 3), ... of the cosine never straddle two blocks."""
    pairs = rows // 2
    start = 2 * (pairs * block // N_BLOCKS)
    stop = 2 * (pairs * (block + 1) // N_BLOCKS) if block < N_BLOCKS - 1 else rows
    return start, stop


@jit
def lane_blocks(lane, n_lanes):
    """Row blocks ``[first, stop)`` of lane ``lane`` (``n_lanes`` divides ``N_BLOCKS``)."""
    return lane * N_BLOCKS // n_lanes, (lane + 1) * N_BLOCKS // n_lanes


@jit
def lane_rows(rows, lane, n_lanes):
    """Rows ``[start, stop)`` of lane ``lane``: the rows of its blocks."""
    first, stop = lane_blocks(lane, n_lanes)
    return _block(rows, first)[0], _block(rows, stop - 1)[1]


@jit
def part(n, index, n_parts):
    """Units ``[start, stop)`` of part ``index`` of ``n`` units cut into ``n_parts``."""
    return n * index // n_parts, n * (index + 1) // n_parts


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


# ------------------------------------------------------------------ one row block
#
# The elementwise passes work on one row block at a time: a lane runs its own blocks,
# so the data are the rows its GEMM has just written.


@jit
def activate_block(block, z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, acc, corr):
    """Rows of block ``block``: ``h_out = branch_scale * phi(z)`` (plus ``h_in`` when
    ``residual``), ``dphi = phi'(z)``.

    Fills ``acc[block, ACC_*, column]`` (sum z, sum z^2, sum h^2, count of phi' != 0,
    count of saturated phi') and ``corr[block]``, the sum of the block's row pair
    cosines of ``h_out``.  All sums are of the stored (rounded) values.  The matrices
    are C-contiguous, so a block's rows are one contiguous run.
    """
    rows, cols = z.shape
    combine = residual or branch_scale != 1.0
    start, stop = _block(rows, block)
    first, last = start * cols, stop * cols
    z_flat, h_flat, d_flat, in_flat = z.reshape(-1), h_out.reshape(-1), dphi.reshape(-1), h_in.reshape(-1)
    apply(code, z_flat[first:last], param, h_flat[first:last], d_flat[first:last])
    if combine:
        for k in range(first, last):
            value = branch_scale * np.float64(h_flat[k])
            h_flat[k] = value + np.float64(in_flat[k]) if residual else value
    a = acc[block]
    _clear(a, np.int64(N_ACC), cols)
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


@jit
def backprop_block(block, grad_out, slope, branch_scale, grad, acc, with_stats, code, param, from_output):
    """Rows of block ``block``: ``grad = grad_out * branch_scale * phi'``; with ``with_stats``,
    column sums of ``grad`` and its square in ``acc[block, ACC_SUM]`` and ``acc[block, ACC_SUMSQ]``.

    ``slope`` holds ``phi'`` itself, or with ``from_output`` the layer's (rescaled) output,
    from which :func:`~fastinit.activations.slope_from_output` reads ``phi'``, rounded to
    ``slope``'s dtype as a stored ``phi'`` would be (leaky_relu's slope in float32).
    """
    rows, cols = grad.shape
    start, stop = _block(rows, block)
    a = acc[block]
    if with_stats:
        _clear(a, np.int64(2), cols)
    s, s2 = a[ACC_SUM], a[ACC_SUMSQ]
    if from_output:
        param = np.float64(slope.dtype.type(param))
    for i in range(start, stop):
        g_row, d_row, out_row = grad_out[i], slope[i], grad[i]
        if from_output:
            for j in range(cols):
                out_row[j] = g_row[j] * (branch_scale * slope_from_output(code, np.float64(d_row[j]), param))
        else:
            for j in range(cols):
                out_row[j] = g_row[j] * (branch_scale * d_row[j])
        if with_stats:
            for j in range(cols):
                v = np.float64(out_row[j])
                s[j] += v
                s2[j] += v * v


@jit
def column_sums_rows(x, start, stop, acc_block):
    """Column sums of rows ``[start, stop)`` of ``x`` and of their squares into
    ``acc_block[ACC_SUM]`` and ``acc_block[ACC_SUMSQ]``."""
    cols = x.shape[1]
    _clear(acc_block, np.int64(2), cols)
    s, s2 = acc_block[ACC_SUM], acc_block[ACC_SUMSQ]
    for i in range(start, stop):
        row = x[i]
        for j in range(cols):
            v = np.float64(row[j])
            s[j] += v
            s2[j] += v * v


@jit
def column_sums_block(block, x, acc):
    """:func:`column_sums_rows` over the rows of block ``block``, into ``acc[block]``."""
    start, stop = _block(x.shape[0], block)
    column_sums_rows(x, start, stop, acc[block])


@jit
def scale_rows(x, start, stop, factor):
    """``x[start:stop] *= factor`` (in float64, rounded once)."""
    cols = x.shape[1]
    for i in range(start, stop):
        row = x[i]
        for j in range(cols):
            row[j] = row[j] * factor


@jit
def transpose_rows(x, start, stop, out):
    """``out[:, start:stop] = x[start:stop].T`` in 16 x 16 tiles (both sides stay in cache lines)."""
    cols = x.shape[1]
    for i0 in range(start, stop, 16):
        i1 = min(i0 + 16, stop)
        for j0 in range(0, cols, 16):
            j1 = min(j0 + 16, cols)
            for j in range(j0, j1):
                out_row = out[j]
                for i in range(i0, i1):
                    out_row[i] = x[i, j]


# ------------------------------------------------------------------------ reductions


@jit
def total(acc, quantity, cols):
    """Sum of ``acc[:, quantity, :cols]`` over blocks (or parts), then columns, in a fixed order.

    Folds the blocks into block 0 (clobbering it) first: a vectorised pass.
    """
    first = acc[0, quantity]
    for block in range(1, acc.shape[0]):
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
    """Slow path, taken only when a fast total came out non-finite or a sum of squares 0:
    ``(sum, sum of squares, log_unit, non-finite count)`` of the finite entries of ``x``,
    the sums in units of ``exp(log_unit)``, the power of two just above the largest finite
    ``|entry|`` (1 if there is none).

    In those units neither sum can overflow float64 (each term is at most 1) and the
    largest terms cannot underflow; dividing by a power of two is exact (but for
    quotients below float64's normal range, whose share of the sums is below 1e-300).
    """
    flat = x.reshape(-1)
    largest = 0.0
    bad = 0
    for k in range(flat.size):
        v = abs(np.float64(flat[k]))
        if math.isfinite(v):
            largest = max(largest, v)
        else:
            bad += 1
    exponent = math.frexp(largest)[1] if largest > 0.0 else 0
    unit = math.ldexp(1.0, exponent)
    s = 0.0
    s2 = 0.0
    for k in range(flat.size):
        v = np.float64(flat[k])
        if math.isfinite(v):
            v /= unit
            s += v
            s2 += v * v
    return s, s2, exponent * math.log(2.0), bad


@jit
def checked_sums(x, acc):
    """Totals of ``acc``'s ACC_SUM / ACC_SUMSQ for the matrix ``x`` they were summed from:
    ``(sum, sum of squares, log_unit, non-finite count)``, the sums in units of ``exp(log_unit)``.

    Fast path: the totals, ``log_unit`` 0.  If a total is not finite, :func:`finite_sums`
    tells why: non-finite entries (then both sums are NaN, not known) or finite entries
    whose squares overflow float64 (then the sums are exact in a larger unit).  A zero sum
    of squares is checked the same way: every entry 0 (an exact zero, ``log_unit`` 0), or
    squares that underflow float64 (then the sums are exact in a smaller unit).
    """
    cols = x.shape[1]
    s = total(acc, np.int64(ACC_SUM), cols)
    s2 = total(acc, np.int64(ACC_SUMSQ), cols)
    # s2 == 0 with a non-zero entry: squares below float64's range (a subnormal net).
    if math.isfinite(s) and math.isfinite(s2) and s2 != 0.0:
        return s, s2, 0.0, 0
    s, s2, log_unit, bad = finite_sums(x)
    if bad > 0:
        return math.nan, math.nan, 0.0, bad
    return s, s2, log_unit, 0


@jit
def rms_factor(x, sumsq):
    """``(1 / RMS, log RMS)`` of ``x`` given its sum of squares (of its finite entries, found
    again if ``sumsq`` is not finite); ``(1, 0)`` -- leave ``x`` alone -- if that RMS is 0
    or not finite."""
    unit = 1.0
    if not math.isfinite(sumsq):
        _, sumsq, log_unit, _ = finite_sums(x)
        unit = math.exp(log_unit)
    rms = unit * math.sqrt(sumsq / x.size)
    if rms > 0.0 and math.isfinite(rms):
        return 1.0 / rms, math.log(rms)
    return 1.0, 0.0


# ----------------------------------------------------------------------- batch norm


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
def batchnorm_forward_columns(z, out, eps, first, stop):
    """Per-unit batch normalisation (gamma 1, beta 0) of columns ``[first, stop)`` into ``out``."""
    rows = z.shape[0]
    for j in range(first, stop):
        mean, inv = _column_standardizer(z, j, eps)
        for i in range(rows):
            out[i, j] = (z[i, j] - mean) * inv


@jit
def batchnorm_forward(z, out, eps):
    """Per-unit batch normalisation (gamma 1, beta 0); returns nothing, fills ``out``."""
    batchnorm_forward_columns(z, out, eps, 0, z.shape[1])


@jit
def batchnorm_backward_columns(z, grad_u, grad_z, eps, first, stop):
    """Gradient through batch normalisation for columns ``[first, stop)`` (``u = BN(z)``)."""
    rows = z.shape[0]
    for j in range(first, stop):
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
def batchnorm_backward(z, grad_u, grad_z, eps):
    """Gradient through batch normalisation: ``grad_z`` from ``grad_u`` (``u = BN(z)``)."""
    batchnorm_backward_columns(z, grad_u, grad_z, eps, 0, z.shape[1])


@jit
def _view(flat, rows, cols):
    """The contiguous ``(rows, cols)`` matrix at the start of the 1-D buffer ``flat``."""
    return flat[: rows * cols].reshape((rows, cols))


# --------------------------------------------------------------------------- records
#
# Two records cross the Python/kernel boundary (built by ``fastinit.propagate.Plan``, the
# one place that makes them).  numba types a NamedTuple by its fields' types, so every
# field keeps one type -- counts and codes int64, flags bool, parameters float64 -- and
# one record type compiles once per dtype.


class LayerConfig(NamedTuple):
    """What the kernels read and never write: the net, its layers and how the work is cut."""

    widths: np.ndarray  # int64 (depth + 1,): widths[0] input units, widths[l] layer l's units
    draw_ab: np.ndarray  # float64 (depth, 2): each layer's draw parameters (they depend on its fans)
    batch: int
    n_lanes: int  # 1, 2, 4 or 8 row ranges of the batch (see the module docstring)
    w_slots: int  # layers of a segment that keep their weights; the others are drawn again
    seed: np.uint64
    stream: np.uint64
    wide: bool  # the net is float64
    kind: int  # the initializer's sampler (fastinit.initializers: CONSTANT, ORTHOGONAL or an rng.KIND_*)
    code: int  # activation code (fastinit.activations)
    param: float  # activation parameter
    bias_std: float  # 0: no bias
    residual: bool
    alpha: float  # residual branch scale
    batchnorm: bool
    rescale_forward: bool
    rescale_backward: bool
    bounded: bool  # the activation is bounded: count saturated phi'
    slope_from_output: bool  # phi' is read off the layer's output, not stored


class Workspace(NamedTuple):
    """Every array the kernels read or write: inputs, the ``stats`` output, stored layers, scratch.

    Matrices live in flat rows sized for the widest layer; :func:`_view` takes a layer's
    contiguous matrix from a row's start, as BLAS needs.
    """

    h0: np.ndarray  # (batch, widths[0]) input batch
    grad_top: np.ndarray  # (batch, widths[-1]) dL/dh at the top
    stats: np.ndarray  # float64 (depth, N_STATS), written by worker 0
    seg_h: np.ndarray  # (seg_len, batch * widest): each stored layer's input
    seg_z: np.ndarray  # (seg_len under batch norm, else 1, batch * widest): pre-activations
    seg_dphi: np.ndarray  # (1 if slope_from_output else seg_len, batch * widest): phi'
    seg_w: np.ndarray  # (min(seg_len, w_slots + 1), widest^2): weights; slots from w_slots on share the last row
    checkpoints: np.ndarray  # (segments, batch * widest): the input of each segment's first layer
    sync: np.ndarray  # int64 (2,): the workers' barrier (fastinit._sync.barrier)
    shared: np.ndarray  # float64 (N_SHARED,): scalars worker 0 hands to the others
    u: np.ndarray  # (batch * widest,): BN(z)
    bias: np.ndarray  # (widest,)
    h_last: np.ndarray  # (batch * widest,): an output no later layer reads
    acc: np.ndarray  # float64 (N_BLOCKS, N_ACC, widest): per-block column accumulators
    acc_z: np.ndarray  # float64 (N_BLOCKS, 2, widest): z's, under batch norm
    acc_in: np.ndarray  # float64 (N_BLOCKS, 2, widest): the input gradient's
    acc_w: np.ndarray  # float64 (n_lanes, 2, widest): the weight gradient's, per part
    corr: np.ndarray  # float64 (N_BLOCKS,): per-block sums of row-pair cosines
    grad: np.ndarray  # (batch * widest,): dL/dh_out; swaps roles with grad_in layer by layer
    grad_in: np.ndarray  # (batch * widest,)
    grad_act: np.ndarray  # (batch * widest under batch norm, else 0,): dL/dBN(z)
    grad_z: np.ndarray  # (batch * widest,)
    grad_z_t: np.ndarray  # (batch * widest,): dL/dz transposed, for the weight gradient by units
    wgrad: np.ndarray  # (widest^2,)


# --------------------------------------------------------------------------- layers


@jit
def _share_and_rescale(worker, n_workers, cfg, ws, x, factor, log_scale):
    """Hand worker 0's ``factor`` and ``log_scale`` to every worker, then let each multiply
    its own lanes of ``x`` by ``factor``; returns the log scale."""
    if worker == 0:
        ws.shared[SHARED_FACTOR] = factor
        ws.shared[SHARED_LOG_SCALE] = log_scale
    barrier(ws.sync, n_workers)
    factor, log_scale = ws.shared[SHARED_FACTOR], ws.shared[SHARED_LOG_SCALE]
    if factor != 1.0:
        for lane in range(worker, cfg.n_lanes, n_workers):
            start, stop = lane_rows(x.shape[0], lane, cfg.n_lanes)
            scale_rows(x, start, stop, factor)
    return log_scale


@jit
def _slot(ws, layer):
    """Layer ``layer``'s slot in the stored segment."""
    return (layer - 1) % ws.seg_h.shape[0]


@jit
def _layer_weights(worker, n_workers, cfg, ws, layer, draw):
    """Layer ``layer``'s weight matrix in its slot of ``ws.seg_w``; with ``draw``, drawn
    there first (every worker its share, then a barrier)."""
    n_in, n_out = cfg.widths[layer - 1], cfg.widths[layer]
    w = _view(ws.seg_w[min(_slot(ws, layer), cfg.w_slots)], n_out, n_in)
    if draw:
        draw_weights_share(worker, n_workers, w, cfg.kind, cfg.draw_ab[layer - 1, 0], cfg.draw_ab[layer - 1, 1],
                           cfg.wide, cfg.seed, cfg.stream, weight_substream(layer))
    return w


@jit
def _pre_activation(cfg, ws, layer):
    """Layer ``layer``'s z: its own slot under batch norm (whose backward needs it), else one shared row."""
    return _view(ws.seg_z[_slot(ws, layer) if cfg.batchnorm else 0], cfg.batch, cfg.widths[layer])


@jit
def forward_layer(worker, n_workers, cfg, ws, layer, h_in, log_s_in, h_out, stats_row):
    """Layer ``layer`` forward from scaled ``h_in`` (true = exp(log_s_in) h_in) into ``h_out``;
    returns the log scale of ``h_out``.

    Called by every worker.  Draws the layer's weights and bias, fills its z (and
    ``ws.u = BN(z)`` with batch norm), ``h_out`` and phi' (its slot of ``ws.seg_dphi``, or
    one scratch row when the backward pass reads phi' off ``h_out``), and worker 0 the
    forward columns of ``stats_row``.  Each worker returns having rescaled its own lanes
    of ``h_out``, so a lane's next use of its rows needs no barrier.
    """
    n_lanes, bias_std, batchnorm, residual, bounded = cfg.n_lanes, cfg.bias_std, cfg.batchnorm, cfg.residual, cfg.bounded
    acc, acc_z, corr, sync = ws.acc, ws.acc_z, ws.corr, ws.sync
    rows, cols = cfg.batch, cfg.widths[layer]
    w = _layer_weights(worker, n_workers, cfg, ws, layer, np.bool_(True))
    z = _pre_activation(cfg, ws, layer)
    u = _view(ws.u, rows, cols)
    dphi = _view(ws.seg_dphi[0 if cfg.slope_from_output else _slot(ws, layer)], rows, cols)
    bias = ws.bias[:cols]
    if bias_std > 0.0 and worker == 0:
        rng.fill_serial(bias, cfg.wide, rng.KIND_NORMAL, bias_std * math.exp(-log_s_in), 0.0, cfg.seed, cfg.stream,
                        weight_substream(layer) + 1)
    barrier(sync, n_workers)

    branch = cfg.alpha if residual else 1.0
    if batchnorm and residual:
        branch *= math.exp(-log_s_in)  # the branch is added in h_in's units
    for lane in range(worker, n_lanes, n_workers):
        start, stop = lane_rows(rows, lane, n_lanes)
        if stop > start:
            np.dot(h_in[start:stop], w.T, z[start:stop])
        if bias_std > 0.0:
            for i in range(start, stop):  # a loop: a slice += compiles an error formatter (see _copy_lanes)
                z_row = z[i]
                for j in range(cols):
                    z_row[j] += bias[j]
        if not batchnorm:
            first, last = lane_blocks(lane, n_lanes)
            for block in range(first, last):
                activate_block(block, z, h_in, h_out, dphi, cfg.code, cfg.param, residual, branch, bounded, acc, corr)
    barrier(sync, n_workers)
    if batchnorm:
        # BN output is scale-free: with eps scaled to these units it is exact.
        eps = BATCHNORM_EPS * math.exp(-2.0 * log_s_in)
        for index in range(worker, n_lanes, n_workers):
            first, stop = part(cols, index, n_lanes)
            batchnorm_forward_columns(z, u, eps, first, stop)
        barrier(sync, n_workers)
        for lane in range(worker, n_lanes, n_workers):
            first, last = lane_blocks(lane, n_lanes)
            for block in range(first, last):
                activate_block(block, u, h_in, h_out, dphi, cfg.code, cfg.param, residual, branch, bounded, acc, corr)
                column_sums_block(block, z, acc_z)
        barrier(sync, n_workers)

    factor, log_s_out = 1.0, 0.0  # worker 0's are shared
    if worker == 0:
        # A plain batch-norm layer restarts at scale 1; a residual one stays in h_in's units.
        log_s_out = 0.0 if batchnorm and not residual else log_s_in
        fwd_sum, fwd_sumsq, fwd_unit, fwd_bad = checked_sums(z, acc_z if batchnorm else acc)
        act_sumsq = total(acc, np.int64(ACC_ACT_SUMSQ), cols)
        stats_row[SATURATED] = total(acc, np.int64(ACC_SATURATED), cols) if bounded else 0.0
        stats_row[DEAD_UNITS] = zero_columns(acc, np.int64(ACC_ALIVE), cols)
        cosines = 0.0
        for block in range(N_BLOCKS):
            cosines += corr[block]
        stats_row[CORR_SUM] = cosines / (rows // 2)
        stats_row[FWD_SUM] = fwd_sum
        stats_row[FWD_SUMSQ] = fwd_sumsq
        stats_row[FWD_LOG_SCALE] = log_s_in + fwd_unit
        stats_row[FWD_NONFINITE] = fwd_bad
        stats_row[ACT_SUMSQ] = act_sumsq
        stats_row[ACT_LOG_SCALE] = log_s_out
        stats_row[ACT_NONFINITE] = 0
        if not math.isfinite(act_sumsq) or act_sumsq == 0.0:  # as in checked_sums
            _, act_sq, act_unit, act_bad = finite_sums(h_out)
            stats_row[ACT_SUMSQ] = math.nan if act_bad > 0 else act_sq
            stats_row[ACT_LOG_SCALE] = log_s_out + act_unit
            stats_row[ACT_NONFINITE] = act_bad
            if act_bad > 0 or act_sq != 0.0:
                # The cosines' float64 sums of the same squares left float64's range too
                # (or met inf/NaN); an exact zero keeps its cosines (NaN: 0 / 0).
                stats_row[CORR_SUM] = math.nan
        if cfg.rescale_forward:
            factor, log_rms = rms_factor(h_out, act_sumsq)
            log_s_out += log_rms
    return _share_and_rescale(worker, n_workers, cfg, ws, h_out, factor, log_s_out)


@jit
def backward_layer(worker, n_workers, cfg, ws, layer, h_in, log_s_in, h_out, grad_out, log_g, grad_in, stats_row):
    """Layer ``layer`` backward; fills ``grad_in`` (scaled; not for layer 1) and returns its log scale.

    ``grad_in`` is rescaled to RMS 1 when ``cfg.rescale_backward``, else left raw.

    Called by every worker.  ``grad_out`` is dL/dh_out / exp(log_g); ``h_in`` and
    ``h_out`` are the layer's stored input and output (phi' is read off ``h_out`` when
    ``cfg.slope_from_output``).  The layer's weights are drawn again first if its slot
    keeps none.  Worker 0 writes the gradient statistics to ``stats_row``.  Each worker
    returns having rescaled its own lanes of ``grad_in``.
    """
    n_lanes, residual, batchnorm = cfg.n_lanes, cfg.residual, cfg.batchnorm
    code, param, from_output = cfg.code, cfg.param, cfg.slope_from_output
    acc, acc_in, acc_w, sync = ws.acc, ws.acc_in, ws.acc_w, ws.sync
    rows, n_in, n_out = cfg.batch, cfg.widths[layer - 1], cfg.widths[layer]
    redraw = _slot(ws, layer) >= cfg.w_slots
    w = _layer_weights(worker, n_workers, cfg, ws, layer, redraw)
    if redraw:
        barrier(sync, n_workers)
    z = _pre_activation(cfg, ws, layer)
    dphi = h_out if from_output else _view(ws.seg_dphi[_slot(ws, layer)], rows, n_out)
    grad_z = _view(ws.grad_z, rows, n_out)
    grad_act = _view(ws.grad_act, rows, n_out) if batchnorm else grad_z
    grad_z_t = _view(ws.grad_z_t, n_out, rows)
    wgrad = _view(ws.wgrad, n_out, n_in)
    with_grad_in = layer > 1
    branch = cfg.alpha if residual else 1.0
    log_gz = log_g
    if batchnorm:
        # z is stored in h_in's units: dL/dz_true = BN'(z_scaled) dL/du / exp(log_s_in).
        for lane in range(worker, n_lanes, n_workers):
            first, last = lane_blocks(lane, n_lanes)
            for block in range(first, last):
                backprop_block(block, grad_out, dphi, branch, grad_act, acc, np.bool_(False), code, param, from_output)
        barrier(sync, n_workers)
        eps = BATCHNORM_EPS * math.exp(-2.0 * log_s_in)
        for index in range(worker, n_lanes, n_workers):
            first, stop = part(n_out, index, n_lanes)
            batchnorm_backward_columns(z, grad_act, grad_z, eps, first, stop)
        barrier(sync, n_workers)
        log_gz = log_g - log_s_in
    skip_factor = math.exp(log_gz - log_g)  # the residual path's gradient in dL/dz's units
    for lane in range(worker, n_lanes, n_workers):
        first, last = lane_blocks(lane, n_lanes)
        for block in range(first, last):
            if batchnorm:
                column_sums_block(block, grad_z, acc)
            else:
                backprop_block(block, grad_out, dphi, branch, grad_z, acc, np.bool_(True), code, param, from_output)
        start, stop = lane_rows(rows, lane, n_lanes)
        transpose_rows(grad_z, start, stop, grad_z_t)
        if with_grad_in:
            if stop > start:
                np.dot(grad_z[start:stop], w, grad_in[start:stop])
            if residual:
                for i in range(start, stop):
                    in_row, out_row = grad_in[i], grad_out[i]
                    for j in range(n_in):
                        in_row[j] = in_row[j] * skip_factor + out_row[j]
            for block in range(first, last):
                column_sums_block(block, grad_in, acc_in)
    barrier(sync, n_workers)
    for index in range(worker, n_lanes, n_workers):
        first, stop = part(n_out, index, n_lanes)
        if stop > first:
            np.dot(grad_z_t[first:stop], h_in, wgrad[first:stop])
        column_sums_rows(wgrad, first, stop, acc_w[index])
    barrier(sync, n_workers)

    factor, log_g_in = 1.0, 0.0  # worker 0's are shared
    if worker == 0:
        s, s2, unit, bad = checked_sums(grad_z, acc)
        stats_row[GRAD_SUM] = s
        stats_row[GRAD_SUMSQ] = s2
        stats_row[GRAD_LOG_SCALE] = log_gz + unit
        stats_row[GRAD_NONFINITE] = bad
        s, s2, unit, bad = checked_sums(wgrad, acc_w)
        stats_row[WGRAD_SUM] = s
        stats_row[WGRAD_SUMSQ] = s2
        stats_row[WGRAD_LOG_SCALE] = log_gz + log_s_in + unit
        stats_row[WGRAD_NONFINITE] = bad
        log_g_in = log_g if residual else log_gz
        if with_grad_in and cfg.rescale_backward:  # numerics="raw" leaves the gradient as the hardware has it
            factor, log_rms = rms_factor(grad_in, total(acc_in, np.int64(ACC_SUMSQ), n_in))
            log_g_in += log_rms
    return _share_and_rescale(worker, n_workers, cfg, ws, grad_in, factor, log_g_in)


# Pages are first touched in 2 MiB regions (transparent huge pages), one 4 KiB page at a time.
_REGION_BYTES = 2 * 2**20
_PAGE_BYTES = 4096


@jit
def prefault(buffer, worker, n_workers):
    """Touch this worker's share of ``buffer``'s pages (2 MiB regions ``worker, worker +
    n_workers, ...``) so that the kernel's page zeroing is split between the workers.

    Otherwise whichever worker first writes a fresh 2 MiB huge page zeroes it alone (the
    stored layers of a width-256, depth-500 net are ~250 MB of them) while the other
    waits at the next barrier.  Writes zeros into memory that is not yet read.
    """
    flat = buffer.reshape(-1)
    region = _REGION_BYTES // flat.itemsize
    page = _PAGE_BYTES // flat.itemsize
    for start in range(worker * region, flat.size, n_workers * region):
        for k in range(start, min(start + region, flat.size), page):
            flat[k] = 0.0


@jit
def _copy_lanes(source, target, worker, n_workers, n_lanes):
    """``target[rows] = source[rows]`` for this worker's lanes (matrices of one shape)."""
    cols = source.shape[1]
    for lane in range(worker, n_lanes, n_workers):
        start, stop = lane_rows(source.shape[0], lane, n_lanes)
        # A loop, not a slice assignment: numba's compiles an error message formatter
        # (string code) into every kernel above it.
        for i in range(start, stop):
            source_row, target_row = source[i], target[i]
            for j in range(cols):
                target_row[j] = source_row[j]


@jit
def walk(worker, n_workers, cfg, ws):
    """Worker ``worker``'s walk through every layer, forward then backward (see :func:`run`)."""
    widths, batch, n_lanes, seg_h = cfg.widths, cfg.batch, cfg.n_lanes, ws.seg_h
    depth = widths.size - 1
    seg_len = seg_h.shape[0]
    n_segments = (depth + seg_len - 1) // seg_len
    log_scales = np.zeros(depth + 1)  # log scale of each layer's input (every worker keeps a copy)
    scratch = np.empty(N_STATS)
    if n_workers > 1:
        for buffer in (ws.seg_h, ws.seg_z, ws.seg_dphi, ws.seg_w):
            prefault(buffer, worker, n_workers)
        barrier(ws.sync, n_workers)

    # Forward with statistics; segment slots are overwritten, the last segment's survive.
    # Each layer writes its output straight into the next layer's input slot.
    _copy_lanes(ws.h0, _view(seg_h[0], batch, widths[0]), worker, n_workers, n_lanes)
    for layer in range(1, depth + 1):
        slot = (layer - 1) % seg_len
        h_in = _view(seg_h[slot], batch, widths[layer - 1])
        if slot == 0:
            _copy_lanes(h_in, _view(ws.checkpoints[(layer - 1) // seg_len], batch, widths[layer - 1]), worker,
                        n_workers, n_lanes)
        into_slot = layer < depth and seg_len > 1
        h_out = _view(seg_h[layer % seg_len] if into_slot else ws.h_last, batch, widths[layer])
        log_scales[layer] = forward_layer(worker, n_workers, cfg, ws, layer, h_in, log_scales[layer - 1], h_out,
                                          ws.stats[layer - 1] if worker == 0 else scratch)
        if layer < depth and not into_slot:
            _copy_lanes(h_out, _view(seg_h[0], batch, widths[layer]), worker, n_workers, n_lanes)

    grad, grad_in = ws.grad, ws.grad_in
    _copy_lanes(ws.grad_top, _view(grad, batch, widths[depth]), worker, n_workers, n_lanes)
    log_g = 0.0
    for segment in range(n_segments - 1, -1, -1):
        first = segment * seg_len + 1
        last = min(depth, first + seg_len - 1)
        if segment != n_segments - 1:
            # Recompute this segment from its checkpoint: the same calls, so the same bits.
            _copy_lanes(_view(ws.checkpoints[segment], batch, widths[first - 1]),
                        _view(seg_h[0], batch, widths[first - 1]), worker, n_workers, n_lanes)
            for layer in range(first, last + 1):
                slot = layer - first
                h_out = _view(seg_h[slot + 1] if layer < last else ws.h_last, batch, widths[layer])
                forward_layer(worker, n_workers, cfg, ws, layer, _view(seg_h[slot], batch, widths[layer - 1]),
                              log_scales[layer - 1], h_out, scratch)
        for layer in range(last, first - 1, -1):
            slot = layer - first
            h_out = _view(seg_h[slot + 1] if layer < last else ws.h_last, batch, widths[layer])
            log_g = backward_layer(worker, n_workers, cfg, ws, layer, _view(seg_h[slot], batch, widths[layer - 1]),
                                   log_scales[layer - 1], h_out, _view(grad, batch, widths[layer]), log_g,
                                   _view(grad_in, batch, widths[layer - 1]),
                                   ws.stats[layer - 1] if worker == 0 else scratch)
            grad, grad_in = grad_in, grad  # this layer's input gradient is the next one's output gradient


def run(n_workers, cfg, ws):
    """Forward and backward through ``len(cfg.widths) - 1`` layers; fills ``ws.stats`` (layers x N_STATS).

    Keeps, for ``seg_len`` layers at a time, each layer's input and derivative (and its
    pre-activation, which only batch norm's backward needs), with a checkpoint of the
    input at each segment start; earlier segments are recomputed -- weights re-drawn
    from their streams -- during the backward pass, so memory is
    O(seg_len * width^2 + depth / seg_len * batch * width), never O(depth * width^2).
    Weights are kept for the first ``cfg.w_slots`` layers of a segment and drawn again in
    the backward pass for the others (the cheaper way to fit a budget than recomputing:
    a draw, no GEMM).  The buffers (:class:`Workspace`) come preallocated from
    ``fastinit.propagate.Plan.workspace``.

    ``n_workers`` (at most ``cfg.n_lanes``) concurrent walks on a thread team
    (:mod:`fastinit._team`), with the same result for any ``n_workers``.
    """
    run_team(walk, n_workers, cfg, ws)
