"""Gain fits: recovery of known slopes, interval coverage, comparison with theory, spread."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import Z_TOL

from analysis.fit import compare, default_target, epochs_to_target, fit_gains, slopes, spread

SLOPE, SIGMA, DEPTH = -0.01, 0.03, 50


def synthetic(draws: int, seeds: int, *, seed: int, slope=SLOPE, sigma=SIGMA, depth=DEPTH) -> pd.DataFrame:
    """``draws`` independent groups of ``seeds`` random-walk curves with a known drift per layer.

    log10 forward variance = cumulative sum of N(slope, sigma^2) steps (the finite-width
    picture of docs/theory.md section 4); the backward curve mirrors it, so its gain is the same.
    """
    steps = np.random.default_rng(seed).normal(slope, sigma, size=(draws, seeds, depth))
    curve = np.cumsum(steps, axis=2)
    group, replicate, layer = np.meshgrid(np.arange(draws), np.arange(seeds), np.arange(1, depth + 1), indexing="ij")
    return pd.DataFrame({"init": group.ravel().astype(str), "activation": "relu", "depth": depth, "width": 256,
                         "seed": replicate.ravel(), "layer": layer.ravel(), "log10_fwd_var": curve.ravel(),
                         "log10_grad_var": -curve.ravel()})


def test_recovers_a_known_gain_within_its_standard_error():
    seeds = 40
    fits = fit_gains(synthetic(1, seeds, seed=1), method="t").set_index("direction")
    # OLS slope of a random walk: variance 6 sigma^2 / (5 L) per seed (independent check).
    standard_error = SIGMA * math.sqrt(6.0 / (5.0 * DEPTH) / seeds)
    for direction in ("forward", "backward"):
        assert fits.loc[direction, "log10_gain"] == pytest.approx(SLOPE, abs=Z_TOL * standard_error)
        assert fits.loc[direction, "gain"] == pytest.approx(10**fits.loc[direction, "log10_gain"])
        assert fits.loc[direction, "gain_low"] < fits.loc[direction, "gain"] < fits.loc[direction, "gain_high"]


@pytest.mark.parametrize("seeds, method, draws, nominal", [
    (3, "t", 1000, 0.95), (5, "t", 1000, 0.95), (30, "t", 1000, 0.95), (30, "bootstrap", 300, 0.95),
    (5, "t", 1000, 0.80),
])
def test_intervals_cover_at_their_nominal_rate(seeds, method, draws, nominal):
    fits = fit_gains(synthetic(draws, seeds, seed=seeds + draws), method=method, level=nominal)
    forward = fits[fits.direction == "forward"]
    covered = ((forward.log10_gain_low <= SLOPE) & (forward.log10_gain_high >= SLOPE)).mean()
    # Coverage is a binomial proportion over independent draws.  The bootstrap's known
    # small-sample shortfall (about 2 points at 30 seeds) is allowed for explicitly.
    standard_error = math.sqrt(nominal * (1 - nominal) / draws)
    shortfall = 0.03 if method == "bootstrap" else 0.0
    assert nominal - shortfall - Z_TOL * standard_error <= covered <= nominal + Z_TOL * standard_error


def test_vanished_signal_is_not_measured_and_says_so():
    """An exactly zero variance has no per-layer gain: NaN with its status, never a made-up 0 (issue 12)."""
    rows = synthetic(1, 3, seed=2)
    rows["log10_fwd_var"] = -np.inf
    fits = fit_gains(rows).set_index("direction")
    assert np.isnan(fits.loc["forward", ["gain", "gain_low", "gain_high", "log10_gain"]].astype(float)).all()
    assert fits.loc["forward", "status"] == "exact zero at layer 1 (3/3 seeds)"
    assert fits.loc["backward", "gain"] > 0 and fits.loc["backward", "status"] == "ok"
    rows["log10_grad_var"] = -np.inf  # the gradient pass starts at the last layer
    backward = fit_gains(rows).set_index("direction").loc["backward"]
    assert np.isnan(backward.gain) and backward.status == f"exact zero at layer {DEPTH} (3/3 seeds)"


def test_first_layer_skips_a_transient():
    rows = synthetic(1, 4, seed=3, sigma=1e-4)
    rows.loc[rows.layer <= 10, "log10_fwd_var"] = 5.0  # a plateau before the steady decay
    assert fit_gains(rows, first_layer=11).set_index("direction").loc["forward", "log10_gain"] == pytest.approx(
        SLOPE, abs=1e-4)


def test_compare_measures_deviation_in_interval_units():
    fits = fit_gains(synthetic(1, 10, seed=4))
    compared = compare(fits, lambda row: 10**SLOPE if row.direction == "forward" else 10**-SLOPE)
    forward = compared.set_index("direction").loc["forward"]
    inside = forward.log10_gain_low <= SLOPE <= forward.log10_gain_high
    assert (abs(forward.deviation) <= 1.0) == inside
    far = compare(fits, lambda row: 10.0).set_index("direction").loc["forward"]
    assert far.deviation < -1.0  # fitted gain far below a theory of 10 per layer


def test_slopes_one_row_per_replicate():
    table = slopes(synthetic(2, 3, seed=5))
    assert len(table) == 6 and {"forward_slope", "backward_slope"} <= set(table.columns)


def test_spread_is_the_across_seed_variance_of_ln():
    rows = synthetic(1, 50, seed=6, slope=0.0)
    table = spread(rows)
    # Var of a random walk after l steps of sigma (log10) is l sigma^2, in ln: (ln 10)^2 l sigma^2.
    expected = (math.log(10) * SIGMA) ** 2 * table["layer"].to_numpy()
    relative_se = math.sqrt(2.0 / (50 - 1))  # of a sample variance from 50 normal draws
    ratio = table["var_ln"].to_numpy() / expected
    assert np.all(np.abs(ratio - 1.0) < Z_TOL * relative_se)
    assert table["depth_over_width"].iloc[-1] == pytest.approx(DEPTH / 256)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"level": 1.5}, "level must be in (0, 1)"),
    ({"method": "jackknife"}, "method must be one of"),
    ({"first_layer": 0}, "first_layer must be an integer >= 1"),
])
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError) as caught:
        fit_gains(synthetic(1, 3, seed=7), **kwargs)
    assert fragment in str(caught.value)


def synthetic_training(seeds: int, *, rate: float, seed: int, diverge: bool = False) -> pd.DataFrame:
    """Loss curves 1 * exp(-rate * epoch) with small noise; optionally one run turns NaN."""
    noise = np.random.default_rng(seed).normal(0.0, 0.01, size=(seeds, 21))
    loss = np.exp(-rate * np.arange(21))[None, :] * np.exp(noise)
    if diverge:
        loss[0, 5:] = np.nan
    replicate, epoch = np.meshgrid(np.arange(seeds), np.arange(21), indexing="ij")
    return pd.DataFrame({"task": "spirals", "init": f"rate{rate}", "activation": "relu", "depth": 20, "seed":
                         replicate.ravel(), "epoch": epoch.ravel(), "layer": 1, "loss": loss.ravel()})


def test_epochs_to_target_counts_the_first_epoch_below_target():
    rows = pd.concat([synthetic_training(6, rate=0.5, seed=1), synthetic_training(6, rate=0.25, seed=2, diverge=True)])
    table = epochs_to_target(rows, target=0.25).set_index("init")
    # exp(-rate * e) <= 0.25  <=>  e >= ln 4 / rate: 2.77 -> epoch 3, 5.55 -> epoch 6; the
    # neighbouring epochs miss the target by >= 10 %, far beyond the 1 % noise.
    assert table.loc["rate0.5", "epochs"] == 3.0 and table.loc["rate0.5", "reached"] == 6
    assert table.loc["rate0.25", "reached"] == 5 and table.loc["rate0.25", "diverged"] == 1
    assert table.loc["rate0.25", "epochs"] == 6.0
    assert default_target(rows) == pytest.approx(0.75, rel=0.02)  # three quarters of the initial loss of 1


def test_training_groups_keep_dtypes_apart():
    """Every study axis separates groups: float32 and float64 runs of one seed are two runs."""
    rows = pd.concat([synthetic_training(3, rate=0.5, seed=8).assign(dtype="float32"),
                      synthetic_training(3, rate=0.25, seed=9).assign(dtype="float64", init="rate0.5")])
    table = epochs_to_target(rows, target=0.25).set_index("dtype")
    assert list(table.seeds) == [3, 3] and table.loc["float32", "epochs"] == 3.0
    assert table.loc["float64", "epochs"] == 6.0
