"""The report's held-out section (epochs to 90 % held-out accuracy) and the digits preset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import fit
from analysis.report import HELD_OUT_TARGET, build_report
from fastinit.sweep import build_study, expand, run_study
from fastinit.sweep.spec import preset

pytest.importorskip("sklearn.datasets")


def test_epochs_to_target_reaches_an_accuracy_from_below():
    # Two seeds of one configuration: held-out accuracy crosses 0.9 at epochs 2 and 3.
    rows = pd.DataFrame({"task": "digits", "init": "he_normal", "activation": "relu", "layer": 1,
                         "seed": np.repeat([0, 1], 4), "epoch": np.tile(np.arange(4), 2),
                         "loss": 1.0, "test_accuracy": [0.1, 0.5, 0.92, 0.95, 0.1, 0.4, 0.8, 0.91]})
    table = fit.epochs_to_target(rows, 0.9, measure="test_accuracy")
    assert table.reached.iloc[0] == 2 and table.epochs.iloc[0] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="target is required"):
        fit.epochs_to_target(rows, measure="test_accuracy")


def test_a_digits_study_report_has_the_held_out_section(tmp_path):
    out = tmp_path / "digits"
    study = build_study({"name": "d", "root_seed": 0},
                        {"init": ["he_normal", "zeros"], "activation": ["relu"], "depth": [3], "width": [128],
                         "batch": [32], "task": ["digits"], "epochs": [3], "optimizer": ["adam"], "lr": [1e-3],
                         "seeds": 2})
    run_study(study, out, executor="serial", progress=False)
    index = build_report(out, tmp_path / "report", formats=["png"])
    text = index.read_text()
    name = "fig11_epochs_to_held_out_accuracy"
    assert (tmp_path / "report" / f"{name}.png").is_file() and name in text
    assert f"Fastest to {HELD_OUT_TARGET:.0%} held-out accuracy — relu at lr 0.001: he_normal" in text
    table = pd.read_csv(tmp_path / "report" / "epochs_to_held_out_accuracy.csv").set_index("init")
    assert table.loc["he_normal", "reached"] == 2 and table.loc["zeros", "reached"] == 0  # zeros stays at chance


def test_digits_preset_covers_the_claims():
    study = build_study(preset("digits"))
    axes = study.axes
    assert {c.name for c in axes["init"]} >= {"he_normal", "xavier_normal", "torch_default", "zeros", "constant"}
    assert axes["task"] == ("digits",) and set(axes["optimizer"]) == {"adam", "sgd"}
    assert set(axes["clip_norm"]) == {0.0, 1.0} and set(axes["batchnorm"]) == {False, True}
    assert 0.0 in axes["residual"] and max(axes["residual"]) > 0 and {10, 30} <= set(axes["depth"])
    assert all(cell.trains for cell in expand(study))


def test_the_epochs_figures_draw_the_configurations_they_title():
    """The table's ``epochs`` column (the result) shadows the epochs axis; panels must still find their rows."""
    import matplotlib.pyplot as plt

    from analysis import report

    config = {"task": "digits", "depth": 3, "width": 8, "batch": 4, "lr": 0.01, "clip_norm": 0.0, "batchnorm": False,
              "residual": 0.0, "dtype": "float32", "epochs": 7}  # a 7-epoch study whose runs reached the target in 2
    table = pd.DataFrame({**{key: [value] for key, value in config.items()}, "init": ["he_normal"],
                          "activation": ["relu"], "epochs": [2.0], "epochs_low": [1.5], "epochs_high": [2.5], "reached": [2], "seeds": [2]})
    figure = report._epochs_figure(table, [config], "epochs to target")
    (ax,) = figure.axes
    assert ax.get_legend_handles_labels()[1] == ["he_normal"]
    plt.close(figure)
