"""fastinit.torch.trace: propagate's statistics on a torch module, against propagate and hand-computed NumPy."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fastinit import propagate, rng  # noqa: E402
from fastinit._kernels.draw import SUB_READOUT  # noqa: E402
from fastinit.propagate import Plan  # noqa: E402
from fastinit.torch import init_, trace  # noqa: E402

# float32: both run in float32 with different GEMM kernels and summation orders (as
# tests/test_propagate_torch.py); float64: the same, 2**-52 per operation over a few layers.
RTOL = {"float32": 2e-4, "float64": 1e-9}
TORCH_ACTIVATION = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "sigmoid": nn.Sigmoid}
CONFIGS = {
    "he-relu": dict(init="he_normal", activation="relu", init_params={"nonlinearity": "relu"}),
    "he-relu-float64": dict(init="he_normal", activation="relu", dtype="float64"),
    "he-relu-inplace": dict(init="he_normal", activation="relu", inplace=True),
    "xavier-tanh-bias": dict(init="xavier_normal", activation="tanh", bias_std=0.3),
    "unequal-silu": dict(init="xavier_uniform", activation="silu", width=[24, 48, 16, 40, 32, 8]),
    "leaky-flax": dict(init="flax_default", activation="leaky_relu", activation_params={"slope": 0.2}),
    "torch-default-sigmoid": dict(init="torch_default", activation="sigmoid"),
}


def _mlp(widths, activation, param, bias, dtype, inplace=False):
    def act():
        if activation == "leaky_relu":
            return nn.LeakyReLU(param)
        return nn.ReLU(inplace=True) if inplace else TORCH_ACTIVATION[activation]()

    modules = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        modules += [nn.Linear(n_in, n_out, bias=bias), act()]
    return nn.Sequential(*modules).to(getattr(torch, dtype))


@pytest.mark.parametrize("name", CONFIGS)
def test_trace_equals_propagate_on_the_same_weights_and_inputs(name):
    kwargs = dict(CONFIGS[name])
    init, activation = kwargs.pop("init"), kwargs.pop("activation")
    width, dtype, inplace = kwargs.pop("width", 32), kwargs.pop("dtype", "float32"), kwargs.pop("inplace", False)
    bias_std = kwargs.get("bias_std", 0.0)
    options = dict(depth=6, width=width, batch=20, seed=8, stream=41, dtype=dtype, **kwargs)
    frame = propagate(init, activation, **options)
    plan = Plan.build(init, activation, **options)
    h0, _ = plan.inputs()  # propagate's input batch (its readout trace draws itself)
    slope = (kwargs.get("activation_params") or {}).get("slope")
    net = _mlp(plan.widths.tolist(), activation, slope, bias_std > 0, dtype, inplace)
    init_(net, init, seed=8, stream=41, bias=bias_std, **(kwargs.get("init_params") or {}))
    traced = trace(net, torch.from_numpy(h0), seed=8, stream=41)
    rtol = RTOL[dtype]
    assert traced.layer.tolist() == frame.layer.tolist() and traced.width.tolist() == frame.width.tolist()
    assert (traced.activation == activation).all()
    for column in ("fwd_var", "act_second_moment", "grad_var", "wgrad_var"):
        np.testing.assert_allclose(traced[column], frame[column], rtol=rtol, err_msg=column)
    for column in ("log10_fwd_var", "log10_act_second_moment", "log10_grad_var", "log10_wgrad_var"):
        np.testing.assert_allclose(traced[column], frame[column], atol=rtol, err_msg=column)
    # a mean near 0 has no relative error: compare it on the scale of its std
    np.testing.assert_allclose(traced.fwd_mean, frame.fwd_mean, atol=rtol * np.sqrt(frame.fwd_var.max()))
    np.testing.assert_allclose(traced["corr"], frame["corr"], atol=rtol)
    # classifications: at most one unit / one entry may round to the other side of a threshold
    np.testing.assert_allclose(traced.dead_frac, frame.dead_frac, atol=1.0 / min(plan.widths) + 1e-12)
    np.testing.assert_allclose(traced.saturated_frac, frame.saturated_frac, atol=1.0 / (20 * min(plan.widths)) + 1e-12)
    assert traced.nonfinite.tolist() == frame.nonfinite.tolist() == [0] * 6


# ------------------------------------------------------------------ a small conv net by hand, in NumPy


def _conv_forward(x, w, b, stride, padding):
    """z = conv2d(x, w) + b by explicit patches; returns z (B, O, Ho, Wo) and the patches."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    batch, channels, height, width = x.shape
    out, _, kh, kw = w.shape
    ho, wo = (height - kh) // stride + 1, (width - kw) // stride + 1
    patches = np.empty((batch, ho, wo, channels, kh, kw))
    for i in range(kh):
        for j in range(kw):
            patches[..., i, j] = x[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride].transpose(0, 2, 3, 1)
    z = patches.reshape(batch, ho, wo, -1) @ w.reshape(out, -1).T + b
    return z.transpose(0, 3, 1, 2), patches


