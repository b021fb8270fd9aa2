"""Crash safety: a sweep killed with SIGKILL at random moments, then rerun, loses and repeats nothing.

The kills land on observed progress (after a chosen number of newly finished cell files),
never after a fixed delay: on a loaded machine the sweep is slower, and the test waits.
The only clock is a generous deadline against a sweep that hangs; reaching it is a failure.
"""

from __future__ import annotations

import contextlib
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

# 36 cells of about 0.2 s each on a quiet machine (one BLAS thread): many moments to kill at.
DEPTH = 300
STUDY = ["--init", "he_normal", "xavier_normal", "uniform", "--activation", "relu", "tanh", "linear",
         "--depth", str(DEPTH), "--width", "256", "--batch", "128", "--seeds", "4", "--name", "crash", "--no-report"]
CELLS = 3 * 3 * 4
# Per round, kill after this many more cell files (drawn from 1 .. MAX_NEW), either at
# once or at the next sign of a cell being written (a temporary file, else one more
# finished file).  Even with every round at its maximum and a cell per worker finishing
# before the kill lands, the rounds stay short of CELLS, so the rerun has cells to run.
ROUNDS, MAX_NEW = 4, 4
# Against a hung sweep only: a loaded 2-core machine with a cold JIT cache takes minutes.
HANG_SECONDS = 900
POLL_SECONDS = 0.005


def assert_only_whole_files(directory):
    """Every visible file parses; partial writes exist only under dot-prefixed names."""
    if (directory / store.MANIFEST).exists():
        json.loads((directory / store.MANIFEST).read_text())
    for path in directory.rglob("*.parquet"):
        if not path.name.startswith("."):
            pq.read_table(path)


def cell_files(directory) -> tuple[int, bool]:
    """The number of finished cell files, and whether a cell is being written (a dot-prefixed temporary)."""
    try:
        names = [entry.name for entry in os.scandir(directory / store.CELLS)]
    except FileNotFoundError:
        return 0, False
    return (sum(1 for n in names if n.endswith(".parquet") and not n.startswith(".")),
            any(n.startswith(".") for n in names))


def kill_after_new_cells(command, directory, new: int, at_write: bool, log) -> int:
    """Start ``command`` and SIGKILL its whole session once ``new`` more cell files exist.

    With ``at_write``, wait further for the next cell write (its temporary file, or the
    file itself if the write was too quick to see), so that some kills land mid-write.
    Returns the number of finished cell files at the kill.
    """
    before, _ = cell_files(directory)
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + HANG_SECONDS
    try:
        while True:
            finished, writing = cell_files(directory)
            if finished >= before + new + at_write or (at_write and writing and finished >= before + new):
                break
            if process.poll() is not None:
                pytest.fail(f"the sweep ended (exit {process.returncode}) with {finished - before} new cell files, "
                            f"before the kill it waited for:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"a hung sweep: {finished - before} new cell files after {HANG_SECONDS} s, "
                            f"the kill waits for {new}")
            time.sleep(POLL_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a sweep that already ended has no group left
            os.killpg(process.pid, signal.SIGKILL)  # the whole session: pool workers die too
        process.wait()
    return cell_files(directory)[0]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun(tmp_path):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    assert main([*STUDY, "--out", str(reference), "--executor", "serial", "-q"]) == 0
    rng = np.random.default_rng(20261123)
    for round_ in range(ROUNDS):  # each executor, killed right after a cell and mid-write
        executor = ("serial", "local")[round_ % 2]
        command = [sys.executable, "-m", "fastinit.sweep", *STUDY, "--out", str(crashed), "--executor", executor, "-q"]
        kill_after_new_cells(command, crashed, new=int(rng.integers(1, MAX_NEW + 1)), at_write=round_ >= ROUNDS // 2,
                             log=tmp_path / f"round{round_}.log")
        assert_only_whole_files(crashed)
    finished = store.finished_keys(crashed) if (crashed / store.MANIFEST).exists() else set()
    assert 0 < len(finished) < CELLS, "the kills should land mid-sweep"
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", *STUDY, "--out", str(crashed),
                           "--executor", "serial"], capture_output=True, text=True, timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stderr
    ran, skipped = map(int, re.search(r"(\d+) cells run, (\d+) skipped", done.stdout).groups())
    assert (ran, skipped) == (CELLS - len(finished), len(finished)), "finished cells must not be recomputed"
    rows = load(crashed)
    assert rows.groupby("key").size().eq(DEPTH).all() and rows.key.nunique() == CELLS  # each cell exactly once
    assert not [p for p in crashed.rglob(".*") if p.is_file()], "no temporary file left behind"
    pd.testing.assert_frame_equal(rows, load(reference), check_exact=True)
