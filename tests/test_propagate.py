"""fastinit.propagate against its NumPy twin, PyTorch autograd, and theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

import naive
from conftest import Z_TOL, run_python
from fastinit import propagate
from fastinit.propagate import _inputs, _plan

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


def _run(config, dtype, depth=6, width=32, batch=20, **extra):
    kwargs = dict(config)
    kwargs.setdefault("width", width)
    kwargs.update(extra)
    init, activation = kwargs.pop("init"), kwargs.pop("activation")
    frame = propagate(init, activation, depth=depth, batch=batch, seed=3, dtype=dtype, **kwargs)
    plan = _plan(init, activation, depth, kwargs.pop("width"), batch, 3, dtype, kwargs.pop("bias_std", 0.0), kwargs)
    twin = naive.propagate(plan, *_inputs(plan))
    return frame, twin


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_numpy_twin_float64(name):
    frame, twin = _run(CONFIGS[name], "float64")
    for column in COMPARED:
        # Same float64 operations up to summation order and the rescaling products.
        np.testing.assert_allclose(frame[column], twin[column], rtol=1e-9, atol=1e-12, err_msg=column)


@pytest.mark.parametrize("name", CONFIGS)
def test_float32_matches_twin_within_float32_rounding(name):
    frame, twin = _run(CONFIGS[name], "float32")
    for column in ["fwd_var", "act_second_moment", "grad_var", "wgrad_var", "corr"]:
        # float32 storage of every activation: relative errors ~1e-7 per op, a few hundred ops deep.
        np.testing.assert_allclose(frame[column], twin[column], rtol=2e-4, atol=1e-6, err_msg=column)


def test_recomputed_segments_give_identical_statistics():
    kwargs = dict(depth=40, width=32, batch=16, seed=5, init_params={"nonlinearity": "relu"}, bias_std=0.1)
    whole = propagate("he_normal", "relu", **kwargs)
    # A budget of ~3 layers forces 14 segments, all but the last recomputed in the backward pass.
    pieces = propagate("he_normal", "relu", memory_budget=3 * (3 * 16 * 32 + 32 * 32) * 4, **kwargs)
    assert pieces.attrs["segment_layers"] == 3 and whole.attrs["segment_layers"] == 40
    assert whole.drop(columns=[]).equals(pieces)


def test_same_results_on_one_and_two_threads():
    code = (
        "from fastinit import propagate\nimport hashlib\n"
        "df = propagate('he_normal', 'tanh', depth=30, width=96, batch=64, seed=4, bias_std=0.2)\n"
        "print(hashlib.sha256(df.to_numpy().tobytes()).hexdigest())"
    )
    assert run_python(code, threads=1) == run_python(code, threads=2)
