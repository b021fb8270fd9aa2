"""fastinit.propagate against the hand-written PyTorch autograd loop, same weights."""

from __future__ import annotations

import numpy as np
import pytest

from fastinit._kernels import draw as K
from fastinit import propagate, rng
from fastinit.initializers import fill as fill_weights
from fastinit.propagate import Plan

CONFIGS = {
    "relu": dict(init="he_normal", activation="relu"),
    "bias-tanh": dict(init="xavier_normal", activation="tanh", bias_std=0.3),
    "residual-relu": dict(init="he_normal", activation="relu", residual=0.4),
    "batchnorm-sigmoid": dict(init="he_normal", activation="sigmoid", batchnorm=True),
    "unequal-silu": dict(init="xavier_uniform", activation="silu", width=[24, 48, 16, 40, 32, 8]),
    "layernorm-tanh": dict(init="xavier_normal", activation="tanh", norm="layer", bias_std=0.2),
    "prenorm-layer-silu": dict(init="he_normal", activation="silu", norm="layer", norm_at="branch", residual=0.5),
    "prenorm-batch-relu": dict(init="he_normal", activation="relu", norm="batch", norm_at="branch", residual=1.0),
    "postnorm-layer-tanh": dict(init="he_normal", activation="tanh", norm="layer", norm_at="output", residual=0.8,
                                bias_std=0.1),
    "postnorm-batch-relu": dict(init="he_uniform", activation="relu", norm="batch", norm_at="output", residual=0.5),
}
TORCH_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "silu": "silu"}


def torch_statistics(torch, plan, h0, grad_top):
    """The loop a researcher would write: autograd, retain_grad, then the statistics.

    Norms are PyTorch's modules without affine parameters: ``LayerNorm(elementwise_affine=False)``
    and ``BatchNorm1d(affine=False, track_running_stats=False)`` in training mode, eps 1e-5.
    """
    f = getattr(torch.nn.functional, TORCH_ACTIVATIONS[plan.activation])
    widths, alpha = plan.widths, plan.residual
    at = plan.norm_at if plan.norm is not None else None

    def norm(x):
        if plan.norm == "layer":
            return torch.nn.LayerNorm(x.shape[1], eps=1e-5, elementwise_affine=False)(x)
        return torch.nn.BatchNorm1d(x.shape[1], eps=1e-5, affine=False, track_running_stats=False).train()(x)
    h = torch.from_numpy(h0)
    weights, pre, fwd_var = [], [], []
    for layer in range(1, plan.depth + 1):
        w = np.empty((widths[layer], widths[layer - 1]), dtype=np.float32)
        fill_weights(w, plan.draws[layer - 1], seed=plan.seed, stream=plan.stream, substream=K.weight_substream(layer))
        w = torch.from_numpy(w).requires_grad_(True)
        z = (norm(h) if at == "branch" else h) @ w.T
        if plan.bias_std > 0:
            b = np.empty(widths[layer], dtype=np.float32)
            rng.fill(b, rng.KIND_NORMAL, plan.bias_std, 0.0, plan.seed, plan.stream, K.weight_substream(layer) + 1)
            z = z + torch.from_numpy(b)
        z.retain_grad()
        a = norm(z) if at == "preact" else z
        h = (h + alpha * f(a)) if alpha is not None else f(a)
        h = norm(h) if at == "output" else h
        weights.append(w)
        pre.append(z)
        fwd_var.append(z.detach().double().var(unbiased=False).item())
    (h * torch.from_numpy(grad_top)).sum().backward()
    grad_var = [z.grad.double().var(unbiased=False).item() for z in pre]
    wgrad_var = [w.grad.double().var(unbiased=False).item() for w in weights]
    return np.array(fwd_var), np.array(grad_var), np.array(wgrad_var)


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_torch_autograd(torch, name):
    kwargs = dict(CONFIGS[name])
    width = kwargs.pop("width", 32)
    init, activation = kwargs.pop("init"), kwargs.pop("activation")
    frame = propagate(init, activation, depth=6, width=width, batch=20, seed=8, **kwargs)
    plan = Plan.build(init, activation, depth=6, width=width, batch=20, seed=8, dtype="float32", **kwargs)
    fwd_var, grad_var, wgrad_var = torch_statistics(torch, plan, *plan.inputs())
    # Both run in float32 with different GEMM kernels and summation orders.
    np.testing.assert_allclose(frame.fwd_var, fwd_var, rtol=2e-4)
    np.testing.assert_allclose(frame.grad_var, grad_var, rtol=2e-4)
    np.testing.assert_allclose(frame.wgrad_var, wgrad_var, rtol=2e-4)
