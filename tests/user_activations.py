"""Activations a user would register: importing this module registers them (as a user's module would).

Written as users write them, with :mod:`math` only.  ``copy_relu`` and ``copy_erf`` repeat
built-ins, so that what the library does with a registered activation can be held against what
it does with the built-in; ``mish`` has no built-in twin.
"""

import math

from fastinit.activations import register


def mish(x):
    return x * math.tanh(math.log1p(math.exp(x)))


def mish_slope(x):
    t = math.tanh(math.log1p(math.exp(x)))
    return t + x * (1.0 - t * t) / (1.0 + math.exp(-x))


def relu(x):
    return x if x > 0.0 else 0.0


def relu_slope(x):
    return 1.0 if x > 0.0 else 0.0


def erf(x):
    return math.erf(x)


def erf_slope(x):
    return 2.0 / math.sqrt(math.pi) * math.exp(-x * x)


MISH = register("user_mish", mish, mish_slope)  # "mish" itself is fastinit.example_activations'
COPY_RELU = register("copy_relu", relu, relu_slope, homogeneous=True)
COPY_ERF = register("copy_erf", erf, erf_slope, bounded=True)
