"""Initializers a user would register: importing this module registers them.

``copy_lecun`` and ``copy_flax`` repeat built-ins (the same formulas, so the same bits), so
that a registered initializer can be held against the built-in; ``scaled_uniform`` has a
parameter.
"""

import math

from fastinit.initializers import TRUNCATED_STD_AT_2, register

COPY_LECUN = register("copy_lecun", lambda fan_in, fan_out: 1.0 / fan_in, "normal",
                      lambda fan_in, fan_out: 1.0 / math.sqrt(fan_in))
COPY_FLAX = register("copy_flax", lambda fan_in, fan_out: 1.0 / fan_in, "truncated_normal",
                     lambda fan_in, fan_out: math.sqrt(1.0 / fan_in) / TRUNCATED_STD_AT_2)


def scaled_variance(fan_in, fan_out, factor):
    return factor / fan_in


def scaled_limit(fan_in, fan_out, factor):
    return math.sqrt(3.0 * factor / fan_in)


SCALED_UNIFORM = register("scaled_uniform", scaled_variance, "uniform", scaled_limit, params={"factor": 1.0},
                          description="U[+-sqrt(3 factor / fan_in)], variance factor / fan_in")
