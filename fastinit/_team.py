"""The thread team: ``n_workers`` calls of one nogil kernel, running at once.

Why Python threads and not numba's ``prange``: a ``parallel=True`` function makes numba
build a parallel region around everything it calls and optimise that whole tree again
(measured on the project machine: 43 s to the first float32 ``propagate`` with the
region, 31 s with this team, the same bits).  Every fastinit kernel is compiled with
``nogil=True``, so plain threads run the workers truly in parallel; a worker's share of
the work is fixed by its index alone (never by timing), so results do not depend on
the number of workers.

Workers that meet at a spin barrier (:mod:`fastinit._sync`) must all run at once:
every worker here is an OS thread of its own, so they do.
"""

from __future__ import annotations

import threading

import numba

__all__ = ["run_team", "team_size"]


def team_size(most: int) -> int:
    """Workers for work cut into ``most`` shares: one per share, at most numba's thread count.

    numba's thread count (``NUMBA_NUM_THREADS``, :func:`numba.set_num_threads`) is the
    one knob users and the sweep already use to give a process its cores; the team
    honours it although it runs on threads of its own.

    Parameters
    ----------
    most : int
        The number of shares the work is cut into (the most workers that can help).

    Returns
    -------
    int
        Between 1 and ``most``.
    """
    return max(1, min(int(most), numba.get_num_threads()))


def run_team(kernel, n_workers: int, *args) -> None:
    """Call ``kernel(worker, n_workers, *args)`` for ``worker = 0 .. n_workers - 1`` at once.

    Worker 0 runs on the calling thread, the others on threads of their own; returns
    when all have returned.  An exception in any worker is raised here (the first, by
    worker index) after every thread has finished.

    Parameters
    ----------
    kernel : numba dispatcher
        A ``nogil`` jitted function whose first two arguments are the worker index and
        the number of workers (both passed as Python ints, typed int64).
    n_workers : int
        Number of workers (1 runs ``kernel`` on the calling thread only).
    *args
        The kernel's remaining arguments, the same for every worker.
    """
    if n_workers == 1:
        kernel(0, 1, *args)
        return
    errors = [None] * n_workers

    def work(worker):
        try:
            kernel(worker, n_workers, *args)
        except BaseException as error:  # re-raised on the calling thread below
            errors[worker] = error

    threads = [threading.Thread(target=work, args=(worker,), name=f"fastinit-worker-{worker}", daemon=True)
               for worker in range(1, n_workers)]
    for thread in threads:
        thread.start()
    work(0)
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
