"""The jitted activations of ``fastinit.ACTIVATIONS``, mapped over a large array."""

from __future__ import annotations

import functools

import numba
import numpy as np

import fastinit
from fastinit import activations

from .common import SEED, require_complete

ACTIVATION_NAMES = ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "elu", "selu", "softplus", "erf")
require_complete("activation", fastinit.ACTIVATIONS, ACTIVATION_NAMES)

SIZE = 2**20  # 8 MiB of float64: past the L2 cache, like a layer of pre-activations


# Not cached on purpose: numba's cache does not notice when a callee (phi, dphi) changes,
# and asv installs a different fastinit for every commit.  It compiles in setup (0.2 s).
@numba.njit(error_model="numpy")
def _map(derivative, code, x, param, out):
    """``out = phi(x)`` or ``phi'(x)`` elementwise, through the scalar functions the kernels inline."""
    for i in range(x.shape[0]):
        out[i] = activations.dphi(code, x[i], param) if derivative else activations.phi(code, x[i], param)


@functools.cache
def _arrays():
    """Input and outputs, made once per process; pages touched, so no timed call page-faults."""
    x = np.random.default_rng(SEED).standard_normal(SIZE)
    return x, np.zeros_like(x), np.zeros_like(x)


class Activation:
    """``apply`` (phi and phi' in one pass), and ``phi`` and ``phi'`` alone, over N(0, 1) inputs."""

    params = [list(ACTIVATION_NAMES)]
    param_names = ["activation"]

    def setup(self, name):
        entry = fastinit.ACTIVATIONS[name]
        self.code, self.param = entry.code, entry.default_param
        self.x, self.out_phi, self.out_dphi = _arrays()
        activations.apply(self.code, self.x[:8], self.param, self.out_phi[:8], self.out_dphi[:8])
        _map(False, self.code, self.x[:8], self.param, self.out_phi[:8])

    def time_apply(self, name):
        activations.apply(self.code, self.x, self.param, self.out_phi, self.out_dphi)

    def time_phi(self, name):
        _map(False, self.code, self.x, self.param, self.out_phi)

    def time_dphi(self, name):
        _map(True, self.code, self.x, self.param, self.out_dphi)
