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
