"""Boundary validation: every public function checks its inputs here, kernels never do.

Each helper raises ``ValueError`` or ``TypeError`` whose message names the parameter,
the value received and what is allowed, e.g.
``depth must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import difflib
import numbers
import operator
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = [
    "check_choice",
    "check_name",
    "check_dtype",
    "check_int",
    "check_real",
    "check_unit_interval",
    "check_seed",
    "check_shape",
    "check_no_extra",
    "check_params",
    "check_stream",
    "check_norm",
    "did_you_mean",
    "NORMS",
    "NORM_SITES",
]

SUPPORTED_DTYPES = ("float32", "float64")
MAX_SEED = 2**64 - 1


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    Names are compared case-folded: capitals say nothing about which name was meant, and
    compared as they are, ``"Relu"`` is closer to ``"elu"`` than to ``"relu"``.
    """
    folded = {}
    for choice in choices:
        folded.setdefault(str(choice).casefold(), choice)
    close = difflib.get_close_matches(str(value).casefold(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of ``choices`` and return it.

    Parameters
    ----------
    name : str
        The parameter's name, used in the error message.
    value : object
        The value received.
    choices : iterable of str
        The allowed values.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ValueError
        If ``value`` is not one of ``choices``; the message suggests the closest one.
    """
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}{hint}")
    return value


def check_name(name: str, value, choices: Iterable[str]) -> str:
    """Look up a registry name in any case and return its registered spelling.

    An exact match wins; otherwise the one choice equal to ``value`` case-folded
    (``"ReLU"`` -> ``"relu"``).  Returning the registered spelling keeps cell keys,
    labels and tables the same however a user typed the name.

    Parameters
    ----------
    name : str
        The parameter's name, used in the error message.
    value : object
        The value received.
    choices : iterable of str
        The registered names.

    Returns
    -------
    str
        The registered name.

    Raises
    ------
    ValueError
        If no choice matches, or several differ from ``value`` only in case; the message
        suggests the closest one.
    """
    choices = list(choices)
    if isinstance(value, str) and value not in choices:
        matches = [choice for choice in choices if choice.casefold() == value.casefold()]
        if len(matches) == 1:
            return matches[0]
    return check_choice(name, value, choices)


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that ``value`` is an integer in ``[minimum, maximum]`` and return it as ``int``.

    Booleans and floats (even ``3.0``) are rejected: a float where an integer belongs
    is usually a bug upstream.

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If ``value`` is out of range.
    """
    bounds = _describe_bounds(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{bounds}, got {value!r} ({type(value).__name__})")
    value = operator.index(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer{bounds}, got {value}")
    return value


def check_real(
    name: str,
    value,
    *,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
    maximum: float | None = None,
) -> float:
    """Check that ``value`` is a finite real number in range and return it as ``float``.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is not finite or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    below = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    above = maximum is not None and value > maximum
    if not np.isfinite(value) or below or above:
        parts = []
        if minimum is not None:
            parts.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
        if maximum is not None:
            parts.append(f"<= {maximum:g}")
        rule = " and ".join(["finite", *parts])
        raise ValueError(f"{name} must be a {rule} real number, got {value!r}")
    return value


def check_unit_interval(name: str, value, fix: str) -> float:
    """Check that ``value`` is a real number in ``[0, 1)`` (a decay rate: momentum, Adam's betas).

    ``fix`` ends the message (e.g. "use e.g. 0.9, or 0 for plain SGD").

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is not finite or outside ``[0, 1)``.
    """
    value = check_real(name, value, minimum=0.0)
    if value >= 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}; {fix}")
    return value


def check_shape(value, name: str = "shape") -> tuple[int, ...]:
    """Check an array shape: an int or a non-empty tuple of integers >= 1.

    Raises
    ------
    TypeError
        If ``value`` is not an int or an iterable of ints.
    ValueError
        If it is empty or has a size < 1.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}") from None
    if not shape:
        raise ValueError(f"{name} must have at least 1 dimension, got ()")
    return tuple(check_int(name, size, minimum=1) for size in shape)


def check_seed(value) -> int:
    """Check a root seed: an integer in ``[0, 2**64 - 1]``."""
    return check_int("seed", value, minimum=0, maximum=MAX_SEED)


def check_stream(value) -> int:
    """Check a 64-bit stream id: an integer in ``[0, 2**64 - 1]``."""
    return check_int("stream", value, minimum=0, maximum=MAX_SEED)


def check_params(name: str, value) -> dict:
    """Check a mapping of parameters (``None`` means none) and return a copy as a dict.

    Raises
    ------
    TypeError
        If ``value`` is neither ``None`` nor a mapping.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of parameters or None, got {value!r}; e.g. {name}={{}}")
    return dict(value)


def check_dtype(value) -> np.dtype:
    """Check a floating dtype (``"float32"`` or ``"float64"``, or the NumPy types) and return it."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in SUPPORTED_DTYPES:
        allowed = ", ".join(repr(d) for d in SUPPORTED_DTYPES)
        raise ValueError(f"dtype must be one of {allowed}, got {value!r}")
    return dtype


def check_no_extra(where: str, extra: dict, allowed: Iterable[str]) -> None:
    """Reject unknown keyword parameters, naming them and the allowed ones.

    Raises
    ------
    TypeError
        If ``extra`` has any key.
    """
    if extra:
        allowed = sorted(allowed)
        key = sorted(extra)[0]
        hint = did_you_mean(key, allowed)
        allowed_text = ", ".join(allowed) if allowed else "none"
        raise TypeError(f"{where} got an unknown parameter {key!r}{hint}; allowed parameters: {allowed_text}")


def _describe_bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


# --------------------------------------------------------------- declared constraints
# Parameters declare one of these; the same object validates user input and, in the
# tests, generates the invalid inputs that must be rejected (sklearn's approach).


class Real:
    """A finite real number, optionally bounded below (inclusive or exclusive)."""

    def __init__(self, minimum: float | None = None, *, exclusive: bool = False):
        self.minimum = minimum
        self.exclusive = exclusive

    def check(self, name: str, value) -> float:
        """Return ``value`` as float or raise naming ``name``."""
        return check_real(name, value, minimum=self.minimum, exclusive_minimum=self.exclusive)

    def invalid_examples(self) -> list:
        """Values this constraint must reject."""
        examples = ["text", float("nan"), float("inf")]
        if self.minimum is not None:
            examples.append(self.minimum - 1.0)
            if self.exclusive:
                examples.append(self.minimum)
        return examples

    def __repr__(self):
        if self.minimum is None:
            return "Real()"
        return f"Real({'>' if self.exclusive else '>='} {self.minimum:g})"


class Int:
    """An integer constraint with an inclusive minimum (declared, as :class:`Real`)."""

    def __init__(self, minimum: int):
        self.minimum = minimum

    def check(self, name: str, value) -> int:
        """Return ``value`` as int or raise naming ``name``."""
        return check_int(name, value, minimum=self.minimum)

    def invalid_examples(self) -> list:
        """Values this constraint must reject."""
        return [self.minimum - 1, 2.5, "text"]

    def __repr__(self):
        return f"Int(>= {self.minimum})"


class Choice:
    """One of a fixed set of strings."""

    def __init__(self, options: Iterable[str]):
        self.options = tuple(options)

    def check(self, name: str, value) -> str:
        """Return ``value`` or raise naming ``name`` with a did-you-mean hint."""
        return check_choice(name, value, self.options)

    def invalid_examples(self) -> list:
        """Values this constraint must reject."""
        return ["bogus", 3]

    def __repr__(self):
        return f"Choice({', '.join(self.options)})"


# The norms of propagate's nets and where they sit, named once for propagate, train, the sweep and
# analysis (which must not import the kernels).
NORMS = ("batch", "layer")
NORM_SITES = ("preact", "branch", "output")


def check_norm(options: Mapping, batch: int, residual) -> tuple:
    """``(norm, norm_at)`` of a net from its ``norm``, ``norm_at`` and older ``batchnorm`` options.

    One check for :func:`fastinit.propagate` and :func:`fastinit.train.run`, so both accept and
    reject exactly the same combinations with the same messages.

    Parameters
    ----------
    options : mapping
        The caller's keyword options; ``batchnorm`` (bool), ``norm`` (one of :data:`NORMS`
        or None) and ``norm_at`` (one of :data:`NORM_SITES`, default ``"preact"``) are read.
    batch : int
        The (already checked) batch size: batch norm needs two or more examples.
    residual : float or None
        The residual branch scale, None without residual connections: ``norm_at``
        ``"branch"`` and ``"output"`` are norms of a residual stream and need one.

    Returns
    -------
    tuple
        ``(norm, norm_at)``: ``"batch"``, ``"layer"`` or None, and the site.
        ``batchnorm=True`` is ``("batch", "preact")``.

    Raises
    ------
    TypeError
        If ``batchnorm`` is not a bool.
    ValueError
        For an unknown ``norm`` or ``norm_at``, ``batchnorm`` contradicting ``norm``, a site
        other than ``"preact"`` without a norm or a residual, or batch norm with ``batch < 2``.
    """
    batchnorm = options.get("batchnorm")
    if batchnorm is not None and not isinstance(batchnorm, (bool, np.bool_)):
        raise TypeError(f"batchnorm must be True or False, got {batchnorm!r}")
    norm = options.get("norm")
    if norm is not None:
        norm = check_choice("norm", norm, NORMS)
    if batchnorm is not None and norm is not None and bool(batchnorm) != (norm == "batch"):
        raise ValueError(f"batchnorm={bool(batchnorm)} contradicts norm={norm!r}; give one of them "
                         "(batchnorm=True is norm='batch')")
    if batchnorm:
        norm = "batch"
    norm_at = check_choice("norm_at", options.get("norm_at", "preact"), NORM_SITES)
    if norm_at != "preact":
        if norm is None:
            raise ValueError(f"norm_at={norm_at!r} needs a norm; give norm='layer' or norm='batch'")
        if residual is None:
            raise ValueError(f"norm_at={norm_at!r} is a residual stream's norm and needs residual=alpha; give "
                             "residual (e.g. residual=1.0) or norm_at='preact'")
    if norm == "batch" and batch < 2:
        if batchnorm:
            raise ValueError(f"batchnorm needs batch >= 2 (it normalises over the batch), got batch={batch}; "
                             "use batch >= 2 or batchnorm=False")
        raise ValueError(f"norm='batch' needs batch >= 2 (it normalises over the batch), got batch={batch}; "
                         "use batch >= 2 or norm='layer'")
    return norm, norm_at
