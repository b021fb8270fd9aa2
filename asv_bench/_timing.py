"""Timing shared by the plain-script peer benchmarks (``peers.py``, ``train_peers.py``, ``theory_grid.py``)."""

from __future__ import annotations

import statistics
import time


def median_seconds(function, repeat: int) -> float:
    """Median wall time of ``function()`` over ``repeat`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
