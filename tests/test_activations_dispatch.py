"""The generated dispatch against the registry it is generated from.

``phi_and_dphi``, ``apply`` and ``slope_from_output`` are written into ``fastinit/activations.py``
by ``fastinit._dispatch_source``.  Two independent checks: the text in the file is what the
generator makes of the registry now (catches a record added or changed without regenerating),
and every entry point gives, bit for bit, what each record's own jitted kernel gives (catches a
generator that copies a body wrongly).
"""

from __future__ import annotations

import pickle
import types

import numpy as np
import pytest

from fastinit import _dispatch_source
from fastinit import activations as act
from fastinit._jit import jit
from fastinit.activations import ACTIVATIONS, apply, phi_and_dphi, slope_from_output

NAMES = list(ACTIVATIONS)
# Zeros of both signs, tiny, subnormal, huge and infinite values, a NaN with a payload and sign
# bit set, and an ordinary grid: everything a kink, a clamp or a NaN rule could get wrong.
_SPECIAL = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-310, 1e-300, -1e-300, 1e-45, 1e-8, -1e-8, 1e-4, -1e-4,
                     20.0, -20.0, 40.0, -40.0, 60.0, -60.0, 1e30, -1e30, 3.4e38, -3.4e38, 1e300, -1e300,
                     np.inf, -np.inf, np.nan])
_PAYLOAD_NAN = np.array([0xFFF8000000000ABC], dtype=np.uint64).view(np.float64)
X = np.concatenate([_SPECIAL, _PAYLOAD_NAN, np.linspace(-50.0, 50.0, 1001)])


def _params(record):
    if record.param_name == "slope":
        return [record.default_param, 0.0, 0.2, -0.5]
    if record.param_name == "alpha":
        return [record.default_param, 0.5]
    return [record.default_param]


def _assert_same_bits(got, expected, what, *, nan_bits=True):
    """Equal bytes (so -0.0 is not 0.0); with ``nan_bits=False`` any NaN matches any NaN."""
    got, expected = np.asarray(got), np.asarray(expected)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN at other places"
    keep = np.ones_like(nan) if nan_bits else ~nan
    assert np.array_equal(got[keep].view(np.uint8), expected[keep].view(np.uint8)), f"{what}: values differ"


def test_generated_section_is_up_to_date():
    assert _dispatch_source.written(act.__file__) == _dispatch_source.source(act), (
        "fastinit/activations.py's generated dispatch disagrees with its registry: run "
        "python -m fastinit._dispatch_source")


@pytest.mark.parametrize("name", NAMES)
def test_phi_and_dphi_is_the_records_kernel(name):
    record = ACTIVATIONS[name]
    for param in _params(record):
        expected = np.array([record.kernel(x, param) for x in X])
        got = np.array([phi_and_dphi(record.code, x, param) for x in X])
        # phi_and_dphi returns one NaN for every NaN in; linear's kernel passes x's own through.
        _assert_same_bits(got, expected, f"{name} param={param}", nan_bits=False)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_is_the_records_kernel(name, dtype):
    record = ACTIVATIONS[name]
    with np.errstate(over="ignore"):
        x = X.astype(dtype)
    # Against the scalar kernel (NaN payloads aside: a branch-free variant may pass x's own
    # NaN through), and bit for bit against the variant that the loop runs.
    float32_variant = dtype == np.float32 and record.kernel_float32 is not None
    kernel = record.kernel_float32 if float32_variant else record.kernel
    loop = kernel if float32_variant or record.kernel_vector is None else record.kernel_vector
    for param in _params(record):
        # apply computes in float64 and rounds once when storing, as this does (selu's
        # lambda * 3.4e38 overflows float32 to inf in both).
        with np.errstate(over="ignore"):
            expected = np.array([kernel(float(v), param) for v in x]).astype(dtype)
            ran = np.array([loop(float(v), param) for v in x]).astype(dtype)
        out_phi, out_dphi = np.empty_like(x), np.empty_like(x)
        apply(record.code, x, param, out_phi, out_dphi)
        for got, column in ((out_phi, 0), (out_dphi, 1)):
            _assert_same_bits(got, expected[:, column], f"{name} {column} param={param}", nan_bits=False)
            _assert_same_bits(got, ran[:, column], f"{name} {column} param={param}")


@pytest.mark.parametrize("name", NAMES)
def test_slope_from_output_is_the_records_output_slope(name):
    record = ACTIVATIONS[name]
    for param in _params(record):
        got = np.array([slope_from_output(record.code, v, param) for v in X])
        if record.output_slope is None:
            assert np.all(np.isnan(got))
            continue
        _assert_same_bits(got, np.array([record.output_slope(v, param) for v in X]), f"{name} param={param}")
        # backprop_block reads the slope at 1.0 and at 0.0 once and selects by the output's sign: the slope
        # must depend on the sign alone (and be NaN at NaN).
        by_sign = np.where(X > 0.0, record.output_slope(1.0, param), record.output_slope(0.0, param))
        _assert_same_bits(got, np.where(np.isnan(X), np.nan, by_sign), f"{name} by sign, param={param}")
        if record.slope_from_output(param):
            # The contract the kernels rely on: phi' read off c phi(z) is apply's phi'(z).
            for c in (1.0, 4.0):  # c < 1 would underflow the subnormal outputs to 0
                phi_z, dphi_z = np.empty_like(X), np.empty_like(X)
                apply(record.code, X, param, phi_z, dphi_z)
                _assert_same_bits([slope_from_output(record.code, c * v, param) for v in phi_z], dphi_z,
                                  f"{name} from c phi, c={c}")


