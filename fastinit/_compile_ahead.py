"""A cold compile on two cores: kernel subtrees compiled in a second process meanwhile.

numba compiles on one thread (its compiler lock), and most of a cold compile is its Python
front end typing and lowering each kernel, so more cores alone do not make a first call
faster.  The top kernels call subtrees that do not depend on each other, though: propagate's
walk calls :func:`~fastinit._kernels.layer.forward_layer` and
:func:`~fastinit._kernels.layer.backward_layer`, train's epoch kernel its ``forward`` and
``backward``.  While this process compiles some, a child process compiles others for the same
record types and writes them to numba's on-disk cache; when a compile here reaches one of
those, numba finds it in the cache and loads it instead of compiling it.

The work comes in *stages*: stage ``k`` here starts once the child has finished its stage
``k - 1`` (it says so on a pipe), so that a kernel both sides call (the weight draw, under
both layers) is compiled by one side and loaded by the other, never compiled twice.

Nothing depends on the child: if it cannot start, fails, is slow or the cache is not
writable, the compiles here compile whatever they lack, as they would have anyway.
``tests/test_compile_ahead.py`` checks that a cold first call compiles each kernel once, in
one of the two processes.

Run as ``python -m fastinit._compile_ahead MODULE:FUNCTION DTYPE``: the child's side.
``FUNCTION(DTYPE)`` returns the child's stages; it compiles them in order and writes one line
to stdout after each.
"""

from __future__ import annotations

import importlib
import os
import select
import subprocess
import sys
import time

import numba

__all__ = ["compile_in_two"]

# How long this process waits for a stage of the child (or for it to end) before going on
# without it: a cold stage takes seconds; one far slower means a stalled or overloaded child.
_STAGE_TIMEOUT_SECONDS = 120


def _start_child(job: str, dtype_name: str):
    """The child running ``job`` for ``dtype_name`` (its stdout a pipe), or None if it cannot start."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    # The child must import this very fastinit (a worktree, a test's sys.path), whatever its cwd.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        return subprocess.Popen([sys.executable, "-m", "fastinit._compile_ahead", job, dtype_name], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def _wait_for_line(child) -> bool:
    """Wait for the child's next line; False if it ended or timed out instead."""
    if os.name == "nt":  # select() takes sockets only there: block (the child writes or ends)
        return bool(child.stdout.readline())
    deadline = time.monotonic() + _STAGE_TIMEOUT_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([child.stdout], [], [], left)
        if ready:
            return bool(child.stdout.readline())
    return False


def compile_in_two(stages, job: str, dtype_name: str) -> None:
    """Compile ``stages`` here while a child process compiles ``job``'s stages; return when both are done.

    Call it just before a cold compile of the kernel both sides are under (when
    :func:`fastinit._jit.announce_compile` says it is about to compile).

    Parameters
    ----------
    stages : list of list of (dispatcher, tuple)
        Kernels and their argument types, compiled here in order; stage ``k`` (``k > 0``)
        starts once the child has finished its stage ``k - 1``.
    job : str
        ``"module:function"``; the child imports the module and compiles the stages
        ``function(dtype_name)`` returns.
    dtype_name : str
        ``"float32"`` or ``"float64"``: what the child builds its records for.
    """
    if numba.config.DISABLE_JIT:
        return
    child = _start_child(job, dtype_name)
    with_child = child is not None
    for index, stage in enumerate(stages):
        if index > 0 and with_child:
            with_child = _wait_for_line(child)
        for dispatcher, signature in stage:
            dispatcher.compile(signature)
    if child is None:
        return
    try:
        child.wait(timeout=_STAGE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    finally:
        child.stdout.close()


def _run_job(job: str, dtype_name: str) -> None:
    module, function = job.split(":")
    for stage in getattr(importlib.import_module(module), function)(dtype_name):
        for dispatcher, signature in stage:
            dispatcher.compile(signature)
        print("done", flush=True)


if __name__ == "__main__":
    _run_job(*sys.argv[1:3])
