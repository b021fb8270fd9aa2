"""Cross-checks against torch.nn.init (skipped without torch; CI installs it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from conftest import KS_ALPHA, Z_TOL
from fastinit import ACTIVATIONS, gain, sample
from fastinit.initializers import declared_variance

SHAPE = (400, 300)  # (fan_out, fan_in)


def _torch_weight(torch, init, **kwargs):
    w = torch.empty(SHAPE, dtype=torch.float64)
    init(w, **kwargs)
    return w.numpy().ravel()


def _same_distribution(ours, theirs):
    assert stats.ks_2samp(ours, theirs).pvalue > KS_ALPHA
    # Second moments agree within the combined standard error.
    se = math.sqrt(np.var(ours**2) / ours.size + np.var(theirs**2) / theirs.size)
    assert abs(np.mean(ours**2) - np.mean(theirs**2)) < Z_TOL * se


CASES = [
    ("xavier_normal", {}, "xavier_normal_", {}),
    ("xavier_uniform", {"gain": 5 / 3}, "xavier_uniform_", {"gain": 5 / 3}),
    ("xavier_uniform", {}, "xavier_uniform_", {}),
    ("he_normal", {}, "kaiming_normal_", {}),
    ("he_normal", {"mode": "fan_out", "nonlinearity": "relu"}, "kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("he_uniform", {"nonlinearity": "leaky_relu", "a": 0.2}, "kaiming_uniform_", {"a": 0.2}),
    ("he_uniform", {"mode": "fan_out"}, "kaiming_uniform_", {"mode": "fan_out"}),
    ("truncated_normal", {"std": 0.02, "bound": 2.0}, "trunc_normal_", {"std": 0.02, "a": -0.04, "b": 0.04}),
    ("normal", {"std": 0.1}, "normal_", {"std": 0.1}),
]


@pytest.mark.parametrize(("ours", "params", "theirs", "torch_params"), CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_matches_torch_init(torch, ours, params, theirs, torch_params):
    mine = sample(ours, SHAPE, seed=1, dtype="float64", **params).ravel()
    _same_distribution(mine, _torch_weight(torch, getattr(torch.nn.init, theirs), **torch_params))


@pytest.mark.parametrize("name", ["torch_default", "uniform"])
def test_matches_nn_linear_default(torch, name):
    layer = torch.nn.Linear(SHAPE[1], SHAPE[0], dtype=torch.float64)
    mine = sample(name, SHAPE, seed=2, dtype="float64").ravel()
    _same_distribution(mine, layer.weight.detach().numpy().ravel())


@pytest.mark.parametrize("shape", [(50, 80), (80, 50), (16, 8, 3, 3)])
def test_orthogonal_like_torch(torch, shape):
    theirs = torch.empty(shape)
    torch.nn.init.orthogonal_(theirs, gain=1.5)
    ours = sample("orthogonal", shape, seed=3, gain=1.5)
    flat_t, flat_o = theirs.reshape(shape[0], -1).numpy(), ours.reshape(shape[0], -1)
    # Both are gain * semi-orthogonal along the same axis: identical Gram matrices.
    gram = (lambda m: m @ m.T) if shape[0] <= flat_o.shape[1] else (lambda m: m.T @ m)
    np.testing.assert_allclose(gram(flat_o.astype(np.float64)), gram(flat_t.astype(np.float64)), atol=2e-5)


@pytest.mark.parametrize("shape", [(50, 80), (80, 50), (64, 32, 3, 3), (16, 64, 3, 3)])
def test_orthogonal_declared_variance_is_torch_s(torch, shape):
    theirs = torch.empty(shape, dtype=torch.float64)
    torch.nn.init.orthogonal_(theirs, gain=1.5)
    # torch's squares sum to exactly gain^2 min(rows, cols) (up to float64 rounding):
    # their mean is the variance of the flattened (rows, cols) matrix, not a sample of it.
    assert np.mean(theirs.numpy() ** 2) == pytest.approx(declared_variance("orthogonal", shape, gain=1.5), rel=1e-12)


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.torch_name])
def test_gain_equals_calculate_gain(torch, name):
    assert gain(name) == pytest.approx(torch.nn.init.calculate_gain(ACTIVATIONS[name].torch_name), rel=1e-12)


def test_gain_leaky_and_conv_equal_calculate_gain(torch):
    assert gain("leaky_relu", 0.2) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2), rel=1e-12)
    assert gain("conv2d") == torch.nn.init.calculate_gain("conv2d")
