"""Tests for the activation registry: every entry passes the same battery.

Run with ``python -m pytest tests/test_activations.py -q -W error``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastinit import activations as act
from fastinit.activations import ACTIVATIONS, apply, dphi, get_activation, phi, phi_and_dphi

# Kernel vs NumPy twin: the same formulas in the same float64 arithmetic (scipy's expit/ndtr/
# erf and libm's exp/erfc are each correct to a few ulp), so only rounding separates them.
TWIN_RTOL = 1e-12
# ... plus an absolute floor for values that underflow towards subnormals in the tails
# (e.g. gelu(-38)), where relative accuracy is meaningless.
TWIN_ATOL = 1e-14
# Against PyTorch: independent implementations, some with cancelling forms (torch's gelu is
# 0.5 x (1 + erf), its sigmoid' is s (1 - s)) that are accurate to ~eps in absolute terms
# but not relatively, hence a looser relative and a few-eps absolute tolerance.
TORCH_RTOL = 1e-10
TORCH_ATOL = 1e-13
# Central differences with step H: truncation H^2/6 |phi'''| (|phi'''| <= FD_THIRD_BOUND
# for every registered activation away from kinks) plus rounding ~ eps |phi| / H.
FD_STEP = 1e-6
FD_THIRD_BOUND = 4.0
EPS = np.finfo(np.float64).eps
EXTREMES = np.array([1e4, -1e4, np.inf, -np.inf, np.nan])

NAMES = list(ACTIVATIONS)
PARAMETRISED = [n for n, a in ACTIVATIONS.items() if a.param_name]


def _grid():
    # 0, tiny and moderate values of both signs, and the tails up to +-50.
    small = np.array([1e-300, 1e-12, 1e-8, 1e-4, 1e-2])
    return np.unique(np.concatenate([[0.0], small, -small, np.linspace(-50.0, 50.0, 2001)]))


GRID = _grid()


def _params(activation):
    """The default parameter, plus a non-default one for parametrised activations."""
    if activation.param_name is None:
        return [activation.default_param]
    return [activation.default_param, {"slope": 0.2, "alpha": 0.5}[activation.param_name]]


def _jitted(activation, x, param):
    out_phi, out_dphi = np.empty_like(x), np.empty_like(x)
    apply(activation.code, x, param, out_phi, out_dphi)
    return out_phi, out_dphi


# ----------------------------------------------------------------------------- registry shape
def test_registry_keys_and_codes_are_consistent():
    codes = [a.code for a in ACTIVATIONS.values()]
    assert len(set(codes)) == len(codes)
    for name, activation in ACTIVATIONS.items():
        assert activation.name == name
        assert getattr(act, name.upper()) == activation.code
        assert activation.description.startswith("phi(x) =")


def test_alias_resolves_to_silu():
    assert get_activation("swish") is ACTIVATIONS["silu"]
    for name in ACTIVATIONS:
        assert get_activation(name) is ACTIVATIONS[name]


def test_unknown_code_gives_nan():
    unknown = max(a.code for a in ACTIVATIONS.values()) + 1
    assert np.isnan(phi(unknown, 1.0, 0.0)) and np.isnan(dphi(unknown, 1.0, 0.0))


# ----------------------------------------------------------------------------- kernel vs twin
@pytest.mark.parametrize("name", NAMES)
def test_kernel_matches_numpy_twin(name):
    activation = ACTIVATIONS[name]
    for param in _params(activation):
        got_phi, got_dphi = _jitted(activation, GRID, param)
        np.testing.assert_allclose(got_phi, activation.phi_np(GRID, param),
                                   rtol=TWIN_RTOL, atol=TWIN_ATOL)
        np.testing.assert_allclose(got_dphi, activation.dphi_np(GRID, param),
                                   rtol=TWIN_RTOL, atol=TWIN_ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_scalar_functions_agree_with_apply(name):
    # phi and dphi are projections of phi_and_dphi: they must agree bit for bit.
    activation = ACTIVATIONS[name]
    param = activation.default_param
    got_phi, got_dphi = _jitted(activation, GRID, param)
    for i in range(0, GRID.size, 37):
        x = GRID[i]
        assert phi(activation.code, x, param) == got_phi[i]
        assert dphi(activation.code, x, param) == got_dphi[i]
        assert phi_and_dphi(activation.code, x, param) == (got_phi[i], got_dphi[i])


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_differences(name):
    activation = ACTIVATIONS[name]
    x = GRID
    if not activation.smooth:  # the kink is at 0: keep the stencil on one side of it
        x = x[np.abs(x) > 2 * FD_STEP]
    for param in _params(activation):
        ahead = activation.phi_np(x + FD_STEP, param)
        behind = activation.phi_np(x - FD_STEP, param)
        estimate = (ahead - behind) / (2 * FD_STEP)
        scale = np.maximum(np.abs(ahead), np.abs(behind)) + 1.0
        tolerance = FD_STEP**2 / 6 * FD_THIRD_BOUND + 4 * EPS * scale / FD_STEP
        error = np.abs(estimate - activation.dphi_np(x, param))
        assert np.all(error <= tolerance), f"worst at x={x[np.argmax(error - tolerance)]}"


# ----------------------------------------------------------------------------- declared traits
@pytest.mark.parametrize("name", NAMES)
def test_homogeneous_flag(name):
    activation = ACTIVATIONS[name]
    x = GRID
    holds = all(
        np.allclose(activation.phi_np(c * x), c * activation.phi_np(x), rtol=1e-14, atol=0.0)
        for c in (0.5, 3.0)
    )
    assert holds == activation.homogeneous


@pytest.mark.parametrize("name", NAMES)
def test_bounded_flag(name):
    activation = ACTIVATIONS[name]
    far = np.abs(activation.phi_np(np.array([1e4, -1e4])))
    if activation.bounded:
        assert np.all(far <= 1.0)  # every bounded entry (tanh, sigmoid, erf) maps into [-1, 1]
    else:
        assert far.max() > 1e3


@pytest.mark.parametrize("name", NAMES)
def test_dead_zone_flag(name):
    activation = ACTIVATIONS[name]
    negative = GRID[GRID < 0]
    derivative_on_left = activation.dphi_np(negative)
    if activation.has_dead_zone:
        assert np.all(derivative_on_left == 0.0)
    else:
        assert np.all(activation.dphi_np(np.array([-1.0, 1.0])) != 0.0)


# ----------------------------------------------------------------------------- extreme inputs
@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_are_safe(name):
    activation = ACTIVATIONS[name]
    for param in _params(activation):
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
            warnings.simplefilter("error")
            results = [_jitted(activation, EXTREMES, param),
                       (activation.phi_np(EXTREMES, param), activation.dphi_np(EXTREMES, param))]
        for values, slopes in results:
            for out in (values, slopes):
                assert np.isnan(out[-1])  # NaN in, NaN out
                assert not np.any(np.isnan(out[:-1]))
            # At +-inf: phi diverges with the sign it has at +-1e4, or equals its plateau;
            # phi' has already reached its limit at +-1e4.
            for far, infinite in ((0, 2), (1, 3)):
                if np.isinf(values[infinite]):
                    assert np.sign(values[infinite]) == np.sign(values[far])
                else:
                    assert values[infinite] == values[far]
                assert slopes[infinite] == slopes[far]
        np.testing.assert_array_equal(results[0][0], results[1][0])
        np.testing.assert_array_equal(results[0][1], results[1][1])


# ----------------------------------------------------------------------------- against PyTorch
def _torch_functions(torch, param):
    functional = torch.nn.functional
    return {
        "linear": lambda x: x,
        "relu": functional.relu,
        "leaky_relu": lambda x: functional.leaky_relu(x, negative_slope=param),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "gelu": lambda x: functional.gelu(x, approximate="none"),
        "silu": functional.silu,
        "elu": lambda x: functional.elu(x, alpha=param),
        "selu": functional.selu,
        "softplus": functional.softplus,
        "erf": torch.erf,
    }


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_including_subgradients_at_zero(name):
    torch = pytest.importorskip("torch")
    activation = ACTIVATIONS[name]
    # torch's softplus returns x itself above its threshold of 20, so stay within +-20;
    # 0 is on the grid, where torch fixes the subgradient conventions.
    x = GRID[np.abs(GRID) <= 20.0]
    for param in _params(activation):
        function = _torch_functions(torch, param)[name]
        tensor = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        function(tensor).sum().backward()
        with torch.no_grad():
            expected_phi = function(tensor).numpy()
        expected_dphi = tensor.grad.numpy()
        got_phi, got_dphi = _jitted(activation, x, param)
        np.testing.assert_allclose(got_phi, expected_phi, rtol=TORCH_RTOL, atol=TORCH_ATOL)
        np.testing.assert_allclose(got_dphi, expected_dphi, rtol=TORCH_RTOL, atol=TORCH_ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_torch_name_is_exactly_where_torch_has_a_gain(name):
    torch = pytest.importorskip("torch")
    activation = ACTIVATIONS[name]
    if activation.torch_name is None:
        with pytest.raises(ValueError):
            torch.nn.init.calculate_gain(name)
    else:
        assert torch.nn.init.calculate_gain(activation.torch_name) > 0


# ----------------------------------------------------------------------------- bad input
def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        get_activation("rellu")
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation(3)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_is_named(name):
    activation = ACTIVATIONS[name]
    with pytest.raises(TypeError, match="'bogus'"):
        activation.resolve_param(bogus=1.0)


@pytest.mark.parametrize("name", PARAMETRISED)
def test_parameter_resolution(name):
    activation = ACTIVATIONS[name]
    key = activation.param_name
    assert activation.resolve_param() == activation.default_param
    assert activation.resolve_param(**{key: 0.5}) == 0.5
    for bad in (np.inf, np.nan):
        with pytest.raises(ValueError, match=key):
            activation.resolve_param(**{key: bad})
    for bad in ("0.1", True):
        with pytest.raises(TypeError, match=key):
            activation.resolve_param(**{key: bad})
    with pytest.raises(ValueError, match=key):
        activation.phi_np(1.0, np.inf)  # the NumPy twins validate too


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_elu_alpha_must_be_positive(alpha):
    with pytest.raises(ValueError, match="alpha must be a finite and > 0 real number"):
        get_activation("elu").resolve_param(alpha=alpha)


def test_parameterless_activation_rejects_a_parameter():
    with pytest.raises(TypeError, match="'slope'.*allowed parameters: none"):
        get_activation("relu").resolve_param(slope=0.1)
