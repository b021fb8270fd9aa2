"""Running studies: results, resume, extension, failures and executors that agree bit for bit."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from conftest import Z_TOL

from fastinit import propagate
from fastinit.sweep import build_study, expand, load, run_study, store
from fastinit.sweep import worker as worker_module
from fastinit.sweep.summary import layer_factors

STATS = ["fwd_mean", "fwd_var", "log10_fwd_var", "act_second_moment", "grad_var", "log10_grad_var", "wgrad_var",
         "log10_wgrad_var", "dead_frac", "saturated_frac", "nonfinite", "corr"]


def tiny(**overrides):
    axes = {"init": ["he_normal", "xavier_normal", "zeros"], "activation": ["relu", "tanh"], "depth": [6],
            "width": [8], "batch": [4], "seeds": 2, **overrides}
    return build_study({"name": "tiny", "root_seed": 11}, axes)


def assert_same_rows(left: pd.DataFrame, right: pd.DataFrame):
    pd.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True), check_exact=True)


def test_rows_equal_propagate_run_alone(tmp_path):
    study = tiny()
    outcome = run_study(study, tmp_path, executor="serial", progress=False)
    assert (outcome.done, outcome.skipped, outcome.failed) == (len(expand(study)), 0, [])
    rows = load(tmp_path)
    assert rows.groupby("key").size().eq(6).all() and rows.key.nunique() == len(expand(study))
    for cell in expand(study):
        alone = propagate(**cell.propagate_arguments(study.root_seed))
        mine = rows[rows.key == cell.key]
        assert (mine.init.unique().tolist(), mine.seed.unique().tolist()) == ([cell.init.label], [cell.seed])
        for column in STATS:
            np.testing.assert_array_equal(mine[column].to_numpy(), alone[column].to_numpy(), err_msg=column)
    assert rows.attrs["manifest"]["study"]["root_seed"] == 11


def test_rerun_skips_finished_cells_and_extension_keeps_them(tmp_path):
    run_study(tiny(), tmp_path, executor="serial", progress=False)
    first = load(tmp_path)
    again = run_study(tiny(), tmp_path, executor="serial", progress=False)
    assert (again.done, again.skipped) == (0, len(expand(tiny())))
    grown = tiny(depth=[6, 3], activation=["relu", "tanh", "linear"])
    extended = run_study(grown, tmp_path, executor="serial", progress=False)
    assert extended.skipped == len(expand(tiny())) and extended.done == len(expand(grown)) - extended.skipped
    rows = load(tmp_path)
    assert_same_rows(rows[rows.key.isin(first.key)], first)


def test_no_resume_recomputes_identically(tmp_path):
    run_study(tiny(), tmp_path, executor="serial", progress=False)
    first = load(tmp_path)
    redo = run_study(tiny(), tmp_path, executor="serial", progress=False, resume=False)
    assert redo.done == len(expand(tiny()))
    assert_same_rows(load(tmp_path), first)


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = worker_module.propagate

    def flaky(*args, **arguments):
        if arguments.get("init") == "zeros" and arguments.get("activation") == "tanh":
            raise FloatingPointError("simulated kernel failure")
        return real(*args, **arguments)

    monkeypatch.setattr(worker_module, "propagate", flaky)
    outcome = run_study(tiny(), tmp_path, executor="serial", progress=False)
    assert len(outcome.failed) == 2 and outcome.done == len(expand(tiny())) - 2
    records = store.failures(tmp_path)
    assert {r["init"] for r in records} == {"zeros"} and all("simulated kernel failure" in r["traceback"]
                                                            for r in records)
    monkeypatch.setattr(worker_module, "propagate", real)
    retry = run_study(tiny(), tmp_path, executor="serial", progress=False)
    assert (retry.done, retry.failed, store.failures(tmp_path)) == (2, [], [])


def test_summary_factors_match_theory_for_canonical_pairs(tmp_path):
    """relu+he is flat, relu+xavier halves per layer (docs/theory.md section 2), zeros vanish."""
    depth, width, seeds = 40, 256, 4
    study = build_study({"name": "theory"}, {"init": ["he_normal", "xavier_normal", "zeros"],
                                             "activation": ["relu"], "depth": [depth], "width": [width],
                                             "batch": [64], "seeds": seeds})
    run_study(study, tmp_path, executor="serial", progress=False)
    factors = layer_factors(load(tmp_path)).set_index("init")
    # log variance is a random walk with per-layer variance at most 5/width (docs/theory.md
    # section 4; batch averaging only lowers it), drifting by -2.5/width in ln; the
    # least-squares slope of a random walk over L steps has variance 6 sigma^2 / (5 L).
    drift = np.exp(-2.5 / width)
    tolerance = Z_TOL * np.sqrt(5.0 / width * 6.0 / (5.0 * depth) / seeds)  # in ln, so ~relative
    assert factors.loc["he_normal", "forward"] == pytest.approx(drift, rel=tolerance)
    assert factors.loc["he_normal", "backward"] == pytest.approx(1.0, rel=tolerance)
    assert factors.loc["xavier_normal", "forward"] == pytest.approx(0.5 * drift, rel=tolerance)
    assert factors.loc["xavier_normal", "backward"] == pytest.approx(0.5, rel=tolerance)
    # Zero weights: nothing was measured, so no factor (not a made-up 0, issue 12), and the status says why.
    assert np.isnan(factors.loc["zeros", "forward"])
    assert factors.loc["zeros", "forward_status"] == f"exact zero at layer 1 ({seeds}/{seeds} seeds)"
    from analysis.verdict import criticality  # the verdict is the analysis layer's

    assert criticality(load(tmp_path)).set_index("activation").loc["relu", "best"] == "he_normal"


@pytest.mark.slow
def test_serial_local_and_dask_agree_bit_for_bit(tmp_path):
    # width x batch = 65,536 reaches the parallel kernels (serial runs them on every
    # core, local workers on one thread each); the small cells reach the serial ones.
    study = tiny(width=[8, 256], batch=[4, 256], depth=[3], init=["he_normal", "orthogonal"], seeds=1)
    frames = {}
    for kind in ("serial", "local", "dask"):
        outcome = run_study(study, tmp_path / kind, executor=kind, workers=2, progress=False)
        assert outcome.failed == [] and outcome.done == len(expand(study))
        frames[kind] = load(tmp_path / kind)
    assert_same_rows(frames["local"], frames["serial"])
    assert_same_rows(frames["dask"], frames["serial"])


@pytest.mark.slow
def test_a_dask_worker_killed_mid_sweep_costs_a_retry(tmp_path):
    distributed = pytest.importorskip("distributed")
    # Cells long enough (about 0.1 s each) that the kill lands mid-sweep.
    study = tiny(depth=[40], width=[128], batch=[128], seeds=3)
    run_study(study, tmp_path / "serial", executor="serial", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            pids = list(client.run(os.getpid).values())

            def kill_one_when_started():
                cells = tmp_path / "dask" / store.CELLS
                while not (cells.is_dir() and any(cells.glob("*.parquet"))):
                    time.sleep(0.01)
                os.kill(pids[0], signal.SIGKILL)

            killer = threading.Thread(target=kill_one_when_started, daemon=True)
            killer.start()
            outcome = run_study(study, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address,
                                progress=False)
            killer.join(timeout=60)
    assert outcome.failed == [] and outcome.done == len(expand(study))
    assert_same_rows(load(tmp_path / "dask"), load(tmp_path / "serial"))


def test_training_cells_equal_train_run_alone(tmp_path):
    from fastinit import train

    study = tiny(task=["spirals"], epochs=[3], lr=[0.05], depth=[4], width=[16], batch=[32], seeds=1)
    outcome = run_study(study, tmp_path, executor="serial", progress=False)
    assert outcome.failed == [] and outcome.done == len(expand(study)) == 3 * 2
    rows = load(tmp_path)
    for cell in expand(study):
        alone = train.run(**cell.train_arguments(study.root_seed))
        mine = rows[rows.key == cell.key].sort_values(["epoch", "layer"])
        for column in ("loss", "accuracy", "grad_norm", "weight_norm", "distinct_units"):
            np.testing.assert_array_equal(mine[column].to_numpy(), alone[column].to_numpy(), err_msg=column)


def test_training_axes_never_change_propagation_cells_and_vice_versa():
    plain = {c.key for c in expand(tiny())}
    assert {c.key for c in expand(tiny(lr=[0.1, 0.2], epochs=[3, 4]))} == plain
    trained = {c.key for c in expand(tiny(task=["spirals"]))}
    assert {c.key for c in expand(tiny(task=["spirals"], numerics=["raw", "rescaled"], bias_std=[0.0, 0.5]))} == trained
    assert not trained & plain


def _pool_workers() -> list[int]:
    """PIDs of this process's spawned pool workers (Linux /proc; not the resource tracker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if parent == os.getpid() and b"spawn_main" in command:
            pids.append(int(entry))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds pool workers through /proc")
