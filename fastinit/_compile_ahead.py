"""A cold compile on two cores: kernel subtrees compiled in a second process meanwhile.

numba compiles on one thread (its compiler lock), and most of a cold compile is its Python
front end typing and lowering each kernel, so more cores alone do not make a first call
faster.  The top kernels are, or call, subtrees that do not depend on each other, though:
propagate's :func:`~fastinit._kernels.walk.forward_pass` and :func:`~fastinit._kernels.walk.backward_pass`
(over the forward and the backward layer), train's epoch kernel its ``forward`` and ``backward``.  While this process compiles some, a child process compiles others for the same
record types and writes them to numba's on-disk cache; when a compile here reaches one of
those, numba finds it in the cache and loads it instead of compiling it.

The work comes in *stages*, in step on both sides: stage ``k`` starts here once the child has
finished its stage ``k - 1``, and in the child once this process has finished its stage
``k - 1`` (each side says so in one line on a pipe).  So a kernel both sides reach (the weight
draw's sampler, under both layers) is compiled in an earlier stage by one side and loaded by
the other.

Nothing depends on the child: if it cannot start, fails, or falls behind by more than
``_TIMEOUT_SECONDS``, it is stopped, and the compiles here (and the top kernel's) compile
whatever they lack, as they would have anyway.  ``tests/test_compile_ahead.py`` checks that
a cold first ``propagate`` compiles each kernel once, in one of the two processes.

The child runs ``_run_job(JOB, DTYPE)``: ``JOB`` is ``"module:function"``, and
``function(DTYPE)`` returns the child's stages.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time

import numba

__all__ = ["compile_in_two", "fastinit_compiles"]

_log = logging.getLogger("fastinit")

# The whole compile-ahead gives up on the child after this long (a cold stage takes seconds;
# a child this slow is stalled or starved of its core).
_TIMEOUT_SECONDS = 120


def _start_child(job: str, dtype_name: str):
    """The child running ``job`` for ``dtype_name`` (stdin and stdout pipes), or None if it cannot start."""
    if getattr(sys, "frozen", False):  # sys.executable is the application, not Python
        return None
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # This very fastinit first on the path (a worktree, a test's sys.path), whatever the child's cwd holds.
    code = (f"import sys; sys.path.insert(0, {package_root!r}); "
            f"from fastinit._compile_ahead import _run_job; _run_job({job!r}, {dtype_name!r})")
    try:
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None


def _lines(stream) -> queue.Queue:
    """A queue that a daemon thread fills with ``stream``'s lines, then None at its end (a timeout on the
    reading side, for any platform's pipes)."""
    lines: queue.Queue = queue.Queue()

    def read():
        with stream:  # closed here, at its end (the child's exit): never under this thread's feet
            for line in stream:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True, name="fastinit compile-ahead reader").start()
    return lines


def compile_in_two(stages, job: str, dtype_name: str) -> None:
    """Compile ``stages`` here while a child process compiles ``job``'s stages in step; return when both are done.

    Call it just before a cold compile of the kernel both sides are under (when
    :func:`fastinit._jit.announce_compile` says it is about to compile).  It never raises for a
    compile-ahead that fails: the call that follows compiles whatever is missing.

    Parameters
    ----------
    stages : list of list of (dispatcher, tuple)
        Kernels and their argument types, compiled here in order; stage ``k`` (``k > 0``)
        starts once the child has finished its stage ``k - 1``.
    job : str
        ``"module:function"``; the child imports the module and compiles the stages
        ``function(dtype_name)`` returns, stage ``k`` once this process has finished its stage ``k - 1``.
    dtype_name : str
        ``"float32"`` or ``"float64"``: what the child builds its records for.
    """
    if numba.config.DISABLE_JIT:
        return
    child = _start_child(job, dtype_name)
    with_child = child is not None
    deadline = time.monotonic() + _TIMEOUT_SECONDS
    lines = _lines(child.stdout) if with_child else None
    try:
        for index, stage in enumerate(stages):
            if index > 0 and with_child:
                child.stdin.write("go\n")  # the child's stage `index` may start
                child.stdin.flush()
                with_child = lines.get(timeout=max(0.0, deadline - time.monotonic())) is not None  # its stage done
            for dispatcher, signature in stage:
                dispatcher.compile(signature)
        if with_child:
            child.stdin.close()  # no more stages: the child ends after its last
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except Exception as error:  # a compile here, a broken pipe, a timeout: the call that follows compiles
        _log.debug("fastinit: compile-ahead stopped (%s: %s)", type(error).__name__, error)
    finally:
        if child is not None:
            if child.poll() is None:
                child.kill()
                child.wait()
            if not child.stdin.closed:
                child.stdin.close()


def fastinit_compiles(recorder) -> list:
    """The fastinit kernels a ``numba.core.event.install_recorder("numba:compile")`` recorder saw compile.

    Parameters
    ----------
    recorder : numba.core.event.RecordingListener

    Returns
    -------
    list of (str, str)
        ``(qualified name, argument types)`` per compile, in order.
    """
    return [(ev.data["dispatcher"].py_func.__qualname__, str(ev.data["args"])) for _, ev in recorder.buffer
            if ev.is_start and ev.data["dispatcher"].py_func.__module__.startswith("fastinit")]


def _run_job(job: str, dtype_name: str) -> None:
    """The child's side: compile ``job``'s stages for ``dtype_name``, each after the parent's go, reporting each.

    With ``FASTINIT_COMPILE_AHEAD_EVENTS`` set to a path, the kernels this process compiled are written
    there as JSON (``[qualified name, argument types]`` pairs), for the tests.
    """
    from numba.core import event

    record_to = os.environ.get("FASTINIT_COMPILE_AHEAD_EVENTS")
    module, function = job.split(":")
    with event.install_recorder("numba:compile") as recorder:
        for index, stage in enumerate(getattr(importlib.import_module(module), function)(dtype_name)):
            if index > 0 and not sys.stdin.readline():
                break  # the parent went on without us
            for dispatcher, signature in stage:
                dispatcher.compile(signature)
            print("done", flush=True)
    if record_to:
        with open(record_to, "w") as out:
            json.dump(fastinit_compiles(recorder), out)
