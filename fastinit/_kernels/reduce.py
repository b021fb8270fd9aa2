"""Reductions of the per-block accumulators, and the slow path that says why a total is not finite.

Blocks are reduced serially in a fixed order.  Non-finite entries make a total non-finite;
only then (or when a float64 sum of squares is 0) a scalar pass counts them (the sums are then
NaN: not known) or, if every entry is finite and only float64's range was left, sums again
in a power-of-two unit.
"""

from __future__ import annotations

import math

import numpy as np

from fastinit._jit import jit
from fastinit._kernels.blocks import ACC_SUM, ACC_SUMSQ, N_BLOCKS

_FLOAT64_MAX = np.finfo(np.float64).max


@jit(inner=True)
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


@jit(inner=True)
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


@jit(inner=True)
def _finite_extent(flat):
    """``(exponent, non-finite count)`` of the 1-D ``flat``: the power of two ``2^exponent`` just above its
    largest finite ``|entry|`` (exponent 0 if there is none), and how many entries are inf or NaN."""
    # Branch-free (selects): this pass runs for every layer of a net that overflowed.
    largest = 0.0
    bad = 0
    for k in range(flat.size):
        v = abs(np.float64(flat[k]))
        finite = v <= _FLOAT64_MAX  # False for inf and NaN
        largest = max(largest, v if finite else 0.0)
        bad += 0 if finite else 1
    return (math.frexp(largest)[1] if largest > 0.0 else 0), bad


@jit(inner=True)
def _sums_in_unit(flat, exponent):
    """Sum and sum of squares of the finite entries of the 1-D ``flat``, in units of ``2^exponent``."""
    # Times 2^-exponent: the same bits as dividing by the unit (one rounding of the same quotient).  Below
    # exponent -1022 that power is not a float64, but it scales up, so two exact steps give it.
    first = math.ldexp(1.0, -exponent) if exponent > -1023 else math.ldexp(1.0, 1022)
    second = 1.0 if exponent > -1023 else math.ldexp(1.0, -exponent - 1022)
    s = 0.0
    s2 = 0.0
    for k in range(flat.size):
        v = np.float64(flat[k])
        # A non-finite entry adds -0.0 to the sum and +0.0 to the squares: x + (-0.0) is x for every x, and
        # the squares' sum is never -0.0, so both sums are those of the finite entries alone.
        v = (v * first) * second if abs(v) <= _FLOAT64_MAX else -0.0
        s += v
        s2 += v * v
    return s, s2


@jit(inner=True)
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
    exponent, bad = _finite_extent(flat)
    if bad == flat.size:  # nothing finite to sum (a gradient that is NaN throughout)
        return 0.0, 0.0, 0.0, bad
    s, s2 = _sums_in_unit(flat, exponent)
    return s, s2, exponent * math.log(2.0), bad


@jit(inner=True)
def known_sums(x):
    """As :func:`finite_sums`, but where ``x`` has an inf or NaN entry its sums are not known: both NaN (unit
    0), and not summed (a net that overflowed takes this path for every matrix of every layer after)."""
    flat = x.reshape(-1)
    exponent, bad = _finite_extent(flat)
    if bad > 0:
        return math.nan, math.nan, 0.0, bad
    s, s2 = _sums_in_unit(flat, exponent)
    return s, s2, exponent * math.log(2.0), 0


@jit(inner=True)
def squares_can_vanish(x):
    """Whether a non-zero entry of ``x`` can have a float64 square of 0: for float64 entries below 2^-537,
    never for float32 ones (their smallest square, 2^-298, is a normal float64), whose zero sum of squares is
    therefore every entry 0 without a second look."""
    return x.itemsize >= 8


@jit(inner=True)
def checked_sums(x, acc):
    """Totals of ``acc``'s ACC_SUM / ACC_SUMSQ for the matrix ``x`` they were summed from:
    ``(sum, sum of squares, log_unit, non-finite count)``, the sums in units of ``exp(log_unit)``.

    Fast path: the totals, ``log_unit`` 0.  If a total is not finite, :func:`known_sums`
    tells why: non-finite entries (then both sums are NaN, not known) or finite entries
    whose squares overflow float64 (then the sums are exact in a larger unit).  A zero sum
    of squares is checked the same way: every entry 0 (an exact zero, ``log_unit`` 0), or
    squares that underflow float64 (then the sums are exact in a smaller unit); float32 entries cannot
    (:func:`squares_can_vanish`), so there it is the fast path.
    """
    cols = x.shape[1]
    s = total(acc, np.int64(ACC_SUM), cols)
    s2 = total(acc, np.int64(ACC_SUMSQ), cols)
    if math.isfinite(s) and math.isfinite(s2) and (s2 != 0.0 or not squares_can_vanish(x)):
        return s, s2, 0.0, 0
    return known_sums(x)


# A stored matrix whose RMS is below 2^SMALL_RMS_LOG2 is brought up by a power of two before a rescaled net's
# GEMMs multiply it (the next layer's z, and the weight gradient; see unit_power_of_two); above it, its products
# are normal numbers anyway, so the GEMMs' bits stay those of the unscaled product.
SMALL_RMS_LOG2 = -64
# The largest such power, 2^500: its inverse square, 2^-1000, is still a normal float64 (the layer divides
# sums back by it where the quotient stays normal), and float64's subnormals, 2^-1074 on, come up to 2^-574,
# whose products are normal numbers again.
_MAX_UNIT_EXPONENT = 500


@jit(inner=True)
def unit_power_of_two(sumsq, log_unit, size):
    """``2^k`` that brings a matrix of ``size`` entries to an RMS near 1, when its RMS is below
    ``2^SMALL_RMS_LOG2``; 1 otherwise, and when that RMS is 0 or not known.

    The matrix's sum of squares is ``sumsq`` in units of ``exp(log_unit)`` (as :func:`finite_sums` returns it).
    Multiplying by ``2^k`` is exact, subnormal entries included, and lifts every product with the matrix
    out of the subnormal range, where float arithmetic rounds to a fixed absolute grid and costs about
    100x more (x86 handles subnormal operands in microcode).
    """
    if not (sumsq > 0.0 and math.isfinite(sumsq)):
        return 1.0
    log2_rms = 0.5 * math.log2(sumsq / size) + log_unit / math.log(2.0)
    if log2_rms >= SMALL_RMS_LOG2:
        return 1.0
    return math.ldexp(1.0, min(int(-log2_rms), _MAX_UNIT_EXPONENT))


@jit(inner=True)
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


@jit
def sum_of_squares(x):
    """Float64 sum of squares of the 1-D array ``x``; inf and NaN propagate (they are data).

    Four interleaved partial sums give the CPU independent additions to overlap, in a
    fixed order (no reassociation needed, so the same bits on every machine).
    """
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
