"""The initializer battery's cases and error bars, shared by the NumPy and the PyTorch battery.

Every registry entry appears with the parameter sets below (a test fails otherwise); the
standard errors are those of a sample variance of i.i.d. draws (orthogonal bounded by the
Gaussian's), so tolerances follow from the sample size.
"""

from __future__ import annotations

import math

from fastinit import INITIALIZERS, fans
from fastinit.initializers import CONSTANT, ORTHOGONAL, declared_variance

# Parameter sets exercised for each scheme; every registry entry must appear.
EXAMPLES = {
    "uniform": [{}],
    "xavier_normal": [{}, {"gain": 5 / 3}],
    "xavier_uniform": [{}, {"gain": 5 / 3}],
    "he_normal": [{}, {"mode": "fan_out"}, {"nonlinearity": "leaky_relu", "a": 0.2}, {"nonlinearity": "tanh"}],
    "he_uniform": [{}, {"mode": "fan_out"}, {"nonlinearity": "leaky_relu", "a": 0.2}],
    "lecun_normal": [{}],
    "lecun_uniform": [{}],
    "orthogonal": [{}, {"gain": 2.0}],
    "lsuv": [{}, {"tol": 0.05, "max_iter": 3}],  # without data: its orthogonal base
    "normal": [{"std": 0.05}],
    "truncated_normal": [{"std": 0.5}, {"std": 1.0, "bound": 0.5}],
    "variance_scaling": [
        {},
        {"scale": 2.0, "mode": "fan_avg", "distribution": "normal"},
        {"scale": 0.5, "mode": "fan_out", "distribution": "uniform"},
    ],
    "zeros": [{}],
    "constant": [{"value": 0.3}],
    "torch_default": [{}],
    "keras_default": [{}],
    "flax_default": [{}],
}
SHAPES = [(512, 512), (300, 700), (64, 32, 3, 3)]
CASES = [(name, params) for name in INITIALIZERS for params in EXAMPLES[name]]
CASE_IDS = [f"{name}-{i}" for name in INITIALIZERS for i, _ in enumerate(EXAMPLES[name])]


def draw_and_variance(name, shape, params):
    """``(draw, declared variance)`` of scheme ``name`` with ``params`` for weights of ``shape``."""
    entry = INITIALIZERS[name]
    fan_in, fan_out = fans(shape) if entry.needs_fans else (1, 1)
    return entry.draw(fan_in, fan_out, **entry.resolve(**params)), declared_variance(name, shape, **params)


def standard_error(draw, variance, size):
    """Standard error of the variance of ``size`` entries drawn from ``draw``: variance sqrt((kurtosis - 1) / size)."""
    if draw.kind == CONSTANT:
        return 0.0
    # Orthogonal entries are coordinates of uniform unit vectors (kurtosis 3m/(m+2) < 3) whose
    # squares sum exactly: the i.i.d. Gaussian error bounds theirs.
    kurtosis = 3.0 if draw.kind == ORTHOGONAL else float(draw.distribution().stats(moments="k")) + 3.0
    return variance * math.sqrt((kurtosis - 1.0) / size)


# Constant and orthogonal weights are not i.i.d. draws: their own tests cover them.
IID = [(case, case_id) for case, case_id in zip(CASES, CASE_IDS)
       if draw_and_variance(case[0], (4, 4), case[1])[0].kind not in (CONSTANT, ORTHOGONAL)]
