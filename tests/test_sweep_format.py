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
