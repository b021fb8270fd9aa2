"""fastinit.train.run: output contract, reproducibility, symmetry, He vs Xavier, divergence, worked example."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import naive_train
from fastinit.train import COLUMNS, TASKS, make_task, run
from fastinit.train import _kernels as K
from fastinit.train import worked_example

HE = {"nonlinearity": "relu"}
SMALL = dict(depth=3, width=16, task="gaussians", epochs=3, lr=0.05, batch=32, task_params={"n_train": 128})


def test_long_frame_contract():
    frame = run("he_normal", "relu", init_params=HE, **SMALL)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == (SMALL["epochs"] + 1) * (SMALL["depth"] + 1)
    assert frame.groupby("epoch").layer.apply(list).map(lambda l: l == [1, 2, 3, 4]).all()
    assert (frame.kind == np.where(frame.layer == 4, "readout", "hidden")).all()
    first = frame[frame.epoch == 0]
    assert first[["batch_loss", "grad_norm_mean", "update_norm"]].isna().all().all()
    assert (first.fan_in.tolist(), first.fan_out.tolist()) == ([8, 16, 16, 16], [16, 16, 16, 4])
    # Epoch-level columns repeat across each epoch's layers.
    assert (frame.groupby("epoch")[["loss", "accuracy", "global_grad_norm"]].nunique() == 1).all().all()
    assert frame.r2.isna().all() and frame.accuracy.between(0, 1).all()
    assert not frame.attrs["diverged"] and frame.attrs["steps_per_epoch"] == 4
    # The global norm is the norm over every layer's weight and bias gradients.
    e0 = frame[frame.epoch == 0]
    assert e0.global_grad_norm.iloc[0] == pytest.approx(math.sqrt((e0.grad_norm**2 + e0.bias_grad_norm**2).sum()), rel=1e-9)


def test_regression_reports_r2_and_nan_accuracy():
    frame = run("xavier_normal", "tanh", depth=2, width=16, task="teacher", epochs=3, lr=0.05, batch=32)
    per_epoch = frame.groupby("epoch").first()
    assert per_epoch.accuracy.isna().all()
    # Targets are standardised: R^2 = 1 - loss exactly for one output.
    np.testing.assert_allclose(per_epoch.r2, 1.0 - per_epoch.loss, rtol=0, atol=1e-9)
    assert per_epoch.loss.iloc[-1] < per_epoch.loss.iloc[0]


def test_same_seed_same_frame_and_stream_changes_only_weights():
    a = run("he_normal", "relu", init_params=HE, **SMALL)
    b = run("he_normal", "relu", init_params=HE, **SMALL)
    pd.testing.assert_frame_equal(a, b)
    c = run("he_normal", "relu", init_params=HE, stream=7, **SMALL)
    assert not np.array_equal(a.weight_norm, c.weight_norm)


def test_order_and_data_depend_on_seed_only():
    x0 = make_task("spirals", seed=3).x
    assert np.array_equal(x0, make_task("spirals", seed=3).x)
    assert not np.array_equal(x0, make_task("spirals", seed=4).x)
    p1 = K.permutation(100, np.uint64(3), np.uint64(11), 1)
    assert sorted(p1.tolist()) == list(range(100))
    assert np.array_equal(p1, K.permutation(100, np.uint64(3), np.uint64(11), 1))
    assert not np.array_equal(p1, K.permutation(100, np.uint64(3), np.uint64(11), 2))


# The generated tasks (the digits have a fixed size and class counts: tests/test_train_digits.py).
SYNTHETIC = [name for name, task in TASKS.items() if "n_train" in task.params]


@pytest.mark.parametrize("task", SYNTHETIC)
def test_tasks_shapes_and_balance(task):
    data = make_task(task, seed=1, n_train=64)
    assert data.x.shape[0] == 64 and data.x.dtype == np.float32
    if data.classification:
        assert np.bincount(data.y).min() == np.bincount(data.y).max()  # balanced: class i % K
        assert data.n_outputs == data.y.max() + 1
    else:
        np.testing.assert_allclose(data.y.std(axis=0), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- symmetry

SYMMETRIC = [("zeros", {}), ("constant", {"value": 0.1}), ("constant", {"value": -0.3})]


@pytest.mark.parametrize("dtype, gemm", [("float64", "blas"), ("float32", "loops")])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("init, params", SYMMETRIC)
def test_symmetric_init_keeps_one_unit_per_hidden_layer(init, params, activation, dtype, gemm):
    frame = run(init, activation, depth=4, width=24, task="spirals", epochs=15, lr=0.1, batch=32, init_params=params,
                dtype=dtype, gemm=gemm, task_params={"n_train": 256})
    hidden = frame[(frame.kind == "hidden") & ~frame.diverged]
    assert (hidden.distinct_units == 1).all()
    assert hidden.epoch.max() == 15  # trained through every epoch


def test_symmetric_init_moves_but_stays_symmetric():
    """Not a frozen net: sigmoid from a constant init does update its hidden weights."""
    frame = run("constant", "sigmoid", depth=3, width=16, task="teacher", epochs=5, lr=0.1, batch=32, dtype="float64",
                init_params={"value": 0.2})
    hidden = frame[frame.kind == "hidden"]
    assert hidden.update_norm.max() > 1e-3
    assert (hidden.distinct_units == 1).all()


@pytest.mark.parametrize("init, params", [("he_normal", HE), ("xavier_normal", {}), ("xavier_uniform", {})])
def test_random_init_keeps_every_unit_distinct(init, params):
    frame = run(init, "relu", depth=4, width=24, task="spirals", epochs=10, lr=0.02, batch=32, init_params=params)
    assert (frame[frame.kind == "hidden"].distinct_units == 24).all()


def test_distinct_rows_matches_twin():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 7))
    w = base[rng.integers(0, 5, 40)] + 1e-7 * rng.standard_normal((40, 7))  # 5 clusters (or fewer drawn)
    b = np.zeros(40)
    assert K.distinct_rows(w, b, 1e-4) == naive_train.distinct_units(w, b, 1e-4)
    assert K.distinct_rows(w, b, 0.0) == 40
    w[3, 2] = np.nan
    assert math.isnan(K.distinct_rows(w, b, 1e-4))


# ---------------------------------------------------------------- He vs Xavier, divergence

# 20 ReLU layers of width 64 on two spirals: Xavier's forward signal shrinks by 1/2 per layer
# (2^-20 at the top) and its loss sits at chance, ln 2, for tens of epochs; He's does not.
SPIRALS = dict(depth=20, width=64, task="spirals", epochs=40, lr=0.01, batch=32)
TARGET_LOSS = 0.5  # well below chance (ln 2 = 0.693)


def _epochs_to(frame, target):
    loss = frame.groupby("epoch").loss.first()
    hit = loss.index[loss.to_numpy() <= target]
    return int(hit[0]) if hit.size else math.inf


def test_he_reaches_target_before_xavier_on_deep_relu_spirals():
    he = [_epochs_to(run("he_normal", "relu", seed=s, init_params=HE, **SPIRALS), TARGET_LOSS) for s in range(4)]
    xavier = [_epochs_to(run("xavier_normal", "relu", seed=s, **SPIRALS), TARGET_LOSS) for s in range(4)]
    assert all(h < x for h, x in zip(he, xavier)), (he, xavier)  # paired: same data and batches per seed
    assert all(h <= SPIRALS["epochs"] for h in he)


def test_too_large_init_diverges_cleanly_unless_clipped():
    kwargs = dict(depth=20, width=64, task="spirals", epochs=5, lr=0.01, batch=32, init_params={"std": 0.5})
    frame = run("normal", "relu", **kwargs)
    assert frame.attrs["diverged"] and frame.attrs["diverged_epoch"] == 1
    per_epoch = frame.groupby("epoch").first()
    assert math.isfinite(per_epoch.loss[0]) and per_epoch.loss[1:].isna().all()
    assert per_epoch.diverged.tolist() == [False] + [True] * 5
    clipped = run("normal", "relu", clip_norm=1.0, **kwargs)
    assert not clipped.attrs["diverged"]
    per_epoch = clipped.groupby("epoch").first()
    assert np.isfinite(per_epoch.loss).all() and (per_epoch.clipped_steps[1:] > 0).all()
    assert per_epoch.loss.iloc[-1] < per_epoch.loss.iloc[0]


# ---------------------------------------------------------------- worked example


def test_worked_example_numbers():
    result = worked_example()  # depth 10, width 256, N(0, 10^2) weights, lr 0.01, full batch
    assert result["product"] == 150 * 100 * 125 * 50 == 93_750_000
    assert result["step"] == pytest.approx(937_500.0) and result["w_after"] == pytest.approx(-937_000.0)
    reading = result["reading"].set_index("factor")
    assert reading.possible_as_sigmoid_layer.to_dict() == {150: False, 100: True, 125: True, 50: True}
    assert reading.abs_z[125] == 0.0
    assert all(factor < 1e-100 for _, factor, _ in result["scalar_chain"])  # a one-unit chain vanishes
    trace = result["trace"]
    hidden = trace[trace.kind == "hidden"]
    # Large sigmoid weights: gradients grow toward the input, Xavier's shrink.
    assert hidden.grad_norm_init.is_monotonic_decreasing and hidden.xavier_grad_norm_init.is_monotonic_increasing
    assert hidden.update_ratio.iloc[0] > 1.0  # the first step moves layer 1 by more than its own norm
    assert 0.5 < result["growth_per_layer"] / result["predicted_growth"] < 2.0
