"""A cold compile of the propagate kernels on two cores: the backward layer in a second process.

numba compiles on one thread (its compiler lock), and most of a cold compile is its Python
front end typing and lowering each kernel, so a bigger machine does not make the first call
faster.  The walk's two big subtrees, :func:`~fastinit._kernels.layer.forward_layer` and
:func:`~fastinit._kernels.layer.backward_layer`, are independent of each other, though: while
this process compiles the forward layer, a child process compiles the backward layer for the
same record types and writes it to numba's on-disk cache.  When this process then compiles the
walk, numba finds the backward layer in the cache and loads it (measured: 23 s -> 19 s for a
first float32 call on a 2-core AMD EPYC).

Nothing depends on the child: if it cannot start, fails or the cache is not writable, the walk's
compile compiles the backward layer itself, as it always did.  The signatures are those the walk
calls the layers with (:func:`layer_signatures`); ``tests/test_compile_ahead.py`` checks that a
cold first call compiles the backward layer in the child only.

Run as ``python -m fastinit._compile_ahead DTYPE`` (float32 or float64): the child's side.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
from numba.core import types

from fastinit._kernels import layer

__all__ = ["layer_signatures", "compile_layers"]

# A child still compiling after this long is abandoned (the walk then compiles what it lacks).
_CHILD_TIMEOUT_SECONDS = 300


def layer_signatures(cfg, ws):
    """The numba signatures of ``forward_layer`` and ``backward_layer`` as ``walk`` calls them.

    Parameters
    ----------
    cfg : fastinit._kernels.records.LayerConfig
    ws : fastinit._kernels.records.Workspace

    Returns
    -------
    tuple of (tuple, tuple)
        The forward and the backward argument types.
    """
    matrix = types.Array(numba.typeof(ws.h0).dtype, 2, "C")  # a layer's view of a flat row
    stats_row = types.Array(types.float64, 1, "C")
    integer, real = types.int64, types.float64
    boundary = (integer, integer, numba.typeof(cfg), numba.typeof(ws), integer)  # worker, n_workers, cfg, ws, layer
    forward = (*boundary, matrix, real, matrix, stats_row)  # h_in, log_s_in, h_out, stats_row
    backward = (*boundary, matrix, real, matrix, matrix, real, matrix, stats_row)  # ..., grad_out, log_g, grad_in
    return forward, backward


def _start_child(dtype):
    """The child compiling the backward layer for ``dtype``, or None if it cannot start."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    # The child must import this very fastinit (a worktree, a test's sys.path), whatever its cwd.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        return subprocess.Popen([sys.executable, "-m", "fastinit._compile_ahead", np.dtype(dtype).name], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def compile_layers(cfg, ws) -> None:
    """Compile the forward layer here and the backward layer in a child, for the records' types.

    Call it before a cold call of :func:`fastinit._kernels.walk.run` (when the walk is in
    neither this process nor the on-disk cache): the walk's own compile then loads both
    layers instead of compiling them one after the other.

    Parameters
    ----------
    cfg : fastinit._kernels.records.LayerConfig
    ws : fastinit._kernels.records.Workspace
    """
    if numba.config.DISABLE_JIT:
        return
    forward, _ = layer_signatures(cfg, ws)
    child = _start_child(ws.h0.dtype)
    layer.forward_layer.compile(forward)
    if child is None:
        return
    try:
        child.wait(timeout=_CHILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _compile_backward(dtype_name: str) -> None:
    """The child's side: compile ``backward_layer`` for ``dtype_name``'s records into the cache."""
    from fastinit.propagate import Plan  # the one place that makes the records

    plan = Plan.build("he_normal", "relu", depth=2, width=8, batch=4, dtype=dtype_name)
    cfg, ws = plan.config(), plan.workspace(*plan.inputs())
    _, backward = layer_signatures(cfg, ws)
    layer.backward_layer.compile(backward)


if __name__ == "__main__":
    _compile_backward(sys.argv[1])
