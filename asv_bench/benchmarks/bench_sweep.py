"""``fastinit.sweep``: what an executor costs per cell, and a small study end to end.

Commits before the sweep landed fail to import this module: asv shows them as gaps.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import fastinit
from fastinit.sweep import build_study, load, read_toml, run_study

from .common import SEED

WORKERS = 2  # fixed, not the core count, so results compare across machines


def _tiny_study():
    """96 cells of a few milliseconds (depth 5, width 16, batch 16): dispatch dominates."""
    return build_study({"name": "tiny", "root_seed": SEED},
                       {"init": ["he_normal", "xavier_normal", "lecun_normal", "uniform"],
                        "activation": ["relu", "tanh", "linear", "gelu"], "depth": [5], "width": [16],
                        "batch": [16], "seeds": 6})


class _Directories:
    """A scratch directory per benchmark, and a fresh results directory per call."""

    def setup(self, *params):
        self.root = Path(tempfile.mkdtemp(prefix="fastinit-asv-"))
        self.names = itertools.count()
        fastinit.propagate("he_normal", "relu", depth=2, width=8, batch=4, seed=SEED)  # warm the JIT cache

    def teardown(self, *params):
        shutil.rmtree(self.root, ignore_errors=True)

    def fresh(self) -> Path:
        return self.root / f"run{next(self.names)}"


class Executors(_Directories):
    """The tiny study on the serial executor and on the local process pool (2 workers)."""

    params = [["serial", "local"]]
    param_names = ["executor"]
    rounds = 1
    timeout = 180

    def setup(self, executor):
        super().setup(executor)
        self.study = _tiny_study()

    def track_overhead_per_cell(self, executor):
        """Dispatch time the cells did not spend computing: (wall x workers - cell time) / cells.

        The wall time starts once the pool is up (``Outcome.seconds``); ``SmallStudy`` times
        start-up with the rest."""
        outcome = run_study(self.study, self.fresh(), executor=executor, workers=WORKERS, progress=False)
        if outcome.failed or outcome.done != outcome.cells:
            raise RuntimeError(f"{len(outcome.failed)} of {outcome.cells} cells failed")
        workers = 1 if executor == "serial" else WORKERS
        return 1000.0 * (outcome.seconds * workers - outcome.cell_seconds) / outcome.cells

    track_overhead_per_cell.unit = "ms/cell"


class SmallStudy(_Directories):
    """The default study's grid (8 initializers x 7 activations) at depth 20, width 64, one seed:
    build, run on the local pool, compact and load back."""

    number = 1
    repeat = (1, 3, 30.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 180

    def time_end_to_end(self):
        study = build_study(read_toml("default"), {"depth": [20], "width": [64], "batch": [64], "seeds": 1})
        directory = self.fresh()
        run_study(study, directory, executor="local", workers=WORKERS, progress=False)
        load(directory)


# The README's main job (``python -m fastinit.sweep``: the default study, its printed verdict and its report) as
# a fresh interpreter runs it; the results go to a temporary directory that the child removes when done.
_MAIN_JOB = """
import tempfile
from fastinit.sweep.__main__ import main
with tempfile.TemporaryDirectory() as scratch:
    main(["--out", scratch + "/default", "--quiet"])
"""


class MainJob:
    """The default study end to end with numba's cache warm (the issue's target: 20 s on 2 cores).

    Setup runs the job once in a child, which fills the cache for every kernel the job reaches (propagate, the
    report's Jacobian spectra); each sample is then a fresh interpreter.
    """

    number = 1
    repeat = (1, 3, 120.0)
    rounds = 1
    timeout = 600

    def setup(self):
        import subprocess
        import sys

        subprocess.run([sys.executable, "-c", _MAIN_JOB], check=True, capture_output=True)

    def timeraw_default_study_warm(self):
        return _MAIN_JOB
