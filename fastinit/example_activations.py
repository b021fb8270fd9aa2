"""An example of a user's activation module: importing it registers ``mish`` (Misra 2019).

This is what your own module looks like (plain :mod:`math` functions and one
:func:`fastinit.activations.register` call at import); the ``modern`` study preset names the
activation ``fastinit.example_activations:mish``, so every sweep worker imports this module.
"""

from __future__ import annotations

import math

from fastinit.activations import register

__all__ = ["mish", "mish_slope", "MISH"]


def mish(x):
    """``x tanh(softplus(x))``."""
    return x * math.tanh(math.log1p(math.exp(x)))


def mish_slope(x):
    """``d/dx mish(x) = tanh(sp) + x sech(sp)^2 sigmoid(x)``, ``sp = softplus(x)``."""
    t = math.tanh(math.log1p(math.exp(x)))
    return t + x * (1.0 - t * t) / (1.0 + math.exp(-x))


MISH = register("mish", mish, mish_slope)
