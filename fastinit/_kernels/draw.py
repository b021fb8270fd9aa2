"""Weight draws inside the kernels: any layer's weights from their stream, in shares.

A layer's weights are a pure function of ``(seed, stream, weight_substream(layer))``, so the
backward pass draws them again instead of storing them; the draw is cut into the
sampler's chunks (:func:`fastinit.rng.fill_chunk`), so workers share it with the same bits.
"""

from __future__ import annotations

import numpy as np

from fastinit import rng
from fastinit._jit import jit
from fastinit.initializers import CONSTANT, ORTHOGONAL

# Substreams of a cell's stream: inputs and readout first, then two per layer.
SUB_INPUT, SUB_READOUT, SUB_INPUT_PAIR = 0, 1, 2


@jit
def weight_substream(layer):
    """Substream of layer ``layer``'s weights (its bias uses the next one)."""
    return 2 * layer + 2


@jit(inline=True)
def _orthogonal(w, a, seed, stream, substream):
    """``a`` times a (semi-)orthogonal matrix: QR of a float64 Gaussian, signs fixed by diag(R)."""
    rows, cols = w.shape
    gaussian = np.empty(rows * cols, dtype=np.float64)
    rng.fill_serial(gaussian, np.bool_(True), np.int64(rng.KIND_NORMAL), 1.0, 0.0, seed, stream, substream)
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
    """Draw one weight matrix ``w`` (fan_out, fan_in) in place from Python, with the numbers
    :func:`draw_weights_share` gives the kernels."""
    if kind == CONSTANT or kind == ORTHOGONAL:
        draw_weights_share(0, 1, w, kind, a, b, wide, seed, stream, substream)
    else:  # a sampler's draw needs no QR: rng.fill's kernels compile without LAPACK's code (seconds, cold)
        rng.fill(w, kind, a, b, seed, stream, substream)


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
    rng.fill_share(worker, n_workers, w.reshape(-1), wide, kind, a, b, seed, stream, substream)
