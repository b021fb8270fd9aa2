"""Non-finite is data: where propagate's statistics are NaN, where they are exact zeros, and
the layer and pass at which a net leaves its float range.

Each net's overflow or underflow layer is predicted in closed form and held against the
kernel and against the NumPy twin run in the net's own dtype (``naive.propagate(...,
in_dtype=True)``, the hardware's float32 arithmetic without any of the kernel's code).

Closed form (docs/theory.md section 2): a linear layer with ``Var(W) = s^2`` and fan-in ``n``
multiplies E[z^2] by ``F = n s^2`` forward, and E[(dL/dz)^2] by ``F`` backward (equal
widths), so the typical |entry| of z_l is ``input_std * F^(l/2)`` and that of dL/dz_l is
``F^((depth - l)/2)`` (the readout gradient is N(0, 1)).  With ``F = 10^9`` the typical
entry moves 4.5 decades a layer; the nets below are chosen so that the layer before a
crossing sits at least MARGIN decades inside the range and the crossing layer at least
MARGIN outside.  MARGIN covers the largest of the batch x width entries (< 5 std, 0.7
decades) and the finite-width spread of the second moment (docs/theory.md section 4: log-std
sqrt(2 depth / n) nats, at most 0.4 decades here), so the predicted layer is certain.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scipy import special

import naive
from conftest import Z_TOL
from fastinit._kernels import draw as K
from fastinit import propagate
from fastinit.initializers import fill
from fastinit.propagate import Plan
from test_propagate import lanes  # noqa: F401 -- the 1-, 2- and 8-lane fixture

MARGIN = 1.5  # decades; see the module docstring
LOG10_F32_MAX = math.log10(np.finfo(np.float32).max)  # 38.53
LOG10_F32_TINY = math.log10(np.finfo(np.float32).tiny)  # -37.93: below, entries are subnormal
LOG10_F64_MAX = math.log10(np.finfo(np.float64).max)  # 308.25
# Kernel vs twin, both in float32: rounding of every stored value, a few dozen ops deep
# (as tests/test_propagate.py's float32 comparison).
F32_RTOL = 2e-4
FORWARD = ["fwd_mean", "fwd_var", "log10_fwd_var", "act_second_moment", "dead_frac", "saturated_frac", "corr"]
BACKWARD = ["grad_var", "log10_grad_var", "wgrad_var"]
WIDTH, BATCH, SEED = 32, 16, 7


def _run(init, activation, depth, *, width=WIDTH, batch=BATCH, dtype="float32", **options):
    frame = propagate(init, activation, depth=depth, width=width, batch=batch, seed=SEED, dtype=dtype, **options)
    plan = Plan.build(init, activation, depth=depth, width=width, batch=batch, seed=SEED, dtype=dtype, **options)
    twin = naive.propagate(plan, *plan.inputs(), in_dtype=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        twin["log10_fwd_var"] = np.log10(twin["fwd_var"])
        twin["log10_grad_var"] = np.log10(twin["grad_var"])
    return frame, twin


def _linear(log10_factor, depth, input_std=1.0, dtype="float32"):
    """A raw linear net whose layers multiply E[z^2] by F = 10**log10_factor."""
    std = math.sqrt(10.0**log10_factor / WIDTH)
    return _run("normal", "linear", depth, dtype=dtype, numerics="raw", input_std=input_std, init_params={"std": std})


def _crossing(log10_typical, limit, upward):
    """First layer (1-based) whose typical |entry| is past ``limit`` (above it if ``upward``,
    else below), after checking that the prediction holds with MARGIN decades to spare."""
    past = (log10_typical - limit) if upward else (limit - log10_typical)
    layer = int(np.flatnonzero(past > 0)[0])
    assert past[layer] >= MARGIN and (layer == 0 or past[layer - 1] <= -MARGIN), "the test net's crossing is not clear"
    return layer + 1


def _forward_typical(log10_factor, depth, input_std=1.0):
    return math.log10(input_std) + 0.5 * log10_factor * np.arange(1, depth + 1)


def _backward_typical(log10_factor, depth):
    return 0.5 * log10_factor * (depth - np.arange(1, depth + 1))


def _assert_nan_where_the_twin_is(frame, twin, columns):
    """NaN exactly where the independent computation meets a non-finite entry, and equal values elsewhere."""
    for column in columns:
        got, want = frame[column].to_numpy(), twin[column]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=column)
        known = ~np.isnan(want)
        np.testing.assert_allclose(got[known], want[known], rtol=F32_RTOL, atol=0.0, err_msg=column)


def _assert_counts_match(frame, twin):
    np.testing.assert_array_equal(frame.fwd_nonfinite, twin["fwd_nonfinite"])
    np.testing.assert_array_equal(frame.grad_nonfinite, twin["grad_nonfinite"])
    np.testing.assert_array_equal(frame.nonfinite, frame.fwd_nonfinite + frame.grad_nonfinite)


# ------------------------------------------------------------------ overflow


def test_forward_overflow_is_nan_from_the_predicted_layer_on(lanes):
    depth, log10_factor = 12, 9.0
    expected = _crossing(_forward_typical(log10_factor, depth), LOG10_F32_MAX, upward=True)
    assert expected == 9
    frame, twin = _linear(log10_factor, depth)
    assert (frame.attrs["first_overflow_layer"], frame.attrs["first_overflow_pass"]) == (expected, "forward")
    assert np.flatnonzero(twin["fwd_nonfinite"])[0] + 1 == expected  # the twin overflows there too
    before, beyond = frame.layer < expected, frame.layer >= expected
    assert (frame.fwd_nonfinite[before] == 0).all() and (frame.fwd_nonfinite[beyond] > 0).all()
    for column in FORWARD:
        assert frame[column][beyond].isna().all(), column  # not known: NaN, never 0 or inf
        assert np.isfinite(frame[column][before]).all(), column
    # Backward, phi'(NaN) = NaN: the twin says which gradients are still known.
    _assert_nan_where_the_twin_is(frame, twin, FORWARD + BACKWARD)
    _assert_counts_match(frame, twin)
    assert frame.attrs["first_underflow_layer"] is None and frame.attrs["first_underflow_pass"] is None


def test_backward_only_overflow_names_the_first_layer_the_backward_pass_reaches(lanes):
    depth, log10_factor, input_std = 12, 9.0, 1e-20
    assert _forward_typical(log10_factor, depth, input_std).max() < LOG10_F32_MAX - MARGIN  # a clean forward
    expected = depth + 1 - _crossing(_backward_typical(log10_factor, depth)[::-1], LOG10_F32_MAX, upward=True)
    assert expected == 3
    frame, twin = _linear(log10_factor, depth, input_std)
    assert (frame.attrs["first_overflow_layer"], frame.attrs["first_overflow_pass"]) == (expected, "backward")
    assert (frame.fwd_nonfinite == 0).all() and np.isfinite(frame[FORWARD].drop(columns="corr")).all().all()
    assert (frame.grad_nonfinite[frame.layer <= expected] > 0).all()
    assert (frame.grad_nonfinite[frame.layer > expected] == 0).all()
    assert frame.grad_var[frame.layer <= expected].isna().all() and frame.wgrad_var[frame.layer <= expected].isna().all()
    _assert_nan_where_the_twin_is(frame, twin, FORWARD + BACKWARD)
    _assert_counts_match(frame, twin)


def test_bounded_activation_overflow_like_the_issue():
    """Issue 12's cell (normal:std=0.5, gelu, float32, default numerics) at width 64: the
    forward overflows part-way; nothing past it, and no gradient, may read as measured."""
    depth, width = 110, 64
    frame, twin = _run("normal", "gelu", depth, width=width, batch=BATCH, init_params={"std": 0.5})
    first = frame.attrs["first_overflow_layer"]
    assert frame.attrs["first_overflow_pass"] == "forward"
    assert first == np.flatnonzero(twin["fwd_nonfinite"])[0] + 1
    # Length map q' = sigma_w^2 E[gelu(sqrt(q) z)^2], sigma_w^2 = 64 * 0.25 (Gauss-Hermite,
    # an independent computation): the layer at which sqrt(q) reaches float32's max ...
    nodes, weights = np.polynomial.hermite_e.hermegauss(201)
    weights = weights / weights.sum()
    gelu = lambda x: x * special.ndtr(x)  # noqa: E731
    q, log10_rms = 16.0, []
    for _ in range(depth):
        log10_rms.append(0.5 * math.log10(q))
        q = 16.0 * float(np.sum(weights * gelu(math.sqrt(q) * nodes) ** 2))
    predicted = int(np.flatnonzero(np.array(log10_rms) > LOG10_F32_MAX)[0]) + 1
    # ... up to the largest entry (earlier by <= 0.7 decades) and the finite-width spread of
    # log q (log-variance ~ 5 depth / n nats for ReLU-like nets): in layers, at Z_TOL.
    per_layer = log10_rms[-1] - log10_rms[-2]
    spread = (0.7 + Z_TOL * math.sqrt(5.0 * predicted / width) / 2.0 / math.log(10.0)) / per_layer
    assert abs(first - predicted) <= spread + 1
    assert first > 0.5 * depth  # the old kernel said layer 1 (it mixed in dL/dz's counts)
    for column in FORWARD:
        assert frame[column][frame.layer >= first].isna().all(), column
        assert np.isfinite(frame[column][frame.layer < first]).all(), column
    # The backward pass starts among NaN z: every gradient statistic is unknown, never 0.
    assert frame.grad_var.isna().all() and frame.log10_grad_var.isna().all() and frame.wgrad_var.isna().all()
    _assert_nan_where_the_twin_is(frame, twin, FORWARD)
    np.testing.assert_array_equal(frame.fwd_nonfinite, twin["fwd_nonfinite"])


def test_float64_sums_that_overflow_are_computed_exactly_not_inf(lanes):
    """float64 entries past 1e154 have squares past float64's range: the variance is then
    exact in log10 (its plain column is float64's rounding of it, inf), until the entries
    themselves overflow, from which on it is NaN."""
    depth, log10_factor = 17, 40.0
    typical = _forward_typical(log10_factor, depth)
    squares_overflow = _crossing(2.0 * typical, LOG10_F64_MAX, upward=True)
    entries_overflow = _crossing(typical, LOG10_F64_MAX, upward=True)
    assert (squares_overflow, entries_overflow) == (8, 16)
    frame, twin = _linear(log10_factor, depth, dtype="float64")
    assert (frame.attrs["first_overflow_layer"], frame.attrs["first_overflow_pass"]) == (squares_overflow, "forward")
    exact = (frame.layer >= squares_overflow) & (frame.layer < entries_overflow)
    assert (frame.fwd_var[exact] == np.inf).all() and (frame.fwd_nonfinite[exact] == 0).all()
    # Independent: the twin's z in float64, scaled by its largest entry before squaring.
    plan = Plan.build("normal", "linear", depth=depth, width=WIDTH, batch=BATCH, seed=SEED, dtype="float64",
                      numerics="raw", init_params={"std": math.sqrt(10.0**log10_factor / WIDTH)})
    h = plan.inputs()[0]
    for layer in range(1, entries_overflow):
        w = np.empty((WIDTH, WIDTH))
        fill(w, plan.draws[layer - 1], seed=SEED, stream=0, substream=K.weight_substream(layer))
        h = h @ w.T
        m = np.abs(h).max()
        want = math.log10(np.var(h / m)) + 2.0 * math.log10(m)
        assert frame.log10_fwd_var[layer - 1] == pytest.approx(want, rel=1e-12, abs=1e-9), layer
    assert frame.fwd_var[frame.layer >= entries_overflow].isna().all()
    assert (frame.fwd_nonfinite[frame.layer >= entries_overflow] > 0).all()
    assert frame["corr"][exact].isna().all()  # the cosines' float64 sums overflowed: unknown


# ------------------------------------------------------------------ underflow


def test_forward_underflow_of_float32_values_at_the_predicted_layer():
    depth, log10_factor = 12, -9.0
    expected = _crossing(_forward_typical(log10_factor, depth), LOG10_F32_TINY, upward=False)
    assert expected == 9
    frame, twin = _linear(log10_factor, depth)
    assert (frame.attrs["first_underflow_layer"], frame.attrs["first_underflow_pass"]) == (expected, "forward")
    assert frame.attrs["first_overflow_layer"] is None and frame.attrs["first_overflow_pass"] is None
    # Underflowed values are still measured values of the computed net: no NaN, and a zero
    # variance only with a -inf log (an exact zero of the float32 values).
    assert not frame[FORWARD + BACKWARD].drop(columns="corr").isna().any().any()
    assert ((frame.fwd_var == 0) == (frame.log10_fwd_var == -np.inf)).all()
    normal = frame.layer < expected  # subnormal arithmetic below: the twin's last bits may differ
    for column in ["fwd_var", "act_second_moment"]:
        np.testing.assert_allclose(frame[column][normal], twin[column][normal.to_numpy()], rtol=F32_RTOL)


def test_backward_only_underflow(lanes):
    depth, log10_factor, input_std = 12, -9.0, 1e20
    assert _forward_typical(log10_factor, depth, input_std).min() > LOG10_F32_TINY + MARGIN
    expected = depth + 1 - _crossing(_backward_typical(log10_factor, depth)[::-1], LOG10_F32_TINY, upward=False)
    assert expected == 3
    frame, twin = _linear(log10_factor, depth, input_std)
    assert (frame.attrs["first_underflow_layer"], frame.attrs["first_underflow_pass"]) == (expected, "backward")
    assert frame.attrs["first_overflow_layer"] is None
    above = (frame.layer > expected).to_numpy()
    np.testing.assert_allclose(frame.grad_var[above], twin["grad_var"][above], rtol=F32_RTOL)


def test_values_flushed_to_exact_zero_at_once_are_underflow():
    """Weights of std ~1e-31: z_1 is ~1e-30 (normal), every product of z_2 is ~1e-61, below
    float32's smallest subnormal, so z_2 is exactly 0 although h_1 and W_2 are not."""
    frame, twin = _linear(-60.0, 4)
    assert twin["fwd_var"][0] > 0 and (twin["fwd_var"][1:] == 0).all()
    assert (frame.attrs["first_underflow_layer"], frame.attrs["first_underflow_pass"]) == (2, "forward")
    assert (frame.fwd_var[1:] == 0).all() and (frame.log10_fwd_var[1:] == -np.inf).all()


# Weight stds that put h_1 deep in each dtype's subnormals (~6 and ~8 significant bits), and a float64 one whose
# values are normal but whose squares, and dL/dW_2's, are below float64's range (its sums need a unit of their own).
TINY_OUTPUT_CASES = [("float32", 1e-43), ("float64", 1e-321), ("float64", 1e-250)]


@pytest.mark.parametrize("dtype, std", TINY_OUTPUT_CASES)
def test_rescaled_weight_gradient_of_a_tiny_layer_output_is_the_float64_product(lanes, dtype, std):
    """The rescaled backward's dL/dW_2 = dL/dz_2^T h_1 with h_1 stored tiny (subnormal) by an unrescaled (tanh) forward.

    Widths 1 -> 1 -> 8 make the forward exact in any arithmetic: each z is one product, correctly rounded,
    subnormal ones included, and tanh(x) = x that far below 1, so h_1 = float32(h_0 w_1) bit for bit here and
    in the kernel.  Weights of std 1e-43 are themselves subnormal; |h_1| ~ 1e-43 keeps ~6 bits of precision
    only, and products with it rounded to float32's subnormal grid (2^-149) would be off by up to ~2^-6 each:
    the kernel must multiply the stored values exactly (it lifts h_1 by a power of two first).  The reference
    is float64 from the same stored values (dL/dz_2 = the readout gradient: tanh'(z_2) = 1 exactly).
    """
    widths, batch = [1, 8], 64  # the input has widths[0] units
    options = {"init_params": {"std": std}, "dtype": dtype}
    frame = propagate("normal", "tanh", depth=2, width=widths, batch=batch, seed=SEED, **options)
    plan = Plan.build("normal", "tanh", depth=2, width=widths, batch=batch, seed=SEED, **options)
    h0, grad_top = plan.inputs()
    w1 = np.empty((1, 1), dtype=dtype)
    fill(w1, plan.draws[0], seed=plan.seed, stream=plan.stream, substream=K.weight_substream(1))
    h1 = h0 * w1[0, 0]  # products in the net's dtype, correctly rounded
    assert frame.attrs["forward_rescaled"] is False and frame.attrs["first_underflow_layer"] == 1
    _assert_weight_gradient_is_the_float64_product(frame.log10_wgrad_var[1], grad_top, h1, dtype)


@pytest.mark.parametrize("dtype, std", TINY_OUTPUT_CASES)
def test_rescaled_weight_gradient_of_a_tiny_input_batch_is_the_float64_product(lanes, dtype, std):
    """As above for layer 1, whose input is the batch itself (``input_std``): dL/dW_1 = dL/dz_1^T h_0, and
    dL/dz_1 = the readout gradient (z_1 is a sum of 8 tiny products, far below 1, where tanh' = 1 exactly)."""
    options = {"input_std": std, "dtype": dtype}
    frame = propagate("he_normal", "tanh", depth=1, width=8, batch=64, seed=SEED, **options)
    plan = Plan.build("he_normal", "tanh", depth=1, width=8, batch=64, seed=SEED, **options)
    h0, grad_top = plan.inputs()
    _assert_weight_gradient_is_the_float64_product(frame.log10_wgrad_var[0], grad_top, h0, dtype)


# Input stds that put the batch deep in each dtype's subnormals (~7 and ~6 grid steps RMS, ~3 bits): there the
# raw GEMM misses the reference by 58-242x the tolerance below (12 seeds, either layer, either dtype).
TINY_INPUT_CASES = [("float32", 1e-44), ("float64", 3e-323)]


@pytest.mark.parametrize("numerics", ["rescaled", "raw"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("dtype, input_std", TINY_INPUT_CASES)
def test_forward_of_subnormal_inputs_rounds_each_z_once_when_rescaled(lanes, dtype, input_std, activation, numerics):
    """z_1 = h_0 W_1^T from a batch stored in the subnormals, and z_2 = h_1 W_2^T from the layer output it gives
    (tanh(x) = x exactly that far below 1, so h_1 = z_1), 64 products per entry.

    Rescaled, each GEMM takes its input lifted by a power of two (the batch's, then the one the forward records
    for h_1) and rounds z back once: z is the float64 product of the stored values, rounded to the dtype (the
    reference), up to a rare double rounding.  Raw, the GEMMs run as the hardware computes them, every product
    rounded to the subnormal grid first: with a few bits per product that is steps off in most entries, so the
    raw net must miss the reference by far more (which makes this test able to fail).  relu's forward is
    rescaled (h_1 comes out at RMS 1), so there only z_1 is checked: the batch is lifted all the same.
    """
    width, batch = 64, 64
    options = {"input_std": input_std, "dtype": dtype, "numerics": numerics}
    frame = propagate("he_normal", activation, depth=2, width=width, batch=batch, seed=SEED, **options)
    plan = Plan.build("he_normal", activation, depth=2, width=width, batch=batch, seed=SEED, **options)
    h, _ = plan.inputs()
    assert 0 < np.abs(h).max() < np.finfo(dtype).tiny / 2**10, "the batch must be deep in the subnormals"
    lift = 1100 if dtype == "float64" else 160  # the reference in units of 2^-lift: exact, and squares in range
    grid_log2 = np.finfo(dtype).minexp - np.finfo(dtype).nmant  # -149, -1074
    for layer in (1, 2) if activation == "tanh" else (1,):
        w = np.empty((width, width), dtype=dtype)
        fill(w, plan.draws[layer - 1], seed=plan.seed, stream=plan.stream, substream=K.weight_substream(layer))
        # The products and their sum of 64, in float64 from the stored values, err by < 2^-46 relative: far
        # inside one grid step of a z of a few dozen steps, so rounding the sum to the dtype is z rounded once.
        exact = np.ldexp(h.astype(np.float64), lift) @ w.astype(np.float64).T  # in units of 2^-lift
        z = np.ldexp(exact, -lift).astype(dtype) if dtype == "float32" else np.ldexp(exact, -lift)
        z_units = np.ldexp(z.astype(np.float64), lift)
        log10_var = np.log10(z_units.var()) - 2 * lift * np.log10(2.0)
        # One entry of n off by one grid step (a double rounding) moves Var by ~2 / (n |z|) relative, |z| in
        # grid steps; allow ten such entries.  The hardware's GEMM is steps off in most entries.
        rms_steps = np.sqrt(np.mean(z_units**2)) * 2.0 ** (-lift - grid_log2)
        tolerance = 10 * 2 / (z.size * rms_steps) / math.log(10)
        error = abs(frame.log10_fwd_var[layer - 1] - log10_var)
        if numerics == "rescaled":
            assert error < tolerance, f"layer {layer}"
        else:
            assert error > 10 * tolerance, f"layer {layer}"
        h = z  # tanh(z) = z exactly this far below 1


def test_slow_sums_of_entries_at_the_top_of_float64s_range_are_in_range():
    """A raw float64 net whose z reaches 2^1023 and up, all finite: its squares overflow, so the sums are taken
    again in the unit 2^1024 (the slow path).  That unit is not a float64; its inverse is, exactly.  The
    variance must be the entries' own (a reference in numpy, in units of 2^1000), not 0."""
    # Batch 256 of std 3.5e307: the largest |entry| near 2.9 std = 1.0e308 (>= 2^1023 = 9.0e307), none past
    # 5 std (float64's largest, 1.8e308).
    options = {"depth": 1, "width": 1, "batch": 256, "seed": SEED, "dtype": "float64", "numerics": "raw",
               "input_std": 3.5e307, "init_params": {"value": 1.0}}
    frame = propagate("constant", "linear", **options)
    plan = Plan.build("constant", "linear", **options)
    h0, _ = plan.inputs()  # z_1 = h_0 * 1 exactly
    assert np.isfinite(h0).all() and np.abs(h0).max() >= 2.0**1023, "needs an entry at the top of the range"
    reference = np.log10(np.ldexp(h0, -1000).var()) + 2000 * np.log10(2.0)
    assert frame.fwd_nonfinite[0] == 0
    # Scaling by powers of two is exact; the two variances differ only in float64 rounding of 256 terms.
    np.testing.assert_allclose(frame.log10_fwd_var[0], reference, rtol=0, atol=1e-12)


def _assert_weight_gradient_is_the_float64_product(log10_wgrad_var, grad_z, h, dtype):
    """``log10_wgrad_var`` is log10 Var(grad_z^T h) in float64, for ``h`` stored far below RMS 1 in ``dtype``."""
    largest = np.abs(h).max()
    assert 0 < largest < 2.0**-100, "h must be far below RMS 2^-64 for this test"
    assert largest < np.finfo(dtype).tiny / 2**10 or largest**2 < np.finfo(np.float64).tiny, "subnormal, or squares"
    lift = -math.frexp(float(largest))[1]  # the reference in units of 2^-lift (exact): squares in range
    wgrad = grad_z.astype(np.float64).T @ np.ldexp(h.astype(np.float64), lift)
    log10_var = np.log10(wgrad.var()) - 2 * lift * np.log10(2.0)
    # A GEMM of normal products: its rounding moves the variance by ~1e-7; 1e-5 relative is 4.3e-6 in log10.
    np.testing.assert_allclose(log10_wgrad_var, log10_var, rtol=0, atol=4.3e-6)


# ------------------------------------------------------------------ exact zeros


@pytest.mark.parametrize("numerics", ["rescaled", "raw"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("init, params", [("zeros", {}), ("constant", {"value": 0.0})])
def test_zero_weights_give_exact_zeros_not_overflow_or_underflow(init, params, activation, numerics):
    frame, twin = _run(init, activation, 6, numerics=numerics, init_params=params)
    assert (frame.fwd_mean == 0).all() and (frame.fwd_var == 0).all() and (frame.log10_fwd_var == -np.inf).all()
    # Below the top layer dL/dz = dL/dz_{l+1} W = 0 exactly; at the top it is phi'(0) times the readout.
    below = frame.layer < frame.layer.max()
    assert (frame.grad_var[below] == 0).all() and (frame.log10_grad_var[below] == -np.inf).all()
    assert (frame.wgrad_var[below] == 0).all()
    for column in ["fwd_mean", "fwd_var", "act_second_moment", "grad_var", "wgrad_var", "dead_frac", "saturated_frac"]:
        np.testing.assert_allclose(frame[column], twin[column], rtol=F32_RTOL, atol=0.0, err_msg=column)
    assert (frame.nonfinite == 0).all()
    attrs = frame.attrs
    assert (attrs["first_overflow_layer"], attrs["first_overflow_pass"]) == (None, None)
    assert (attrs["first_underflow_layer"], attrs["first_underflow_pass"]) == (None, None)
