"""LSUV (Mishkin & Matas 2016) as the initializer "lsuv": each layer's Var(z) within tol of 1 on the batch.

Held against an independent NumPy LSUV written from the paper (the same orthogonal base, the
activation's NumPy twin), against the kernel's own measured variances, and against the NumPy
twin of the whole propagate (the backward pass must see the calibrated weights).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import naive
from fastinit import get_activation, propagate, sample
from fastinit._kernels.draw import weight_substream
from fastinit.initializers import ORTHOGONAL, Draw, fill
from fastinit.lsuv import LSUVError
from fastinit.propagate import Plan


def _paper_lsuv(plan, tol, max_iter):
    """LSUV from the paper: W <- W / sqrt(Var(B)) until |Var(B) - 1| < tol; float64 NumPy throughout."""
    act = get_activation(plan.activation)
    h = plan.inputs()[0].astype(np.float64)
    gains = []
    for layer in range(1, plan.depth + 1):
        w = np.empty((int(plan.widths[layer]), int(plan.widths[layer - 1])))
        fill(w, Draw(ORTHOGONAL, 1.0), seed=plan.seed, stream=plan.stream, substream=weight_substream(layer))
        for _ in range(max_iter + 1):
            z = h @ w.T
            if abs(z.var() - 1.0) < tol:
                break
            w = w / math.sqrt(z.var())
        gains.append(float(np.linalg.norm(w[0])))  # orthogonal rows have norm 1: the norm is the gain
        h = act.phi_np(z)
    return np.array(gains)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "linear"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_layer_reaches_unit_variance_in_the_kernels_own_measure(activation, dtype):
    frame = propagate("lsuv", activation, depth=40, width=96, batch=64, seed=3, dtype=dtype)
    assert np.all(np.abs(frame.fwd_var - 1.0) < 0.1)
    assert len(frame.attrs["lsuv_scales"]) == 40 and max(frame.attrs["lsuv_iterations"]) <= 10


@pytest.mark.parametrize("activation", ["relu", "tanh", "silu"])
def test_the_gains_equal_an_independent_lsuv_from_the_paper(activation):
    plan = Plan.build("lsuv", activation, depth=25, width=64, batch=48, seed=7, dtype="float64")
    # Norms of orthogonal rows are 1 to ~1e-15, so the recovered gains agree to that.
    np.testing.assert_allclose(plan.lsuv.scales, _paper_lsuv(plan, 0.1, 10), rtol=1e-12)


def test_a_tight_tolerance_converges_in_more_rescalings():
    frame = propagate("lsuv", "tanh", depth=10, width=64, batch=64, seed=1, dtype="float64", bias_std=0.3,
                      init_params={"tol": 1e-6, "max_iter": 50})
    np.testing.assert_allclose(frame.fwd_var, 1.0, atol=1e-6)
    assert max(frame.attrs["lsuv_iterations"]) > 1  # the bias makes Var(z) not quadratic in the gain


def test_the_backward_pass_uses_the_calibrated_weights():
    plan = Plan.build("lsuv", "tanh", depth=12, width=40, batch=16, seed=2, dtype="float64", bias_std=0.1,
                      memory_budget=4 * 40 * 40 * 8)  # too small to keep weights: the backward pass redraws them
    assert plan.w_slots < plan.depth
    frame = propagate("lsuv", "tanh", depth=12, width=40, batch=16, seed=2, dtype="float64", bias_std=0.1,
                      memory_budget=4 * 40 * 40 * 8)
    twin = naive.propagate(plan, *plan.inputs())
    for column in ("fwd_var", "grad_var", "wgrad_var"):
        np.testing.assert_allclose(frame[column], twin[column], rtol=1e-10, err_msg=column)


def test_without_data_lsuv_is_its_orthogonal_base():
    np.testing.assert_array_equal(sample("lsuv", (32, 48), seed=5), sample("orthogonal", (32, 48), seed=5))


def test_a_layer_that_cannot_converge_is_an_error_naming_it():
    with pytest.raises(LSUVError, match=r"lsuv did not converge at layer 1: Var\(z_1\) = 1\.2\d* after 10 rescalings "
                                        r"\(tol=0\.1, max_iter=10\); the bias's share"):
        propagate("lsuv", "relu", depth=5, width=64, batch=32, seed=1, bias_std=1.2)


def test_a_non_finite_variance_is_an_error_not_a_nan_gain():
    with pytest.raises(LSUVError, match=r"at layer 1: Var\(z_1\) = inf after 0 rescalings .* not finite"):
        propagate("lsuv", "relu", depth=3, width=16, batch=8, seed=0, dtype="float64", input_std=1e200)


@pytest.mark.parametrize("params, match", [({"tol": 0.0}, "tol"), ({"max_iter": 0}, "max_iter"),
                                           ({"max_iter": 2.5}, "max_iter")])
def test_bad_parameters_are_clear_errors(params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        propagate("lsuv", "relu", depth=3, width=8, batch=4, init_params=params)


# ----------------------------------------------------------------------------- training


def test_train_starts_from_unit_variance_on_its_first_mini_batch():
    from fastinit.train import _kernels as train_kernels
    from fastinit.train.run import Plan as TrainPlan, build_network
    from fastinit.train.tasks import ORDER_STREAM

    plan = TrainPlan.build("lsuv", "tanh", depth=6, width=48, task="gaussians", batch=64, seed=4, dtype="float64")
    net = build_network(plan)
    # The first mini-batch, written out here: epoch 1's order of the training set.
    order = train_kernels.permutation(plan.data.x.shape[0], plan.seed, ORDER_STREAM, 1)
    h = plan.data.x[order[:64]].astype(np.float64)
    for layer in range(1, net.n_layers + 1):
        z = h @ net.weight(layer).T
        assert abs(z.var() - 1.0) < 0.1, layer
        h = np.tanh(z)
    assert len(net.lsuv.scales) == net.n_layers  # the readout is calibrated too


def test_train_runs_lsuv_and_records_its_gains():
    from fastinit.train import run as train_run

    frame = train_run("lsuv", "relu", depth=5, width=32, task="gaussians", epochs=3, lr=0.05, batch=32, seed=1)
    assert len(frame.attrs["lsuv_scales"]) == 6 and not frame.attrs["diverged"]
    losses = frame.groupby("epoch").loss.first()
    assert losses.iloc[-1] < losses.iloc[0]
