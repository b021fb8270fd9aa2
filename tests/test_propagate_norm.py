"""propagate's norms (batch, layer) at every site (preact, branch, output) against the NumPy twin.

The twin (``naive.propagate``) writes each option from its definition in float64; the kernels
carry scaled values with a log scale, cut the batch into lanes and recompute segments, so the
comparison is float64 rtol 1e-9 as in ``test_propagate.py``.  PyTorch's ``nn.LayerNorm`` and
``nn.BatchNorm1d`` are the other independent computation (``test_propagate_torch.py``).
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

import naive
from conftest import run_python
from fastinit import jacobian_singular_values, propagate
from fastinit.propagate import NORM_SITES, NORMS, Plan

COMPARED = ["fwd_mean", "fwd_var", "act_second_moment", "grad_var", "wgrad_var", "dead_frac", "saturated_frac", "corr",
            "nonfinite"]
SITES = list(itertools.product(NORMS, NORM_SITES))  # every (norm, norm_at)


@pytest.fixture(params=[1, 2, 8])
def lanes(request, monkeypatch):
    """The batch cut into 1, 2 and 8 lanes (layer norm is per row, batch norm per column across lanes)."""
    monkeypatch.setattr(sys.modules["fastinit.propagate"], "_lanes", lambda batch: request.param)
    return request.param


def _options(norm, norm_at, **extra):
    options = dict(norm=norm, norm_at=norm_at, **extra)
    if norm_at != "preact":
        options.setdefault("residual", 0.7)  # branch and output are residual streams
    return options


def _run(activation, dtype, depth=6, width=24, batch=20, **options):
    kwargs = dict(depth=depth, width=width, batch=batch, seed=11, dtype=dtype, **options)
    frame = propagate("he_normal", activation, **kwargs)
    plan = Plan.build("he_normal", activation, **kwargs)
    return frame, naive.propagate(plan, *plan.inputs())


@pytest.mark.parametrize("norm, norm_at", SITES)
@pytest.mark.parametrize("activation", ["relu", "tanh"])  # homogeneous (forward rescaled) and not
@pytest.mark.parametrize("bias_std", [0.0, 0.3])
@pytest.mark.parametrize("numerics", ["rescaled", "raw"])
def test_every_norm_site_matches_the_numpy_twin_float64(norm, norm_at, activation, bias_std, numerics, lanes):
    frame, twin = _run(activation, "float64", **_options(norm, norm_at, bias_std=bias_std, numerics=numerics))
    for column in COMPARED:
        # Same float64 operations up to summation order and the rescaling products.
        np.testing.assert_allclose(frame[column], twin[column], rtol=1e-9, atol=1e-12, err_msg=column)


@pytest.mark.parametrize("norm, norm_at", SITES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_every_norm_site_matches_the_twin_within_float32_rounding(norm, norm_at, activation):
    frame, twin = _run(activation, "float32", **_options(norm, norm_at, bias_std=0.1))
    for column in ["fwd_var", "act_second_moment", "grad_var", "wgrad_var", "corr"]:
        # float32 storage of every matrix: relative errors ~1e-7 per op, a few hundred ops deep.
        np.testing.assert_allclose(frame[column], twin[column], rtol=2e-4, atol=1e-6, err_msg=column)


@pytest.mark.parametrize("norm, norm_at", SITES)
def test_recomputed_segments_and_redrawn_weights_give_identical_statistics(norm, norm_at, lanes):
    kwargs = dict(depth=30, width=24, batch=16, seed=5, bias_std=0.1, **_options(norm, norm_at))
    whole = propagate("he_normal", "tanh", **kwargs)
    # Per layer: h, phi' and the norm's stored matrix (batch x width each) and the weights: a
    # budget of 3 such layers forces 10 segments, all but the last recomputed backward.
    budget = 3 * (3 * 16 * 24 + 24 * 24) * 4
    pieces = propagate("he_normal", "tanh", memory_budget=budget, **kwargs)
    assert pieces.attrs["segment_layers"] == 3 and whole.attrs["segment_layers"] == 30
    assert whole.equals(pieces)
    # Past the budget for weights only: every layer's activations kept, some weights drawn again.
    redrawn = propagate("he_normal", "tanh", memory_budget=30 * 3 * 16 * 24 * 4 + 5 * 24 * 24 * 4, **kwargs)
    assert redrawn.attrs["segment_layers"] == 30 and whole.equals(redrawn)


@pytest.mark.parametrize("norm_at", NORM_SITES)
def test_layer_norm_runs_on_one_example(norm_at, lanes):
    # Layer norm is over one example's units, so batch 1 is a net like any other.
    frame, twin = _run("tanh", "float64", batch=1, **_options("layer", norm_at))
    assert frame["corr"].isna().all()
    for column in COMPARED:
        if column != "corr":
            np.testing.assert_allclose(frame[column], twin[column], rtol=1e-9, atol=1e-12, err_msg=column)


@pytest.mark.parametrize("options", [{}, {"residual": 0.5, "bias_std": 0.2}])
def test_batchnorm_true_is_batch_norm_before_phi_bit_for_bit(options):
    kwargs = dict(depth=8, width=16, batch=12, seed=2, **options)
    old = propagate("he_normal", "tanh", batchnorm=True, **kwargs)
    new = propagate("he_normal", "tanh", norm="batch", **kwargs)
    spelled = propagate("he_normal", "tanh", norm="batch", norm_at="preact", batchnorm=True, **kwargs)
    assert old.equals(new) and old.equals(spelled)
    configs = [Plan.build("he_normal", "tanh", **spelling, **kwargs).config()
               for spelling in ({"batchnorm": True}, {"norm": "batch"})]
    for field, value in configs[0]._asdict().items():
        np.testing.assert_array_equal(value, getattr(configs[1], field), err_msg=field)


def test_post_norm_stream_has_unit_second_moment():
    # Norm(.) of each example (layer) or unit (batch) has mean square var / (var + eps), 1 up to eps.
    for norm in NORMS:
        frame = propagate("he_normal", "relu", depth=20, width=64, batch=32, dtype="float64", norm=norm,
                          norm_at="output", residual=1.0)
        np.testing.assert_allclose(frame.act_second_moment, 1.0, rtol=1e-4)


def test_pre_norm_stream_is_rescaled_for_any_activation():
    # The branch is computed from Norm(h): scale-free, so the stream carries a log scale even for tanh.
    plan = Plan.build("he_normal", "tanh", depth=3, width=8, batch=4, norm="layer", norm_at="branch", residual=1.0)
    assert plan.forward_rescaled
    assert not Plan.build("he_normal", "tanh", depth=3, width=8, batch=4, norm="layer", norm_at="output",
                          residual=1.0).forward_rescaled


@pytest.mark.parametrize("options", ["norm='batch', norm_at='branch', residual=0.5",
                                     "norm='batch', norm_at='output', residual=0.5",
                                     "norm='layer', norm_at='branch', residual=0.5, memory_budget=2**18"])
def test_same_results_on_one_and_two_threads(options):
    code = (
        "import hashlib, sys\nfrom fastinit import propagate\n"
        "sys.modules['fastinit.propagate']._lanes = lambda batch: 8\n"
        f"df = propagate('he_normal', 'tanh', depth=20, width=48, batch=64, seed=4, {options})\n"
        "print(df.attrs['workers'], hashlib.sha256(df.to_numpy().tobytes()).hexdigest())"
    )
    workers, digest = run_python(code, threads=1).split()
    workers_2, digest_2 = run_python(code, threads=2).split()
    assert (workers, workers_2) == ("1", "2") and digest == digest_2


@pytest.mark.parametrize("norm, norm_at", SITES)
def test_lsuv_calibrates_through_every_norm_site(norm, norm_at):
    # LSUV scales the GEMM's output z_l, which the kernel measures as fwd_var; float64, so the
    # kernel's variance is the calibration's up to rounding.
    frame = propagate("lsuv", "tanh", depth=8, width=32, batch=64, dtype="float64", **_options(norm, norm_at))
    assert np.all(np.abs(frame.fwd_var - 1.0) < 0.1 + 1e-9)


def test_bad_norm_options_are_named():
    base = dict(depth=3, width=8, batch=4)
    with pytest.raises(ValueError, match="norm must be one of"):
        propagate("he_normal", "relu", norm="group", **base)
    with pytest.raises(ValueError, match=r"norm_at='output' is a residual stream's norm and needs residual=alpha"):
        propagate("he_normal", "relu", norm="layer", norm_at="output", **base)
    with pytest.raises(ValueError, match=r"batchnorm=False contradicts norm='batch'"):
        propagate("he_normal", "relu", norm="batch", batchnorm=False, **base)
    with pytest.raises(ValueError, match=r"norm='batch' needs batch >= 2 .* got batch=1; use batch >= 2 or norm='layer'"):
        propagate("he_normal", "relu", norm="batch", norm_at="branch", residual=1.0, depth=3, width=8, batch=1)
    with pytest.raises(ValueError, match=r"does not model norm='layer'"):
        jacobian_singular_values("he_normal", "relu", depth=3, width=8, norm="layer")


def test_theory_refuses_what_propagate_refuses():
    from analysis.theory import predict

    with pytest.raises(ValueError, match=r"norm_at='branch' needs a norm"):
        predict("he_normal", "relu", 3, 8, norm_at="branch", residual=1.0)
    with pytest.raises(ValueError, match=r"norm_at='output' is a residual stream's norm and needs residual=alpha"):
        predict("he_normal", "relu", 3, 8, norm="layer", norm_at="output")
    with pytest.raises(ValueError, match="norm must be one of"):
        predict("he_normal", "relu", 3, 8, norm="group")
    assert predict("he_normal", "relu", 3, 8, norm="batch", norm_at="branch", residual=1.0).log10_grad_var.isna().all()
