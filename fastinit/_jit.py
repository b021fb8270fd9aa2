"""The one jit policy every fastinit kernel goes through.

Why these flags:

* ``cache=True`` -- compiled kernels are written next to the sources, so only the
  first run on a machine pays the compile cost (the sweep warms the cache before
  dispatching work to its workers).
* ``nogil=True`` -- kernels release the GIL, so threads and Dask workers overlap.
* ``error_model="numpy"`` -- ``1/0`` gives ``inf`` instead of raising: inf and NaN
  inside a studied network are data, never crashes.
* never ``fastmath`` -- it licenses LLVM to assume no inf/NaN, which would make
  the non-finite counts we record meaningless.  ``tests/test_jit_policy.py`` fails
  if any module passes ``fastmath`` to numba.
"""

from __future__ import annotations

import logging
import os
import types

# numba's OpenMP workers spin after each parallel region by default; between them the
# kernels call BLAS, whose own threads then fight the spinners for the cores (measured
# 40x slower propagation on 2 cores).  libgomp reads this when numba first starts its
# pool, which is lazily, so setting it here works even if numba was imported before.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

__all__ = ["jit", "JIT_OPTIONS", "announce_compile"]

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}

_log = logging.getLogger("fastinit")


def jit(function=None, *, parallel: bool = False, inline: bool = False):
    """Compile ``function`` with the project's jit policy.

    Parameters
    ----------
    function : callable, optional
        The Python function to compile.  When omitted, a decorator is returned,
        so both ``@jit`` and ``@jit(parallel=True)`` work.
    parallel : bool, default False
        Let numba run ``prange`` loops on its thread pool.  Kernels that use it
        must write each iteration to its own slice (no shared accumulators).
        The same Python function may be compiled both ways (a serial variant
        for small arrays): the parallel one gets its own name, see
        :func:`_parallel_twin`.
    inline : bool, default False
        Inline the function into its callers at numba-IR level
        (``inline="always"``).  Use it for small helpers called from loops that
        should vectorise: LLVM cannot vectorise across an opaque call.

    Returns
    -------
    numba.core.registry.CPUDispatcher or callable
        The compiled function, or a decorator producing one.
    """
    def decorate(func):
        if parallel:
            func = _parallel_twin(func)
            # Start numba's threading layer now: a parallel kernel loaded from the cache
            # does not, and a new function linking against it then aborts with "Symbol
            # not found: allocate_sched" (e.g. a user's jitted loop over our kernels).
            numba.get_num_threads()
        return numba.njit(func, parallel=parallel, inline="always" if inline else "never", **JIT_OPTIONS)

    if function is None:
        return decorate
    return decorate(function)


def _parallel_twin(func):
    """A copy of ``func`` named ``<qualname>_parallel``, for the parallel compilation.

    numba keys its on-disk cache and its symbol names by the function's qualified
    name and signature, not by the ``parallel`` flag.  Compiling one function both
    serially and in parallel therefore made the two dispatchers share one cache
    entry: whichever compiled first was loaded by the other (measured: a 64 x 64
    weight draw took 50 us because the "serial" kernel was the parallel one, paying
    a thread-pool launch per call), and a cached caller could link the wrong copy
    and crash (numba issues #8578, #10128).  A distinct name gives the parallel
    variant its own cache file and symbols.
    """
    twin = types.FunctionType(func.__code__, func.__globals__, f"{func.__name__}_parallel",
                              func.__defaults__, func.__closure__)
    twin.__qualname__ = f"{func.__qualname__}_parallel"
    twin.__module__ = func.__module__
    twin.__doc__ = func.__doc__
    twin.__kwdefaults__ = func.__kwdefaults__
    return twin


_CHECKED = set()  # (dispatcher, key) pairs already checked in this process


def announce_compile(dispatcher, args, what: str, seconds: int, key) -> None:
    """Log one line (logger ``"fastinit"``, level WARNING) if calling ``dispatcher`` with
    ``args`` is about to compile: no overload in this process and none in the on-disk cache.

    A cold compile of the big kernels takes a minute or more; without this line the first
    call looks hung.  The check reads the cache's small index file only (numba loads the
    code itself on the call that follows).  It uses numba internals, so on any surprise it
    says nothing rather than fail.

    Parameters
    ----------
    dispatcher : numba.core.registry.CPUDispatcher
        The kernel about to be called.
    args : tuple
        The arguments it will be called with.
    what : str
        What is compiled, e.g. ``"propagate kernels for float32"``.
    seconds : int
        Rough cold compile time on a 2-core machine, for the message.
    key : hashable
        What fixes the argument types (e.g. the dtype): checked once per process, since
        typing the arguments costs more than a small kernel run.
    """
    if (dispatcher, key) in _CHECKED:
        return
    _CHECKED.add((dispatcher, key))
    try:
        sig = tuple(dispatcher.typeof_pyval(a) for a in args)
        if sig in dispatcher.overloads:
            return
        cache = dispatcher._cache
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        if key in cache._cache_file._load_index():
            return
    except Exception:  # NUMBA_DISABLE_JIT, another numba: no announcement
        return
    _log.warning("fastinit: compiling %s (first run on this machine, ~%d s)...", what, seconds)
