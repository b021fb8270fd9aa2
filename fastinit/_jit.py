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

import numba
from numba.core.registry import CPUDispatcher


__all__ = ["jit", "jit_uncached", "cfunc", "JIT_OPTIONS", "announce_compile"]

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}

_log = logging.getLogger("fastinit")


def jit(function=None, *, inline: bool = False, inner: bool = False):
    """Compile ``function`` with the project's jit policy.

    There is no ``parallel`` option: numba's parallel regions re-optimise everything they
    call and cost seconds of compile time each; parallel kernels run on a thread team
    instead (:mod:`fastinit._team`).

    Parameters
    ----------
    function : callable, optional
        The Python function to compile.  When omitted, a decorator is returned,
        so both ``@jit`` and ``@jit(inline=True)`` work.
    inline : bool, default False
        Inline the function into its callers at numba-IR level
        (``inline="always"``).  Use it for small helpers called from loops that
        should vectorise: LLVM cannot vectorise across an opaque call.
    inner : bool, default False
        The function is called from jitted code only: numba builds no CPython or C
        wrapper for it (measured: 2 s of a 25 s cold compile of the propagate kernels),
        and calling it from Python raises :class:`TypeError`.

    Returns
    -------
    numba.core.registry.CPUDispatcher or callable
        The compiled function, or a decorator producing one.
    """
    def decorate(func):
        options = dict(JIT_OPTIONS, inline="always" if inline else "never")
        if not inner or numba.config.DISABLE_JIT:
            return numba.njit(func, **options)
        cache = options.pop("cache")
        dispatcher = _InnerDispatcher(py_func=func, locals={}, targetoptions=dict(
            options, nopython=True, no_cpython_wrapper=True, no_cfunc_wrapper=True))
        if cache:
            dispatcher.enable_caching()
        return dispatcher

    if function is None:
        return decorate
    return decorate(function)


def jit_uncached(function):
    """Compile a user's function (:func:`fastinit.activations.register`) with the policy, uncached.

    Not cached: a user's function may live in a notebook or an edited module, and the caches
    of the library's own kernels are not keyed by it (the registered kernel is called through
    its address, :mod:`fastinit._registered`).

    Parameters
    ----------
    function : callable
        A Python function numba can compile.

    Returns
    -------
    numba.core.registry.CPUDispatcher
        Lazily compiled (call ``.compile(signature)`` to compile now).
    """
    options = {key: value for key, value in JIT_OPTIONS.items() if key != "cache"}
    return numba.njit(function, **options)


def cfunc(signature, function):
    """A C-callable ``numba.cfunc`` of ``function`` with the policy's numerics, uncached.

    Parameters
    ----------
    signature : numba signature
        The C signature.
    function : callable
        The Python function.

    Returns
    -------
    numba.core.ccallback.CFunc
        With ``.address``, the C function pointer.
    """
    return numba.cfunc(signature, error_model=JIT_OPTIONS["error_model"])(function)


class _InnerDispatcher(CPUDispatcher):
    """A dispatcher without a CPython wrapper: jitted callers link it, Python may not call it
    (numba would jump to a wrapper that does not exist)."""

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.py_func.__module__}.{self.py_func.__qualname__} is compiled for jitted callers only "
                        "(fastinit._jit.jit(inner=True)); call it from a jitted function")


_CHECKED = set()  # (dispatcher, key) pairs already checked in this process


def announce_compile(dispatcher, args, what: str, seconds: int, key) -> bool:
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

    Returns
    -------
    bool
        True if the line was logged: the call is about to compile (the caller may start
        compiling parts of it ahead, :mod:`fastinit._compile_ahead`).
    """
    if (dispatcher, key) in _CHECKED:
        return False
    _CHECKED.add((dispatcher, key))
    try:
        sig = tuple(dispatcher.typeof_pyval(a) for a in args)
        if sig in dispatcher.overloads:
            return False
        cache = dispatcher._cache
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        if key in cache._cache_file._load_index():
            return False
    except Exception:  # NUMBA_DISABLE_JIT, another numba: no announcement
        return False
    _log.warning("fastinit: compiling %s (first run on this machine, ~%d s)...", what, seconds)
    return True
