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


def interleaved_seconds(functions: dict, repeat: int, counts: dict | None = None) -> dict:
    """Wall times of several functions measured in rounds, each round timing each function once.

    A shared virtual machine runs at one speed for a while and then at another (the same call
    moves by 20-40 % within minutes), so timing one implementation ``repeat`` times and then the
    next compares two different machines.  Here round ``r`` times every function once, in an
    order rotated by ``r``, so that :func:`paired_ratio` compares calls made seconds apart.

    Each timed call follows an untimed call of the same function.  Runtimes leave their threads
    spinning after a call (OpenBLAS's for about 0.1 s): a 64-wide ``propagate`` timed right after
    NumPy's two-thread GEMMs took 166 ms, after one untimed call of its own 76 ms, alone 82 ms.

    Parameters
    ----------
    functions : dict
        Label -> function of no arguments.
    repeat : int
        Rounds.
    counts : dict, optional
        Label -> rounds for a slow function (at most ``repeat``): it takes part in the first
        ``counts[label]`` rounds only.

    Returns
    -------
    dict
        Label -> list of seconds, one per round it took part in.
    """
    counts = counts or {}
    labels = list(functions)
    times = {label: [] for label in labels}
    for r in range(repeat):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            if r < counts.get(label, repeat):
                functions[label]()  # settles: another runtime's spinning threads, this one's caches
                start = time.perf_counter()
                functions[label]()
                times[label].append(time.perf_counter() - start)
    return times


def paired_ratio(times: dict, label: str, base: str) -> float:
    """Median over rounds of ``label``'s time over ``base``'s in the same round (see :func:`interleaved_seconds`).

    Parameters
    ----------
    times : dict
        :func:`interleaved_seconds`'s result.
    label, base : hashable
        Two of its labels; the rounds they share are the first ``min(len)`` (a slow function's
        rounds are the first ones).

    Returns
    -------
    float
        The median ratio: above 1 when ``label`` is slower than ``base``.
    """
    pairs = zip(times[label], times[base])
    return statistics.median(seconds / base_seconds for seconds, base_seconds in pairs)


def compared(times: dict, labels, base) -> list:
    """``(label, median seconds, paired ratio to base)`` for each of ``labels`` (see :func:`paired_ratio`).

    Parameters
    ----------
    times : dict
        :func:`interleaved_seconds`'s result.
    labels : iterable
        Labels of ``times``, in the order wanted.
    base : hashable
        The label the ratios are to (its own ratio is 1).

    Returns
    -------
    list of tuple
    """
    return [(label, statistics.median(times[label]), paired_ratio(times, label, base)) for label in labels]
