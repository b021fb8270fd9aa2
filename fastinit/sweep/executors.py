"""Executors behind one ``concurrent.futures.Executor`` interface: serial, local, dask.

Thread settings follow design section 6: many small cells run best with one thread per
worker and as many workers as cores, so a pool of ``W`` workers gets ``cores // W``
numba threads each and the serial executor gives its one cell every core.  BLAS runs
on one thread everywhere (see :data:`fastinit.sweep.worker.BLAS_THREADS`): that is
what makes every executor's results identical bit for bit.
The JIT cache is warmed in this process before any worker starts, so workers load
compiled kernels from disk instead of compiling them side by side.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import time

from fastinit.sweep.worker import BLAS_THREADS, BLAS_VARIABLES, warm_up

__all__ = ["EXECUTORS", "ExecutorError", "Pool", "open_executor", "default_workers"]

EXECUTORS = ("serial", "local", "dask")
_CONNECT_TIMEOUT = "5s"
log = logging.getLogger("fastinit.sweep")


class ExecutorError(ValueError):
    """An executor that cannot be used as asked (unknown name, missing extra, unreachable scheduler)."""


@dataclasses.dataclass
class Pool:
    """An open executor with the facts the runner and the manifest need."""

    executor: concurrent.futures.Executor
    kind: str
    workers: int
    threads: int  # numba/BLAS threads per worker
    address: str | None = None
    restart: object = None  # callable returning a fresh executor after a worker process died (local)

    def replace_broken(self) -> bool:
        """Swap a broken executor for a fresh one; False when this kind cannot restart."""
        if self.restart is None:
            return False
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self.restart()
        return True

    def describe(self) -> dict:
        """Executor, workers, threads per worker (and scheduler address) for the manifest."""
        return {"executor": self.kind, "workers": self.workers, "numba_threads_per_worker": self.threads,
                "blas_threads_per_worker": BLAS_THREADS, "scheduler": self.address}


class SerialExecutor(concurrent.futures.Executor):
    """Runs each task in this process when it is submitted (for debugging and tests)."""

    def submit(self, fn, /, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` now; return a finished future."""
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 -- delivered through the future, like a pool; Ctrl-C propagates
            future.set_exception(error)
        return future


def default_workers() -> int:
    """One worker per core this process may use (CPU affinity, as under SLURM or in containers)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _thread_environment(threads: int):
    """Thread-pool sizes inherited by processes started inside the block."""
    environment = {"NUMBA_NUM_THREADS": str(threads), **{name: str(BLAS_THREADS) for name in BLAS_VARIABLES}}
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield environment
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def open_executor(kind: str, workers: int | None = None, scheduler: str | None = None, dtypes=("float32",),
                  training: bool = False):
    """Open an executor; yields a :class:`Pool` and shuts it down on exit.

    Parameters
    ----------
    kind : {"serial", "local", "dask"}
    workers : int, optional
        Worker processes (default: one per core; ignored with a running scheduler).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); without it the
        dask executor starts a ``LocalCluster`` on this machine.
    dtypes : iterable of str
        Network dtypes of the study, to warm the JIT cache for.
    training : bool, default False
        Whether the study has training cells (their kernels are warmed too).

    Raises
    ------
    ExecutorError
        For an unknown kind, a missing dask extra or an unreachable scheduler.
    """
    if kind not in EXECUTORS:
        from fastinit._validation import did_you_mean

        raise ExecutorError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}{did_you_mean(kind, EXECUTORS)}")
    if scheduler is not None and kind != "dask":
        raise ExecutorError(f"scheduler {scheduler!r} needs --executor dask, got --executor {kind}")
    cores = default_workers()
    workers = workers or cores
    threads = max(1, cores // workers)
    if kind == "dask":
        with _dask_pool(workers, threads, scheduler, (tuple(dtypes), training)) as pool:
            yield pool
        return
    seconds = warm_up(dtypes, training)
    log.info("JIT kernels ready in %.1f s", seconds)
    if kind == "serial":
        yield Pool(SerialExecutor(), "serial", 1, cores)
        return
    def start():
        context = multiprocessing.get_context("spawn")
        ready = context.Value("i", 0)
        with _thread_environment(threads):
            executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                                              initargs=((tuple(dtypes), training), ready))
            try:
                _wait_for_workers(executor, workers, ready)
            except BaseException:
                executor.shutdown(wait=False, cancel_futures=True)
                raise
        return executor

    pool = Pool(start(), "local", workers, threads, restart=start)
    try:
        yield pool
    finally:
        pool.executor.shutdown(wait=True, cancel_futures=True)


def _start_worker(warm_arguments, ready):
    """Pool initializer: load the JIT kernels, then count this worker as ready."""
    warm_up(*warm_arguments)
    with ready.get_lock():
        ready.value += 1


def _wait_for_workers(executor, workers, ready, timeout=300.0):
    """Start every worker now, so that dispatch (and the ETA) times cells, not start-up.

    A process pool spawns a worker per submission while none is idle, so ``workers``
    no-op submissions start them all; each counts itself ready once its kernels load.
    """
    for future in [executor.submit(os.getpid) for _ in range(workers)]:
        future.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while ready.value < workers and time.monotonic() < deadline:
        time.sleep(0.01)


@contextlib.contextmanager
def _dask_pool(workers, threads, scheduler, warm_arguments):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ExecutorError("executor 'dask' needs the dask extra: pip install 'fastinit[dask]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            warm_up(*warm_arguments)  # the local workers then load the kernels from the on-disk cache
            with _thread_environment(threads) as environment:
                cluster = stack.enter_context(LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                    env=environment, silence_logs=logging.ERROR))
            address = cluster.scheduler_address
        else:
            address = scheduler
            threads = 1
        try:
            client = stack.enter_context(Client(address, timeout=_CONNECT_TIMEOUT))
        except (OSError, TimeoutError, ValueError) as error:
            raise ExecutorError(f"scheduler {address!r} is unreachable ({error}); start one with "
                                "'dask scheduler' and 'dask worker ADDRESS', or omit --scheduler") from None
        # Compiles on workers without this machine's cache; loads it on those with it.
        client.run(warm_up, *warm_arguments)
        info = client.scheduler_info(n_workers=-1)["workers"]
        if any(worker.get("nthreads", 1) > 1 for worker in info.values()):
            # Concurrent cells in one process share BLAS's thread setting; results stay
            # correct but may differ in the last bits from other executors.
            log.warning("some Dask workers run several threads; start them with 'dask worker ADDRESS --nthreads 1' "
                        "for results identical to the other executors")
        workers = len(info) or workers
        executor = client.get_executor(pure=False, retries=2)
        yield Pool(executor, "dask", workers, threads, address)
