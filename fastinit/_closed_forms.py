"""Gaussian moments of activations in closed form, carried by the records of :mod:`fastinit.activations`.

With ``u = sqrt(q) z``, ``z ~ N(0, 1)``, a record's closed forms give, for ``q > 0``:

* :meth:`moment`: ``E[phi(u)]``, ``E[phi(u)^2]``, ``E[phi'(u)^2]``, ``E[phi(u)^4]``, ``E[phi'(u)^4]``
  (``which`` = ``"phi"``, ``"phi2"``, ``"dphi2"``, ``"phi4"``, ``"dphi4"``);
* :meth:`cross`: ``E[phi(u1) phi(u2)]`` (``"phi"``) or ``E[phi'(u1) phi'(u2)]`` (``"dphi"``) for two
  such pre-activations with correlation ``c``.

Each returns None where no closed form is known; ``analysis`` then integrates by quadrature, so
an activation without closed forms (a user's own, next) is still first-class in the theory.
Kept apart from the jitted code in ``activations.py`` because it is plain NumPy used only by the
theory layer.  ``tests/test_theory.py`` holds every form against quadrature and against formulas
written out independently in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["PiecewiseLinear", "Erf"]


@dataclass(frozen=True)
class PiecewiseLinear:
    """``phi(x) = x`` for ``x > 0`` and ``s x`` below: linear (``s = 1``), relu (0), leaky_relu (its slope).

    Attributes
    ----------
    slope : callable
        ``s`` as a function of the activation's resolved parameter.
    """

    slope: Callable[[float], float]

    def moment(self, which: str, q, param: float):
        """The Gaussian moment ``which`` at variance ``q`` (array), or None; see the module docstring."""
        s = self.slope(param)
        if which == "phi":
            return (1.0 - s) * np.sqrt(q) / math.sqrt(2.0 * math.pi)
        if which == "phi2":
            return 0.5 * (1.0 + s * s) * q
        if which == "dphi2":
            return np.full_like(q, 0.5 * (1.0 + s * s))
        if which == "phi4":
            return 1.5 * (1.0 + s**4) * q * q
        if which == "dphi4":
            return np.full_like(q, 0.5 * (1.0 + s**4))
        return None

    def cross(self, which: str, q, c, param: float):
        """The cross moment ``which`` at variance ``q`` and correlation ``c``, or None."""
        s = self.slope(param)
        # Arc-cosine kernel of degree 1 (Cho & Saul 2009) for relu, and for
        # phi(x) = relu(x) - s relu(-x): E = (1 + s^2) K(c) - 2 s K(-c).
        theta = np.arccos(c)
        if which == "phi":
            def kernel(cc, th):
                return q * (np.sqrt(np.maximum(1.0 - cc * cc, 0.0)) + (math.pi - th) * cc) / (2.0 * math.pi)
            return (1.0 + s * s) * kernel(c, theta) - 2.0 * s * kernel(-c, math.pi - theta)
        if which == "dphi":
            return ((1.0 + s * s) * (math.pi - theta) + 2.0 * s * theta) / (2.0 * math.pi)
        return None


@dataclass(frozen=True)
class Erf:
    """``phi(x) = erf(x)``: Williams (1997), ``E[erf(u) erf(v)] = (2/pi) asin(2 q12 / sqrt((1+2 q11)(1+2 q22)))``."""

    def moment(self, which: str, q, param: float):
        """The Gaussian moment ``which`` at variance ``q`` (array), or None (``"phi4"`` has none here)."""
        if which == "phi":
            return np.zeros_like(q)
        if which == "phi2":
            return 2.0 / math.pi * np.arcsin(2.0 * q / (1.0 + 2.0 * q))
        if which == "dphi2":
            return 4.0 / math.pi / np.sqrt(1.0 + 4.0 * q)
        if which == "dphi4":
            return 16.0 / math.pi**2 / np.sqrt(1.0 + 8.0 * q)
        return None

    def cross(self, which: str, q, c, param: float):
        """The cross moment ``which`` at variance ``q`` and correlation ``c``, or None."""
        if which == "phi":
            return 2.0 / math.pi * np.arcsin(2.0 * q * c / (1.0 + 2.0 * q))
        if which == "dphi":
            return 4.0 / math.pi / np.sqrt((1.0 + 2.0 * q) ** 2 - 4.0 * q * q * c * c)
        return None
