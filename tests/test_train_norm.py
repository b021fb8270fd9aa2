"""fastinit.train's ``norm`` / ``norm_at`` options against PyTorch modules and the NumPy twin; LSUV under a norm; bad input.

The torch side is built from ``torch.nn`` modules (``nn.Linear`` holding copies of
``Network.weight(l)`` / ``bias(l)``, ``nn.LayerNorm(elementwise_affine=False)`` or
``nn.BatchNorm1d(affine=False, track_running_stats=False)`` in training mode), wired from the
documented rule, not from fastinit's own layout: a hidden layer is residual when its fan-in
equals its fan-out; a norm before phi sits on every hidden layer, a pre-norm (branch) or
post-norm (output) one on the residual layers; the readout is never normalised.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastinit.train import _kernels as K
from fastinit.train import build_network, run
from fastinit.train.run import Plan
from fastinit.train.tasks import ORDER_STREAM
import naive_train
from test_train_gradients import GRAD_RTOL_F64, _assert_close, _layers, _split
from test_train_validation import _call

NORMS = [(norm, at) for norm in ("batch", "layer") for at in ("preact", "branch", "output")]
NORM_IDS = [f"{norm}-{at}" for norm, at in NORMS]
WIDTH, DEPTH, BATCH, ALPHA, LR = 16, 3, 16, 0.5, 0.01
# Two wirings: spirals has 2 inputs, so hidden layer 1 has no skip path (and under a branch or
# output norm no norm); the teacher with in_dim = WIDTH makes every hidden layer residual (a
# pre-norm then normalises the raw input).  One trains with SGD + momentum, the other with Adam.
SETUPS = {
    "spirals-sgd": dict(task="spirals", task_params={"n_train": 100}, optimizer="sgd", momentum=0.9),
    "teacher-adam": dict(task="teacher", task_params={"n_train": 100, "in_dim": WIDTH}, optimizer="adam"),
}
STEPS = 6  # the first 6 mini-batches of epoch 1's order


def _plan(setup, norm, norm_at, dtype, **changes):
    options = dict(SETUPS[setup])
    init, task = "xavier_normal", options.pop("task")
    kwargs = dict(depth=DEPTH, width=WIDTH, task=task, epochs=2, lr=LR, batch=BATCH, seed=7, dtype=dtype, norm=norm,
                  norm_at=norm_at, residual=ALPHA, **options)
    kwargs.update(changes)
    return init, kwargs


def _batches(plan, order, batch):
    data = plan.data
    for start in range(0, data.x.shape[0], batch):
        rows = order[start: start + batch]
        y = data.y[rows]
        yield data.x[rows], (y if data.classification else None), (None if data.classification else y)


# ------------------------------------------------------------------ the torch twin


def torch_mlp(torch, net, norm, norm_at):
    """The same net as ``torch.nn`` modules with copies of ``net``'s parameters (see the module docstring)."""
    nn = torch.nn
    dtype = torch.float64 if net.W.dtype == np.float64 else torch.float32

    def make_norm(units):
        if norm == "layer":
            return nn.LayerNorm(units, eps=1e-5, elementwise_affine=False, dtype=dtype)
        return nn.BatchNorm1d(units, eps=1e-5, affine=False, track_running_stats=False, dtype=dtype)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.linears = nn.ModuleList()
            for layer in range(1, net.n_layers + 1):
                w, b = net.weight(layer), net.bias(layer)
                linear = nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(w.copy()))
                    linear.bias.copy_(torch.from_numpy(b.copy()))
                self.linears.append(linear)
            self.sites = []
            norms = []
            for linear in self.linears[:-1]:
                residual = linear.in_features == linear.out_features
                site = norm_at if norm is not None and (norm_at == "preact" or residual) else None
                self.sites.append((residual, site))
                norms.append(make_norm(linear.out_features) if site else nn.Identity())
            self.norms = nn.ModuleList(norms)

        def forward(self, h):
            for linear, normalize, (residual, site) in zip(self.linears, self.norms, self.sites):
                if site == "branch":  # pre-norm residual
                    h = h + ALPHA * torch.tanh(linear(normalize(h)))
                    continue
                u = linear(h)
                u = normalize(u) if site == "preact" else u
                h = h + ALPHA * torch.tanh(u) if residual else torch.tanh(u)
                if site == "output":  # post-norm residual
                    h = normalize(h)
            return self.linears[-1](h)

    model = MLP()
    model.train()
    return model


