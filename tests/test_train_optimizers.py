"""fastinit.train's optimizers step for step against torch.optim (SGD, Adam, AdamW; float32 and float64).

Two comparisons per rule:

* the **update rule alone**: both sides get the same gradient sequence (torch's autograd
  gradients at torch's parameters, copied into fastinit's flat layout), so the parameters
  may differ only by the rounding of the update's few elementwise operations;
* **end to end**: each side computes its own gradients on the same batches from the same
  initial weights (``Network.update`` against ``loss.backward(); optimizer.step()``).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastinit.train import build_network, run
from fastinit.train import _kernels as K
from fastinit.train.run import Plan
from test_train_gradients import GRAD_RTOL_F64, torch_loss, torch_parameters

STEPS = 6
LR = 0.01
# Each update is a handful of elementwise operations (the lerp of m, the scaled sum of v,
# sqrt, two divisions, the final multiply-add), each correctly rounded on both sides but not
# always in the same order or fused the same way (torch's vectorised lerp uses an FMA): the
# two sides can differ by a few ulps of |p| per step, and a difference in m or v carries into
# later steps (decaying by beta) without being amplified.  Measured: at most 0.72 ulp after 6 steps
# (float32 and float64, every rule below).  Allow 2 ulps of the layer's largest
# |p| per step taken.
ULPS_PER_STEP = 2

RULES = {
    "sgd": dict(optimizer="sgd", momentum=0.9),
    "sgd-weight-decay": dict(optimizer="sgd", momentum=0.9, weight_decay=0.1),
    "adam": dict(optimizer="adam"),
    "adam-l2-clipped": dict(optimizer="adam", weight_decay=0.1, clip_norm=0.05, betas=(0.8, 0.99), eps=1e-6),
    "adamw": dict(optimizer="adamw", weight_decay=0.1),
    "adamw-clipped-low-beta1": dict(optimizer="adamw", weight_decay=0.5, clip_norm=0.05, betas=(0.3, 0.9)),
}


def _torch_optimizer(torch, flat, options):
    kind, wd = options["optimizer"], options.get("weight_decay", 0.0)
    if kind == "sgd":
        return torch.optim.SGD(flat, lr=LR, momentum=options["momentum"], weight_decay=wd, foreach=False)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(flat, lr=LR, betas=options.get("betas", (0.9, 0.999)), eps=options.get("eps", 1e-8), weight_decay=wd,
               foreach=False, fused=False, amsgrad=False)


def _setup(options, dtype):
    plan = Plan.build("he_normal", "tanh", depth=3, width=16, task="spirals", epochs=1, lr=LR, batch=16, seed=3,
                      dtype=dtype, init_params={"nonlinearity": "tanh"}, **options)
    net = build_network(plan)
    net.B[:] = 0.1 * np.sin(np.arange(net.B.size)).astype(net.B.dtype)  # bias paths and their decay exercised
    return plan, net


def _flat(net, tensors):
    gW = np.concatenate([t[0].reshape(-1) for t in tensors]).astype(net.W.dtype)
    gB = np.concatenate([t[1].reshape(-1) for t in tensors]).astype(net.B.dtype)
    return gW, gB


def _assert_parameters_close(net, params, atol_of):
    for layer, (w, b) in enumerate(params, start=1):
        w, b = w.detach().numpy(), b.detach().numpy()
        np.testing.assert_allclose(net.weight(layer), w, rtol=0, atol=atol_of(w), err_msg=f"W layer {layer}")
        np.testing.assert_allclose(net.bias(layer), b, rtol=0, atol=atol_of(w), err_msg=f"b layer {layer}")


def _batches(plan):
    data = plan.data
    for step in range(STEPS):
        rows = slice(16 * step, 16 * step + 16)  # a different batch every step
        yield data.x[rows], data.y[rows]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", RULES)
def test_update_rule_matches_torch_optim_on_the_same_gradients(torch, rule, dtype):
    options = RULES[rule]
    plan, net = _setup(options, dtype)
    params = torch_parameters(torch, net)
    flat = [p for pair in params for p in pair]
    optimizer = _torch_optimizer(torch, flat, options)
    state = plan.optimizer_state(net)
    eps = np.finfo(dtype).eps
    for step, (x, labels) in enumerate(_batches(plan), start=1):
        optimizer.zero_grad()
        torch_loss(torch, plan, net, params, x, labels, None).backward()
        gW, gB = _flat(net, [(w.grad.numpy(), b.grad.numpy()) for w, b in params])  # before clipping
        if options.get("clip_norm"):
            torch.nn.utils.clip_grad_norm_(flat, options["clip_norm"])
        optimizer.step()
        _, coef = K.optimizer_step(state, net.W, net.B, gW, gB)
        if options.get("clip_norm") and step == 1:
            assert coef < 1.0  # the clipping branch is exercised
        _assert_parameters_close(net, params, lambda w: ULPS_PER_STEP * step * eps * max(np.abs(w).max(), 1.0))
    if options["optimizer"] != "sgd":
        assert state.steps[0] == STEPS


# End to end in float32 the gradients themselves differ (other GEMM kernels and summation
# orders: test_train_gradients.GRAD_RTOL_F32 = 1e-4 of the layer's largest entry).  Adam
# normalises the update to about lr per step, and a relative gradient error of delta moves it
# by about delta * lr, so after STEPS steps the parameters agree within
# STEPS * lr * GRAD_RTOL_F32 (and the float32 rounding of the update rule above).
END_TO_END_ATOL_F32 = STEPS * LR * 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", ["sgd-weight-decay", "adam-l2-clipped", "adamw"])
def test_training_steps_match_a_torch_loop(torch, rule, dtype):
    options = RULES[rule]
    plan, net = _setup(options, dtype)
    params = torch_parameters(torch, net)
    flat = [p for pair in params for p in pair]
    optimizer = _torch_optimizer(torch, flat, options)
    state = plan.optimizer_state(net)
    for step, (x, labels) in enumerate(_batches(plan), start=1):
        optimizer.zero_grad()
        loss = torch_loss(torch, plan, net, params, x, labels, None)
        loss.backward()
        if options.get("clip_norm"):
            torch.nn.utils.clip_grad_norm_(flat, options["clip_norm"])
        optimizer.step()
        ours, _ = net.update(x, labels, None, state)
        assert ours == pytest.approx(loss.item(), rel=1e-4 if dtype == "float32" else GRAD_RTOL_F64)
    if dtype == "float64":
        # Gradients agree to reassociation (GRAD_RTOL_F64 of their scale); the update moves p
        # by about lr per step, so STEPS steps stay within STEPS * lr * GRAD_RTOL_F64 plus the
        # float64 rounding of the rule.
        _assert_parameters_close(net, params, lambda w: STEPS * LR * GRAD_RTOL_F64
                                 + ULPS_PER_STEP * STEPS * np.finfo(dtype).eps * max(np.abs(w).max(), 1.0))
    else:
        _assert_parameters_close(net, params, lambda w: END_TO_END_ATOL_F32)


def test_sgd_without_weight_decay_is_the_same_bits_through_either_entry_point():
    """``Network.step`` (the SGD hook) and the optimizer record take identical steps."""
    plan, net = _setup(RULES["sgd"], "float32")
    twin = build_network(plan)
    twin.B[:] = net.B
    state = plan.optimizer_state(twin)
    velocity = None
    for x, labels in _batches(plan):
        _, _, velocity = net.step(x, labels, lr=LR, momentum=0.9, velocity=velocity)
        twin.update(x, labels, None, state)
    assert np.array_equal(net.W, twin.W) and np.array_equal(net.B, twin.B)


def test_run_records_the_optimizer_and_adam_trains():
    common = dict(depth=3, width=16, task="gaussians", epochs=4, lr=1e-2, batch=32, task_params={"n_train": 128})
    frame = run("he_normal", "relu", optimizer="adamw", weight_decay=0.01, init_params={"nonlinearity": "relu"},
                **common)
    attrs = frame.attrs
    assert (attrs["optimizer"], attrs["betas"], attrs["eps"], attrs["weight_decay"], attrs["momentum"]) == \
        ("adamw", (0.9, 0.999), 1e-8, 0.01, None)
    loss = frame.groupby("epoch").loss.first()
    assert loss.iloc[-1] < 0.5 * loss.iloc[0]
    sgd = run("he_normal", "relu", init_params={"nonlinearity": "relu"}, **common).attrs
    assert (sgd["optimizer"], sgd["momentum"], sgd["betas"], sgd["eps"]) == ("sgd", 0.9, None, None)
