"""The workers' spin barrier: nobody passes a phase before everybody has finished the previous one."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastinit._sync import barrier
from fastinit._team import run_team


@numba.njit(nogil=True)
def _phases(worker, n_workers, rounds, sync, seen, late):
    """Worker ``worker`` writes its phase, waits, then counts partners still behind it."""
    for phase in range(1, rounds + 1):
        seen[worker] = phase
        barrier(sync, n_workers)
        for other in range(n_workers):
            if seen[other] < phase:
                late[worker] += 1
        barrier(sync, n_workers)  # nobody starts the next phase while another still reads


@pytest.mark.parametrize("n_workers", [2, 3])
def test_no_worker_passes_the_barrier_early(n_workers):
    # Three workers on a two-core machine: a waiting worker must yield for the third to run.
    rounds = 20_000
    sync, seen, late = np.zeros(2, dtype=np.int64), np.zeros(n_workers, dtype=np.int64), np.zeros(n_workers, dtype=np.int64)
    run_team(_phases, n_workers, rounds, sync, seen, late)
    assert late.tolist() == [0] * n_workers
    assert seen.tolist() == [rounds] * n_workers
    # Two barriers per phase, each advancing the generation once, and nobody left waiting.
    assert sync.tolist() == [0, 2 * rounds]


def test_an_error_in_a_worker_reaches_the_caller():
    def kernel(worker, n_workers):
        if worker == 1:
            raise ValueError("worker 1 failed")

    with pytest.raises(ValueError, match="worker 1 failed"):
        run_team(kernel, 2)


def test_one_party_never_waits():
    barrier(np.zeros(2, dtype=np.int64), 1)
