"""The workers' spin barrier: nobody passes a phase before everybody has finished the previous one."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastinit._sync import barrier


@numba.njit(parallel=True)
def _phases(n_workers, rounds, sync, seen, late):
    """Each worker writes its phase, waits, then counts partners still behind it."""
    for worker in numba.prange(n_workers):
        for phase in range(1, rounds + 1):
            seen[worker] = phase
            barrier(sync, n_workers)
            for other in range(n_workers):
                if seen[other] < phase:
                    late[worker] += 1
            barrier(sync, n_workers)  # nobody starts the next phase while another still reads


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="needs two numba threads")
def test_no_worker_passes_the_barrier_early():
    n_workers, rounds = 2, 20_000
    sync, seen, late = np.zeros(2, dtype=np.int64), np.zeros(n_workers, dtype=np.int64), np.zeros(n_workers, dtype=np.int64)
    _phases(n_workers, rounds, sync, seen, late)
    assert late.tolist() == [0, 0]
    assert seen.tolist() == [rounds, rounds]
    # Two barriers per phase, each advancing the generation once, and nobody left waiting.
    assert sync.tolist() == [0, 2 * rounds]


def test_one_party_never_waits():
    barrier(np.zeros(2, dtype=np.int64), 1)
