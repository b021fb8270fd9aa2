"""Sweep scaling on this machine: 1 vs 2 workers, and the per-cell overhead of each executor.

Run as a plain script::

    python asv_bench/scaling.py [--repeat 3]

Studies of many small cells (depth 20, width 128, batch 128, about 20 ms each) run on
the serial executor, the local process pool with 1 and 2 workers, and a Dask
LocalCluster with 1 and 2 workers, each into a fresh directory.  Each configuration
runs a study of N and of 3N cells: the difference of the two wall times over the 2N
extra cells is the marginal time per cell, free of start-up (spawning workers, loading
the JIT cache).  Speed-ups are ratios of marginal times to the local pool with one
worker; per-cell overhead is ``marginal * workers - mean cell run time``.  Medians of
``--repeat`` runs, all in one process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from fastinit.sweep import build_study, run_study

CONFIGURATIONS = [("serial", 1), ("local", 1), ("local", 2), ("dask", 1), ("dask", 2)]
INITS = [f"normal:std={0.02 + 0.01 * i:.2f}" for i in range(6)]
ACTIVATIONS = ["relu", "tanh", "linear", "gelu", "silu", "sigmoid"]


def small_study(seeds: int):
    """6 initializer scales x 6 activations x ``seeds`` replicates of small cells."""
    return build_study({"name": "scaling"}, {"init": INITS, "activation": ACTIVATIONS, "depth": [20],
                                              "width": [128], "batch": [128], "seeds": seeds})


def timed_run(study, executor: str, workers: int):
    with tempfile.TemporaryDirectory() as directory:
        outcome = run_study(study, Path(directory) / "out", executor=executor, workers=workers, progress=False)
    assert not outcome.failed and outcome.done == outcome.cells
    return outcome


def measure(executor: str, workers: int, repeat: int) -> dict:
    """Median wall times of the small and large study, and the marginal time per cell."""
    small, large = small_study(2), small_study(6)
    walls_small, walls_large, marginals, cell_times = [], [], [], []
    for _ in range(repeat):
        a, b = timed_run(small, executor, workers), timed_run(large, executor, workers)
        walls_small.append(a.seconds)
        walls_large.append(b.seconds)
        marginals.append((b.seconds - a.seconds) / (b.cells - a.cells))
        cell_times.append(b.cell_seconds / b.cells)
    marginal, cell = statistics.median(marginals), statistics.median(cell_times)
    return {"executor": executor, "workers": workers, "cells": (a.cells, b.cells),
            "wall_small": statistics.median(walls_small), "wall_large": statistics.median(walls_large),
            "marginal": marginal, "cell": cell, "overhead": marginal * workers - cell}


def main(argv=None):
    """Print the scaling table (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [measure(executor, workers, args.repeat) for executor, workers in CONFIGURATIONS]
    base = next(r for r in rows if (r["executor"], r["workers"]) == ("local", 1))
    small, large = rows[0]["cells"]
    print(f"Studies of {small} and {large} cells (depth 20, width 128, batch 128, float32), medians of {args.repeat}\n")
    print(f"| executor | workers | wall s ({small} cells) | wall s ({large} cells) | marginal ms/cell "
          "| speed-up vs local x1 | mean cell run ms | overhead ms/cell |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['executor']} | {r['workers']} | {r['wall_small']:.2f} | {r['wall_large']:.2f} "
              f"| {1000 * r['marginal']:.1f} | {base['marginal'] / r['marginal']:.2f}x | {1000 * r['cell']:.1f} "
              f"| {1000 * r['overhead']:.1f} |")


if __name__ == "__main__":
    main()
