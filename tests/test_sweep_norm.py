"""The sweep's norm and norm_at axes: impossible combinations left out, cells equal to propagate run alone."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from fastinit import propagate
from fastinit.sweep import build_study, expand, load, run_study
from fastinit.sweep.spec import StudyError, preset


def _study(**axes):
    return build_study({"name": "norms", "root_seed": 5}, {"depth": [4], "width": [16], "batch": [8], "seeds": 1,
                                                          **axes})


def test_impossible_combinations_are_left_out_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="fastinit.sweep"):
        cells = expand(_study(residual=[0.0, 0.5], norm=["none", "layer"], norm_at=["preact", "branch", "output"]))
    # 2 x 2 x 3 = 12 combinations; nets: plain, layer@preact, residual, residual + layer at each site.
    assert sorted((c.residual, c.norm, c.norm_at) for c in cells) == sorted([
        (0.0, "none", "preact"), (0.0, "layer", "preact"), (0.5, "none", "preact"),
        (0.5, "layer", "preact"), (0.5, "layer", "branch"), (0.5, "layer", "output")])
    assert "norm_at 'branch' has no norm" in caplog.text and "has no residual branch" in caplog.text


def test_a_grid_with_no_net_is_an_error():
    with pytest.raises(StudyError, match="no cell of the grid is a net that can run: norm_at 'output' has no residual"):
        expand(_study(norm=["layer"], norm_at=["output"]))


def test_the_default_axes_keep_every_earlier_key():
    plain = json.loads(expand(_study())[0].identity())
    assert "norm" not in plain and "norm_at" not in plain  # so pinned keys (test_sweep_spec) stay
    assert json.loads(expand(_study(norm=["layer"]))[0].identity())["norm"] == "layer"


def test_norm_cells_equal_propagate_run_alone(tmp_path):
    study = _study(residual=[0.5], norm=["layer", "batch"], norm_at=["branch", "output"], activation=["tanh"])
    cells = expand(study)
    assert len(cells) == 4
    outcome = run_study(study, tmp_path, executor="serial", progress=False)
    assert outcome.failed == []
    frame = load(tmp_path)
    for cell in cells:
        alone = propagate(**cell.propagate_arguments(study.root_seed))
        mine = frame[frame.key == cell.key].sort_values("layer")
        assert (mine.norm == cell.norm).all() and (mine.norm_at == cell.norm_at).all()
        np.testing.assert_array_equal(mine.act_second_moment.to_numpy(), alone.act_second_moment.to_numpy())


def test_the_modern_preset_is_six_nets_per_point_with_a_registered_activation():
    cells = expand(build_study(preset("modern")))
    assert len(cells) == 3 * 3 * 2 * 6 * 2
    assert "fastinit.example_activations:mish" in {c.activation.name for c in cells}


def test_the_verdict_does_not_quote_plain_chi1_for_residual_or_normalised_nets(tmp_path):
    from analysis.verdict import criticality, describe

    study = _study(residual=[0.0, 0.5], norm=["none", "layer"], norm_at=["preact", "branch"], activation=["tanh"],
                   depth=[12], width=[32], batch=[16], seeds=2)
    run_study(study, tmp_path, executor="serial", progress=False)
    table = criticality(load(tmp_path))
    sentences = describe(table)
    plain = [s for s, (_, row) in zip(sentences, table.iterrows())
             if row.residual == 0 and row.norm == "none"]
    others = [s for s, (_, row) in zip(sentences, table.iterrows())
              if row.residual > 0 or row.norm != "none"]
    assert plain and all("mean-field chi1)" in s for s in plain)
    assert len(others) == 4 and all("does not apply to a residual or normalised net" in s for s in others)


# ------------------------------------------------------------------ training cells


def _training_study(**axes):
    base = {"init": ["he_normal"], "activation": ["tanh"], "depth": [3], "width": [8], "batch": [16],
            "task": ["spirals"], "epochs": [2], "seeds": 1}
    return build_study({"name": "train-norms", "root_seed": 3}, {**base, **axes})


def test_a_training_cell_key_is_pinned_across_the_norm_axes():
    """The norm axes reach training cells at their old values without changing a key (computed by the
    sweep before training cells had them)."""
    cell = expand(build_study({"name": "pin"}, {
        "init": ["he_normal"], "activation": ["relu"], "depth": [4], "width": [16], "batch": [32],
        "task": ["spirals"], "epochs": [3], "lr": [0.05], "residual": [0.5], "batchnorm": [True], "seeds": 1}))[0]
    assert cell.key == "8b9bd053d97e0b37"
    identity = json.loads(cell.identity())
    assert "norm" not in identity and "norm_at" not in identity
    spelled = expand(build_study({"name": "pin"}, {
        "init": ["he_normal"], "activation": ["relu"], "depth": [4], "width": [16], "batch": [32],
        "task": ["spirals"], "epochs": [3], "lr": [0.05], "residual": [0.5], "batchnorm": [True], "norm": ["none"],
        "norm_at": ["preact"], "seeds": 1}))[0]
    assert spelled.key == cell.key


def test_training_cells_cross_the_norm_axes_as_propagation_cells_do():
    cells = expand(_training_study(residual=[0.0, 0.5], norm=["none", "layer"], norm_at=["preact", "branch", "output"]))
    assert sorted((c.residual, c.norm, c.norm_at) for c in cells) == sorted([
        (0.0, "none", "preact"), (0.0, "layer", "preact"), (0.5, "none", "preact"),
        (0.5, "layer", "preact"), (0.5, "layer", "branch"), (0.5, "layer", "output")])
    assert len({c.key for c in cells}) == 6
    assert expand(_training_study(norm=["batch"], batch=[1, 16]))[0].batch == 16  # batch norm at batch 1 left out
    layer_one = expand(_training_study(norm=["layer"], batch=[1]))
    assert [c.batch for c in layer_one] == [1]  # layer norm trains on one example


def test_training_norm_cells_equal_train_run_alone(tmp_path):
    from fastinit import train

    study = _training_study(residual=[0.5], norm=["layer", "batch"], norm_at=["preact", "branch", "output"],
                            width=[2])  # spirals has 2 inputs: every hidden layer is residual
    cells = expand(study)
    assert len(cells) == 6
    outcome = run_study(study, tmp_path, executor="serial", progress=False)
    assert outcome.failed == []
    rows = load(tmp_path)
    for cell in cells:
        arguments = cell.train_arguments(study.root_seed)
        assert (arguments["norm"], arguments["norm_at"]) == (cell.norm, cell.norm_at)
        alone = train.run(**arguments)
        mine = rows[rows.key == cell.key].sort_values(["epoch", "layer"])
        assert (mine.norm == cell.norm).all() and (mine.norm_at == cell.norm_at).all()
        for column in ("loss", "test_loss", "grad_norm", "weight_norm"):
            np.testing.assert_array_equal(mine[column].to_numpy(), alone[column].to_numpy(), err_msg=column)
