"""The initializer registry: fans, variance rules, gains, presets and :func:`sample`.

Weight layout is PyTorch's, ``(fan_out, fan_in, *receptive_field)``.  Every entry of
:data:`INITIALIZERS` declares

* its parameters (defaults and validation),
* a *draw*: which distribution to sample and how to scale it, given the fans --
  the propagation kernel re-draws weights from the same description, and
* its *variance rule* as a function of the fans and the receptive field, written as
  the textbook formula (not derived from the draw), so that tests can hold one against
  the other (:func:`declared_variance`) and the theory layer can read the rule.

Facts users trip on, each stated where it applies below: PyTorch's ``nn.Linear``
default is U[+-1/sqrt(fan_in)] (variance 1/(3 fan_in), not He); "normal" is
untruncated here, as in PyTorch and JAX, while Keras/Flax ``*_normal`` are truncated
and corrected (use ``variance_scaling`` or the presets); ``gain`` multiplies the
std (PyTorch), ``scale`` the variance (Keras/JAX).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from fastinit import _registered, rng
from fastinit._validation import (
    Choice,
    Int,
    Real,
    check_dtype,
    check_no_extra,
    check_name,
    check_seed,
    check_shape,
)
from fastinit.activations import _NAME, ACTIVATIONS, get_activation, import_registered

__all__ = ["Draw", "Initializer", "INITIALIZERS", "USER_INITIALIZERS", "register", "fans", "gain", "sample", "declared_variance", "get_initializer", "CONV_NAMES"]

CONSTANT = 3
ORTHOGONAL = 4
# The std of N(0, 1) truncated to [-2, 2]; Keras/JAX divide by it so that
# "truncated_normal" variance scaling has exactly the requested variance.
TRUNCATED_STD_AT_2 = 0.87962566103423978
# Names PyTorch's calculate_gain accepts with gain 1 besides "linear".
CONV_NAMES = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


@dataclass(frozen=True)
class Draw:
    """How to draw one weight tensor: ``kind`` and two numbers.

    ``kind`` is ``rng.KIND_NORMAL`` (std ``a``), ``rng.KIND_UNIFORM`` (``U[a, b)``),
    ``rng.KIND_TRUNCATED`` (std ``a`` before truncation at ``+-b`` stds),
    ``CONSTANT`` (every entry ``a``) or ``ORTHOGONAL`` (gain ``a``).
    """

    kind: int
    a: float
    b: float = 0.0

    def distribution(self):
        """The declared distribution as a frozen ``scipy.stats`` object (None for constant and orthogonal)."""
        from scipy import stats  # lazy: scipy.stats costs ~0.3 s at import, and only tests and theory need it

        if self.kind == rng.KIND_NORMAL:
            return stats.norm(0.0, self.a)
        if self.kind == rng.KIND_UNIFORM:
            return stats.uniform(self.a, self.b - self.a)
        if self.kind == rng.KIND_TRUNCATED:
            return stats.truncnorm(-self.b, self.b, scale=self.a)
        return None


# ------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class Param:
    """A declared parameter: its default, its constraint and what it means."""

    default: object
    constraint: Real | Choice
    doc: str = ""


_MODE = Param("fan_in", Choice(("fan_in", "fan_out")), "which fan normalises the variance")
_GAIN = Param(1.0, Real(0.0), "multiplies the std")
_KAIMING = {
    "mode": _MODE,
    "nonlinearity": Param("leaky_relu", Choice((*ACTIVATIONS, *CONV_NAMES)), "activation whose gain scales the std"),
    "a": Param(0.0, Real(), "negative slope when nonlinearity='leaky_relu'"),
}


# ------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Initializer:
    """One initialization scheme.

    Attributes
    ----------
    name : str
        Registry key.
    description : str
        One line: distribution and variance.
    params : Mapping[str, Param]
        Declared parameters with defaults.
    draw : callable
        ``draw(fan_in, fan_out, **params) -> Draw``.
    variance : callable
        ``variance(fan_in, fan_out, receptive_field, **params) -> float``, the textbook
        rule; ``receptive_field`` is ``prod(shape[2:])`` (1 for dense weights), which
        only orthogonal needs: its matrix is ``(fan_out / receptive_field, fan_in)``.
    needs_fans : bool
        Whether the shape must have at least 2 dimensions.
    module : str or None
        For an initializer added by :func:`register`, the module that registered it; None
        for the built-ins.
    fingerprint : str or None
        For a registered initializer, a hash of its functions' source, distribution and
        parameters (part of a sweep cell's identity); None for the built-ins.
    """

    name: str
    description: str
    params: Mapping[str, Param]
    draw: Callable[..., Draw]
    variance: Callable[..., float]
    needs_fans: bool = True
    module: str | None = None
    fingerprint: str | None = None

    @property
    def spelling(self) -> str:
        """The name that finds this entry in any process: ``module:name`` when registered."""
        return f"{self.module}:{self.name}" if self.module else self.name

    def resolve(self, **params) -> dict:
        """Validate ``params`` against the declaration and fill in defaults.

        Raises
        ------
        TypeError
            For an unknown parameter.
        ValueError
            For a bad value; the message names the parameter and what is allowed.
        """
        check_no_extra(f"initializer {self.name!r}", {k: v for k, v in params.items() if k not in self.params}, self.params)
        resolved = {}
        for key, spec in self.params.items():
            value = params.get(key, spec.default)
            if value is _REQUIRED:
                raise TypeError(f"initializer {self.name!r} needs the parameter {key!r} ({spec.doc})")
            resolved[key] = spec.constraint.check(key, value)
        return resolved


_REQUIRED = object()


def _kaiming_gain(nonlinearity, a):
    return gain(nonlinearity, a if nonlinearity == "leaky_relu" else None)


def _scaling_n(mode, fan_in, fan_out):
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]


def _variance_scaling_draw(fan_in, fan_out, scale, mode, distribution):
    variance = scale / _scaling_n(mode, fan_in, fan_out)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return Draw(rng.KIND_UNIFORM, -limit, limit)
    if distribution == "truncated_normal":
        return Draw(rng.KIND_TRUNCATED, math.sqrt(variance) / TRUNCATED_STD_AT_2, 2.0)
    return Draw(rng.KIND_NORMAL, math.sqrt(variance))


def _truncated_variance(bound):
    """Variance of N(0, 1) conditioned on |z| <= bound (closed form)."""
    from scipy import special, stats  # lazy: scipy.stats costs ~0.3 s at import (see Draw.distribution)

    mass = special.erf(bound / math.sqrt(2.0))
    return 1.0 - 2.0 * bound * stats.norm.pdf(bound) / mass


def _symmetric_uniform(bound):
    return Draw(rng.KIND_UNIFORM, -bound, bound)


_VARIANCE_SCALING = {
    "scale": Param(1.0, Real(0.0, exclusive=True), "multiplies the variance"),
    "mode": Param("fan_in", Choice(("fan_in", "fan_out", "fan_avg")), "n in scale / n"),
    "distribution": Param(
        "truncated_normal", Choice(("normal", "truncated_normal", "uniform")), "'normal' is untruncated (JAX semantics)"
    ),
}

_ENTRIES = [
    Initializer(
        "uniform",
        "U[-1/sqrt(fan_in), 1/sqrt(fan_in)], variance 1/(3 fan_in): PyTorch's nn.Linear default, not He",
        {},
        lambda fi, fo: _symmetric_uniform(1.0 / math.sqrt(fi)),
        lambda fi, fo, rf: 1.0 / (3.0 * fi),
    ),
    Initializer(
        "xavier_normal",
        "N(0, gain^2 2/(fan_in+fan_out)), untruncated (PyTorch xavier_normal_)",
        {"gain": _GAIN},
        lambda fi, fo, gain: Draw(rng.KIND_NORMAL, gain * math.sqrt(2.0 / (fi + fo))),
        lambda fi, fo, rf, gain: gain**2 * 2.0 / (fi + fo),
    ),
    Initializer(
        "xavier_uniform",
        "U[+-gain sqrt(6/(fan_in+fan_out))], variance gain^2 2/(fan_in+fan_out) (Glorot & Bengio 2010)",
        {"gain": _GAIN},
        lambda fi, fo, gain: _symmetric_uniform(gain * math.sqrt(6.0 / (fi + fo))),
        lambda fi, fo, rf, gain: gain**2 * 2.0 / (fi + fo),
    ),
    Initializer(
        "he_normal",
        "N(0, gain^2/fan_mode), untruncated (PyTorch kaiming_normal_); relu gain sqrt(2) gives 2/fan_in",
        _KAIMING,
        lambda fi, fo, mode, nonlinearity, a: Draw(
            rng.KIND_NORMAL, _kaiming_gain(nonlinearity, a) / math.sqrt(_scaling_n(mode, fi, fo))
        ),
        lambda fi, fo, rf, mode, nonlinearity, a: _kaiming_gain(nonlinearity, a) ** 2 / _scaling_n(mode, fi, fo),
    ),
    Initializer(
        "he_uniform",
        "U[+-gain sqrt(3/fan_mode)] (PyTorch kaiming_uniform_), variance gain^2/fan_mode",
        _KAIMING,
        lambda fi, fo, mode, nonlinearity, a: _symmetric_uniform(
            _kaiming_gain(nonlinearity, a) * math.sqrt(3.0 / _scaling_n(mode, fi, fo))
        ),
        lambda fi, fo, rf, mode, nonlinearity, a: _kaiming_gain(nonlinearity, a) ** 2 / _scaling_n(mode, fi, fo),
    ),
    Initializer(
        "lecun_normal",
        "N(0, 1/fan_in), untruncated (Keras/JAX lecun_normal is truncated: see flax_default)",
        {},
        lambda fi, fo: Draw(rng.KIND_NORMAL, 1.0 / math.sqrt(fi)),
        lambda fi, fo, rf: 1.0 / fi,
    ),
    Initializer(
        "lecun_uniform",
        "U[+-sqrt(3/fan_in)], variance 1/fan_in",
        {},
        lambda fi, fo: _symmetric_uniform(math.sqrt(3.0 / fi)),
        lambda fi, fo, rf: 1.0 / fi,
    ),
    Initializer(
        "orthogonal",
        "gain * Q of the QR of a Gaussian matrix, Q sign-corrected (Saxe et al. 2013); variance gain^2/max(rows, cols) "
        "of the weight flattened to (rows, cols) = (shape[0], prod(shape[1:]))",
        {"gain": _GAIN},
        lambda fi, fo, gain: Draw(ORTHOGONAL, gain),
        # The weight is flattened to (rows, cols) = (fan_out / rf, fan_in), as PyTorch does.
        lambda fi, fo, rf, gain: gain**2 / max(fo // rf, fi),
    ),
    Initializer(
        "lsuv",
        "LSUV (Mishkin & Matas 2016): orthogonal, then in propagate and train each layer's weights divided by the "
        "std of its pre-activations on the batch until Var(z) is within tol of 1 (at most max_iter times); "
        "the declared rule is the orthogonal base's, the calibrated variance depends on the data",
        {"tol": Param(0.1, Real(0.0, exclusive=True), "accepted |Var(z) - 1|"),
         "max_iter": Param(10, Int(1), "rescalings per layer before giving up")},
        lambda fi, fo, tol, max_iter: Draw(ORTHOGONAL, 1.0),
        lambda fi, fo, rf, tol, max_iter: 1.0 / max(fo // rf, fi),
    ),
    Initializer(
        "normal",
        "N(0, std^2), untruncated (PyTorch normal_ default std 1)",
        {"std": Param(1.0, Real(0.0), "standard deviation")},
        lambda fi, fo, std: Draw(rng.KIND_NORMAL, std),
        lambda fi, fo, rf, std: std**2,
        needs_fans=False,
    ),
    Initializer(
        "truncated_normal",
        "N(0, std^2) cut at +-bound*std; std is the parent's (before truncation), "
        "variance std^2 (1 - 2 b pdf(b)/(2 cdf(b)-1)); PyTorch trunc_normal_ bounds are absolute",
        {"std": Param(1.0, Real(0.0), "std before truncation"), "bound": Param(2.0, Real(0.0, exclusive=True), "cut in stds")},
        lambda fi, fo, std, bound: Draw(rng.KIND_TRUNCATED, std, bound),
        lambda fi, fo, rf, std, bound: std**2 * _truncated_variance(bound),
        needs_fans=False,
    ),
    Initializer(
        "variance_scaling",
        "Keras/JAX VarianceScaling: variance scale/n; truncated_normal corrected by 0.8796; uniform limit sqrt(3 scale/n)",
        _VARIANCE_SCALING,
        _variance_scaling_draw,
        lambda fi, fo, rf, scale, mode, distribution: scale / _scaling_n(mode, fi, fo),
    ),
    Initializer(
        "zeros",
        "every weight 0: no symmetry breaking, no signal",
        {},
        lambda fi, fo: Draw(CONSTANT, 0.0),
        lambda fi, fo, rf: 0.0,
        needs_fans=False,
    ),
    Initializer(
        "constant",
        "every weight `value`: units of a layer stay identical (symmetry is never broken)",
        {"value": Param(_REQUIRED, Real(), "the constant")},
        lambda fi, fo, value: Draw(CONSTANT, value),
        lambda fi, fo, rf, value: 0.0,
        needs_fans=False,
    ),
    Initializer(
        "torch_default",
        "PyTorch nn.Linear/Conv weight default: kaiming_uniform_(a=sqrt(5)) = U[+-1/sqrt(fan_in)]",
        {},
        lambda fi, fo: _symmetric_uniform(math.sqrt(2.0 / 6.0) * math.sqrt(3.0 / fi)),
        lambda fi, fo, rf: 1.0 / (3.0 * fi),
    ),
    Initializer(
        "keras_default",
        "Keras Dense/Conv kernel default: glorot_uniform, U[+-sqrt(6/(fan_in+fan_out))]",
        {},
        lambda fi, fo: _symmetric_uniform(math.sqrt(6.0 / (fi + fo))),
        lambda fi, fo, rf: 2.0 / (fi + fo),
    ),
    Initializer(
        "flax_default",
        "Flax nn.Dense kernel default: lecun_normal = variance_scaling(1, fan_in, truncated_normal)",
        {},
        lambda fi, fo: _variance_scaling_draw(fi, fo, 1.0, "fan_in", "truncated_normal"),
        lambda fi, fo, rf: 1.0 / fi,
    ),
]

INITIALIZERS: dict[str, Initializer] = {entry.name: entry for entry in _ENTRIES}
"""Every initialization scheme by name; the single source of truth for CLI, theory, tests."""


USER_INITIALIZERS: dict[str, Initializer] = {}
"""Initializers added by :func:`register`, by name (:func:`get_initializer` finds them too)."""


def get_initializer(name: str) -> Initializer:
    """Look up an initializer by name, or as ``module:name`` (importing ``module``).

    Parameters
    ----------
    name : str
        A key of :data:`INITIALIZERS` or :data:`USER_INITIALIZERS`, or ``module:name`` for
        one that importing ``module`` registers (:func:`register`).

    Returns
    -------
    Initializer

    Raises
    ------
    ValueError
        For an unknown name (suggesting the closest one), a module that cannot be imported
        or one that does not register ``name``.
    """
    if isinstance(name, str) and ":" in name:
        return import_registered("initializer", name, USER_INITIALIZERS, "fastinit.initializers.register")
    name = check_name("init", name, [*INITIALIZERS, *USER_INITIALIZERS])
    return USER_INITIALIZERS.get(name) or INITIALIZERS[name]


# The draw of a registered initializer from its scale: normal N(0, s^2), uniform U[-s, s],
# truncated_normal N(0, s^2) cut at +-2 s (Keras/JAX's cut).
_USER_DRAWS = {
    "normal": lambda s: Draw(rng.KIND_NORMAL, s),
    "uniform": lambda s: Draw(rng.KIND_UNIFORM, -s, s),
    "truncated_normal": lambda s: Draw(rng.KIND_TRUNCATED, s, 2.0),
}
# Fans at which a registered draw is held against its declared variance.
_CHECK_FANS = ((16, 16), (300, 100), (7, 1000))


def register(name: str, variance, distribution: str, scale, *, params=None, description: str = "") -> Initializer:
    """Add your own initializer: after this, ``name`` works wherever a built-in does.

    You declare the variance rule and the draw separately, as the built-ins do, and they are
    held against each other here: the draw's variance must equal the declared rule (to 1e-9)
    at a few fans, so that the theory layer, which reads the rule, describes what is drawn.

    For the sweep's flags and TOML, and for worker processes, register at the import of a
    module and name the initializer ``module:name`` (``--init my_inits:half_he``).

    Parameters
    ----------
    name : str
        A new name (letters, digits, underscores), not a built-in or another registered
        initializer.  Registering the same functions again returns the existing entry.
    variance : callable
        ``variance(fan_in, fan_out, **params) -> float``: the declared variance of each weight.
    distribution : {"normal", "uniform", "truncated_normal"}
        What is drawn, scaled by ``scale``: ``N(0, s^2)``, ``U[-s, s]``, or ``N(0, s^2)``
        truncated at ``+-2 s`` (variance ``0.7737 s^2``).
    scale : callable
        ``scale(fan_in, fan_out, **params) -> float``, the ``s`` above (> 0).
    params : dict, optional
        Parameter name -> default (real numbers), passed to ``variance`` and ``scale`` and
        settable as for the built-ins (``--init my_inits:scaled:factor=0.5``).
    description : str, optional
        One line for tables and ``--help``.

    Returns
    -------
    Initializer
        The new entry, also in :data:`USER_INITIALIZERS`.

    Raises
    ------
    TypeError
        If ``variance`` or ``scale`` is not callable, or a parameter default is not real.
    ValueError
        For a bad or taken name, an unknown distribution, or a draw whose variance is not the
        declared one (the message gives both at the fans where they differ).

    Examples
    --------
    >>> import math
    >>> from fastinit.initializers import register
    >>> register("half_he", lambda fan_in, fan_out: 1.0 / fan_in, "normal",
    ...          lambda fan_in, fan_out: math.sqrt(1.0 / fan_in))  # doctest: +SKIP
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"initializer name must be letters, digits and underscores (not starting with a digit), "
                         f"got {name!r}")
    owner = f"initializer {name!r}"
    for role, function in (("variance", variance), ("scale", scale)):
        if not callable(function):
            raise TypeError(f"{owner}: {role} must be a function of (fan_in, fan_out, **params), got {function!r}")
    distribution = Choice(tuple(_USER_DRAWS)).check("distribution", distribution)
    declared = {key: Param(Real().check(f"{owner} parameter {key!r}", value), Real(), "registered parameter")
                for key, value in dict(params or {}).items()}
    fingerprint = _registered.fingerprint(variance, scale, traits=(distribution, sorted(
        (key, spec.default) for key, spec in declared.items())))
    taken = USER_INITIALIZERS.get(name) or INITIALIZERS.get(name)
    if taken is not None:
        if taken.fingerprint == fingerprint:
            return taken
        kind = "a built-in initializer" if taken.module is None else f"registered by {taken.module!r} with other functions"
        raise ValueError(f"{owner} is already {kind}; choose another name")
    make_draw = _USER_DRAWS[distribution]
    entry = Initializer(
        name, description or f"registered by {getattr(variance, '__module__', None)}: {distribution}", declared,
        lambda fi, fo, **p: make_draw(float(scale(fi, fo, **p))),
        lambda fi, fo, rf, **p: float(variance(fi, fo, **p)),
        module=getattr(variance, "__module__", None) or "__main__", fingerprint=fingerprint)
    defaults = {key: spec.default for key, spec in declared.items()}
    for fan_in, fan_out in _CHECK_FANS:
        s = float(scale(fan_in, fan_out, **defaults))
        if not (math.isfinite(s) and s > 0.0):
            raise ValueError(f"{owner}: scale({fan_in}, {fan_out}) = {s!r}; it must be finite and > 0")
        rule = entry.variance(fan_in, fan_out, 1, **defaults)
        drawn = float(make_draw(s).distribution().var())
        if not math.isclose(drawn, rule, rel_tol=1e-9):
            raise ValueError(f"{owner}: the {distribution} draw with scale({fan_in}, {fan_out}) = {s:.6g} has "
                             f"variance {drawn:.6g}, but variance({fan_in}, {fan_out}) declares {rule:.6g}; make them "
                             f"agree (uniform U[-s, s] has variance s^2/3, truncated_normal 0.7737 s^2)")
    USER_INITIALIZERS[name] = entry
    return entry


