"""``fastinit.sweep``: large studies, resumable, local by default, on Dask when they outgrow the machine.

Run one from the shell (``python -m fastinit.sweep --help``) or from Python::

    from fastinit.sweep import build_study, read_toml, run_study, load
    study = build_study(read_toml("default"), {"depth": [50], "seeds": 2})
    run_study(study, "results/quick", executor="local")
    rows = load("results/quick")   # one row per (cell, layer)

Data flows one way: study spec (:mod:`~fastinit.sweep.spec`) -> cells with stable keys
(:mod:`~fastinit.sweep.cells`) -> executor (:mod:`~fastinit.sweep.executors`) -> worker
(:mod:`~fastinit.sweep.worker`) -> Parquet (:mod:`~fastinit.sweep.store`).
"""

from fastinit.sweep.cells import Cell, expand
from fastinit.sweep.runner import Outcome, run_study
from fastinit.sweep.spec import Study, StudyError, build_study, read_toml
from fastinit.sweep.store import ResultsError, load

__all__ = ["Cell", "Outcome", "ResultsError", "Study", "StudyError", "build_study", "expand", "load", "read_toml",
           "run_study"]
