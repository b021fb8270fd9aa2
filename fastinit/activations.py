"""The activation registry: one record per nonlinearity, and the kernel dispatch derived from it.

Each :class:`Activation` record in :data:`ACTIVATIONS` carries everything about one activation:

* its jitted scalar ``kernel(x, param) -> (phi(x), phi'(x))`` (float64 in and out, NaN in gives
  NaN out), and optionally a faster variant for float32 arrays and a ``phi'``-from-output kernel;
* its vectorised NumPy twin (:meth:`Activation.phi_np`, :meth:`Activation.dphi_np`), the
  reference the tests hold the kernel against;
* its traits (homogeneous, bounded, dead zone, smooth), its parameter (name, default, rule),
  PyTorch's gain where PyTorch has one, and its Gaussian moments in closed form where they exist
  (:mod:`fastinit._closed_forms`; the theory layer integrates by quadrature otherwise).

Kernels are specialised by an **integer code**, not by passing Python functions.  A numba
kernel that receives a function as an argument is recompiled for every function passed, and
those specialisations do not survive in the on-disk cache (``cache=True``); an integer is an
ordinary argument, so one compiled, cached kernel serves every activation and switching
activation costs no compilation.

The jitted entry points :func:`phi_and_dphi` (with :func:`phi`, :func:`dphi`), :func:`apply`
and :func:`slope_from_output` are one branch per record, generated from the registry into the
end of this file by :mod:`fastinit._dispatch_source` (which says why generated, and why here);
a test fails while they disagree, so adding an activation is adding its record and running
``python -m fastinit._dispatch_source``.  :func:`apply` branches on ``code`` once per array (not
per element): records with a branch-free variant (linear, relu, leaky_relu) and float32 variants
(tanh) get a loop of their own, which LLVM vectorises; the others share a loop through
:func:`phi_and_dphi`, whose branch on the code costs little next to their exp or erf.

Numerical contract: no overflow at large ``|x|``, the mathematical limits at ``+-inf``,
NaN in gives NaN out, and PyTorch's subgradients at kinks (``relu'(0) = 0``,
``leaky_relu'(0) = slope``, ``elu'(0) = alpha``, ``selu'(0) = lambda * alpha``).
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from fastinit import _closed_forms, _registered
from fastinit._float_bits import power_of_two
from fastinit._jit import jit
from fastinit._registered import call_registered
from fastinit._validation import check_name, check_no_extra, check_real

__all__ = [
    "ACTIVATIONS", "ALIASES", "USER_ACTIVATIONS", "Activation", "apply", "dphi", "get_activation", "phi",
    "phi_and_dphi", "register", "slope_from_output", "LINEAR", "RELU", "LEAKY_RELU", "TANH", "SIGMOID", "GELU",
    "SILU", "ELU", "SELU", "SOFTPLUS", "ERF", "SELU_LAMBDA", "SELU_ALPHA",
]

LINEAR, RELU, LEAKY_RELU, TANH, SIGMOID, GELU, SILU, ELU, SELU, SOFTPLUS, ERF = range(11)
# Every activation added by register() shares this code: its kernel's address rides in ``param``.
REGISTERED = 100

SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
_SELU_LAMBDA_ALPHA = SELU_LAMBDA * SELU_ALPHA
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
# Beyond |x| = 40 every Gaussian factor exp(-x**2/2) underflows to 0 anyway; clipping there
# keeps x*x from overflowing (a NumPy warning) for huge finite x.
_GAUSS_CLIP = 40.0


# ----------------------------------------------------------------------------- jitted scalars
# One kernel(x, param) -> (phi, phi') per activation, float64 in and out, each the source of
# its branch in the generated dispatch (which copies the body: parameters must be (x, param),
# helpers it calls are calls there too, and each costs compile time).  Each starts with the
# same NaN test, so it stands alone; the dispatch makes that test once for all of them.
@jit
def _linear(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    return x, 1.0


@jit
def _relu(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    if x > 0.0:
        return x, 1.0
    return 0.0, 0.0


@jit
def _leaky_relu(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    if x > 0.0:
        return x, 1.0
    # slope 0 at x = -inf would give 0 * inf = NaN; the limit is 0.
    return (param * x if param != 0.0 else 0.0), param


# Branch-free variants of the piecewise-linear kernels for apply's loops: selects that LLVM
# vectorises, NaN handled inside them (linear passes x's own NaN through).  One select per
# statement: a conditional nested in another stays a branch (measured: relu on random signs,
# 1.10 against 0.14 ns per float32 element on a Zen 3 EPYC, the same bits).
@jit
def _linear_vector(x, param):
    return x, (1.0 if x == x else math.nan)


@jit
def _relu_vector(x, param):
    positive = x > 0.0
    zero = 0.0 if x == x else math.nan
    return (x if positive else zero), (1.0 if positive else zero)


@jit
def _leaky_relu_vector(x, param):
    positive = x > 0.0
    known = x == x
    scaled = (param * x) if param != 0.0 else 0.0  # param is the loop's constant: LLVM hoists this test
    negative = scaled if known else math.nan
    slope = param if known else math.nan
    return (x if positive else negative), (1.0 if positive else slope)


@jit
def _tanh(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    # sech^2 from exp(-2|x|): never overflows and, unlike 1 - tanh^2, keeps its
    # relative accuracy in the tails.
    e = math.exp(-2.0 * abs(x))
    return math.tanh(x), 4.0 * e / ((1.0 + e) * (1.0 + e))


@jit
def _sigmoid(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    # In (0, 1]: the only exp sigmoid, silu and softplus need, never overflowing; the three
    # start alike, so the dispatch computes it once for them.
    e = math.exp(-abs(x))
    s = 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
    return s, e / ((1.0 + e) * (1.0 + e))


@jit
def _softplus(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    e = math.exp(-abs(x))
    s = 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
    return max(x, 0.0) + math.log1p(e), s


@jit
def _silu(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    e = math.exp(-abs(x))
    s = 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
    if math.isinf(x):  # x * s and x * (1 - s) are inf * 0 there; use the limits
        return (x, 1.0) if x > 0.0 else (0.0, 0.0)
    one_minus_s = e / (1.0 + e) if x >= 0.0 else 1.0 / (1.0 + e)
    return x * s, s * (1.0 + x * one_minus_s)


@jit
def _gelu(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    if math.isinf(x):
        return (x, 1.0) if x > 0.0 else (0.0, 0.0)
    cdf = 0.5 * math.erfc(-x * _SQRT_HALF)  # erfc, not 1 + erf: accurate for x << 0
    return x * cdf, cdf + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)


@jit
def _elu(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    if x > 0.0:
        return x, 1.0
    return param * math.expm1(x), param * math.exp(x)


@jit
def _selu(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    if x > 0.0:
        return SELU_LAMBDA * x, SELU_LAMBDA
    return _SELU_LAMBDA_ALPHA * math.expm1(x), _SELU_LAMBDA_ALPHA * math.exp(x)


@jit
def _erf(x, param):
    if math.isnan(x):
        return math.nan, math.nan
    return math.erf(x), _TWO_OVER_SQRT_PI * math.exp(-x * x)


def _special():
    """``scipy.special``, imported on first use: only the NumPy twins need it, and importing it
    costs ~0.3 s of every ``import fastinit``."""
    from scipy import special

    return special


# Branch-free float32 tanh (float64 arithmetic, no libm call, so LLVM vectorises it).
# exp(y) for y = -2|x| in [-120, 0]: y = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite split
# of ln2, fdlibm's constants: k * _LN2_HI is exact), exp(r) by its Taylor series to r^12
# (truncation < 1e-15 relative), times 2^k.  Beyond |x| = 60, tanh is 1 and
# sech^2 = 4 exp(-120) underflows float32, so |x| is clamped there.  Computing in float64
# and rounding once gives the correctly rounded float32 values of the libm formulas (no
# difference found on 700,000 samples from 1e-6 to 100); NumPy and PyTorch evaluate
# float32 tanh in float32 arithmetic, to about 1 ulp.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.0 / math.log(2.0)
_TANH_CLAMP = 60.0
# Below this |x|, tanh(x) = x - x^3 / 3 to float64 accuracy, and (1 - e) / (1 + e) would
# lose digits to cancellation.
_TANH_SERIES_BELOW = 1e-4


@jit(inline=True)
def _exp_nonpositive(y):
    """``exp(y)`` for ``-120 <= y <= 0`` to ~1e-15 relative, branch-free."""
    # np.floor stays a float (math.floor is an int64, and int64 <-> float64 has no AVX2 instruction).
    k = np.floor(y * _INV_LN2 + 0.5)
    r = (y - k * _LN2_HI) - k * _LN2_LO
    # The Taylor polynomial by Estrin's scheme: a dependency chain of 4 multiply-adds where Horner's has 12
    # (measured in apply on float32, Zen 3 EPYC: tanh 6.5 -> 4.6, sigmoid 4.7 -> 3.5, silu 5.1 -> 3.8 ns per
    # element).  Against Horner's, checked on every float32 input up to each clamp: sigmoid, silu and gelu
    # give the same bits; tanh differs on 20 of 2.2e9 inputs (all |x| < 0.0017, sech^2 by one ulp, each
    # scheme the correctly rounded one on half of them).
    r2 = r * r
    r4 = r2 * r2
    q0 = (1.0 + r) + (1.0 / 2 + r * (1.0 / 6)) * r2
    q1 = (1.0 / 24 + r * (1.0 / 120)) + (1.0 / 720 + r * (1.0 / 5040)) * r2
    q2 = (1.0 / 40320 + r * (1.0 / 362880)) + (1.0 / 3628800 + r * (1.0 / 39916800)) * r2
    p = (q0 + q1 * r4) + (q2 + (1.0 / 479001600) * r4) * (r4 * r4)
    # 2^k for -174 <= k <= 0, exactly, from its bits: float64 -> int32 and the bit cast are a few vector
    # instructions, where a libm ldexp would keep the loop scalar.
    return p * power_of_two(np.int32(k))


@jit
def _tanh_float32(x, param):
    """``(tanh(x), sech(x)^2)`` for float32 arrays, accurate far below float32 rounding."""
    a = abs(x)
    a = a if a < _TANH_CLAMP else _TANH_CLAMP  # also maps NaN to the clamp: fixed below
    e = _exp_nonpositive(-2.0 * a)
    inv = 1.0 / (1.0 + e)  # the one division: a vector divide costs as much as ten multiplies
    t = (1.0 - e) * inv if a >= _TANH_SERIES_BELOW else a - a * a * a * (1.0 / 3.0)
    slope = 4.0 * e * inv * inv
    # One return, so the dispatch copies this body into apply's loop instead of inlining a
    # call (each inlined call costs ~60 ms of compile time).
    known = x == x
    signed = -t if x < 0.0 else t  # one select per statement, as the branch-free variants above
    return (signed if known else math.nan), (slope if known else math.nan)


# sigmoid and silu on float32 arrays, the same way: exp(-|x|) by _exp_nonpositive with |x|
# clamped at _LOGISTIC_CLAMP, where exp(-|x|) = 7.7e-53 is far below float32's smallest
# subnormal (1.4e-45), so every float32 value and slope beyond it is its limit.
_LOGISTIC_CLAMP = 120.0


@jit
def _sigmoid_float32(x, param):
    """``(sigmoid(x), sigmoid'(x))`` for float32 arrays, accurate far below float32 rounding."""
    a = abs(x)
    a = a if a < _LOGISTIC_CLAMP else _LOGISTIC_CLAMP  # also maps NaN to the clamp: fixed below
    e = _exp_nonpositive(-a)
    inv = 1.0 / (1.0 + e)
    s = inv if x >= 0.0 else e * inv
    known = x == x
    return (s if known else math.nan), (e * inv * inv if known else math.nan)


@jit
def _silu_float32(x, param):
    """``(silu(x), silu'(x))`` for float32 arrays, accurate far below float32 rounding."""
    a = abs(x)
    a = a if a < _LOGISTIC_CLAMP else _LOGISTIC_CLAMP
    e = _exp_nonpositive(-a)
    inv = 1.0 / (1.0 + e)
    positive = x >= 0.0
    s = inv if positive else e * inv
    one_minus_s = e * inv if positive else inv
    # Clamped, x s and x (1 - s) are finite at +-inf and give the limits (x, 1) and (0, 0).
    clamped = a if positive else -a
    known = x == x
    limit = x if positive else 0.0  # one select per statement, as the branch-free variants above
    finite = x * s if a < _LOGISTIC_CLAMP else limit
    value = finite if known else math.nan
    return value, (s * (1.0 + clamped * one_minus_s) if known else math.nan)


# gelu on float32 arrays without libm's erfc: Phi(-a) = exp(-a^2 / 2) erfcx(a / sqrt 2) / 2 for
# a >= 0, with erfcx(t) = exp(t^2) erfc(t) = h(u) / (1 + 2 t), u = (t - 2.5) / (t + 2.5), and h a
# degree-24 Chebyshev series (tools/fit_erfcx.py computes its coefficients in 40-digit
# arithmetic; float64 evaluation is within 4.4e-16 of erfcx on [0, 12]).  For a float32 input a^2
# is exact in float64, so exp(-a^2 / 2) has no input rounding.  Beyond |x| = 15, x Phi(x) and
# the slope are below half float32's smallest subnormal: |x| is clamped there.
_GELU_CLAMP = 15.0
_ERFCX_K = 2.5


@jit(inline=True)
def _erfcx_nonnegative(t):
    """``exp(t^2) erfc(t)`` for ``0 <= t <= 12`` to ~4e-16 relative, branch-free (unrolled Clenshaw)."""
    u = (t - _ERFCX_K) / (t + _ERFCX_K)
    u2 = 2.0 * u
    b1 = -1.7240839798497777e-16
    b2 = 0.0
    b1, b2 = u2 * b1 - b2 + 7.941093024419678e-16, b1
    b1, b2 = u2 * b1 - b2 + 4.9737920971021174e-15, b1
    b1, b2 = u2 * b1 - b2 + -2.5175176410512874e-16, b1
    b1, b2 = u2 * b1 - b2 + -8.474643096318515e-14, b1
    b1, b2 = u2 * b1 - b2 + -1.9892258296519598e-13, b1
    b1, b2 = u2 * b1 - b2 + 1.0596357252860874e-12, b1
    b1, b2 = u2 * b1 - b2 + 5.937925122148992e-12, b1
    b1, b2 = u2 * b1 - b2 + -8.268090806340246e-12, b1
    b1, b2 = u2 * b1 - b2 + -1.318775036971946e-10, b1
    b1, b2 = u2 * b1 - b2 + -4.588693371596164e-11, b1
    b1, b2 = u2 * b1 - b2 + 2.7374094237187276e-09, b1
    b1, b2 = u2 * b1 - b2 + 4.092594124521011e-09, b1
    b1, b2 = u2 * b1 - b2 + -6.04565732133604e-08, b1
    b1, b2 = u2 * b1 - b2 + -1.2483958211750847e-07, b1
    b1, b2 = u2 * b1 - b2 + 1.5839410905182581e-06, b1
    b1, b2 = u2 * b1 - b2 + 2.371428558502003e-06, b1
    b1, b2 = u2 * b1 - b2 + -5.106088378409827e-05, b1
    b1, b2 = u2 * b1 - b2 + 5.2927052289800504e-05, b1
    b1, b2 = u2 * b1 - b2 + 0.0016421555334706595, b1
    b1, b2 = u2 * b1 - b2 + -0.012607425531069104, b1
    b1, b2 = u2 * b1 - b2 + 0.04838422197495771, b1
    b1, b2 = u2 * b1 - b2 + -0.10037710257743795, b1
    b1, b2 = u2 * b1 - b2 + 0.01421274082732332, b1
    return (u * b1 - b2 + 1.1771189339755783) / (1.0 + 2.0 * t)


@jit
def _gelu_float32(x, param):
    """``(gelu(x), gelu'(x))`` for float32 arrays, accurate far below float32 rounding."""
    a = abs(x)
    a = a if a < _GELU_CLAMP else _GELU_CLAMP  # also maps NaN to the clamp: fixed below
    gauss = _exp_nonpositive(-0.5 * a * a)
    tail = 0.5 * gauss * _erfcx_nonnegative(a * _SQRT_HALF)  # Phi(-a)
    positive = x >= 0.0
    cdf = 1.0 - tail if positive else tail
    signed = a if positive else -a
    # x Phi(x) from x itself where it is finite and from the clamp below -15 (-0.0, as libm's
    # formula rounds there); -inf gives the limits (0, 0), as the float64 kernel does.
    known = x == x
    above_minus_inf = x > -math.inf
    negative = signed * cdf if above_minus_inf else 0.0  # one select per statement, as the branch-free variants
    finite = x * cdf if positive else negative
    value = finite if known else math.nan
    finite_slope = cdf + signed * _INV_SQRT_2PI * gauss if above_minus_inf else 0.0
    slope = finite_slope if known else math.nan
    return value, slope


# phi' read off v = c phi(z), c > 0, for the activations whose slope depends only on the
# sign of z and phi(z) > 0 exactly when z > 0.  At the kink z = 0 it is the left slope,
# as in the kernels; NaN stays NaN.
@jit
def _linear_slope_from_output(v, param):
    return 1.0 if v == v else math.nan


@jit
def _relu_slope_from_output(v, param):
    if v > 0.0:
        return 1.0
    if v <= 0.0:
        return 0.0
    return math.nan


@jit
def _leaky_relu_slope_from_output(v, param):
    if v > 0.0:
        return 1.0
    if v <= 0.0:
        return param
    return math.nan


# ----------------------------------------------------------------------------- NumPy twins
# Each twin is (phi, dphi) over a float64 array without NaN (the Activation methods mask NaN
# around them).  Branches are evaluated on clamped inputs so np.where never sees an overflow.
def _gauss(x):
    return np.exp(-0.5 * np.square(np.clip(x, -_GAUSS_CLIP, _GAUSS_CLIP)))


def _with_limits(x, formula):
    # gelu and silu give inf * 0 at +-inf; their limits there are relu's value and slope.
    infinite = np.isinf(x)
    value, slope = formula(np.where(infinite, 0.0, x))
    return (np.where(infinite, np.maximum(x, 0.0), value),
            np.where(infinite, (x > 0.0).astype(np.float64), slope))


def _elu_np(x, alpha):
    neg = np.minimum(x, 0.0)
    return (np.where(x > 0.0, x, alpha * np.expm1(neg)),
            np.where(x > 0.0, 1.0, alpha * np.exp(neg)))


def _leaky_np(x, slope):
    neg = slope * np.minimum(x, 0.0) if slope != 0.0 else np.zeros_like(x)
    return np.where(x > 0.0, x, neg), np.where(x > 0.0, 1.0, slope)


def _tanh_np(x, _):
    e = np.exp(-2.0 * np.abs(x))
    return np.tanh(x), 4.0 * e / (1.0 + e) ** 2


# ----------------------------------------------------------------------------- the record
def _always(param: float) -> bool:
    return True


@dataclass(frozen=True)
class Activation:
    """One registry entry: everything about one activation.

    Attributes
    ----------
    name : str
        Canonical name, the key in :data:`ACTIVATIONS`.
    code : int
        Integer passed to the jitted kernels.
    param_name : str or None
        Name of the tunable parameter (``"slope"``, ``"alpha"``) or None.
    default_param : float
        Value used when the parameter is not given (0.0 when there is none).
    homogeneous : bool
        Positively homogeneous, ``phi(c x) = c phi(x)`` for ``c > 0``.
    bounded : bool
        ``phi`` is bounded on the real line.
    has_dead_zone : bool
        ``phi'`` is exactly 0 on a half-line (units can die).
    torch_name : str or None
        Name accepted by ``torch.nn.init.calculate_gain``, None where PyTorch has no gain.
    description : str
        One line with the formula.
    smooth : bool
        ``phi`` is infinitely differentiable; False means a kink at 0, where Gaussian
        quadrature should split the integral and finite differences are meaningless.
    kernel : numba dispatcher
        Jitted ``(x, param) -> (phi(x), phi'(x))``, float64, NaN in gives NaN out; inlined into
        the dispatch of :func:`phi_and_dphi` and :func:`apply`.
    twin : callable
        NumPy ``(x, param) -> (phi, phi')`` over a float64 array without NaN.
    param_rule : mapping
        Keyword arguments of :func:`fastinit._validation.check_real` for the parameter.
    torch_gain : callable or None
        ``param -> torch.nn.init.calculate_gain(torch_name, param)``; None where PyTorch has
        none (:func:`fastinit.gain` then uses the second-moment preserving gain).
    closed_forms : object or None
        Gaussian moments in closed form (:mod:`fastinit._closed_forms`), None where there are none.
    kernel_float32 : numba dispatcher or None
        A faster variant of ``kernel`` used by :func:`apply` on float32 arrays; its values,
        rounded to float32, agree with ``kernel``'s far below float32 rounding.
    output_slope : numba dispatcher or None
        Jitted ``(v, param) -> phi'(z)`` from ``v = c phi(z)``, ``c > 0``, for
        :func:`slope_from_output`; None where ``phi'`` cannot be read off the output.
    output_slope_if : callable
        ``param -> bool``: for which parameters ``output_slope`` is valid.
    kernel_vector : numba dispatcher or None
        A branch-free variant of ``kernel`` (a few selects): :func:`apply` gives it a loop of
        its own, which LLVM vectorises; equal to ``kernel`` bit for bit but for NaN payloads.
        Records without one share a loop through :func:`phi_and_dphi`, whose branch on the
        code costs little next to their exp or erf (and a loop each would add compile time).
    module : str or None
        For an activation added by :func:`register`, the module that registered it (its
        functions' ``__module__``); None for the built-ins.
    fingerprint : str or None
        For a registered activation, a hash of its functions' source and traits (part of a
        sweep cell's identity); None for the built-ins.
    compiled : object or None
        For a registered activation, its compiled C kernel (kept alive with the record).
    """

    name: str
    code: int
    param_name: str | None
    default_param: float
    homogeneous: bool
    bounded: bool
    has_dead_zone: bool
    torch_name: str | None
    description: str
    smooth: bool
    # Functions and mappings are neither compared nor hashed: an entry is known by its traits.
    kernel: Callable = field(default=None, compare=False, repr=False)
    twin: Callable = field(default=None, compare=False, repr=False)
    param_rule: Mapping = field(default_factory=dict, compare=False, repr=False)
    torch_gain: Callable[[float], float] | None = field(default=None, compare=False, repr=False)
    closed_forms: object | None = field(default=None, compare=False, repr=False)
    kernel_float32: Callable | None = field(default=None, compare=False, repr=False)
    output_slope: Callable | None = field(default=None, compare=False, repr=False)
    output_slope_if: Callable[[float], bool] = field(default=_always, compare=False, repr=False)
    kernel_vector: Callable | None = field(default=None, compare=False, repr=False)
    module: str | None = None
    fingerprint: str | None = None
    compiled: object | None = field(default=None, compare=False, repr=False)

    @property
    def spelling(self) -> str:
        """The name that finds this record in any process: ``module:name`` when registered."""
        return f"{self.module}:{self.name}" if self.module else self.name

    def __reduce__(self):
        # Pickled by name (e.g. into a process pool): jitted kernels and lambdas do not
        # pickle; the receiving process has the same built-ins and imports the module that
        # registers a registered one.
        return get_activation, (self.spelling,)

    def slope_from_output(self, param: float) -> bool:
        """Whether ``phi'(z)`` can be read off ``c phi(z)`` for any ``c > 0``, so that a
        backward pass need not store ``phi'``: for the piecewise-linear activations,
        whose slope depends only on the sign of ``z``, and ``phi(z) > 0`` exactly when
        ``z > 0`` (linear, relu, and leaky_relu with slope >= 0).  See
        :func:`slope_from_output`.

        Parameters
        ----------
        param : float
            The activation's resolved parameter.

        Returns
        -------
        bool
        """
        return self.output_slope is not None and bool(self.output_slope_if(param))

    def resolve_param(self, **params) -> float:
        """Validate the activation's parameter and return it (or the default) as a float.

        Parameters
        ----------
        **params
            At most the activation's own parameter, e.g. ``slope=0.2`` for ``leaky_relu``.

        Returns
        -------
        float
            The value to pass to the kernels.

        Raises
        ------
        TypeError
            For an unknown keyword or a non-real value.
        ValueError
            For a value out of range (non-finite slope, ``alpha <= 0``).
        """
        allowed = [self.param_name] if self.param_name else []
        value = params.pop(self.param_name, None) if self.param_name else None
        check_no_extra(f"activation {self.name!r}", params, allowed)
        if value is None:
            return self.default_param
        return check_real(self.param_name, value, **self.param_rule)

    def _evaluate(self, x, param, which: int) -> np.ndarray:
        if param is not None and self.param_name:
            param = self.resolve_param(**{self.param_name: param})
        else:
            param = self.default_param
        x = np.asarray(x, dtype=np.float64)
        nan = np.isnan(x)
        out = self.twin(np.where(nan, 0.0, x), param)[which]
        return np.where(nan, np.nan, out)

    def phi_np(self, x, param: float | None = None) -> np.ndarray:
        """Vectorised NumPy ``phi(x)``, the reference twin of :func:`phi`.

        Parameters
        ----------
        x : array_like
            Input, converted to float64.
        param : float, optional
            The activation's parameter (validated); default :attr:`default_param`.
            Ignored by activations without a parameter.

        Returns
        -------
        numpy.ndarray
            float64 array of ``x``'s shape.
        """
        return self._evaluate(x, param, 0)

    def dphi_np(self, x, param: float | None = None) -> np.ndarray:
        """Vectorised NumPy ``phi'(x)``, the reference twin of :func:`dphi`.

        Parameters and return value as for :meth:`phi_np`.
        """
        return self._evaluate(x, param, 1)


def _entry(name, code, description, kernel, twin, *, param_name=None, default_param=0.0, param_rule=None,
           homogeneous=False, bounded=False, has_dead_zone=False, smooth=True, torch_name=None, torch_gain=None,
           closed_forms=None, kernel_float32=None, output_slope=None, output_slope_if=_always, kernel_vector=None):
    return Activation(name, code, param_name, default_param, homogeneous, bounded, has_dead_zone, torch_name,
                      description, smooth, kernel=kernel, twin=twin, param_rule=dict(param_rule or {}),
                      torch_gain=torch_gain, closed_forms=closed_forms, kernel_float32=kernel_float32,
                      output_slope=output_slope, output_slope_if=output_slope_if,
                      kernel_vector=kernel_vector)


# ----------------------------------------------------------------------------- the registry
ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    _entry("linear", LINEAR, "phi(x) = x", _linear, lambda x, _: (x.copy(), np.ones_like(x)),
           homogeneous=True, kernel_vector=_linear_vector, torch_name="linear", torch_gain=lambda _: 1.0,
           closed_forms=_closed_forms.PiecewiseLinear(lambda _: 1.0), output_slope=_linear_slope_from_output),
    _entry("relu", RELU, "phi(x) = max(x, 0)", _relu,
           lambda x, _: (np.maximum(x, 0.0), (x > 0.0).astype(np.float64)),
           homogeneous=True, has_dead_zone=True, smooth=False, kernel_vector=_relu_vector, torch_name="relu",
           torch_gain=lambda _: math.sqrt(2.0),
           closed_forms=_closed_forms.PiecewiseLinear(lambda _: 0.0), output_slope=_relu_slope_from_output),
    _entry("leaky_relu", LEAKY_RELU, "phi(x) = x if x > 0 else slope * x", _leaky_relu, _leaky_np,
           param_name="slope", default_param=0.01, homogeneous=True, smooth=False,
           kernel_vector=_leaky_relu_vector, torch_name="leaky_relu",
           torch_gain=lambda slope: math.sqrt(2.0 / (1.0 + slope**2)),
           closed_forms=_closed_forms.PiecewiseLinear(lambda slope: slope), output_slope=_leaky_relu_slope_from_output,
           # A negative slope makes phi(z) > 0 for z < 0 too: the sign of the output no
           # longer tells the side of the kink.
           output_slope_if=lambda slope: slope >= 0.0),
    _entry("tanh", TANH, "phi(x) = tanh(x)", _tanh, _tanh_np, bounded=True, torch_name="tanh",
           torch_gain=lambda _: 5.0 / 3.0, kernel_float32=_tanh_float32),
    _entry("sigmoid", SIGMOID, "phi(x) = 1 / (1 + exp(-x))", _sigmoid,
           lambda x, _: (_special().expit(x), _special().expit(x) * _special().expit(-x)),
           bounded=True, torch_name="sigmoid", torch_gain=lambda _: 1.0, kernel_float32=_sigmoid_float32),
    _entry("gelu", GELU, "phi(x) = x * Phi(x), Phi the standard normal CDF (exact erf form)", _gelu,
           lambda x, _: _with_limits(x, lambda v: (
               v * _special().ndtr(v), _special().ndtr(v) + v * _INV_SQRT_2PI * _gauss(v))),
           kernel_float32=_gelu_float32),
    _entry("silu", SILU, "phi(x) = x * sigmoid(x) (also called swish)", _silu,
           lambda x, _: _with_limits(x, lambda v: (
               v * _special().expit(v), _special().expit(v) * (1.0 + v * _special().expit(-v)))),
           kernel_float32=_silu_float32),
    _entry("elu", ELU, "phi(x) = x if x > 0 else alpha * (exp(x) - 1)", _elu, _elu_np,
           param_name="alpha", default_param=1.0, param_rule={"minimum": 0.0, "exclusive_minimum": True},
           smooth=False),
    _entry("selu", SELU, f"phi(x) = {SELU_LAMBDA} * elu(x, alpha={SELU_ALPHA})", _selu,
           lambda x, _: tuple(SELU_LAMBDA * part for part in _elu_np(x, SELU_ALPHA)),
           smooth=False, torch_name="selu", torch_gain=lambda _: 3.0 / 4.0),
    _entry("softplus", SOFTPLUS, "phi(x) = log(1 + exp(x))", _softplus,
           lambda x, _: (np.logaddexp(0.0, x), _special().expit(x))),
    _entry("erf", ERF, "phi(x) = erf(x)", _erf,
           lambda x, _: (_special().erf(x), _TWO_OVER_SQRT_PI * _gauss(x) ** 2),
           bounded=True, closed_forms=_closed_forms.Erf()),
)}

