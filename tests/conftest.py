"""Shared test configuration: headless plotting, named tolerances, helpers."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

# Named tolerances (style guide: justify by the kind of comparison); the twin
# tolerances live beside the twin tests that justify them.
# Two-sided KS p-value below which a sample is declared not from the distribution;
# every statistical test runs at a fixed seed, so this is a fixed verdict, not a flake.
KS_ALPHA = 1e-3
# Monte-Carlo statistics must lie within this many standard errors of theory.
Z_TOL = 5.0


def run_python(code: str, *, threads: int | None = None) -> str:
    """Run ``code`` in a fresh interpreter (optionally with NUMBA_NUM_THREADS) and return stdout."""
    env = dict(os.environ)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{done.stderr}")
    return done.stdout


@pytest.fixture
def torch():
    """PyTorch, seeded, or skip when it is not installed."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch
