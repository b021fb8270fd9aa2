"""The sweep's optimizer axes and held-out columns: keys, arguments, rows, and bad input (exit 2)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastinit.sweep import build_study, expand, load, run_study
from fastinit.sweep.__main__ import main

TINY = ["--init", "he_normal", "--activation", "relu", "--depth", "3", "--width", "4", "--batch", "2", "--seeds", "1"]


def _study(**axes):
    base = {"init": ["he_normal"], "activation": ["relu"], "depth": [3], "width": [8], "batch": [32],
            "task": ["spirals"], "epochs": [2], "seeds": 1}
    return build_study({"name": "opt", "root_seed": 2}, {**base, **axes})


def test_sgd_cells_keep_their_keys_and_ignored_hyper_parameters_add_no_cell():
    # An SGD cell without weight decay is the cell every earlier fastinit ran (same key).
    old = {c.key for c in expand(_study())}
    assert {c.key for c in expand(_study(optimizer=["sgd"], weight_decay=[0.0], beta1=[0.5, 0.9], eps=[1e-3]))} == old
    # Adam ignores momentum, SGD betas and eps: those axes do not multiply the cells.
    adam = expand(_study(optimizer=["adam"], momentum=[0.0, 0.5, 0.9]))
    assert len(adam) == 1 and not {c.key for c in adam} & old
    assert len(expand(_study(optimizer=["adam", "adamw", "sgd"], beta2=[0.99, 0.999], weight_decay=[0.0, 0.01]))) == \
        2 * 2 * 2 + 2  # Adam and AdamW cross beta2 and weight decay; SGD only weight decay


def test_cells_pass_their_rule_s_hyper_parameters_only():
    adam, sgd = expand(_study(optimizer=["adam", "sgd"], beta1=[0.8], weight_decay=[0.1]))
    args = adam.train_arguments(0)
    assert (args["optimizer"], args["betas"], args["eps"], args["weight_decay"]) == ("adam", (0.8, 0.999), 1e-8, 0.1)
    assert "momentum" not in args
    args = sgd.train_arguments(0)
    assert (args["optimizer"], args["momentum"], args["weight_decay"]) == ("sgd", 0.9, 0.1)
    assert "betas" not in args and "eps" not in args


def test_an_adam_sweep_stores_what_train_run_alone_computes(tmp_path):
    from fastinit import train

    study = _study(optimizer=["adam", "adamw"], weight_decay=[0.01], lr=[1e-3])
    outcome = run_study(study, tmp_path, executor="serial", progress=False)
    assert outcome.failed == []
    rows = load(tmp_path)
    assert set(rows.optimizer) == {"adam", "adamw"} and (rows.weight_decay == 0.01).all()
    for cell in expand(study):
        alone = train.run(**cell.train_arguments(study.root_seed))
        mine = rows[rows.key == cell.key].sort_values(["epoch", "layer"])
        for column in ("loss", "test_loss", "test_accuracy", "weight_norm"):
            np.testing.assert_array_equal(mine[column].to_numpy(), alone[column].to_numpy(), err_msg=column)


@pytest.mark.parametrize("flags, fragment", [
    (["--optimizer", "adagrad"], "optimizer must be one of"),
    (["--optimizer", "Adamm"], "did you mean 'adam'"),
    (["--weight-decay", "-0.1"], "weight_decay must be a finite and >= 0 real number, got -0.1"),
    (["--beta1", "1"], "beta1 must be in [0, 1), got 1.0"),
    (["--beta2", "-0.5"], "beta2 must be a finite and >= 0 real number, got -0.5"),
    (["--eps", "0"], "eps must be a finite and > 0 real number, got 0.0"),
])
def test_bad_optimizer_input_exits_2(flags, fragment, tmp_path, capsys):
    assert main([*TINY, "--task", "spirals", *flags, "--out", str(tmp_path / "t"), "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t").exists()


def test_digits_without_scikit_learn_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import sklearn.datasets now raises ImportError
    assert main([*TINY, "--task", "digits", "--out", str(tmp_path / "d"), "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "fastinit[data]"' in err and "scikit-learn" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