ALIASES: dict[str, str] = {"swish": "silu"}
# Activations added by register(), by name: get_activation finds them beside the built-ins.
USER_ACTIVATIONS: dict[str, Activation] = {}


def get_activation(name: str) -> Activation:
    """Look up an activation by name or alias, or as ``module:name`` (importing ``module``).

    Parameters
    ----------
    name : str
        A key of :data:`ACTIVATIONS` or :data:`ALIASES`, or ``module:name`` for an activation
        that importing ``module`` registers (:func:`register`): the spelling that works in
        the sweep's TOML and flags, and in any worker process.

    Returns
    -------
    Activation
        The registry entry.

    Raises
    ------
    ValueError
        For an unknown name (the message suggests the closest one), a module that cannot be
        imported, or one that does not register ``name``.
    """
    if isinstance(name, str) and ":" in name:
        return import_registered("activation", name, USER_ACTIVATIONS, "fastinit.activations.register")
    name = check_name("activation", name, [*ACTIVATIONS, *ALIASES, *USER_ACTIVATIONS])
    return USER_ACTIVATIONS.get(name) or ACTIVATIONS[ALIASES.get(name, name)]


def import_registered(kind: str, spelling: str, registry: Mapping, register_call: str):
    """The entry ``module:name`` of ``registry``, importing ``module`` (which registers it).

    Shared by the activation and initializer registries.

    Parameters
    ----------
    kind : str
        ``"activation"`` or ``"initializer"``, for messages.
    spelling : str
        ``module:name``.
    registry : mapping
        Name -> registered entry (each with a ``module`` attribute).
    register_call : str
        The function the module should call, for messages.

    Returns
    -------
    object
        The entry.

    Raises
    ------
    ValueError
        If the spelling is malformed, the module cannot be imported, or it does not register
        ``name``.
    """
    module_name, _, name = (part.strip() for part in spelling.rpartition(":"))
    if not module_name or not name:
        raise ValueError(f"{kind} {spelling!r} must be 'name' or 'module:name', e.g. 'my_{kind}s:mine'")
    try:
        importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{kind} {spelling!r}: cannot import module {module_name!r} ({error}); it must be "
                         f"importable (on sys.path, e.g. in the working directory) by every process that "
                         f"runs it") from None
    entry = registry.get(name)
    if entry is None or entry.module != module_name:
        theirs = sorted(e.name for e in registry.values() if e.module == module_name)
        raise ValueError(f"{kind} {spelling!r}: module {module_name!r} does not register an {kind} "
                         f"{name!r} (it registers {', '.join(map(repr, theirs)) or 'none'}); call "
                         f"{register_call}({name!r}, ...) in it")
    return entry


