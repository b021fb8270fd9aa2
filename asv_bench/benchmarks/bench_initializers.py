"""``fastinit.sample`` for every scheme of ``fastinit.INITIALIZERS``."""

from __future__ import annotations

import fastinit

from .common import SEED, require_complete

# The keyword arguments each scheme is timed with: its defaults, except a value for a
# required parameter (constant) and the settings people use (He for ReLU, small normals).
SAMPLE_KWARGS = {
    "uniform": {},
    "xavier_normal": {},
    "xavier_uniform": {},
    "he_normal": {"nonlinearity": "relu"},
    "he_uniform": {"nonlinearity": "relu"},
    "lecun_normal": {},
    "lecun_uniform": {},
    "orthogonal": {},
    "lsuv": {},  # without data: its orthogonal base
    "normal": {"std": 0.02},
    "truncated_normal": {"std": 0.02},
    "variance_scaling": {},
    "zeros": {},
    "constant": {"value": 0.5},
    "torch_default": {},
    "keras_default": {},
    "flax_default": {},
}
require_complete("initializer", fastinit.INITIALIZERS, SAMPLE_KWARGS)


class Sample:
    """One weight tensor, float32: a small layer (fixed costs), a large one (throughput), a conv kernel."""

    params = [list(SAMPLE_KWARGS), [(128, 128), (2048, 2048), (64, 64, 3, 3)]]
    param_names = ["init", "shape"]

    def setup(self, init, shape):
        self.kwargs = SAMPLE_KWARGS[init]
        # Same scheme, dtype and number of dimensions: the jitted fill compiles (or loads
        # from the cache) here, never in the timed call.
        fastinit.sample(init, tuple(min(n, 4) for n in shape), seed=SEED, **self.kwargs)

    def time_sample(self, init, shape):
        fastinit.sample(init, shape, seed=SEED, **self.kwargs)
