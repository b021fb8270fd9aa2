"""Timing of analysis.theory on phase-diagram grids: q* and chi1 over (sigma_w2, sigma_b2).

Run as a plain script::

    python asv_bench/theory_grid.py            # tanh, 200 x 200, median of 7 runs
    python asv_bench/theory_grid.py --activation gelu --size 100 --repeat 5

The target is under 1 s for chi1 (which includes q*) on a 200 x 200 tanh grid.  Measured on
the 2-core development machine while other jobs ran (load average 2 to 5, so approximate):
q* 0.14-0.29 s, chi1 0.27-0.56 s; erf (closed forms) 0.03 / 0.05 s; gelu 0.24 / 0.58 s.
The warm-up call builds what later calls reuse: the activation's interpolation table of
ln E[phi^2] (~20 ms) and its q -> inf limits.
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import median_seconds  # noqa: E402 -- a sibling module: run these as scripts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python asv_bench/theory_grid.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--size", type=int, default=200, help="grid points per axis")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    from analysis import theory

    sw, sb = np.meshgrid(np.linspace(0.5, 4.0, args.size), np.linspace(0.0, 0.3, args.size))
    rows = [
        ("fixed_point (q*)", lambda: theory.fixed_point(args.activation, sw, sb)),
        ("chi1 (q* then E[phi'^2])", lambda: theory.chi1(args.activation, sw, sb)),
        ("predict, depth 1000", lambda: theory.predict("xavier_normal", args.activation, 1000, 256, bias_std=0.1)),
    ]
    print(f"{args.activation}, {args.size} x {args.size} grid, median of {args.repeat}")
    for label, function in rows:
        print(f"  {label:28s} {median_seconds(function, args.repeat):8.3f} s")


if __name__ == "__main__":
    main()
