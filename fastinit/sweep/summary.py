"""The end-of-sweep quick look: per-layer factors of every cell group, with the status of each pass.

The per-layer factor comes from the least-squares slope of the mean (over replicates)
of ``log10`` variance against layer: forward, ``10**slope`` of the pre-activation
variance (what one layer multiplies it by on the way up); backward, ``10**-slope`` of
the dL/dz variance (what one layer multiplies the gradient by on its way down to the
input).  So in both directions 1 is flat, < 1 vanishes and > 1 explodes.

A factor is fitted only where it was measured: on the layers a pass crossed before its
first non-finite or exactly zero statistic (:func:`pass_extent`), and NaN when fewer than
two layers remain.  Every factor carries a ``status`` (:func:`pass_status`): ``"ok"`` or
what went wrong, e.g. ``"overflow at layer 61 (3/3 seeds)"``, ``"exact zero at layer 1
(3/3 seeds)"``, ``"symmetric init"``, ``"saturated (58% at layer 100)"``.  The analysis
layer fits the same slopes with confidence intervals (:mod:`analysis.fit`) and draws the
verdict from them (:mod:`analysis.verdict`); this module is the part the sweep itself needs.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from fastinit.initializers import CONSTANT, get_initializer
from fastinit.sweep.spec import PROPAGATION_SHAPE, TRAINING_GROUP

__all__ = ["MOST", "PASSES", "Extent", "pass_extent", "pass_status", "layer_factors", "log_slope", "training_table",
           "run_diverged"]

_GROUP = ["activation", "init", *PROPAGATION_SHAPE]
MOST = 0.5
"""Fraction of entries (``saturated_frac``) or units (``dead_frac``) above which the last measured
layer counts as saturated or dead: "most units", so the pass no longer probes the activation's
slope but its flat parts."""
PASSES = {"forward": ("log10_fwd_var", "fwd_nonfinite"), "backward": ("log10_grad_var", "grad_nonfinite")}
"""Per direction: its ``log10`` column and its count of non-finite entries (``fastinit.propagate``)."""


def log_slope(layers: np.ndarray, log10_values: np.ndarray) -> float:
    """Least-squares slope of ``log10_values`` against ``layers`` over the finite values.

    Parameters
    ----------
    layers, log10_values : numpy.ndarray
        Layer indices and a ``log10_*`` column of the same length.

    Returns
    -------
    float
        The slope per layer; ``-inf`` when every value is ``-inf`` (the signal
        vanished entirely), NaN when fewer than two values are finite.
    """
    if log10_values.size and np.all(np.isneginf(log10_values)):
        return -math.inf
    finite = np.isfinite(log10_values)
    if finite.sum() < 2:
        return math.nan
    x = layers[finite] - layers[finite].mean()
    y = log10_values[finite]
    return float(np.dot(x, y - y.mean()) / np.dot(x, x))


class Extent(NamedTuple):
    """How far one pass of one replicate was measured.

    ``usable`` masks the layers (in the order given) the pass crossed with a finite, non-zero
    statistic before anything went wrong; ``problem`` is ``""``, ``"overflow"``, ``"underflow"``
    or ``"exact zero"`` and ``layer`` the layer where it starts (0 when there is none).
    """

    usable: np.ndarray
    problem: str
    layer: int


def pass_extent(layers, log10_values, unknown, *, backward: bool, rescaled: bool = True,
                dtype: str = "float64") -> Extent:
    """The measured part of one pass: the layers it crossed before its first unknown or zero statistic.

    The forward pass runs up the layers, the backward pass down them, so a problem at layer k
    ends the forward fit below k and the backward fit above k.  A statistic is unknown when it
    is NaN or +inf or ``unknown`` flags its layer (non-finite entries); that is an
    ``"overflow"``.  ``-inf`` (a variance of exactly 0) is an ``"exact zero"`` -- zero weights,
    every unit dead -- unless the pass ran unrescaled and the measured trend, extrapolated one
    layer, falls below ``tiny**2`` of the network's dtype (a typical entry subnormal): then the
    values were flushed to zero, an ``"underflow"``.

    Parameters
    ----------
    layers : numpy.ndarray
        Layer indices (any order).
    log10_values : numpy.ndarray
        The pass's ``log10`` column, aligned with ``layers``.
    unknown : numpy.ndarray of bool
        Layers whose statistic is known to be unreliable (non-finite entries counted there).
    backward : bool
        Whether this is the backward pass (walked from the last layer down).
    rescaled : bool, default True
        Whether the pass carried a log scale (then it cannot underflow).
    dtype : str, default "float64"
        The network's dtype.

    Returns
    -------
    Extent
        ``usable`` aligned with ``layers``.
    """
    layers = np.asarray(layers, dtype=np.float64)
    values = np.asarray(log10_values, dtype=np.float64)
    order = np.argsort(layers, kind="stable")[::-1] if backward else np.argsort(layers, kind="stable")
    v = values[order]
    bad = np.asarray(unknown, dtype=bool)[order] | np.isnan(v) | (v == math.inf)
    zero = np.isneginf(v) & ~bad
    stops = np.flatnonzero(bad | zero)
    stop = int(stops[0]) if stops.size else v.size
    usable = np.zeros(v.size, dtype=bool)
    usable[order[:stop]] = True
    if stop == v.size:
        return Extent(usable, "", 0)
    layer = int(layers[order[stop]])
    if bad[stop]:
        return Extent(usable, "overflow", layer)
    problem = "exact zero"
    if not rescaled and stop >= 1:
        trend = log_slope(np.arange(stop, dtype=np.float64), v[:stop]) if stop >= 2 else 0.0
        if v[stop - 1] + trend < 2.0 * math.log10(np.finfo(dtype).tiny):
            problem = "underflow"
    return Extent(usable, problem, layer)


def _unknown(frame: pd.DataFrame, direction: str) -> np.ndarray:
    """Layers whose statistic in ``direction`` is not known.

    With the per-pass counts (``fwd_nonfinite``, ``grad_nonfinite``), any non-finite entry makes
    the layer's statistic unknown.  Rows written before those counts existed (absent, or NaN as
    :func:`fastinit.sweep.load` fills them in) have one shared ``nonfinite`` count, and their
    engine stored an unknown variance as 0.0 (log10 ``-inf``); there the count is charged to the
    pass whose value is not finite, and to both when it exceeds one pass's entries (batch x
    width) or when neither value shows it.
    """
    column, count = PASSES[direction]
    own = frame[count].to_numpy(dtype=np.float64) if count in frame.columns else np.full(len(frame), np.nan)
    if "nonfinite" not in frame.columns:
        return own > 0
    other = next(PASSES[d][0] for d in PASSES if d != direction)
    nonfinite = frame["nonfinite"].to_numpy(dtype=np.float64)
    mine, theirs = (np.isfinite(frame[c].to_numpy(dtype=np.float64)) for c in (column, other))
    entries = (frame["batch"] * frame["width"]).to_numpy(dtype=np.float64) if {"batch", "width"} <= set(
        frame.columns) else np.full(len(frame), np.inf)
    shared = (nonfinite > 0) & (~mine | (nonfinite > entries) | theirs)
    return np.where(np.isnan(own), shared, own > 0)


def _symmetric(frame: pd.DataFrame) -> bool:
    """Whether the initializer sets every weight of a layer to one nonzero value (units stay identical)."""
    if "init_name" not in frame.columns:
        return False
    first = frame.iloc[0]
    entry = get_initializer(first["init_name"])
    params = entry.resolve(**json.loads(first["init_params"])) if "init_params" in frame.columns else entry.resolve()
    width = int(first["width"]) if "width" in frame.columns else 1
    draw = entry.draw(width, width, **params)
    return draw.kind == CONSTANT and draw.a != 0.0


def _rescaled(frame: pd.DataFrame, direction: str) -> bool:
    """Whether the pass carried a log scale: the backward pass whenever numerics are rescaled, the
    forward pass where the rows say so (``forward_rescaled``)."""
    numerics = frame["numerics"].iloc[0] if "numerics" in frame.columns else "rescaled"
    if direction == "backward" or numerics != "rescaled":
        return numerics == "rescaled"
    return bool(frame["forward_rescaled"].iloc[0]) if "forward_rescaled" in frame.columns else True


def _problem_text(kind: str, layer: int, seeds: int, of: int, where: str = "") -> str:
    return f"{kind} at layer {layer}{where} ({seeds}/{of} seeds)"


def pass_status(rows: pd.DataFrame, group: list[str] | None = None) -> pd.DataFrame:
    """The status of every cell group's forward and backward pass, and the layers a fit may use.

    Statuses are decided per replicate (:func:`pass_extent`) and aggregated over the group's
    seeds: each kind of problem is reported once, at the earliest layer any seed met it in the
    pass's direction, with how many seeds met it -- ``"overflow at layer 52 (2/3 seeds)"``.  The
    fit range is the part every seed measured (the shortest usable stretch), so the seeds'
    slopes are comparable.  A forward overflow leaves the backward pass unknown as well (it
    runs through the overflowed layers first): ``"overflow at layer 61 in the forward pass"``.
    Then, for the whole net: ``"symmetric init"`` (every weight of a layer one nonzero value,
    so the units of a layer stay identical), ``"saturated (p% at layer k)"`` and ``"dead units
    (p% at layer k)"`` when more than :data:`MOST` of the last forward-measured layer is
    saturated or dead (mean over seeds).  Problems are joined with ``"; "``; ``"ok"`` when there
    are none.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-layer rows (:func:`fastinit.sweep.load`) with ``seed``, ``layer`` and the ``log10``
        columns; ``fwd_nonfinite``/``grad_nonfinite`` (or the older ``nonfinite``),
        ``saturated_frac``, ``dead_frac``, ``init_name``/``init_params``, ``dtype``,
        ``numerics`` and ``forward_rescaled`` are used when present.
    group : list of str, optional
        Columns that define a cell group (default: the sweep's, those present).

    Returns
    -------
    pandas.DataFrame
        One row per group and direction: the group columns, ``direction``, ``status``, and
        ``fit_first``/``fit_last``, the inclusive layer range measured by every seed (NaN when
        it is empty).
    """
    group = [c for c in _GROUP if c in rows.columns] if group is None else list(group)
    records = []
    for keys, frame in rows.groupby(group, sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        dtype = str(frame["dtype"].iloc[0]) if "dtype" in frame.columns else "float64"
        frame = frame.sort_values(["seed", "layer"] if "seed" in frame.columns else ["layer"], kind="stable")
        layers_all = frame["layer"].to_numpy(dtype=np.float64)
        values = {d: frame[PASSES[d][0]].to_numpy(dtype=np.float64) for d in PASSES}
        unknown = {d: _unknown(frame, d) for d in PASSES}
        rescaled = {d: _rescaled(frame, d) for d in PASSES}
        seed_ids = frame["seed"].to_numpy() if "seed" in frame.columns else np.zeros(len(frame))
        cuts = np.flatnonzero(seed_ids[1:] != seed_ids[:-1]) + 1
        problems = {"forward": [], "backward": []}
        ranges = {"forward": [], "backward": []}
        for run in np.split(np.arange(len(frame)), cuts):
            layers = layers_all[run]
            extents = {d: pass_extent(layers, values[d][run], unknown[d][run], backward=d == "backward",
                                      rescaled=rescaled[d], dtype=dtype) for d in PASSES}
            if extents["forward"].problem == "overflow":  # the gradient ran through the overflowed layers
                extents["backward"] = Extent(np.zeros(layers.size, dtype=bool), "overflow in the forward pass",
                                             extents["forward"].layer)
            for direction, extent in extents.items():
                used = layers[extent.usable]
                ranges[direction].append((used.min(), used.max()) if used.size else (math.nan, math.nan))
                problems[direction].append((extent.problem, extent.layer))
        n = len(ranges["forward"])
        ends = [end for _, end in ranges["forward"]]
        forward_end = math.nan if any(math.isnan(end) for end in ends) else min(ends)  # the range every seed measured
        flags = []
        if _symmetric(frame):
            flags.append("symmetric init")
        if np.isfinite(forward_end):
            last = frame[frame["layer"] == forward_end]
            for column, name in (("saturated_frac", "saturated"), ("dead_frac", "dead units")):
                if column in last.columns and last[column].mean() > MOST:
                    flags.append(f"{name} ({last[column].mean():.0%} at layer {int(forward_end)})")
        for direction in PASSES:
            texts = []
            for kind in ("overflow", "overflow in the forward pass", "underflow", "exact zero"):
                hits = [layer for problem, layer in problems[direction] if problem == kind]
                if hits:
                    # The earliest layer in the pass's own direction: up for forward, down for backward.
                    upward = direction == "forward" or kind == "overflow in the forward pass"
                    layer = min(hits) if upward else max(hits)
                    where = " in the forward pass" if kind == "overflow in the forward pass" else ""
                    texts.append(_problem_text(kind.replace(" in the forward pass", ""), layer, len(hits), n, where))
            starts, ends = zip(*ranges[direction])
            first, last_layer = max(starts), min(ends)  # the stretch every seed measured; one empty seed empties it
            if any(math.isnan(s) for s in starts) or first > last_layer:
                first = last_layer = math.nan
            records.append({**dict(zip(group, keys)), "direction": direction,
                            "status": "; ".join(texts + flags) or "ok", "fit_first": first, "fit_last": last_layer})
    return pd.DataFrame.from_records(records)


def layer_factors(rows: pd.DataFrame) -> pd.DataFrame:
    """Fitted per-layer forward and backward factors of every cell group, with their statuses.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of :func:`fastinit.sweep.load`.

    Returns
    -------
    pandas.DataFrame
        One row per group of replicates: the group's parameters, ``forward`` and ``backward``
        (per-layer factors, fitted on the layers every seed measured; NaN when fewer than two),
        ``forward_status`` and ``backward_status`` (:func:`pass_status`).
    """
    group = [column for column in _GROUP if column in rows.columns]
    status = pass_status(rows, group).set_index([*group, "direction"])
    records = []
    for keys, frame in rows.groupby(group, sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        record = dict(zip(group, keys))
        for direction, (column, _) in PASSES.items():
            entry = status.loc[(*keys, direction)]
            used = frame[(frame["layer"] >= entry.fit_first) & (frame["layer"] <= entry.fit_last)]
            mean = used.groupby("layer", sort=True)[column].mean()
            slope = log_slope(mean.index.to_numpy(dtype=np.float64), mean.to_numpy(dtype=np.float64))
            record[direction] = float(10.0 ** (slope if direction == "forward" else -slope))
            record[f"{direction}_status"] = entry.status
        records.append(record)
    return pd.DataFrame.from_records(records)


def run_diverged(run: pd.DataFrame) -> bool:
    """Whether one training run diverged: flagged by :func:`fastinit.train.run` (loss or weights
    non-finite) or with a non-finite training loss in its rows."""
    flagged = "diverged" in run.columns and bool(run["diverged"].fillna(False).astype(bool).any())
    return flagged or not np.isfinite(run["loss"].to_numpy(dtype=np.float64)).all()


def training_table(rows: pd.DataFrame) -> pd.DataFrame:
    """For each training configuration: final loss and accuracy over replicates, and divergence.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of :func:`fastinit.sweep.load` from training cells (``task != "none"``).

    Returns
    -------
    pandas.DataFrame
        The configuration columns that vary, ``seeds``, ``final_loss`` (median over
        replicates of the last finite epoch's training loss), ``final_accuracy`` (mean)
        and ``diverged`` (replicates whose loss became non-finite, as ``k/n``).
    """
    group = [c for c in TRAINING_GROUP if c in rows.columns]
    varying = [c for c in group if rows[c].nunique() > 1] or ["init"]
    per_epoch = rows[rows["layer"] == 1]
    records = []
    for keys, frame in per_epoch.groupby(varying, sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        finals, accuracies, diverged = [], [], 0
        for _, run in frame.groupby("seed"):
            finite = run[np.isfinite(run["loss"])]
            diverged += int(run_diverged(run))
            finals.append(finite["loss"].iloc[-1] if len(finite) else math.nan)
            accuracies.append(finite["accuracy"].iloc[-1] if len(finite) else math.nan)
        seeds = frame["seed"].nunique()
        records.append({**dict(zip(varying, keys)), "seeds": seeds, "final_loss": float(np.nanmedian(finals)),
                        "final_accuracy": float(np.nanmean(accuracies)) if np.isfinite(accuracies).any() else math.nan,
                        "diverged": f"{diverged}/{seeds}"})
    return pd.DataFrame.from_records(records)
