"""fastinit.jacobian_singular_values against closed forms, free-probability theory and PyTorch autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import theory
from fastinit import jacobian_singular_values, rng
from fastinit._kernels.draw import weight_substream
from fastinit.initializers import fill
from fastinit.propagate import Plan


def test_an_orthogonal_linear_net_is_an_isometry():
    values = jacobian_singular_values("orthogonal", "linear", depth=50, width=64, seed=3)
    assert values.shape == (64,)
    np.testing.assert_allclose(values, 1.0, rtol=1e-12)


def test_orthogonal_gain_scales_every_singular_value_by_its_power():
    # J = gain^L Q for a product Q of orthogonal matrices: every singular value is gain^L.
    values = jacobian_singular_values("orthogonal", "linear", depth=400, width=32, init_params={"gain": 1.5})
    np.testing.assert_allclose(values, 1.5**400, rtol=1e-10)  # 1e70: carried in a log scale on the way


def test_gaussian_linear_spectrum_matches_free_probability():
    # LeCun normal, linear: chi1 = 1, so theory says mean 1 and variance L of the spectrum of J J^T
    # (infinite width).  The normalised trace of a product of L n x n Wisharts has variance ~ 2L/n^2,
    # so the mean over the seeds is within 5 of its standard errors; the variance has O(L/n) finite-width
    # corrections (4 % here) on top of its sampling error, so it gets 15 %.
    depth, width, seeds = 10, 256, 4
    predicted = theory.jacobian_spectrum("linear", depth, 1.0)
    eigen = [jacobian_singular_values("lecun_normal", "linear", depth=depth, width=width, seed=s) ** 2
             for s in range(seeds)]
    means = np.array([e.mean() for e in eigen])
    standard_error = math.sqrt(2 * depth) / width / math.sqrt(seeds)
    assert abs(means.mean() - float(predicted.mean)) < 5 * standard_error
    assert np.mean([e.var() for e in eigen]) == pytest.approx(float(predicted.variance), rel=0.15)


def _torch_singular_values(torch, plan):
    """The same net written in PyTorch, its Jacobian by autograd, with weights drawn as the kernel draws them."""
    weights, biases = [], []
    for layer in range(1, plan.depth + 1):
        w = np.empty((int(plan.widths[layer]), int(plan.widths[layer - 1])))
        fill(w, plan.draws[layer - 1], seed=plan.seed, stream=plan.stream, substream=weight_substream(layer))
        b = np.zeros(int(plan.widths[layer]))
        if plan.bias_std > 0:
            rng.fill(b, rng.KIND_NORMAL, plan.bias_std, 0.0, plan.seed, plan.stream, weight_substream(layer) + 1)
        weights.append(torch.from_numpy(w))
        biases.append(torch.from_numpy(b))
    phi = {"tanh": torch.tanh, "gelu": lambda z: torch.nn.functional.gelu(z), "relu": torch.relu}[plan.activation]

    def net(h):
        for w, b in zip(weights, biases):
            branch = phi(w @ h + b)
            h = h + plan.residual * branch if plan.residual is not None else branch
        return h

    h0 = torch.from_numpy(plan.inputs()[0][0])
    jacobian = torch.autograd.functional.jacobian(net, h0)
    return torch.linalg.svdvals(jacobian).numpy()


@pytest.mark.parametrize("init, activation, options", [
    ("xavier_normal", "tanh", dict(width=[12, 16, 20, 10], bias_std=0.3)),
    ("he_normal", "gelu", dict(width=16, residual=0.5)),
    ("orthogonal", "relu", dict(width=[16, 16, 8, 24], init_params={"gain": 1.2})),
])
def test_matches_pytorch_autograd(torch, init, activation, options):
    depth = len(options["width"]) if isinstance(options["width"], list) else 5
    values = jacobian_singular_values(init, activation, depth=depth, seed=7, **options)
    plan = Plan.build(init, activation, depth=depth, batch=1, seed=7, dtype="float64", **options)
    np.testing.assert_allclose(values, _torch_singular_values(torch, plan), rtol=1e-10, atol=1e-13)


def test_a_float32_orthogonal_linear_net_is_an_isometry_to_float32_rounding():
    # float32 nets draw their own numbers; orthogonal ones are rounded from float64, so each layer is
    # orthogonal to ~1e-7 and 20 layers to ~20 * 6e-8.
    values = jacobian_singular_values("orthogonal", "linear", depth=20, width=48, dtype="float32")
    np.testing.assert_allclose(values, 1.0, atol=20 * 2**-24 * 4)


def test_batch_norm_is_refused_by_name():
    with pytest.raises(ValueError, match="batchnorm needs batch >= 2"):
        jacobian_singular_values("he_normal", "relu", depth=3, width=8, batchnorm=True)
