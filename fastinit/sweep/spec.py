"""Study specifications: axes from TOML files and command-line flags, validated once.

A study is a name, a root seed, a replicate count (``seeds``) and one list per axis.
Every value is checked here, at the boundary, against the same registries and checks
that :func:`fastinit.propagate` uses, so that a sweep never starts with a cell that
cannot run.  Errors are :class:`StudyError` with one line naming the parameter, the
value and the fix.

Initializer and activation values are strings ``name`` or ``name:key=value,...``
(``normal:std=0.01``, ``he_normal:mode=fan_out``, ``leaky_relu:slope=0.2``), or in TOML
inline tables ``{name = "normal", std = 0.01}``.  An activation or initializer of your own is
``module:name`` (parameters after one more colon, ``my_inits:scaled:factor=0.5``): the module
is imported, here and in every worker, and must register ``name``
(:func:`fastinit.activations.register`, :func:`fastinit.initializers.register`).  Names match the registries in any case
and are stored as registered (``ReLU`` is the ``relu`` choice, with the same cell keys).

A study that asks several questions need not cross every axis with every other: ``[[grids]]``
tables, each a set of axes (and optionally ``seeds``) laid over ``[axes]``, make the study the
union of their grids (a cell two grids share runs once).  Command-line flags override every grid.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from pathlib import Path

from fastinit._validation import (check_choice, check_dtype, check_int, check_real, check_seed, check_unit_interval,
                                  did_you_mean)
from fastinit.activations import ACTIVATIONS, ALIASES, get_activation
from fastinit.initializers import INITIALIZERS, get_initializer
from fastinit.train.run import OPTIMIZERS
from fastinit.train.tasks import TASKS

__all__ = ["Study", "Grid", "StudyError", "Choice", "PRESETS", "preset", "read_toml", "build_study", "AXES", "TRAINING_AXES",
           "SGD_AXES", "ADAM_AXES",
           "PROPAGATION_AXES", "PROPAGATION_GROUP", "TRAINING_GROUP", "PROPAGATION_SHAPE", "TRAINING_SHAPE", "parse_int"]

# Axes in the order they vary in the grid (the last varies fastest) and their defaults.
AXES = {
    "init": ["he_normal"],
    "activation": ["relu"],
    "depth": [100],
    "width": [256],
    "batch": [256],
    "bias_std": [0.0],
    "dtype": ["float32"],
    "numerics": ["rescaled"],
    "residual": [0.0],
    "batchnorm": [False],
    "norm": ["none"],  # "batch" or "layer" (both kinds of cell); batchnorm = true is norm "batch" at "preact"
    "norm_at": ["preact"],  # "branch" (pre-norm) or "output" (post-norm) need a residual branch
    # Training cells (fastinit.train) when task is not "none"; ignored otherwise.
    "task": ["none"],
    "epochs": [10],
    "lr": [0.01],
    "optimizer": ["sgd"],  # torch.optim's SGD, Adam or AdamW
    "momentum": [0.9],  # SGD only
    "beta1": [0.9],  # Adam / AdamW only
    "beta2": [0.999],
    "eps": [1e-8],
    "weight_decay": [0.0],
    "clip_norm": [0.0],
}
# Axes that only training cells read, and those only propagation cells read.
TRAINING_AXES = ("epochs", "lr", "optimizer", "momentum", "beta1", "beta2", "eps", "weight_decay", "clip_norm")
# Training axes that only one kind of update rule reads.
SGD_AXES, ADAM_AXES = ("momentum",), ("beta1", "beta2", "eps")
PROPAGATION_AXES = ("bias_std", "numerics")
# Result columns that tell one group of replicates from another, per kind of cell.
# Derived from AXES, so that a new axis can never silently pool distinct cells.
PROPAGATION_GROUP = tuple(axis for axis in AXES if axis != "task" and axis not in TRAINING_AXES)
TRAINING_GROUP = ("task", *(axis for axis in AXES if axis != "task" and axis not in PROPAGATION_AXES))
# The same without initializer and activation: what a summary row or figure holds fixed.
PROPAGATION_SHAPE = tuple(axis for axis in PROPAGATION_GROUP if axis not in ("init", "activation"))
TRAINING_SHAPE = tuple(axis for axis in TRAINING_GROUP if axis not in ("init", "activation"))
PRESETS = ("default", "paper", "training", "digits", "modern")
_TOP_LEVEL_KEYS = ("name", "root_seed", "seeds", "axes", "grids")


class StudyError(ValueError):
    """Bad study input: the message names the parameter, the value and the fix."""


@dataclasses.dataclass(frozen=True)
class Choice:
    """An initializer or activation with its resolved parameters.

    ``params`` holds every parameter with defaults filled in, so ``he_normal`` and
    ``he_normal:mode=fan_in`` are the same choice (equal, same cell); ``label`` names
    the parameters that differ from their defaults and is what tables and figures show.
    """

    name: str
    params: tuple  # sorted (key, value) pairs, defaults filled in
    label: str = dataclasses.field(compare=False)

    def as_dict(self) -> dict:
        """The parameters as a dict."""
        return dict(self.params)


@dataclasses.dataclass(frozen=True)
class Study:
    """A validated study: what to run, not how.

    Attributes
    ----------
    name : str
        Names the output directory (``results/<name>``) and the manifest entry.
    root_seed : int
        Root of every cell's random stream.
    seeds : int
        Replicates per grid point (with several grids, the most any grid runs).
    axes : dict
        Axis name -> tuple of validated values (``Choice`` for init and activation); with
        several grids, every value some grid takes, in order of appearance.
    grids : tuple of Grid
        The grids whose union is the study: one (``axes`` and ``seeds``) unless the study
        file has ``[[grids]]`` tables.
    """

    name: str
    root_seed: int
    seeds: int
    axes: dict
    grids: tuple = ()

    def __post_init__(self):
        if not self.grids:
            object.__setattr__(self, "grids", (Grid(self.axes, self.seeds),))

    def to_json(self) -> dict:
        """A JSON-able description (labels for init and activation), as stored in the manifest."""
        described = {"name": self.name, "root_seed": self.root_seed, "seeds": self.seeds, "axes": _labels(self.axes)}
        if len(self.grids) > 1:
            described["grids"] = [{"seeds": grid.seeds, "axes": _labels(grid.axes)} for grid in self.grids]
        return described


@dataclasses.dataclass(frozen=True)
class Grid:
    """One cartesian grid of a study: axis name -> tuple of validated values, and replicates per point."""

    axes: dict
    seeds: int


def _labels(axes: dict) -> dict:
    return {key: [v.label if isinstance(v, Choice) else v for v in values] for key, values in axes.items()}


# ------------------------------------------------------------------ reading


def preset(name: str) -> dict:
    """The raw (unvalidated) mapping of a preset study shipped in ``fastinit/sweep/studies``.

    Parameters
    ----------
    name : {"default", "paper", "training", "digits"}

    Returns
    -------
    dict
    """
    check_choice("study", name, PRESETS)
    text = importlib.resources.files("fastinit.sweep").joinpath("studies", f"{name}.toml").read_text()
    return tomllib.loads(text)


def read_toml(path) -> dict:
    """Read a study file; a missing or malformed file is a :class:`StudyError`.

    Parameters
    ----------
    path : str or path-like
        A TOML file, or the name of a preset.

    Returns
    -------
    dict
        The raw mapping, validated by :func:`build_study`.
    """
    if str(path) in PRESETS:
        return preset(str(path))
    path = Path(path)
    if not path.is_file():
        hint = f"; presets are {', '.join(PRESETS)}" if not path.suffix else ""
        raise StudyError(f"study file {str(path)!r} does not exist (give a TOML file{hint})")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise StudyError(f"study file {str(path)!r} is not valid TOML: {error}") from None


def build_study(raw: dict, overrides: dict | None = None) -> Study:
    """Validate a raw study mapping, with ``overrides`` (from flags) taking precedence.

    Parameters
    ----------
    raw : dict
        ``{"name", "root_seed", "seeds", "axes": {axis: list}}`` as read from TOML; any
        key may be missing (defaults: name "study", root seed 0, 1 seed, :data:`AXES`).
    overrides : dict, optional
        The same keys at the top level (``{"depth": ["10", "20"], "seeds": "3"}``);
        strings are parsed as the axis needs.

    Returns
    -------
    Study

    Raises
    ------
    StudyError
        For unknown keys, empty axes or any invalid value.
    """
    _reject_unknown("study file", raw, _TOP_LEVEL_KEYS)
    axes_raw = raw.get("axes", {})
    if not isinstance(axes_raw, dict):
        raise StudyError(f"axes must be a table of lists, got {axes_raw!r}")
    _reject_unknown("[axes]", axes_raw, [*AXES, "seeds"])
    grids_raw = raw.get("grids", [{}])
    if not isinstance(grids_raw, list) or not grids_raw or not all(isinstance(g, dict) for g in grids_raw):
        raise StudyError(f"grids must be one or more [[grids]] tables of axes, got {grids_raw!r}")
    for number, grid in enumerate(grids_raw, start=1):
        _reject_unknown(f"[[grids]] table {number}", grid, [*AXES, "seeds"])
    name, root_seed = raw.get("name", "study"), raw.get("root_seed", 0)
    seeds = axes_raw.get("seeds", raw.get("seeds", 1))
    seeds_flag = False  # a --seeds flag overrides every grid's seeds too
    flags = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "name":
            name = value
        elif key == "root_seed":
            root_seed = value
        elif key == "seeds":
            seeds, seeds_flag = value, True
        else:
            flags[key] = value
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise StudyError(f"name must be a non-empty string without '/' that does not start with '.', got {name!r}")
    grids = []
    for grid in grids_raw:
        merged = {key: grid.get(key, axes_raw.get(key, default)) for key, default in AXES.items()} | flags
        grid_seeds = seeds if seeds_flag else grid.get("seeds", seeds)
        grids.append(Grid(axes={key: _check_axis(key, values) for key, values in merged.items()},
                          seeds=_guard("seeds", lambda v: check_int("seeds", v, minimum=1), parse_int(grid_seeds))))
    for grid in grids:
        if True in grid.axes["batchnorm"] and 1 in grid.axes["batch"]:
            # Caught here, not as failed cells: the grid would pair every batch with every batchnorm value.
            raise StudyError("batchnorm needs batch >= 2 (it normalises over the batch), but the batch axis holds 1; "
                             "drop batch 1 or batchnorm true")
    axes = {key: tuple(dict.fromkeys(value for grid in grids for value in grid.axes[key])) for key in AXES}
    return Study(name=name, root_seed=_guard("root_seed", check_seed, parse_int(root_seed)),
                 seeds=max(grid.seeds for grid in grids), axes=axes, grids=tuple(grids))


# ------------------------------------------------------------------ validation


def _reject_unknown(where, mapping, allowed):
    if not isinstance(mapping, dict):
        raise StudyError(f"{where} must be a table, got {mapping!r}")
    for key in mapping:
        if key not in allowed:
            raise StudyError(f"{where} has an unknown key {key!r}{did_you_mean(key, allowed)}; "
                             f"allowed keys: {', '.join(allowed)}")


def _guard(name, check, value):
    """Run a ``fastinit._validation`` check, turning its error into a StudyError."""
    try:
        return check(value)
    except (TypeError, ValueError) as error:
        message = str(error)
        raise StudyError(message if message.startswith(name) else f"{name}: {message}") from None


def _check_axis(key, values):
    if not isinstance(values, (list, tuple)):
        values = [values]
    if not values:
        raise StudyError(f"{key} is an empty axis; give at least one value (default {AXES[key]})")
    checked = [_guard(key, _CHECKS[key], value) for value in values]
    unique = list(dict.fromkeys(checked))  # duplicates would be the same cell twice
    return tuple(unique)


def parse_int(value):
    """``int(value)`` for integer text; anything else unchanged, for the checks to name."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value  # check_int names it
    return value


