"""Run a study: skip finished cells, dispatch the rest, show progress, compact at the end."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from fastinit.sweep import store
from fastinit.sweep.cells import expand
from fastinit.sweep.executors import open_executor
from fastinit.sweep.spec import Study
from fastinit.sweep.worker import run_cell

__all__ = ["Outcome", "run_study"]

log = logging.getLogger("fastinit.sweep")


@dataclasses.dataclass
class Outcome:
    """What a sweep did.

    Attributes
    ----------
    cells : int
        Cells in the study.
    done, skipped : int
        Cells run now, and cells found finished on disk.
    failed : list of dict
        Failed cells: ``key``, ``init``, ``activation``, ... and ``error``.
    seconds : float
        Wall time of the dispatch (after the executor started).
    cell_seconds : float
        Sum of the cells' own run times (wall time minus this, over cells, is the
        executor's per-cell overhead).
    pool : dict
        Executor, workers and threads per worker.
    """

    cells: int
    done: int = 0
    skipped: int = 0
    failed: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    cell_seconds: float = 0.0
    pool: dict = dataclasses.field(default_factory=dict)


def run_study(study: Study, directory, *, executor: str = "local", workers: int | None = None,
              scheduler: str | None = None, resume: bool = True, progress: bool | None = None,
              meanwhile=None) -> Outcome:
    """Run every unfinished cell of ``study`` into ``directory``.

    Parameters
    ----------
    study : Study
    directory : str or path-like
        Results directory: new, empty, or holding this study (same name and root
        seed; extending an axis reuses every finished cell).
    executor : {"serial", "local", "dask"}, default "local"
    workers : int, optional
        Worker processes (default one per core).
    scheduler : str, optional
        A running Dask scheduler's address (with ``executor="dask"``).
    resume : bool, default True
        Skip cells already on disk; ``False`` recomputes and replaces them.
    progress : bool, optional
        Show a progress bar; ``None`` shows it only on a terminal.
    meanwhile : callable, optional
        Called without arguments in a thread of this process once the executor has started
        (work for the time this process only waits on its workers, such as imports for what
        follows the run); joined before returning, so the caller is single-threaded again.

    Returns
    -------
    Outcome

    Raises
    ------
    fastinit.sweep.store.ResultsError, fastinit.sweep.executors.ExecutorError
        Before anything is written, for a directory holding something else or an
        executor that cannot start.
    """
    directory = Path(directory)
    cells = expand(study)
    store.check_directory(directory, study.to_json())
    dtypes = tuple(dict.fromkeys(cell.dtype for cell in cells))
    outcome = Outcome(cells=len(cells))
    with open_executor(executor, workers, scheduler, dtypes, any(cell.trains for cell in cells)) as pool:
        outcome.pool = pool.describe()
        store.write_manifest(directory, study.to_json(), outcome.pool)
        removed = store.remove_temporaries(directory)
        if removed:
            log.info("removed %d partial files of an interrupted run", removed)
        store.clear_stale_failures(directory)
        finished = store.finished_keys(directory) if resume else set()
        todo = [cell for cell in cells if cell.key not in finished]
        outcome.skipped = len(cells) - len(todo)
        log.info("%d cells: %d finished earlier, %d to run on %s (%d workers x %d threads)", len(cells),
                 outcome.skipped, len(todo), pool.kind, pool.workers, pool.threads)
        start = time.perf_counter()
        side = threading.Thread(target=meanwhile, name="meanwhile", daemon=True) if meanwhile else None
        if side is not None:
            side.start()
        with tqdm(total=len(cells), initial=outcome.skipped, unit="cell", disable=None if progress is None else not progress,
                  desc=study.name, dynamic_ncols=True) as bar:
            # Absolute: workers on other machines (Dask) share the storage, not our working directory.
            for cell, summary in _dispatch(pool, todo, study.root_seed, str(directory.resolve())):
                outcome.cell_seconds += summary.get("seconds", 0.0)
                if summary["status"] == "done":
                    outcome.done += 1
                else:
                    outcome.failed.append({**cell.columns(), "error": summary["error"]})
                    if summary.get("lost"):  # the worker died before it could record the failure
                        store.write_failure(directory, cell.key, outcome.failed[-1])
                    log.warning("cell %s (%s, %s) failed: %s", cell.key, cell.init.label, cell.activation.label,
                                summary["error"])
                bar.update()
                bar.set_postfix(done=outcome.done, skipped=outcome.skipped, failed=len(outcome.failed), refresh=False)
        _stop_progress_monitor()
        outcome.seconds = time.perf_counter() - start
        if side is not None:
            side.join()
    store.compact(directory)
    return outcome


def _stop_progress_monitor() -> None:
    """Stop the monitor thread tqdm starts with every bar and leaves running after a disabled one.

    A process with a second thread alive may not fork safely, so the report would write its
    figures one by one instead of in forked children (:mod:`analysis._figure_writer`).  tqdm
    starts a new monitor with the next bar.
    """
    monitor = getattr(tqdm, "monitor", None)
    if monitor is not None:
        monitor.exit()
        tqdm.monitor = None


def _dispatch(pool, cells, root_seed, directory):
    """Yield ``(cell, summary)`` as cells finish, keeping a bounded number in flight.

    A bounded window keeps memory flat for studies of any size; the serial executor
    runs one cell per submission, so progress and Ctrl-C act cell by cell.

    A worker process that dies (killed, out of memory) breaks a local pool and every
    cell in flight with it: the pool is restarted and those cells run again.  A cell in
    flight at two such losses is reported failed (it may be what kills its worker), so
    a lost worker costs at most the cells that were running, never the sweep.
    """
    window = 1 if pool.kind == "serial" else max(4, 2 * pool.workers)
    pending = {}
    retry = collections.deque()
    lost_before = set()
    queue = iter(cells)
    while True:
        broken = None
        while broken is None and len(pending) < window:
            cell = retry.popleft() if retry else next(queue, None)
            if cell is None:
                break
            try:
                pending[pool.executor.submit(run_cell, cell, root_seed, directory, pool.threads)] = cell
            except concurrent.futures.BrokenExecutor as error:
                broken = error
                retry.appendleft(cell)  # never started: not counted as lost
        if not pending and broken is None:
            break
        finished = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)[0] if pending else ()
        lost = []
        for future in finished:
            cell = pending.pop(future)
            try:
                yield cell, future.result()
            except concurrent.futures.BrokenExecutor as error:
                broken = error
                lost.append(cell)
            except Exception as error:  # noqa: BLE001 -- infrastructure (e.g. Dask gave up), not the cell's own error
                yield cell, _lost(error)
        if broken is None:
            continue
        # Every other future of the broken pool ends now, most with the same error.
        for future in concurrent.futures.wait(pending)[0]:
            cell = pending.pop(future)
            if future.exception() is None:
                yield cell, future.result()
            else:
                lost.append(cell)
        if not pool.replace_broken():
            for cell in [*lost, *retry, *queue]:
                yield cell, _lost(broken)
            return
        log.warning("a worker process died (%s); restarted the pool, %d cells run again", broken, len(lost))
        for cell in lost:
            if cell.key in lost_before:
                yield cell, _lost(RuntimeError("its worker died twice (the cell may be what kills it, e.g. memory)"))
            else:
                lost_before.add(cell.key)
                retry.append(cell)


def _lost(error) -> dict:
    return {"status": "failed", "error": f"worker lost: {type(error).__name__}: {error}", "seconds": 0.0, "lost": True}
