"""The big buffers of the last finished kernel run, lent to the next run of the same shapes.

A deep net's stored layers are hundreds of megabytes of fresh memory per call, and Linux hands
fresh memory over one page fault (and one zeroed page) at a time: measured 2-7 % of a repeated
``propagate`` call (widths 64-1024, 2-core AMD EPYC), and all of it again in the next call of
the same shapes -- a sweep's cells, a benchmark's repeats.  So ``propagate`` gives its buffers
back when a run finishes, and the next run takes those of matching name, shape and dtype
instead of allocating.  At most one run's buffers are kept (the last one given back), so the
memory held between calls is bounded by ``memory_budget``; :func:`release` drops them.

The kernels never read a buffer before writing it (they are ``np.empty`` either way), so a
lent buffer changes no result.  Taking and giving back are locked: concurrent runs each get
their own buffers.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["empty", "give_back", "release"]

_lock = threading.Lock()
_spare: dict[tuple, np.ndarray] = {}  # (name, shape, dtype) -> a buffer no run is using


def empty(name: str, shape, dtype) -> np.ndarray:
    """An uninitialised array for buffer ``name``: the spare one of this shape and dtype, else a new one.

    Parameters
    ----------
    name : str
        The buffer's role (a ``Workspace`` field), so that two buffers of one shape stay distinct.
    shape : int or tuple of int
    dtype : numpy dtype

    Returns
    -------
    numpy.ndarray
        C-contiguous, contents undefined.
    """
    key = (name, tuple(np.atleast_1d(shape).tolist()), np.dtype(dtype))
    with _lock:
        spare = _spare.pop(key, None)
    return spare if spare is not None else np.empty(key[1], dtype=key[2])


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