def _conv_backward(dz, patches, w, x_shape, stride, padding):
    """(dL/dW, dL/dx) of _conv_forward from dL/dz."""
    out = w.shape[0]
    dz_rows = dz.transpose(0, 2, 3, 1)
    dw = (dz_rows.reshape(-1, out).T @ patches.reshape(-1, patches[0, 0, 0].size)).reshape(w.shape)
    dpatches = (dz_rows @ w.reshape(out, -1)).reshape(patches.shape)
    batch, channels, height, width = x_shape
    dx = np.zeros((batch, channels, height + 2 * padding, width + 2 * padding))
    ho, wo = dz.shape[2:]
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            dx[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += dpatches[..., i, j].transpose(0, 3, 1, 2)
    return dw, dx[:, :, padding:padding + height, padding:padding + width]


def _reference(z, h, dphi, grad, wgrad, bounded):
    """propagate's definitions, written out on (batch, units) float64 arrays."""
    z, h, dphi, grad = (a.reshape(a.shape[0], -1) for a in (z, h, dphi, grad))
    pairs = h.reshape(-1, 2, h.shape[1])
    cos = (pairs[:, 0] * pairs[:, 1]).sum(1) / np.linalg.norm(pairs[:, 0], axis=1) / np.linalg.norm(pairs[:, 1], axis=1)
    return {"fwd_mean": z.mean(), "fwd_var": z.var(), "act_second_moment": (h**2).mean(), "grad_var": grad.var(),
            "wgrad_var": wgrad.var(), "dead_frac": (dphi == 0).all(0).mean(),
            "saturated_frac": (np.abs(dphi) < 1e-3).mean() if bounded else 0.0, "corr": cos.mean()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trace_equals_hand_computed_statistics_of_a_small_conv_net(dtype):
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2), nn.Tanh(),
                        nn.Flatten(), nn.Linear(64, 5)).to(getattr(torch, dtype))
    init_(net, "he_uniform", seed=3, bias=0.2)
    x = torch.from_numpy(rng.standard_normal(1, (6, 2, 9, 9), dtype=dtype))
    traced = trace(net, x, seed=4, stream=2)

    p = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    x64 = x.double().numpy()
    z1, patches1 = _conv_forward(x64, p["0.weight"], p["0.bias"], 1, 1)
    h1 = np.maximum(z1, 0.0)
    z2, patches2 = _conv_forward(h1, p["2.weight"], p["2.bias"], 2, 0)
    h2 = np.tanh(z2)
    z3 = h2.reshape(6, -1) @ p["5.weight"].T + p["5.bias"]
    g3 = rng.standard_normal(4, (6, 5), stream=2, substream=SUB_READOUT, dtype=dtype).astype(np.float64)
    dw3 = g3.T @ h2.reshape(6, -1)
    g2 = (g3 @ p["5.weight"]).reshape(z2.shape) * (1.0 - h2**2)
    dw2, dh1 = _conv_backward(g2, patches2, p["2.weight"], h1.shape, 2, 0)
    g1 = dh1 * (z1 > 0)
    dw1, _ = _conv_backward(g1, patches1, p["0.weight"], x64.shape, 1, 1)
    expected = [_reference(z1, h1, (z1 > 0) * 1.0, g1, dw1, False),
                _reference(z2, h2, 1.0 - h2**2, g2, dw2, True),
                _reference(z3, z3, np.ones_like(z3), g3, dw3, False)]

    assert traced.name.tolist() == ["0", "2", "5"] and traced.kind.tolist() == ["Conv2d", "Conv2d", "Linear"]
    assert traced.activation.tolist() == ["relu", "tanh", "linear"]
    assert traced.fan_in.tolist() == [18, 27, 64] and traced.fan_out.tolist() == [27, 36, 5]
    assert traced.width.tolist() == [3 * 81, 4 * 16, 5]
    # float64: rounding only; float32: the net's own rounding (~1e-7 per operation, over 3 layers)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    for row, reference in zip(traced.to_dict("records"), expected):
        for column, value in reference.items():
            if column in ("dead_frac", "saturated_frac"):
                assert row[column] == pytest.approx(value, abs=1e-12 if dtype == "float64" else 1.0 / row["width"])
            else:
                scale = np.sqrt(reference["fwd_var"]) if column == "fwd_mean" else abs(value)
                assert abs(row[column] - value) <= rtol * max(scale, 1e-300), column


