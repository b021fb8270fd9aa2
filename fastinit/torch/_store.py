"""``save_trace``: traced frames as a results directory that ``python -m analysis.report`` reads.

The directory has a sweep's layout and format (:mod:`fastinit.sweep.store`): a manifest and
one Parquet file per trace, each row carrying the cell columns a sweep's rows carry.  A
trace's ``init`` label is the initializer's with `` [traced]`` appended, and beside it (with
``engine=True``) go ``fastinit.propagate``'s rows for the same initializer, activation,
shape, seed and stream under the plain label, so every figure of the report shows the
traced model, the engine and mean-field theory side by side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from fastinit import rng
from fastinit._validation import check_int, check_real
from fastinit.activations import get_activation
from fastinit.propagate import propagate
from fastinit.sweep import store
from fastinit.sweep.spec import AXES, _check_activation, _check_init

__all__ = ["save_trace", "TRACED_SUFFIX"]

TRACED_SUFFIX = " [traced]"
SOURCE = "fastinit.torch.trace"


def _one(frame, column, what):
    values = list(dict.fromkeys(frame[column]))
    if len(values) != 1 or values[0] is None or values[0] != values[0]:
        raise ValueError(f"save_trace needs one {what} for every traced layer (the report's theory is for a net of "
                         f"one {what}), got {values}; save a net whose layers all have the same {what}")
    return values[0]


def _statistics(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a sweep's worker writes: propagate's columns and its per-cell range columns."""
    rows = frame.drop(columns=[c for c in ("name", "kind", "fan_in", "fan_out", "activation") if c in frame.columns])
    forward = rows.index[rows.fwd_nonfinite > 0]
    backward = rows.index[rows.grad_nonfinite > 0]
    layer, where = ((int(rows.layer[forward[0]]), "forward") if len(forward) else
                    (int(rows.layer[backward[-1]]), "backward") if len(backward) else (-1, None))
    # A torch net runs as the hardware does: nothing is rescaled; underflow is not judged here (-1 / None).
    return rows.assign(forward_rescaled=False, first_overflow_layer=layer, first_underflow_layer=-1,
                       first_overflow_pass=where, first_underflow_pass=None)


def save_trace(frame, directory, *, init, init_params=None, bias_std=0.0, replicate=0, study="traces",
               engine=True) -> Path:
    """Write a :func:`fastinit.torch.trace` frame into a results directory for ``python -m analysis.report``.

    Parameters
    ----------
    frame : pandas.DataFrame
        A trace of a dense net: every layer with the same width and the same known activation
        (the report's theory and figures are for such nets).
    directory : str or path-like
        Created if needed; it may already hold traces of the same ``study``.
    init : str
        The initializer the traced module was initialised with (:func:`fastinit.torch.init_`).
    init_params : dict, optional
        Its parameters.
    bias_std : float, default 0.0
        The bias std passed to ``init_`` as ``bias`` (0 for zeros).
    replicate : int, default 0
        Replicate index (the report's ``seed`` column: intervals are over replicates).
    study : str, default "traces"
        The study name in the manifest; a directory holds one study.
    engine : bool, default True
        Also write ``fastinit.propagate``'s rows for the same initializer, activation, widths,
        batch, dtype, bias, seed and stream (``numerics="raw"``, as torch runs), labelled with the
        plain initializer label.

    Returns
    -------
    pathlib.Path
        The trace's cell file.

    Raises
    ------
    ValueError
        For a frame of mixed widths or activations, an unknown initializer, a bad replicate or
        bias; :class:`fastinit.sweep.ResultsError` when ``directory`` holds another study.
    """
    missing = [key for key in ("batch", "dtype", "seed", "stream") if key not in frame.attrs]
    if missing or "activation" not in frame.columns:
        raise ValueError(f"frame must be a fastinit.torch.trace frame with its attrs (missing: {missing or 'activation'}); "
                         "pass trace's result itself, not a copy that lost its attrs")
    # The sweep's own choices: parameters resolved, labels naming those that differ from the defaults.
    choice = _check_init({"name": init, **dict(init_params or {})})
    bias_std = check_real("bias_std", bias_std, minimum=0.0)
    replicate = check_int("replicate", replicate, minimum=0)
    activation_name = _one(frame, "activation", "activation")
    value = _one(frame.fillna({"activation_param": -math.inf}), "activation_param", "activation parameter")
    spec = get_activation(activation_name)
    activation = _check_activation({"name": activation_name, **(
        {spec.param_name: float(value)} if spec.param_name and value != -math.inf else {})})
    width = int(_one(frame, "width", "width"))
    batch, dtype = int(frame.attrs["batch"]), frame.attrs["dtype"]
    seed, stream = int(frame.attrs["seed"]), int(frame.attrs["stream"])
    depth = len(frame)
    label = choice.label
    cell = {"init_name": choice.name, "init_params": json.dumps(choice.as_dict(), sort_keys=True),
            "activation": activation.label, "activation_name": activation.name,
            "activation_params": json.dumps(activation.as_dict(), sort_keys=True), "depth": depth, "width": width,
            "batch": batch, "bias_std": bias_std, "dtype": dtype, "numerics": "raw", "residual": 0.0,
            "batchnorm": False, **{axis: AXES[axis][0] for axis in ("task", "epochs", "lr", "momentum", "clip_norm")},
            "seed": replicate}
    sources = {"trace": (label + TRACED_SUFFIX, _statistics(frame))}
    if engine:
        engine_rows = propagate(choice.name, activation.name, depth=depth, width=width, batch=batch, seed=seed,
                                stream=stream, dtype=dtype, bias_std=bias_std, numerics="raw",
                                init_params=choice.as_dict(), activation_params=activation.as_dict())
        sources["engine"] = (label, engine_rows.assign(
            forward_rescaled=False, first_overflow_layer=engine_rows.attrs["first_overflow_layer"] or -1,
            first_underflow_layer=engine_rows.attrs["first_underflow_layer"] or -1,
            first_overflow_pass=engine_rows.attrs["first_overflow_pass"],
            first_underflow_pass=engine_rows.attrs["first_underflow_pass"]))
    labels = [init_label for init_label, _ in sources.values()]
    study_json = {"name": study, "root_seed": None, "source": SOURCE, "seeds": replicate + 1,
                  "axes": {"init": labels, "activation": [cell["activation"]]}}
    store.check_directory(directory, study_json)
    store.write_manifest(directory, study_json, {"executor": SOURCE})
    path = None
    for source, (init_label, rows) in sources.items():
        identity = json.dumps({**cell, "init": init_label, "source": source, "stream": stream, "trace_seed": seed},
                              sort_keys=True)
        key = f"{rng.stream_id(SOURCE, identity):016x}"
        rows = rows.copy()
        rows.attrs.clear()
        columns = {"key": key, "init": init_label, **cell, "source": source}
        for name, value in reversed(columns.items()):
            if name in rows.columns:
                rows = rows.drop(columns=name)
            rows.insert(0, name, value)
        written = store.write_cell(directory, key, rows)
        path = written if source == "trace" else path
    return Path(path)
