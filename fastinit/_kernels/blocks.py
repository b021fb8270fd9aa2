"""Row blocks, lanes and parts, and the elementwise passes over one row block.

The batch is cut into ``N_BLOCKS`` fixed row blocks, each with its own float64 accumulator
per *column* (``acc[block, quantity, column]``): the inner loop over columns then carries no
dependency from one element to the next, so LLVM vectorises it without reassociating
anything.  A lane is a union of blocks (its rows are those its GEMM has just written, still
in cache); a part is a range of units (columns), for work that needs whole columns.
The cuts depend on the shapes only, never on the number of workers.
"""

from __future__ import annotations

import math

import numpy as np

from fastinit._jit import jit
from fastinit._kernels.simd import interleaved_products
from fastinit.activations import apply, slope_from_output

# |phi'(z)| below this counts as saturated (bounded activations only).
SATURATION = 1e-3

# Row blocks and the per-column accumulators of each (``acc[block, quantity, column]``).
N_BLOCKS = 8
ACC_SUM, ACC_SUMSQ, ACC_ACT_SUMSQ, ACC_ALIVE, ACC_SATURATED = 0, 1, 2, 3, 4
N_ACC = 5


@jit(inner=True)
def view(flat, rows, cols):
    """The contiguous ``(rows, cols)`` matrix at the start of the 1-D buffer ``flat``."""
    return flat[: rows * cols].reshape((rows, cols))


