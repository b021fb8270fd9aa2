"""A cold compile on two cores: one big kernel subtree in a second process, the rest here.

numba compiles on one thread (its compiler lock), and most of a cold compile is its Python
front end typing and lowering each kernel, so more cores alone do not make a first call
faster.  The top kernels call subtrees that do not depend on each other, though: propagate's
walk calls :func:`~fastinit._kernels.layer.forward_layer` and
:func:`~fastinit._kernels.layer.backward_layer`, train's epoch kernel its ``forward`` and
``backward``.  While this process compiles one, a child process compiles the other for the same
record types and writes it to numba's on-disk cache; when this process then compiles the top
kernel, numba finds that subtree in the cache and loads it instead of compiling it.

Nothing depends on the child: if it cannot start, fails, or the cache is not writable, the top
kernel's compile compiles the subtree itself, as it would have anyway.  ``tests/test_compile_ahead.py``
checks that a cold first call compiles the backward subtree in the child only.

Run as ``python -m fastinit._compile_ahead MODULE:FUNCTION DTYPE``: the child's side, which calls
``FUNCTION(DTYPE)`` (it builds the records for that dtype and compiles its subtree).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numba

__all__ = ["compile_in_two"]

# A child still compiling after this long is abandoned (the top kernel then compiles what it lacks).
_CHILD_TIMEOUT_SECONDS = 300


def _start_child(job: str, dtype_name: str):
    """The child running ``job`` for ``dtype_name``, or None if it cannot start."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    # The child must import this very fastinit (a worktree, a test's sys.path), whatever its cwd.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        return subprocess.Popen([sys.executable, "-m", "fastinit._compile_ahead", job, dtype_name], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def compile_in_two(here, job: str, dtype_name: str) -> None:
    """Compile ``here`` in this process while a child process runs ``job``; return when both are done.

    Call it just before a cold compile of the kernel both sides are under (when
    :func:`fastinit._jit.announce_compile` says it is about to compile).

    Parameters
    ----------
    here : iterable of (dispatcher, tuple)
        Kernels and their argument types, compiled here in order.
    job : str
        ``"module:function"``; the child imports the module and calls ``function(dtype_name)``.
    dtype_name : str
        ``"float32"`` or ``"float64"``: what the child builds its records for.
    """
    if numba.config.DISABLE_JIT:
        return
    child = _start_child(job, dtype_name)
    for dispatcher, signature in here:
        dispatcher.compile(signature)
    if child is None:
        return
    try:
        child.wait(timeout=_CHILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _run_job(job: str, dtype_name: str) -> None:
    module, function = job.split(":")
    getattr(importlib.import_module(module), function)(dtype_name)


if __name__ == "__main__":
    _run_job(*sys.argv[1:3])
