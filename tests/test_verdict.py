"""Gain statuses on constructed rows, and the criticality verdict against independently computed theory."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import fastinit
from analysis.fit import fit_gains
from analysis.verdict import TOLERANCE_DECADES, criticality, describe
from fastinit.sweep import build_study
from fastinit.sweep.summary import MOST, layer_factors

DEPTH, WIDTH, BATCH, SEEDS = 40, 16, 4, 3
ENTRIES = BATCH * WIDTH  # entries of z_l (or dL/dz_l) in one layer


def cell(init="he_normal", activation="relu", *, forward, backward, seeds=SEEDS, depth=DEPTH, init_params=None,
         fwd_nonfinite=None, grad_nonfinite=None, saturated=0.0, dead=0.0, new_format=True, numerics="rescaled",
         forward_rescaled=True, dtype="float32", label=None):
    """Rows of one cell group shaped like ``fastinit.sweep.load``'s, from per-layer log10 curves.

    ``forward`` and ``backward`` map (layer array, seed) -> log10 variance; the counts map the
    same to non-finite entries.  ``new_format=False`` writes the results format before the
    per-pass counts, where only ``nonfinite`` (their sum) is known; ``None`` the same with the
    per-pass columns present but NaN, as a newer ``load`` fills them in.
    """
    frames = []
    layers = np.arange(1, depth + 1)
    for seed in range(seeds):
        fwd_count = np.zeros(depth) if fwd_nonfinite is None else fwd_nonfinite(layers, seed)
        grad_count = np.zeros(depth) if grad_nonfinite is None else grad_nonfinite(layers, seed)
        frame = pd.DataFrame({
            "init": label or init, "activation": activation, "init_name": init,
            "init_params": json.dumps(init_params or {}), "activation_name": activation, "activation_params": "{}",
            "depth": depth, "width": WIDTH, "batch": BATCH, "bias_std": 0.0, "dtype": dtype, "numerics": numerics,
            "residual": 0.0, "batchnorm": False, "seed": seed, "layer": layers,
            "log10_fwd_var": forward(layers, seed), "log10_grad_var": backward(layers, seed),
            "saturated_frac": np.where(layers == depth, saturated, 0.0),
            "dead_frac": np.where(layers == depth, dead, 0.0),
            "forward_rescaled": forward_rescaled})
        frame["nonfinite"] = fwd_count + grad_count
        if new_format:
            frame["fwd_nonfinite"], frame["grad_nonfinite"] = fwd_count, grad_count
        elif new_format is None:  # an old file read by a load() that fills the later columns with NaN
            frame["fwd_nonfinite"] = frame["grad_nonfinite"] = np.nan
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def line(slope, start=0.0):
    """A noise-free log10 curve with ``slope`` decades per layer (a different offset per seed)."""
    return lambda layers, seed: start + 0.01 * seed + slope * layers


def by_direction(rows):
    return fit_gains(rows).set_index("direction")


# ------------------------------------------------------------------ statuses


@pytest.mark.parametrize("new_format", [True, False, None],
                         ids=["per-pass counts", "format-1 shared count", "format-1 counts filled with NaN"])
def test_overflow_fits_the_layers_before_it_and_leaves_the_backward_pass_unmeasured(new_format):
    top = 30  # z_l overflows float32 from layer 30 on

    def forward(layers, seed):
        values = 1.5 * layers
        # ENGINE's contract: NaN where not known; results before it stored 0.0, i.e. -inf.
        return np.where(layers >= top, np.nan if new_format else -np.inf, values)

    rows = cell("normal", "gelu", init_params={"std": 1.0}, label="normal:std=1.0", forward=forward,
                backward=lambda layers, seed: np.full(layers.size, np.nan if new_format else -np.inf),
                fwd_nonfinite=lambda layers, seed: np.where(layers >= top, ENTRIES, 0),
                grad_nonfinite=lambda layers, seed: np.full(layers.size, ENTRIES), new_format=new_format)
    fits = by_direction(rows)
    assert fits.loc["forward", "status"] == f"overflow at layer {top} (3/3 seeds)"
    assert fits.loc["forward", "log10_gain"] == pytest.approx(1.5, abs=1e-12)  # fitted on layers 1..29 only
    assert fits.loc["backward", "status"] == f"overflow at layer {top} in the forward pass (3/3 seeds)"
    assert np.isnan(fits.loc["backward", ["gain", "gain_low", "gain_high"]].astype(float)).all()


def test_the_earliest_overflow_among_seeds_bounds_every_seeds_fit():
    tops = {0: 25, 1: 30, 2: 35}
    rows = cell("normal", "gelu", init_params={"std": 1.0}, label="normal:std=1.0",
                forward=lambda layers, seed: np.where(layers >= tops[seed], np.nan, 1.5 * layers + 0.1 * seed),
                backward=lambda layers, seed: np.full(layers.size, np.nan),
                fwd_nonfinite=lambda layers, seed: np.where(layers >= tops[seed], ENTRIES, 0),
                grad_nonfinite=lambda layers, seed: np.full(layers.size, ENTRIES))
    forward = by_direction(rows).loc["forward"]
    assert forward.status == "overflow at layer 25 (3/3 seeds)" and forward.seeds == 3
    assert forward.log10_gain == pytest.approx(1.5, abs=1e-12)


def test_a_backward_overflow_ends_the_fit_above_it():
    rows = cell(forward=line(0.0), backward=lambda layers, seed: np.where(layers <= 10, np.nan, -2.0 * layers),
                grad_nonfinite=lambda layers, seed: np.where(layers <= 10, ENTRIES, 0), numerics="raw")
    backward = by_direction(rows).loc["backward"]
    # The gradient runs down from the last layer: its first unknown layer is 10, and layers 11..40 are fitted.
    assert backward.status == "overflow at layer 10 (3/3 seeds)"
    assert backward.log10_gain == pytest.approx(2.0, abs=1e-12)


def test_zeros_is_an_exact_zero_not_an_overflow():
    # zeros init: z_l = 0 at every layer; dL/dz_L = phi'(0) dL/dh_L is nonzero (gelu'(0) = 1/2), all below it 0.
    rows = cell("zeros", "gelu", forward=lambda layers, seed: np.full(layers.size, -np.inf),
                backward=lambda layers, seed: np.where(layers == DEPTH, 0.0, -np.inf))
    fits = by_direction(rows)
    assert fits.loc["forward", "status"] == "exact zero at layer 1 (3/3 seeds)"
    assert fits.loc["backward", "status"] == f"exact zero at layer {DEPTH - 1} (3/3 seeds)"
    assert np.isnan(fits["gain"]).all() and not fits.status.str.contains("overflow").any()
    factors = layer_factors(rows).iloc[0]  # the sweep's quick look says the same
    assert np.isnan(factors.forward) and factors.forward_status == fits.loc["forward", "status"]


def test_constant_init_is_symmetric():
    rows = cell("constant", "tanh", init_params={"value": 0.05}, label="constant:value=0.05",
                forward=line(-0.01), backward=line(0.01))
    fits = by_direction(rows)
    assert (fits.status == "symmetric init").all() and np.isfinite(fits.gain).all()  # measured, but degenerate


def test_saturated_tanh_is_flagged_above_the_stated_threshold():
    just_below = cell("normal", "tanh", init_params={"std": 0.5}, label="normal:std=0.5", forward=line(0.0),
                      backward=line(-0.03), saturated=MOST)
    assert (by_direction(just_below).status == "ok").all()
    saturated = cell("normal", "tanh", init_params={"std": 0.5}, label="normal:std=0.5", forward=line(0.0),
                     backward=line(-0.03), saturated=0.58)
    assert (by_direction(saturated).status == f"saturated (58% at layer {DEPTH})").all()


def test_dead_units_are_flagged():
    rows = cell(forward=line(-0.01), backward=line(0.01), dead=0.75)
    assert (by_direction(rows).status == f"dead units (75% at layer {DEPTH})").all()


def test_an_unrescaled_pass_that_decays_into_the_subnormals_underflowed():
    # float32 tiny = 1.18e-38, so a typical entry is subnormal once Var < tiny^2 ~ 1e-75.8.
    decay = lambda layers, seed: np.where(layers >= 20, -np.inf, -4.0 * layers)  # noqa: E731  -76 at layer 19
    rows = cell("normal", "tanh", init_params={"std": 0.01}, label="normal:std=0.01", forward=decay,
                backward=line(2.0), forward_rescaled=False)
    forward = by_direction(rows).loc["forward"]
    assert forward.status == "underflow at layer 20 (3/3 seeds)"
    assert forward.log10_gain == pytest.approx(-4.0, abs=1e-12)
    # The same sudden zero far from the float range (every unit dead) is an exact zero.
    sudden = cell(forward=lambda layers, seed: np.where(layers >= 20, -np.inf, -0.01 * layers), backward=line(0.0),
                  forward_rescaled=False)
    assert by_direction(sudden).loc["forward", "status"] == "exact zero at layer 20 (3/3 seeds)"


# ------------------------------------------------------------------ verdict against theory


def relu_cell(init, sigma_w2, depth):
    """Noise-free relu curves from the closed form (docs/theory.md section 2): both passes gain sigma_w2 / 2 per layer."""
    slope = math.log10(sigma_w2 / 2.0)
    return cell(init, "relu", depth=depth, forward=line(slope), backward=line(-slope))


@pytest.mark.parametrize("depth", [3, 4, 100])
def test_relu_he_is_critical_and_xavier_only_over_few_layers(depth):
    rows = pd.concat([relu_cell("he_normal", 2.0, depth), relu_cell("xavier_normal", 1.0, depth)])
    table = criticality(rows).iloc[0]
    assert table.verdict == "near-critical" and table.best == "he_normal"
    assert table.chi1 == pytest.approx(2.0 / 2.0)  # chi1 = sigma_w^2 / 2 for relu
    # Xavier halves both passes each layer: within a factor 10 over the depth iff depth log10 2 <= 1.
    xavier_near = depth * math.log10(2.0) <= TOLERANCE_DECADES
    assert ("xavier_normal" in table.near.split(", ")) == xavier_near


def test_when_no_studied_init_is_critical_the_verdict_names_the_scale_that_is():
    rows = relu_cell("xavier_normal", 1.0, 50)
    table = criticality(rows)
    row = table.iloc[0]
    assert row.verdict == "not near-critical" and row.best == "xavier_normal"
    # relu: chi1 = sigma_w^2 E[relu'(z)^2] = sigma_w^2 / 2, so 1 at sigma_w^2 = 2, He's scale.
    assert row.critical_sigma_w2 == pytest.approx(2.0, rel=1e-12)
    assert {"he_normal", "he_uniform"} <= set(row.critical_presets.split(", "))
    sentence = describe(table)[0]
    assert sentence.startswith("relu: no studied initializer is near-critical")
    assert row.critical_init in sentence and "he_normal" in sentence


def test_a_halving_gelu_net_is_not_called_flat():
    rows = cell("he_normal", "gelu", depth=100, forward=line(math.log10(0.52)), backward=line(-math.log10(0.53)))
    table = criticality(rows)
    assert table.iloc[0].verdict == "not near-critical"
    assert "no studied initializer is near-critical" in describe(table)[0]


def test_non_ok_cells_are_never_the_verdict():
    saturated = cell("normal", "tanh", init_params={"std": 0.5}, label="normal:std=0.5", forward=line(0.0),
                     backward=line(0.0), saturated=0.6)  # flat both ways, but saturated
    table = criticality(saturated).iloc[0]
    assert table.verdict == "not measured" and table.best == "" and "saturated" in table.excluded
    assert "no studied initializer was measured in both passes" in describe(criticality(saturated))[0]


def expectation(f):
    return integrate.quad(lambda z: f(z) * stats.norm.pdf(z), -np.inf, np.inf, limit=200, epsabs=1e-13)[0]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_named_critical_scale_is_critical_by_independent_quadrature(activation):
    phi = {"sigmoid": special.expit, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}[activation]
    dphi = {"sigmoid": lambda z: special.expit(z) * (1 - special.expit(z)), "tanh": lambda z: 1 - np.tanh(z) ** 2,
            "relu": lambda z: float(z > 0)}[activation]
    rows = cell("normal", activation, init_params={"std": 1e-3}, label="normal:std=0.001", depth=20,
                forward=line(-1.0), backward=line(1.0))
    row = criticality(rows).iloc[0]
    sigma_w2, q = row.critical_sigma_w2, row.critical_q
    if activation == "tanh":
        # tanh'(0) = 1: chi1 -> sigma_w^2 as q* -> 0, the marginal point docs/theory.md section 3 names.
        assert sigma_w2 == pytest.approx(1.0, rel=1e-9) and q == 0.0
        assert "only marginally" in describe(criticality(rows))[0]
        return
    scale = math.sqrt(q)
    assert sigma_w2 * expectation(lambda z: dphi(scale * z) ** 2) == pytest.approx(1.0, rel=1e-8)  # chi1 = 1
    assert sigma_w2 * expectation(lambda z: phi(scale * z) ** 2) == pytest.approx(q, rel=1e-8)  # q* is fixed


def test_the_named_scale_is_a_valid_sweep_init_with_that_variance():
    row = criticality(relu_cell("xavier_normal", 1.0, 50)).iloc[0]
    study = build_study({"name": "spelled"}, {"init": [row.critical_init], "activation": ["relu"]})
    assert len(study.axes["init"]) == 1
    name, params = row.critical_init.split(":")
    params = dict(item.split("=") for item in params.split(","))
    fan_in = 1000
    weights = fastinit.sample(name, (400, fan_in), scale=float(params["scale"]), mode=params["mode"], seed=1)
    # Sample variance of 4e5 draws: relative standard error sqrt(2 / n) (normal; truncation lowers it).
    assert weights.var() * fan_in == pytest.approx(row.critical_sigma_w2, rel=5 * math.sqrt(2 / weights.size))