# ------------------------------------------------------------------ fans and gains


def fans(shape) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight of PyTorch layout.

    For ``shape = (fan_out_units, fan_in_units, *receptive_field)`` the receptive
    field size ``rf = prod(shape[2:])`` multiplies both: ``fan_in = shape[1] * rf``,
    ``fan_out = shape[0] * rf`` (PyTorch's ``_calculate_fan_in_and_fan_out``).  Keras
    kernels are ``(in, out)``: port their shapes by swapping the first two axes.

    Parameters
    ----------
    shape : tuple of int
        At least two positive sizes.

    Returns
    -------
    tuple of int
        ``(fan_in, fan_out)``.

    Raises
    ------
    ValueError
        If ``shape`` has fewer than 2 dimensions or a size < 1.
    """
    shape = check_shape(shape)
    if len(shape) < 2:
        raise ValueError(f"shape must have at least 2 dimensions (fan_out, fan_in, ...) to define fans, got {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def gain(activation: str, param: float | None = None) -> float:
    """The recommended gain (std multiplier) for weights feeding ``activation``.

    Where PyTorch's ``torch.nn.init.calculate_gain`` defines one, the same value:
    linear, conv*, sigmoid 1; tanh 5/3; relu sqrt(2); leaky_relu
    sqrt(2 / (1 + slope^2)) with slope ``param`` (default 0.01); selu 3/4.
    For the others (gelu, silu, elu, softplus, erf) the *second-moment preserving*
    gain ``1 / sqrt(E[phi(z)^2])``, ``z ~ N(0, 1)``, computed by adaptive quadrature:
    with ``Var(W) = gain^2 / fan_in``, a unit-variance pre-activation maps to a
    unit-variance pre-activation in the next layer.  (For relu that criterion also
    gives sqrt(2).)

    Parameters
    ----------
    activation : str
        A name from ``ACTIVATIONS`` or PyTorch's conv names.
    param : float, optional
        The activation's parameter (leaky_relu slope, elu alpha).

    Returns
    -------
    float
    """
    if activation in CONV_NAMES:
        return 1.0
    spec = get_activation(activation)
    value = spec.resolve_param(**({spec.param_name: param} if spec.param_name and param is not None else {}))
    if spec.torch_gain is not None:  # the registry record carries PyTorch's rule
        return spec.torch_gain(value)
    return _second_moment_gain(spec.name, value)


@functools.lru_cache(maxsize=None)
def _second_moment_gain(name: str, param: float) -> float:
    from scipy import integrate, stats  # lazy: only the quadrature gains need them (see Draw.distribution)

    spec = get_activation(name)
    integrand = lambda z: float(spec.phi_np(np.array([z]), param)[0]) ** 2 * stats.norm.pdf(z)  # noqa: E731
    # Split at 0, where the piecewise activations have their kink.
    second_moment = sum(integrate.quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-12)[0] for lo, hi in ((-np.inf, 0.0), (0.0, np.inf)))
    return 1.0 / math.sqrt(second_moment)


# ------------------------------------------------------------------ sampling


def sample(init: str, shape, *, seed: int = 0, dtype="float32", **params) -> np.ndarray:
    """Draw a weight tensor from an initializer of :data:`INITIALIZERS`.

    Parameters
    ----------
    init : str
        Scheme name, e.g. ``"he_normal"``.
    shape : int or tuple of int
        Weight shape in PyTorch layout ``(fan_out, fan_in, *receptive_field)``;
        schemes whose scale depends on the fans need at least 2 dimensions.
    seed : int, default 0
        Root seed in ``[0, 2**64 - 1]``; the same seed gives the same array on any
        thread count.
    dtype : {"float32", "float64"}, default "float32"
    **params
        The scheme's parameters (see ``INITIALIZERS[init].params``), e.g.
        ``mode="fan_out"``, ``nonlinearity="relu"``, ``gain=2.0``, ``std=0.01``.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ValueError, TypeError
        For an unknown scheme or parameter, a bad shape, seed or dtype; the message
        names the parameter, the value and what is allowed.

    Examples
    --------
    >>> w = sample("he_normal", (256, 128), seed=1, nonlinearity="relu")
    >>> w.shape, w.dtype
    ((256, 128), dtype('float32'))
    """
    entry = get_initializer(init)
    shape = check_shape(shape)
    fan_in, fan_out, _ = _layout(entry, shape)
    resolved = entry.resolve(**params)
    seed = check_seed(seed)
    dtype = check_dtype(dtype)
    out = np.empty(shape, dtype=dtype)
    fill(out, entry.draw(fan_in, fan_out, **resolved), seed=seed, stream=0, substream=0)
    return out


def declared_variance(init: str, shape, **params) -> float:
    """The variance that ``init``'s rule declares for weights of ``shape``.

    The registry's textbook rule, evaluated at the fans and receptive field of
    ``shape``: what ``sample(init, shape, **params)`` should have.

    Parameters
    ----------
    init : str
        Scheme name, e.g. ``"orthogonal"``.
    shape : int or tuple of int
        Weight shape in PyTorch layout ``(fan_out, fan_in, *receptive_field)``.
    **params
        The scheme's parameters, as for :func:`sample`.

    Returns
    -------
    float

    Raises
    ------
    ValueError, TypeError
        For an unknown scheme or parameter or a bad shape.

    Examples
    --------
    >>> declared_variance("orthogonal", (64, 32, 3, 3))  # flattened to (64, 288)
    0.003472222222222222
    """
    entry = get_initializer(init)
    shape = check_shape(shape)
    fan_in, fan_out, receptive_field = _layout(entry, shape)
    return entry.variance(fan_in, fan_out, receptive_field, **entry.resolve(**params))


def _layout(entry: Initializer, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(fan_in, fan_out, receptive_field)`` of a checked ``shape``; all 1 where ``entry`` needs no fans."""
    if not entry.needs_fans:
        return 1, 1, 1
    fan_in, fan_out = fans(shape)
    return fan_in, fan_out, math.prod(shape[2:])


def fill(out: np.ndarray, draw: Draw, *, seed: int, stream: int, substream: int) -> None:
    """Fill ``out`` (C-contiguous) from ``draw`` on the stream ``(seed, stream, substream)``.

    Internal: arguments are not validated.  Orthogonal draws flatten ``out`` to
    ``(shape[0], rest)`` as PyTorch does.
    """
    if draw.kind == CONSTANT:
        out.fill(draw.a)
    elif draw.kind == ORTHOGONAL:
        out[...] = _orthogonal(out.shape, draw.a, out.dtype, seed, stream, substream)
    else:
        rng.fill(out, draw.kind, draw.a, draw.b, seed, stream, substream)


def _orthogonal(shape, gain_value, dtype, seed, stream, substream):
    rows = shape[0]
    cols = math.prod(shape[1:]) if len(shape) > 1 else 1
    gaussian = np.empty((rows, cols), dtype=np.float64)
    rng.fill(gaussian, rng.KIND_NORMAL, 1.0, 0.0, seed, stream, substream)
    if rows < cols:
        gaussian = gaussian.T
    q, r = np.linalg.qr(gaussian)
    # Multiplying by sign(diag(R)) makes Q Haar-distributed (Mezzadri 2007).
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return (gain_value * q).reshape(shape).astype(dtype)
