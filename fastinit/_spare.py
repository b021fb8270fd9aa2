"""The big buffers of the last finished kernel run, lent to the next run of the same shapes.

A deep net's stored layers are hundreds of megabytes of fresh memory per call, and Linux hands
fresh memory over one page fault (and one zeroed page) at a time: measured 2-7 % of a repeated
``propagate`` call (widths 64-1024, 2-core AMD EPYC), and all of it again in the next call of
the same shapes -- a sweep's cells, a benchmark's repeats.  So ``propagate`` gives its buffers
back when a run finishes, and the next run takes those of matching name, shape and dtype
instead of allocating; it drops the others before allocating anything, so at most one run's
buffers are held at any time, in use or spare.  :func:`release` drops them.

The kernels never read a buffer before writing it (they are ``np.empty`` either way), so a
lent buffer changes no result (``tests/test_spare.py`` lends NaN-filled ones).  Taking and
giving back are locked: concurrent runs each get their own buffers.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["take", "give_back", "release"]

_lock = threading.Lock()
_spare: dict[tuple, np.ndarray] = {}  # (name, shape, dtype) -> a buffer no run is using


def take(shapes: dict, dtype) -> dict[str, np.ndarray]:
    """Uninitialised buffers for a run: the spare ones of matching name, shape and dtype, new ones for the rest.

    Spares that do not match are dropped first, so that they are not held while the new ones are made.

    Parameters
    ----------
    shapes : dict of str to int or tuple of int
        Each buffer's role (a ``Workspace`` field) and shape.
    dtype : numpy dtype

    Returns
    -------
    dict of str to numpy.ndarray
        C-contiguous, contents undefined.
    """
    dtype = np.dtype(dtype)
    wanted = {name: tuple(np.atleast_1d(shape).tolist()) for name, shape in shapes.items()}
    with _lock:
        lent = {name: _spare.pop(key) for name, shape in wanted.items() if (key := (name, shape, dtype)) in _spare}
        _spare.clear()
    return {name: lent[name] if name in lent else np.empty(shape, dtype=dtype) for name, shape in wanted.items()}


def give_back(buffers: dict[str, np.ndarray]) -> None:
    """Keep ``buffers`` (name -> array, no longer used by their run) for the next run, dropping any older spares.

    Parameters
    ----------
    buffers : dict of str to numpy.ndarray
    """
    with _lock:
        _spare.clear()
        _spare.update({(name, array.shape, array.dtype): array for name, array in buffers.items()})


def release() -> None:
    """Drop every spare buffer (their memory goes back to the system once nothing else holds them)."""
    with _lock:
        _spare.clear()
