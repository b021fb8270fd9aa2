"""What runs on a worker: one cell in, one Parquet file written, a small summary out.

A propagation cell runs :func:`fastinit.propagate`, a training cell :func:`fastinit.train.run`.

Workers write their own rows (design section 6) so that results never travel through
the scheduler and a worker lost mid-task costs that one cell.  A cell that raises is
recorded with its traceback and reported as failed; it does not stop the sweep.
"""

from __future__ import annotations

import os
import time
import traceback

import numba
import pandas as pd

from fastinit import rng, train
from fastinit._kernels.products import blas_controller
from fastinit.propagate import propagate
from fastinit.sweep import store
from fastinit.sweep.cells import Cell

__all__ = ["run_cell", "warm_up", "BLAS_THREADS", "BLAS_VARIABLES"]

# OpenBLAS's sgemm gives different last bits on 1 and 2 threads (it blocks the product
# differently), while fastinit's own kernels are thread-count invariant.  Every cell
# therefore runs its GEMMs on one BLAS thread, whatever the executor, so that serial,
# local and dask sweeps agree bit for bit; parallelism comes from the workers and
# numba's threads.
BLAS_THREADS = 1
# Environment variables that size BLAS and OpenMP pools in processes we start.
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def warm_up(dtypes=("float32",), training: bool = False) -> float:
    """Compile (or load from the on-disk cache) every kernel a cell can reach.

    One small net per dtype reaches every propagate kernel (work is cut by shapes at run
    time, never by compiled variants); large input draws take the sampler's thread-team
    entry point (:data:`fastinit.rng.PARALLEL_MIN_SAMPLES` and up), so one is drawn too.

    Parameters
    ----------
    dtypes : iterable of str
        Network dtypes of the study.
    training : bool, default False
        Also the training kernels (a study with training cells).

    Returns
    -------
    float
        Seconds spent.
    """
    start = time.perf_counter()
    for dtype in dtypes:
        propagate("he_normal", "relu", depth=2, width=4, batch=4, dtype=dtype)
        for sample_dtype in {dtype, "float64"}:  # inputs are drawn in float64, the readout in the net's dtype
            rng.standard_normal(0, rng.PARALLEL_MIN_SAMPLES, dtype=sample_dtype)
        if training:
            train.run("he_normal", "relu", depth=2, width=4, task="spirals", epochs=1, batch=32, dtype=dtype,
                      task_params={"n_train": 64})
    return time.perf_counter() - start


def _propagate(cell: Cell, root_seed: int):
    frame = propagate(**cell.propagate_arguments(root_seed))
    frame["forward_rescaled"] = bool(frame.attrs["forward_rescaled"])
    for name in ("first_overflow_layer", "first_underflow_layer"):
        frame[name] = frame.attrs[name] if frame.attrs[name] is not None else -1
    for name in ("first_overflow_pass", "first_underflow_pass"):
        frame[name] = frame.attrs[name]  # "forward", "backward" or None
    return frame


def _train(cell: Cell, root_seed: int):
    frame = train.run(**cell.train_arguments(root_seed))
    frame["diverged_epoch"] = frame.attrs.get("diverged_epoch") if frame.attrs.get("diverged") else -1
    return frame


def _with_parameters(frame, parameters: dict):
    """The cell's parameter columns first (each value repeated on every row), then the run's own columns.

    One concatenation instead of an insert per parameter (each insert copies the frame's index).
    """
    own = frame.drop(columns=[name for name in parameters if name in frame.columns])
    return pd.concat([pd.DataFrame(parameters, index=own.index), own], axis=1)


def run_cell(cell: Cell, root_seed: int, directory: str, threads: int) -> dict:
    """Run one cell and write its rows; never raises for an error inside the cell.

    Parameters
    ----------
    cell : Cell
    root_seed : int
    directory : str
        The results directory (shared storage when workers are on other machines).
    threads : int
        Numba threads for this cell's kernels (BLAS always gets :data:`BLAS_THREADS`).

    Returns
    -------
    dict
        ``key``, ``status`` ("done" or "failed"), ``seconds``, ``worker`` (pid) and,
        when failed, ``error``.
    """
    start = time.perf_counter()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    summary = {"key": cell.key, "worker": os.getpid()}
    try:
        with blas_controller().limit(limits=BLAS_THREADS, user_api="blas"):
            frame = _train(cell, root_seed) if cell.trains else _propagate(cell, root_seed)
        frame.attrs.clear()
        store.write_cell(directory, cell.key, _with_parameters(frame, cell.columns()))
        store.clear_failure(directory, cell.key)
        summary["status"] = "done"
    except Exception as error:  # noqa: BLE001 -- a failed cell is data, the sweep goes on
        summary.update(status="failed", error=f"{type(error).__name__}: {error}")
        store.write_failure(directory, cell.key, {**cell.columns(), "error": summary["error"],
                                                  "traceback": traceback.format_exc()})
    summary["seconds"] = time.perf_counter() - start
    return summary
