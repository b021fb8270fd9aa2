"""Weight draws inside the kernels: any layer's weights from their stream, in shares.

A layer's weights are a pure function of ``(seed, stream, weight_substream(layer))``, so the
backward pass draws them again instead of storing them; the draw is cut into the
sampler's chunks (:func:`fastinit.rng.fill_chunk`), so workers share it with the same bits.
"""

from __future__ import annotations

from fastinit import rng
from fastinit._jit import jit
from fastinit._kernels.orthogonal import call_orthogonal, draw_orthogonal
from fastinit.initializers import CONSTANT, ORTHOGONAL

# Substreams of a cell's stream: inputs and readout first, then two per layer.
SUB_INPUT, SUB_READOUT, SUB_INPUT_PAIR = 0, 1, 2


@jit
def weight_substream(layer):
    """Substream of layer ``layer``'s weights (its bias uses the next one)."""
    return 2 * layer + 2


def draw_weights(w, kind, a, b, seed, stream, substream):
    """Draw one weight matrix ``w`` (fan_out, fan_in) in place from Python, with the numbers
    :func:`draw_weights_share` gives the kernels."""
    if kind == CONSTANT:
        w[...] = a  # rounded to w's dtype as the kernels' assignment rounds it
    elif kind == ORTHOGONAL:
        draw_orthogonal(w, a, seed, stream, substream)
    else:
        rng.fill(w, kind, a, b, seed, stream, substream)


@jit(inner=True)
def draw_weights_share(worker, n_workers, w, kind, a, b, wide, seed, stream, substream, orthogonal):
    """Worker ``worker``'s share of :func:`draw_weights`: its share of the sampler's chunks
    (:func:`fastinit.rng.fill_share`); constant and orthogonal matrices are drawn whole by worker 0.

    Parameters
    ----------
    worker, n_workers : int
    w : numpy.ndarray
        The (fan_out, fan_in) matrix, C-contiguous.
    kind : int
        ``CONSTANT``, ``ORTHOGONAL`` or an ``rng.KIND_*``.
    a, b : float
        The draw's parameters.
    wide : bool
        ``w`` is float64.
    seed, stream, substream : int
        The layer's stream.
    orthogonal : int
        For ``ORTHOGONAL``, the draw's address (:func:`fastinit._kernels.orthogonal.address`
        for ``w``'s dtype); unused for the other kinds.
    """
    if kind == CONSTANT or kind == ORTHOGONAL:
        if worker == 0:
            if kind == CONSTANT:
                w[:, :] = a
            else:
                call_orthogonal(orthogonal, w, a, seed, stream, substream)
        return
    rng.fill_share(worker, n_workers, w.reshape(-1), wide, kind, a, b, seed, stream, substream)