# ------------------------------------------------------------------ loss, activations trace cannot see, non-finite


def test_a_loss_with_a_target_gives_its_gradient():
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    init_(net, "xavier_normal", seed=1)
    x, target = torch.randn(10, 8, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    traced = trace(net, x, loss=nn.MSELoss(), target=target)
    with torch.no_grad():
        out = net(x).numpy()
    # d mean((out - t)^2) / d out = 2 (out - t) / N, and out is the last layer's z
    assert traced.grad_var.iloc[-1] == pytest.approx(np.var(2 * (out - target.numpy()) / out.size), rel=1e-12)
    assert traced.attrs["readout"] == "loss"
    assert trace(net, x, loss=lambda out: out.pow(2).sum()).attrs["readout"] == "loss"


def test_module_state_is_left_as_it_was():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    net[0].weight.requires_grad_(False)
    traced = trace(net, torch.randn(4, 8))
    assert np.isfinite(traced.wgrad_var).all()  # a frozen weight still gets its dL/dW ...
    assert not net[0].weight.requires_grad  # ... and stays frozen
    assert all(p.grad is None for p in net.parameters())
    assert not net[0]._forward_hooks and not net[0]._forward_pre_hooks


def test_a_functional_activation_is_not_known_and_says_why():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    traced = trace(Functional(), torch.randn(8, 6))
    first = traced.iloc[0]
    assert first.activation is None and np.isnan([first.act_second_moment, first.dead_frac, first["corr"]]).all()
    assert np.isfinite([first.fwd_var, first.grad_var, first.wgrad_var]).all()
    assert "F.relu" in traced.attrs["unknown_activation"][1]
    assert traced.activation.iloc[1] == "linear"  # its output is the module's


def test_a_norm_layer_after_a_layer_is_named_as_the_reason():
    traced = trace(nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.ReLU()), torch.randn(8, 6))
    assert traced.activation.iloc[0] is None and "LayerNorm '1'" in traced.attrs["unknown_activation"][1]


def test_non_finite_entries_are_counted_and_their_statistics_are_nan():
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 4, bias=False), nn.ReLU())
    init_(net, "constant", value=1e30)  # z_1 = 4e30 fits float32, z_2 overflows: +-inf
    traced = trace(net, torch.ones(2, 4))
    assert np.isfinite(traced.fwd_var.iloc[0]) and traced.fwd_nonfinite.iloc[0] == 0
    assert np.isnan(traced.fwd_var.iloc[1]) and traced.fwd_nonfinite.iloc[1] == 8
    assert np.isnan(traced.dead_frac.iloc[1]) and traced.nonfinite.iloc[1] >= 8


def test_an_exact_zero_is_zero_with_log10_minus_inf():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    init_(net, "zeros")
    traced = trace(net, torch.randn(6, 4))
    assert traced.fwd_var.iloc[0] == 0.0 and traced.log10_fwd_var.iloc[0] == -np.inf
    assert traced.dead_frac.iloc[0] == 1.0


# ------------------------------------------------------------------ bad input


def test_a_module_without_layers():
    with pytest.raises(ValueError, match=r"Sequential has no layer.*include="):
        trace(nn.Sequential(nn.ReLU()), torch.randn(3, 3))


