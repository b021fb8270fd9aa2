"""``python -m fastinit``: the variance table of every initializer at one layer shape.

For each scheme: the declared variance rule Var(W), the second moment E[W^2] of one
sampled weight matrix (with its 95 % interval; it estimates Var(W) for the zero-mean
schemes and differs from it for ``constant``), and the per-layer factor by which that
second moment multiplies the pre-activation variance of a linear and of a ReLU layer
(docs/theory.md section 2: ``fan_in * E[W^2] * E[phi(z)^2] / Var(z)``).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from fastinit import INITIALIZERS, sample
from fastinit.initializers import declared_variance

# Examples for schemes with a required parameter.
_DEFAULT_PARAMS = {"constant": {"value": 0.01}}


def variance_table(fan_in: int, fan_out: int, seed: int) -> list[dict]:
    """Rows of the table: one per registered initializer.

    Parameters
    ----------
    fan_in, fan_out : int
        Layer sizes (weight shape ``(fan_out, fan_in)``).
    seed : int
        Root seed of the sampled weights.

    Returns
    -------
    list of dict
        Keys ``init``, ``rule`` (declared Var(W)), ``second_moment`` (mean of the sampled
        weights' squares), ``ci95`` (half-width of its 95 % normal interval),
        ``linear_factor`` and ``relu_factor`` (``fan_in * second_moment`` times
        E[phi(z)^2] / Var(z): 1 and 1/2).
    """
    rows = []
    for name, entry in INITIALIZERS.items():
        params = entry.resolve(**_DEFAULT_PARAMS.get(name, {}))
        weights = sample(name, (fan_out, fan_in), seed=seed, dtype="float64", **params)
        squares = weights.ravel() ** 2
        half_width = 1.96 * squares.std() / math.sqrt(squares.size)
        rule = declared_variance(name, (fan_out, fan_in), **params)
        second_moment = squares.mean()
        rows.append({
            "init": name,
            "rule": rule,
            "second_moment": second_moment,
            "ci95": half_width,
            "linear_factor": fan_in * second_moment,
            "relu_factor": fan_in * second_moment / 2.0,
        })
    return rows


def main(argv=None) -> int:
    """Print the table; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fastinit", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--fan-in", type=int, default=512, help="layer input width")
    parser.add_argument("--fan-out", type=int, default=512, help="layer output width")
    parser.add_argument("--seed", type=int, default=0, help="root seed")
    args = parser.parse_args(argv)
    for flag in ("fan_in", "fan_out"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be an integer >= 1, got {getattr(args, flag)}")
    if not 0 <= args.seed < 2**64:
        parser.error(f"--seed must be in [0, 2**64 - 1], got {args.seed}")
    rows = variance_table(args.fan_in, args.fan_out, args.seed)
    print(f"Weight variance per initializer, shape (fan_out, fan_in) = ({args.fan_out}, {args.fan_in}), seed {args.seed}")
    print("E[W^2]: second moment of the sampled weights, with the half-width of its 95 % interval.")
    print("Per-layer factors fan_in * E[W^2] * E[phi(z)^2] / Var(z) multiply the pre-activation variance "
          "(1 = stable, <1 vanishes, >1 explodes).\n")
    print(f"{'init':<18} {'rule Var(W)':>12} {'E[W^2]':>12} {'+-95%':>10} {'linear x':>9} {'relu x':>8}")
    for row in rows:
        print(f"{row['init']:<18} {row['rule']:>12.4e} {row['second_moment']:>12.4e} {row['ci95']:>10.1e} "
              f"{row['linear_factor']:>9.3f} {row['relu_factor']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
