"""The one jit policy: every kernel compiled through fastinit._jit, never with fastmath."""

from __future__ import annotations

import importlib
import pathlib
import pkgutil
import re

import numba
import numpy as np
import pytest

import fastinit

PACKAGE_DIR = pathlib.Path(fastinit.__file__).parent


def _modules():
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="fastinit."):
        yield importlib.import_module(info.name)


def test_no_module_hard_codes_fastmath_or_bypasses_the_policy():
    for path in PACKAGE_DIR.rglob("*.py"):
        if path.name == "_jit.py":
            continue
        source = path.read_text()
        assert not re.search(r"fastmath\s*=", source), f"{path} passes fastmath"
        assert not re.search(r"numba\.(njit|jit)\b|from numba import .*\b(njit|jit)\b", source), f"{path} bypasses fastinit._jit"


def test_every_dispatcher_uses_the_policy():
    dispatchers = [
        obj for module in _modules() for obj in vars(module).values()
        if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == module.__name__
    ]
    assert len(dispatchers) > 10
    for dispatcher in dispatchers:
        options = dispatcher.targetoptions
        assert not options.get("fastmath"), dispatcher
        assert options.get("nogil"), dispatcher
        assert type(dispatcher._cache).__name__ == "FunctionCache", f"{dispatcher} is not cached"
        assert options.get("error_model") == "numpy", dispatcher


def test_an_inner_kernel_runs_under_a_jitted_caller_and_refuses_python():
    # Inner kernels have no CPython wrapper; a Python call must raise, never jump into nothing.
    from fastinit._kernels import blocks
    from fastinit._jit import jit

    @jit
    def parts(n, k):
        return blocks.part(n, np.int64(0), k)[1]

    assert parts(np.int64(10), np.int64(3)) == 3
    with pytest.raises(TypeError, match=r"blocks\.part is compiled for jitted callers only"):
        blocks.part(10, 0, 3)
