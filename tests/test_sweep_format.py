"""Results written by an earlier fastinit keep loading (style guide item 14).

``tests/data/results-format-1`` was written by fastinit 0.1.0 (format ``fastinit-sweep/1``,
pandas 3.1, pyarrow) with::

    python -m fastinit.sweep --init he_normal zeros --activation relu tanh --depth 4 --width 8 \\
        --batch 4 --seeds 2 --name fixture --out tests/data/results-format-1 --executor serial
    python -m fastinit.sweep --task spirals --epochs 2 --init he_normal --activation relu --depth 2 \\
        --width 4 --batch 32 --seeds 1 --name fixture --out tests/data/results-format-1 --executor serial

Never regenerate it: it stands for files users already have.
"""

from __future__ import annotations

from pathlib import Path

from fastinit.sweep import build_study, expand, load, store

FIXTURE = Path(__file__).parent / "data" / "results-format-1"


def test_old_results_load_with_every_documented_column():
    rows = load(FIXTURE)
    assert rows.attrs["manifest"]["format"] == store.FORMAT == "fastinit-sweep/1"
    for column in ("key", "init", "activation", "init_name", "init_params", "depth", "width", "batch", "seed",
                   "layer", "log10_fwd_var", "log10_grad_var", "task", "epoch", "loss"):
        assert column in rows.columns, column
    propagation, training = rows[rows.task == "none"], rows[rows.task == "spirals"]
    assert propagation.key.nunique() == 8 and len(propagation) == 8 * 4
    assert training.key.nunique() == 1 and len(training) == 3 * 3  # epochs 0-2, 2 hidden layers + readout


def test_old_keys_are_the_keys_this_version_computes():
    """A rerun of the same study must find every old cell finished (keys are stable)."""
    plain = build_study({"name": "fixture"}, {"init": ["he_normal", "zeros"], "activation": ["relu", "tanh"],
                                              "depth": [4], "width": [8], "batch": [4], "seeds": 2})
    trained = build_study({"name": "fixture"}, {"task": ["spirals"], "epochs": [2], "init": ["he_normal"],
                                                "activation": ["relu"], "depth": [2], "width": [4], "batch": [32],
                                                "seeds": 1})
    expected = {cell.key for cell in expand(plain) + expand(trained)}
    assert store.finished_keys(FIXTURE) == expected


def test_columns_added_after_format_1_load_as_not_known_and_new_cells_store_them(tmp_path):
    """Rows written before ``fwd_nonfinite``, ``grad_nonfinite`` and the ``*_pass`` columns
    existed get them as NaN / None; a cell written now stores them, overflow pass included."""
    import math

    from fastinit.sweep import run_study

    old = load(FIXTURE)
    propagation = old[old.task == "none"]
    assert propagation.fwd_nonfinite.isna().all() and propagation.grad_nonfinite.isna().all()
    assert propagation.first_overflow_pass.isna().all() and propagation.first_underflow_pass.isna().all()
    study = build_study({"name": "new"}, {"init": ["normal:std=1", "he_normal"], "activation": ["linear"],
                                          "depth": [50], "width": [64], "batch": [4], "numerics": ["raw"]})
    run_study(study, tmp_path, executor="serial", progress=False)
    rows = load(tmp_path)
    blown = rows[rows.init_name == "normal"]
    # Factor 64 per layer in the variance: typical entries 64^(l/2) pass float32's 3.4e38 at
    # layer 43 (the largest of 256 entries a layer or so earlier).
    assert (blown.first_overflow_pass == "forward").all() and 39 <= blown.first_overflow_layer.iloc[0] <= 44
    assert (blown.fwd_nonfinite > 0).any() and blown.fwd_var[blown.fwd_nonfinite > 0].isna().all()
    calm = rows[rows.init_name == "he_normal"]
    assert calm.first_overflow_pass.isna().all() and (calm.fwd_nonfinite == 0).all()
    assert not math.isnan(calm.grad_nonfinite.sum())