def test_an_input_of_the_wrong_shape_names_the_layer():
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(12, 4))
    with pytest.raises(ValueError, match=r"layer 2 '2' \(Linear, which takes inputs of shape \(\.\.\., in_features=12\)\)"
                                         r", given an input of shape \(5, 16\)"):
        trace(net, torch.randn(5, 8))
    conv = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match=r"layer 1 '0' \(Conv2d, .*in_channels=3.*given an input of shape \(2, 5, 8, 8\)"):
        trace(conv, torch.randn(2, 5, 8, 8))


def test_an_unknown_init_a_shared_layer_and_bad_outputs():
    with pytest.raises(ValueError, match="init"):
        init_(nn.Linear(2, 2), "kaiming")
    shared = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"layer 1 '0' \(Linear\) ran twice"):
        trace(nn.Sequential(shared, nn.ReLU(), shared), torch.randn(2, 4))

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x), x

    with pytest.raises(TypeError, match="tuple.*loss="):
        trace(Pair(), torch.randn(2, 4))
    assert len(trace(Pair(), torch.randn(2, 4), loss=lambda out: out[0].sum())) == 1
    with pytest.raises(ValueError, match="scalar"):
        trace(nn.Linear(4, 4), torch.randn(2, 4), loss=lambda out: out)
    with pytest.raises(ValueError, match="target needs a loss"):
        trace(nn.Linear(4, 4), torch.randn(2, 4), target=torch.zeros(2, 4))


# ------------------------------------------------------------------ save_trace: traces as a report's results


def _traced_mlp(init, seed, params=None, depth=8, width=32):
    net = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())])
    init_(net, init, seed=seed, **(params or {}))
    return trace(net, torch.from_numpy(rng.standard_normal(seed + 100, (64, width))), seed=seed)


def test_saved_traces_load_like_a_sweep_and_the_report_draws_them_beside_the_engine(tmp_path):
    from analysis.report import main
    from fastinit.sweep import load
    from fastinit.torch import save_trace

    for init, params in (("torch_default", {}), ("he_normal", {"nonlinearity": "relu"})):
        for replicate in range(2):
            save_trace(_traced_mlp(init, replicate, params), tmp_path / "traces", init=init, init_params=params,
                       replicate=replicate)
    rows = load(tmp_path / "traces")
    assert set(rows.init) == {"torch_default", "torch_default [traced]", "he_normal:nonlinearity=relu",
                              "he_normal:nonlinearity=relu [traced]"}
    assert rows.key.nunique() == 8 and set(rows.source) == {"trace", "engine"}
    engine = rows[(rows.source == "engine") & (rows.init == "torch_default") & (rows.seed == 1)]
    expected = propagate("torch_default", "relu", depth=8, width=32, batch=64, seed=1, numerics="raw")
    np.testing.assert_array_equal(engine.fwd_var, expected.fwd_var)
    traced = rows[(rows.source == "trace") & (rows.init == "torch_default [traced]") & (rows.seed == 1)]
    np.testing.assert_array_equal(traced.grad_var, _traced_mlp("torch_default", 1).grad_var)

    assert main([str(tmp_path / "traces"), "--format", "png", "--out", str(tmp_path / "report")]) == 0
    index = (tmp_path / "report" / "index.md").read_text()
    assert (tmp_path / "report" / "fig10_trace_vs_engine.png").is_file()
    assert "traced with fastinit.torch.trace" in index and "torch_default + relu: per-layer factor forward" in index


def test_save_trace_refuses_mixed_activations_and_other_studies(tmp_path):
    from fastinit.sweep import ResultsError
    from fastinit.torch import save_trace

    mixed = trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)), torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"one activation for every traced layer.*\['relu', 'linear'\]"):
        save_trace(mixed, tmp_path / "a", init="torch_default")
    save_trace(_traced_mlp("he_normal", 0, depth=2, width=8), tmp_path / "b", init="he_normal", study="one")
    with pytest.raises(ResultsError, match="choose another --out"):
        save_trace(_traced_mlp("he_normal", 0, depth=2, width=8), tmp_path / "b", init="he_normal", study="two")


def test_save_trace_refuses_a_frame_without_traces_attrs(tmp_path):
    from fastinit.torch import save_trace

    frame = _traced_mlp("he_normal", 0, depth=2, width=8)
    frame.attrs.clear()
    with pytest.raises(ValueError, match="trace frame with its attrs"):
        save_trace(frame, tmp_path / "c", init="he_normal")
