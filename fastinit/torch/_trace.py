"""``trace``: one forward and one backward pass through a user's module, with hooks.

Each layer (:mod:`fastinit.torch._layers`) gets a row of ``fastinit.propagate``'s
statistics.  Its output is z_l (bias included); its activation is the elementwise
activation module (``nn.ReLU``, ``nn.Tanh``, ...) that first takes z_l as input, so
h_l = phi(z_l) is that module's output; a z_l that goes straight into the next layer or
out of the module has the identity.  Where z_l goes anywhere else (a functional
``F.relu``, a norm layer, an operator), the activation is not known and the columns that
need it (``act_second_moment``, ``dead_frac``, ``saturated_frac``, ``corr``) are NaN, the
reason in ``attrs["unknown_activation"]``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from fastinit import rng
from fastinit._kernels.draw import SUB_READOUT
from fastinit._validation import check_seed, check_stream
from fastinit.activations import get_activation
from fastinit.initializers import fans
from fastinit.propagate import COLUMNS
from fastinit.torch._layers import Layer, layers
from fastinit.torch._statistics import layer_statistics

__all__ = ["trace", "TORCH_ACTIVATIONS"]


def _only_exact_gelu(module):
    return ("gelu", None) if module.approximate == "none" else None


def _only_unit_beta_softplus(module):
    return ("softplus", None) if module.beta == 1 else None


TORCH_ACTIVATIONS = {
    nn.Identity: lambda m: ("linear", None),
    nn.ReLU: lambda m: ("relu", None),
    nn.LeakyReLU: lambda m: ("leaky_relu", float(m.negative_slope)),
    nn.Tanh: lambda m: ("tanh", None),
    nn.Sigmoid: lambda m: ("sigmoid", None),
    nn.SiLU: lambda m: ("silu", None),
    nn.GELU: _only_exact_gelu,  # the tanh approximation is not fastinit's gelu
    nn.ELU: lambda m: ("elu", float(m.alpha)),
    nn.SELU: lambda m: ("selu", None),
    nn.Softplus: _only_unit_beta_softplus,
}
"""Activation modules ``trace`` recognises -> ``(fastinit activation, parameter)`` (None: not this configuration)."""


class _TraceError(ValueError):
    """A module trace cannot trace as it is (raised from inside a hook, passed on unchanged)."""


@dataclass
class _Observed:
    """What the hooks saw of one layer."""

    layer: Layer
    calls: int = 0
    z_tensor: torch.Tensor | None = None  # identity only: which module consumes it
    z: np.ndarray | None = None  # float64 (batch, units)
    grad: np.ndarray | None = None
    activation: str | None = None
    param: float | None = None
    h: np.ndarray | None = None
    unknown: str = ""  # why the activation is not known
    consumer: object = field(default=None, repr=False)


def _as_rows(tensor: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy, the first axis the batch and the rest the units."""
    values = tensor.detach().to(device="cpu", dtype=torch.float64).numpy()
    return values.reshape(values.shape[0], -1) if values.ndim > 1 else values.reshape(1, -1)


def _expects(module) -> str:
    """What input a layer takes, for an error message."""
    if isinstance(module, nn.Linear):
        return f"inputs of shape (..., in_features={module.in_features})"
    if isinstance(module, nn.modules.conv._ConvNd):
        spatial = ", ".join(["..."] * len(module.kernel_size))
        return f"inputs of shape (batch, in_channels={module.in_channels}, {spatial})"
    return "its own input shape"


