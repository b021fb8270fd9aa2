"""fastinit.torch.init_: propagate's weights on torch modules, bit for bit, and the initializer battery on them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from conftest import KS_ALPHA, Z_TOL  # noqa: E402
from initializer_battery import CASE_IDS, CASES, IID, SHAPES, draw_and_variance, standard_error  # noqa: E402
from fastinit import rng  # noqa: E402
from fastinit._kernels.draw import weight_substream  # noqa: E402
from fastinit.initializers import CONSTANT, declared_variance  # noqa: E402
from fastinit.initializers import fill as sample_fill  # noqa: E402
from fastinit.propagate import Plan  # noqa: E402
from fastinit.torch import init_  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _battery_net(dtype):
    """One layer per battery shape (SHAPES), in order: weights (512, 512), (300, 700), (64, 32, 3, 3)."""
    return nn.Sequential(nn.Linear(512, 512), nn.Linear(700, 300), nn.Conv2d(32, 64, 3)).to(DTYPES[dtype])


def _sampled(name, params, shape, dtype, *, seed, stream, layer):
    """What fastinit.sample's route (initializers.fill) draws for ``shape`` on layer ``layer``'s substream."""
    draw, _ = draw_and_variance(name, shape, params)
    out = np.empty(shape, dtype=dtype)
    sample_fill(out, draw, seed=seed, stream=stream, substream=weight_substream(layer))
    return out


def test_import_fastinit_does_not_import_torch_and_fastinit_torch_says_how_to_install():
    code = (
        "import sys\nsys.modules['torch'] = None\n"
        "import fastinit\nw = fastinit.sample('he_normal', (8, 4), seed=1)\nassert w.shape == (8, 4)\n"
        "try:\n    import fastinit.torch\nexcept ImportError as error:\n    print(error)\n"
        "else:\n    raise SystemExit('imported without torch')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert 'pip install "fastinit[torch]"' in done.stdout


def test_import_fastinit_leaves_torch_unloaded():
    done = subprocess.run([sys.executable, "-c", "import sys, fastinit; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr


# ------------------------------------------------------------------ the same numbers as propagate


# LSUV calibrates on data, which init_ has not (it refuses it: tested below).
DATA_FREE = [(case, case_id) for case, case_id in zip(CASES, CASE_IDS) if case[0] != "lsuv"]


def test_lsuv_is_refused_for_want_of_data():
    with pytest.raises(ValueError, match="init 'lsuv' calibrates each layer on a batch of inputs"):
        init_(nn.Sequential(nn.Linear(4, 4)), "lsuv")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "params"), [case for case, _ in DATA_FREE], ids=[i for _, i in DATA_FREE])
def test_dense_net_weights_are_propagates_draws_bit_for_bit(name, params, dtype):
    plan = Plan.build(name, "relu", depth=3, width=[40, 16, 40], seed=5, stream=77, dtype=dtype, init_params=params)
    widths = plan.widths.tolist()  # [40, 40, 16, 40]: propagate's input has width[0] units
    net = nn.Sequential(*[nn.Linear(widths[i], widths[i + 1], bias=False) for i in range(3)]).to(DTYPES[dtype])
    record = init_(net, name, seed=5, stream=77, **params)
    for layer, linear in enumerate(net, start=1):
        # propagate's draw of layer l (its Plan.draws, from its fans), on layer l's substream
        expected = np.empty((widths[layer], widths[layer - 1]), dtype=dtype)
        sample_fill(expected, plan.draws[layer - 1], seed=5, stream=77, substream=weight_substream(layer))
        assert np.array_equal(linear.weight.detach().numpy(), expected)
    assert record.layer.tolist() == [1, 2, 3]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "params"), [case for case, _ in DATA_FREE], ids=[i for _, i in DATA_FREE])
def test_conv_weights_are_samples_draw_on_the_layers_substream(name, params, dtype):
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv1d(8, 4, 5), nn.ConvTranspose2d(4, 6, 2)).to(DTYPES[dtype])
    init_(net, name, seed=2, stream=9, **params)
    for layer, conv in enumerate([net[0], net[2], net[3]], start=1):
        shape = tuple(conv.weight.shape)
        expected = _sampled(name, params, shape, dtype, seed=2, stream=9, layer=layer)
        assert np.array_equal(conv.weight.detach().numpy(), expected)


def test_layers_are_numbered_in_module_order_through_nested_containers():
    inner = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 6))
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), inner, nn.Linear(6, 2))
    record = init_(net, "lecun_normal", seed=3)
    assert record.name.tolist() == ["0", "2.0", "2.2", "3"]
    for layer, linear in zip(record.layer, [net[0], inner[0], inner[2], net[3]]):
        expected = _sampled("lecun_normal", {}, tuple(linear.weight.shape), "float32", seed=3, stream=0, layer=layer)
        assert np.array_equal(linear.weight.detach().numpy(), expected)


def test_a_shared_layer_is_one_layer():
    shared = nn.Linear(8, 8)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(8, 3))
    assert init_(net, "he_normal", seed=1).layer.tolist() == [1, 2]


# ------------------------------------------------------------------ biases


def test_bias_none_is_zeros_and_a_std_draws_propagates_bias():
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    record = init_(net, "he_normal", seed=4, stream=6)
    assert record.bias.tolist() == ["zeros", "zeros"]
    assert all(torch.count_nonzero(m.bias) == 0 for m in (net[0], net[2]))
    record = init_(net, "he_normal", seed=4, stream=6, bias=0.3)
    assert record.bias.tolist() == ["normal(std=0.3)"] * 2
    for layer, linear in ((1, net[0]), (2, net[2])):
        expected = np.empty(linear.bias.shape[0], dtype=np.float32)
        # propagate's bias draw (tests/test_propagate_torch.py draws it the same way)
        rng.fill(expected, rng.KIND_NORMAL, 0.3, 0.0, 4, 6, weight_substream(layer) + 1)
        assert np.array_equal(linear.bias.detach().numpy(), expected)


def test_bias_keep_leaves_biases_and_layers_without_bias_say_none():
    net = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 8, bias=False))
    before = net[0].bias.detach().clone()
    record = init_(net, "xavier_uniform", bias="keep")
    assert torch.equal(net[0].bias, before)
    assert record.bias.tolist() == ["kept", "none"]


@pytest.mark.parametrize("bias", [-1.0, "zeros", float("nan")])
def test_bad_bias_is_refused(bias):
    with pytest.raises((ValueError, TypeError), match="bias"):
        init_(nn.Linear(4, 4), "he_normal", bias=bias)


# ------------------------------------------------------------------ the record


def test_record_has_pytorchs_fans_and_the_declared_variance():
    net = nn.Sequential(nn.Conv2d(3, 16, (3, 5)), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 2 * 4, 10))
    record = init_(net, "orthogonal", gain=1.5)
    for row, layer in zip(record.itertuples(), [net[0], net[3]]):
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        assert (row.fan_in, row.fan_out) == (fan_in, fan_out)
        assert row.shape == tuple(layer.weight.shape)
        assert row.variance == declared_variance("orthogonal", row.shape, gain=1.5)
    assert record.kind.tolist() == ["Conv2d", "Linear"]
    assert record.receptive_field.tolist() == [15, 1]
    assert record.init_params.tolist() == ['{"gain": 1.5}'] * 2


def test_include_opts_in_other_layers():
    net = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 4))
    assert init_(net, "normal", std=0.02).kind.tolist() == ["Linear"]
    record = init_(net, "normal", include=nn.Embedding, std=0.02, seed=7)
    assert record.kind.tolist() == ["Embedding", "Linear"]
    expected = _sampled("normal", {"std": 0.02}, (50, 16), "float32", seed=7, stream=0, layer=1)
    assert np.array_equal(net[0].weight.detach().numpy(), expected)


# ------------------------------------------------------------------ the battery on torch tensors


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "params"), [case for case, _ in DATA_FREE], ids=[i for _, i in DATA_FREE])
def test_battery_variance_bounds_dtype_reproducibility(name, params, dtype):
    net = _battery_net(dtype)
    init_(net, name, seed=11, **params)
    first = [layer.weight.detach().clone() for layer in net]
    for weight, shape in zip(first, SHAPES):
        assert weight.dtype == DTYPES[dtype] and tuple(weight.shape) == shape
        values = weight.numpy()
        draw, variance = draw_and_variance(name, shape, params)
        if draw.kind == CONSTANT:  # exactly the value (np.var of a float64 constant rounds to ~1e-33)
            assert np.all(values == np.asarray(draw.a, dtype))
        else:
            assert abs(np.var(values, dtype=np.float64) - variance) <= Z_TOL * standard_error(draw, variance, values.size)
        if draw.kind == rng.KIND_UNIFORM:  # rounding to the dtype is monotonic: bounds hold rounded too
            assert values.min() >= np.asarray(draw.a, dtype) and values.max() <= np.asarray(draw.b, dtype)
        if draw.kind == rng.KIND_TRUNCATED:
            assert np.abs(values).max() <= np.asarray(draw.a * draw.b, dtype)
    init_(net, name, seed=11, **params)
    assert all(torch.equal(a, layer.weight) for a, layer in zip(first, net))
    init_(net, name, seed=12, **params)
    if draw.kind != CONSTANT:  # constant weights do not depend on the seed
        assert not torch.equal(first[0], net[0].weight)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "params"), [c for c, _ in IID], ids=[i for _, i in IID])
def test_battery_ks_against_the_declared_distribution(name, params, dtype):
    linear = nn.Linear(300, 400).to(DTYPES[dtype])
    init_(linear, name, seed=21, **params)
    draw, _ = draw_and_variance(name, (400, 300), params)
    assert stats.kstest(linear.weight.detach().double().numpy().ravel(), draw.distribution().cdf).pvalue > KS_ALPHA


@pytest.mark.parametrize("gain_value", [1.0, 1.7])
def test_battery_orthogonal_conv_rows_are_orthonormal(gain_value):
    conv = nn.Conv2d(8, 16, 3).double()
    init_(conv, "orthogonal", gain=gain_value)
    q = conv.weight.detach().numpy().reshape(16, -1)
    np.testing.assert_allclose(q @ q.T, gain_value**2 * np.eye(16), atol=1e-12 * gain_value**2)


# ------------------------------------------------------------------ bad input


def test_unknown_initializer_and_parameter():
    with pytest.raises(ValueError, match="init.*he_normal"):
        init_(nn.Linear(4, 4), "he_normall")
    with pytest.raises(TypeError, match="stdd"):
        init_(nn.Linear(4, 4), "normal", stdd=0.1)


def test_module_without_layers():
    with pytest.raises(ValueError, match=r"Sequential has no layer.*nn.Linear or nn.ConvNd.*include="):
        init_(nn.Sequential(nn.ReLU(), nn.LayerNorm(4)), "he_normal")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        init_(torch.zeros(3, 3), "he_normal")
    with pytest.raises(TypeError, match="include"):
        init_(nn.Linear(3, 3), "he_normal", include="Embedding")


def test_a_half_precision_layer_is_named_and_nothing_is_written():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4).half())
    before = net[0].weight.detach().clone()
    with pytest.raises(TypeError, match=r"layer 2 '2' \(Linear\) has torch.float16 weights.*module.float\(\)"):
        init_(net, "he_normal", seed=3)
    assert torch.equal(net[0].weight, before)


def test_a_lazy_layer_asks_for_a_forward_pass_first():
    with pytest.raises(ValueError, match=r"layer 1 '0' \(LazyLinear\).*forward pass"):
        init_(nn.Sequential(nn.LazyLinear(4)), "he_normal")


def test_a_one_dimensional_weight_where_fans_are_needed_names_the_layer():
    with pytest.raises(ValueError, match=r"layer 2 '1' \(LayerNorm\).*needs fans"):
        init_(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), "he_normal", include=nn.LayerNorm)
    assert init_(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), "constant", include=nn.LayerNorm, value=1.0).layer.size == 2