def _parse_real(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _parse_bool(value, name):
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    if isinstance(value, bool):
        return value
    raise StudyError(f"{name} must be true or false, got {value!r}")


def _parse_scalar(text):
    """A parameter value from ``key=value`` text: int, float, bool or string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _split_choice(axis, value):
    """``"name:key=value,key=value"`` or ``{name = ..., key = value}`` -> (name, params)."""
    if isinstance(value, dict):
        params = dict(value)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise StudyError(f"{axis} table {value!r} needs a name, e.g. {{name = \"normal\", std = 0.01}}")
        return name, params
    if not isinstance(value, str):
        raise StudyError(f"{axis} must be a name or 'name:key=value', got {value!r}")
    # The parameters follow the last colon, if they are key=value pairs: what precedes them is
    # the name, "module:name" for an entry that importing module registers.
    first, _, after_first = value.partition(":")
    head, _, rest = value.rpartition(":")
    if _is_builtin(axis, first):  # "normal:std=0.01", and "normal:std", whose missing "=" is reported below
        name, rest = first, after_first
    elif "=" in rest or (head and not rest):
        name = head
    else:  # "module:name" of a registered entry, no parameters
        name, rest = value, ""
    params = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise StudyError(f"{axis} parameter {item!r} in {value!r} must look like key=value, e.g. 'normal:std=0.01'")
        params[key.strip()] = _parse_scalar(text.strip())
    return name.strip(), params


def _is_builtin(axis, name) -> bool:
    """Whether ``name`` is a built-in entry of the axis's registry, in any case."""
    names = (*INITIALIZERS,) if axis == "init" else (*ACTIVATIONS, *ALIASES)
    return name.strip().casefold() in {known.casefold() for known in names}


def _label(name, resolved, defaults):
    """``name:key=value,...`` for the parameters that differ from their defaults.

    One label per cell whatever the spelling (``he_normal`` and ``he_normal:mode=fan_in``
    are both ``he_normal``), and ``repr`` keeps every digit, so two different cells
    never share a label.
    """
    shown = [f"{key}={resolved[key]!r}" if isinstance(resolved[key], float) else f"{key}={resolved[key]}"
             for key in sorted(resolved) if key not in defaults or defaults[key] != resolved[key]]
    return f"{name}:{','.join(shown)}" if shown else name


def _check_init(value):
    name, params = _split_choice("init", value)
    entry = get_initializer(name)
    resolved = entry.resolve(**params)
    defaults = {key: spec.default for key, spec in entry.params.items()}
    return Choice(entry.spelling, tuple(sorted(resolved.items())), _label(entry.spelling, resolved, defaults))


def _check_activation(value):
    name, params = _split_choice("activation", value)
    act = get_activation(name)
    param = act.resolve_param(**params)
    resolved = {act.param_name: param} if act.param_name else {}
    # A registered activation keeps its module:name spelling, so that every worker imports it.
    return Choice(act.spelling, tuple(resolved.items()),
                  _label(act.spelling, resolved, {act.param_name: act.default_param}))


def _check_residual(value):
    # 0 means "no residual branch", so that the axis can mix plain and residual nets.
    return check_real("residual", _parse_real(value), minimum=0.0)


def _check_task(value):
    name = check_choice("task", value, ("none", *TASKS))
    if name != "none":
        TASKS[name].check_available()  # before any cell starts: a missing extra is bad input, not failed cells
    return name


_CHECKS = {
    "init": _check_init,
    "activation": _check_activation,
    "depth": lambda v: check_int("depth", parse_int(v), minimum=1),
    "width": lambda v: check_int("width", parse_int(v), minimum=1),
    "batch": lambda v: check_int("batch", parse_int(v), minimum=1),
    "bias_std": lambda v: check_real("bias_std", _parse_real(v), minimum=0.0),
    "dtype": lambda v: check_dtype(v).name,
    "numerics": lambda v: check_choice("numerics", v, ("rescaled", "raw")),
    "residual": _check_residual,
    "batchnorm": lambda v: _parse_bool(v, "batchnorm"),
    "norm": lambda v: check_choice("norm", v, ("none", "batch", "layer")),
    "norm_at": lambda v: check_choice("norm_at", v, ("preact", "branch", "output")),
    "task": _check_task,
    "epochs": lambda v: check_int("epochs", parse_int(v), minimum=1),
    "lr": lambda v: check_real("lr", _parse_real(v), minimum=0.0, exclusive_minimum=True),
    "optimizer": lambda v: check_choice("optimizer", v, OPTIMIZERS),
    "momentum": lambda v: check_unit_interval("momentum", _parse_real(v), "use e.g. 0.9, or 0 for plain SGD"),
    "beta1": lambda v: check_unit_interval("beta1", _parse_real(v), "Adam's default is 0.9"),
    "beta2": lambda v: check_unit_interval("beta2", _parse_real(v), "Adam's default is 0.999"),
    "eps": lambda v: check_real("eps", _parse_real(v), minimum=0.0, exclusive_minimum=True),
    "weight_decay": lambda v: check_real("weight_decay", _parse_real(v), minimum=0.0),
    "clip_norm": lambda v: check_real("clip_norm", _parse_real(v), minimum=0.0),  # 0: no clipping
}