class _Hooks:
    """The forward hooks of one trace: layer outputs, activation outputs, and where a forward fails."""

    def __init__(self, module, found):
        self.observed = {id(layer.module): _Observed(layer) for layer in found}
        self.names = {id(sub): name or type(sub).__name__ for name, sub in module.named_modules()}
        self.stack = []  # modules entered and not left: the last one is where an error happened
        self.handles = []
        for sub in {id(s): s for _, s in module.named_modules()}.values():
            self.handles.append(sub.register_forward_pre_hook(self._enter))
            self.handles.append(sub.register_forward_hook(self._leave))

    def remove(self):
        for handle in self.handles:
            handle.remove()

    def _produced_by(self, tensor):
        """The layer whose output ``tensor`` is and whose consumer is still open, or None."""
        if isinstance(tensor, torch.Tensor):
            for seen in self.observed.values():
                if seen.z_tensor is tensor and seen.consumer is None:
                    return seen
        return None

    def _enter(self, sub, inputs):
        self.stack.append((sub, tuple(tuple(x.shape) for x in inputs if isinstance(x, torch.Tensor))))
        if next(sub.children(), None) is not None:
            return  # a container: its leaves are the consumers
        producer = self._produced_by(inputs[0] if inputs else None)
        if producer is None:
            return
        producer.consumer = sub
        if id(sub) in self.observed:  # z goes straight into the next layer
            producer.activation, producer.h = "linear", producer.z
            return
        describe = TORCH_ACTIVATIONS.get(type(sub))
        known = describe(sub) if describe is not None else None
        if known is None:
            producer.unknown = (f"z feeds {type(sub).__name__} {self.names[id(sub)]!r}, not an elementwise activation "
                                f"that fastinit knows ({', '.join(t.__name__ for t in TORCH_ACTIVATIONS)})")
        else:
            producer.activation, producer.param = known

    def _leave(self, sub, inputs, output):
        self.stack.pop()
        for seen in self.observed.values():  # an activation's output: h of the layer it consumed
            if seen.consumer is sub and seen.activation is not None and seen.h is None and isinstance(output, torch.Tensor):
                seen.h = _as_rows(output)
        seen = self.observed.get(id(sub))
        if seen is None:
            return
        seen.calls += 1
        if seen.calls > 1:
            raise _TraceError(f"layer {seen.layer.index} {seen.layer.name!r} ({seen.layer.kind}) ran twice in one forward "
                             "pass; trace gives one row per layer, so each layer may run once (share no layer)")
        if not isinstance(output, torch.Tensor):
            raise _TraceError(f"layer {seen.layer.index} {seen.layer.name!r} returned {type(output).__name__}, not a "
                              "tensor; trace takes layers whose output is one tensor")
        seen.z_tensor, seen.z = output, _as_rows(output)  # copied now: an in-place activation overwrites z next
        if output.requires_grad:
            output.register_hook(lambda grad, seen=seen: setattr(seen, "grad", _as_rows(grad)))

    def failure(self, error, inputs) -> ValueError:
        """A ValueError naming the module the forward pass failed in and the input it got."""
        if not self.stack:
            return ValueError(f"the forward pass failed before any layer ran: {error}")
        sub, shapes = self.stack[-1]
        seen = self.observed.get(id(sub))
        got = " and ".join(str(s) for s in shapes) or "no tensor"
        where = (f"layer {seen.layer.index} {seen.layer.name!r} ({seen.layer.kind}, which takes {_expects(sub)})"
                 if seen is not None else f"module {self.names.get(id(sub), '?')!r} ({type(sub).__name__})")
        given = " and ".join(str(tuple(x.shape)) for x in inputs if isinstance(x, torch.Tensor))
        return ValueError(f"the forward pass failed in {where}, given an input of shape {got} (inputs of shape "
                          f"{given}): {error}. Check that inputs fit the module")


@contextlib.contextmanager
def _weights_require_grad(found):
    """Every layer weight requires grad for the duration (dL/dW is a column), then as before."""
    frozen = [layer.module.weight for layer in found if not layer.module.weight.requires_grad]
    for weight in frozen:
        weight.requires_grad_(True)
    try:
        yield
    finally:
        for weight in frozen:
            weight.requires_grad_(False)


