"""What the benchmark modules share: the seed and the registry coverage check.

Threads are pinned by asv itself, from ``env_nobuild`` in ``asv.conf.json`` (also for
``--python=same``): see the README, "Benchmarks (asv)".
"""

from __future__ import annotations

# Every benchmark draws from this root seed: results are deterministic.
SEED = 20240611


def require_complete(kind: str, registry, covered) -> None:
    """Raise at import unless ``covered`` names exactly the entries of ``registry``.

    Parameters
    ----------
    kind : str
        What the registry holds ("initializer", "activation"), for the message.
    registry : Mapping
        ``fastinit.INITIALIZERS`` or ``fastinit.ACTIVATIONS``.
    covered : Iterable of str
        The names a benchmark module parametrises over.

    Raises
    ------
    RuntimeError
        Naming the entries without a benchmark and the benchmarked names that are gone.
    """
    missing = sorted(set(registry) - set(covered))
    stale = sorted(set(covered) - set(registry))
    if missing or stale:
        raise RuntimeError(f"the {kind} benchmarks must cover the registry exactly: add {missing} "
                           f"and drop {stale} in asv_bench/benchmarks")