@jit(inner=True)
def _block(rows, block):
    """Rows ``[start, stop)`` of block ``block``: a fixed partition with even starts,
    so that the row pairs (0, 1), (2, 3), ... of the cosine never straddle two blocks."""
    pairs = rows // 2
    start = 2 * (pairs * block // N_BLOCKS)
    stop = 2 * (pairs * (block + 1) // N_BLOCKS) if block < N_BLOCKS - 1 else rows
    return start, stop


@jit(inner=True)
def lane_blocks(lane, n_lanes):
    """Row blocks ``[first, stop)`` of lane ``lane`` (``n_lanes`` divides ``N_BLOCKS``)."""
    return lane * N_BLOCKS // n_lanes, (lane + 1) * N_BLOCKS // n_lanes


@jit(inner=True)
def lane_rows(rows, lane, n_lanes):
    """Rows ``[start, stop)`` of lane ``lane``: the rows of its blocks."""
    first, stop = lane_blocks(lane, n_lanes)
    return _block(rows, first)[0], _block(rows, stop - 1)[1]


@jit(inner=True)
def part(n, index, n_parts):
    """Units ``[start, stop)`` of part ``index`` of ``n`` units cut into ``n_parts``."""
    return n * index // n_parts, n * (index + 1) // n_parts


@jit(inner=True)
def _clear(acc_block, quantities, cols):
    for k in range(quantities):
        row = acc_block[k]
        for j in range(cols):
            row[j] = 0.0


@jit(inline=True)
def _cosine(a, b):
    """Cosine of the 1-D arrays ``a`` and ``b`` in float64 (NaN if either is 0).

    Four interleaved partial sums per quantity (:func:`~fastinit._kernels.simd.interleaved_products`,
    the first ``4 * (n // 4)`` elements in vector lanes; the rest added to lane 0 here) give a
    fixed order: no reassociation needed, the same bits on every machine.  Measured faster than a
    vectorised product pass plus a pairwise (tree) sum, whose fixed cost dominates short rows.
    """
    n = a.shape[0]
    d0, d1, d2, d3, p0, p1, p2, p3, q0, q1, q2, q3 = interleaved_products(a, b)
    for j in range(4 * (n // 4), n):
        x, y = np.float64(a[j]), np.float64(b[j])
        d0 += x * y
        p0 += x * x
        q0 += y * y
    dot = (d0 + d1) + (d2 + d3)
    n1 = (p0 + p1) + (p2 + p3)
    n2 = (q0 + q1) + (q2 + q3)
    return dot / math.sqrt(n1 * n2) if n1 > 0.0 and n2 > 0.0 else math.nan


@jit(inline=True)
def _pair_cosines(h, start, stop):
    """Sum of the cosines of the row pairs (start, start + 1), ... of ``h`` (``start`` even)."""
    cosines = 0.0
    for i in range(start + 1, stop, 2):
        cosines += _cosine(h[i - 1], h[i])
    return cosines


# ------------------------------------------------------------------ one row block
#
# The elementwise passes work on one row block at a time: a lane runs its own blocks,
# so the data are the rows its GEMM has just written.


@jit(inner=True)
def activate_block(block, z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, acc, corr):
    """Rows of block ``block``: ``h_out = branch_scale * phi(z)`` (plus ``h_in`` when
    ``residual``), ``dphi = phi'(z)``.

    Fills ``acc[block, ACC_*, column]`` (sum z, sum z^2, sum h^2, count of phi' != 0,
    count of saturated phi') and ``corr[block]``, the sum of the block's row pair
    cosines of ``h_out``.  All sums are of the stored (rounded) values.  The matrices
    are C-contiguous, so a block's rows are one contiguous run.
    """
    rows, cols = z.shape
    start, stop = _block(rows, block)
    activate_rows(z, h_in, h_out, dphi, code, param, residual, branch_scale, start, stop)
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
    corr[block] = _pair_cosines(h_out, start, stop)


@jit(inner=True)
def output_stats_block(block, h_out, acc, corr):
    """Rows of block ``block``: the column sums of ``h_out``'s squares into ``acc[block, ACC_ACT_SUMSQ]`` and
    the sum of its row pair cosines into ``corr[block]``, for a layer whose output is not the one
    :func:`activate_block` wrote (post-norm residual: the norm of it)."""
    rows, cols = h_out.shape
    start, stop = _block(rows, block)
    h2 = acc[block, ACC_ACT_SUMSQ]
    for j in range(cols):
        h2[j] = 0.0
    for i in range(start, stop):
        h_row = h_out[i]
        for j in range(cols):
            v = np.float64(h_row[j])
            h2[j] += v * v
    corr[block] = _pair_cosines(h_out, start, stop)


@jit(inner=True)
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
    # An output slope depends on the output's sign alone (Activation.output_slope): the two
    # slopes once, then a select per element (the dispatch per element stays a chain of
    # branches: 4x slower on random signs).
    rounded = np.float64(slope.dtype.type(param))
    above, below = slope_from_output(code, 1.0, rounded), slope_from_output(code, 0.0, rounded)
    for i in range(start, stop):
        g_row, d_row, out_row = grad_out[i], slope[i], grad[i]
        if from_output:
            for j in range(cols):
                v = d_row[j]
                known = below if v == v else math.nan
                out_row[j] = g_row[j] * (branch_scale * (above if v > 0.0 else known))
        else:
            for j in range(cols):
                out_row[j] = g_row[j] * (branch_scale * d_row[j])
        if with_stats:
            for j in range(cols):
                v = np.float64(out_row[j])
                s[j] += v
                s2[j] += v * v


@jit(inner=True)
def column_sums_rows(x, start, stop, acc_block):
    """Column sums of rows ``[start, stop)`` of ``x`` and of their squares into
    ``acc_block[ACC_SUM]`` and ``acc_block[ACC_SUMSQ]``."""
    cols = x.shape[1]
    _clear(acc_block, np.int64(2), cols)
    s, s2 = acc_block[ACC_SUM], acc_block[ACC_SUMSQ]
    # Four rows per pass over the columns, added in row order (``s[j] + x0 + x1`` is ``(s[j] + x0) + x1``):
    # the bits of one row at a time, with a quarter of the accumulators' loads and stores, which bound
    # this loop (Zen 4, one thread: dL/dW's column sums at width 1024, 253 -> 126 us).  Only here: the
    # same in the activation's and the backprop's passes saved little there and cost a cold start
    # about 2 s more compilation.
    whole = start + 4 * ((stop - start) // 4)
    for i in range(start, whole, 4):
        r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for j in range(cols):
            x0, x1, x2, x3 = np.float64(r0[j]), np.float64(r1[j]), np.float64(r2[j]), np.float64(r3[j])
            s[j] = s[j] + x0 + x1 + x2 + x3
            s2[j] = s2[j] + x0 * x0 + x1 * x1 + x2 * x2 + x3 * x3
    for i in range(whole, stop):
        row = x[i]
        for j in range(cols):
            v = np.float64(row[j])
            s[j] += v
            s2[j] += v * v


@jit(inner=True)
def column_sums_block(block, x, acc):
    """:func:`column_sums_rows` over the rows of block ``block``, into ``acc[block]``."""
    start, stop = _block(x.shape[0], block)
    column_sums_rows(x, start, stop, acc[block])


@jit(inner=True)
def scale_rows(x, start, stop, factor):
    """``x[start:stop] *= factor`` (in float64, rounded once)."""
    cols = x.shape[1]
    for i in range(start, stop):
        row = x[i]
        for j in range(cols):
            row[j] = row[j] * factor


# ------------------------------------------------------------------ any rows, no statistics
#
# The same passes for callers that keep no statistics (fastinit.train) or cut the batch
# their own way: the one activation apply and the one residual rule for every kernel.


# Inlined: activate_block's code stays what it was before train shared it (one function, one
# link level fewer to compile under propagate's walk).
@jit(inline=True)
def activate_rows(z, h_in, h_out, dphi, code, param, residual, branch_scale, start, stop):
    """Rows ``[start, stop)``: ``h_out = branch_scale * phi(z)`` (plus ``h_in`` when
    ``residual``), ``dphi = phi'(z)``; no statistics.

    phi and phi' come from :func:`fastinit.activations.apply` (its NaN rule); the branch
    and the skip path are combined in float64 and rounded once to ``h_out``'s dtype.
    The matrices are C-contiguous, so the rows are one contiguous run.
    """
    cols = z.shape[1]
    first, last = start * cols, stop * cols
    z_flat, h_flat, d_flat, in_flat = z.reshape(-1), h_out.reshape(-1), dphi.reshape(-1), h_in.reshape(-1)
    apply(code, z_flat[first:last], param, h_flat[first:last], d_flat[first:last])
    if residual or branch_scale != 1.0:
        for k in range(first, last):
            value = branch_scale * np.float64(h_flat[k])
            h_flat[k] = value + np.float64(in_flat[k]) if residual else value


@jit
def add_bias_rows(z, bias, start, stop):
    """``z[start:stop] += bias`` row by row, in ``z``'s dtype (a loop: a slice ``+=``
    compiles an error-message formatter into its caller)."""
    cols = z.shape[1]
    for i in range(start, stop):
        row = z[i]
        for j in range(cols):
            row[j] += bias[j]

