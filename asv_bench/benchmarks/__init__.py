"""The asv suite of fastinit: ``cd asv_bench && asv run`` (see the README, "Benchmarks (asv)").

One module per area, each iterating over the registries where it can:

* ``bench_initializers`` -- ``fastinit.sample`` for every ``INITIALIZERS`` entry;
* ``bench_activations`` -- the jitted ``apply``, ``phi`` and ``phi'`` of every ``ACTIVATIONS`` entry;
* ``bench_propagate`` -- ``fastinit.propagate`` at the headline shapes (time, GFLOP/s), a
  10,000-layer net (peak memory), import and first-call compile time, and how close fitted
  per-layer gains sit to theory;
* ``bench_sweep`` -- executor overhead per cell and a small study end to end.

Theory and report benchmarks (``bench_theory.py`` for ``analysis.theory``/``analysis.fit``,
``bench_report.py`` for ``python -m analysis.report``) belong here once ``analysis/`` lands;
``bench_propagate.FitQuality`` should then take its fit and its theoretical gains from there.
"""

