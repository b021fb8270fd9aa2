"""fastinit.propagate against its NumPy twin, PyTorch autograd, and theory."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import naive
from conftest import Z_TOL, run_python
from fastinit import propagate
from fastinit.propagate import Plan

COMPARED = ["fwd_mean", "fwd_var", "act_second_moment", "grad_var", "wgrad_var", "dead_frac", "saturated_frac", "corr", "nonfinite"]

CONFIGS = {
    "plain-relu": dict(init="he_normal", activation="relu", init_params={"nonlinearity": "relu"}),
    "bias-tanh": dict(init="xavier_normal", activation="tanh", bias_std=0.3),
    "residual-relu": dict(init="he_normal", activation="relu", residual=0.4),
    "batchnorm-tanh": dict(init="he_normal", activation="tanh", batchnorm=True),
    "batchnorm-residual-relu": dict(init="xavier_uniform", activation="relu", batchnorm=True, residual=0.5, bias_std=0.1),
    "unequal-widths-gelu": dict(init="xavier_normal", activation="gelu", width=[24, 48, 16, 40, 32, 8]),
    "orthogonal-leaky": dict(init="orthogonal", activation="leaky_relu", activation_params={"slope": 0.2}),
    "correlated-inputs-erf": dict(init="he_uniform", activation="erf", input_corr=0.3),
}


@pytest.fixture(params=[1, 2, 8])
def lanes(request, monkeypatch):
    """Run the test with the batch cut into 1, 2 and 8 lanes (by default, every test batch
    below 128 is one lane)."""
    monkeypatch.setattr(sys.modules["fastinit.propagate"], "_lanes", lambda batch: request.param)
    return request.param


def _run(config, dtype, depth=6, width=32, batch=20, **extra):
    kwargs = dict(config)
    kwargs.setdefault("width", width)
    kwargs.update(extra)
    init, activation = kwargs.pop("init"), kwargs.pop("activation")
    frame = propagate(init, activation, depth=depth, batch=batch, seed=3, dtype=dtype, **kwargs)
    plan = Plan.build(init, activation, depth=depth, batch=batch, seed=3, dtype=dtype, **kwargs)
    twin = naive.propagate(plan, *plan.inputs())
    return frame, twin


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_numpy_twin_float64(name, lanes):
    frame, twin = _run(CONFIGS[name], "float64")
    for column in COMPARED:
        # Same float64 operations up to summation order and the rescaling products.
        np.testing.assert_allclose(frame[column], twin[column], rtol=1e-9, atol=1e-12, err_msg=column)


@pytest.mark.parametrize("name", CONFIGS)
def test_float32_matches_twin_within_float32_rounding(name, lanes):
    frame, twin = _run(CONFIGS[name], "float32")
    for column in ["fwd_var", "act_second_moment", "grad_var", "wgrad_var", "corr"]:
        # float32 storage of every activation: relative errors ~1e-7 per op, a few hundred ops deep.
        np.testing.assert_allclose(frame[column], twin[column], rtol=2e-4, atol=1e-6, err_msg=column)


@pytest.mark.parametrize("activation, stored_per_layer", [("relu", 1), ("tanh", 2)])
def test_recomputed_segments_give_identical_statistics(activation, stored_per_layer, lanes):
    kwargs = dict(depth=40, width=32, batch=16, seed=5, init_params={"nonlinearity": "relu"}, bias_std=0.1)
    whole = propagate("he_normal", activation, **kwargs)
    # A budget of 3 layers forces 14 segments, all but the last recomputed in the backward
    # pass.  A layer keeps its output (batch x width; tanh also phi', relu reads it off the
    # output) and its weights (width x width).
    budget = 3 * (stored_per_layer * 16 * 32 + 32 * 32) * 4
    pieces = propagate("he_normal", activation, memory_budget=budget, **kwargs)
    assert pieces.attrs["segment_layers"] == 3 and whole.attrs["segment_layers"] == 40
    assert whole.equals(pieces)


@pytest.mark.parametrize("n_lanes, options", [
    (None, "bias_std=0.2"),  # batch 256: the default 2 lanes
    (8, "bias_std=0.2"),
    (8, "batchnorm=True, residual=0.5"),
    (8, "memory_budget=2**20"),  # weights drawn again and segments recomputed
])
def test_same_results_on_one_and_two_threads(n_lanes, options):
    lanes_line = f"sys.modules['fastinit.propagate']._lanes = lambda batch: {n_lanes}\n" if n_lanes else ""
    code = (
        "import hashlib, sys\nfrom fastinit import propagate\n"
        f"{lanes_line}"
        f"df = propagate('he_normal', 'tanh', depth=30, width=96, batch=256, seed=4, {options})\n"
        "print(df.attrs['lanes'], df.attrs['workers'], hashlib.sha256(df.to_numpy().tobytes()).hexdigest())"
    )
    lanes, workers, digest = run_python(code, threads=1).split()
    lanes_2, workers_2, digest_2 = run_python(code, threads=2).split()
    assert (lanes, workers, lanes_2, workers_2) == (str(n_lanes or 2), "1", lanes, "2")
    assert digest == digest_2


def test_one_kernel_signature_per_dtype():
    # Options change the records' values, never their types (counts int64, flags bool,
    # parameters float64): every call of one dtype reuses one compiled kernel.
    code = (
        "from fastinit import propagate\nfrom fastinit._kernels import walk as K\n"
        "for dtype in ('float32', 'float64'):\n"
        "    propagate('he_normal', 'relu', depth=3, width=8, batch=4, dtype=dtype)\n"
        "    propagate('orthogonal', 'tanh', depth=3, width=[8, 6, 4], batch=300, dtype=dtype, bias_std=0.1,\n"
        "              input_corr=0.3, numerics='raw', stream=2**63 + 1, seed=2**64 - 1)\n"
        "    propagate('constant', 'gelu', depth=5, width=8, batch=8, dtype=dtype, batchnorm=True, residual=1,\n"
        "              memory_budget=1, init_params={'value': 0.1})\n"
        "print(len(K.forward_pass.signatures), len(K.backward_pass.signatures))"
    )
    assert run_python(code).split() == ["2", "2"]


@pytest.mark.parametrize("batch, expected", [(2, 1), (127, 1), (128, 2), (256, 2), (511, 2), (512, 4), (1024, 8),
                                             (10**6, 8)])
def test_lanes_follow_the_batch_only(batch, expected):
    from fastinit.propagate import _lanes

    assert _lanes(batch) == expected


@pytest.mark.parametrize("threads", [3, 8])
def test_more_workers_than_cores_neither_hang_nor_change_the_result(threads):
    # The workers meet at a spin barrier, so they must all run at once: each is a thread
    # of its own, and a waiting worker yields its core after a while, so even 8 workers
    # on this machine's cores finish (a hang fails at the subprocess timeout).
    code = (
        "import hashlib, sys\nfrom fastinit import propagate\n"
        "sys.modules['fastinit.propagate']._lanes = lambda batch: 8\n"
        "df = propagate('he_normal', 'tanh', depth=4, width=16, batch=32, seed=4)\n"
        "print(df.attrs['workers'], hashlib.sha256(df.to_numpy().tobytes()).hexdigest())"
    )
    workers, digest = run_python(code, threads=threads).split()
    workers_1, digest_1 = run_python(code, threads=1).split()
    assert (workers, workers_1) == (str(threads), "1")
    assert digest == digest_1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation, slope", [("relu", None), ("leaky_relu", 0.3), ("leaky_relu", 0.0), ("linear", None)])
def test_phi_prime_read_off_the_output_equals_the_stored_one(activation, slope, dtype, lanes, monkeypatch):
    from fastinit.activations import Activation

    kwargs = dict(depth=6, width=[8, 24, 5, 16, 16, 9], batch=17, seed=2, dtype=dtype, bias_std=0.1)
    if slope is not None:
        kwargs["activation_params"] = {"slope": slope}
    read_off = propagate("he_normal", activation, **kwargs)
    monkeypatch.setattr(Activation, "slope_from_output", lambda self, param: False)
    stored = propagate("he_normal", activation, **kwargs)
    # The stored phi' is rounded to the network's dtype (leaky_relu's slope 0.3 too).
    assert read_off.equals(stored)


@pytest.mark.parametrize("name", ["plain-relu", "bias-tanh", "residual-relu", "unequal-widths-gelu", "orthogonal-leaky",
                                  "correlated-inputs-erf"])
def test_one_example_matches_the_twin(name, lanes):
    # Hanin & Rolnick's single input: variances over units only; no pair, so corr is not known.
    frame, twin = _run(CONFIGS[name], "float64", batch=1)
    assert frame["corr"].isna().all()
    for column in COMPARED:
        if column != "corr":
            np.testing.assert_allclose(frame[column], twin[column], rtol=1e-9, atol=1e-12, err_msg=column)


def test_one_example_float32_matches_the_twin():
    frame, twin = _run(CONFIGS["bias-tanh"], "float32", batch=1)
    for column in ("fwd_var", "act_second_moment", "grad_var", "wgrad_var"):
        np.testing.assert_allclose(frame[column], twin[column], rtol=1e-4, err_msg=column)


def test_batch_norm_needs_two_examples():
    with pytest.raises(ValueError, match=r"batchnorm needs batch >= 2 .* got batch=1; use batch >= 2 or batchnorm=False"):
        propagate("he_normal", "relu", depth=3, width=8, batch=1, batchnorm=True)


def test_each_layer_draws_from_its_own_fans():
    """Plan.build computes one draw per distinct (fan_in, fan_out) pair and gives it to every layer with
    those fans: each layer's std must still be Glorot's sqrt(2 / (fan_in + fan_out)) for its own fans."""
    widths = [24, 48, 16, 48, 16, 16]
    plan = Plan.build("xavier_normal", "tanh", depth=len(widths), width=widths, batch=4)
    fans = list(zip([widths[0], *widths[:-1]], widths))
    assert [d.a for d in plan.draws] == pytest.approx([math.sqrt(2.0 / (i + o)) for i, o in fans], rel=1e-15)
    np.testing.assert_array_equal(plan.draw_ab[:, 0], [d.a for d in plan.draws])
