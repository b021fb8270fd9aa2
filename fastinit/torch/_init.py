"""``init_``: a module's layers re-initialised with a registry initializer, as ``propagate`` draws them."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch

from fastinit import rng
from fastinit._kernels.draw import draw_weights, weight_substream
from fastinit._validation import check_real, check_seed, check_stream
from fastinit.initializers import _layout, declared_variance, get_initializer
from fastinit.torch._layers import layers

__all__ = ["init_", "DTYPES"]

# The dtypes fastinit's samplers draw in; others would only be a rounding of these numbers.
DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_KEEP = "keep"


def _bias_rule(bias):
    """``bias`` checked: ``None`` (zeros), ``"keep"``, or a std >= 0 as a float."""
    if bias is None or (isinstance(bias, str) and bias == _KEEP):
        return bias
    if isinstance(bias, str):
        raise ValueError(f"bias must be None (zeros), a std >= 0 or 'keep', got {bias!r}")
    return check_real("bias", bias, minimum=0.0)


def init_(module, init, *, seed=0, stream=0, bias=None, include=(), **params) -> pd.DataFrame:
    """Re-initialise every layer's weight of ``module`` in place with a fastinit initializer.

    Layers are the ``nn.Linear`` and ``nn.ConvNd`` modules (transposed convolutions
    included), and instances of the types in ``include``, numbered ``l = 1, 2, ...`` in
    ``module.named_modules()`` order.  Layer ``l``'s weight gets exactly the numbers that
    ``fastinit.propagate(init, ..., seed=seed, stream=stream)`` draws for its layer ``l``
    (substream ``2 l + 2`` of the stream, the draw scaled by the weight's fans), so a dense
    torch net and ``propagate`` share their weights bit for bit.  Fans follow PyTorch's rule
    (:func:`fastinit.fans`: ``weight.shape[1] * rf`` in, ``weight.shape[0] * rf`` out, ``rf``
    the kernel's size); ``orthogonal`` flattens a kernel to ``(shape[0], rest)`` as
    ``torch.nn.init.orthogonal_`` does.

    Parameters
    ----------
    module : torch.nn.Module
        Its layers' weights must be float32 or float64 (on any device).
    init : str
        A name of ``fastinit.INITIALIZERS`` (presets such as ``"torch_default"``,
        ``"flax_default"`` included).
    seed : int, default 0
        Root seed, as ``propagate``'s.
    stream : int, default 0
        Stream id, as ``propagate``'s ``stream`` option.
    bias : None, float or "keep", default None
        ``None``: biases set to 0 (Keras' and Flax's default, and ``propagate``'s with its
        default ``bias_std=0``, which adds no bias); a float ``s >= 0``: N(0, s^2), layer
        ``l``'s drawn exactly as ``propagate(bias_std=s)`` draws it (substream ``2 l + 3``;
        ``s = 0`` gives zeros); ``"keep"``: biases untouched.
    include : type or tuple of type, default ()
        Further ``nn.Module`` subclasses whose ``weight`` is a layer too (e.g.
        ``nn.Embedding``), numbered in the same module order.
    **params
        The initializer's parameters (``INITIALIZERS[init].params``), e.g.
        ``nonlinearity="relu"``, ``gain=2.0``.

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer``, ``name`` (as ``named_modules`` names it), ``kind``
        (class name), ``shape``, ``fan_in``, ``fan_out``, ``receptive_field``, ``init``,
        ``init_params`` (JSON), ``variance`` (the rule's value for this shape,
        :func:`fastinit.initializers.declared_variance`), ``rule`` (the scheme's
        description) and ``bias`` (``"zeros"``, ``"normal(std=s)"``, ``"kept"`` or
        ``"none"`` for a layer without bias).  ``attrs`` holds ``init``, ``seed`` and
        ``stream``.

    Raises
    ------
    ValueError, TypeError
        For an unknown initializer or parameter, a bad seed, stream or bias, a module without
        layers, or a layer whose weight the initializer cannot fill (a dtype other than
        float32/float64, a 1-D weight where the scheme needs fans); the message names the
        layer.  Nothing is written unless every layer can be drawn.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    >>> record = init_(net, "he_normal", seed=1, nonlinearity="relu")
    >>> record[["layer", "name", "fan_in"]].values.tolist(), round(float(record.variance[0]) * 64, 12)
    ([[1, '0', 64], [2, '2', 64]], 2.0)
    """
    entry = get_initializer(init)
    if entry.name == "lsuv":
        raise ValueError("init 'lsuv' calibrates each layer on a batch of inputs, which init_ does not have; "
                         "use init_(module, 'orthogonal') and rescale on your data, or fastinit.propagate / "
                         "fastinit.train.run, which calibrate on theirs")
    resolved = entry.resolve(**params)
    seed, stream, bias = check_seed(seed), check_stream(stream), _bias_rule(bias)
    drawn, rows = [], []
    for layer in layers(module, include):
        weight = layer.module.weight
        where = f"layer {layer.index} {layer.name!r} ({layer.kind})"
        if weight.dtype not in DTYPES:
            raise TypeError(f"{where} has {weight.dtype} weights; init_ draws float32 or float64 "
                            "(convert with module.float() or module.double() first)")
        shape = tuple(weight.shape)
        try:
            fan_in, fan_out, receptive_field = _layout(entry, shape)
        except ValueError as error:
            raise ValueError(f"{where}: {error}; initializer {entry.name!r} needs fans") from None
        draw = entry.draw(fan_in, fan_out, **resolved)
        dtype = DTYPES[weight.dtype]
        # propagate's own draw, on the weight as a (shape[0], rest) matrix: the samplers fill it
        # in C order whatever its shape, and orthogonal flattens a kernel this way (as PyTorch).
        values = np.empty((shape[0], math.prod(shape[1:])), dtype=dtype)
        draw_weights(values, draw.kind, float(draw.a), float(draw.b), np.uint64(seed),
                     np.uint64(stream), np.int64(weight_substream(layer.index)))
        bias_values, bias_text = _bias(layer, bias, seed, stream)
        drawn.append((layer, values.reshape(shape), bias_values))
        rows.append({
            "layer": layer.index, "name": layer.name, "kind": layer.kind, "shape": shape, "fan_in": fan_in,
            "fan_out": fan_out, "receptive_field": receptive_field, "init": entry.name,
            "init_params": json.dumps(resolved, sort_keys=True),
            "variance": declared_variance(entry.name, shape, **resolved), "rule": entry.description, "bias": bias_text,
        })
    with torch.no_grad():  # every layer drew: now write them all
        for layer, values, bias_values in drawn:
            layer.module.weight.copy_(torch.from_numpy(values))
            if bias_values is not None:
                layer.module.bias.copy_(torch.from_numpy(bias_values))
    record = pd.DataFrame.from_records(rows)
    record.attrs.update({"init": entry.name, "seed": seed, "stream": stream})
    return record


def _bias(layer, bias, seed, stream):
    """Layer ``layer``'s new bias (None: leave it) and how the record describes it."""
    current = getattr(layer.module, "bias", None)
    if not isinstance(current, torch.Tensor):
        return None, "none"
    if bias == _KEEP:
        return None, "kept"
    dtype = DTYPES.get(current.dtype)
    if dtype is None:
        raise TypeError(f"layer {layer.index} {layer.name!r} ({layer.kind}) has a {current.dtype} bias; init_ draws "
                        "float32 or float64 (convert the module, or pass bias='keep')")
    values = np.zeros(tuple(current.shape), dtype=dtype)
    if not bias:  # None or 0: zeros, as propagate without bias
        return values, "zeros"
    # propagate draws layer l's bias on the substream after its weights', in the net's dtype.
    rng.fill(values, rng.KIND_NORMAL, bias, 0.0, seed, stream, weight_substream(layer.index) + 1)
    return values, f"normal(std={bias:g})"
