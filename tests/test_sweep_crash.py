"""Crash safety: a sweep killed with SIGKILL at random moments, then rerun, loses and repeats nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fastinit.sweep import load, store
from fastinit.sweep.__main__ import main

# 36 cells of about 0.2 s each (one BLAS thread): long enough to be killed mid-sweep many times.
DEPTH = 300
STUDY = ["--init", "he_normal", "xavier_normal", "uniform", "--activation", "relu", "tanh", "linear",
         "--depth", str(DEPTH), "--width", "256", "--batch", "128", "--seeds", "4", "--name", "crash", "--no-report"]
CELLS = 3 * 3 * 4


def assert_only_whole_files(directory):
    """Every visible file parses; partial writes exist only under dot-prefixed names."""
    if (directory / store.MANIFEST).exists():
        json.loads((directory / store.MANIFEST).read_text())
    for path in directory.rglob("*.parquet"):
        if not path.name.startswith("."):
            pq.read_table(path)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun(tmp_path):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    assert main([*STUDY, "--out", str(reference), "--executor", "serial", "-q"]) == 0
    moments = np.random.default_rng(20261123).uniform(1.5, 3.5, size=4)
    for round_, delay in enumerate(moments):
        executor = ("serial", "local")[round_ % 2]
        process = subprocess.Popen([sys.executable, "-m", "fastinit.sweep", *STUDY, "--out", str(crashed),
                                    "--executor", executor, "-q"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)  # the whole session: pool workers die too
        process.wait()
        assert_only_whole_files(crashed)
    finished = store.finished_keys(crashed) if (crashed / store.MANIFEST).exists() else set()
    assert 0 < len(finished) < CELLS, "the kills should land mid-sweep"
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", *STUDY, "--out", str(crashed),
                           "--executor", "serial"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ran, skipped = map(int, re.search(r"(\d+) cells run, (\d+) skipped", done.stdout).groups())
    assert (ran, skipped) == (CELLS - len(finished), len(finished)), "finished cells must not be recomputed"
    rows = load(crashed)
    assert rows.groupby("key").size().eq(DEPTH).all() and rows.key.nunique() == CELLS  # each cell exactly once
    assert not [p for p in crashed.rglob(".*") if p.is_file()], "no temporary file left behind"
    pd.testing.assert_frame_equal(rows, load(reference), check_exact=True)
