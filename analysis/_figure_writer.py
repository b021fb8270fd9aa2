"""Writing a report's figures in forked processes, so that saving overlaps the next figure.

Saving is most of a report's time (matplotlib lays out and draws every figure once per format)
and each figure is independent of the others, so on a machine with two or more cores the
figures are written by forked children while the parent builds the next one.  A child writes
exactly what the parent would have written (the same ``savefig`` calls on the same figure), so
the report's files are byte-identical either way.  Where ``fork`` is not available, or is not
safe because the process already runs other threads, figures are written in the parent.

Before its first child the writer saves one small figure in memory in every format, so that
what a first save sets up once per process (fontTools' 150-odd modules for the PDF font
subsets, the SVG and PNG writers, the mathtext grammar, the fonts) is inherited by every
child instead of being set up again in each.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import threading
from pathlib import Path

import matplotlib.pyplot as plt

__all__ = ["FigureWriter", "Later", "prepare_for_children"]

# Metadata that would make files differ from run to run (dates), removed per format.
STABLE_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {"Software": None}}


def save_figure(figure, directory: Path, name: str, formats) -> list[str]:
    """Save ``figure`` as ``directory/name.<format>`` for each format; return the file names.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure (closed by the caller).
    directory : pathlib.Path
        Where the files go.
    name : str
        File name without extension.
    formats : iterable of {"pdf", "svg", "png"}
        The formats, in the order written.

    Returns
    -------
    list of str
        The file names written.
    """
    paths = []
    for extension in formats:
        path = directory / f"{name}.{extension}"
        figure.savefig(path, format=extension, metadata=STABLE_METADATA[extension])
        paths.append(path.name)
        # The layout is solved in figure fractions, so one solve serves every format.
        figure.set_layout_engine("none")
    return paths


_prepared = False


def prepare_for_children(formats) -> None:
    """Save a small figure with text, mathtext and a log axis in memory, once per process.

    A writer does this before its first child; a caller with idle time earlier (the sweep,
    while its cells run) may do it then.

    Parameters
    ----------
    formats : iterable of {"pdf", "svg", "png"}

    Only process-wide state is touched (imports, font and parser caches): the files written
    afterwards are the same bytes as without it (tested by saving inline without it).
    """
    global _prepared
    if _prepared:
        return
    _prepared = True
    figure, ax = plt.subplots(figsize=(1.0, 0.8), constrained_layout=True)
    ax.plot([1.0, 10.0], [1.0, 2.0])
    ax.set_xscale("log")
    ax.set_xlabel(r"$\mathrm{a}_l$ b")
    for extension in formats:
        figure.savefig(io.BytesIO(), format=extension, metadata=STABLE_METADATA[extension])
    plt.close(figure)


@dataclasses.dataclass
class Later:
    """A figure built and saved by :meth:`FigureWriter.build_and_save`.

    Attributes
    ----------
    files : list of str
        The file names (complete once the writer is closed).
    value : object
        What the build returned beside the figure (its reading); set once the writer is closed.
    """

    files: list
    value: object = None


def _build_and_save(build, directory, name, formats, send) -> None:
    figure, value = build()
    save_figure(figure, directory, name, formats)
    send.send(value)
    send.close()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class FigureWriter:
    """Save figures, in up to ``processes`` forked children at once.

    Use as a context manager: leaving it waits for every child and raises if one failed.

    Parameters
    ----------
    directory : pathlib.Path
        Where the files go.
    formats : iterable of {"pdf", "svg", "png"}
        The formats of every figure, in the order written.
    processes : int, optional
        Children writing at once; default the cores this process may use.  1 (or a platform
        without a safe ``fork``) writes every figure in the calling process.
    """

    def __init__(self, directory: Path, formats, processes: int | None = None):
        self.directory = Path(directory)
        self.formats = tuple(formats)
        self.processes = _cores() if processes is None else int(processes)
        if self.processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes!r}")
        # (name, child, (pipe, Later) for a build_and_save or None)
        self._running: list[tuple] = []
        self._failed: list[str] = []

    def _forking(self) -> bool:
        # fork copies only the calling thread: with other threads alive (a BLAS or tqdm
        # thread holding a lock), a child could deadlock, so such a process writes inline.
        return (self.processes > 1 and "fork" in multiprocessing.get_all_start_methods()
                and threading.active_count() == 1)

    def save(self, figure, name: str) -> list[str]:
        """Save ``figure`` as ``name.<format>`` (see :func:`save_figure`), close it, return the file names.

        With forking, the files are complete only once the writer is closed.
        """
        directory, formats = self.directory, self.formats
        if not self._forking():
            paths = save_figure(figure, directory, name, formats)
            plt.close(figure)
            return paths
        self._start(name, save_figure, (figure, directory, name, formats), f"save {name}", None)
        plt.close(figure)
        return [f"{name}.{extension}" for extension in formats]

    def _start(self, name, target, args, label, returned) -> None:
        """Fork a child running ``target(*args)`` once a slot is free; ``returned`` is its (pipe, Later) or None."""
        prepare_for_children(self.formats)
        while len(self._running) >= self.processes:
            self._reap(self._running.pop(0))
        child = multiprocessing.get_context("fork").Process(target=target, args=args, name=label)
        child.start()
        self._running.append((name, child, returned))

    def build_and_save(self, name: str, build) -> Later:
        """Call ``build()``, which returns ``(figure, value)``, and save the figure as ``name``.

        With forking, a child does both while the caller goes on: for a figure that needs
        nothing the caller computes later (one drawn from constants), so that a core the
        caller leaves idle draws it.  ``value`` (picklable, e.g. the figure's reading) comes
        back through a pipe.  The files are the same bytes as building and saving inline.

        Returns
        -------
        Later
            Its ``files`` now; its ``value`` once the writer is closed.
        """
        directory, formats = self.directory, self.formats
        later = Later([f"{name}.{extension}" for extension in formats])
        if not self._forking():
            figure, later.value = build()
            save_figure(figure, directory, name, formats)
            plt.close(figure)
            return later
        receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
        self._start(name, _build_and_save, (build, directory, name, formats, send), f"build and save {name}",
                    (receive, later))
        send.close()  # the child's copy stays open: end of file here means the child ended without sending
        return later

    def _reap(self, running) -> None:
        name, child, returned = running
        if returned is not None:
            receive, later = returned
            try:
                later.value = receive.recv()  # before join: the child may wait for the pipe to drain
            except EOFError:
                pass  # failed before sending: its exit code says so below
            receive.close()
        child.join()
        if child.exitcode != 0:
            self._failed.append(f"{name} (exit code {child.exitcode})")

    def close(self) -> None:
        """Wait for every child; raise ``RuntimeError`` naming the figures that failed."""
        while self._running:
            self._reap(self._running.pop(0))
        if self._failed:
            failed, self._failed = self._failed, []
            raise RuntimeError(f"writing figure(s) failed: {', '.join(failed)}; the child's traceback is above")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if exc_info[0] is None:
            self.close()
        else:  # already failing: wait for the children, keep the first error
            while self._running:
                self._running.pop(0)[1].join()
