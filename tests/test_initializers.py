"""One battery for every initializer of the registry (scipy's test_continuous_basic style)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from scipy import stats

from conftest import KS_ALPHA, Z_TOL, run_python
from initializer_battery import CASE_IDS, CASES, EXAMPLES, IID, SHAPES
from initializer_battery import draw_and_variance as _draw
from initializer_battery import standard_error as _standard_error
from fastinit import INITIALIZERS, fans, gain, rng, sample
from fastinit.initializers import CONSTANT, TRUNCATED_STD_AT_2

def test_every_initializer_has_examples():
    assert set(EXAMPLES) == set(INITIALIZERS)


@pytest.mark.parametrize("shape", SHAPES, ids=["square", "unequal", "conv"])
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_sample_variance_matches_declared_rule(name, params, shape):
    w = sample(name, shape, seed=11, **params)
    draw, variance = _draw(name, shape, params)
    assert abs(np.var(w, dtype=np.float64) - variance) <= Z_TOL * _standard_error(draw, variance, w.size)


@pytest.mark.parametrize(("name", "params", "value"), [("zeros", {}, 0.0), ("constant", {"value": 0.3}, 0.3)])
def test_constant_weights_equal_their_value(name, params, value):
    assert np.all(sample(name, (64, 32, 3, 3), seed=11, **params) == np.float32(value))


@pytest.mark.parametrize(("name", "params"), [c for c, _ in IID], ids=[i for _, i in IID])
def test_matches_declared_distribution(name, params):
    shape = (400, 300)
    w = sample(name, shape, seed=21, **params).astype(np.float64).ravel()
    draw, _ = _draw(name, shape, params)
    assert stats.kstest(w, draw.distribution().cdf).pvalue > KS_ALPHA


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_bounds_dtype_and_reproducibility(name, params, dtype):
    shape = (257, 129)
    w = sample(name, shape, seed=3, dtype=dtype, **params)
    assert w.dtype == np.dtype(dtype) and w.shape == shape
    draw, _ = _draw(name, shape, params)
    # Rounding to the output dtype is monotonic, so bounds hold after rounding them too.
    if draw.kind == rng.KIND_UNIFORM:
        assert w.min() >= np.asarray(draw.a, dtype) and w.max() <= np.asarray(draw.b, dtype)
    if draw.kind == rng.KIND_TRUNCATED:
        assert np.abs(w).max() <= np.asarray(draw.a * draw.b, dtype)
    assert np.array_equal(w, sample(name, shape, seed=3, dtype=dtype, **params))
    if draw.kind != CONSTANT:
        assert not np.array_equal(w, sample(name, shape, seed=4, dtype=dtype, **params))


@pytest.mark.parametrize("gain_value", [1.0, 1.7])
@pytest.mark.parametrize("shape", [(64, 64), (32, 100), (100, 32), (16, 8, 3, 3)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, gain_value):
    q = sample("orthogonal", shape, seed=5, gain=gain_value).reshape(shape[0], -1).astype(np.float64)
    small = q @ q.T if q.shape[0] <= q.shape[1] else q.T @ q
    # float32 storage of unit-norm rows: entries carry ~6e-8 relative error, sums of n of them ~sqrt(n) that.
    np.testing.assert_allclose(small, gain_value**2 * np.eye(small.shape[0]), atol=1e-5 * gain_value**2)


def test_flax_truncation_constant_is_the_std_of_a_truncated_normal():
    assert TRUNCATED_STD_AT_2 == pytest.approx(stats.truncnorm(-2, 2).std(), rel=1e-15)


def test_presets_reproduce_framework_defaults():
    fan_in, fan_out = 300, 200
    shape = (fan_out, fan_in)
    # PyTorch nn.Linear: U[+-1/sqrt(fan_in)] -- written out, not from the registry.
    w = sample("torch_default", shape, seed=1)
    assert np.abs(w).max() <= 1 / math.sqrt(fan_in) and np.abs(w).max() > 0.99 / math.sqrt(fan_in)
    # Keras glorot_uniform: limit sqrt(6 / (fan_in + fan_out)).
    w = sample("keras_default", shape, seed=1)
    limit = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    # Flax lecun_normal: truncated at 2 (corrected) stds, variance exactly 1 / fan_in.
    w = sample("flax_default", shape, seed=1, dtype="float64")
    std = math.sqrt(1 / fan_in) / stats.truncnorm(-2, 2).std()
    assert np.abs(w).max() <= 2 * std
    assert stats.kstest(w.ravel(), stats.truncnorm(-2, 2, scale=std).cdf).pvalue > KS_ALPHA


def test_fans_follow_pytorch_layout():
    assert fans((10, 20)) == (20, 10)
    assert fans((8, 4, 3, 5)) == (4 * 15, 8 * 15)


@pytest.mark.parametrize(
    ("activation", "param", "expected"),
    [("linear", None, 1.0), ("conv2d", None, 1.0), ("sigmoid", None, 1.0), ("tanh", None, 5 / 3),
     ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
     ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("selu", None, 0.75)],
)
def test_gain_table(activation, param, expected):
    assert gain(activation, param) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("activation", ["gelu", "silu", "elu", "softplus", "erf"])
def test_gain_preserves_second_moment(activation):
    # Independent check by Monte Carlo: E[(g phi(z))^2] = 1 within its standard error.
    from fastinit import ACTIVATIONS

    z = np.random.default_rng(0).standard_normal(2_000_000)
    values = (gain(activation) * ACTIVATIONS[activation].phi_np(z)) ** 2
    assert abs(values.mean() - 1.0) < Z_TOL * values.std() / math.sqrt(z.size)


def test_same_weights_on_one_and_two_threads():
    code = (
        "import hashlib\nfrom fastinit import sample, INITIALIZERS\n"
        "h = hashlib.sha256()\n"
        "for name in INITIALIZERS:\n"
        "    params = {'value': 0.3} if name == 'constant' else {}\n"
        "    for dt in ('float32', 'float64'):\n"
        "        h.update(sample(name, (300, 257), seed=9, dtype=dt, **params).tobytes())\n"
        "print(h.hexdigest())"
    )
    one, two = run_python(code, threads=1), run_python(code, threads=2)
    assert one == two
    assert len(one.strip()) == hashlib.sha256().digest_size * 2


def test_importing_a_sweep_worker_leaves_scipy_stats_and_integrate_unloaded():
    # Every sweep worker imports fastinit at start; these two would cost it ~0.3 s each time.
    code = "import sys, fastinit.sweep.worker\nprint(sorted(m for m in ('scipy.stats', 'scipy.integrate') if m in sys.modules))"
    assert run_python(code).strip() == "[]"
