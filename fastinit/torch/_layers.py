"""Which modules of a net are its layers, numbered as ``fastinit.propagate`` numbers them.

Layer ``l`` (1-based) is the ``l``-th module in ``module.named_modules()`` order (depth
first, registration order, each shared module once) that is an ``nn.Linear`` or an
``nn.ConvNd`` (transposed convolutions included), or an instance of a type the caller
opts in with ``include``.  :func:`fastinit.torch.init_` and :func:`fastinit.torch.trace`
both number layers this way, so row ``l`` of a trace is the weight ``init_`` drew for
layer ``l``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["TRACED_TYPES", "Layer", "layers"]

TRACED_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
"""The module types :func:`~fastinit.torch.init_` and :func:`~fastinit.torch.trace` take by default."""


class Layer(NamedTuple):
    """One layer: its number, its qualified name in the module and the module."""

    index: int  # 1-based, module order
    name: str  # as named_modules() names it; the class name for the root module itself
    module: nn.Module

    @property
    def kind(self) -> str:
        """The module's class name, e.g. ``"Linear"`` or ``"Conv2d"``."""
        return type(self.module).__name__


def _check_include(include) -> tuple[type, ...]:
    include = tuple(include) if isinstance(include, (list, tuple)) else (include,)
    for entry in include:
        if not (isinstance(entry, type) and issubclass(entry, nn.Module)):
            raise TypeError(f"include must be nn.Module subclasses (e.g. include=(nn.Embedding,)), got {entry!r}")
    return include


def layers(module, include=()) -> list[Layer]:
    """The layers of ``module`` in module order, each with a floating ``weight`` parameter.

    Parameters
    ----------
    module : torch.nn.Module
    include : type or tuple of type, default ()
        Further ``nn.Module`` subclasses to take, each with a ``weight`` parameter.

    Returns
    -------
    list of Layer

    Raises
    ------
    TypeError
        If ``module`` is not an ``nn.Module`` or ``include`` holds something else than module types.
    ValueError
        If ``module`` has no layer, or a layer has no materialised floating ``weight`` (a lazy
        module before its first forward pass); the message names the layer.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    types = TRACED_TYPES + _check_include(include)
    found = []
    for name, sub in module.named_modules():
        if isinstance(sub, types):
            found.append(Layer(len(found) + 1, name or type(sub).__name__, sub))
    if not found:
        raise ValueError(f"module {type(module).__name__} has no layer to initialise or trace: none of its modules is "
                         "an nn.Linear or nn.ConvNd (pass include=(YourLayer,) for other layers with a weight)")
    for layer in found:
        weight = getattr(layer.module, "weight", None)
        if isinstance(weight, nn.parameter.UninitializedParameter):
            raise ValueError(f"layer {layer.index} {layer.name!r} ({layer.kind}) has no weights yet (a lazy module): "
                             "run one forward pass before init_ or trace")
        if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
            raise ValueError(f"layer {layer.index} {layer.name!r} ({layer.kind}) has no floating-point weight "
                             f"parameter (found {type(weight).__name__}); only modules with a `weight` can be layers")
    return found
