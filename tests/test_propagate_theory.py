"""Per-layer variance factors of docs/theory.md section 2, measured with fixed seeds.

Tolerances come from the finite-width fluctuations (docs/theory.md section 4): for one
input, the log of a layer's second-moment factor has variance about c/n (c = 2 for
linear Gaussian layers, 5 for ReLU with He weights) and mean -c/(2n), the drift.
A slope fitted over L layers then has a standard error of about sqrt(c / n) / L^(1/2)
per layer... divided by L for the fitted line; we use the single-input value, an upper
bound since a batch averages over inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import Z_TOL
from fastinit import propagate

LN10 = math.log(10.0)


def _slope(frame, column, start=5):
    """Fitted log10 change per layer, skipping the input transient."""
    rows = frame.iloc[start:]
    return np.polyfit(rows.layer, rows[column], 1)[0]


def _tolerance(c, width, depth):
    # Std of the endpoint-to-endpoint log change is sqrt(depth * c / width); per layer, in log10.
    return Z_TOL * math.sqrt(c / width / depth) / LN10


CASES = [
    # (init, init_params, activation, log10 factor per layer, c)
    ("lecun_normal", {}, "linear", 0.0, 2.0),
    ("he_normal", {"nonlinearity": "relu"}, "relu", 0.0, 5.0),
    ("xavier_normal", {}, "relu", math.log10(0.5), 5.0),
    ("uniform", {}, "linear", math.log10(1.0 / 3.0), 2.0),
]


@pytest.mark.parametrize(("init", "params", "activation", "factor", "c"), CASES, ids=[c[0] + "-" + c[2] for c in CASES])
def test_per_layer_factors(init, params, activation, factor, c):
    width, depth = 256, 400
    frame = propagate(init, activation, depth=depth, width=width, batch=64, seed=1, init_params=params)
    drift = -c / (2.0 * width) / LN10
    for column in ("log10_fwd_var", "log10_grad_var"):
        # Backward runs from the top: the gradient grows down the net as the forward shrinks up it.
        sign = 1.0 if column == "log10_fwd_var" else -1.0
        expected = sign * (factor + drift)
        assert abs(_slope(frame, column) - expected) < _tolerance(c, width, depth), column


def test_glorot_compromise_with_unequal_widths():
    narrow, wide_, pairs = 64, 256, 100
    widths = [narrow, wide_] * pairs
    frame = propagate("xavier_normal", "linear", depth=len(widths), width=widths, batch=64, seed=2)
    fwd = frame.log10_fwd_var.to_numpy()
    grad = frame.log10_grad_var.to_numpy()
    layers = np.arange(1, len(widths))  # transitions l -> l + 1 (0-based rows)
    for n_in, n_out in ((narrow, wide_), (wide_, narrow)):
        # Layer index i (0-based row) maps widths[i-1] -> widths[i]; select by its fans.
        rows = [i for i in layers if widths[i - 1] == n_in and widths[i] == n_out]
        forward = np.mean(fwd[rows] - fwd[np.array(rows) - 1])
        backward = np.mean(grad[np.array(rows) - 1] - grad[rows])
        tol = Z_TOL * math.sqrt(2.0 / min(n_in, n_out) / len(rows)) / LN10
        assert abs(forward - math.log10(2.0 * n_in / (n_in + n_out))) < tol
        assert abs(backward - math.log10(2.0 * n_out / (n_in + n_out))) < tol


def test_rescaled_numerics_stay_exact_at_depth_5000():
    width, depth = 64, 5000
    frame = propagate("xavier_normal", "relu", depth=depth, width=width, batch=32, seed=3)
    logs = frame[["log10_fwd_var", "log10_grad_var", "log10_wgrad_var", "log10_act_second_moment"]].to_numpy()
    assert np.isfinite(logs).all()
    assert frame.log10_fwd_var.iloc[-1] < -1400  # far below float64's 1e-308
    assert (frame.fwd_var.iloc[-1000:] == 0.0).all()  # the plain column underflows, as documented
    expected = math.log10(0.5) - 2.5 / width / LN10
    assert abs(_slope(frame, "log10_fwd_var") - expected) < _tolerance(5.0, width, depth)


def test_raw_numerics_record_where_the_net_underflows():
    frame = propagate("xavier_normal", "relu", depth=1200, width=64, batch=32, seed=3, numerics="raw", dtype="float64")
    first = frame.attrs["first_underflow_layer"]
    # 0.5^l reaches float64's smallest normal (2^-1022) after about 1022 layers.
    assert first is not None and 900 < first < 1100
    assert frame.attrs["first_overflow_layer"] is None


def test_too_large_init_overflows_raw_and_is_recorded():
    frame = propagate("normal", "linear", depth=100, width=64, batch=16, numerics="raw", init_params={"std": 1.0})
    # Factor 64 per layer in the variance: typical entries 64^(l/2) pass float32's max at layer
    # ceil(2 log10(3.4e38) / log10(64)) = 43, the largest of the 1024 entries a layer or two
    # earlier; inf/NaN become data, not a crash.  (It said "< 30" while dL/dz's counts made
    # every layer look overflowed, issue 12.)
    expected = math.ceil(2.0 * math.log10(np.finfo(np.float32).max) / math.log10(64.0))
    assert frame.attrs["first_overflow_pass"] == "forward"
    assert expected - 2 <= frame.attrs["first_overflow_layer"] <= expected
    assert frame.nonfinite.iloc[-1] > 0


def test_zero_init_has_no_signal_and_dead_relu_units():
    frame = propagate("zeros", "relu", depth=5, width=32, batch=16)
    assert (frame.fwd_var == 0.0).all() and (frame.dead_frac == 1.0).all()


# ------------------------------------------------------------------ norms and residual streams
#
# The sampling error of a layer's Var(z_l) over a batch of B examples and n units: a
# chi-square's relative std sqrt(2 / (B n)), doubled in variance by the spread of W^T W's
# eigenvalues (Marchenko-Pastur at ratio 1 has variance 1 in units of its mean) that the B
# directions Norm(h) sample: relative std sqrt(c / (B n)), c = 4.  The stream's E[h_l^2] is a
# sum of such increments, so its relative error is at most one increment's.
NORM_C = 4.0


def _norm_tolerance(batch, width):
    return Z_TOL * math.sqrt(NORM_C / (batch * width)) / LN10  # in log10


# Batch norm with tanh only: relu's correlation map correlates the examples, so the B examples are
# fewer independent directions than the tolerance counts (measured: fwd_var 1.7x its bound).
@pytest.mark.parametrize("activation, norm, norm_at", [(a, "layer", site) for a in ("tanh", "relu")
                                                       for site in ("branch", "output")]
                         + [("tanh", "batch", "branch"), ("tanh", "batch", "output")])
def test_residual_stream_second_moment_follows_theory(activation, norm, norm_at):
    from analysis.theory import predict

    depth, width, batch = 300, 256, 64
    kwargs = dict(init_params={"nonlinearity": "relu"} if activation == "relu" else {}, residual=1.0, norm=norm,
                  norm_at=norm_at)
    frame = propagate("he_normal", activation, depth=depth, width=width, batch=batch, seed=7, dtype="float64",
                      **kwargs)
    theory = predict("he_normal", activation, depth, width, **kwargs)
    tol = _norm_tolerance(batch, width)
    for column in ("log10_fwd_var", "log10_act_second_moment"):
        np.testing.assert_array_less(np.abs(frame[column] - theory[column]), tol, err_msg=column)


def test_pre_norm_stream_grows_linearly_for_a_zero_mean_activation():
    # Layer norm feeds every branch mean square 1, so each layer adds alpha^2 E[tanh(sqrt(q) Z)^2]
    # with q = n Var(W) = 1 (LeCun): E[h_l^2] = 1 + l alpha^2 E_1[tanh^2].
    from analysis._moments import act, moments

    depth, width, batch, alpha = 400, 256, 64, 0.5
    frame = propagate("lecun_normal", "tanh", depth=depth, width=width, batch=batch, seed=3, dtype="float64",
                      norm="layer", norm_at="branch", residual=alpha)
    increment = float(moments(act("tanh"), np.array(1.0), ("phi2",))[0])
    expected = 1.0 + np.arange(1, depth + 1) * alpha**2 * increment
    np.testing.assert_array_less(np.abs(np.log10(frame.act_second_moment / expected)),
                                 _norm_tolerance(batch, width))