def _readout(output, seed, stream):
    """propagate's random linear readout: L = sum(output * G), G i.i.d. N(0, 1) on its readout substream."""
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise TypeError(f"the module returned {type(output).__name__}, not a floating-point tensor; pass loss=... "
                        "that reduces its output to a scalar")
    dtype = "float64" if output.dtype == torch.float64 else "float32"
    readout = rng.standard_normal(seed, max(1, output.numel()), stream=stream, substream=SUB_READOUT, dtype=dtype)
    gradient = torch.from_numpy(readout.reshape(tuple(output.shape))).to(device=output.device, dtype=output.dtype)
    return (output * gradient).sum()


def _loss(loss, target, output):
    value = loss(output, target) if target is not None else loss(output)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError(f"loss must return a scalar tensor, got {type(value).__name__}"
                         f"{'' if not isinstance(value, torch.Tensor) else f' of shape {tuple(value.shape)}'}")
    return value.reshape(())


def trace(module, inputs, *, loss=None, target=None, seed=0, stream=0, include=()) -> pd.DataFrame:
    """Per-layer signal and gradient statistics of a PyTorch module: one forward, one backward pass.

    Parameters
    ----------
    module : torch.nn.Module
        Run as it is (train or eval mode; in train mode a forward pass updates batch norm's
        running statistics, as any forward pass does).  Its ``.grad`` fields are not touched.
    inputs : torch.Tensor or tuple of torch.Tensor
        The module's positional inputs; the first axis of every layer's output is the batch.
    loss : callable, optional
        ``loss(output, target)`` (or ``loss(output)`` without ``target``) returning a scalar
        tensor, e.g. ``torch.nn.CrossEntropyLoss()``.  Without it, ``propagate``'s random
        linear readout: ``L = sum(output * G)`` with ``G`` i.i.d. N(0, 1) drawn on
        ``propagate``'s readout substream of ``(seed, stream)``, so dL/d output is exactly
        ``propagate``'s ``dL/dh_L`` for an output of its shape.
    target : torch.Tensor, optional
        Passed to ``loss``.
    seed, stream : int, default 0
        The readout's random stream, as ``propagate``'s.
    include : type or tuple of type, default ()
        Further module types traced as layers (as :func:`fastinit.torch.init_`).

    Returns
    -------
    pandas.DataFrame
        One row per layer, in module order (layer ``l`` as :func:`fastinit.torch.init_` numbers
        it): ``layer``, ``name``, ``kind`` (class name), ``activation`` (fastinit's name of the
        activation module that takes the layer's output, ``"linear"`` where the output goes
        straight on, None where not known), ``activation_param`` (its parameter, e.g.
        ``nn.LeakyReLU``'s slope; NaN for activations without one), ``fan_in``, ``fan_out`` (PyTorch's rule,
        :func:`fastinit.fans`), ``width`` (units: the output's size per example), then
        ``propagate``'s columns with its meanings, in float64, over batch and units:
        ``fwd_mean, fwd_var, log10_fwd_var`` (of z_l, the layer's output), ``act_second_moment``
        and its log10 (E[h_l^2], h_l = phi(z_l)), ``grad_var`` and its log10 (of dL/dz_l),
        ``wgrad_var`` and its log10 (of dL/dW_l), ``dead_frac`` (units with phi'(z) = 0 for
        every example), ``saturated_frac`` (entries with |phi'(z)| < 1e-3, bounded
        activations), ``nonfinite`` (= ``fwd_nonfinite + grad_nonfinite``), ``corr`` (mean
        cosine of the row pairs (0, 1), (2, 3), ... of h_l) and ``fwd_nonfinite`` /
        ``grad_nonfinite``.  NaN means not known (a matrix with an inf/NaN entry, an unknown
        activation, a layer the loss does not reach), never 0.

        ``attrs``: ``batch``, ``dtype`` (of the first layer's weight), ``seed``, ``stream``,
        ``readout`` ("random linear" or "loss"), ``unknown_activation`` ({layer: reason}) and
        ``not_called`` (names of layers the forward pass did not run; they have no row).

    Raises
    ------
    ValueError
        For a module without layers, inputs the module cannot take (the message names the
        layer or module where the forward pass failed and the shape it got), a layer run
        twice, a loss that does not return a scalar, or ``target`` without ``loss``.
    TypeError
        For a module or output that is not one (e.g. a tuple output without a loss).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
    >>> frame = trace(net, torch.randn(16, 32))
    >>> frame[["layer", "activation", "fan_in"]].values.tolist()
    [[1, 'relu', 32], [2, 'relu', 32]]
    """
    found = layers(module, include)
    seed, stream = check_seed(seed), check_stream(stream)
    if target is not None and loss is None:
        raise ValueError("target needs a loss: pass loss=..., e.g. torch.nn.MSELoss()")
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    hooks = _Hooks(module, found)
    try:
        with torch.enable_grad(), _weights_require_grad(found):
            try:
                output = module(*inputs)
            except _TraceError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as error:  # torch's, from inside a module
                raise hooks.failure(error, inputs) from error
            value = _readout(output, seed, stream) if loss is None else _loss(loss, target, output)
            ran = [seen for seen in hooks.observed.values() if seen.calls]
            weights = [seen.layer.module.weight for seen in ran]
            wgrads = torch.autograd.grad(value, weights, allow_unused=True) if value.requires_grad else [None] * len(ran)
    finally:
        hooks.remove()
    return _frame(ran, wgrads, output, found, seed, stream, loss is None)


