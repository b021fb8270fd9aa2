"""The asv suite of fastinit: ``cd asv_bench && asv run`` (see the README, "Benchmarks (asv)").

One module per area, each iterating over the registries where it can:

* ``bench_initializers`` -- ``fastinit.sample`` for every ``INITIALIZERS`` entry;
* ``bench_activations`` -- the jitted ``apply``, ``phi`` and ``phi'`` of every ``ACTIVATIONS`` entry;
* ``bench_propagate`` -- ``fastinit.propagate`` at the headline shapes (time, GFLOP/s), a
  10,000-layer net (peak memory), import and first-call compile time, and how close fitted
  per-layer gains sit to theory;
* ``bench_sweep`` -- executor overhead per cell and a small study end to end;
* ``bench_theory`` -- ``analysis.theory`` on phase-diagram grids and a depth-1000 prediction;
* ``bench_report`` -- ``analysis.report.build_report`` of a small study.

``bench_propagate.FitQuality`` fits its slope with NumPy rather than ``analysis.fit`` on
purpose: it then runs on commits from before ``analysis/`` existed too.
"""

