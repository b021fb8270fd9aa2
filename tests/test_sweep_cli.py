"""``python -m fastinit.sweep``: exit codes, one-line errors, nothing in --out touched on bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastinit.sweep import build_study, load, store
from fastinit.sweep.__main__ import main
from fastinit.sweep.cells import expand
from fastinit.sweep.spec import read_toml

TINY = ["--init", "he_normal", "--activation", "relu", "--depth", "3", "--width", "4", "--batch", "2", "--seeds", "1"]


def snapshot(directory: Path) -> dict:
    """Every file under ``directory`` with a hash of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path):
    """A results directory holding a finished tiny study named 'mine'."""
    out = tmp_path / "mine"
    assert main([*TINY, "--name", "mine", "--out", str(out), "--executor", "serial", "-q", "--no-report"]) == 0
    return out


def bad_toml(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return str(path)


BAD_INPUTS = {
    "unknown init": (lambda t: ["--init", "he_nromal"], "init", "'he_nromal'"),
    "unknown activation": (lambda t: ["--activation", "rleu"], "activation", "'rleu'"),
    "unknown init parameter": (lambda t: ["--init", "normal:stdev=0.1"], "stdev", "normal"),
    "bad parameter value": (lambda t: ["--init", "normal:std=-1"], "std", "-1"),
    "missing toml": (lambda t: [str(t / "nope.toml")], "nope.toml", "does not exist"),
    "malformed toml": (lambda t: [bad_toml(t, "[axes\n")], "study.toml", "not valid TOML"),
    "unknown toml key": (lambda t: [bad_toml(t, "[axes]\nwidht = [3]\n")], "widht", "did you mean 'width'"),
    "empty axis in toml": (lambda t: [bad_toml(t, "[axes]\nbias_std = []\n")], "bias_std", "empty axis"),
    "empty axis flag": (lambda t: ["--depth"], "--depth", "expected at least one argument"),
    "depth < 1": (lambda t: ["--depth", "0"], "depth", "got 0"),
    "width not an integer": (lambda t: ["--width", "12.5"], "width", "'12.5'"),
    "batch < 1": (lambda t: ["--batch", "0"], "batch", "got 0"),
    "batch 1 with batch norm": (lambda t: ["--batch", "1", "--batchnorm", "true"], "batchnorm", "batch axis holds 1"),
    "seeds < 1": (lambda t: ["--seeds", "0"], "seeds", "got 0"),
    "seeds not an integer": (lambda t: ["--seeds", "two"], "seeds", "'two'"),
    "workers < 1": (lambda t: ["--workers", "0"], "workers", "got 0"),
    "unknown executor": (lambda t: ["--executor", "slurm"], "executor", "'slurm'"),
    "scheduler without dask": (lambda t: ["--scheduler", "tcp://127.0.0.1:9"], "scheduler", "--executor dask"),
    "unreachable scheduler": (lambda t: ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
                              "scheduler", "tcp://127.0.0.1:9"),
    "out holds another study": (lambda t: ["--name", "other"], "other", "mine"),
    "out holds another root seed": (lambda t: ["--name", "mine", "--root-seed", "5"], "root seed", "5"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line_and_touches_nothing(case, finished, tmp_path, capsys):
    make_args, *fragments = BAD_INPUTS[case]
    before = snapshot(finished)
    code = main([*TINY, "--name", "mine", "--executor", "serial", *make_args(tmp_path), "--out", str(finished),
                 "--no-report"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m fastinit.sweep: error:"), err
    for fragment in fragments:
        assert fragment in lines[0]
    assert snapshot(finished) == before


@pytest.mark.parametrize("content", ["not a sweep", "format"])
def test_out_directory_of_another_format(tmp_path, capsys, content):
    out = tmp_path / "elsewhere"
    out.mkdir()
    if content == "format":
        (out / store.MANIFEST).write_text(json.dumps({"format": "someone-else/3"}))
    else:
        (out / "notes.txt").write_text("my thesis")
    before = snapshot(out)
    assert main([*TINY, "--out", str(out), "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and ("not a fastinit sweep" in err or "'someone-else/3'" in err)
    assert snapshot(out) == before


def test_a_bad_input_run_from_the_shell_prints_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", "--init", "he_nromal", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "did you mean 'he_normal'" in done.stderr
    assert done.stdout == ""


def test_dry_run_prints_cells_and_estimate_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(["default", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "168 cells" in text and "estimate" in text and "GiB" in text
    assert not out.exists()


def test_failed_cells_exit_1_and_are_listed(tmp_path, capsys, monkeypatch):
    from fastinit.sweep import worker

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(worker, "propagate", broken)
    monkeypatch.setattr(worker, "warm_up", lambda *a, **k: 0.0)
    monkeypatch.setattr("fastinit.sweep.executors.warm_up", lambda *a, **k: 0.0)
    code = main([*TINY, "--out", str(tmp_path / "f"), "--executor", "serial", "--no-report"])
    err = capsys.readouterr().err
    assert code == 1 and "1 of 1 cells failed" in err and "RuntimeError: boom" in err
    assert len(store.failures(tmp_path / "f")) == 1


def test_finished_run_prints_the_flatness_summary(finished, capsys):
    assert main([*TINY, "--name", "mine", "--out", str(finished), "--executor", "serial", "--no-report"]) == 0
    text = capsys.readouterr().out
    assert "0 cells run, 1 skipped" in text and "he_normal" in text
    assert len(load(finished)) == 3


def test_training_sweep_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "train"
    code = main(["--task", "spirals", "--epochs", "2", "--lr", "0.05", "--init", "he_normal", "zeros",
                 "--activation", "relu", "--depth", "3", "--width", "8", "--batch", "32", "--seeds", "1",
                 "--out", str(out), "--executor", "serial", "--no-report"])
    text = capsys.readouterr().out
    assert code == 0 and "Training: final loss" in text and "zeros" in text
    rows = load(out)
    assert set(rows.epoch) == {0, 1, 2} and set(rows.task) == {"spirals"}


@pytest.mark.parametrize("flags, fragment", [
    (["--task", "spiral"], "did you mean 'spirals'"),
    (["--lr", "0"], "lr must be a finite and > 0 real number, got 0.0"),
    (["--epochs", "0"], "epochs must be an integer >= 1"),
    (["--momentum", "1"], "momentum must be in [0, 1)"),
    (["--clip-norm", "-1"], "clip_norm must be"),
])
def test_bad_training_input_exits_2(flags, fragment, tmp_path, capsys):
    assert main([*TINY, *flags, "--out", str(tmp_path / "t"), "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_out_under_a_file_exits_2(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert main([*TINY, "--out", str(blocker / "sub"), "--executor", "serial"]) == 2
    assert "cannot be created" in capsys.readouterr().err


def test_a_kill_between_manifest_and_folders_still_resumes(tmp_path):
    out = tmp_path / "early"
    store.write_manifest(out, {"name": "mine", "root_seed": 0, "seeds": 1, "axes": {}}, {})
    for sub in (store.CELLS, store.FAILED):
        (out / sub).rmdir()
    assert main([*TINY, "--name", "mine", "--out", str(out), "--executor", "serial", "-q", "--no-report"]) == 0


def test_report_failure_does_not_change_the_sweep_exit_code(tmp_path, capsys):
    # zeros everywhere: no gradient reaches layer 1, the heatmap has nothing to draw
    code = main(["--init", "zeros", "--activation", "relu", "--depth", "4", "--width", "8", "--batch", "4",
                 "--seeds", "2", "--out", str(tmp_path / "z"), "--executor", "serial", "-q"])
    assert code == 0 and (tmp_path / "z" / "report" / "index.md").is_file()


@pytest.mark.parametrize("flags, suggestion", [(["--activation", "Reluu"], "did you mean 'relu'"),
                                                (["--init", "He_Nromal"], "did you mean 'he_normal'")])
def test_a_misspelt_name_in_capitals_suggests_the_right_name_from_the_shell(flags, suggestion, tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", *flags, "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr and suggestion in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_names_in_any_case_run_the_registered_names_cells(tmp_path, capsys):
    out = tmp_path / "case"
    assert main(["--init", "He_Normal", "XAVIER_NORMAL", "--activation", "Relu", "TanH", *TINY[4:], "--out", str(out),
                 "--executor", "serial", "-q", "--no-report"]) == 0
    rows = load(out)
    assert set(rows.init) == {"he_normal", "xavier_normal"} and set(rows.activation) == {"relu", "tanh"}
    lower = build_study(read_toml("default"), {"init": ["he_normal", "xavier_normal"], "activation": ["relu", "tanh"],
                                               "depth": ["3"], "width": ["4"], "batch": ["2"], "seeds": "1"})
    assert set(rows.key) == {cell.key for cell in expand(lower)}  # keys do not depend on the spelling


def _dry_run_axes(capsys, *flags):
    assert main([*flags, "--dry-run"]) == 0
    return {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}


def test_dry_run_lists_only_the_axes_that_apply(tmp_path, capsys):
    out = ["--out", str(tmp_path / "dry")]
    training = {"task", "epochs", "lr", "optimizer", "momentum", "beta1", "beta2", "eps", "weight_decay", "clip_norm"}
    propagation = {"bias_std", "numerics"}
    # norm and norm_at: training cells read them too since train has the norm options.
    shared = {"init", "activation", "depth", "width", "batch", "dtype", "residual", "batchnorm", "norm", "norm_at",
              "seeds"}
    assert _dry_run_axes(capsys, "default", *out) == shared | propagation
    assert _dry_run_axes(capsys, "training", *out) == shared | training
    assert _dry_run_axes(capsys, "default", "--task", "none", "spirals", *out) == shared | training | propagation
