"""fastinit.train gradients and SGD steps against PyTorch autograd and the NumPy twin."""

from __future__ import annotations

import numpy as np
import pytest

from fastinit.train import build_network
from fastinit.train.run import Plan
import naive_train

# Gradient comparisons are entrywise with atol = RTOL * max|g| of the layer (small
# entries carry the absolute error of the large ones they are summed from).
# float32 vs torch float32: different GEMM kernels and summation orders, ~sqrt(K) eps.
GRAD_RTOL_F32 = 1e-4
# float64 vs torch float64 or the float64 twin: reassociation only.
GRAD_RTOL_F64 = 1e-10

CONFIGS = {
    "ce-relu": dict(task="spirals", init="he_normal", activation="relu"),
    "ce-tanh-batchnorm": dict(task="gaussians", init="xavier_normal", activation="tanh", batchnorm=True),
    "ce-relu-residual": dict(task="spirals", init="he_normal", activation="relu", residual=0.5),
    "mse-sigmoid": dict(task="teacher", init="xavier_uniform", activation="sigmoid"),
    "mse-gelu-batchnorm-residual": dict(task="teacher", init="he_normal", activation="gelu", batchnorm=True, residual=0.3),
    "mse-silu-residual": dict(task="teacher", init="lecun_normal", activation="silu", residual=1.0),
}
TORCH_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu", "silu": "silu"}


def _setup(name, dtype, batch=24, depth=4, width=16):
    config = dict(CONFIGS[name])
    init, activation, task = config.pop("init"), config.pop("activation"), config.pop("task")
    plan = Plan.build(init, activation, depth=depth, width=width, task=task, epochs=1, lr=0.1, batch=batch, seed=5,
                      dtype=dtype, **config)
    net = build_network(plan)
    # Move biases off zero so their gradients and the bias paths are exercised.
    net.B[:] = 0.1 * np.sin(np.arange(net.B.size)).astype(net.B.dtype)
    data = plan.data
    x = data.x[:batch]
    labels = data.y[:batch] if data.classification else None
    targets = None if data.classification else data.y[:batch]
    return plan, net, x, labels, targets


def _layers(net):
    return [net.weight(l).astype(np.float64) for l in range(1, net.n_layers + 1)], \
           [net.bias(l).astype(np.float64) for l in range(1, net.n_layers + 1)]


def _split(net, gW, gB):
    layers = []
    for k in range(net.n_layers):
        n_in, n_out = int(net.widths[k]), int(net.widths[k + 1])
        layers.append((gW[net.w_off[k]: net.w_off[k] + n_in * n_out].reshape(n_out, n_in),
                       gB[net.b_off[k]: net.b_off[k] + n_out]))
    return layers


def _assert_close(ours, ref, rtol, what, scale=None):
    """Entrywise within ``rtol * scale``; ``scale`` defaults to max|ref| (pass the layer's
    weight-gradient scale for biases: under batch norm their gradient is 0 up to rounding)."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = np.abs(ref).max() if scale is None else scale
    np.testing.assert_allclose(ours, ref, rtol=0, atol=rtol * max(scale, 1e-300), err_msg=what)


def torch_parameters(torch, net):
    """``[(w, b), ...]``: leaf tensors holding copies of ``net``'s weights and biases, layer by layer."""
    dtype = torch.float64 if net.W.dtype == np.float64 else torch.float32
    return [(torch.tensor(net.weight(l), dtype=dtype, requires_grad=True),
             torch.tensor(net.bias(l), dtype=dtype, requires_grad=True)) for l in range(1, net.n_layers + 1)]


def torch_loss(torch, plan, net, params, x, labels, targets):
    """The mean loss of the same net in torch, with parameters ``params`` (:func:`torch_parameters`)."""
    f = getattr(torch.nn.functional, TORCH_ACTIVATIONS[plan.activation])
    h = torch.from_numpy(np.array(x))
    for l, (w, b) in enumerate(params, start=1):
        z = torch.nn.functional.linear(h, w, b)
        if l == net.n_layers:
            h = z
            break
        u = torch.nn.functional.batch_norm(z, None, None, training=True, eps=1e-5) if plan.batchnorm else z
        alpha = net.alpha[l - 1]
        h = h + alpha * f(u) if alpha else f(u)
    if labels is not None:
        return torch.nn.functional.cross_entropy(h, torch.from_numpy(labels))
    return torch.nn.functional.mse_loss(h, torch.from_numpy(np.array(targets)))