def _close_activation(seen, output):
    """Settle the activation of a layer whose output no module consumed."""
    if seen.consumer is None and seen.activation is None:
        if output is seen.z_tensor:
            seen.activation, seen.h = "linear", seen.z
        else:
            seen.unknown = ("z is used outside nn.Modules (a functional call such as F.relu, or an operator); "
                            "use activation modules (nn.ReLU, ...) to trace h")


def _frame(ran, wgrads, output, found, seed, stream, readout) -> pd.DataFrame:
    rows, unknown = [], {}
    for seen, wgrad in zip(ran, wgrads):
        _close_activation(seen, output)
        dphi, bounded = None, False
        if seen.activation is not None:
            spec = get_activation(seen.activation)
            with np.errstate(all="ignore"):  # inf/NaN in z are data
                dphi = np.asarray(spec.dphi_np(seen.z, seen.param), dtype=np.float64)
            bounded = spec.bounded
        else:
            unknown[seen.layer.index] = seen.unknown
        fan_in, fan_out = fans(tuple(seen.layer.module.weight.shape))
        with np.errstate(all="ignore"):
            stats = layer_statistics(seen.z, seen.h if seen.activation is not None else None, dphi, bounded, seen.grad,
                                     None if wgrad is None else wgrad.detach().to("cpu", torch.float64).numpy())
        rows.append({"layer": seen.layer.index, "name": seen.layer.name, "kind": seen.layer.kind,
                     "activation": seen.activation,
                     "activation_param": np.nan if seen.param is None else seen.param, "fan_in": fan_in, "fan_out": fan_out, "width": seen.z.shape[1],
                     **stats})
    frame = pd.DataFrame.from_records(rows, columns=["layer", "name", "kind", "activation", "activation_param",
                                                     "fan_in", "fan_out",
                                                     *COLUMNS[1:]])
    frame["activation"] = pd.Series([row["activation"] for row in rows], dtype=object)  # None stays None, not NaN
    called = {seen.layer.index for seen in ran}
    frame.attrs.update({
        "batch": int(ran[0].z.shape[0]) if ran else 0, "dtype": str(found[0].module.weight.dtype).replace("torch.", ""),
        "seed": seed, "stream": stream, "readout": "random linear" if readout else "loss",
        "unknown_activation": unknown, "not_called": [layer.name for layer in found if layer.index not in called],
    })
    return frame
