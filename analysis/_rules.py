"""Var(W) rules: the seed notes' formulas, the registry's initializers, or a raw variance.

Shared by :func:`analysis.theory.layer_factors` and :func:`analysis.theory.predict`.
"""

from __future__ import annotations

import numpy as np

from analysis._moments import as_array
from fastinit._validation import check_params, did_you_mean
from fastinit.initializers import INITIALIZERS, USER_INITIALIZERS, get_initializer

__all__ = ["RULES", "weight_rule", "rule_variance"]

RULES = {
    "1/fan_in": lambda fan_in, fan_out: 1.0 / fan_in,
    "2/fan_in": lambda fan_in, fan_out: 2.0 / fan_in,
    "2/(fan_in+fan_out)": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
}
"""The seed notes' Var(W) rules (LeCun, He, Glorot) by their formula, spaces ignored."""


def weight_rule(weight_variance, init_params, name="weight_variance"):
    """A callable ``(fan_in, fan_out) -> Var(W)`` from a rule, an initializer name or a number."""
    if isinstance(weight_variance, str):
        compact = weight_variance.replace(" ", "")
        if compact in RULES:
            if init_params:
                raise TypeError(f"init_params apply to initializer names, not to the rule {weight_variance!r}")
            return RULES[compact]
        known = {name.casefold() for name in (*INITIALIZERS, *USER_INITIALIZERS)}
        if compact.casefold() in known or ":" in compact:  # module:name imports a registered one
            entry = get_initializer(compact)  # in any case, like every registry lookup
            resolved = entry.resolve(**check_params("init_params", init_params))
            # The theory is of dense layers: receptive field 1.
            return lambda fan_in, fan_out: entry.variance(fan_in, fan_out, 1, **resolved)
        choices = [*RULES, *INITIALIZERS]
        raise ValueError(f"{name} must be an initializer of fastinit.INITIALIZERS, one of the rules "
                         f"{', '.join(map(repr, RULES))} or a variance, got {weight_variance!r}"
                         f"{did_you_mean(compact, choices)}")
    if init_params:
        raise TypeError(f"init_params apply to initializer names, not to the raw variance {weight_variance!r}")
    variance = as_array(name, weight_variance, minimum=0.0)
    return lambda fan_in, fan_out: variance


def rule_variance(rule, fan_in, fan_out) -> np.ndarray:
    # Registry rules are scalar Python (orthogonal uses max()); the fans are few, so map
    # them elementwise over the broadcast fans.
    fan_in, fan_out = np.broadcast_arrays(fan_in, fan_out)
    try:
        return np.asarray(rule(fan_in, fan_out), dtype=np.float64) + np.zeros(fan_in.shape)
    except (TypeError, ValueError):
        return np.vectorize(lambda a, b: float(rule(int(a), int(b))), otypes=[np.float64])(fan_in, fan_out)
