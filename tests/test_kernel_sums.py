"""The row-block reductions and the float64 power of two, bit for bit against NumPy twins.

The kernels add several rows per pass over the columns (``fastinit._kernels.blocks``) and build
2^k from its bits (``fastinit._float_bits``); both are meant to give exactly the numbers of the
plain formulation: the column sums of one row at a time, in row order, and ``np.ldexp(1, k)``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastinit import activations
from fastinit._float_bits import power_of_two
from fastinit._kernels import blocks


def _row_by_row(x, start, stop):
    """Column sums of rows ``[start, stop)`` of ``x`` and of their squares, adding one row at a time in float64."""
    s = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1])
    for row in x[start:stop].astype(np.float64):
        s = s + row
        s2 = s2 + row * row
    return s, s2


def _awkward(rows, cols, dtype, seed):
    """Entries over 12 decades with both signs (sums that depend on their order), some exact zeros."""
    generator = np.random.default_rng(seed)
    x = generator.standard_normal((rows, cols)) * 10.0 ** generator.uniform(-6, 6, (rows, cols))
    x[generator.random((rows, cols)) < 0.1] = 0.0
    return x.astype(dtype)


@numba.njit
def _column_sums(x, start, stop, widest):
    acc = np.full((blocks.N_ACC, widest), np.nan)  # a wider accumulator than x, as the workspace's
    blocks.column_sums_rows(x, start, stop, acc)
    return acc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("start, stop", [(0, 32), (3, 32), (0, 7), (5, 6), (4, 4), (1, 30)])
@pytest.mark.parametrize("cols", [1, 7, 64, 130])
def test_column_sums_are_the_row_by_row_sums(dtype, start, stop, cols):
    x = _awkward(32, cols, dtype, seed=cols + 100 * start + stop)
    acc = _column_sums(x, np.int64(start), np.int64(stop), cols + 5)
    s, s2 = _row_by_row(x, start, stop)
    np.testing.assert_array_equal(acc[blocks.ACC_SUM, :cols], s)
    np.testing.assert_array_equal(acc[blocks.ACC_SUMSQ, :cols], s2)
    assert np.isnan(acc[blocks.ACC_SUM, cols:]).all()  # beyond the layer's width: untouched


@numba.njit
def _block_rows(rows, block):
    return blocks._block(rows, block)


@numba.njit
def _activate(z, code, bounded):
    rows, cols = z.shape
    h, d = np.empty_like(z), np.empty_like(z)
    acc = np.zeros((blocks.N_BLOCKS, blocks.N_ACC, cols))
    corr = np.zeros(blocks.N_BLOCKS)
    for block in range(blocks.N_BLOCKS):
        blocks.activate_block(np.int64(block), z, z, h, d, code, 0.0, False, 1.0, bounded, acc, corr)
    return h, d, acc


@pytest.mark.parametrize("rows", [16, 37, 256])
def test_activate_block_statistics_are_the_row_by_row_sums(rows):
    """Every accumulator of every row block (tanh: bounded, so all five are filled)."""
    z = (np.random.default_rng(rows).standard_normal((rows, 48)) * 3.0).astype(np.float32)
    z[0, :5] = 0.0
    h, d, acc = _activate(z, np.int64(activations.TANH), True)
    for block in range(blocks.N_BLOCKS):
        start, stop = _block_rows(rows, block)
        s, s2 = _row_by_row(z, start, stop)
        _, h2 = _row_by_row(h, start, stop)
        alive = (d[start:stop] != 0).sum(axis=0, dtype=np.float64)
        saturated = (np.abs(d[start:stop].astype(np.float64)) < blocks.SATURATION).sum(axis=0, dtype=np.float64)
        np.testing.assert_array_equal(acc[block, blocks.ACC_SUM], s)
        np.testing.assert_array_equal(acc[block, blocks.ACC_SUMSQ], s2)
        np.testing.assert_array_equal(acc[block, blocks.ACC_ACT_SUMSQ], h2)
        np.testing.assert_array_equal(acc[block, blocks.ACC_ALIVE], alive)
        np.testing.assert_array_equal(acc[block, blocks.ACC_SATURATED], saturated)
    assert acc[:, blocks.ACC_SATURATED].sum() > 0  # the test meets saturated entries


@numba.njit
def _backprop(grad_out, slope, code):
    rows, cols = grad_out.shape
    grad = np.empty_like(grad_out)
    acc = np.zeros((blocks.N_BLOCKS, blocks.N_ACC, cols))
    for block in range(blocks.N_BLOCKS):
        blocks.backprop_block(np.int64(block), grad_out, slope, 0.5, grad, acc, True, code, 0.0, False)
    return grad, acc


@pytest.mark.parametrize("rows", [16, 37, 256])
def test_backprop_block_statistics_are_the_row_by_row_sums(rows):
    generator = np.random.default_rng(rows)
    grad_out = _awkward(rows, 33, np.float32, seed=rows)
    slope = (generator.random((rows, 33)) < 0.5).astype(np.float32)
    grad, acc = _backprop(grad_out, slope, np.int64(activations.RELU))
    np.testing.assert_array_equal(grad, (grad_out.astype(np.float64) * (0.5 * slope)).astype(np.float32))
    for block in range(blocks.N_BLOCKS):
        start, stop = _block_rows(rows, block)
        s, s2 = _row_by_row(grad, start, stop)
        np.testing.assert_array_equal(acc[block, blocks.ACC_SUM], s)
        np.testing.assert_array_equal(acc[block, blocks.ACC_SUMSQ], s2)


@numba.njit
def _powers(ks):
    out = np.empty(ks.shape[0])
    for i in range(ks.shape[0]):
        out[i] = power_of_two(ks[i])
    return out


def test_power_of_two_is_ldexp_over_float64s_normal_exponents():
    ks = np.arange(-1022, 1024, dtype=np.int32)
    np.testing.assert_array_equal(_powers(ks), np.ldexp(1.0, ks.astype(np.int64)))


def test_power_of_two_takes_only_an_int32():
    with pytest.raises(numba.TypingError):
        _powers(np.arange(3, dtype=np.int64))


def _interleaved_cosine(a, b):
    """The kernel's cosine order: float64 products summed in 4 chains by index mod 4 (the last n % 4 elements
    added to chain 0), in increasing index; cumsum adds strictly left to right."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    whole = 4 * (x.size // 4)

    def chains(u, v):
        sums = [np.cumsum(u[k:whole:4] * v[k:whole:4])[-1] if whole else 0.0 for k in range(4)]
        for j in range(whole, x.size):
            sums[0] = sums[0] + u[j] * v[j]
        return (sums[0] + sums[1]) + (sums[2] + sums[3])

    with np.errstate(invalid="ignore", over="ignore"):  # an inf entry: inf / inf, NaN as in the kernel
        dot, n1, n2 = chains(x, y), chains(x, x), chains(y, y)
        return dot / np.sqrt(n1 * n2) if n1 > 0.0 and n2 > 0.0 else np.nan


@numba.njit
def _pair_cosines(h):
    return blocks._pair_cosines(h, 0, h.shape[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cols", [1, 3, 4, 7, 64, 65, 258])
def test_pair_cosines_are_the_interleaved_float64_sums(dtype, cols):
    """Row pairs with entries over 12 decades (sums that depend on their order), an all-zero row (0/0: NaN) and
    an infinite entry."""
    h = _awkward(12, cols, dtype, seed=cols)
    h[2] = 0.0
    h[9, 0] = np.inf
    expected = sum(_interleaved_cosine(h[i - 1], h[i]) for i in range(1, 12, 2))
    assert np.isnan(expected)  # the zero row's cosine is NaN, and so is the block's sum
    finite = sum(_interleaved_cosine(h[i - 1], h[i]) for i in (1, 5))
    np.testing.assert_array_equal(_pair_cosines(h[[0, 1, 4, 5]]), finite)
    np.testing.assert_array_equal(_pair_cosines(h), expected)