def test_unknown_code_fills_nan():
    unknown = max(a.code for a in ACTIVATIONS.values()) + 1
    out_phi, out_dphi = np.zeros(3), np.zeros(3)
    apply(unknown, np.array([-1.0, 0.0, 1.0]), 0.0, out_phi, out_dphi)
    assert np.all(np.isnan(out_phi)) and np.all(np.isnan(out_dphi))
    assert np.isnan(slope_from_output(unknown, 1.0, 0.0))


def test_every_record_is_complete_and_consistent():
    for name, record in ACTIVATIONS.items():
        assert callable(record.kernel) and callable(record.twin), name
        # PyTorch's rule is carried exactly where PyTorch has the name.
        assert (record.torch_gain is None) == (record.torch_name is None), name
        if record.output_slope is not None:  # only sign-determined slopes can be read off the output
            assert record.homogeneous, name
        if record.closed_forms is not None:
            q, c = np.array([0.5, 2.0]), np.array([0.3, -0.7])
            for which in ("phi2", "dphi2"):
                assert record.closed_forms.moment(which, q, record.default_param) is not None, (name, which)
            for which in ("phi", "dphi"):
                assert record.closed_forms.cross(which, q, c, record.default_param) is not None, (name, which)


@pytest.mark.parametrize("name", NAMES)
def test_record_pickles_by_name(name):
    # Records hold jitted kernels and lambdas; a process pool must still be able to send one.
    assert pickle.loads(pickle.dumps(ACTIVATIONS[name])) is ACTIVATIONS[name]


# ----------------------------------------------------------------------------- generator errors
@jit
def _wrong_parameters(y, param):
    return y, 1.0


def _fake_module(kernel, **names):
    record = ACTIVATIONS["relu"]
    fake = type(record)(record.name, record.code, None, 0.0, True, False, True, None, record.description, False,
                        kernel=kernel, twin=record.twin)
    return types.SimpleNamespace(__name__="fake_activations", ACTIVATIONS={"relu": fake}, **names)


def test_generator_rejects_a_kernel_it_cannot_copy():
    with pytest.raises(ValueError, match=r"parameters \['x', 'param'\], got \['y', 'param'\]"):
        _dispatch_source.source(_fake_module(_wrong_parameters, _wrong_parameters=_wrong_parameters))
    with pytest.raises(ValueError, match="must be a module-level function of fake_activations"):
        _dispatch_source.source(_fake_module(_wrong_parameters))


FLOAT32_VARIANTS = [name for name, record in ACTIVATIONS.items() if record.kernel_float32 is not None]


@pytest.mark.parametrize("name", FLOAT32_VARIANTS)
def test_float32_variant_rounds_as_the_libm_kernel(name):
    """A float32 variant (no libm call, so it vectorises) gives the float32 rounding of the record's
    own float64 kernel, which calls libm: the same bits at every float32 input of a dense grid.

    The grid: 2^17 float32 values of each sign spaced evenly in log from 1e-6 to 130 (past the
    clamps), every float32 in [-1, 1] on a step of 2^-14, and the special values.  The variant's
    exp is accurate to about 1e-15 relative, so a float32 value can only differ where the exact
    result lies within ~1e-15 of a rounding boundary; none does on this grid.
    """
    magnitudes = np.geomspace(1e-6, 130.0, 2**17)
    grid = np.concatenate([magnitudes, -magnitudes, np.arange(-1.0, 1.0, 2.0**-14), _SPECIAL])
    with np.errstate(over="ignore"):
        x32 = grid.astype(np.float32)
    record = ACTIVATIONS[name]
    fast_phi, fast_dphi = np.empty_like(x32), np.empty_like(x32)
    apply(record.code, x32, record.default_param, fast_phi, fast_dphi)
    x64 = x32.astype(np.float64)
    libm_phi, libm_dphi = np.empty_like(x64), np.empty_like(x64)
    apply(record.code, x64, record.default_param, libm_phi, libm_dphi)  # the float64 path: the kernel, libm
    with np.errstate(over="ignore"):
        for got, expected, what in ((fast_phi, libm_phi, "phi"), (fast_dphi, libm_dphi, "phi'")):
            expected = expected.astype(np.float32)
            differ = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
            assert not differ.any(), (f"{name} {what}: {differ.sum()} of {x32.size} differ, e.g. at x = "
                                      f"{x32[differ][:5]}: {got[differ][:5]} against {expected[differ][:5]}")
