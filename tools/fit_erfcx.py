"""Chebyshev coefficients of the scaled complementary error function, for float32 gelu.

``fastinit.activations`` evaluates ``erfcx(t) = exp(t^2) erfc(t)`` for ``t >= 0`` without a libm
call (so that LLVM vectorises gelu's float32 loop) as ``h(u) / (1 + 2 t)``, where
``u = (t - K) / (t + K)`` maps ``[0, inf)`` onto ``[-1, 1)`` and ``h(u) = (1 + 2 t) erfcx(t)``
is smooth and flat there (Shepherd & Laframboise, Math. Comp. 36 (1981) 249-253, use this
transformation).  ``h`` is interpolated at the ``N + 1`` Chebyshev points of the first kind in
40-digit arithmetic (mpmath), which gives its Chebyshev coefficients; float64 Clenshaw
evaluation then reproduces erfcx to 4.4e-16 relative on [0, 12] (K = 2.5, N = 24).

Run ``python tools/fit_erfcx.py`` (needs mpmath) to print the coefficients and that error.
"""

from __future__ import annotations

import mpmath
import numpy as np

K = 2.5
N = 24


def h(t):
    """``(1 + 2 t) erfcx(t)`` to 40 digits."""
    t = mpmath.mpf(t)
    return (1 + 2 * t) * mpmath.erfc(t) * mpmath.exp(t * t)


def coefficients(k: float = K, n: int = N) -> list[float]:
    """Chebyshev coefficients ``c_0 .. c_n`` of ``h`` in ``u`` (``c_0`` already halved)."""
    mpmath.mp.dps = 40
    nodes = [mpmath.cos(mpmath.pi * (j + mpmath.mpf(0.5)) / (n + 1)) for j in range(n + 1)]
    values = [h(k * (1 + u) / (1 - u)) for u in nodes]
    c = [2 * sum(v * mpmath.cos(mpmath.pi * m * (j + mpmath.mpf(0.5)) / (n + 1)) for j, v in enumerate(values))
         / (n + 1) for m in range(n + 1)]
    c[0] /= 2
    return [float(value) for value in c]


def clenshaw(c, u):
    """``sum_m c_m T_m(u)`` in float64."""
    b1, b2 = np.zeros_like(u), np.zeros_like(u)
    for value in c[:0:-1]:
        b1, b2 = 2 * u * b1 - b2 + value, b1
    return u * b1 - b2 + c[0]


if __name__ == "__main__":
    c = coefficients()
    for m, value in enumerate(c):
        print(f"_ERFCX_C{m} = {value!r}")
    t = np.linspace(0.0, 12.0, 2401)
    approx = clenshaw(c, (t - K) / (t + K)) / (1 + 2 * t)
    exact = np.array([float(mpmath.erfc(v) * mpmath.exp(v * v)) for v in map(mpmath.mpf, t)])  # t^2 exactly
    print(f"max relative error on [0, 12]: {np.max(np.abs(approx / exact - 1)):.2e}")
