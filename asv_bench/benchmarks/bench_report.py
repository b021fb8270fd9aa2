"""``python -m analysis.report``: a whole report (every figure in every format) of a small study.

The issue's yardstick is the default study's report in under 30 s; this benchmark uses a
smaller study of the same shape (8 initializers x 7 activations, fewer layers and seeds) so
the suite stays quick.  Commits before ``analysis/`` landed fail to import it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from analysis.report import build_report
from fastinit.sweep import build_study, read_toml, run_study

from .common import SEED


class Report:
    """Figures, tables and index of a 112-cell study (depth 30, width 64, 2 seeds)."""

    timeout = 300
    rounds = 1
    repeat = 3
    number = 1

    def setup_cache(self):
        root = Path(tempfile.mkdtemp(prefix="fastinit-asv-report-"))
        study = build_study({**read_toml("default"), "root_seed": SEED},
                            {"depth": [30], "width": [64], "batch": [64], "seeds": 2})
        run_study(study, root / "results", executor="serial", progress=False)
        return str(root)

    def setup(self, root):
        self.out = Path(tempfile.mkdtemp(prefix="fastinit-asv-out-"))

    def teardown(self, root):
        shutil.rmtree(self.out, ignore_errors=True)

    def time_report(self, root):
        build_report(Path(root) / "results", self.out)
