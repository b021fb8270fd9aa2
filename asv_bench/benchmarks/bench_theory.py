"""``analysis.theory``: the mean-field maps on phase-diagram grids, and a depth-1000 prediction.

The issue's yardstick: chi1 and q* over a 200 x 200 (sigma_w^2, sigma_b^2) grid for tanh in
under 1 s.  Commits before ``analysis/`` landed fail to import this module: asv shows gaps.
"""

from __future__ import annotations

import numpy as np

from analysis import theory


class PhaseGrid:
    """q* and chi1 over an n x n grid of (sigma_w^2 in [0.25, 4], sigma_b^2 in [0, 0.25])."""

    params = [["tanh", "erf", "gelu"], [50, 200]]
    param_names = ["activation", "size"]
    timeout = 120

    def setup(self, activation, size):
        self.sigma_w2 = np.linspace(0.25, 4.0, size)[None, :]
        self.sigma_b2 = np.linspace(0.0, 0.25, size)[:, None]
        theory.chi1(activation, 1.0, 0.1)  # builds the activation's tables once per process

    def time_fixed_point(self, activation, size):
        theory.fixed_point(activation, self.sigma_w2, self.sigma_b2)

    def time_chi1(self, activation, size):
        theory.chi1(activation, self.sigma_w2, self.sigma_b2)


class Predict:
    """The mean-field per-layer variance curves of one cell (what every report figure draws)."""

    params = [["relu", "tanh", "gelu"]]
    param_names = ["activation"]

    def setup(self, activation):
        theory.predict("he_normal", activation, 10, 64)

    def time_predict_depth_1000(self, activation):
        theory.predict("xavier_normal", activation, 1000, 256)