def test_a_local_worker_killed_mid_sweep_costs_a_rerun_of_its_cells_not_the_sweep(tmp_path, caplog):
    study = tiny(depth=[40], width=[128], batch=[128], seeds=3)
    run_study(study, tmp_path / "serial", executor="serial", progress=False)
    killed = []

    def kill_one_when_started():
        cells = tmp_path / "local" / store.CELLS
        while not (cells.is_dir() and any(cells.glob("*.parquet"))):
            time.sleep(0.01)
        # Freeze the pool before choosing the victim: however slowly this thread is
        # scheduled on a loaded machine, the kill then lands while cells are unfinished.
        workers = _pool_workers()
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        unfinished = len(list(cells.glob("[!.]*.parquet"))) < len(expand(study))
        if workers and unfinished:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])
        for pid in workers[1:] if killed else workers:
            os.kill(pid, signal.SIGCONT)

    killer = threading.Thread(target=kill_one_when_started, daemon=True)
    killer.start()
    outcome = run_study(study, tmp_path / "local", executor="local", workers=2, progress=False)
    killer.join(timeout=60)
    assert killed, "the test should have killed a worker mid-sweep"
    assert "restarted the pool" in caplog.text  # the kill landed while cells were in flight
    assert outcome.failed == [] and outcome.done == len(expand(study))
    assert_same_rows(load(tmp_path / "local"), load(tmp_path / "serial"))
