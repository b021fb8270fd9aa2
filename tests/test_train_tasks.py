"""Held-out sets of every task, and the digits: split, standardization, chance level, He reaching 90 %."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import naive_train
from fastinit.train import TASKS, build_network, make_task, run
from fastinit.train.run import Plan
from fastinit.train.tasks import DATA_STREAM, MissingExtraError, stratified_split

datasets = pytest.importorskip("sklearn.datasets")  # the [data] extra (in [test] too, so CI runs these)
preprocessing = pytest.importorskip("sklearn.preprocessing")

SYNTHETIC = [name for name, task in TASKS.items() if "n_train" in task.params]
HE = {"nonlinearity": "relu"}


# ---------------------------------------------------------------- held-out sets of the synthetic tasks


@pytest.mark.parametrize("task", SYNTHETIC)
def test_a_held_out_set_leaves_the_training_set_as_it_was(task):
    without = make_task(task, seed=4, n_train=64, n_test=0)
    with_test = make_task(task, seed=4, n_train=64, n_test=32)
    assert np.array_equal(without.x, with_test.x) and np.array_equal(without.y, with_test.y)
    assert without.x_test.shape == (0, without.n_inputs)
    assert with_test.x_test.shape == (32, with_test.n_inputs) and with_test.y_test.shape[0] == 32
    # Fresh examples, not copies of training ones.
    assert not np.isin(with_test.x_test[:, 0], with_test.x[:, 0]).any()
    if with_test.classification:
        assert np.array_equal(with_test.y_test, np.arange(32) % with_test.n_outputs)  # balanced as the training set


def test_teacher_held_out_targets_use_the_training_scale():
    data = make_task("teacher", seed=2, n_train=512, n_test=4096, noise=0.1)
    np.testing.assert_allclose(data.y.std(axis=0), 1.0, rtol=1e-5)
    # Same distribution, same scale: the held-out std is 1 within its sampling error
    # (relative standard error of a std from n draws ~ 1/sqrt(2n) = 0.011 here).
    assert abs(data.y_test.std() - 1.0) < 5 / math.sqrt(2 * 4096) + 5 / math.sqrt(2 * 512)


def test_held_out_columns_at_initialisation_match_the_numpy_twin():
    plan = Plan.build("he_normal", "tanh", depth=3, width=16, task="gaussians", epochs=2, lr=0.05, batch=32, seed=1,
                      dtype="float64", init_params=HE, task_params={"n_train": 128, "n_test": 100})
    net = build_network(plan)
    weights = [net.weight(l) for l in range(1, net.n_layers + 1)]
    biases = [net.bias(l) for l in range(1, net.n_layers + 1)]
    ref_loss, _, _ = naive_train.mlp_gradients(weights, biases, plan.data.x_test, activation="tanh",
                                                labels=plan.data.y_test)
    frame = run("he_normal", "tanh", depth=3, width=16, task="gaussians", epochs=2, lr=0.05, batch=32, seed=1,
                dtype="float64", init_params=HE, task_params={"n_train": 128, "n_test": 100})
    first = frame[frame.epoch == 0].iloc[0]
    assert first.test_loss == pytest.approx(ref_loss, rel=1e-12)  # chunks of 32 summed: reassociation only
    assert 0.0 <= first.test_accuracy <= 1.0 and math.isnan(first.test_r2)
    assert frame.attrs["n_train"] == 128 and frame.attrs["n_test"] == 100


def test_regression_has_test_r2_and_nan_test_accuracy_and_no_held_out_set_is_nan():
    frame = run("xavier_normal", "tanh", depth=2, width=16, task="teacher", epochs=3, lr=0.05, batch=32)
    per_epoch = frame.groupby("epoch").first()
    assert per_epoch.test_accuracy.isna().all()  # regression: accuracy is not defined
    assert np.isfinite(per_epoch.test_loss).all() and per_epoch.test_loss.iloc[-1] < per_epoch.test_loss.iloc[0]
    assert np.isfinite(per_epoch.test_r2).all()
    none = run("xavier_normal", "tanh", depth=2, width=16, task="spirals", epochs=1, lr=0.05, batch=32,
               task_params={"n_test": 0})
    assert none[["test_loss", "test_accuracy", "test_r2"]].isna().all().all()  # nothing held out: not measured
    assert np.isfinite(none.loss).all()


# ---------------------------------------------------------------- digits


def _digits():
    return datasets.load_digits(return_X_y=True)


def test_digits_split_is_stratified_and_fixed_by_the_seed():
    x, y = _digits()
    stream = DATA_STREAM["digits"]
    train, test = stratified_split(y, 0.25, 0, stream)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(y.size))  # a partition
    np.testing.assert_array_equal(np.bincount(y[test]), np.rint(0.25 * np.bincount(y)).astype(int))
    again_train, again_test = stratified_split(y, 0.25, 0, stream)
    assert np.array_equal(test, again_test) and np.array_equal(train, again_train)
    other = stratified_split(y, 0.25, 1, stream)[1]
    assert not np.array_equal(test, other)
    # Two independent 25 % draws share about a quarter of their examples (hypergeometric,
    # mean 450 * 0.25 = 112, sd ~ 8): far from all of them, far from none.
    assert 60 < np.intersect1d(test, other).size < 170


def test_digits_are_standardized_on_the_training_split():
    x, y = _digits()
    train, test = stratified_split(y, 0.25, 3, DATA_STREAM["digits"])
    data = make_task("digits", seed=3, dtype="float64")
    scaler = preprocessing.StandardScaler().fit(x[train])  # population std; std 0 -> scale 1
    constant = x[train].std(axis=0) == 0.0
    assert constant.any()  # the blank corner pixels: the rule below is exercised
    np.testing.assert_allclose(data.x, scaler.transform(x[train]), rtol=0, atol=1e-12)
    expected_test = np.where(constant, 0.0, scaler.transform(x[test]))  # a pixel constant in training: 0
    np.testing.assert_allclose(data.x_test, expected_test, rtol=0, atol=1e-12)
    assert np.array_equal(data.y, y[train]) and np.array_equal(data.y_test, y[test])
    assert data.n_outputs == 10 and data.n_inputs == 64 and data.x.dtype == np.float64


def test_digits_without_scikit_learn_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import sklearn.datasets now raises ImportError
    with pytest.raises(MissingExtraError) as info:
        run("he_normal", "relu", depth=2, width=8, task="digits", epochs=1)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert 'pip install "fastinit[data]"' in message and "scikit-learn" in message and "\n" not in message


DIGITS = dict(depth=6, width=128, task="digits", lr=1e-3, batch=32, optimizer="adam")


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_zero_init_stays_at_chance_on_digits(activation):
    """Zero weights: every hidden unit outputs phi(0) = 0, no weight gradient flows, and only the
    readout bias learns -- the net predicts one class for every image."""
    frame = run("zeros", activation, epochs=5, dtype="float64", **DIGITS)
    data = make_task("digits", seed=0)
    per_epoch = frame.groupby("epoch").first()
    counts = np.bincount(data.y, minlength=10) / data.y.size
    entropy = -(counts * np.log(counts)).sum()  # the best loss a constant prediction can reach
    assert (per_epoch.loss >= entropy - 1e-9).all()
    # Held-out accuracy of a constant prediction is one class's share (44-46 of 450 here).
    assert per_epoch.test_accuracy.max() <= np.bincount(data.y_test).max() / data.y_test.size + 1e-12
    assert (frame[frame.kind == "hidden"].distinct_units == 1).all()


def test_constant_init_never_breaks_symmetry_on_digits():
    """Constant tanh weights do train (the inputs differ), but every hidden layer stays one unit
    repeated: in float64 the units are bitwise identical through every epoch."""
    frame = run("constant", "tanh", epochs=5, init_params={"value": 0.05}, dtype="float64", **DIGITS)
    hidden = frame[frame.kind == "hidden"]
    assert (hidden.distinct_units == 1).all() and hidden.update_norm.max() > 1e-3


def test_he_normal_reaches_90_percent_held_out_on_digits():
    """Depth 6, width 128, ReLU, Adam lr 1e-3, batch 32: above 90 % held-out accuracy within 5 epochs
    at each of three seeds (each seed: its own split, batches and weights)."""
    for seed in range(3):
        frame = run("he_normal", "relu", epochs=5, seed=seed, init_params=HE, **DIGITS)
        per_epoch = frame.groupby("epoch").first()
        assert per_epoch.test_accuracy.iloc[0] < 0.3  # it starts near chance
        assert per_epoch.test_accuracy.iloc[-1] >= 0.90, (seed, per_epoch.test_accuracy.tolist())
