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
    assert f"Mean epochs to {HELD_OUT_TARGET:.0%} held-out accuracy (95 % interval over the runs that reached it) — relu: he_normal" in text
    table = pd.read_csv(tmp_path / "report" / "epochs_to_held_out_accuracy.csv").set_index("init")
    assert table.loc["he_normal", "reached"] == 2 and table.loc["zeros", "reached"] == 0  # zeros stays at chance


def test_digits_preset_covers_the_claims():
    """Each of issue 15's claims is one grid of the preset, with what it compares and several seeds."""
    study = build_study(preset("digits"))
    assert all(cell.trains and cell.task == "digits" for cell in expand(study))
    inits, divergence, rescue = study.grids
    assert {c.label for c in inits.axes["init"]} == {"he_normal", "xavier_normal", "torch_default", "zeros",
                                                      "constant:value=0.1"}
    assert inits.axes["activation"][0].name == "relu" and {10, 30} <= set(inits.axes["depth"]) and inits.seeds >= 3
    assert "normal:std=0.5" in {c.label for c in divergence.axes["init"]}  # the too-large init
    assert set(divergence.axes["optimizer"]) == {"adam", "sgd"} and set(divergence.axes["clip_norm"]) == {0.0, 1.0}
    assert len(divergence.axes["lr"]) >= 3
    assert rescue.axes["activation"][0].name == "sigmoid" and rescue.axes["depth"] == (30,)
    assert set(rescue.axes["batchnorm"]) == {False, True} and set(rescue.axes["residual"]) == {0.0, 1.0}


def test_the_epochs_figures_draw_the_configurations_they_title():
    """The table's ``epochs`` column (the result) shadows the epochs axis; the figure must still find its rows."""
    import matplotlib.pyplot as plt

    from analysis import _training_report

    config = {"task": "digits", "depth": 3, "width": 8, "batch": 4, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9,
              "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 0.0, "batchnorm": False,
              "residual": 0.0, "norm": "none", "norm_at": "preact", "dtype": "float32",
              "epochs": 7}  # a 7-epoch study whose runs reached the target in 2
    question = pd.DataFrame({**{key: [value] * 2 for key, value in config.items()}, "init": ["he_normal"] * 2,
                             "activation": ["relu"] * 2, "key": ["k"] * 2, "epoch": [0, 1]})
    table = pd.DataFrame({**{key: [value] for key, value in config.items()}, "init": ["he_normal"],
                          "activation": ["relu"], "epochs": [2.0], "epochs_low": [1.5], "epochs_high": [2.5],
                          "reached": [2], "seeds": [2]})
    figure = _training_report._epochs_figure(table, question, "epochs to target")
    (ax,) = figure.axes
    assert ax.get_legend_handles_labels()[1] == ["he_normal"]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["relu"]
    plt.close(figure)


def test_a_study_of_several_grids_gets_a_figure_per_grid(tmp_path):
    """Each [[grids]] table is one question: figures 8, 9, 11 and 13 per grid, each comparing what its grid varies."""
    out = tmp_path / "grids"
    study = build_study({"name": "g", "root_seed": 0,
                         "axes": {"activation": ["relu"], "depth": [3], "width": [16], "batch": [32],
                                  "task": ["digits"], "epochs": [2], "optimizer": ["adam"], "lr": [1e-3]},
                         "grids": [{"init": ["he_normal", "zeros"], "seeds": 2},
                                   {"init": ["he_normal"], "optimizer": ["sgd"], "lr": [1e-3, 10.0]}]})
    run_study(study, out, executor="serial", progress=False)
    text = build_report(out, tmp_path / "report", formats=["png"]).read_text()
    for name in ("fig8_epochs_to_target_1", "fig8_epochs_to_target_2", "fig11_epochs_to_held_out_accuracy_1",
                 "fig11_epochs_to_held_out_accuracy_2", "fig9_divergence", "fig13_distinct_units"):
        assert f"## {name}\n" in text and (tmp_path / "report" / f"{name}.png").is_file(), name
    # Only grid 2 varies the rate, so it alone gets a divergence map; SGD at lr 10 diverges (plain SGD, He, lr 10).
    assert "fig9_divergence_1" not in text
    divergence = text.split("## fig9_divergence\n")[1].split("##")[0]
    assert "1 of 2 runs diverged (he_normal at lr 10)" in divergence
    # Zeros never breaks symmetry: one distinct unit in every hidden layer, as the figure-13 reading says.
    assert "zeros: at most 1 distinct unit in any hidden layer of 2 runs" in text