def _torch_loss(torch, model, x, labels, targets):
    out = model(torch.from_numpy(np.array(x)))
    if labels is not None:
        return torch.nn.functional.cross_entropy(out, torch.from_numpy(np.array(labels)))
    return torch.nn.functional.mse_loss(out, torch.from_numpy(np.array(targets)))


def _torch_optimizer(torch, model, options):
    if options["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=LR, momentum=options["momentum"], foreach=False)
    return torch.optim.Adam(model.parameters(), lr=LR, foreach=False, fused=False)


# Tolerance of the step-for-step comparison, relative to each layer's scale: both sides compute
# the same sums in other orders, and a sum of K terms is within K eps of exact (the standard
# bound); K = 16 here (batch = width = 16, the longest reductions of the GEMMs and the norms'
# statistics).  Each step's loss and parameters carry the error of the steps before it, so
# the bound grows with the steps taken: K * eps * step.  Measured (the 24 cases below, 6 steps):
# at most 0.94 eps per step on the loss and 0.17 eps per step on the parameters in float32,
# 1.7 and 0.12 in float64.
REDUCTION = max(BATCH, WIDTH)


def _tolerance(dtype, step):
    return REDUCTION * float(np.finfo(dtype).eps) * step


def _bias_is_inert(norm, norm_at, layer, n_layers):
    """Batch norm before phi subtracts each unit's mean over the batch, so a hidden layer's bias cancels:
    its gradient is exactly 0 and what either side computes is rounding noise."""
    return norm == "batch" and norm_at == "preact" and layer < n_layers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("norm, norm_at", NORMS, ids=NORM_IDS)
def test_training_steps_match_torch_modules(torch, norm, norm_at, setup, dtype):
    init, kwargs = _plan(setup, norm, norm_at, dtype)
    plan = Plan.build(init, "tanh", **kwargs)
    net = build_network(plan)
    model = torch_mlp(torch, net, norm, norm_at)
    optimizer = _torch_optimizer(torch, model, SETUPS[setup])
    state = plan.optimizer_state(net)
    order = K.permutation(plan.data.x.shape[0], plan.seed, ORDER_STREAM, 1)
    for step, (x, labels, targets) in enumerate(_batches(plan, order, BATCH), start=1):
        if step > STEPS:
            break
        optimizer.zero_grad()
        loss = _torch_loss(torch, model, x, labels, targets)
        loss.backward()
        optimizer.step()
        ours, _ = net.update(x, labels, targets, state)
        assert ours == pytest.approx(loss.item(), rel=_tolerance(dtype, step)), f"loss at step {step}"
    tol = _tolerance(dtype, STEPS)
    for layer, linear in enumerate(model.linears, start=1):
        w, b = linear.weight.detach().numpy(), linear.bias.detach().numpy()
        scale = max(np.abs(w).max(), 1.0)
        _assert_close(net.weight(layer), w, tol, f"W layer {layer}", scale=scale)
        if _bias_is_inert(norm, norm_at, layer, net.n_layers) and SETUPS[setup]["optimizer"] == "adam":
            # Adam divides that noise by its own RMS: steps of order lr in a direction each side
            # picks from its own rounding (measured 0.03 apart after 6 steps), on a parameter the
            # loss does not see (the losses above agree).  SGD keeps it at the noise (checked).
            continue
        _assert_close(net.bias(layer), b, tol, f"b layer {layer}", scale=scale)


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("norm, norm_at", NORMS, ids=NORM_IDS)
def test_run_matches_a_torch_training_loop(torch, norm, norm_at, setup):
    """``run`` end to end (its epoch loop, last partial batch, evaluation in chunks of ``batch``) against torch."""
    init, kwargs = _plan(setup, norm, norm_at, "float64")
    frame = run(init, "tanh", **kwargs)
    plan = Plan.build(init, "tanh", **kwargs)
    model = torch_mlp(torch, build_network(plan), norm, norm_at)
    optimizer = _torch_optimizer(torch, model, SETUPS[setup])
    n = plan.data.x.shape[0]
    for epoch in range(1, plan.epochs + 1):
        for x, labels, targets in _batches(plan, K.permutation(n, plan.seed, ORDER_STREAM, epoch), BATCH):
            optimizer.zero_grad()
            _torch_loss(torch, model, x, labels, targets).backward()
            optimizer.step()
        with torch.no_grad():  # the training set in data-set order, chunks of batch (batch norm: each chunk's statistics)
            total = sum(_torch_loss(torch, model, x, labels, targets).item() * x.shape[0]
                        for x, labels, targets in _batches(plan, np.arange(n), BATCH))
        rows = frame[frame.epoch == epoch].sort_values("layer")
        assert rows.loss.iloc[0] == pytest.approx(total / n, rel=GRAD_RTOL_F64), f"loss at epoch {epoch}"
        norms = [np.linalg.norm(linear.weight.detach().numpy()) for linear in model.linears]
        np.testing.assert_allclose(rows.weight_norm.to_numpy(), norms, rtol=GRAD_RTOL_F64, err_msg=f"epoch {epoch}")
    assert (frame.attrs["norm"], frame.attrs["norm_at"], frame.attrs["batchnorm"]) == \
        (norm, norm_at, norm == "batch" and norm_at == "preact")


# ------------------------------------------------------------------ the NumPy twin


# One example per batch with layer norm too (batch norm needs two: an error, below).
TWIN_CASES = [(norm, at, batch) for norm, at in NORMS for batch in (BATCH, 1) if not (norm == "batch" and batch == 1)]


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("norm, norm_at, batch", TWIN_CASES, ids=[f"{n}-{a}-batch{b}" for n, a, b in TWIN_CASES])
def test_gradients_match_numpy_twin(norm, norm_at, setup, batch):
    init, kwargs = _plan(setup, norm, norm_at, "float64", batch=batch)
    plan = Plan.build(init, "tanh", **kwargs)
    net = build_network(plan)
    net.B[:] = 0.1 * np.sin(np.arange(net.B.size))  # bias paths exercised
    data = plan.data
    x = data.x[:batch]
    labels, targets = (data.y[:batch], None) if data.classification else (None, data.y[:batch])
    loss, gW, gB = net.gradients(x, labels, targets)
    weights, biases = _layers(net)
    alphas = [ALPHA if w.shape[0] == w.shape[1] else 0.0 for w in weights[:-1]] + [0.0]
    ref_loss, ref_w, ref_b = naive_train.mlp_gradients(weights, biases, x, activation="tanh", labels=labels,
                                                       targets=targets, alphas=alphas, norm=norm, norm_at=norm_at)
    assert loss == pytest.approx(ref_loss, rel=GRAD_RTOL_F64)
    for layer, ((w, b), rw, rb) in enumerate(zip(_split(net, gW, gB), ref_w, ref_b), start=1):
        _assert_close(w, rw, GRAD_RTOL_F64, f"dL/dW layer {layer}")
        _assert_close(b, rb, GRAD_RTOL_F64, f"dL/db layer {layer}", scale=max(np.abs(rw).max(), np.abs(rb).max()))


# ------------------------------------------------------------------ spellings, one input, LSUV


@pytest.mark.parametrize("residual", [None, 0.5])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_true_is_norm_batch_bit_for_bit(dtype, residual):
    common = dict(depth=3, width=16, task="gaussians", epochs=2, lr=0.05, batch=32, seed=3, dtype=dtype,
                  residual=residual, task_params={"n_train": 96})
    old = run("he_normal", "tanh", batchnorm=True, **common)
    for spelled in ({"norm": "batch"}, {"norm": "batch", "norm_at": "preact", "batchnorm": True}):
        new = run("he_normal", "tanh", **spelled, **common)
        assert list(new.columns) == list(old.columns)
        for column in old.columns:
            assert np.array_equal(new[column].to_numpy(), old[column].to_numpy(),
                                  equal_nan=new[column].dtype.kind == "f"), column


@pytest.mark.parametrize("norm_at", ["preact", "branch", "output"])
def test_layer_norm_trains_on_one_example_per_batch(norm_at):
    frame = run("he_normal", "tanh", depth=3, width=16, task="gaussians", epochs=2, lr=0.01, batch=1, norm="layer",
                norm_at=norm_at, residual=0.5, task_params={"n_train": 32, "n_test": 8})
    loss = frame.groupby("epoch").loss.first()
    assert np.isfinite(loss).all() and loss.iloc[-1] < loss.iloc[0]
    assert frame.attrs["steps_per_epoch"] == 32


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("norm, norm_at", NORMS, ids=NORM_IDS)
def test_lsuv_calibrates_each_z_through_the_norm(norm, norm_at, setup):
    """LSUV's promise under a norm: on the first mini-batch training sees, each layer's z (the GEMM's
    output, recomputed by the twin from the drawn weights) has variance within ``tol`` of 1."""
    init, kwargs = _plan(setup, norm, norm_at, "float64")
    kwargs.pop("optimizer"), kwargs.pop("momentum", None)
    tol = 0.1
    plan = Plan.build("lsuv", "tanh", **kwargs)
    net = build_network(plan)
    order = K.permutation(plan.data.x.shape[0], plan.seed, ORDER_STREAM, 1)
    weights, biases = _layers(net)
    alphas = [ALPHA if w.shape[0] == w.shape[1] else 0.0 for w in weights[:-1]] + [0.0]
    h, cache = naive_train.mlp_forward(weights, biases, plan.data.x[order[:BATCH]], activation="tanh", alphas=alphas,
                                       norm=norm, norm_at=norm_at)
    variances = [z.var() for _, _, z, _, _ in cache] + [h[-1].var()]
    assert all(abs(v - 1.0) < tol for v in variances), variances
    frame = run("lsuv", "tanh", **{**kwargs, "epochs": 1})
    assert frame.attrs["lsuv_scales"] == list(net.lsuv.scales) and np.isfinite(frame.loss).all()


# ------------------------------------------------------------------ bad input


def _bad_cases():
    yield "norm-unknown", _call(norm="group"), ValueError, ["norm", "'group'", "'batch'", "'layer'"]
    yield "norm-typo", _call(norm="layr"), ValueError, ["norm", "did you mean 'layer'"]
    yield "norm-at-unknown", _call(norm="layer", norm_at="pre"), ValueError, ["norm_at", "'pre'", "'preact'"]
    yield "norm-at-without-norm", _call(norm_at="branch", residual=1.0), ValueError, \
        ["norm_at='branch'", "needs a norm", "norm='layer'"]
    yield "branch-without-residual", _call(norm="layer", norm_at="branch"), ValueError, \
        ["norm_at='branch'", "residual", "norm_at='preact'"]
    yield "output-without-residual", _call(norm="batch", norm_at="output"), ValueError, \
        ["norm_at='output'", "residual"]
    yield "batchnorm-with-layer", _call(batchnorm=True, norm="layer"), ValueError, \
        ["batchnorm=True", "norm='layer'", "give one of them"]
    yield "batch-one-norm-batch", _call(batch=1, norm="batch"), ValueError, \
        ["norm='batch'", "batch >= 2", "batch=1", "norm='layer'"]
    yield "batch-one-batchnorm", _call(batch=1, batchnorm=True), ValueError, ["batchnorm", "batch=1", "batchnorm=False"]


BAD = list(_bad_cases())


@pytest.mark.parametrize("label, call, error, fragments", BAD, ids=[c[0] for c in BAD])
def test_bad_norm_input_raises_a_clear_one_line_error(label, call, error, fragments):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (label, message)
