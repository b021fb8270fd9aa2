"""What every benchmark module shares: thread pinning, the seed, the registry coverage check.

Import this before NumPy or numba (the package ``__init__`` does): the thread limits are read
by OpenBLAS and numba only when they load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "asv.conf.json"


def pin_threads() -> dict:
    """Put ``asv.conf.json``'s ``env_nobuild`` thread limits into ``os.environ``, unless set.

    asv sets these itself in the environments it builds, but ignores the matrix for an
    existing environment (``--python=same``, which CI uses): reading them from the one
    config file keeps both kinds of run measuring the same thing.  A value already in the
    environment wins, so ``OMP_NUM_THREADS=2 asv run --python=same`` still works.

    Returns
    -------
    dict
        The variables and the values now in effect.
    """
    pinned = json.loads(CONF.read_text())["matrix"]["env_nobuild"]
    for key, value in pinned.items():
        os.environ.setdefault(key, value if isinstance(value, str) else value[0])
    return {key: os.environ[key] for key in pinned}


THREADS = pin_threads()

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
