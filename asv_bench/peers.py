"""Side-by-side peer benchmarks: fastinit against NumPy and PyTorch in one run.

Run as a plain script (PyTorch optional; its rows are skipped without it)::

    python asv_bench/peers.py sampling      # he_normal float32 (4096, 4096)

Timings on a shared 2-core machine are noisy, so every number is the median of
``--repeat`` runs, and comparisons are ratios measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np


def median_seconds(function, repeat: int) -> float:
    """Median wall time of ``function()`` over ``repeat`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_sampling(repeat: int) -> list[tuple[str, float]]:
    """he_normal float32 at (4096, 4096) against NumPy and PyTorch; returns (label, seconds)."""
    import fastinit

    shape = (4096, 4096)
    std = float(np.sqrt(2.0 / shape[1]))
    rows = [("fastinit.sample('he_normal', float32)", median_seconds(lambda: fastinit.sample("he_normal", shape, seed=1), repeat))]
    generator = np.random.default_rng(0)
    rows.append(("numpy Generator.standard_normal(float32) * std",
                 median_seconds(lambda: generator.standard_normal(shape, dtype=np.float32) * np.float32(std), repeat)))
    out = np.empty(shape, dtype=np.float32)
    rows.append(("numpy standard_normal(out=, float32), no scaling",
                 median_seconds(lambda: generator.standard_normal(out=out, dtype=np.float32), repeat)))
    try:
        import torch
    except ImportError:
        return rows
    rows.append((f"torch.empty().normal_(0, std) [{torch.get_num_threads()} threads]",
                 median_seconds(lambda: torch.empty(shape).normal_(0.0, std), repeat)))
    tensor = torch.empty(shape)
    rows.append(("torch.Tensor.normal_ in place", median_seconds(lambda: tensor.normal_(0.0, std), repeat)))
    rows.append(("torch.nn.init.kaiming_normal_ in place", median_seconds(lambda: torch.nn.init.kaiming_normal_(tensor), repeat)))
    return rows


def print_table(title: str, rows: list[tuple[str, float]]) -> None:
    """Print rows as a Markdown table with each row's speed relative to the first."""
    base = rows[0][1]
    print(f"\n### {title}\n")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numba threads: "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'default')}\n")
    print("| implementation | median s | fastinit speed-up |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.4f} | {seconds / base:.2f}x |")


def main(argv=None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python asv_bench/peers.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sampling"], help="which comparison to run")
    parser.add_argument("--repeat", type=int, default=15, help="timed repetitions per row (median reported)")
    args = parser.parse_args(argv)
    if args.what == "sampling":
        print_table("Sampling: he_normal float32 (4096, 4096)", bench_sampling(args.repeat))


if __name__ == "__main__":
    main()