def _evaluate_each(phi_array, dphi_array, x):
    # Overflow inside the user's functions is their value (inf), as in the kernels: no warning.
    with np.errstate(all="ignore"):
        return phi_array(x).astype(np.float64), dphi_array(x).astype(np.float64)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def register(name: str, phi, dphi, *, homogeneous: bool = False, bounded: bool = False) -> Activation:
    """Add your own activation: after this, ``name`` works wherever a built-in does.

    ``phi`` and ``phi'`` are compiled once, here, with numba, into one C kernel that the
    cached layer kernels call (no recompilation of ``propagate`` or ``train``).  The theory
    layer integrates the same compiled functions by quadrature; :func:`fastinit.gain` gives
    the second-moment preserving gain.  NaN in gives NaN out without calling your functions
    (the kernels' rule); inf, overflow and NaN out of them are recorded as for the built-ins.

    For the sweep's flags and TOML, and for worker processes, register at the import of a
    module and name the activation ``module:name`` (``--activation my_activations:mish``):
    each process imports ``module`` and finds it.

    Parameters
    ----------
    name : str
        A new name (letters, digits, underscores), not a built-in, alias or another
        registered activation.  Registering the same functions again under their name
        (a module imported twice) returns the existing record.
    phi, dphi : callable
        Plain Python functions of one float returning a float, written with :mod:`math`
        (``math.exp``, ``math.tanh``, ``math.erf`` ...) and float arithmetic: ``phi(x)`` and
        its derivative.
    homogeneous : bool, optional
        You declare ``phi(c x) = c phi(x)`` for ``c > 0`` (relu-like): propagate then keeps an
        exact log scale instead of letting the signal under- or overflow, and the theory uses
        the homogeneous closed forms.  Declaring it falsely gives wrong numbers.
    bounded : bool, optional
        ``phi`` is bounded: saturated units (``|phi'|`` tiny) are counted.

    Returns
    -------
    Activation
        The new record, also in :data:`USER_ACTIVATIONS`.

    Raises
    ------
    TypeError
        If ``phi`` or ``dphi`` is not a Python function of one argument.
    ValueError
        For a bad or taken name, or a function numba cannot compile (the message names it
        and numba's reason).

    Examples
    --------
    >>> import math
    >>> from fastinit.activations import register
    >>> def mish(x):
    ...     return x * math.tanh(math.log1p(math.exp(x)))
    >>> def mish_slope(x):
    ...     t = math.tanh(math.log1p(math.exp(x)))
    ...     return t + x * (1.0 - t * t) / (1.0 + math.exp(-x))
    >>> register("mish", mish, mish_slope)  # doctest: +SKIP
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"activation name must be letters, digits and underscores (not starting with a digit), "
                         f"got {name!r}")
    owner = f"activation {name!r}"
    homogeneous, bounded = bool(homogeneous), bool(bounded)
    _registered.check_scalar_function(owner, "phi", phi)
    _registered.check_scalar_function(owner, "dphi", dphi)
    fingerprint = _registered.fingerprint(phi, dphi, traits=(homogeneous, bounded))
    taken = USER_ACTIVATIONS.get(name) or ACTIVATIONS.get(ALIASES.get(name, name))
    if taken is not None:
        if taken.fingerprint == fingerprint:
            return taken
        kind = "a built-in activation" if taken.module is None else f"registered by {taken.module!r} with other functions"
        raise ValueError(f"{owner} is already {kind}; choose another name")
    phi_compiled = _registered.compile_scalar(owner, "phi", phi)
    dphi_compiled = _registered.compile_scalar(owner, "dphi", dphi)
    kernel = _registered.compile_kernel(phi_compiled, dphi_compiled)
    # The twin evaluates the same compiled scalars one by one from NumPy (numba's float
    # semantics: overflow gives inf, where Python's math would raise).
    phi_array, dphi_array = (np.frompyfunc(f, 1, 1) for f in (phi_compiled, dphi_compiled))
    record = Activation(
        name, REGISTERED, None, float(kernel.address), homogeneous, bounded, False, None,
        f"registered by {phi.__module__}: phi = {phi.__qualname__}, phi' = {dphi.__qualname__}",
        # Not known to be smooth: quadrature then splits at 0, which costs little if it is.
        False,
        twin=lambda x, _: _evaluate_each(phi_array, dphi_array, x),
        module=phi.__module__, fingerprint=fingerprint, compiled=kernel)
    USER_ACTIVATIONS[name] = record
    return record


# ----------------------------------------------------------------------------- dispatch
# The jitted entry points, one branch per record, written from the registry by
# fastinit._dispatch_source (why generated, and why in this file, is said there);
# tests/test_activations_dispatch.py fails while they and the registry disagree.
# <generated by fastinit._dispatch_source: do not edit>
@jit
def phi_and_dphi(code, x, param):
    """Return ``(phi(x), phi'(x))`` for the activation ``code``, sharing the work.

    Parameters
    ----------
    code : int
        One of the module constants (``RELU``, ``GELU``, ...): an :attr:`Activation.code`.
    x : float
        The pre-activation.
    param : float
        The slope of ``leaky_relu`` or the alpha of ``elu``; for ``REGISTERED``, the address of
        the kernel :func:`register` compiled; ignored otherwise.  Kernels never validate: use
        :meth:`Activation.resolve_param` at the boundary.

    Returns
    -------
    tuple of float
        The value and the derivative, as the record's ``kernel`` gives them; ``(nan, nan)``
        for NaN input or an unknown code.
    """
    if math.isnan(x):  # every kernel's own NaN test, made once
        return math.nan, math.nan
    if code == LINEAR:
        return (x, 1.0)
    if code == RELU or code == LEAKY_RELU or code == ELU:
        if x > 0.0:
            return (x, 1.0)
        if code == RELU:
            return (0.0, 0.0)
        if code == LEAKY_RELU:
            return (param * x if param != 0.0 else 0.0, param)
        return (param * math.expm1(x), param * math.exp(x))
    if code == TANH:
        e = math.exp(-2.0 * abs(x))
        return (math.tanh(x), 4.0 * e / ((1.0 + e) * (1.0 + e)))
    if code == SIGMOID or code == SILU or code == SOFTPLUS:
        e = math.exp(-abs(x))
        s = 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
        if code == SIGMOID:
            return (s, e / ((1.0 + e) * (1.0 + e)))
        if code == SILU:
            if math.isinf(x):
                return (x, 1.0) if x > 0.0 else (0.0, 0.0)
            one_minus_s = e / (1.0 + e) if x >= 0.0 else 1.0 / (1.0 + e)
            return (x * s, s * (1.0 + x * one_minus_s))
        return (max(x, 0.0) + math.log1p(e), s)
    if code == GELU:
        if math.isinf(x):
            return (x, 1.0) if x > 0.0 else (0.0, 0.0)
        cdf = 0.5 * math.erfc(-x * _SQRT_HALF)
        return (x * cdf, cdf + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x))
    if code == SELU:
        if x > 0.0:
            return (SELU_LAMBDA * x, SELU_LAMBDA)
        return (_SELU_LAMBDA_ALPHA * math.expm1(x), _SELU_LAMBDA_ALPHA * math.exp(x))
    if code == ERF:
        return (math.erf(x), _TWO_OVER_SQRT_PI * math.exp(-x * x))
    if code == REGISTERED and param > 0.0:  # param: the address of a register()ed kernel
        return call_registered(param, x)
    return math.nan, math.nan


@jit
def apply(code, x, param, out_phi, out_dphi):
    """Fill ``out_phi`` and ``out_dphi`` with ``phi`` and ``phi'`` of the 1-D array ``x``.

    Branches on ``code`` once, then runs a loop specialised to that activation: a loop of
    its own for records with a branch-free variant (linear, relu and leaky_relu: a few selects) and
    for float32 variants (tanh on float32 arrays is a branch-free polynomial), one loop
    through :func:`phi_and_dphi` for the others.  Every path computes in float64 and rounds
    once when storing: float64 results equal :func:`phi_and_dphi` bit for bit (but for NaN
    payloads: linear passes ``x``'s own NaN through), float32 tanh differs from the float64
    libm value by far less than a float32 rounding.

    Parameters
    ----------
    code : int
        Activation code; an unknown one gives NaN.
    x : numpy.ndarray
        1-D float32 or float64 input.
    param : float
        Activation parameter (see :func:`phi_and_dphi`).
    out_phi, out_dphi : numpy.ndarray
        Preallocated 1-D arrays of ``x``'s length (any float dtype), written in place.
    """
    if code == TANH and x.itemsize == 4:
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            a = abs(v)
            a = a if a < _TANH_CLAMP else _TANH_CLAMP
            e = _exp_nonpositive(-2.0 * a)
            inv = 1.0 / (1.0 + e)
            t = (1.0 - e) * inv if a >= _TANH_SERIES_BELOW else a - a * a * a * (1.0 / 3.0)
            slope = 4.0 * e * inv * inv
            known = v == v
            signed = -t if v < 0.0 else t
            out_phi[i] = signed if known else math.nan
            out_dphi[i] = slope if known else math.nan
    elif code == SIGMOID and x.itemsize == 4:
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            a = abs(v)
            a = a if a < _LOGISTIC_CLAMP else _LOGISTIC_CLAMP
            e = _exp_nonpositive(-a)
            inv = 1.0 / (1.0 + e)
            s = inv if v >= 0.0 else e * inv
            known = v == v
            out_phi[i] = s if known else math.nan
            out_dphi[i] = e * inv * inv if known else math.nan
    elif code == GELU and x.itemsize == 4:
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            a = abs(v)
            a = a if a < _GELU_CLAMP else _GELU_CLAMP
            gauss = _exp_nonpositive(-0.5 * a * a)
            tail = 0.5 * gauss * _erfcx_nonnegative(a * _SQRT_HALF)
            positive = v >= 0.0
            cdf = 1.0 - tail if positive else tail
            signed = a if positive else -a
            known = v == v
            above_minus_inf = v > -math.inf
            negative = signed * cdf if above_minus_inf else 0.0
            finite = v * cdf if positive else negative
            value = finite if known else math.nan
            finite_slope = cdf + signed * _INV_SQRT_2PI * gauss if above_minus_inf else 0.0
            slope = finite_slope if known else math.nan
            out_phi[i] = value
            out_dphi[i] = slope
    elif code == SILU and x.itemsize == 4:
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            a = abs(v)
            a = a if a < _LOGISTIC_CLAMP else _LOGISTIC_CLAMP
            e = _exp_nonpositive(-a)
            inv = 1.0 / (1.0 + e)
            positive = v >= 0.0
            s = inv if positive else e * inv
            one_minus_s = e * inv if positive else inv
            clamped = a if positive else -a
            known = v == v
            limit = v if positive else 0.0
            finite = v * s if a < _LOGISTIC_CLAMP else limit
            value = finite if known else math.nan
            out_phi[i] = value
            out_dphi[i] = s * (1.0 + clamped * one_minus_s) if known else math.nan
    elif code == LINEAR:
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            out_phi[i] = v
            out_dphi[i] = 1.0 if v == v else math.nan
    elif code == RELU:
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            positive = v > 0.0
            zero = 0.0 if v == v else math.nan
            out_phi[i] = v if positive else zero
            out_dphi[i] = 1.0 if positive else zero
    elif code == LEAKY_RELU:
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            positive = v > 0.0
            known = v == v
            scaled = param * v if param != 0.0 else 0.0
            negative = scaled if known else math.nan
            slope = param if known else math.nan
            out_phi[i] = v if positive else negative
            out_dphi[i] = 1.0 if positive else slope
    else:
        for i in range(x.shape[0]):
            out_phi[i], out_dphi[i] = phi_and_dphi(code, np.float64(x[i]), param)


@jit(inline=True)
def slope_from_output(code, v, param):
    """``phi'(z)`` from ``v = c phi(z)``, ``c > 0``, for the activations of
    :meth:`Activation.slope_from_output`; equal to :func:`apply`'s ``phi'`` bit for bit
    (NaN stays NaN).  ``phi'`` at the kink ``z = 0`` is the left slope, as in :func:`apply`.
    NaN for an activation without an output slope."""
    if code == LINEAR:
        return 1.0 if v == v else math.nan
    if code == RELU or code == LEAKY_RELU:
        if v > 0.0:
            return 1.0
        if code == RELU:
            if v <= 0.0:
                return 0.0
            return math.nan
        if v <= 0.0:
            return param
        return math.nan
    return math.nan
# </generated>


@jit
def phi(code, x, param):
    """Return ``phi(x)`` for the activation ``code``; see :func:`phi_and_dphi`."""
    # LLVM inlines phi_and_dphi and drops the unused derivative.
    return phi_and_dphi(code, x, param)[0]


@jit
def dphi(code, x, param):
    """Return ``phi'(x)`` for the activation ``code``; see :func:`phi_and_dphi`."""
    return phi_and_dphi(code, x, param)[1]