def torch_gradients(torch, plan, net, x, labels, targets):
    """The same net in torch with the same weights: loss.backward() on the mean loss."""
    params = torch_parameters(torch, net)
    loss = torch_loss(torch, plan, net, params, x, labels, targets)
    loss.backward()
    return loss.item(), [(w.grad.numpy(), b.grad.numpy()) for w, b in params], params


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_match_torch_autograd(torch, name, dtype):
    plan, net, x, labels, targets = _setup(name, dtype)
    loss, gW, gB = net.gradients(x, labels, targets)
    ref_loss, ref, _ = torch_gradients(torch, plan, net, x, labels, targets)
    rtol = GRAD_RTOL_F32 if dtype == "float32" else GRAD_RTOL_F64
    assert loss == pytest.approx(ref_loss, rel=rtol)
    for layer, ((w, b), (rw, rb)) in enumerate(zip(_split(net, gW, gB), ref), start=1):
        _assert_close(w, rw, rtol, f"dL/dW layer {layer}")
        _assert_close(b, rb, rtol, f"dL/db layer {layer}", scale=max(np.abs(rw).max(), np.abs(rb).max()))


@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_match_numpy_twin(name):
    plan, net, x, labels, targets = _setup(name, "float64")
    loss, gW, gB = net.gradients(x, labels, targets)
    weights, biases = _layers(net)
    ref_loss, ref_w, ref_b = naive_train.mlp_gradients(
        weights, biases, x, activation=plan.activation, labels=labels, targets=targets,
        batchnorm=plan.batchnorm, alphas=net.alpha)
    assert loss == pytest.approx(ref_loss, rel=GRAD_RTOL_F64)
    for layer, ((w, b), rw, rb) in enumerate(zip(_split(net, gW, gB), ref_w, ref_b), start=1):
        _assert_close(w, rw, GRAD_RTOL_F64, f"dL/dW layer {layer}")
        _assert_close(b, rb, GRAD_RTOL_F64, f"dL/db layer {layer}", scale=max(np.abs(rw).max(), np.abs(rb).max()))


@pytest.mark.parametrize("clip_norm", [None, 0.05])
def test_sgd_steps_match_numpy_twin(clip_norm):
    """Two momentum steps (the second uses the velocity), with and without clipping."""
    plan, net, x, labels, targets = _setup("ce-tanh-batchnorm", "float64")
    weights, biases = _layers(net)
    params, velocity_ref = weights + biases, [None] * (2 * net.n_layers)
    velocity = None
    for step in range(2):
        batch = slice(12 * step, 12 * step + 12)
        _, grad_w, grad_b = naive_train.mlp_gradients(
            params[: net.n_layers], params[net.n_layers:], x[batch], activation=plan.activation,
            labels=labels[batch], batchnorm=True)
        if clip_norm is not None and step == 0:
            _, norm = naive_train.clip_grad_norm(grad_w + grad_b, clip_norm)
            assert norm > clip_norm  # the clipping branch is exercised
        params, velocity_ref = naive_train.sgd_step(params, grad_w + grad_b, velocity_ref, lr=0.3, momentum=0.9,
                                                    clip_norm=clip_norm)
        _, _, velocity = net.step(x[batch], labels[batch], lr=0.3, momentum=0.9, clip_norm=clip_norm, velocity=velocity)
    for layer in range(1, net.n_layers + 1):
        _assert_close(net.weight(layer), params[layer - 1], GRAD_RTOL_F64, f"W layer {layer}")
        _assert_close(net.bias(layer), params[net.n_layers + layer - 1], GRAD_RTOL_F64, f"b layer {layer}")


@pytest.mark.parametrize("clip_norm", [None, 0.05])
def test_sgd_step_matches_torch_optimizer(torch, clip_norm):
    """One step of torch.optim.SGD(momentum=0.9) after clip_grad_norm_, float32."""
    plan, net, x, labels, targets = _setup("ce-relu-residual", "float32")
    _, _, params = torch_gradients(torch, plan, net, x, labels, targets)
    flat = [p for pair in params for p in pair]
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(flat, clip_norm)
    optimizer = torch.optim.SGD(flat, lr=0.2, momentum=0.9)
    optimizer.step()
    net.step(x, labels, lr=0.2, momentum=0.9, clip_norm=clip_norm)
    for layer, (w, b) in enumerate(params, start=1):
        # Weights move by lr * g; compare the updated weights at the float32 gradient tolerance of the step.
        step_w = np.abs(net.weight(layer) - w.detach().numpy()).max()
        assert step_w <= GRAD_RTOL_F32 * max(np.abs(w.detach().numpy()).max(), 1.0), f"W layer {layer}"
        np.testing.assert_allclose(net.bias(layer), b.detach().numpy(), rtol=0, atol=GRAD_RTOL_F32)
